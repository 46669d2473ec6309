"""Running the proofs of every property on a set of layouts, spread over
host processes, and printing what each found (``osvemu verify``).

A layout's routing proof is split into chunks of senders (the largest
share of the work); its hypercall, memory and boot checks are one task
each; the per-core acceptance proof is one task for all layouts.  Tasks
run in a process pool; the results are merged in a fixed order, so the
output does not depend on the number of processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from osvemu.verify import hypercall_check, memory_check, routing
from osvemu.verify.layouts import NamedLayout
from osvemu.verify.outcome import PropertyOutcome
from osvemu.verify.properties import PROPERTIES

#: Senders per routing task: small enough to balance two processes on a 32-core layout.
SENDERS_PER_TASK = 4


@dataclass
class LayoutResult:
    layout: NamedLayout
    outcomes: dict[str, PropertyOutcome] = field(default_factory=dict)  # by property name

    def merge(self, outcome: PropertyOutcome) -> None:
        mine = self.outcomes.get(outcome.name)
        if mine is None:
            self.outcomes[outcome.name] = outcome
            return
        mine.cases += outcome.cases
        mine.classes += outcome.classes
        mine.seconds += outcome.seconds
        if mine.counterexample is None:
            mine.counterexample = outcome.counterexample
        if outcome.method and outcome.method not in mine.method:
            mine.method = f"{mine.method}; {outcome.method}"


@dataclass
class VerifyResult:
    layouts: list[LayoutResult]
    acceptance: PropertyOutcome
    wall_seconds: float

    @property
    def proved(self) -> bool:
        return self.acceptance.proved and all(o.proved for r in self.layouts for o in r.outcomes.values())


def _routing_task(named: NamedLayout, senders: list[int], io: bool) -> list[PropertyOutcome]:
    report = routing.prove_routing(named.name, named.config, senders=senders, io=io)
    return [report.isolation, report.independence, report.boot]


def plan_proofs(named: NamedLayout) -> list[PropertyOutcome]:
    """The checks of the layout's plan, built once: hypercalls, memory, boot."""
    from osvemu.osv.plan import osv_plan

    plan = osv_plan(named.config)
    return [hypercall_check.prove_hypercalls(named, plan), memory_check.prove_memory(named, plan),
            memory_check.prove_boot(named, plan)]


def _acceptance_task() -> list[PropertyOutcome]:
    return [routing.prove_acceptance()]


def _tasks(layouts: Sequence[NamedLayout]) -> list[tuple[int | None, Callable[..., list[PropertyOutcome]], tuple]]:
    """(layout index or None, function, arguments), the slow ones first."""
    tasks: list[tuple[int | None, Callable[..., list[PropertyOutcome]], tuple]] = [(None, _acceptance_task, ())]
    for index, named in enumerate(layouts):
        senders = named.senders()
        for start in range(0, len(senders), SENDERS_PER_TASK):
            tasks.append((index, _routing_task, (named, senders[start:start + SENDERS_PER_TASK], start == 0)))
        tasks.append((index, plan_proofs, (named,)))
    return tasks


def verify(layouts: Sequence[NamedLayout], jobs: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> VerifyResult:
    """Every property on every layout; ``jobs`` host processes (default: the host's cores)."""
    start = time.perf_counter()
    tasks = _tasks(layouts)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    if jobs == 1:
        answers = []
        for done, (_, function, arguments) in enumerate(tasks, 1):
            answers.append(function(*arguments))
            if progress:
                progress(done, len(tasks))
    else:
        with ProcessPoolExecutor(jobs) as pool:
            futures = [pool.submit(function, *arguments) for _, function, arguments in tasks]
            answers = []
            for done, future in enumerate(futures, 1):
                answers.append(future.result())
                if progress:
                    progress(done, len(tasks))
    results = [LayoutResult(named) for named in layouts]
    acceptance = None
    for (index, _, _), outcomes in zip(tasks, answers):
        for outcome in outcomes:
            if index is None:
                acceptance = outcome
            else:
                results[index].merge(outcome)
    order = [prop.name for prop in PROPERTIES]
    for result in results:
        result.outcomes = dict(sorted(result.outcomes.items(), key=lambda item: order.index(item[0])))
    assert acceptance is not None
    return VerifyResult(results, acceptance, time.perf_counter() - start)


def describe_layout(named: NamedLayout) -> str:
    config = named.config
    cores = sum(len(plan.apic_ids) for plan in config.kernels)
    offline = len(config.offline_apic_ids)
    senders = "every core sends" if named.all_senders else f"{len(named.senders())} representative senders"
    channels = f"{len(config.channels)} channel{'' if len(config.channels) == 1 else 's'}"
    return (f"layout {named.name}: {len(config.kernels)} kernels on {cores} of {config.topology.cpu_count} cores"
            f"{f' ({offline} offline)' if offline else ''}, {channels}; {senders}")


def format_outcome(outcome: PropertyOutcome) -> list[str]:
    verdict = "PROVED" if outcome.proved else "FAILED"
    lines = [(f"  {outcome.name:<15} {verdict:<7} {outcome.cases:>16,} cases {outcome.classes:>10,} runs "
             f"{outcome.seconds:8.2f} s  {outcome.method}")]
    if outcome.counterexample is not None:
        lines.append(f"    counterexample: {outcome.counterexample.detail}")
        if outcome.counterexample.replay:
            lines.append(f"    replay: osvemu verify {outcome.counterexample.replay}")
    return lines


def format_result(result: VerifyResult) -> list[str]:
    lines = []
    for layout_result in result.layouts:
        lines.append(describe_layout(layout_result.layout))
        for outcome in layout_result.outcomes.values():
            lines += format_outcome(outcome)
    lines.append("every layout: per-core logical acceptance (SDM Vol. 3A 10.6.2.2)")
    lines += format_outcome(result.acceptance)
    return lines


__all__ = ["LayoutResult", "VerifyResult", "describe_layout", "format_outcome", "format_result", "plan_proofs",
           "verify"]
