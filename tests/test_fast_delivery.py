"""Interrupt delivery in C (osvemu/cpu/delivery.c) is delivery.py's, or
nothing: for any gate, code segment, IST slot, stack and paging a guest can
set up, either the C path declines and changes nothing, or it delivers
exactly as the Python path does -- the same registers and the same bytes of
memory.  And whole guests run the same with it as without it."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from unicorn import x86_const as r

from osvemu.cpu import x86
from osvemu.cpu.delivery import DeliveryFault, Source, deliver
from osvemu.cpu.surroundings import ActionAbandoned
from osvemu.snippets import SNIPPET_GDT, SNIPPET_IDT, SNIPPET_PD, SNIPPET_TSS, Snippet, run_snippet

#: A page table for the first 2 MiB (4 KiB pages, so single pages can be made absent or read-only).
PAGE_TABLE = 0xA000
#: The memory compared: everything a delivery below can touch in the view.
COMPARED = 0x200000
#: Stack pages whose rights the examples vary (0x60000-0x63fff).
STACK_PAGES = range(0x60, 0x64)
CODE64 = 0x00AF9A000000FFFF
#: Outside the 64 MiB view, inside the identity page tables: a write there is the platform's to refuse.
OUTSIDE_VIEW = 0x8000000


@pytest.fixture(scope="module")
def core():
    run = run_snippet(Snippet.parse("idle", ';! mode = "long"\n    cli\n    hlt\n'))
    core = run.machine.cores[0]
    view = core.view
    rights = x86.PTE_PRESENT | x86.PTE_WRITE
    view.write(PAGE_TABLE, b"".join(struct.pack("<Q", (page << 12) | rights) for page in range(512)))
    view.write(SNIPPET_PD, struct.pack("<Q", PAGE_TABLE | rights))
    core.flush_translations()
    return core


def _state(core) -> tuple:
    registers = core.registers()
    registers["cpl"] = core.linear.cpl()
    return registers, hashlib.sha256(core.view.read(0, COMPARED)).hexdigest()


def _gate(offset: int, selector: int, ist: int, gate_type: int, dpl: int, present: bool) -> bytes:
    attributes = gate_type | (dpl << 5) | (0x80 if present else 0)
    return struct.pack("<HHBBHII", offset & 0xFFFF, selector, ist, attributes, (offset >> 16) & 0xFFFF,
                       offset >> 32, 0)


#: Each list leans towards what a kernel sets up, so most examples reach the
#: frame and a good share are delivered; the rest vary one thing or more.
_descriptor_bits = st.sampled_from([0] * 8 + [x86.DESCRIPTOR_S, x86.DESCRIPTOR_CODE, x86.DESCRIPTOR_L, x86.DESCRIPTOR_DB,
                                    x86.DESCRIPTOR_PRESENT, x86.DESCRIPTOR_CONFORMING, 1 << 45, 1 << 46])
_stacks = st.one_of(st.integers(0x60100, 0x63F00), st.sampled_from([0x62000, 0x61008, 0x60ff0, 0x60004, 0x64010, 0x60000, OUTSIDE_VIEW + 0x1000,
                                     0x1000_0000_0000, 0]),
                    st.integers(0x5F000, 0x64FFF))
_cases = st.fixed_dictionaries({
    "vector": st.integers(0, 255),
    "offset": st.one_of(st.sampled_from([0x100000, 0xFFFFFFFF80001000]), st.integers(0, 2**64 - 1)),
    "selector": st.sampled_from([0x08] * 12 + [0x10, 0x18, 0x00, 0x0C, 0x09, 0x28, 0xFFF8]),
    "ist": st.sampled_from([0] * 8 + list(range(1, 8))),
    "type": st.sampled_from([x86.GATE_INTERRUPT] * 8 + [x86.GATE_TRAP] * 4 + [x86.GATE_TASK,
                             x86.GATE_INTERRUPT_16, x86.GATE_TRAP_16, 0xC, 0x0]),
    "dpl": st.sampled_from([0] * 4 + [3, 1]),
    "present": st.sampled_from([True] * 12 + [False]),
    "descriptor_flip": _descriptor_bits,
    "rsp": _stacks,
    "ist_stacks": st.lists(_stacks, min_size=7, max_size=7),
    "stack_rights": st.lists(st.sampled_from([x86.PTE_PRESENT | x86.PTE_WRITE] * 12 + [x86.PTE_PRESENT, 0]),
                             min_size=len(STACK_PAGES), max_size=len(STACK_PAGES)),
    "idt_page_present": st.sampled_from([True] * 12 + [False]),
    "idtr": st.sampled_from([(SNIPPET_IDT, 256 * 16 - 1)] * 8 + [(SNIPPET_IDT, 0x7F), (SNIPPET_IDT + 0xFF8, 256 * 16 - 1),
                             (OUTSIDE_VIEW, 256 * 16 - 1)]),
    "write_protect": st.booleans(),
    "error_code": st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    "software": st.booleans(),
    "rflags": st.sampled_from([0x2, 0x202, 0x246 | x86.RFLAGS_TF | x86.RFLAGS_NT | x86.RFLAGS_RF | x86.RFLAGS_AC]),
})


def _set_up(core, case: dict) -> None:
    view = core.view
    base, limit = case["idtr"]
    core.write_register(r.UC_X86_REG_IDTR, (0, base, limit, 0))
    if base < COMPARED:
        view.write(base + case["vector"] * 16, _gate(case["offset"], case["selector"], case["ist"], case["type"],
                                                    case["dpl"], case["present"]))
    view.write(SNIPPET_GDT + 8, struct.pack("<Q", CODE64 ^ case["descriptor_flip"]))
    view.write(SNIPPET_TSS + x86.TSS64_IST1, struct.pack("<7Q", *case["ist_stacks"]))
    for page, rights in zip(STACK_PAGES, case["stack_rights"]):
        view.write(PAGE_TABLE + page * 8, struct.pack("<Q", (page << 12) | rights))
    idt_page = SNIPPET_IDT >> 12
    present = x86.PTE_PRESENT | x86.PTE_WRITE if case["idt_page_present"] else 0
    view.write(PAGE_TABLE + idt_page * 8, struct.pack("<Q", (idt_page << 12) | present))
    cr0 = core.read_register(r.UC_X86_REG_CR0)
    core.write_register(r.UC_X86_REG_CR0, cr0 | x86.CR0_WP if case["write_protect"] else cr0 & ~x86.CR0_WP)
    core.write_register(r.UC_X86_REG_RSP, case["rsp"])
    core.write_register(r.UC_X86_REG_RFLAGS, case["rflags"])


def _python_delivery(core, case: dict) -> str:
    source = Source.SOFTWARE if case["software"] else Source.EXCEPTION
    core.linear.hold_paging()
    try:
        deliver(core, case["vector"], source, case["error_code"])
        return "delivered"
    except (DeliveryFault, ActionAbandoned) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        core.linear.release_paging()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_cases)
def test_c_delivery_is_python_delivery_or_nothing(core, case):
    saved_memory = core.view.read(0, COMPARED)
    saved_context = core.uc.context_save()
    try:
        _set_up(core, case)
        before = _state(core)
        done = core.fast_delivery.deliver(case["vector"], case["error_code"], case["software"])
        after_c = _state(core)
        if done is None:
            assert after_c == before, "the C path declined but changed something"
        # The same delivery in Python, from the same state.
        core.uc.context_restore(saved_context)
        core.view.write(0, saved_memory)
        _set_up(core, case)
        assert _state(core) == before
        outcome = _python_delivery(core, case)
        event("delivered in C" if done is not None else f"declined; Python: {outcome.split(':')[0]}")
        if done is not None:
            assert outcome == "delivered"
            assert _state(core) == after_c
            registers = after_c[0]
            assert done == (before[0]["rip"], registers["rip"], registers["rsp"])
    finally:
        core.uc.context_restore(saved_context)
        core.view.write(0, saved_memory)


def test_the_common_case_is_delivered_in_c_and_the_rest_declined(core):
    """A plain 64-bit interrupt gate is the C path's; a not-present one, an
    IST slot pointing outside the view and a gate through a DPL 3 code
    segment are Python's (which raises the fault the manual gives)."""
    plain = {"vector": 0x30, "offset": 0x100000, "selector": 0x08, "ist": 0, "type": x86.GATE_INTERRUPT, "dpl": 0,
             "present": True, "descriptor_flip": 0, "rsp": 0x62000, "ist_stacks": [0x61000] * 7,
             "stack_rights": [x86.PTE_PRESENT | x86.PTE_WRITE] * 4, "idt_page_present": True,
             "idtr": (SNIPPET_IDT, 256 * 16 - 1), "write_protect": True, "error_code": None, "software": False,
             "rflags": 0x202}
    expectations = [
        ({}, "C"),
        ({"ist": 2}, "C"),
        ({"error_code": 0x18, "rsp": 0x61010}, "C"),  # the frame crosses a page boundary
        ({"present": False}, "DeliveryFault: IDT gate for vector 0x30 is not present"),
        ({"ist": 1, "ist_stacks": [OUTSIDE_VIEW] * 7}, "ActionAbandoned"),
        ({"descriptor_flip": 3 << 45}, "DeliveryFault: gate code segment 0x8 has DPL 3 above CPL 0"),
        ({"stack_rights": [x86.PTE_PRESENT] * 4}, "DeliveryFault: page fault at 0x61fd8"),
        ({"stack_rights": [x86.PTE_PRESENT] * 4, "write_protect": False}, "C"),
    ]
    saved_memory = core.view.read(0, COMPARED)
    saved_context = core.uc.context_save()
    outcomes = []
    try:
        for change, _ in expectations:
            case = {**plain, **change}
            _set_up(core, case)
            if core.fast_delivery.deliver(case["vector"], case["error_code"], case["software"]) is not None:
                outcomes.append("C")
            else:
                outcomes.append(_python_delivery(core, case))
            core.uc.context_restore(saved_context)
            core.view.write(0, saved_memory)
    finally:
        core.uc.context_restore(saved_context)
        core.view.write(0, saved_memory)
    assert [outcome if expected == "C" else outcome[:len(expected)] for outcome, (_, expected) in
            zip(outcomes, expectations)] == [expected for _, expected in expectations]


_WITHOUT_C_DELIVERY = ("import sys; import osvemu.cpu.fastdelivery as f; f.FastDelivery.deliver = lambda self, *a: None; "
                       "from osvemu.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize("mode", [(), pytest.param(("--fast",), marks=pytest.mark.slow)], ids=["blocks", "fast"])
def test_minilinux_runs_the_same_with_and_without_c_delivery(tmp_path, mode):
    digests = []
    for prefix in ([sys.executable, "-m", "osvemu"], [sys.executable, "-c", _WITHOUT_C_DELIVERY]):
        report = tmp_path / "report.json"
        result = subprocess.run([*prefix, "boot", str(ROOT / "guests" / "minilinux.elf"), "--native", "--sockets", "1",
                                 "--cores-per-socket", "4", *mode, "--report", str(report)],
                                capture_output=True, text=True, timeout=120, check=False)
        data = json.loads(report.read_text())
        digests.append((result.returncode, result.stdout, [(c["instructions"], c["interrupts_taken"])
                                                           for c in data["cores"]], data["virtual_ns"]))
    assert digests[0] == digests[1]
    assert digests[0][0] == 0 and "OK" in digests[0][1]
