#!/usr/bin/env python3
"""Throughput benchmark: guest MIPS of a compute-bound loop, and what the
debugging tools cost.

Runs, in one process and one run, the same loop
  (a) on raw Unicorn with no hooks (one instance, one uncounted emu_start),
  (b) on osvemu with 1 core, deterministic and fast mode,
  (c) on osvemu with 32 cores all running it, deterministic and fast mode,
and prints guest MIPS, the ratio to (a), and host RSS per core.  Instruction
totals are known from the loop shape, so fast mode (which does not count)
is measured the same way.

Then it boots the smp_hello test guest on 32 cores plainly, with a GDB client
attached (no breakpoints) and under ``osvemu trace --events-only``, best of
three each, and prints the host-time ratios to the plain boot.  Last, it runs
minilinux on 8 cores natively and as one of four kernels under OSV and prints
instructions, host time and OSV's monitor exits by kind.

    python3 tools/bench.py [--iterations N] [--quantum Q]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keystone import KS_ARCH_X86, KS_MODE_64, Ks
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn.x86_const import UC_X86_REG_RSP

from osvemu.scheduler import DEFAULT_QUANTUM
from osvemu.snippets import CODE_BASE, Snippet, run_snippet

#: 6 instructions per iteration (ALU work plus a store and a load through the
#: core's own stack, so memory access is measured too); 3 before the loop,
#: cli + hlt after.
LOOP = """
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
INSTRUCTIONS_PER_ITERATION = 6


def instructions_per_core(iterations: int) -> int:
    return 3 + INSTRUCTIONS_PER_ITERATION * iterations + 2


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raw_unicorn(iterations: int) -> float:
    code = bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(LOOP.format(iterations=iterations), CODE_BASE)[0])
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 4 << 20)
    uc.mem_write(CODE_BASE, code)
    uc.reg_write(UC_X86_REG_RSP, CODE_BASE - 0x100)
    start = time.perf_counter()
    uc.emu_start(CODE_BASE, CODE_BASE + len(code) - 1)  # stops at hlt
    return time.perf_counter() - start


def osvemu_run(iterations: int, cores: int, fast: bool, quantum: int) -> tuple[float, int, float]:
    snippet = Snippet(name="bench", source=LOOP.format(iterations=iterations), mode="long",
                      sockets=max(1, cores // 8), cores_per_socket=min(cores, 8), memory=256 << 20,
                      quantum=quantum, max_instructions=10**12)
    before = rss_kib()
    start = time.perf_counter()
    run = run_snippet(snippet, fast=fast)
    seconds = time.perf_counter() - start
    counted = sum(c.instructions for c in run.machine.cores)
    if not fast and counted != cores * instructions_per_core(iterations):
        raise SystemExit(f"instruction count {counted} != expected {cores * instructions_per_core(iterations)}")
    rss_per_core = (rss_kib() - before) / cores / 1024
    del run
    return seconds, counted, rss_per_core


def _boot_smp_hello(elf: Path):
    from osvemu.image import load_image
    from osvemu.platform.machine import Machine
    from osvemu.platform.plan import bare_plan
    from osvemu.platform.topology import Topology
    from osvemu.scheduler import Scheduler

    image = load_image(elf)
    machine = Machine(bare_plan(Topology(4, 8), image=image), console=lambda line: None)
    machine.boot()
    return machine, Scheduler(machine), image


def _plain(elf: Path) -> float:
    _, scheduler, _ = _boot_smp_hello(elf)
    start = time.perf_counter()
    result = scheduler.run()
    assert result.status == 0, result.reason
    return time.perf_counter() - start


def _with_gdb(elf: Path) -> float:
    import io
    import socket
    import threading

    from osvemu.debug.engine import Debugger
    from osvemu.debug.gdbstub import GdbStub

    machine, scheduler, _ = _boot_smp_hello(elf)
    stub = GdbStub(Debugger(machine, scheduler), "127.0.0.1", 0, wait=True, log=io.StringIO())

    def client() -> None:
        sock = socket.create_connection(stub.address)
        for payload in (b"qSupported", b"?", b"vCont;c"):
            sock.sendall(b"$" + payload + b"#" + f"{sum(payload) & 0xFF:02x}".encode())
        while b"$W" not in sock.recv(65536):
            pass
        sock.close()

    thread = threading.Thread(target=client)
    thread.start()
    start = time.perf_counter()
    scheduler.start()
    outcome = stub.serve()
    scheduler.finish(outcome)
    elapsed = time.perf_counter() - start
    thread.join()
    assert outcome[0] == 0, outcome
    return elapsed


def _events_only(elf: Path) -> float:
    import os

    from osvemu.debug.tracer import TraceOptions, run_trace

    machine, scheduler, image = _boot_smp_hello(elf)
    with open(os.devnull, "w") as sink:
        start = time.perf_counter()
        result = run_trace(machine, scheduler, image, TraceOptions(events_only=True), sink)
    assert result.status == 0, result.reason
    return time.perf_counter() - start


def debugging_overhead(repeats: int = 3) -> None:
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build_test_guests import build

    with tempfile.TemporaryDirectory() as scratch:
        elf = build("smp_hello", Path(scratch))
        timings = {name: min(run(elf) for _ in range(repeats))
                   for name, run in (("plain osvemu boot", _plain), ("boot --gdb, client attached", _with_gdb),
                                     ("trace --events-only", _events_only))}
    base = timings["plain osvemu boot"]
    print()
    print(f"{'smp_hello on 4 x 8 cores (best of 3)':40} {'seconds':>8} {'vs plain':>9}")
    for name, seconds in timings.items():
        print(f"{name:40} {seconds:8.3f} {seconds / base:9.2f}")


def osv_versus_native() -> None:
    """The same minilinux workload on the same cores, natively (one kernel
    on 8 cores of a 1-socket machine) and under OSV (one of four kernels of
    8 cores on the 4-socket machine), and the monitor exits OSV took."""
    from osvemu.image import load_image
    from osvemu.osv.config import default_config
    from osvemu.osv.plan import osv_plan
    from osvemu.platform.machine import Machine
    from osvemu.platform.plan import bare_plan
    from osvemu.platform.topology import Topology
    from osvemu.scheduler import Scheduler

    image_path = str(Path(__file__).resolve().parent.parent / "guests" / "minilinux.elf")
    cmdline = "quiet"
    native = Machine(bare_plan(Topology(1, 8, 512 << 20), cmdline, load_image(image_path)), console=lambda line: None)
    native.boot()
    start = time.perf_counter()
    native_result = Scheduler(native).run()
    native_seconds = time.perf_counter() - start
    osv = Machine(osv_plan(default_config(Topology(), image_path, cmdline)), console=lambda line: None)
    osv.boot()
    start = time.perf_counter()
    osv_result = Scheduler(osv).run()
    osv_seconds = time.perf_counter() - start
    assert native_result.status == 0 and osv_result.status == 0, (native_result.reason, osv_result.reason)
    native_instructions = sum(c.instructions for c in native.cores)
    kernel = osv.kernels[0]
    osv_instructions = sum(c.instructions for c in kernel.cores)
    print()
    print(f"{'minilinux, 8 cores (primes + pingpong)':40} {'instructions':>13} {'seconds':>8}")
    print(f"{'native: 1 kernel, 1 x 8 cores':40} {native_instructions:13d} {native_seconds:8.3f}")
    print(f"{'OSV: kernel k0 of 4 x 8 cores':40} {osv_instructions:13d} {'':>8}")
    print(f"{'OSV: all 4 kernels':40} {sum(c.instructions for c in osv.cores):13d} {osv_seconds:8.3f}")
    print(f"k0 under OSV / native instructions: {osv_instructions / native_instructions:.3f}; "
          f"host time per kernel under OSV / native: {osv_seconds / 4 / native_seconds:.2f}")
    exits = ", ".join(f"{kind} {count}" for kind, count in osv.monitor.exits.items())
    print(f"monitor exits (all kernels): {exits}; violations {len(osv.monitor.violations)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20_000_000, help="loop iterations per core (1-core runs)")
    parser.add_argument("--quantum", type=int, default=DEFAULT_QUANTUM)
    args = parser.parse_args()
    n1 = args.iterations
    n32 = max(1, n1 // 8)  # keep the 32-core runs to a similar wall time

    rows = []
    seconds = raw_unicorn(n1)
    raw_mips = instructions_per_core(n1) / seconds / 1e6
    rows.append(("(a) raw Unicorn, no hooks", 1, instructions_per_core(n1), seconds, raw_mips, None))
    for cores, iterations in ((1, n1), (32, n32)):
        for fast in (False, True):
            seconds, _, rss = osvemu_run(iterations, cores, fast, args.quantum)
            total = cores * instructions_per_core(iterations)
            label = f"({'b' if cores == 1 else 'c'}) osvemu {cores} core{'s' if cores > 1 else ''}, {'fast' if fast else 'deterministic'}"
            rows.append((label, cores, total, seconds, total / seconds / 1e6, rss))

    print(f"{'configuration':40} {'cores':>5} {'instructions':>13} {'seconds':>8} {'MIPS':>8} {'vs (a)':>7} {'RSS/core MiB':>12}")
    for label, cores, total, seconds, mips, rss in rows:
        rss_text = f"{rss:12.2f}" if rss is not None else f"{'-':>12}"
        print(f"{label:40} {cores:5d} {total:13d} {seconds:8.3f} {mips:8.1f} {mips / raw_mips:7.2f} {rss_text}")
    print(f"quantum {args.quantum} instructions; targets: deterministic >= 50 MIPS aggregate, fast >= 0.50 of (a)")
    debugging_overhead()
    osv_versus_native()


if __name__ == "__main__":
    main()
