"""`osvemu trace`: instruction and event lines, filters and determinism."""

from __future__ import annotations

import re
import subprocess

from conftest import run_osvemu
from elf_builder import LoadSegment, build_elf, pvh_note
from keystone import KS_ARCH_X86, KS_MODE_32, Ks

MACHINE = ["--sockets", "1", "--cores-per-socket", "2", "--memory", "64M"]
INSTRUCTION = re.compile(r"^c(\d+)\s+(\d+) (0x[0-9a-f]{16}) (<[^>]*>)?")


def trace(image, *args: str) -> subprocess.CompletedProcess:
    return run_osvemu("trace", "--native", image, *args)


def instruction_lines(text: str) -> list[re.Match]:
    return [m for m in map(INSTRUCTION.match, text.splitlines()) if m]


def test_instruction_lines_with_register_changes(smp_hello_elf):
    run = trace(smp_hello_elf, *MACHINE, "--count", "12", "--regs")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    found = instruction_lines(run.stdout)
    assert len(found) == 12
    assert [int(m.group(2)) for m in found] == list(range(12))  # retired-instruction index on core 0
    assert lines[0].split()[3:6] == ["<pvh_start>", "fa", "cli"]
    # mov esp, boot_stack_top: the changed register follows the instruction line.
    stack = lines.index(next(line for line in lines if "mov esp, 0x" in line))
    assert re.fullmatch(r"\s+rsp 0x0 -> 0x[0-9a-f]+", lines[stack + 1])
    assert "traced 12 instructions (--count)" not in run.stdout  # the reason goes nowhere but the exit status


def test_events_of_an_smp_boot(smp_hello_elf):
    run = trace(smp_hello_elf, *MACHINE, "--events-only")
    assert run.returncode == 0, run.stderr
    assert not instruction_lines(run.stdout)
    text = run.stdout
    assert re.search(r"^c0 .* ipi init vector 0x00 to physical 0x01 -> APIC 1$", text, re.MULTILINE)
    assert re.search(r"^c1 .* ipi-received startup vector 0x08 to physical 0x01 from APIC 0$", text, re.MULTILINE)
    assert re.search(r"^c1 .* sipi vector 0x08: start in real mode at 0x8000$", text, re.MULTILINE)
    assert re.search(r"^c1 .* mode real -> long 64-bit$", text, re.MULTILINE)
    assert re.search(r"^c0 .* mode protected 32-bit, paging off -> long 64-bit$", text, re.MULTILINE)
    assert re.search(r"^c1 .* uart 'core 1: APIC ID 1 online'$", text, re.MULTILINE)
    assert re.search(r"^c1 .* hlt at 0x[0-9a-f]+ <halt_forever\+0x2>$", text, re.MULTILINE)
    assert text.splitlines()[-1].endswith("exit guest wrote 0 to port 0xf4")


def test_traces_are_byte_identical(smp_hello_elf):
    args = (*MACHINE, "--from", "ap_main", "--count", "300", "--regs", "--watch", "online_count:4")
    first, second = trace(smp_hello_elf, *args), trace(smp_hello_elf, *args)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout and len(first.stdout) > 10000
    events_first, events_second = (trace(smp_hello_elf, "--events-only") for _ in range(2))
    assert events_first.stdout == events_second.stdout


def test_from_core_and_range_filters(smp_hello_elf, tmp_path):
    image = smp_hello_elf
    run = trace(image, *MACHINE, "--core", "1", "--from", "ap_main", "--count", "20")
    found = instruction_lines(run.stdout)
    assert found[0].group(4) == "<ap_main>" and {m.group(1) for m in found} == {"1"}
    assert len(found) == 20
    # --range: only instructions inside [report_online, ap_main)
    symbols = subprocess.run(["nm", str(image)], capture_output=True, text=True, check=True).stdout
    address = {line.split()[2]: int(line.split()[0], 16) for line in symbols.splitlines()}
    lo, hi = address["report_online"], address["ap_main"]
    run = trace(image, *MACHINE, "--range", f"report_online-{hi:#x}")
    found = instruction_lines(run.stdout)
    assert found and all(lo <= int(m.group(3), 16) <= hi for m in found)
    assert {m.group(1) for m in found} == {"0", "1"}  # both cores run report_online


def test_until_ends_the_run_and_watch_reports_writes(smp_hello_elf):
    run = trace(smp_hello_elf, *MACHINE, "--events-only", "--watch", "online_count:4", "--until", "halt_forever")
    assert run.returncode == 0, run.stderr
    writes = re.findall(r"write \[(0x[0-9a-f]+)\] 4 bytes = (0x[0-9a-f]+) by 0x[0-9a-f]+ <report_online",
                        run.stdout)
    assert [value for _, value in writes] == ["0x1", "0x2"]
    assert run.stdout.splitlines()[-1].split()[2:] == ["**", "until", "reached", run.stdout.splitlines()[-1]
                                                       .split()[5], "<halt_forever>"]


def test_output_file_and_console(smp_hello_elf, tmp_path):
    out = tmp_path / "trace.txt"
    run = trace(smp_hello_elf, *MACHINE, "--events-only", "-o", str(out))
    assert run.returncode == 0
    assert run.stdout.splitlines()[-1] == "smp_hello: 2 of 2 cores online"  # the console still goes to stdout
    assert "uart 'smp_hello: 2 of 2 cores online'" in out.read_text()


def test_interrupts_and_exceptions_are_events(tmp_path):
    """A 32-bit guest that takes `int 0x30` and a self-IPI through its own IDT."""
    base = 0x200000
    source = """
        mov esp, 0x90000
        lidt [idtr]
        mov eax, handler30
        mov ebx, 0x30
        call set_gate
        mov eax, handler40
        mov ebx, 0x40
        call set_gate
        int 0x30
        mov dword ptr [0xfee000f0], 0x1ff
        sti
        mov dword ptr [0xfee00300], 0x40040
        nop
        mov al, byte ptr [count]
        out 0xf4, al
    set_gate:
        mov word ptr [idt + ebx*8], ax
        mov word ptr [idt + ebx*8 + 2], 0x08
        mov word ptr [idt + ebx*8 + 4], 0x8e00
        shr eax, 16
        mov word ptr [idt + ebx*8 + 6], ax
        ret
    handler30:
        inc byte ptr [count]
        iretd
    handler40:
        inc byte ptr [count]
        mov dword ptr [0xfee000b0], 0
        iretd
    count:
        .byte 0
    idtr:
        .word 0x7ff
        .long idt
    .align 8
    idt:
    """
    code = bytes(Ks(KS_ARCH_X86, KS_MODE_32).asm(source, base)[0]) + bytes(0x800)
    image = tmp_path / "idt.elf"
    image.write_bytes(build_elf([LoadSegment(base, code)], pvh_note(base)))
    run = trace(image, "--sockets", "1", "--cores-per-socket", "1", "--memory", "16M", "--events-only")
    assert run.returncode == 2, run.stderr  # the guest counted both interrupts
    assert re.search(r"^c0 .* int vector 0x30 at 0x2000[0-9a-f]+ -> handler 0x2000[0-9a-f]+, frame at rsp",
                     run.stdout, re.MULTILINE)
    assert re.search(r"^c0 .* ipi fixed vector 0x40 to self -> APIC 0$", run.stdout, re.MULTILINE)
    assert re.search(r"^c0 .* interrupt vector 0x40 at 0x2000[0-9a-f]+ -> handler", run.stdout, re.MULTILINE)


def test_bad_trace_options(smp_hello_elf):
    for args, words in ((["--from", "no_such_symbol"], "no such symbol"), (["--fast"], "--fast"),
                        (["--core", "9"], "--core 9"), (["--range", "5"], "LO-HI")):
        run = trace(smp_hello_elf, *MACHINE, *args)
        assert run.returncode == 2 and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and words in run.stderr
