"""guests/minilinux: the committed image boots like Linux on osvemu and on
QEMU, with every command-line option, 1 to 64 CPUs and both workloads."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from build_guests import compile_guest
from conftest import run_osvemu

from osvemu.image import load_image
from osvemu.platform import acpi, layout
from osvemu.platform.machine import Machine
from osvemu.platform.plan import bare_plan
from osvemu.platform.topology import Topology
from osvemu.scheduler import Scheduler

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "guests" / "minilinux.elf"
PRIMES_100000 = "primes=9592 checksum=0x1b158a79"
PRIMES_10000 = "primes=1229 checksum=0x005787cc"
SUMMARY = re.compile(r"minilinux: (\d+) CPUs online(.*): (OK|FAILED)$", re.MULTILINE)


def boot(*args: str) -> subprocess.CompletedProcess:
    return run_osvemu("boot", "--native", IMAGE, *args, timeout=300)


def summary(output: str) -> tuple[int, str, str]:
    match = SUMMARY.search(output)
    assert match, output[-2000:]
    return int(match.group(1)), match.group(2), match.group(3)


def test_the_committed_image_is_the_reproducible_build(tmp_path):
    rebuilt = compile_guest(ROOT / "guests" / "minilinux", tmp_path / "minilinux.elf")
    assert rebuilt.read_bytes() == IMAGE.read_bytes(), "guests/minilinux.elf is stale: run tools/build_guests.py"


@pytest.mark.slow
def test_default_machine_boots_32_cpus_and_runs_both_workloads():
    run = boot()
    assert run.returncode == 0, run.stderr
    cpus, results, status = summary(run.stdout)
    assert (cpus, status) == (32, "OK")
    assert PRIMES_100000 in results and "pingpong=1600 checksum=0x423dc4e0" in results
    out = run.stdout
    assert "BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable" in out
    assert "BIOS-e820: [mem 0x00000000000e0000-0x00000000000effff] ACPI data" in out
    assert "ACPI: RSDP 0x00000000000f0000 000024 (v02 OSVEMU)" in out
    assert "NUMA: 4 nodes" in out and "NUMA: Node 3: 8 CPUs, 512 MB" in out
    assert "SRAT: PXM 3 -> APIC 0x1f -> Node 3" in out
    assert "smp: Brought up 4 nodes, 32 CPUs" in out
    assert ".... node  #3, CPUs:       #24 #25 #26 #27 #28 #29 #30 #31" in out
    for variant in ("shorthand", "physical", "logical"):
        assert f"smp: call function ({variant}) ran on 31 of 31 other CPUs" in out
    assert "smp: reschedule IPI woke 31 of 31 halted CPUs" in out
    assert "smp: TLB shootdown: 32 of 32 CPUs see the new mapping" in out
    assert "APIC: timer calibrated against the TSC: bus clock 200.0" in out


@pytest.mark.slow
def test_acpi_off_uses_the_mp_table():
    run = boot("--cmdline", "acpi=off workload=primes primes=10000")
    assert run.returncode == 0, run.stderr
    assert "ACPI: disabled by acpi=off; using the MP table" in run.stdout
    assert "found SMP MP-table at [mem 0x000f0040-0x000f004f]" in run.stdout
    assert "MPTABLE: processor APIC ID 0 (boot processor)" in run.stdout
    assert "ACPI: RSDP" not in run.stdout
    assert summary(run.stdout) == (32, ", primes=1229 checksum=0x005787cc", "OK")


@pytest.mark.parametrize("cmdline, cpus", [("nosmp", 1), ("maxcpus=5", 5), ("maxcpus=1", 1)])
def test_nosmp_and_maxcpus(cmdline, cpus):
    run = boot("--cmdline", f"{cmdline} workload=primes primes=10000")
    assert run.returncode == 0, run.stderr
    assert summary(run.stdout) == (cpus, ", " + PRIMES_10000, "OK")
    assert "smpboot: Allowing 32 CPUs" in run.stdout


@pytest.mark.parametrize("cmdline, complaints", [
    ("primes=abc", ["primes=abc: expected an integer 2..1000000000"]),
    ("maxcpus=0", ["maxcpus=0: expected an integer 1..255"]),
    ("rounds=12x tsc_khz= primes=99999999999999999999999",
     ["rounds=12x: expected an integer 1..1000000", "tsc_khz=: expected an integer 1..100000000",
      "primes=99999999999999999999999: expected an integer 2..1000000000"]),
    ("collect_ms=0x fault=300", ["collect_ms=0x: expected an integer 1..3600000",
                                 "fault=300: expected an integer 0..254"]),
])
def test_a_malformed_option_is_reported_and_the_kernel_fails(cmdline, complaints):
    """A value that is not a whole in-range integer is never read as 0: the
    console names each one and the boot fails (exit status 42), before any CPU starts."""
    run = boot("--sockets", "1", "--cores-per-socket", "2", "--cmdline", cmdline)
    lines = [line.split("] ", 1)[1] for line in run.stdout.splitlines()]
    assert lines == [f"minilinux: bad value for {text}" for text in complaints] + \
        [f"minilinux: {len(complaints)} malformed command-line option{'s' if len(complaints) > 1 else ''}: FAILED"]
    assert run.returncode == 42
    ok = boot("--sockets", "1", "--cores-per-socket", "2", "--cmdline", "primes=0x100 rounds=2 quiet")
    assert ok.returncode == 0 and summary(ok.stdout)[1].startswith(", primes=54 checksum=")


@pytest.mark.parametrize("sockets, cores", [(1, 1), (1, 2), (2, 4), pytest.param(8, 8, marks=pytest.mark.slow)])
def test_cpu_counts(sockets, cores):
    run = boot("--sockets", str(sockets), "--cores-per-socket", str(cores), "--cmdline", "quiet primes=1000 rounds=2")
    assert run.returncode == 0, run.stderr
    cpus, results, status = summary(run.stdout)
    assert (cpus, status) == (sockets * cores, "OK") and "primes=168 checksum=0x0001295f" in results
    assert f"pingpong={2 * sockets * cores} " in results
    assert len(run.stdout.splitlines()) == 1  # quiet: only the summary


@pytest.mark.slow
def test_workloads_one_at_a_time():
    primes = boot("--sockets", "1", "--cores-per-socket", "4", "--cmdline", "workload=primes primes=1000")
    assert summary(primes.stdout) == (4, ", primes=168 checksum=0x0001295f", "OK")
    assert "primes: 168 primes below 1000" in primes.stdout
    pingpong = boot("--sockets", "1", "--cores-per-socket", "4", "--cmdline", "workload=pingpong rounds=7")
    assert summary(pingpong.stdout)[1].startswith(", pingpong=28 checksum=0x")
    assert "pingpong: 7 rounds over 4 CPUs: 28 IPIs" in pingpong.stdout
    unknown = boot("--sockets", "1", "--cores-per-socket", "1", "--cmdline", "workload=nothing")
    assert unknown.returncode == 42 and "workload=nothing: unknown workload" in unknown.stdout


def test_tsc_khz_changes_the_calibration_scale():
    run = boot("--sockets", "1", "--cores-per-socket", "1", "--cmdline", "tsc_khz=1000000 workload=primes primes=100")
    assert "tsc: 1000.000 MHz processor (tsc_khz=1000000)" in run.stdout
    # A TSC assumed half as fast as it runs makes the 200 MHz bus look half as fast.
    assert re.search(r"bus clock 10[01]\.\d+ MHz", run.stdout)
    assert run.returncode == 0


def test_an_ap_exception_is_reported_and_only_that_cpu_stops():
    run = boot("--sockets", "1", "--cores-per-socket", "4", "--cmdline", "fault=2 workload=primes primes=1000")
    assert re.search(r"CPU 2: exception 14 \(#PF page fault\) error code 0x2 at RIP 0x[0-9a-f]+, "
                     r"CR2 0x7fc0100000, RSP 0x[0-9a-f]+; CPU halted", run.stdout)
    assert summary(run.stdout) == (3, ", primes=168 checksum=0x0001295f", "OK")
    assert run.returncode == 0


def test_a_corrupted_madt_is_rejected_and_the_mp_table_used():
    lines: list[str] = []
    machine = Machine(bare_plan(Topology(1, 4, 256 * layout.MiB), "workload=primes primes=1000", load_image(IMAGE)),
                      console=lines.append)
    machine.boot()
    view = machine.kernels[0].view
    tables = acpi.read_tables(view.read, layout.RSDP_ADDRESS)
    madt_address = acpi.parse_pointer_table(tables[b"XSDT"])[0]
    assert view.read(madt_address, 4) == b"APIC"
    view.write(madt_address + 40, b"\x07")  # the flags byte: the checksum no longer holds
    result = Scheduler(machine).run()
    console = "\n".join(lines)
    assert result.status == 0, (result.reason, console[-2000:])
    assert re.search(r"ACPI BIOS Error \(bug\): Invalid checksum in table \[APIC\] at 0x[0-9a-f]+ \(sum 0x[0-9a-f]{2}\); "
                     r"table rejected", console)
    assert "ACPI: no valid MADT; falling back to the MP table" in console
    assert summary(console) == (4, ", primes=168 checksum=0x0001295f", "OK")
    assert result.status == 0


@pytest.mark.parametrize("cpus, memory", [(4, "512M"), pytest.param(32, "2G", marks=pytest.mark.slow)])
def test_same_image_same_results_on_qemu(cpus, memory):
    """QEMU's pc machine (SeaBIOS tables, RSDP v0, no SRAT, a live 8259 PIC) and osvemu, both workloads."""
    WORKLOADS = "primes=10000 rounds=10"
    qemu = shutil.which("qemu-system-x86_64")
    assert qemu, "qemu-system-x86_64 is missing: .ci/run installs the Debian package qemu-system-x86"
    theirs = subprocess.run([qemu, "-M", "pc", "-smp", str(cpus), "-m", memory, "-kernel", str(IMAGE), "-display", "none",
                             "-serial", "stdio", "-monitor", "none", "-no-reboot", "-device",
                             "isa-debug-exit,iobase=0xf4,iosize=0x04", "-append", WORKLOADS], capture_output=True,
                            text=True, timeout=300, check=False)
    sockets = cpus // 8 or 1
    ours = boot("--sockets", str(sockets), "--cores-per-socket", str(cpus // sockets), "--memory", memory,
                "--cmdline", WORKLOADS)
    assert theirs.returncode == (0 << 1) | 1, theirs.stdout[-2000:]
    assert ours.returncode == 0
    assert summary(theirs.stdout.replace("\r", "")) == summary(ours.stdout)
    assert summary(ours.stdout)[0] == cpus and "ACPI: RSDT" in theirs.stdout
    assert "No NUMA configuration found" in theirs.stdout
