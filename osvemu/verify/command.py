"""``osvemu verify``: the proofs, the SPIN model, the mutation check, the
attack campaign and the replays, as the command line asks for them.

Exit status: 0 when everything asked for holds (every property PROVED, 0
model errors, every mutant caught, 0 breaches); 1 when something does not
(a counterexample, a model error, a surviving mutant, a breach); 2 for bad
input; 3 when a tool a check needs is missing (spin, gcc, dask).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from osvemu.errors import ConfigError
from osvemu.verify import layouts as layout_names
from osvemu.verify.layouts import NamedLayout
from osvemu.verify.outcome import PropertyOutcome

#: The SPIN model's default size: three kernels, one malicious, two cores each.
DEFAULT_SPIN_SIZE = (3, 2)
#: Where the mutation check runs each proof: small layouts, so a mutant the
#: routing proof does not catch costs seconds, not minutes.
MUTANT_ROUTING_LAYOUT = "sparse"
MUTANT_PLAN_LAYOUT = "uneven"
#: How the mutation check names the proofs of a plan, by property.
PLAN_CHECKS = {"hypercalls": "hypercall proof", "memory": "memory proof", "boot-protocol": "boot proof"}


def chosen_layouts(args: argparse.Namespace) -> list[NamedLayout]:
    names = args.layout or ([] if args.config else list(layout_names.DEFAULT_LAYOUTS))
    if "all" in names:
        names = list(layout_names.KNOWN_LAYOUTS)
    chosen = [layout_names.named(name) for name in dict.fromkeys(names)]
    chosen += [layout_names.from_file(path) for path in args.config or ()]
    return chosen


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    if args.json and args.json != "-":
        from osvemu.report import check_writable
        check_writable(args.json, "--json")  # before the work, not after it
    if args.replay_ipi:
        return replay_ipi(args, out)
    if args.replay:
        return replay_program(args, out)
    if args.mutants:
        return mutation_check(args, out)
    if args.campaign is not None:
        return campaign(args, out)
    return proofs(args, out)


# ---------------------------------------------------------------- the proofs
def proofs(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from osvemu.verify import runner

    chosen = chosen_layouts(args)
    if not args.no_spin:
        _need_spin("osvemu verify")
    out(f"osvemu verify: {_count(len(chosen), 'layout')}, "
        f"{_count(args.jobs, 'process') if args.jobs else 'a process per host core'}")
    spin_lines: list[str] = []
    with ThreadPoolExecutor(1) as background:  # the model check is gcc and pan: it runs beside the proofs
        pending = None if args.no_spin else background.submit(spin_check, args.spin, spin_lines.append)
        result = runner.verify(chosen, args.jobs)
        for line in runner.format_result(result):
            out(line)
        spin = pending.result() if pending is not None else None
    for line in spin_lines:
        out(line)
    verdict = result.proved and (spin is None or spin.ok)
    out(f"{'PROVED' if verdict else 'FAILED'}: {_count(len(chosen), 'layout')} in {result.wall_seconds:.1f} s"
        + (f"; SPIN model {spin.errors} errors over its {'full' if spin.complete else 'INCOMPLETE'} state space"
           if spin is not None else ""))
    if args.json:
        _write_json(args.json, {
            "layouts": {r.layout.name: {name: _outcome_json(o) for name, o in r.outcomes.items()}
                        for r in result.layouts},
            "acceptance": _outcome_json(result.acceptance),
            "spin": _spin_json(spin) if spin is not None else None,
            "proved": verdict, "wall_seconds": round(result.wall_seconds, 3)})
    return 0 if verdict else 1


def _need_spin(what: str) -> None:
    """Fail before the work when the SPIN model cannot run (exit status 3)."""
    from osvemu.verify import spin

    if not spin.spin_available():
        raise spin.SpinError(f"{what} runs the SPIN model, which needs spin and gcc on the PATH "
                             "(Debian: apt-get install spin gcc), or give --no-spin")


def spin_check(size: tuple[int, int], out: Callable[[str], None]):
    """The SPIN model (verify/osv.pml) at ``size`` = (kernels, cores): its lines, and the result."""
    from osvemu.verify import spin

    kernels, cores = size
    result = spin.check_model(kernels=kernels, cores=cores)
    for line in result.summary():
        out(line)
    return result


# ---------------------------------------------------------------- mutants
@dataclass(frozen=True)
class MutantVerdict:
    name: str
    description: str
    caught_by: tuple[str, ...]  # each check that failed with the mutant in place, with what it found
    seconds: float


def _check_mutant(name: str, spin_size: tuple[int, int] | None, campaign_programs: int) -> MutantVerdict:
    """Every check, with mutant ``name`` in place (in this worker process)."""
    from osvemu.verify import mutants, routing, runner

    start = time.perf_counter()
    caught: list[str] = []

    def note(check: str, outcome: PropertyOutcome) -> None:
        if not outcome.proved:
            caught.append(f"{check} ({outcome.name}): {outcome.counterexample.detail[:160]}")

    with mutants.activate(name) as mutant:
        try:
            small = layout_names.named(MUTANT_ROUTING_LAYOUT)
            report = routing.prove_routing(small.name, small.config)
            for outcome in (report.isolation, report.independence, report.boot):
                note("routing proof", outcome)
            note("acceptance proof", routing.prove_acceptance())
            for outcome in runner.plan_proofs(layout_names.named(MUTANT_PLAN_LAYOUT)):
                note(PLAN_CHECKS[outcome.name], outcome)
        except Exception as error:  # noqa: BLE001 - a mutant that makes a proof crash is caught by it
            caught.append(f"proofs: raised {type(error).__name__}: {error}")
        if spin_size is not None:
            from osvemu.verify import spin
            try:
                result = spin.check_model(kernels=spin_size[0], cores=spin_size[1])
                if not result.ok:
                    caught.append(f"SPIN model: {result.errors} errors"
                                  + (f": {result.failures[0][:160]}" if result.failures else ""))
            except spin.SpinError:
                raise  # spin, gcc or pan failed: the tool's failure, not the mutant's catch
            except Exception as error:  # noqa: BLE001 - the mutant made the table generation raise
                caught.append(f"SPIN model: raised {type(error).__name__}: {error}")
        if campaign_programs:
            from osvemu.verify import campaign
            summary = campaign.run_campaign(campaign_programs, 0, workers=1, mutant=name)
            if summary.breaches:
                caught.append(f"attack campaign: {len(summary.breaches)} of {summary.programs} programs breached")
    return MutantVerdict(name, mutant.description, tuple(caught), time.perf_counter() - start)


def mutation_check(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from osvemu.verify import mutants

    names = args.mutant or [m.name for m in mutants.MUTANTS]
    unknown = [name for name in names if name not in mutants.BY_NAME]
    if unknown:
        raise ConfigError(f"--mutant {unknown[0]}: no such mutant (known: {', '.join(mutants.BY_NAME)})")
    spin_size = None if args.no_spin else args.spin
    if spin_size is not None:
        _need_spin("the mutation check")
    programs = args.campaign or 0
    out(f"osvemu verify --mutants: {len(names)} seeded bugs; checks: routing proof ({MUTANT_ROUTING_LAYOUT}), "
        f"acceptance, hypercall, memory and boot proofs ({MUTANT_PLAN_LAYOUT})"
        + (f", SPIN model {spin_size[0]}x{spin_size[1]}" if spin_size else "")
        + (f", a {programs}-program attack campaign" if programs else ""))
    start = time.perf_counter()
    jobs = max(1, args.jobs or 2)
    with ProcessPoolExecutor(jobs) as pool:
        verdicts = list(pool.map(_check_mutant, names, [spin_size] * len(names), [programs] * len(names)))
    survivors = [v for v in verdicts if not v.caught_by]
    for verdict in verdicts:
        out(f"{verdict.name:<32} {'CAUGHT' if verdict.caught_by else 'SURVIVED'} in {verdict.seconds:.1f} s: "
            f"{verdict.description}")
        for line in verdict.caught_by:
            out(f"    by {line}")
    out(f"{len(verdicts) - len(survivors)} of {len(verdicts)} mutants caught in {time.perf_counter() - start:.1f} s")
    if args.json:
        _write_json(args.json, {"mutants": [asdict(v) for v in verdicts], "survivors": [v.name for v in survivors]})
    return 1 if survivors else 0


# ---------------------------------------------------------------- campaign
def campaign(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from osvemu.verify import campaign as attack

    progress = _ProgressBar(args.campaign) if sys.stderr.isatty() else None
    summary = attack.run_campaign(args.campaign, args.seed, workers=args.jobs, scheduler=args.scheduler,
                                  progress=progress.update if progress else None)
    if progress:
        progress.close()
    for line in attack.format_summary(summary).splitlines():
        out(line)
    if args.json:
        _write_json(args.json, asdict(summary))
    return 1 if summary.breaches else 0


class _ProgressBar:
    """A rich progress bar on standard error, when rich is installed."""

    def __init__(self, total: int) -> None:
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:
            self.progress = None
            return
        self.progress = Progress(transient=True, console=Console(stderr=True))
        self.task = self.progress.add_task("attack programs", total=total)
        self.progress.start()

    def update(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def replay_program(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from osvemu.verify import campaign as attack

    seed, index = args.replay
    result = attack.replay(seed, index)
    for line in attack.format_replay(result).splitlines():
        out(line)
    return 1 if result.breach else 0


# ---------------------------------------------------------------- an ICR on the emulator
def replay_ipi(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """One ICR write, as a counterexample names it, through the real
    machine: the sender's local APIC, the bus, the policy, the deliveries."""
    from osvemu.osv.plan import osv_plan
    from osvemu.platform import lapic as lapic_registers
    from osvemu.platform import layout
    from osvemu.platform.machine import Machine
    from osvemu.verify import routing

    chosen = chosen_layouts(args)
    if len(chosen) != 1:
        raise ConfigError("--replay-ipi needs one --layout or --config")
    named = chosen[0]
    sender, low, high, state_name = args.replay_ipi
    classes = {cls.name: cls for cls in routing.STATE_CLASSES}
    if state_name not in classes:
        raise ConfigError(f"--replay-ipi: no own state {state_name!r} (known: {', '.join(classes)})")
    machine = Machine(osv_plan(named.config), console=lambda line: None)
    core_of = {core.apic_id: core for core in machine.cores}
    if sender not in core_of:
        raise ConfigError(f"--replay-ipi: APIC {sender} is not a core of layout {named.name}")
    owner = {apic: plan.index for plan in named.config.kernels for apic in plan.apic_ids}
    own = sorted(apic for apic, kernel in owner.items() if kernel == owner.get(sender))
    for apic, (ldr, dfr, ppr) in zip(own, classes[state_name].states(len(own), 0)):
        for register, value in ((lapic_registers.APIC_LDR, ldr), (lapic_registers.APIC_DFR, dfr),
                                (lapic_registers.APIC_TPR, ppr)):
            machine.mmio_write(core_of[apic], layout.LAPIC_BASE + register, value)
    before = {apic: (machine.bus.stats[apic].received, core_of[apic].state.value) for apic in core_of}
    machine.mmio_write(core_of[sender], layout.LAPIC_BASE + lapic_registers.APIC_ICR_HIGH, high)
    machine.mmio_write(core_of[sender], layout.LAPIC_BASE + lapic_registers.APIC_ICR_LOW, low)
    reached = [apic for apic in core_of
               if (machine.bus.stats[apic].received, core_of[apic].state.value) != before[apic]]
    out(f"layout {named.name}: APIC {sender} (kernel {owner.get(sender)}) writes ICR {high:#010x}:{low:#010x}, "
        f"own state {state_name}")
    for apic in reached:
        kernel = owner.get(apic)
        out(f"  reached APIC {apic} (kernel {kernel}, now {core_of[apic].state.value})"
            + ("" if kernel == owner.get(sender) else "  <-- outside the sender's partition"))
    if not reached:
        out("  reached no core")
    violations = machine.monitor.violations if machine.monitor else []
    for violation in violations:
        out(f"  refused: {violation.reason}")
    foreign = [apic for apic in reached if owner.get(apic) != owner.get(sender)]
    return 1 if foreign else 0


# ---------------------------------------------------------------- output
def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "es" if noun.endswith("s") else "s")


def _outcome_json(outcome: PropertyOutcome) -> dict:
    return {"proved": outcome.proved, "cases": outcome.cases, "runs": outcome.classes,
            "seconds": round(outcome.seconds, 3), "method": outcome.method,
            "counterexample": asdict(outcome.counterexample) if outcome.counterexample else None}


def _spin_json(result) -> dict:
    return {"errors": result.errors, "states_stored": result.states_stored, "transitions": result.transitions,
            "memory_mb": result.memory_mb, "depth": result.depth, "complete": result.complete,
            "seconds": round(result.seconds, 3), "failures": list(result.failures)}


def _write_json(path: str, data: dict) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        with open(path, "w") as handle:
            handle.write(text)
    except OSError as error:
        raise ConfigError(f"--json {path}: cannot write: {error.strerror}") from None


__all__ = ["DEFAULT_SPIN_SIZE", "MutantVerdict", "chosen_layouts", "run"]
