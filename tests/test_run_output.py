"""What a run tells its user, and the conventions of the command line: the
end-of-run summary and the moment a kernel is stopped, where each core was
when a run is cut short, Ctrl-C, progress, where each stream goes (-serial,
-D, --report -), QEMU's spellings, --version, one "osvemu:" prefix, each
subcommand's own options, every documented exit status, osvemu tables and
osvemu snippet."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_osvemu

from osvemu import progress
from osvemu.cli import EXIT_STATUSES, build_parser, main
from osvemu.summary import id_ranges

MINILINUX = ROOT / "guests" / "minilinux.elf"
ATTACKER = ROOT / "tests" / "guests" / "build" / "attacker.elf"
SMALL = ["--sockets", "1", "--cores-per-socket", "2", "--memory", "64M"]
#: The summary table's columns are two spaces apart or more.
COLUMNS = re.compile(r"\s{2,}")


def _pair(tmp_path, attack: str = "attack=stack") -> str:
    config = tmp_path / "pair.toml"
    text = '[machine]\nsockets = 1\ncores_per_socket = 4\nmemory = "256M"\n'
    for name, cmdline, cores in (("A", attack, "[0, 1]"), ("B", "attack=none", "[2, 3]")):
        text += (f'[[kernel]]\nname = "{name}"\nimage = "{ATTACKER}"\ncmdline = "{cmdline}"\ncores = {cores}\n'
                 'memory = { size = "64M" }\non_violation = "stop"\n')
    config.write_text(text)
    return str(config)


# ---------------------------------------------------------------- the summary
def test_the_summary_of_a_run_with_a_stopped_attacker(tmp_path):
    """The stop is announced when it happens; then the kernel that did not
    end cleanly, and the table: every column but host time is exact."""
    done = run_osvemu("boot", "--config", _pair(tmp_path))
    assert done.returncode == 255
    lines = done.stderr.splitlines()
    assert lines[0] == ("osv: kernel A stopped: memory: write to 0x400017d8 (40 bytes) outside the kernel's memory "
                        "(A/c0, rip 0x10096c)")
    assert lines[1] == ('osvemu: kernel "A": stopped for a violation: memory: write to 0x400017d8 (40 bytes) outside '
                        "the kernel's memory")
    assert re.fullmatch(r"osv: 2 kernels, deterministic scheduling, 0\.016 s virtual, \d+\.\d\d s host: every kernel "
                        r"ended \(1 of 2 cleanly\)", lines[2]), lines[2]
    cells = [COLUMNS.split(line) for line in lines[3:6]]
    assert [row[:6] + row[7:] for row in cells] == [  # the host column (6) varies
        ["kernel", "cores (APIC)", "memory", "ended", "instructions", "virtual", "IPIs sent/refused", "hypercalls",
         "violations"],
        ["A", "0-1", "64 MiB (node 0)", "stopped (255)", "34,820", "0.016 s", "0/0", "1", "memory 1"],
        ["B", "2-3", "64 MiB (node 0)", "idle (0)", "1,136,085", "0.016 s", "0/0", "1", "-"],
    ]
    assert all(re.fullmatch(r"\d+\.\d\d s", row[6]) for row in cells[1:])
    assert lines[6:] == ["monitor exits: hypercall 2, icr 0, violation 1; violations: 1"]
    quiet = run_osvemu("boot", "--quiet", "--config", _pair(tmp_path))
    assert quiet.stderr.splitlines() == lines[1:2]  # the kernel's end only
    assert quiet.stdout == done.stdout


def test_the_bare_machine_has_no_summary_but_a_cut_short_run_says_where_each_core_was():
    native = run_osvemu("boot", MINILINUX, "--native", *SMALL, "--cmdline", "primes=1000 rounds=2")
    assert native.returncode == 0 and native.stderr == ""
    cut = run_osvemu("boot", MINILINUX, "--native", *SMALL, "--max-instructions", "300000")
    assert cut.returncode == 124
    assert cut.stderr.splitlines()[1:] == [
        "where each core was:",
        "  c0: running, rip 0x101290 <memset+0x10>, 319,991 instructions",
        "  (1 cores never started)",
    ], cut.stderr


def test_ctrl_c_ends_the_run_with_the_summary_and_the_report(tmp_path):
    report = tmp_path / "r.json"
    process = subprocess.Popen([sys.executable, "-m", "osvemu", "boot", MINILINUX, "--jobs", "1", "--report", report,
                                "--cmdline", "primes=3000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    time.sleep(2.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    lines = err.splitlines()
    assert lines[:4] == [f'osvemu: kernel "k{i}": unfinished: interrupted (Ctrl-C)' for i in range(4)]
    assert lines[4] == "where each core was:" and lines[5].startswith("  k0/c0: running, rip 0x")
    assert any(line.startswith("osv: 4 kernels, deterministic scheduling") and line.endswith(": interrupted (Ctrl-C)")
               for line in lines)
    data = json.loads(report.read_text())
    assert (data["exit_status"], data["reason"]) == (130, "interrupted (Ctrl-C)")
    assert [kernel["end"]["detail"] for kernel in data["kernels"]] == ["interrupted (Ctrl-C)"] * 4


# ---------------------------------------------------------------- progress
def test_the_progress_line_is_drawn_from_samples_after_the_first_second(monkeypatch):
    """--progress on a log: a line per interval once the run has lasted
    SHOW_AFTER_SECONDS; a short run shows nothing."""
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 0.05)
    monkeypatch.setattr(progress, "LOG_INTERVAL_SECONDS", 0.05)
    samples = iter(range(1, 1000))

    def sample() -> progress.Sample:
        step = next(samples)
        return progress.Sample(step * 1_000_000, step * 10_000_000, 1, 4, 2)

    log = io.StringIO()
    with progress.Progress(sample, log, live=False, lines=True):
        time.sleep(0.32)
    lines = log.getvalue().splitlines()
    assert 3 <= len(lines) <= 8
    assert re.fullmatch(r"osvemu: 0\.001 s virtual, 0\.\d s host, \d+ MIPS, 10,000,000 instructions, "
                        r"kernels finished 1/4, violations 2", lines[0]), lines[0]
    short = io.StringIO()
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 5)
    with progress.Progress(sample, short, live=False, lines=True):
        pass
    assert short.getvalue() == ""


@pytest.mark.slow
def test_progress_lines_reach_a_log_and_the_live_line_never_does(tmp_path):
    log = tmp_path / "osvemu.log"
    done = run_osvemu("boot", MINILINUX, "--progress", "-D", log, "--cmdline", "primes=150000")
    assert done.returncode == 0 and done.stderr == ""
    lines = log.read_text().splitlines()
    assert lines[0].startswith("osvemu: ") and " s virtual, " in lines[0] and "kernels finished" in lines[0]
    assert lines[-1].startswith("monitor exits: ")
    quiet = run_osvemu("boot", MINILINUX, "--cmdline", "primes=150000", "--quiet")
    assert quiet.stderr == ""  # not a terminal, no --progress: no line


# ---------------------------------------------------------------- streams
def test_report_to_standard_output_moves_the_console_to_standard_error():
    done = run_osvemu("boot", MINILINUX, "--native", *SMALL, "--cmdline", "primes=1000 rounds=2", "--report", "-")
    data = json.loads(done.stdout)
    assert data["exit_status"] == 0 and data["console"] == done.stderr
    assert "minilinux: 2 CPUs online" in done.stderr


def test_serial_and_log_files(tmp_path):
    console, log = tmp_path / "com1.txt", tmp_path / "run.log"
    done = run_osvemu("boot", "--config", _pair(tmp_path), "-serial", f"file:{console}", "-D", log)
    assert done.returncode == 255 and done.stdout == "" and done.stderr == ""
    assert "[B] attacker: attack=none" in console.read_text()
    assert log.read_text().startswith("osv: kernel A stopped: memory: write to 0x400017d8")
    null = run_osvemu("boot", MINILINUX, "--native", *SMALL, "--cmdline", "primes=1000 rounds=2", "-serial", "null")
    assert null.returncode == 0 and null.stdout == ""
    for bad in ("file:", "tcp::4444", "pty"):
        assert main(["boot", str(MINILINUX), "-serial", bad]) == 2


# ---------------------------------------------------------------- conventions
def test_qemu_spellings_mean_what_they_mean_in_qemu():
    parse = build_parser().parse_args
    args = parse(["boot", "x.elf", "-smp", "8,sockets=2", "-m", "512", "-append", "quiet", "-initrd", "r.img", "-s",
                  "-S"])
    assert (args.smp, args.memory, args.cmdline, args.initrd, args.gdb, args.gdb_wait) == \
        ((2, 4), 512 << 20, "quiet", "r.img", "1234", True)
    assert parse(["boot", "x.elf", "-smp", "6"]).smp == (1, 6)
    assert parse(["boot", "x.elf", "-smp", "6,cores=3"]).smp == (2, 3)
    assert parse(["boot", "x.elf", "-m", "2G"]).memory == 2 << 30
    assert parse(["boot", "x.elf", "-gdb", "tcp::4321"]).gdb == "4321"
    assert parse(["boot", "x.elf", "-gdb", "tcp:localhost:4321"]).gdb == "localhost:4321"
    done = run_osvemu("boot", MINILINUX, "--native", "-smp", "3", "-m", "128", "-append", "primes=100 rounds=1")
    assert done.returncode == 0 and "minilinux: 3 CPUs online, primes=25 " in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["boot", "x.elf", "-smp", "6,sockets=4"], "-smp '6,sockets=4': 4 sockets x 1 cores is not 6 CPUs"),
    (["boot", "x.elf", "-smp", "4,threads=2"], "-smp '4,threads=2': expected N[,sockets=S][,cores=C]"),
    (["boot", "x.elf", "-gdb", "udp::1"], "-gdb 'udp::1': expected tcp:[HOST]:PORT"),
    (["boot", str(MINILINUX), "-smp", "4", "--sockets", "2"], "-smp gives the sockets and cores"),
    (["boot", str(MINILINUX), "--native", "--monitor", "trap-all"], "--monitor trap-all is a mode of OSV's monitor"),
    (["tables", str(MINILINUX), "--timeout", "5"], "unrecognized arguments: --timeout 5"),
    (["tables", str(MINILINUX), "--report", "r.json"], "unrecognized arguments: --report r.json"),
    (["tables", str(MINILINUX), "--fast"], "unrecognized arguments: --fast"),
    (["boot", "--quantum"], "boot: argument --quantum: expected one argument"),
    (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
])
def test_each_refusal_is_one_line_with_one_prefix(capsys, argv, message):
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"osvemu: {message}"), lines
    assert not lines[0].startswith("osvemu: osvemu")


def test_version_and_help(capsys):
    version = run_osvemu("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"osvemu 0\.1\.0 \(unicorn 2\.1\.4, Python 3\.\d+\.\d+\)\n", version.stdout)
    helps = {}
    for command in ("boot", "trace", "debug", "tables", "eval", "plot", "snippet", "verify"):
        with pytest.raises(SystemExit) as leaving:
            build_parser().parse_args([command, "--help"])
        assert leaving.value.code == 0
        helps[command] = capsys.readouterr().out
        assert "examples:\n  osvemu " + command in helps[command] and EXIT_STATUSES in helps[command], command
    assert "--jobs" not in helps["trace"] and "--fast" not in helps["debug"]  # each command offers its own options
    assert "--report" not in helps["tables"] and "--timeout TIMEOUT" not in helps["tables"]


@pytest.mark.slow
def test_every_documented_exit_status(tmp_path):
    """The table of EXIT_STATUSES (and the README's), each from a real run."""
    def status(*argv: str) -> int:
        return run_osvemu(*argv).returncode

    small = ("--native", "-smp", "2", "-m", "64")
    assert status("boot", MINILINUX, *small, "--cmdline", "primes=100 rounds=1") == 0
    assert status("boot", ATTACKER, *small, "--cmdline", "attack=exit status=51") == 51
    assert status("boot", MINILINUX, *small, "--cmdline", "primes=abc") == 42  # minilinux's own failure status
    assert status("boot", ATTACKER, *small, "--cmdline", "attack=triple") == 1
    assert status("boot", "--nope") == 2
    assert status("boot", ATTACKER, *small, "--cmdline", "attack=spin") == 4
    assert status("boot", MINILINUX, *small, "--max-instructions", "1000") == 124
    assert status("boot", "--config", _pair(tmp_path)) == 255
    broken_hook = ("import osvemu.platform.machine as m, osvemu.errors as e\n"
                   "def broken(*a): raise e.EmulatorError('a hook broke')\n"
                   "m.Machine.mmio_read = broken\n"
                   "from osvemu.cli import run; import sys; sys.argv[1:] = "
                   f"['boot', {str(MINILINUX)!r}, '--native', '-smp', '2']; run()")
    internal = subprocess.run([sys.executable, "-c", broken_hook],
                              capture_output=True, text=True, timeout=120, check=False)
    assert internal.returncode == 3 and internal.stderr.strip() == "osvemu: a hook broke"
    piped = subprocess.run(f"{sys.executable} -m osvemu trace {MINILINUX} --native | head -1", shell=True,
                           capture_output=True, text=True, timeout=120, check=False)
    assert piped.stdout.startswith("c0 ") and piped.stderr == ""
    # 130 (Ctrl-C): test_ctrl_c_ends_the_run_with_the_summary_and_the_report


# ---------------------------------------------------------------- tables and snippets
def test_tables_for_the_bare_machine_and_for_every_kernel(tmp_path):
    native = run_osvemu("tables", MINILINUX, "--native", "-smp", "2")
    assert native.returncode == 0 and native.stdout.startswith("The machine's one kernel: cores [0, 1], 2047 MiB")
    every = run_osvemu("tables", MINILINUX, "--kernel", "all", "--raw", tmp_path)
    assert every.returncode == 0
    assert [line for line in every.stdout.splitlines() if line.startswith("Kernel ")] == [
        f"Kernel k{i}: cores {list(range(8 * i, 8 * i + 8))}, {511 if i == 0 else 512} MiB of RAM" for i in range(4)]
    assert "RSDT: length 52, revision 1, OEM OSVEMU, checksum valid" in every.stdout
    for kernel in ("k0", "k3"):
        names = sorted(path.name for path in (tmp_path / kernel).iterdir())
        assert names == ["apic.dat", "dsdt.dat", "e820.dat", "facp.dat", "mptable.dat", "rsdp.dat", "rsdt.dat",
                         "slit.dat", "srat.dat", "xsdt.dat"]
        assert (tmp_path / kernel / "rsdp.dat").read_bytes()[:8] == b"RSD PTR "
        assert (tmp_path / kernel / "rsdt.dat").read_bytes()[:4] == b"RSDT"
    assert run_osvemu("tables", MINILINUX).stderr.strip() == \
        "osvemu: --kernel NAME is needed: the kernels are k0, k1, k2, k3 (or all)"


def test_snippet_files_run_outside_pytest(tmp_path):
    good = run_osvemu("snippet", ROOT / "tests" / "snippets" / "cpu_int3.s", ROOT / "tests" / "snippets" / "uart_hello.s")
    assert good.returncode == 0
    assert good.stdout.splitlines()[-1] == "2 of 2 snippets hold"
    wrong = tmp_path / "wrong.s"
    wrong.write_text(';! [expect]\n;! exit = 3\n;! [expect.cores.0]\n;! rbx = 7\n    mov ebx, 5\n    mov al, 2\n'
                     '    out 0xf4, al\n')
    bad = run_osvemu("snippet", wrong)
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        "FAIL wrong: guest wrote 2 to the exit port (core 0), 3 instructions",
        "     exit status 2 (guest wrote 2 to the exit port (core 0)), expected 3",
        "     core 0 rbx = 0x5, expected 0x7",
        "0 of 1 snippets hold",
    ]
    header = tmp_path / "header.s"
    header.write_text(";! mode = \n    hlt\n")
    refused = run_osvemu("snippet", header)
    assert refused.returncode == 2 and refused.stderr.startswith("osvemu: snippet header: bad header")


def test_id_ranges():
    assert id_ranges([3, 0, 1, 2, 7, 9, 10]) == "0-3,7,9-10"
    assert id_ranges([]) == "-"
