#!/usr/bin/env python3
"""osvemu against QEMU TCG, side by side in one run, and what osvemu's own
modes and tools cost.

1. Guests (each a fresh process, as a user runs it): minilinux natively on
   8 and 32 cores, under OSV's default (4 kernels x 8 cores), the smp_hello
   test guest on 32 cores, and a compute-bound run (minilinux's primes on one
   CPU).  Each runs on osvemu in deterministic mode (translation blocks
   counted), exact mode (every instruction counted) and fast mode, and on
   ``qemu-system-x86_64 -M pc`` TCG with the same image, command line and
   ``-smp``; the table gives wall and CPU medians over the repeats and the
   osvemu/QEMU ratios of the wall medians.  Every run's result is checked
   (minilinux's "OK", the exit status).
2. Guest MIPS of two compute loops (one through memory, one in registers)
   on raw Unicorn with no hooks and on osvemu, 1 and 32 cores, in each mode,
   with the ratio to raw Unicorn and host RSS per core.
3. What the debugging tools cost on the smp_hello boot.

    python3 tools/bench.py [--repeats N] [--only NAME ...] [--json FILE]

``--json`` writes everything as one JSON document (``"schema":
"osvemu-bench/1"``) that ``osvemu plot`` draws.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

MINILINUX = ROOT / "guests" / "minilinux.elf"
SCHEMA = "osvemu-bench/1"
#: QEMU's pc machine with the isa-debug-exit device the guests end through
#: (exit status (value << 1) | 1), as tests/test_minilinux.py runs it.
QEMU_MACHINE = ["-M", "pc", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
MODES = ("deterministic", "exact", "fast")
MODE_OPTIONS = {"deterministic": [], "exact": ["--exact"], "fast": ["--fast"]}
RUN_TIMEOUT = 600


@dataclass(frozen=True)
class Guest:
    """One guest workload, as osvemu and QEMU are told to run it."""

    name: str
    image: str
    osvemu: tuple[str, ...]  # options of osvemu boot
    qemu_smp: int
    qemu_memory: str
    cmdline: str = ""
    expect: str = ": OK"  # in the console of a good run on osvemu
    qemu_expect: str = ": OK"  # ... and on QEMU
    note: str = ""


def guests(smp_hello: Path) -> list[Guest]:
    image = str(MINILINUX)
    return [
        Guest("minilinux native 8", image, ("--native", "--sockets", "1", "--cores-per-socket", "8",
                                            "--memory", "512M"), 8, "512M"),
        Guest("minilinux native 32", image, ("--native",), 32, "2G"),
        Guest("minilinux OSV 4x8", image, (), 32, "2G",
              expect="combined result of 4 kernels", note="QEMU: the same image natively on the 32 cores"),
        Guest("smp_hello 32", str(smp_hello), ("--native",), 32, "2G", expect="32 of 32 cores online",
              qemu_expect="32 of 32 cores online"),
        Guest("primes, 1 CPU", image, ("--native", "--sockets", "1", "--cores-per-socket", "1", "--memory", "256M"),
              1, "256M", cmdline="workload=primes primes=1500000 quiet", note="compute-bound"),
    ]


@dataclass
class Sample:
    wall: float
    cpu: float


@dataclass
class Row:
    guest: str
    runner: str  # "osvemu deterministic" | "osvemu exact" | "osvemu fast" | "qemu"
    samples: list[Sample] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)


def _timed(argv: list[str], expect: str, status: int) -> Sample:
    """Run ``argv``; its wall time and CPU time (user + system, from
    wait4); SystemExit unless it printed ``expect`` and ended with ``status``."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _, code, usage = os.wait4(process.pid, 0)
        except KeyboardInterrupt:
            process.kill()
            raise
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(code)
        out.seek(0)
        console = out.read().decode(errors="replace")
    if process.returncode != status or expect not in console:
        raise SystemExit(f"bench: {' '.join(argv)}: exit status {process.returncode} (expected {status}), "
                         f"{expect!r} {'found' if expect in console else 'not found'}:\n{console[-1500:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime)


def osvemu_argv(guest: Guest, mode: str) -> list[str]:
    argv = [sys.executable, "-m", "osvemu", "boot", guest.image, *guest.osvemu, *MODE_OPTIONS[mode]]
    return argv + (["--cmdline", guest.cmdline] if guest.cmdline else [])


def qemu_argv(qemu: str, guest: Guest) -> list[str]:
    argv = [qemu, *QEMU_MACHINE, "-smp", str(guest.qemu_smp), "-m", guest.qemu_memory, "-kernel", guest.image]
    return argv + (["-append", guest.cmdline] if guest.cmdline else [])


def compare(selected: list[Guest], repeats: int, qemu: str | None) -> list[Row]:
    """Every guest on every runner, ``repeats`` times, the runners taking
    turns so that a slow spell of the host falls on all of them."""
    rows: dict[tuple[str, str], Row] = {}
    for _ in range(repeats):
        for guest in selected:
            for mode in MODES:
                row = rows.setdefault((guest.name, f"osvemu {mode}"), Row(guest.name, f"osvemu {mode}"))
                row.samples.append(_timed(osvemu_argv(guest, mode), guest.expect, 0))
            if qemu:
                row = rows.setdefault((guest.name, "qemu"), Row(guest.name, "qemu"))
                row.samples.append(_timed(qemu_argv(qemu, guest), guest.qemu_expect, 1))
    return list(rows.values())


def print_comparison(rows: list[Row], selected: list[Guest], repeats: int) -> None:
    print(f"guests: median of {repeats} runs each, wall / CPU seconds; ratios are osvemu wall / QEMU wall")
    print(f"{'guest':22} {'deterministic':>15} {'exact':>15} {'fast':>15} {'QEMU TCG':>15}   "
          f"{'det/Q':>6} {'exact/Q':>7} {'fast/Q':>6}")
    by = {(row.guest, row.runner): row for row in rows}
    for guest in selected:
        cells, walls = [], {}
        for runner in ("osvemu deterministic", "osvemu exact", "osvemu fast", "qemu"):
            row = by.get((guest.name, runner))
            cells.append(f"{row.wall:6.2f} / {row.cpu:6.2f}" if row else f"{'-':>15}")
            walls[runner] = row.wall if row else None
        qemu = walls["qemu"]
        ratios = [f"{walls[r] / qemu:6.2f}" if qemu else f"{'-':>6}"
                  for r in ("osvemu deterministic", "osvemu exact", "osvemu fast")]
        print(f"{guest.name:22} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15} {cells[3]:>15}   "
              f"{ratios[0]:>6} {ratios[1]:>7} {ratios[2]:>6}")
    notes = [f"{g.name}: {g.note}" for g in selected if g.note]
    for line in notes:
        print(f"  ({line})")
    native8 = by.get(("minilinux native 8", "osvemu deterministic"))
    osv = by.get(("minilinux OSV 4x8", "osvemu deterministic"))
    if native8 and osv:
        print(f"OSV 4 x 8 / one native 8-core kernel, deterministic wall: {osv.wall / native8.wall:.2f} "
              f"on {os.cpu_count()} host cores")


# ---------------------------------------------------------------- guest MIPS
#: 6 instructions per iteration through the core's stack (a store and a load).
MEMORY_LOOP = """
    mov rcx, {iterations}
    xor eax, eax
    xor ebx, ebx
spin:
    add rax, rcx
    mov qword ptr [rsp - 8], rax
    xor rbx, qword ptr [rsp - 8]
    rol rax, 3
    dec rcx
    jnz spin
    cli
    hlt
"""
#: 6 instructions per iteration in registers only.
REGISTER_LOOP = """
    mov rcx, {iterations}
    xor eax, eax
    xor ebx, ebx
spin:
    add rax, rcx
    xor rbx, rax
    rol rax, 3
    imul rbx, rbx, 7
    dec rcx
    jnz spin
    cli
    hlt
"""
LOOPS = {"memory loop": MEMORY_LOOP, "register loop": REGISTER_LOOP}
INSTRUCTIONS_PER_ITERATION = 6


def instructions_per_core(iterations: int) -> int:
    return 3 + INSTRUCTIONS_PER_ITERATION * iterations + 2


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def raw_unicorn(source: str, iterations: int) -> float:
    from keystone import KS_ARCH_X86, KS_MODE_64, Ks
    from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
    from unicorn.x86_const import UC_X86_REG_RSP

    from osvemu.snippets import CODE_BASE

    code = bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(source.format(iterations=iterations), CODE_BASE)[0])
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 4 << 20)
    uc.mem_write(CODE_BASE, code)
    uc.reg_write(UC_X86_REG_RSP, CODE_BASE - 0x100)
    start = time.perf_counter()
    uc.emu_start(CODE_BASE, CODE_BASE + len(code) - 1)  # stops at hlt
    return time.perf_counter() - start


def osvemu_loop(source: str, iterations: int, cores: int, mode: str) -> tuple[float, float]:
    """Seconds and host RSS growth per core (MiB) of the loop on every core."""
    from osvemu.scheduler import DEFAULT_QUANTUM
    from osvemu.snippets import Snippet, run_snippet

    snippet = Snippet(name="bench", source=source.format(iterations=iterations), mode="long",
                      sockets=max(1, cores // 8), cores_per_socket=min(cores, 8), memory=256 << 20,
                      quantum=DEFAULT_QUANTUM, max_instructions=10**12)
    before = rss_kib()
    start = time.perf_counter()
    run = run_snippet(snippet, fast=mode == "fast", exact=mode == "exact")
    seconds = time.perf_counter() - start
    counted = sum(c.instructions for c in run.machine.cores)
    expected = cores * instructions_per_core(iterations)
    if counted != expected:
        raise SystemExit(f"bench: {mode} counted {counted} instructions, the loop has {expected}")
    return seconds, (rss_kib() - before) / cores / 1024


def mips(iterations: int) -> list[dict]:
    rows = []
    for loop, source in LOOPS.items():
        raw_seconds = raw_unicorn(source, iterations)
        raw = instructions_per_core(iterations) / raw_seconds / 1e6
        rows.append({"loop": loop, "runner": "raw Unicorn, no hooks", "cores": 1, "mips": raw, "vs_raw": 1.0,
                     "rss_per_core_mib": None})
        for cores, each in ((1, iterations), (32, max(1, iterations // 8))):
            for mode in MODES:
                seconds, rss = osvemu_loop(source, each, cores, mode)
                value = cores * instructions_per_core(each) / seconds / 1e6
                rows.append({"loop": loop, "runner": f"osvemu {mode}", "cores": cores, "mips": value,
                             "vs_raw": value / raw, "rss_per_core_mib": rss})
    return rows


def print_mips(rows: list[dict]) -> None:
    print()
    print(f"{'loop':14} {'runner':24} {'cores':>5} {'MIPS':>8} {'vs raw':>7} {'RSS/core MiB':>12}")
    for row in rows:
        rss = f"{row['rss_per_core_mib']:12.2f}" if row["rss_per_core_mib"] is not None else f"{'-':>12}"
        print(f"{row['loop']:14} {row['runner']:24} {row['cores']:5d} {row['mips']:8.1f} {row['vs_raw']:7.2f} {rss}")


# ---------------------------------------------------------------- the tools' cost
def tool_costs(smp_hello: Path, repeats: int) -> list[dict]:
    """The smp_hello boot plainly, under ``osvemu trace --events-only`` and
    with ``--gdb`` and a client attached (exact counting, as the tools use)."""
    plain = [sys.executable, "-m", "osvemu", "boot", "--native", str(smp_hello)]
    runs = {"boot (deterministic)": plain, "boot --exact": plain + ["--exact"],
            "trace --events-only": [sys.executable, "-m", "osvemu", "trace", "--native", "--events-only",
                                    "-o", os.devnull, str(smp_hello)]}
    rows = []
    for name, argv in runs.items():
        samples = [_timed(argv, "" if "trace" in name else "cores online", 0) for _ in range(repeats)]
        rows.append({"run": name, "wall": statistics.median(s.wall for s in samples)})
    base = rows[0]["wall"]
    print()
    print(f"{'smp_hello on 32 cores':28} {'wall s':>7} {'vs boot':>8}")
    for row in rows:
        row["vs_boot"] = row["wall"] / base
        print(f"{row['run']:28} {row['wall']:7.2f} {row['vs_boot']:8.2f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each guest on each runner (median)")
    parser.add_argument("--iterations", type=int, default=5_000_000, help="loop iterations on one core")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="only guests whose name contains NAME (repeatable); skips the loops and tools")
    parser.add_argument("--no-qemu", action="store_true", help="osvemu only")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.repeats < 1 or args.iterations < 1:
        parser.error("--repeats and --iterations must be positive")
    qemu = None if args.no_qemu else shutil.which("qemu-system-x86_64")
    if not args.no_qemu and qemu is None:
        parser.error("qemu-system-x86_64 is not installed (Debian: qemu-system-x86), or give --no-qemu")

    from build_test_guests import build

    with tempfile.TemporaryDirectory() as scratch:
        smp_hello = build("smp_hello", Path(scratch))
        selected = [g for g in guests(smp_hello) if not args.only or any(part in g.name for part in args.only)]
        rows = compare(selected, args.repeats, qemu)
        print_comparison(rows, selected, args.repeats)
        loops = tools = []
        if not args.only:
            loops = mips(args.iterations)
            print_mips(loops)
            tools = tool_costs(smp_hello, min(args.repeats, 3))
    if args.json:
        document = {
            "schema": SCHEMA,
            "host": {"cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                     "qemu": _qemu_version(qemu)},
            "repeats": args.repeats,
            "guests": [{"guest": row.guest, "runner": row.runner, "wall": row.wall, "cpu": row.cpu,
                        "samples": [asdict(s) for s in row.samples]} for row in rows],
            "mips": loops,
            "tools": tools,
        }
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")


def _qemu_version(qemu: str | None) -> str | None:
    if qemu is None:
        return None
    done = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else None


if __name__ == "__main__":
    main()
