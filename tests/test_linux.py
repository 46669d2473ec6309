"""An unmodified Debian Linux 6.1 boots to its /init on osvemu, natively and
as two OSV partitions side by side, and its /init reports what QEMU's /init
reports for the same image on the same CPU count.

The kernel is Debian's ``linux-image-6.1.0-57-amd64-unsigned``, downloaded
by ``tools/fetch_linux.py`` (with apt, from the archive CI reaches) and never
committed; the initramfs is built from ``guests/linuxinit``.  The tests skip
only when the download itself is impossible, saying why.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_osvemu

pytestmark = pytest.mark.slow

BUILD = ROOT / "build" / "linux"
VMLINUX = BUILD / "vmlinux"
INITRAMFS = BUILD / "initramfs.cpio.gz"
#: What worked on a platform with a LAPIC, IOAPIC, COM1 and an RTC but no PIT,
#: 8259 or HPET: the TSC frequency given (osvemu's TSC runs at 2 GHz), no
#: crypto self-tests (half the boot's instructions otherwise).
CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0,115200 tsc_early_khz=2000000 tsc=reliable cryptomgr.notests"
#: Host seconds a boot may take on a slow CI machine before the test fails.
BOOT_TIMEOUT = 900
DOWNLOAD_IMPOSSIBLE = 3  # tools/fetch_linux.py's status when apt cannot fetch the package


@pytest.fixture(scope="module")
def linux() -> Path:
    """build/linux with vmlinux and the initramfs (fetched if missing).  xdist
    workers run this fixture each; a lock makes one fetch at a time."""
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run = subprocess.run([sys.executable, str(ROOT / "tools" / "fetch_linux.py"), "--out", str(BUILD)],
                             check=False, capture_output=True, text=True, timeout=600)
    if run.returncode == DOWNLOAD_IMPOSSIBLE:
        pytest.skip(f"the Debian kernel package cannot be downloaded here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    return BUILD


def init_lines(text: str, prefix: str = "") -> list[str]:
    """The lines /init printed (``init: ...``), with any ``[name] `` label removed."""
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix + "init: ")]


def comparable(lines: list[str]) -> list[str]:
    """/init's lines without the memory totals, which depend on each machine's
    firmware reservations (osvemu's are pinned separately)."""
    return [re.sub(r"memtotal_kb \d+", "memtotal_kb N", line) for line in lines]


@pytest.fixture(scope="module")
def native_boot(linux, tmp_path_factory):
    """One native boot on 1 socket x 2 cores with 512 MiB, as QEMU's ``-smp 2 -m 512M``."""
    report = tmp_path_factory.mktemp("linux") / "report.json"
    run = run_osvemu("boot", "--native", str(VMLINUX), "--initrd", str(INITRAMFS), "--append", CMDLINE,
                     "--sockets", "1", "--cores-per-socket", "2", "--memory", "512M", "--report", str(report),
                     timeout=BOOT_TIMEOUT)
    return run, report


def test_native_boot_reaches_init_and_powers_off(native_boot):
    run, report = native_boot
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Run /init as init process" in run.stdout
    lines = init_lines(run.stdout)
    assert lines[0] == "init: started"
    assert "init: cpus online 2" in lines
    assert "init: cpu 0 apicid 0 physical_id 0 core_id 0" in lines
    assert "init: cpu 1 apicid 1 physical_id 0 core_id 1" in lines
    assert "init: numa nodes 1" in lines
    assert "init: memtotal_kb 468300" in lines  # 512 MiB less what the firmware and the kernel reserve
    assert "init: thread 1 ran on cpu 1" in lines
    assert any(line.startswith("init: workload threads 2 result ") and line.endswith(" ok") for line in lines)
    assert lines[-1] == "init: done"
    assert "unchecked MSR access" not in run.stdout  # every MSR Linux reads without a fixup is modelled
    data = json.loads(report.read_text())
    assert data["exit_status"] == 0
    assert data["end"]["end"] == "exited"


def test_init_reports_the_same_on_qemu(native_boot):
    ours, _ = native_boot
    qemu = shutil.which("qemu-system-x86_64")
    assert qemu, "qemu-system-x86_64 is missing: .ci/run installs the Debian package qemu-system-x86"
    theirs = subprocess.run([qemu, "-M", "pc", "-smp", "2", "-m", "512M", "-kernel", str(VMLINUX),
                             "-initrd", str(INITRAMFS), "-append", CMDLINE, "-display", "none", "-serial", "stdio",
                             "-monitor", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
                            check=False, capture_output=True, text=True, timeout=300)
    assert theirs.returncode == 1, theirs.stderr  # /init wrote 0 to isa-debug-exit: (0 << 1) | 1
    assert ours.returncode == 0, ours.stderr[-2000:]
    qemu_lines = [line.replace("\r", "") for line in init_lines(theirs.stdout.replace("\r\n", "\n"))]
    assert comparable(init_lines(ours.stdout)) == comparable(qemu_lines)


def test_two_debian_kernels_side_by_side_under_osv(linux, tmp_path):
    report = tmp_path / "report.json"
    run = run_osvemu("boot", "--config", str(ROOT / "examples" / "linux-2.toml"), "--report", str(report),
                     timeout=2 * BOOT_TIMEOUT)
    assert run.returncode == 0, run.stderr[-2000:]
    for name, apics, memtotal_kb in (("linux0", (0, 1), 468300), ("linux1", (2, 3), 467276)):
        lines = init_lines(run.stdout, f"[{name}] ")
        assert "init: cpus online 2" in lines, name
        for cpu, apic in enumerate(apics):
            assert f"init: cpu {cpu} apicid {apic} physical_id {apic // 2} core_id {apic % 2}" in lines, name
        assert "init: numa nodes 1" in lines, name
        assert f"init: memtotal_kb {memtotal_kb}" in lines, name  # its partition's 511 or 512 MiB, no more
        assert any(line.endswith(" ok") and "workload threads 2" in line for line in lines), name
        assert lines[-1] == "init: done", name
    data = json.loads(report.read_text())
    assert data["exit_status"] == 0
    assert [kernel["exit_status"] for kernel in data["kernels"]] == [0, 0]
    assert data["violations_total"] == 0


def test_fast_mode_gives_the_same_init_lines(native_boot):
    """--fast preempts by host time, so the kernel log differs; /init's results must not."""
    deterministic, _ = native_boot
    fast = run_osvemu("boot", "--native", "--fast", str(VMLINUX), "--initrd", str(INITRAMFS), "--append", CMDLINE,
                      "--sockets", "1", "--cores-per-socket", "2", "--memory", "512M", timeout=BOOT_TIMEOUT)
    assert fast.returncode == 0, fast.stderr[-2000:]
    assert init_lines(fast.stdout) == init_lines(deterministic.stdout)
