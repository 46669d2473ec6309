"""The fast paths behave as the slow ones did: registers through the C API,
slices counted by translation block, run-ahead in fast mode, dormant cores,
the halted flag's remembered place -- and every mode gives the same guest
results, reproducibly."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_osvemu
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as r

from osvemu.cpu.registers import INTEGER_REGISTERS, TABLE_REGISTERS, RegisterAccess
from osvemu.snippets import Snippet, check_expectations, run_snippet

SNIPPETS = sorted((ROOT / "tests" / "snippets").glob("*.s"))
_SELECTORS = {r.UC_X86_REG_CS, r.UC_X86_REG_SS, r.UC_X86_REG_DS, r.UC_X86_REG_ES, r.UC_X86_REG_FS, r.UC_X86_REG_GS}
_CONTROL = {r.UC_X86_REG_CR0, r.UC_X86_REG_CR1, r.UC_X86_REG_CR2, r.UC_X86_REG_CR3, r.UC_X86_REG_CR4,
            r.UC_X86_REG_CR8}


# ---------------------------------------------------------------- registers
def test_the_c_api_reads_and_writes_every_integer_register_as_the_binding_does():
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    registers = RegisterAccess(uc)
    chooser = random.Random(12)
    writable = sorted(INTEGER_REGISTERS - _SELECTORS - _CONTROL)
    for register in writable:
        registers.write(register, chooser.getrandbits(64))
    assert [registers.read(reg) for reg in sorted(INTEGER_REGISTERS)] == \
        [uc.reg_read(reg) for reg in sorted(INTEGER_REGISTERS)]
    assert registers.read_many(tuple(writable)) == tuple(uc.reg_read(reg) for reg in writable)
    for register in TABLE_REGISTERS - {r.UC_X86_REG_LDTR}:
        uc.reg_write(register, (0, 0x12345000, 0xFFF, 0))
        assert registers.read(register) == uc.reg_read(register) == (0, 0x12345000, 0xFFF, 0)
    registers.write(r.UC_X86_REG_RAX, -1)  # wrapped to 64 bits, as the binding's c_uint64 does
    assert uc.reg_read(r.UC_X86_REG_RAX) == (1 << 64) - 1
    assert registers.read(r.UC_X86_REG_XMM0) == uc.reg_read(r.UC_X86_REG_XMM0)  # the binding's, for the rest


def test_a_narrow_register_read_is_not_polluted_by_the_last_wide_one():
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    registers = RegisterAccess(uc)
    registers.write(r.UC_X86_REG_RBX, (1 << 64) - 1)
    assert registers.read(r.UC_X86_REG_RBX) == (1 << 64) - 1
    assert registers.read(r.UC_X86_REG_CS) == 0  # two bytes written by Unicorn, the rest cleared first
    assert registers.read_many((r.UC_X86_REG_RBX, r.UC_X86_REG_SS)) == ((1 << 64) - 1, 0)


# ---------------------------------------------------------------- counting by blocks
#: A fault (ud2), an intercept (rdmsr) and a trap (int3) in the middle of
#: straight-line code, each handled and returned from; then RDTSC.
CUT_BLOCKS = """
;! mode = "long"
;! max_instructions = 100000
    lea rbx, [rip + on_ud]
    mov eax, 6
    call set_gate
    lea rbx, [rip + on_bp]
    mov eax, 3
    call set_gate
    mov ecx, 0xc0000080
    xor r12, r12
    inc r12
    ud2
    inc r12
    rdmsr
    inc r12
    int3
    inc r12
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r13, rax
    cli
    hlt
on_ud:
    add qword ptr [rsp], 2
    iretq
on_bp:
    iretq
"""


@pytest.mark.parametrize("mode", ["exact", "blocks", "fast"])
def test_blocks_cut_by_exceptions_count_what_was_started(mode: str):
    """Instructions counted by blocks are those started, as Unicorn's own
    count has them, through a fault, an intercept and a trap, and RDTSC
    inside a block reads the time of its own place."""
    run = run_snippet(Snippet.parse("cut", CUT_BLOCKS), fast=mode == "fast", exact=mode == "exact")
    core = run.machine.cores[0]
    assert core.read_register(r.UC_X86_REG_R12) == 4
    reference = run_snippet(Snippet.parse("cut", CUT_BLOCKS), exact=True).machine.cores[0]
    assert core.instructions == reference.instructions
    assert core.read_register(r.UC_X86_REG_R13) == reference.read_register(r.UC_X86_REG_R13)


#: After the exit port write, instructions that would change a register and memory.
AFTER_EXIT = """
;! mode = "long"
;! max_instructions = 10000
;! [expect]
;! exit = 0
;! [expect.memory]
;! 0x300000 = "00"
;! [expect.cores.0]
;! rbx = 0
;! r8 = 7
    xor ebx, ebx
    mov r8, 7
    xor eax, eax
    out 0xf4, al
    mov ebx, 1
    inc r8
    mov byte ptr [0x300000], 0x55
    hlt
"""


@pytest.mark.parametrize("mode", ["exact", "blocks", "fast"])
def test_nothing_after_a_kernel_ends_takes_effect(mode: str):
    """The exit port ends the kernel in the middle of a block: the rest of
    the block changes neither registers nor memory (the core is frozen)."""
    run = run_snippet(Snippet.parse("after_exit", AFTER_EXIT), fast=mode == "fast", exact=mode == "exact")
    assert check_expectations(run) == []


@pytest.mark.parametrize("mode", ["blocks", "fast"])
@pytest.mark.parametrize("path", SNIPPETS, ids=lambda p: p.stem)
def test_every_snippet_holds_when_not_counted_exactly(path: Path, mode: str):
    run = run_snippet(Snippet.load(path), fast=mode == "fast")
    assert check_expectations(run) == []


def test_a_lone_core_runs_ahead_in_fast_mode():
    """One core with nothing else to run: fast mode runs it in far fewer
    slices than the deterministic quantum allows, with the same result."""
    loop = ";! mode = \"long\"\n;! max_instructions = 10000000\n;! quantum = 1000\n" \
           "    mov ecx, 200000\nagain:\n    add rax, rcx\n    dec ecx\n    jnz again\n    cli\n    hlt\n"
    deterministic = run_snippet(Snippet.parse("loop", loop)).machine.cores[0]
    fast = run_snippet(Snippet.parse("loop", loop), fast=True).machine.cores[0]
    assert deterministic.read_register(r.UC_X86_REG_RAX) == fast.read_register(r.UC_X86_REG_RAX) == 20000100000
    assert deterministic.instructions == fast.instructions == 1 + 3 * 200000 + 2
    assert deterministic.slices_run >= 600 and fast.slices_run <= deterministic.slices_run // 32


# ---------------------------------------------------------------- whole guests
def _digest(result, report: Path) -> tuple:
    data = json.loads(report.read_text())
    counts = [core["instructions"] for core in data["cores"]]
    return result.returncode, hashlib.sha256(result.stdout.encode()).hexdigest(), counts, data["virtual_ns"]


@pytest.mark.parametrize("mode", [(), pytest.param(("--exact",), marks=pytest.mark.slow),
                                  pytest.param(("--fast",), marks=pytest.mark.slow)], ids=["blocks", "exact", "fast"])
def test_the_same_guest_gives_the_same_run_twice_in_every_mode(tmp_path, minilinux, mode):
    args = ("boot", "--native", "--sockets", "1", "--cores-per-socket", "8", "--memory", "512M",
            "--cmdline", "primes=20000 rounds=20", *mode, minilinux)
    runs = []
    for attempt in range(2):
        report = tmp_path / f"{attempt}.json"
        runs.append(_digest(run_osvemu(*args, "--report", report), report))
    assert runs[0] == runs[1]
    assert runs[0][0] == 0 and sum(runs[0][2]) > 0


def _summary(stdout: str) -> str:
    return [line for line in stdout.splitlines() if "CPUs online" in line][-1].split("] ", 1)[1]


@pytest.mark.slow
def test_every_mode_gives_the_same_guest_results(minilinux):
    """Timings differ between the modes, the guest's results do not."""
    lines = set()
    for mode in ((), ("--exact",), ("--fast",)):
        result = run_osvemu("boot", "--native", "--sockets", "2", "--cores-per-socket", "4", "--memory", "512M",
                            "--cmdline", "primes=20000 rounds=20", *mode, minilinux)
        assert result.returncode == 0, result.stderr
        lines.add(_summary(result.stdout))
    assert lines == {"minilinux: 8 CPUs online, primes=2262 checksum=0x01430bf7, pingpong=160 checksum=0xc33aebb0: OK"}


def test_fast_and_exact_exclude_each_other(minilinux):
    result = run_osvemu("boot", "--fast", "--exact", minilinux)
    assert result.returncode == 2
    assert result.stderr.strip() == "osvemu: --exact counts deterministic slices, which --fast does not run"


# ---------------------------------------------------------------- scale
def test_the_ioapic_shares_id_0_when_the_processors_take_all_255():
    from osvemu.platform.firmware import FirmwareView
    from osvemu.platform.topology import Topology

    assert FirmwareView.free_apic_id(Topology(1, 255).cpus) == 0
    assert FirmwareView.free_apic_id(Topology(1, 254).cpus) == 254
    assert FirmwareView.free_apic_id(Topology(4, 8).cpus) == 32


@pytest.mark.slow
def test_255_cores_boot_smp_hello_and_minilinux_brings_up_more_than_64(smp_hello_elf, minilinux):
    hello = run_osvemu("boot", "--native", "--sockets", "1", "--cores-per-socket", "255", smp_hello_elf,
                       timeout=900)
    assert hello.returncode == 0, hello.stderr
    assert "smp_hello: 255 of 255 cores online" in hello.stdout
    many = run_osvemu("boot", "--native", "--sockets", "3", "--cores-per-socket", "24", "--memory", "1G",
                      "--cmdline", "primes=5000 rounds=2", minilinux, timeout=900)
    assert many.returncode == 0, many.stderr
    assert _summary(many.stdout).startswith("minilinux: 72 CPUs online")


# ---------------------------------------------------------------- start-up
def test_the_halted_flags_place_is_found_once_and_a_bad_record_is_replaced(tmp_path, monkeypatch):
    """The heap search runs once per libunicorn file; a record that is
    garbage or points elsewhere is searched again and rewritten."""
    import subprocess

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    probe = "from osvemu.cpu import ucinternals as u; print(u._locate_halted())"
    first = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    records = list((tmp_path / "osvemu").glob("unicorn-halted-*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text()) == list(eval(first))
    for garbage in ("not json", "[1, 2, 3]", "[0, 0]", '["a", "b"]'):
        records[0].write_text(garbage)
        again = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        assert again == first
        assert json.loads(records[0].read_text()) == list(eval(first))


@pytest.mark.slow
def test_the_benchmark_runs_side_by_side_with_qemu_and_writes_json(tmp_path):
    """tools/bench.py on one guest, once: every runner's row, and the JSON."""
    import subprocess

    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--repeats", "1", "--only", "smp_hello",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smp_hello 32" in done.stdout and "det/Q" in done.stdout
    document = json.loads(out.read_text())
    assert document["schema"] == "osvemu-bench/1" and document["repeats"] == 1
    runners = {row["runner"] for row in document["guests"]}
    assert runners == {"osvemu deterministic", "osvemu exact", "osvemu fast", "qemu"}
    assert all(row["wall"] > 0 and len(row["samples"]) == 1 for row in document["guests"])


#: RDTSC a hundred times in one block after a write to the TSC: the sum and
#: the last value, which the C hook answers from the second time on.
RDTSC_LOOP = """
;! mode = "long"
;! max_instructions = 100000
    mov ecx, 0x10
    mov eax, 0x1000000
    xor edx, edx
    wrmsr
    mov ecx, 100
    xor r8, r8
again:
    rdtsc
    shl rdx, 32
    or rax, rdx
    add r8, rax
    dec ecx
    jnz again
    mov r9, rax
    cli
    hlt
"""


@pytest.mark.parametrize("mode", ["blocks", "fast"])
def test_rdtsc_answered_in_c_reads_what_the_exact_count_reads(mode: str):
    run = run_snippet(Snippet.parse("rdtsc", RDTSC_LOOP), fast=mode == "fast")
    reference = run_snippet(Snippet.parse("rdtsc", RDTSC_LOOP), exact=True)
    core, exact = run.machine.cores[0], reference.machine.cores[0]
    assert core.read_registers((r.UC_X86_REG_R8, r.UC_X86_REG_R9)) == exact.read_registers(
        (r.UC_X86_REG_R8, r.UC_X86_REG_R9))
    # the last RDTSC is instruction 6 + 99 x 6 + 1, the WRMSR instruction 4; 20 TSC cycles an instruction
    assert exact.read_register(r.UC_X86_REG_R9) == 0x1000000 + 20 * (6 + 99 * 6 + 1 - 4)
    assert core.special_counts["rdtsc"] == exact.special_counts["rdtsc"] == 100
