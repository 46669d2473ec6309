"""`osvemu trace`: instruction and event lines, filters and determinism."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import attacker_pair, run_osvemu
from elf_builder import LoadSegment, build_elf, pvh_note
from keystone import KS_ARCH_X86, KS_MODE_32, Ks

MACHINE = ["--sockets", "1", "--cores-per-socket", "2", "--memory", "64M"]
INSTRUCTION = re.compile(r"^(?:\S+/)?c(\d+)\s+(\d+) (0x[0-9a-f]{16}) (<[^>]*>)?")


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


@pytest.mark.slow
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


# ---------------------------------------------------------------- kernels in traces (issue 13)
#: A small OSV machine: two kernels of two cores each, minilinux with short workloads.
OSV_MACHINE = ["--sockets", "2", "--cores-per-socket", "2", "--memory", "512M",
               "--cmdline", "quiet primes=1000 rounds=5"]
EVENT = re.compile(r"^(\S+)\s+(\d+) \*\*\s+(\S+) (.*)$")


def osv_trace(*args: str) -> subprocess.CompletedProcess:
    return run_osvemu("trace", *args)


def test_osv_lines_name_kernels_and_show_hypercalls(minilinux):
    run = osv_trace(minilinux, *OSV_MACHINE, "--events-only", "--kernel", "k1")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    events = [EVENT.match(line) for line in lines]
    assert all(events), [line for line, m in zip(lines, events) if not m][:3]
    assert {m.group(1) for m in events} == {"k1/c2", "k1/c3"}  # --kernel k1: its two cores, named with it
    assert {line.index(" ** ") for line in lines} == {16}  # "k1/c2", a space, the count right-aligned in 10
    osv = [(m.group(1), m.group(4)) for m in events if m.group(3) == "osv"]
    assert osv == [
        ("k1/c2", "kernel k1: hypercall DESCRIBE_SELF(buffer=0x189e20, length=96) = 96"),
        ("k1/c2", "kernel k1: hypercall DESCRIBE_CHANNEL(channel=0, buffer=0x189e00, length=24) = 24"),
        ("k1/c2", "kernel k1: hypercall NOTIFY(kernel=0, vector=0xf8) = 0"),
        ("k1/c2", "kernel k1: hypercall SHUTDOWN(status=0) = 0"),
    ]
    counts = [int(m.group(2)) for m in events if m.group(3) == "osv"]
    assert counts == sorted(counts)  # in the order the core retired them


def test_kernel_and_core_filters_combine(minilinux):
    run = osv_trace(minilinux, *OSV_MACHINE, "--events-only", "--kernel", "k0", "--kernel", "k1", "--core", "1",
                    "--core", "3")
    assert run.returncode == 0, run.stderr
    assert {EVENT.match(line).group(1) for line in run.stdout.splitlines()} == {"k0/c1", "k1/c3"}


def test_refused_ipis_are_osv_events_once_each(attacker_elf, tmp_path):
    config = tmp_path / "pair.toml"
    config.write_text(attacker_pair(attacker_elf, sender="attack=ipi count=3"))
    run = osv_trace("--config", config, "--events-only")
    assert run.returncode == 0, run.stderr
    osv = [m.group(4) for m in map(EVENT.match, run.stdout.splitlines()) if m and m.group(3) == "osv"
           and m.group(1) == "sender/c2"]
    foreign = "physical destination APIC 0 belongs to another partition"
    smi = "SMI IPIs are refused: System Management Mode belongs to no partition"
    assert [line for line in osv if "refused" in line] == [
        f"kernel sender: ipi refused: fixed vector 0x40 to physical 0x00: {foreign}",
        f"kernel sender: ipi refused: nmi vector 0x00 to physical 0x00: {foreign}",
        f"kernel sender: ipi refused: init vector 0x00 to physical 0x00: {foreign}",
        f"kernel sender: ipi refused: startup vector 0x08 to physical 0x00: {foreign}",
        f"kernel sender: ipi refused: smi vector 0x00 to physical 0x00: {smi}",
        f"kernel sender: ipi refused: smi vector 0x00 to all-excluding-self: {smi}",
    ]
    # each follows its ICR write, which names the refused destination
    assert re.search(r"^sender/c2 +(\d+) \*\* +ipi fixed vector 0x40 to physical 0x00; refused APIC 0: "
                     f"{foreign}\nsender/c2 +\\1 \\*\\* +osv kernel sender: ipi refused", run.stdout, re.MULTILINE)
    assert re.search(r"^sender/c2 +\d+ \*\* +ipi smi vector 0x00 to all-excluding-self; refused: SMI", run.stdout,
                     re.MULTILINE)
    assert re.search(r"^receiver/c0 +\d+ \*\* +uart '\[receiver\] attacker: done'$", run.stdout, re.MULTILINE)


def test_refused_hypercalls_are_osv_events(attacker_elf, tmp_path):
    config = tmp_path / "pair.toml"
    config.write_text(attacker_pair(attacker_elf, sender="attack=notify count=1", channel=False))
    run = osv_trace("--config", config, "--events-only", "--kernel", "sender")
    assert run.returncode == 0, run.stderr
    osv = [m.group(4) for m in map(EVENT.match, run.stdout.splitlines()) if m and m.group(3) == "osv"]
    assert osv[:3] == [
        "kernel sender: hypercall DESCRIBE_SELF(buffer=0x1100e0, length=96) = 96",
        ("kernel sender: hypercall NOTIFY(kernel=0, vector=0x20) = -EPERM: no channel lets this kernel notify "
         "kernel 0 with vector 0x20"),
        "kernel sender: hypercall refused: hypercall 3: no channel lets this kernel notify kernel 0 with vector 0x20",
    ]
    assert sum("= -EPERM" in line for line in osv) == 4  # vectors 32, 0x40, 0xf8, 0xff once each


def test_bad_kernel_names(minilinux, smp_hello_elf):
    run = osv_trace(minilinux, *OSV_MACHINE, "--kernel", "k7")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == "osvemu: --kernel 'k7': no such kernel; the kernels are k0, k1\n"
    run = osv_trace(minilinux, *OSV_MACHINE, "--kernel", "k1", "--core", "0")
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1 and "leave no core" in run.stderr
    run = trace(smp_hello_elf, *MACHINE, "--kernel", "k0")
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1 and "bare machine" in run.stderr


def symbol_at(image, address: int) -> str:
    """The image's own name for ``address`` (``nm``): the nearest text symbol at or below it."""
    table = subprocess.run(["nm", "-n", str(image)], capture_output=True, text=True, check=True).stdout
    names = [(int(value, 16), name) for value, kind, name in (line.split() for line in table.splitlines()
                                                               if len(line.split()) == 3) if kind in "tT"]
    value, name = max(entry for entry in names if entry[0] <= address)
    return f"<{name}+{address - value:#x}>" if address != value else f"<{name}>"


def test_each_kernel_is_symbolised_with_its_own_image(minilinux, attacker_elf, tmp_path):
    config = tmp_path / "mixed.toml"
    config.write_text('[machine]\nsockets = 1\ncores_per_socket = 4\nmemory = "512M"\n'
                      f'[[kernel]]\nname = "linux"\nimage = "{minilinux}"\ncmdline = "quiet primes=1000 rounds=5"\n'
                      'cores = [0, 1]\nmemory = { size = "256M" }\n'
                      f'[[kernel]]\nname = "attacker"\nimage = "{attacker_elf}"\ncmdline = "attack=none"\n'
                      'cores = [2, 3]\nmemory = { size = "64M" }\n')
    run = osv_trace("--config", config, "--events-only")
    assert run.returncode == 0, run.stderr
    halts = re.findall(r"^(linux/c0|attacker/c2) +\d+ \*\* +hlt at (0x[0-9a-f]+) (<\S+>)$", run.stdout, re.MULTILINE)
    seen = {label for label, _, _ in halts}
    assert seen == {"linux/c0", "attacker/c2"}
    for label, address, symbol in halts:
        image = attacker_elf if label.startswith("attacker") else minilinux
        assert symbol == symbol_at(image, int(address, 16)), (label, address, symbol)
    assert symbol_at(minilinux, int(next(a for k, a, _ in halts if k == "attacker/c2"), 16)) != \
        next(s for k, _, s in halts if k == "attacker/c2")  # the first kernel's image names it otherwise
    # --from names a place in the traced kernels' own image
    run = osv_trace("--config", config, "--kernel", "attacker", "--from", "idle", "--count", "2")
    assert run.returncode == 0, run.stderr
    assert [m.group(4) for m in instruction_lines(run.stdout)] == ["<idle>", "<idle+0x1>"]
