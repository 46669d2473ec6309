"""``osvemu eval IMAGE``: the paper's evaluation, on any workload.

The same image and command line run three ways, each ``--repeats`` times:

* ``native``: one kernel on the whole machine, no monitor (``bare_plan``);
* ``osv``: OSV's partitions (the default layout, ``--kernels N`` or
  ``--config FILE``), with OSV's own exits: ICR writes, hypercalls and
  violations;
* ``trap-all``: the same partitions under a monitor that also takes an
  exit for every local APIC and IOAPIC access, port I/O, CPUID, MSR access,
  HLT and interrupt delivery, as a full-virtualization VMM without APIC
  virtualization does (:mod:`osvemu.osv.trapall`).

For each it reports the guest instructions, the exits by kind, the host
time (median and spread) and a modeled cost of the exits: their count times
a published cycle cost of an exit on AMD SVM (:data:`EXIT_COSTS`), in
seconds of the machine's clock.  Every run's guest must succeed (every
kernel ends cleanly: minilinux writes 0 to its exit port only when its
results check), or eval fails.  ``--json FILE`` writes the runs in the
format ``osvemu plot`` reads (``SCHEMA``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from osvemu import clock
from osvemu.errors import ConfigError, OsvemuError
from osvemu.platform.monitor import TRAP_ALL_KINDS

if TYPE_CHECKING:
    from osvemu.image import KernelImage
    from osvemu.osv.config import OsvConfig

SCHEMA = "osvemu-eval/1"
MODES = ("native", "osv", "trap-all")
DEFAULT_REPEATS = 3
MAX_REPEATS = 1000


@dataclass(frozen=True)
class ExitCosts:
    """What an exit costs, in cycles of the machine's clock, by kind."""

    source: str
    cycles_per_exit: dict[str, int]
    cpu_hz: int

    def seconds(self, exits: dict[str, int]) -> float:
        return sum(count * self.cycles_per_exit[kind] for kind, count in exits.items()) / self.cpu_hz


#: The one published AMD SVM figure this model rests on: the VMRUN to
#: #VMEXIT interval of KVM's SVM run loop, measured with RDTSC and posted to
#: the linux-kernel list in December 2020 ("current v2 patch, sample 1:
#: post-run +1376"; sample 2: +1360), in the thread on saving KVM's host
#: state with VMSAVE/VMLOAD, https://lkml.iu.edu/hypermail/linux/kernel/2012.2/00527.html.
#: The source gives no handling cost per kind, so every kind costs that
#: round trip alone: a lower bound of each exit (the handling comes on
#: top), on a 2020 AMD processor rather than a 2013 Opteron.
ROUND_TRIP_CYCLES = 1376
EXIT_COSTS = ExitCosts(
    "AMD SVM VMRUN-to-#VMEXIT round trip, 1376 cycles (KVM's SVM run loop, RDTSC, linux-kernel list, "
    "December 2020: https://lkml.iu.edu/hypermail/linux/kernel/2012.2/00527.html); no per-kind handling cost "
    "is published there, so every kind costs the round trip alone (a lower bound)",
    dict.fromkeys(TRAP_ALL_KINDS, ROUND_TRIP_CYCLES), clock.TSC_HZ)


class GuestFailed(OsvemuError):
    """A run whose guest did not succeed: the comparison means nothing."""


def add_options(parser: argparse.ArgumentParser) -> None:
    from osvemu import cli

    cli.add_machine_options(parser)
    run = parser.add_argument_group("evaluation")
    run.add_argument("--quantum", type=cli._integer("quantum", 1, cli.MAX_QUANTUM), metavar="N",
                     help=f"instructions per core per round (default {cli.DEFAULT_QUANTUM})")
    run.add_argument("--exact", action="store_true", help="count instructions one by one")
    run.add_argument("--jobs", type=cli._integer("jobs", 1, 256), metavar="N",
                     help="run OSV's kernels in N host processes (default 1, so that host times compare)")
    run.add_argument("--max-instructions", type=cli._integer("max-instructions"), metavar="N",
                     help="stop each run after this many instructions (its guest then fails)")
    run.add_argument("--timeout", type=cli._seconds, metavar="SECONDS",
                     help="stop each run after this many host seconds (its guest then fails)")
    run.add_argument("--repeats", type=cli._integer("repeats", 1, MAX_REPEATS), metavar="N",
                     help=f"runs of each mode (default {DEFAULT_REPEATS})")
    run.add_argument("--json", type=cli._output_file("json"), metavar="FILE",
                     help=f"also write the runs as JSON ({SCHEMA}, what osvemu plot reads)")
    parser.set_defaults(repeats=DEFAULT_REPEATS, jobs=1)


# ---------------------------------------------------------------- one run
@dataclass(frozen=True)
class Workload:
    """What every mode runs: the partitions, and the one native kernel."""

    config: OsvConfig
    image: KernelImage  # the native kernel's: the first kernel's image
    cmdline: str
    initrd: bytes | None
    images: dict[str, KernelImage]  # by kernel name, each file loaded once


def _workload(args: argparse.Namespace) -> Workload:
    from osvemu import cli
    from osvemu.image import load_image
    from osvemu.osv.config import default_config, load_config
    from osvemu.platform.initrd import load_initrd

    if args.native:
        raise ConfigError("eval runs the workload natively, under OSV and under trap-all itself: drop --native")
    if args.config:
        cli._refuse_beside_config(args)
        config = load_config(args.config, default_image=args.image)
    else:
        if args.image is None:
            raise ConfigError("eval needs an IMAGE (or --config FILE)")
        load_image(args.image)  # a bad image is reported before anything else
        config = default_config(cli._topology(args), args.image, cli._given(args.cmdline, ""), args.kernels,
                                args.initrd or "")
    loaded = {path: load_image(path) for path in {plan.image for plan in config.kernels if plan.image}}
    first = config.kernels[0]
    if not first.image:
        raise ConfigError(f"eval: kernel {first.name!r} has no image to run natively")
    return Workload(config, loaded[first.image], first.cmdline, load_initrd(first.initrd) if first.initrd else None,
                    {plan.name: loaded[plan.image] for plan in config.kernels if plan.image})


def _machine(workload: Workload, mode: str):
    from osvemu.osv.plan import osv_plan
    from osvemu.platform.machine import Machine
    from osvemu.platform.plan import bare_plan

    if mode == "native":
        plan = bare_plan(workload.config.topology, workload.cmdline, workload.image, workload.initrd)
    else:
        plan = osv_plan(workload.config, workload.images, monitor_mode=mode)
    machine = Machine(plan, console=lambda line: None)  # the console is kept in the transcript
    machine.boot()
    return machine


def run_once(args: argparse.Namespace, workload: Workload, mode: str) -> dict:
    """One run of ``mode``, as the JSON records it; a guest that failed is an error."""
    from osvemu.scheduler import DEFAULT_QUANTUM, RunLimits, Scheduler

    machine = _machine(workload, mode)
    scheduler = Scheduler(machine, args.quantum or DEFAULT_QUANTUM, False,
                          RunLimits(args.max_instructions, args.timeout), exact=args.exact)
    jobs = min(args.jobs or 1, len(machine.kernels))
    if jobs > 1:
        from osvemu.parallel import run_partitioned

        result = run_partitioned(machine, scheduler, jobs)
    else:
        result = scheduler.run()
    _check_guest(machine, mode, result)
    monitor = machine.monitor
    exits = dict(monitor.exits) if monitor is not None else {}
    kernels = [{"name": kernel.name,
                "instructions": sum(core.instructions for core in kernel.cores),
                "host_seconds": round(scheduler.kernel_host_seconds[kernel.index], 6),
                "virtual_ns": scheduler.kernel_ns[kernel.index],
                "exits": dict(monitor.accounts[kernel.index].exits) if monitor is not None else {}}
               for kernel in machine.kernels]
    return {"host_seconds": round(result.host_seconds, 6),
            "instructions": sum(core.instructions for core in machine.cores),
            "virtual_ns": result.virtual_ns,
            "exits": exits,
            "modeled_exit_seconds": EXIT_COSTS.seconds(exits),
            "kernels": kernels}


def _check_guest(machine, mode: str, result) -> None:
    """Every kernel ended cleanly (status 0, or halted for good)."""
    for kernel in machine.kernels:
        end = kernel.end
        if end is None or not end.clean:
            how = end.describe() if end is not None else "did not end"
            where = f'kernel "{kernel.name}"' if kernel.placement.labelled else "the guest"
            raise GuestFailed(f"eval: {mode} run: {where} failed: {how}")
    if result.status != 0:
        raise GuestFailed(f"eval: {mode} run: exit status {result.status}: {result.reason}")


# ---------------------------------------------------------------- the whole evaluation
def evaluate(args: argparse.Namespace, progress: Callable[[str], None] | None = None) -> dict:
    """Every mode, ``args.repeats`` times, in the JSON format (SCHEMA)."""
    workload = _workload(args)
    topology = workload.config.topology
    modes = {}
    for mode in MODES:
        runs = []
        for repeat in range(args.repeats):
            if progress is not None:
                progress(f"osvemu eval: {mode} run {repeat + 1} of {args.repeats}")
            runs.append(run_once(args, workload, mode))
        modes[mode] = {"runs": runs}
    return {"schema": SCHEMA,
            "image": str(workload.image.path),
            "cmdline": workload.cmdline,
            "machine": {"sockets": topology.sockets, "cores_per_socket": topology.cores_per_socket,
                        "kernels": len(workload.config.kernels)},
            "repeats": args.repeats,
            "exit_costs": {"source": EXIT_COSTS.source, "cycles_per_exit": dict(EXIT_COSTS.cycles_per_exit),
                           "cpu_hz": EXIT_COSTS.cpu_hz},
            "modes": modes}


@dataclass(frozen=True)
class ModeSummary:
    """One mode's runs, summed up as the table shows them."""

    instructions: int  # median
    host_median: float
    host_spread: float  # max - min
    exits: dict[str, int]  # median by kind
    exit_seconds: float  # median modeled cost

    @classmethod
    def of(cls, runs: list[dict]) -> ModeSummary:
        hosts = [run["host_seconds"] for run in runs]
        kinds = sorted({kind for run in runs for kind in run["exits"]}, key=_kind_order)
        return cls(int(statistics.median_low([run["instructions"] for run in runs])),
                   statistics.median(hosts), max(hosts) - min(hosts),
                   {kind: int(statistics.median_low([run["exits"].get(kind, 0) for run in runs])) for kind in kinds},
                   statistics.median([run["modeled_exit_seconds"] for run in runs]))

    @property
    def guest_seconds(self) -> float:
        """The instructions' virtual time on their cores (NS_PER_INSTRUCTION each)."""
        return self.instructions * clock.NS_PER_INSTRUCTION / clock.NS_PER_SECOND


def _kind_order(kind: str) -> tuple[int, str]:
    return (TRAP_ALL_KINDS.index(kind) if kind in TRAP_ALL_KINDS else len(TRAP_ALL_KINDS), kind)


def ratios(data: dict) -> dict[str, dict[str, float]]:
    """Each mode against native: median host time, median instructions, and
    the modeled cost of its exits as a share of its guest time."""
    summaries = {mode: ModeSummary.of(data["modes"][mode]["runs"]) for mode in MODES}
    native = summaries["native"]
    return {mode: {"host_time": summary.host_median / native.host_median if native.host_median else 0.0,
                   "instructions": summary.instructions / native.instructions if native.instructions else 0.0,
                   "modeled_exit_share": summary.exit_seconds / summary.guest_seconds if summary.instructions else 0.0}
            for mode, summary in summaries.items()}


def format_table(data: dict) -> str:
    """The evaluation as a table: a column per mode, medians of the runs."""
    summaries = {mode: ModeSummary.of(data["modes"][mode]["runs"]) for mode in MODES}
    against = ratios(data)
    machine = data["machine"]
    kinds = sorted({kind for s in summaries.values() for kind in s.exits}, key=_kind_order)
    rows: list[tuple[str, list[str]]] = [
        ("guest instructions", [f"{s.instructions:,}" for s in summaries.values()]),
        ("host seconds (median)", [f"{s.host_median:.3f}" for s in summaries.values()]),
        ("host seconds (spread)", [f"{s.host_spread:.3f}" for s in summaries.values()]),
    ]
    rows += [(f"exits: {kind}", [f"{s.exits.get(kind, 0):,}" if kind in s.exits else "-"
                                 for s in summaries.values()]) for kind in kinds]
    rows += [
        ("exits: total", [f"{sum(s.exits.values()):,}" for s in summaries.values()]),
        ("modeled exit cost (ms)", [f"{s.exit_seconds * 1e3:.3f}" for s in summaries.values()]),
        ("modeled cost / guest time", [f"{against[mode]['modeled_exit_share']:.4%}" for mode in MODES]),
        ("host time / native", [f"{against[mode]['host_time']:.3f}" for mode in MODES]),
        ("instructions / native", [f"{against[mode]['instructions']:.4f}" for mode in MODES]),
    ]
    width = max(len(label) for label, _ in rows)
    columns = [max(len(mode), *(len(values[i]) for _, values in rows)) for i, mode in enumerate(MODES)]
    title = (f"osvemu eval {data['image']}: {machine['sockets']} sockets x {machine['cores_per_socket']} cores, "
             f"OSV with {machine['kernels']} kernels, {data['repeats']} runs of each mode (medians; spread: max - min)")
    lines = [title, " " * width + "".join(f"  {mode:>{columns[i]}}" for i, mode in enumerate(MODES))]
    for label, values in rows:
        lines.append(f"{label:<{width}}" + "".join(f"  {value:>{columns[i]}}" for i, value in enumerate(values)))
    costs = data["exit_costs"]
    lines.append(f"exit cost model, at {costs['cpu_hz'] / 1e9:g} GHz: {costs['source']}")
    return "\n".join(lines) + "\n"


def write_json(path: str, data: dict) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
    except OSError as error:
        raise ConfigError(f"--json {path}: cannot write: {error.strerror}") from None


def run(args: argparse.Namespace) -> int:
    """``osvemu eval``: the table on standard output, progress on standard error."""
    from osvemu.report import check_writable

    if args.json:
        check_writable(args.json, "--json")
    data = evaluate(args, lambda line: print(line, file=sys.stderr, flush=True))
    sys.stdout.write(format_table(data))
    if args.json:
        write_json(args.json, data)
    return 0


__all__ = ["EXIT_COSTS", "MODES", "SCHEMA", "ExitCosts", "GuestFailed", "ModeSummary", "add_options", "evaluate",
           "format_table", "ratios", "run", "run_once"]
