"""`osvemu debug` driven by a command script on standard input."""

from __future__ import annotations

import re
import subprocess

from conftest import run_osvemu

MACHINE = ["--sockets", "1", "--cores-per-socket", "2", "--memory", "64M"]


def debug(image, script: str, *args: str) -> subprocess.CompletedProcess:
    return run_osvemu("debug", "--native", image, *MACHINE, *args, input=script)


def after(output: str, command: str) -> str:
    """The console's answer to ``command`` (up to the next prompt)."""
    return output.split(f"(osvemu) {command}\n", 1)[1].split("(osvemu) ", 1)[0]


def test_breakpoints_stepping_and_inspection(smp_hello_elf):
    commands = ["break ap_main", "tbreak kmain", "info breakpoints", "continue", "continue", "info cores",
                "info registers rip rsp", "x/2xg &online_count", "x/3i $rip", "stepi 2", "nexti", "backtrace",
                "disassemble ap_main", "print online_count", "print $rip", "core 0", "core 7", "bogus", "quit"]
    script = "".join(f"{command}\n" for command in commands)
    run = debug(smp_hello_elf, script)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("osvemu debug: 2 cores, all stopped; core 0 at 0x100000 <pvh_start>")
    assert re.search(r"Breakpoint 1 at 0x[0-9a-f]+ <ap_main>", out)
    assert "1       breakpoint      keep" in after(out, "info breakpoints")
    assert "2       breakpoint      del " in after(out, "info breakpoints")
    assert "Core 0 hit temporary breakpoint at" in after(out, "continue")
    second = out.split("(osvemu) continue\n")[2]
    assert "Core 1 hit breakpoint 1 at" in second
    assert re.search(r"=> 0x[0-9a-f]+ <ap_main>:\tmov eax, 0xfee000f0\t\[main\.c:\d+\]", second)  # DWARF line
    cores = after(out, "info cores").splitlines()
    assert cores[2].startswith("* 1    1        running         long 64-bit") and "<ap_main>" in cores[2]
    assert re.match(r"rip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <ap_main>", after(out, "info registers rip rsp"))
    assert re.match(r"0x[0-9a-f]+ <online_count>:\t0x0000000000000001\t0x0000000000000000",
                    after(out, "x/2xg &online_count"))
    assert len(after(out, "x/3i $rip").splitlines()) == 3
    assert "<ap_main+0xb>:\tjmp" in after(out, "stepi 2")
    assert "<report_online>:\tpush rbp" in after(out, "nexti")
    assert after(out, "backtrace").startswith("#0  0x")
    assert after(out, "print online_count") == "$1 = 1 (0x1)\n"
    assert "<report_online>" in after(out, "print $rip")
    assert "[Switching to core 0 (APIC ID 0)]" in after(out, "core 0")
    assert "Invalid core 7" in after(out, "core 7")
    assert 'Undefined command: "bogus"' in after(out, "bogus")


def test_watch_finish_and_run_to_the_end(smp_hello_elf):
    script = "watch online_count\ncontinue\ncontinue\nfinish\ndelete\ncontinue\ninfo cores\nquit\n"
    run = debug(smp_hello_elf, script, "--cmdline", "debugging")
    out = run.stdout
    first = after(out, "watch online_count")
    assert re.match(r"Hardware watchpoint 1: 0x[0-9a-f]+ <online_count> \(4 bytes\)", first)
    hits = out.split("(osvemu) continue\n")
    assert "Core 0 hit write watchpoint on" in hits[1] and "Old value = 0x0\nNew value = 0x1" in hits[1]
    assert "Core 1 hit write watchpoint on" in hits[2] and "Old value = 0x1\nNew value = 0x2" in hits[2]
    assert "Run till exit to" in after(out, "finish")
    assert "[machine stopped: guest wrote 0 to the exit port (core 0); exit status 0]" in hits[3]
    assert 'smp_hello: PVH boot, cmdline "debugging"' in out
    assert run.returncode == 0


def test_exit_status_of_the_guest_is_the_consoles(smp_hello_elf):
    """`print`-style writes are gdb's job; the console reports the guest's own status."""
    run = debug(smp_hello_elf, "continue\n")
    assert run.returncode == 0
    assert "exit status 0" in run.stdout
