"""End to end: `osvemu boot` on the smp_hello test guest and on hand-built
PVH images, and the same image on QEMU as an independent machine model."""

from __future__ import annotations

import json
import shutil
import subprocess

from conftest import run_osvemu
from elf_builder import LoadSegment, build_elf, pvh_note
from keystone import KS_ARCH_X86, KS_MODE_32, Ks


def osvemu(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return run_osvemu("boot", "--native", *args, timeout=timeout)


def expected_console(cores: int, cmdline: str = "") -> str:
    first = "smp_hello: PVH boot" + (f', cmdline "{cmdline}"' if cmdline else "")
    lines = [first] + [f"core {i}: APIC ID {i} online" for i in range(cores)]
    return "\n".join(lines + [f"smp_hello: {cores} of {cores} cores online"]) + "\n"


def assemble32(source: str, base: int) -> bytes:
    code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(source, base)
    return bytes(code)


def test_boots_all_32_cores_of_the_default_machine(smp_hello_elf, tmp_path):
    report_path = tmp_path / "report.json"
    run = osvemu(str(smp_hello_elf), "--report", str(report_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected_console(32)
    report = json.loads(report_path.read_text())
    assert report["machine"]["cpus"] == 32 and report["machine"]["sockets"] == 4
    assert report["console"] == run.stdout
    bsp, aps = report["cores"][0], report["cores"][1:]
    # Per AP: INIT, INIT de-assert, and one STARTUP, or two when the AP had
    # not reported yet when the guest checked.
    sent = bsp["ipis_sent_by_mode"]
    assert sent["init"] == sent["init-deassert"] == 31
    assert 31 <= sent["startup"] <= 62
    # Each AP halts after reporting; the last may still be on its way to HLT when the BSP exits.
    assert all(core["instructions"] > 0 for core in aps)
    assert sum(core["final_state"] == "halted" for core in aps) >= 30
    assert all(core["ipis_received"] >= 3 for core in aps)
    assert [core["apic_id"] for core in report["cores"]] == list(range(32))


def test_topology_and_cmdline_reach_the_guest(smp_hello_elf):
    run = osvemu(str(smp_hello_elf), "--sockets", "2", "--cores-per-socket", "3", "--memory", "256M",
                 "--cmdline", "console=ttyS0 quiet")
    assert run.returncode == 0, run.stderr
    # 3 cores per socket use 2 core-ID bits: APIC IDs 0,1,2 and 4,5,6 (AMD BKDG 2.9.2).
    lines = run.stdout.splitlines()
    assert lines[0] == 'smp_hello: PVH boot, cmdline "console=ttyS0 quiet"'
    assert [line.split("APIC ID ")[1] for line in lines[1:7]] == ["0 online", "1 online", "2 online",
                                                                   "4 online", "5 online", "6 online"]
    assert lines[-1] == "smp_hello: 6 of 6 cores online"


def test_runs_are_deterministic(smp_hello_elf, tmp_path):
    reports = []
    for attempt in range(2):
        path = tmp_path / f"r{attempt}.json"
        run = osvemu(str(smp_hello_elf), "--sockets", "2", "--cores-per-socket", "4", "--quantum", "997",
                     "--report", str(path))
        assert run.returncode == 0, run.stderr
        reports.append(json.loads(path.read_text()))
    first, second = ([(c["instructions"], c["interrupts_taken"], c["ipis_received"]) for c in r["cores"]]
                     for r in reports)
    assert first == second
    assert reports[0]["console"] == reports[1]["console"]
    assert reports[0]["virtual_ns"] == reports[1]["virtual_ns"]


def test_fast_mode_boots_the_same_guest(smp_hello_elf):
    run = osvemu(str(smp_hello_elf), "--fast", "--sockets", "1", "--cores-per-socket", "8")
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected_console(8)


def test_same_image_on_qemu(smp_hello_elf):
    """QEMU's pc machine (RSDP revision 0, its own MADT and memory map) runs
    the image to the same console output; isa-debug-exit turns 0 into 1."""
    qemu = shutil.which("qemu-system-x86_64")
    assert qemu, "qemu-system-x86_64 is missing: .ci/run installs the Debian package qemu-system-x86"
    run = subprocess.run([qemu, "-M", "pc", "-smp", "4", "-m", "512M", "-kernel", str(smp_hello_elf),
                          "-append", "from qemu", "-display", "none", "-serial", "stdio", "-monitor", "none",
                          "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
                         capture_output=True, text=True, timeout=120, check=False)
    ours = osvemu(str(smp_hello_elf), "--sockets", "1", "--cores-per-socket", "4", "--memory", "512M",
                  "--cmdline", "from qemu")
    assert run.returncode == (0 << 1) | 1, run.stderr
    assert ours.returncode == 0, ours.stderr
    assert run.stdout.replace("\r\n", "\n") == ours.stdout == expected_console(4, "from qemu")


def test_hand_built_image_with_4_byte_note_and_high_virtual_address(tmp_path):
    """A Xen-style 4-byte PVH note, a segment linked high but loaded at its
    p_paddr, and bss beyond the file data: the guest prints and exits 7."""
    base = 0x200000
    code = assemble32(f"""
        mov edx, 0x3f8
        mov al, 0x6f
        out dx, al
        mov al, 0x6b
        out dx, al
        mov al, 0x0a
        out dx, al
        mov eax, dword ptr [{base + 0x1000:#x}]
        add al, 7
        out 0xf4, al
    """, base)
    image = build_elf([LoadSegment(base, code, vaddr=0xFFFFFFFF80000000 + base, memsz=0x2000)],
                      pvh_note(base, width=4))
    path = tmp_path / "tiny.elf"
    path.write_bytes(image)
    run = osvemu(str(path), "--sockets", "1", "--cores-per-socket", "1", "--memory", "16M")
    assert (run.returncode, run.stdout) == (7, "ok\n"), run.stderr


def test_guest_fault_is_one_line_and_exit_1(tmp_path):
    base = 0x200000
    code = assemble32("ud2", base)  # no IDT at PVH entry: #UD, then #DF, then shutdown
    path = tmp_path / "ud.elf"
    path.write_bytes(build_elf([LoadSegment(base, code)], pvh_note(base)))
    run = osvemu(str(path), "--sockets", "1", "--cores-per-socket", "2", "--memory", "16M")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    fault_line = run.stderr.splitlines()[0]
    assert "core 0 (APIC 0) triple fault" in fault_line and "0x200000" in fault_line and "ud2" in fault_line


def test_instruction_limit_ends_a_spinning_guest(tmp_path):
    base = 0x200000
    path = tmp_path / "spin.elf"
    path.write_bytes(build_elf([LoadSegment(base, assemble32("spin: jmp spin", base))], pvh_note(base)))
    run = osvemu(str(path), "--sockets", "1", "--cores-per-socket", "1", "--memory", "16M",
                 "--max-instructions", "100000")
    assert run.returncode == 124
    assert "max-instructions" in run.stderr
