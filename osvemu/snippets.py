"""Guest snippets: a few lines of x86 assembly with their expected outcome.

A snippet file (``tests/snippets/*.s``) is keystone-syntax assembly whose
leading ``;!`` lines form a TOML header::

    ;! description = "self IPI wakes a halted core"
    ;! mode = "long"          # start mode: real | protected | long
    ;! sockets = 1            # machine topology (default 1 x 1)
    ;! cores_per_socket = 2
    ;! run_on = "all"         # "all": every core starts at the snippet; "bsp": only core 0
    ;! kernels = 2            # run under OSV, split evenly; the snippet runs in kernel 0
    ;! max_instructions = 200000
    ;! [expect]
    ;! exit = 0               # exit-port status; omit when the run ends by halting
    ;! console = "ok\\n"
    ;! [expect.memory]
    ;! 0x200000 = "2a 00 00 00"
    ;! [expect.cores.0]       # per core: register values and "state"
    ;! rax = 42
    ;! state = "halted"
    ;! [expect.all_cores]     # every core that started
    ;! rbx = 1
    ;! violations = ["write to 0x30000000"]  # under OSV: each is part of a recorded violation

Placement: real-mode snippets start at 0x0800:0000 (linear 0x8000), as an AP
after a STARTUP IPI with vector 8; protected- and long-mode snippets start at
``CODE_BASE``.  Every starting core gets EDI = its core index and a private
stack; long-mode snippets run with identity-mapped 2 MiB pages over 4 GiB, a
flat GDT (code 0x08, data 0x10, TSS 0x18) and an empty IDT at ``SNIPPET_IDT``
(every gate not present).  Long-mode snippets may ``call set_gate`` (appended
after the snippet) with EAX = vector and RBX = handler to install a 64-bit
interrupt gate; it clobbers RCX and RDX.
"""

from __future__ import annotations

import struct
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from keystone import KS_ARCH_X86, KS_MODE_16, KS_MODE_32, KS_MODE_64, Ks, KsError
from unicorn.x86_const import (
    UC_X86_REG_CR0,
    UC_X86_REG_CR3,
    UC_X86_REG_CR4,
    UC_X86_REG_CS,
    UC_X86_REG_DS,
    UC_X86_REG_ES,
    UC_X86_REG_GDTR,
    UC_X86_REG_IDTR,
    UC_X86_REG_MSR,
    UC_X86_REG_RDI,
    UC_X86_REG_RIP,
    UC_X86_REG_RSP,
    UC_X86_REG_SS,
    UC_X86_REG_TR,
)

from osvemu.cpu import x86
from osvemu.cpu.core import GENERAL_REGISTERS, Core
from osvemu.cpu.memory import MemoryView
from osvemu.cpu.templates import startup_context
from osvemu.errors import ConfigError
from osvemu.platform import layout
from osvemu.platform.machine import Machine
from osvemu.platform.plan import bare_plan
from osvemu.platform.pvh import pvh_entry_context
from osvemu.platform.topology import Topology
from osvemu.scheduler import RunLimits, RunResult, Scheduler

CODE_BASE = 0x100000
REAL_MODE_VECTOR = 0x08  # real-mode snippets start at 0x8000
SNIPPET_GDT = 0x1000
SNIPPET_TSS = 0x1100
SNIPPET_PML4 = 0x2000
SNIPPET_PDPT = 0x3000
SNIPPET_PD = 0x4000  # four pages: 4 GiB of 2 MiB pages
SNIPPET_IDT = 0x9000
STACK_TOP = 0x70000
STACK_SIZE = 0x400
_KS_MODES = {"real": KS_MODE_16, "protected": KS_MODE_32, "long": KS_MODE_64}
#: Appended to long-mode snippets: write an interrupt gate (Intel SDM Vol. 3A
#: 6.14.1, Figure 6-8) for vector EAX pointing at RBX, selector 0x08, DPL 0.
SET_GATE = f"""
set_gate:
    mov rcx, rax
    shl rcx, 4
    add rcx, {SNIPPET_IDT:#x}
    mov rdx, rbx
    mov word ptr [rcx], dx
    mov word ptr [rcx + 2], 0x08
    mov word ptr [rcx + 4], 0x8e00
    shr rdx, 16
    mov word ptr [rcx + 6], dx
    shr rdx, 16
    mov dword ptr [rcx + 8], edx
    mov dword ptr [rcx + 12], 0
    ret
"""


@dataclass
class Snippet:
    name: str
    source: str
    mode: str = "long"
    sockets: int = 1
    cores_per_socket: int = 1
    memory: int = 64 * layout.MiB
    run_on: str = "all"
    kernels: int = 1
    max_instructions: int = 2_000_000
    quantum: int = 1000
    cmdline: str = ""
    expect: dict = field(default_factory=dict)
    description: str = ""

    @classmethod
    def parse(cls, name: str, text: str) -> Snippet:
        header = "\n".join(line[2:].strip() for line in text.splitlines() if line.startswith(";!"))
        try:
            meta = tomllib.loads(header)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"snippet {name}: bad header: {error}") from None
        body = "\n".join(line for line in text.splitlines() if not line.startswith(";!"))
        known = {f for f in cls.__dataclass_fields__ if f not in ("name", "source")}
        unknown = set(meta) - known
        if unknown:
            raise ConfigError(f"snippet {name}: unknown header keys {sorted(unknown)}")
        snippet = cls(name=name, source=body, **meta)
        if snippet.mode not in _KS_MODES:
            raise ConfigError(f"snippet {name}: mode must be real, protected or long")
        return snippet

    @classmethod
    def load(cls, path: str | Path) -> Snippet:
        path = Path(path)
        return cls.parse(path.stem, path.read_text())

    @property
    def base(self) -> int:
        return REAL_MODE_VECTOR << 12 if self.mode == "real" else CODE_BASE


def assemble(source: str, mode: str, base: int) -> bytes:
    try:
        encoding, _ = Ks(KS_ARCH_X86, _KS_MODES[mode]).asm(source, base)
    except KsError as error:
        raise ConfigError(f"cannot assemble snippet: {error}") from None
    return bytes(encoding or b"")


def _long_mode_tables(view: MemoryView) -> None:
    """Identity page tables (2 MiB user-accessible pages, 4 GiB) and a flat
64-bit GDT with a TSS."""
    present_writable_user = x86.PTE_PRESENT | x86.PTE_WRITE | x86.PTE_USER
    view.write(SNIPPET_PML4, struct.pack("<Q", SNIPPET_PDPT | present_writable_user))
    view.write(SNIPPET_PDPT, b"".join(struct.pack("<Q", (SNIPPET_PD + i * x86.PAGE_SIZE) | present_writable_user)
                                      for i in range(4)))
    entries = (struct.pack("<Q", (i << 21) | x86.PTE_LARGE | present_writable_user) for i in range(4 * 512))
    view.write(SNIPPET_PD, b"".join(entries))
    code64 = 0x00AF9A000000FFFF
    data = 0x00CF92000000FFFF
    tss_low = (0x67 | ((SNIPPET_TSS & 0xFFFFFF) << 16) | (0x89 << 40) | ((SNIPPET_TSS >> 24) << 56))
    view.write(SNIPPET_GDT, struct.pack("<QQQQQ", 0, code64, data, tss_low, SNIPPET_TSS >> 32))


def _start_core(core: Core, snippet: Snippet) -> None:
    stack = STACK_TOP - core.index * STACK_SIZE
    if snippet.mode == "real":
        core.start(startup_context(REAL_MODE_VECTOR), {})
        core.load_segment(UC_X86_REG_SS, (stack - 0xFFF0) >> 4)
        core.write_register(UC_X86_REG_RSP, 0xFFF0)
    elif snippet.mode == "protected":
        core.start(pvh_entry_context(), {UC_X86_REG_RIP: CODE_BASE, UC_X86_REG_RSP: stack})
    else:
        core.start(None, {  # in this order: paging needs CR3, CR4 and EFER first
            UC_X86_REG_GDTR: (0, SNIPPET_GDT, 5 * 8 - 1, 0),
            UC_X86_REG_IDTR: (0, SNIPPET_IDT, 256 * 16 - 1, 0),
            UC_X86_REG_CR3: SNIPPET_PML4,
            UC_X86_REG_CR4: x86.CR4_PAE,
            UC_X86_REG_MSR: (x86.MSR_EFER, x86.EFER_LME | x86.EFER_LMA | x86.EFER_NXE),
            UC_X86_REG_CR0: x86.CR0_PE | x86.CR0_ET | x86.CR0_PG | x86.CR0_WP,
            UC_X86_REG_CS: 0x08, UC_X86_REG_SS: 0x10, UC_X86_REG_DS: 0x10, UC_X86_REG_ES: 0x10,
            UC_X86_REG_TR: (0x18, SNIPPET_TSS, 0x67, 0x89),
            UC_X86_REG_RIP: CODE_BASE, UC_X86_REG_RSP: stack,
        })
    core.write_register(UC_X86_REG_RDI, core.index)
    core.flush_translations()


@dataclass
class SnippetRun:
    snippet: Snippet
    machine: Machine
    result: RunResult
    started: list[int]


def run_snippet(snippet: Snippet, fast: bool = False, exact: bool = False) -> SnippetRun:
    lines: list[str] = []
    topology = Topology(snippet.sockets, snippet.cores_per_socket, snippet.memory)
    if snippet.kernels > 1:
        from osvemu.osv.config import default_config
        from osvemu.osv.plan import osv_plan
        plan = osv_plan(default_config(topology, "", snippet.cmdline, snippet.kernels))
    else:
        plan = bare_plan(topology, snippet.cmdline)
    machine = Machine(plan, console=lines.append)
    kernel = machine.kernels[0]
    machine.install_firmware(kernel)
    source = snippet.source + (SET_GATE if snippet.mode == "long" else "")
    code = assemble(source, snippet.mode, snippet.base)
    kernel.view.write(snippet.base, code)
    machine.watch_code(kernel, [(snippet.base, len(code), snippet.base)])
    if snippet.mode == "long":
        _long_mode_tables(kernel.view)
    started = [c.index for c in kernel.cores] if snippet.run_on == "all" else [kernel.cores[0].index]
    for index in started:
        _start_core(machine.cores[index], snippet)
    scheduler = Scheduler(machine, snippet.quantum, fast=fast, limits=RunLimits(max_instructions=snippet.max_instructions),
                          exact=exact)
    result = scheduler.run()
    return SnippetRun(snippet, machine, result, started)


def check_expectations(run: SnippetRun) -> list[str]:
    """Every expectation that does not hold, as a readable line."""
    expect, machine, problems = run.snippet.expect, run.machine, []
    if "exit" in expect and (machine.exit is None or machine.exit.status != expect["exit"]):
        got = machine.exit.status if machine.exit else None
        problems.append(f"exit status {got} ({run.result.reason}), expected {expect['exit']}")
    if "console" in expect:
        console = machine.kernels[0].uart.console.text.decode("utf-8", "replace")
        if console != expect["console"]:
            problems.append(f"console {console!r}, expected {expect['console']!r}")
    reasons = [v.reason for v in machine.monitor.violations] if machine.monitor else []
    for wanted in expect.get("violations", []):
        if not any(wanted in reason for reason in reasons):
            problems.append(f"no violation {wanted!r} among {reasons}")
    for address, hexbytes in expect.get("memory", {}).items():
        want = bytes.fromhex(hexbytes)
        got = machine.kernels[0].view.read(int(address, 0), len(want))
        if got != want:
            problems.append(f"memory at {address}: {got.hex(' ')}, expected {want.hex(' ')}")
    per_core = {int(k): v for k, v in expect.get("cores", {}).items()}
    for index in run.started:
        per_core.setdefault(index, {})
        per_core[index] = {**expect.get("all_cores", {}), **per_core[index]}
    for index, wanted in sorted(per_core.items()):
        core = machine.cores[index]
        registers = core.registers()
        for name, value in wanted.items():
            if name == "state":
                if core.state.value != value:
                    problems.append(f"core {index} state {core.state.value}, expected {value}")
            elif name == "fault":
                got = core.fault.kind if core.fault else None
                if got != value:
                    problems.append(f"core {index} fault {got!r}, expected {value!r}")
            elif name in GENERAL_REGISTERS or name == "efer":
                if registers[name] != value:
                    problems.append(f"core {index} {name} = {registers[name]:#x}, expected {value:#x}")
            else:
                problems.append(f"core {index}: unknown expectation {name!r}")
    unexpected = [c for c in machine.cores if c.fault is not None and "fault" not in per_core.get(c.index, {})]
    problems += [f"unexpected fault: {c.fault.one_line()}" for c in unexpected]
    return problems
