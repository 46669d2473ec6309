"""`osvemu debug` driven by a command script on standard input."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_osvemu

from osvemu.cli import build_parser, prepare
from osvemu.debug.console import DebugConsole
from osvemu.errors import ConfigError
from osvemu.image import load_image

MACHINE = ["--sockets", "1", "--cores-per-socket", "2", "--memory", "64M"]


def debug(image, script: str, *args: str) -> subprocess.CompletedProcess:
    return run_osvemu("debug", "--native", image, *MACHINE, *args, input=script)


def script_of(commands: list[str]) -> str:
    return "".join(f"{command}\n" for command in commands)


def after(output: str, command: str, occurrence: int = 1) -> str:
    """The console's answer to the ``occurrence``-th ``command`` (up to the next prompt)."""
    return output.split(f"(osvemu) {command}\n")[occurrence].split("(osvemu) ", 1)[0]


def test_breakpoints_stepping_and_inspection(smp_hello_elf):
    commands = ["break ap_main", "tbreak kmain", "info breakpoints", "continue", "continue", "info cores",
                "info registers rip rsp", "x/2xg &online_count", "x/3i $rip", "stepi 2", "nexti", "backtrace",
                "disassemble ap_main", "disassemble kmain", "print online_count", "print $rip", "core 0", "core c1",
                "core 7", "bogus", "quit"]
    run = debug(smp_hello_elf, script_of(commands))
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("osvemu debug: 2 cores, all stopped; core c0 at 0x100000 <pvh_start> (running)")
    assert re.search(r"Breakpoint 1 at 0x[0-9a-f]+ <ap_main>\n", out)
    assert "1       breakpoint      keep" in after(out, "info breakpoints")
    assert "2       breakpoint      del " in after(out, "info breakpoints")
    assert "Core c0 hit temporary breakpoint at" in after(out, "continue")
    second = after(out, "continue", 2)
    assert "Core c1 hit breakpoint 1 at" in second
    assert re.search(r"=> 0x[0-9a-f]+ <ap_main>:\tmov eax, 0xfee000f0\t\[main\.c:\d+\]", second)  # DWARF line
    cores = after(out, "info cores").splitlines()
    assert cores[0] == "  Id   APIC ID  State           Mode                 RIP"  # no kernels on the bare machine
    assert cores[2].startswith("* 1    1        running         long 64-bit          ") and "<ap_main>" in cores[2]
    assert re.match(r"rip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <ap_main>", after(out, "info registers rip rsp"))
    assert re.match(r"0x[0-9a-f]+ <online_count>:\t0x0000000000000001\t0x0000000000000000",
                    after(out, "x/2xg &online_count"))
    assert len(after(out, "x/3i $rip").splitlines()) == 3
    symbols = load_image(smp_hello_elf).symbols
    report_online = symbols.address_of("report_online")
    # Direct branch targets are named, as gdb names them.
    assert f"<ap_main+0xb>:\tjmp {report_online:#x} <report_online>" in after(out, "stepi 2")
    assert f"   {symbols.address_of('ap_main') + 0xb:#x} <ap_main+0xb>:\tjmp {report_online:#x} <report_online>\n" \
        in after(out, "disassemble ap_main")
    assert re.search(rf"\tcall {report_online:#x} <report_online>\n", after(out, "disassemble kmain"))
    assert "<report_online>:\tpush rbp" in after(out, "nexti")
    assert after(out, "backtrace").startswith("#0  0x")
    assert after(out, "print online_count") == "$1 = 1 (0x1)\n"
    assert "<report_online>" in after(out, "print $rip")
    assert "[Switching to core c0 (APIC ID 0)]" in after(out, "core 0")
    assert "[Switching to core c1 (APIC ID 1)]" in after(out, "core c1")
    assert after(out, "core 7") == "Invalid core 7: the machine has cores 0-1\n"
    assert 'Undefined command: "bogus"' in after(out, "bogus")


def test_watch_finish_and_run_to_the_end(smp_hello_elf):
    script = "watch online_count\ncontinue\ncontinue\nfinish\ndelete\ncontinue\ninfo cores\nquit\n"
    run = debug(smp_hello_elf, script, "--cmdline", "debugging")
    out = run.stdout
    first = after(out, "watch online_count")
    assert re.match(r"Hardware watchpoint 1: 0x[0-9a-f]+ <online_count> \(4 bytes\)", first)
    hits = out.split("(osvemu) continue\n")
    assert "Core c0 hit write watchpoint on" in hits[1] and "Old value = 0x0\nNew value = 0x1" in hits[1]
    assert "Core c1 hit write watchpoint on" in hits[2] and "Old value = 0x1\nNew value = 0x2" in hits[2]
    assert "Run till exit to" in after(out, "finish")
    assert "[machine stopped: guest wrote 0 to the exit port (core 0); exit status 0]" in hits[3]
    assert 'smp_hello: PVH boot, cmdline "debugging"' in out
    assert run.returncode == 0


def test_exit_status_of_the_guest_is_the_consoles(smp_hello_elf):
    """`print`-style writes are gdb's job; the console reports the guest's own status."""
    run = debug(smp_hello_elf, "continue\n")
    assert run.returncode == 0
    assert "exit status 0" in run.stdout


def test_print_formats_and_expressions(smp_hello_elf):
    """print/FMT with gdb's letters, C's operators and precedence, the value history."""
    commands = ["print/x 255", "print/z 255", "print/d -1", "print/u -1", "print/o 8", "print/o 0", "print/t 10",
                "print/c 65", "print/c 10", "print/c 200", "print/a kmain+4", "print/x success_status",
                "print 2+3*4", "print (2+3)*4", "print 1 << 4 | 1", "print -7/2", "print -7%2", "print 010",
                "print ~0", "print $1 + $$", "print $", "print &kmain", "print kmain - ap_main", "print/x *&kmain",
                "print $cs", "p/x 16"]
    run = debug(smp_hello_elf, script_of(commands + ["quit"]))
    out = run.stdout
    symbols = load_image(smp_hello_elf).symbols
    kmain, ap_main = symbols.address_of("kmain"), symbols.address_of("ap_main")
    code = load_image(smp_hello_elf).segments[0]
    first_quadword = int.from_bytes(code.data[kmain - code.vaddr:kmain - code.vaddr + 8], "little")
    expected = ["$1 = 0xff", "$2 = 0x00000000000000ff", "$3 = -1", "$4 = 18446744073709551615", "$5 = 010",
                "$6 = 0", "$7 = 1010", "$8 = 65 'A'", "$9 = 10 '\\n'", "$10 = -56 '\\310'",
                f"$11 = {kmain + 4:#x} <kmain+0x4>", "$12 = 0x0", "$13 = 14 (0xe)", "$14 = 20 (0x14)",
                "$15 = 17 (0x11)", "$16 = -3 (0xfffffffffffffffd)", "$17 = -1 (0xffffffffffffffff)",
                "$18 = 8 (0x8)", "$19 = -1 (0xffffffffffffffff)", "$20 = 263 (0x107)", "$21 = 263 (0x107)",
                f"$22 = {kmain:#x} <kmain>", f"$23 = {kmain - ap_main} ({kmain - ap_main:#x})",
                f"$24 = {first_quadword:#x}", "$25 = 8 (0x8)", "$26 = 0x10"]
    for command, answer in zip(commands, expected):
        assert after(out, command) == answer + "\n", command


MALFORMED = [
    ("print 1+", 'Malformed expression "1+": it ends where a value is expected'),
    ("print (1", 'Malformed expression "(1": ")" expected at the end'),
    ("print 1 2", 'Malformed expression "1 2": unexpected "2" after a complete value'),
    ("print *", 'Malformed expression "*": it ends where a value is expected'),
    ("print (1))", 'Malformed expression "(1))": unexpected ")" after a complete value'),
    ("print 1 @ 2", 'Malformed expression "1 @ 2": invalid character "@"'),
    ("print $nosuchreg", 'No register or value "$nosuchreg"'),
    ("print nosuchsym", 'No symbol "nosuchsym" in current context.'),
    ("print 12abc", 'Invalid number "12abc".'),
    ("print 1/0", "Division by zero"),
    ("print $7", "History has not yet reached $7."),
    ("print/q 1", 'Undefined output format "q".'),
    ("print/2x 1", 'Item count other than 1 is meaningless in "print" command.'),
    ("print/xw 1", 'Size letters are meaningless in "print" command.'),
    ("print/i 1", 'Format letter "i" is meaningless in "print" command.'),
    ("break 1+", 'Malformed expression "1+": it ends where a value is expected'),
]


def test_malformed_expressions_are_errors(smp_hello_elf):
    """Each is refused with what is wrong and prints no value; the console goes on."""
    run = debug(smp_hello_elf, script_of([expression for expression, _ in MALFORMED] + ["print 5", "quit"]))
    for expression, error in MALFORMED:
        assert after(run.stdout, expression) == error + "\n", expression
    assert after(run.stdout, "print 5") == "$1 = 5 (0x5)\n"  # nothing went into the value history
    assert run.returncode == 0


def test_mode_names_follow_cr0_efer_and_cs(smp_hello_elf):
    """Intel SDM Vol. 3A 2.2 and 3.4.5: core 0 enters in protected mode, is
    in compatibility mode on the last instruction before its far jump to
    64-bit code; the AP waits for its SIPI, then starts in real mode at the
    trampoline, sets CR0.PE (protected mode, still a 16-bit CS) and jumps to
    32-bit code."""
    commands = ["info cores", "tbreak *bsp_entry64 - 1", "continue", "info cores", "break *0x8000", "continue",
                "info cores", "stepi 7", "info cores", "stepi", "info cores", "quit"]
    out = debug(smp_hello_elf, script_of(commands)).stdout

    def modes(occurrence: int) -> list[str]:
        return [line[32:52].rstrip() for line in after(out, "info cores", occurrence).splitlines()[1:]]

    assert modes(1) == ["protected 32-bit", "wait-for-SIPI"]
    assert modes(2) == ["compatibility 32-bit", "wait-for-SIPI"]
    assert "Core c1 hit breakpoint 2 at 0x8000" in after(out, "continue", 2)
    assert modes(3) == ["long 64-bit", "real 16-bit"]
    assert after(out, "stepi 7") == "=> 0x15:\tjmp ptr [0x64]\n"  # CS:IP 0x800:0x15, the far jump
    assert modes(4) == ["long 64-bit", "protected 16-bit"]
    assert modes(5) == ["long 64-bit", "protected 32-bit"]
    assert "wait-for-SIPI   wait-for-SIPI" in after(out, "info cores")


def osv_config(tmp_path, smp_hello_elf, attacker_elf) -> str:
    """Two kernels with different images: smp_hello on cores 0-1 and the
    attacker guest (its APs halt) on 2-3."""
    path = tmp_path / "two.toml"
    path.write_text('[machine]\nsockets = 1\ncores_per_socket = 4\nmemory = "256M"\n'
                    f'[[kernel]]\nname = "hello"\nimage = "{smp_hello_elf}"\ncores = [0, 1]\n'
                    'memory = { size = "64M" }\n'
                    f'[[kernel]]\nname = "attacker"\nimage = "{attacker_elf}"\ncmdline = "attack=halt"\n'
                    'cores = [2, 3]\nmemory = { size = "64M" }\n')
    return str(path)


def test_kernels_named_with_their_own_symbols(tmp_path, smp_hello_elf, attacker_elf):
    """Under OSV every core is named with its kernel and symbolised with its
    kernel's image: `break ap_main` on the attacker kernel is the attacker's
    ap_main, and stops only the attacker's cores."""
    config = osv_config(tmp_path, smp_hello_elf, attacker_elf)
    commands = ["info kernels", "info cores", "kernel attacker", "break ap_main", "continue", "info cores",
                "backtrace", "disassemble", "print/x &ap_main", "kernel hello", "print/x &ap_main", "kernel",
                "kernel nope", "core attacker/c3", "continue", "info kernels", "quit"]
    run = run_osvemu("debug", "--config", config, input=script_of(commands))
    assert run.returncode == 0, run.stderr
    out = run.stdout
    hello, attacker = load_image(smp_hello_elf).symbols, load_image(attacker_elf).symbols
    ap_main, cpu_init_ap = attacker.address_of("ap_main"), attacker.address_of("cpu_init_ap")
    assert ap_main != hello.address_of("ap_main")
    assert out.startswith("osvemu debug: 4 cores in 2 kernels (hello, attacker), all stopped; "
                          "core hello/c0 at 0x100000 <pvh_start> (running)\n")
    kernels = after(out, "info kernels").splitlines()
    assert re.fullmatch(r"  Name +Cores +APIC IDs +Image +State", kernels[0])
    assert re.fullmatch(rf"\* hello +0-1 +0-1 +{re.escape(str(smp_hello_elf))} +running", kernels[1])
    assert re.fullmatch(rf"  attacker +2-3 +2-3 +{re.escape(str(attacker_elf))} +running", kernels[2])
    cores = after(out, "info cores").splitlines()
    assert cores[0] == "  Id   Kernel   APIC ID  State           Mode                 RIP"
    assert cores[3] == "  2    attacker 2        running         protected 32-bit     0x100000 <pvh_start>"
    assert "[Switching to kernel attacker, core attacker/c2 (APIC ID 2)]" in after(out, "kernel attacker")
    assert after(out, "break ap_main") == f"Breakpoint 1 at {ap_main:#x} <ap_main> (kernel attacker)\n"
    hit = after(out, "continue")
    assert f"Core attacker/c3 hit breakpoint 1 at {ap_main:#x} <ap_main>\n" in hit
    assert "[hello] smp_hello: 2 of 2 cores online" in hit  # the hello kernel's AP ran through its own 0x1004b0
    assert f"=> {ap_main:#x} <ap_main>:\tpush rbp\t[smp.c:" in hit
    cores = after(out, "info cores", 2).splitlines()
    assert cores[4] == f"* 3    attacker 3        running         long 64-bit          {ap_main:#x} <ap_main>"
    assert after(out, "backtrace").startswith(f"#0  {ap_main:#x} <ap_main>\n")
    assert f"   {ap_main + 4:#x} <ap_main+0x4>:\tcall {cpu_init_ap:#x} <cpu_init_ap>\n" in after(out, "disassemble")
    assert after(out, "print/x &ap_main") == f"$1 = {ap_main:#x}\n"
    assert after(out, "print/x &ap_main", 2) == f"$2 = {hello.address_of('ap_main'):#x}\n"
    assert after(out, "kernel") == "[Current kernel is hello]\n"
    assert after(out, "kernel nope") == "kernel nope: the kernels are hello, attacker\n"
    kernels = after(out, "info kernels", 2).splitlines()
    assert kernels[1].endswith(" exited with status 0 (wrote 0 to port 0xf4)")
    assert kernels[2].startswith("* attacker") and kernels[2].endswith(" halted: no core can run again: halted "
                                                                        "with interrupts off")


def test_the_kernel_option_picks_the_first_core(tmp_path, smp_hello_elf, attacker_elf):
    """`osvemu debug --kernel NAME`: the session starts on that kernel's
    first core, and `info cores` lists its cores first; a name no kernel has
    is refused before any command."""
    config = osv_config(tmp_path, smp_hello_elf, attacker_elf)
    args = build_parser().parse_args(["debug", "--config", config])
    session = prepare(args, exact=True)
    with pytest.raises(ConfigError, match=r"^--kernel k1: the kernels are hello, attacker$"):
        DebugConsole(session.machine, session.scheduler, session.image, kernel="k1")
    console = DebugConsole(session.machine, session.scheduler, session.image, kernel="attacker")
    out = io.StringIO()
    assert console.main(io.StringIO("info cores\nquit\n"), out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == ("osvemu debug: 4 cores in 2 kernels (hello, attacker), all stopped; core attacker/c2 at "
                        "0x100000 <pvh_start> (running)")
    assert [line[:16] for line in lines[3:7]] == ["* 2    attacker ", "  3    attacker ", "  0    hello    ",
                                                  "  1    hello    "]


def test_ctrl_c_during_continue_returns_to_the_prompt(spinning_image):
    """SIGINT while the machine runs pauses it (the session goes on): the
    console says where every core is, and later commands work -- a second
    continue runs on from there."""
    process = subprocess.Popen([sys.executable, "-m", "osvemu", "debug", "--native", str(spinning_image), *MACHINE],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    process.stdin.write("continue\ninfo cores\nprint $eax\ncontinue\nprint $eax - $1\nquit\n")
    process.stdin.flush()
    seen = ""
    for _ in range(2):
        while not seen.endswith("(osvemu) continue\n"):
            line = process.stdout.readline()
            assert line, seen + process.stderr.read()
            seen += line
        time.sleep(0.3)  # the machine runs: the spinning core counts in EAX
        process.send_signal(signal.SIGINT)
        seen += process.stdout.readline()
    rest, stderr = process.communicate(timeout=60)
    out = seen + rest
    assert process.returncode == 0, stderr
    assert stderr == ""
    stopped = after(out, "continue").splitlines()
    assert stopped[:4] == ["Interrupted (Ctrl-C): every core stopped",
                           "  Id   APIC ID  State           Mode                 RIP",
                           stopped[2], "  1    1        wait-for-SIPI   wait-for-SIPI        0x0"]
    assert re.fullmatch(r"\* 0    0        running         protected 32-bit     0x20000[01]", stopped[2])
    assert re.fullmatch(r"=> 0x20000[01]:\t(inc eax|jmp 0x200000)", stopped[4])
    assert after(out, "info cores").splitlines()[1] == stopped[2]
    first = int(re.fullmatch(r"\$1 = (\d+) \(0x[0-9a-f]+\)\n", after(out, "print $eax")).group(1))
    assert first > 0
    assert "Interrupted (Ctrl-C): every core stopped" in after(out, "continue", 2)
    assert re.fullmatch(r"\$2 = [1-9]\d* \(0x[0-9a-f]+\)\n", after(out, "print $eax - $1"))


def test_symbols_option_names_the_kernels_of_its_image(tmp_path, smp_hello_elf, attacker_elf):
    """--symbols names the kernels that run the image it is for (the first
    kernel's); a kernel running another image keeps that image's symbols."""
    stripped = tmp_path / "smp_hello-stripped.elf"
    subprocess.run(["strip", "-o", str(stripped), str(smp_hello_elf)], check=True)
    config = osv_config(tmp_path, stripped, attacker_elf)
    commands = ["break ap_main", "kernel attacker", "break ap_main", "quit"]
    bare = run_osvemu("debug", "--config", config, input=script_of(commands))
    assert after(bare.stdout, "break ap_main") == 'No symbol "ap_main" in current context.\n'
    named = run_osvemu("debug", "--config", config, "--symbols", str(smp_hello_elf), input=script_of(commands))
    hello, attacker = load_image(smp_hello_elf).symbols, load_image(attacker_elf).symbols
    assert after(named.stdout, "break ap_main") == \
        f"Breakpoint 1 at {hello.address_of('ap_main'):#x} <ap_main> (kernel hello)\n"
    assert after(named.stdout, "break ap_main", 2) == \
        f"Breakpoint 2 at {attacker.address_of('ap_main'):#x} <ap_main> (kernel attacker)\n"
