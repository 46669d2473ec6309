"""OSV's kernels in parallel: each worker process runs some of them.

OSV's partitions share nothing but their channels, so each kernel can run
in its own host process.  The machine is built and booted once, then the
process forks (Linux ``fork``: every worker starts from the same booted
machine); the channels' memory is shared between the processes
(``MemoryBank(shared=True)``), each kernel's own memory is its worker's.

The rule that keeps a run reproducible -- the same results, console and
report for every number of workers, one included -- is lock-step epochs
(:data:`osvemu.scheduler.EPOCH_ROUNDS` rounds each):

* every worker runs the same rounds of its kernels' cores that one process
  would run of them (a kernel's rounds depend only on its own cores);
* a NOTIFY from one kernel to another is kept and delivered at the end of
  the epoch it was made in, in the order one process makes them -- in one
  process too (``Machine.epochs``);
* the console lines of an epoch are printed at its end, in the order one
  process prints them (round, then core).

What a kernel reads from a channel after a NOTIFY is therefore the same in
every run; a kernel that polls a channel another kernel is writing at the
same moment reads what it finds, as on real hardware.

The parent process routes the NOTIFYs, prints the console, decides when the
run ends (every kernel ended, nothing able to happen, a limit) and, at the
end, gathers what each worker knows of its kernels into the machine it
kept, so the report is that of one machine.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field

from osvemu.errors import EmulatorError
from osvemu.platform.apicbus import IoStats
from osvemu.platform.channels import ChannelChanges
from osvemu.platform.ends import EXIT_FAULT, EXIT_INTERRUPTED, INTERRUPTED, idle, unfinished
from osvemu.platform.machine import DeferredNotify, Machine
from osvemu.scheduler import EPOCH_ROUNDS, IDLE_END, RunLimits, RunResult, Scheduler
from osvemu.timeline import CoreTrack, TimelineRecorder


@dataclass
class EpochReport:
    """What a worker tells the parent at an epoch's end."""

    lines: list[tuple[int, int, int, str]]  # (round, core, sequence, text)
    notifies: list[DeferredNotify]
    channels: list[ChannelChanges]  # what its kernels wrote in their channels
    ended: bool  # every kernel of the worker has ended for good
    idle: bool  # no core ran and no timer was due in the whole epoch
    instructions: int
    error: str | None = None


@dataclass
class FinalState:
    """What a worker knows of its kernels when the run ends."""

    cores: dict[int, dict] = field(default_factory=dict)
    kernels: dict[int, dict] = field(default_factory=dict)
    bus: dict[int, tuple] = field(default_factory=dict)  # (sent, received, refused, by_mode, received_by_mode, io)
    io: dict[int, tuple] = field(default_factory=dict)
    monitor: dict | None = None
    kernel_ns: dict[int, int] = field(default_factory=dict)
    kernel_host_seconds: dict[int, float] = field(default_factory=dict)
    rounds: int = 0
    lines: list[tuple[int, int, int, str]] = field(default_factory=list)
    timeline: dict[int, CoreTrack] | None = None  # its cores' tracks, when a TimelineRecorder records the run


#: What a worker knows of each of its cores, given back to the parent as it is.
_CORE_FIELDS = ("instructions", "slices_run", "interrupts_taken", "exceptions_taken", "state", "fault")
#: The round given to the lines the consoles hold when the run ends.
CLOSING_ROUND = 1 << 62


def assign(kernels: int, jobs: int) -> list[frozenset[int]]:
    """Kernels to workers, round robin: kernel i to worker i mod jobs."""
    jobs = max(1, min(jobs, kernels))
    return [frozenset(range(worker, kernels, jobs)) for worker in range(jobs)]


def run_partitioned(machine: Machine, scheduler: Scheduler, jobs: int) -> RunResult:
    """Run the booted ``machine`` on ``jobs`` worker processes (at most one
    per kernel) and return the result one process would have; ``scheduler``
    gives the quantum, the modes and the limits, and afterwards describes
    the run (its rounds and kernel times) for the report."""
    groups = assign(len(machine.kernels), jobs)
    context = multiprocessing.get_context("fork")
    workers = []
    for kernels in groups:
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_work, args=(machine, scheduler, kernels, child_end), daemon=True)
        process.start()
        child_end.close()
        workers.append((kernels, process, parent_end))
    start = time.monotonic()
    notifies: dict[int, list[DeferredNotify]] = {index: [] for index in range(len(workers))}
    owner = {kernel: index for index, (kernels, _, _) in enumerate(workers) for kernel in kernels}
    why: str | None = None
    try:
        over = False
        while not over:
            try:
                over, why = _epoch(machine, scheduler, workers, notifies, owner, start)
            except KeyboardInterrupt:  # the workers ignore SIGINT: they finish as told
                over, why = True, INTERRUPTED
        finals = []
        for _, process, pipe in workers:
            pipe.send(("finish", why))
        for _, process, pipe in workers:
            finals.append(_receive(pipe, process))
    finally:
        for _, process, pipe in workers:
            pipe.close()
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    last_round = max(final.rounds for final in finals)
    for final in finals:
        _merge(machine, scheduler, final, last_round)
    _print_lines(machine, [line for final in finals for line in final.lines])
    return _result(machine, scheduler, why, time.monotonic() - start)


def _epoch(machine: Machine, scheduler: Scheduler, workers: list, notifies: dict[int, list[DeferredNotify]],
           owner: dict[int, int], start: float) -> tuple[bool, str | None]:
    """One epoch on every worker, then the NOTIFYs and channel changes
    between them: (whether the run is over, why when not every kernel ended)."""
    limits = scheduler.limits
    for index, (_, _, pipe) in enumerate(workers):
        pipe.send(("run", notifies[index]))
        notifies[index] = []
    reports, interrupted = _gather(workers)
    _print_lines(machine, [line for report in reports for line in report.lines])
    errors = [report.error for report in reports if report.error]
    if errors:
        return True, errors[0]
    if machine.channels is not None:
        machine.channels.apply([change for report in reports for change in report.channels])
    for report in reports:
        for notify in report.notifies:
            notifies[owner[notify.target]].append(notify)
    if all(report.ended for report in reports):
        return True, None
    if interrupted:
        return True, INTERRUPTED
    if all(report.idle or report.ended for report in reports) and not any(notifies.values()):
        return True, "idle"
    if limits.timeout is not None and time.monotonic() - start >= limits.timeout:
        return True, f"stopped after {limits.timeout:g} s (--timeout)"
    total = sum(report.instructions for report in reports)
    done_ns = scheduler.partitioned_progress[0] if scheduler.partitioned_progress else 0
    scheduler.partitioned_progress = (done_ns + EPOCH_ROUNDS * scheduler.round_ns, total)  # for the progress line
    if limits.max_instructions is not None and total >= limits.max_instructions:
        return True, f"stopped after {total} instructions (--max-instructions)"
    return False, None


def _gather(workers: list) -> tuple[list, bool]:
    """Every worker's epoch report, and whether Ctrl-C came meanwhile (the
    reports are still all taken, so that each pipe is left between epochs)."""
    reports, interrupted = [], False
    for _, process, pipe in workers:
        while True:
            try:
                reports.append(_receive(pipe, process))
                break
            except KeyboardInterrupt:
                interrupted = True
    return reports, interrupted


def _receive(pipe, process):
    try:
        return pipe.recv()
    except EOFError:
        process.join(timeout=5)
        raise EmulatorError(f"a worker process ended without a word (exit code {process.exitcode})") from None


def _print_lines(machine: Machine, lines: list[tuple[int, int, int, str]]) -> None:
    """Console lines of several workers, in the order one process prints them."""
    for _, _, _, text in sorted(lines):
        machine.print_console_line(text)


# ---------------------------------------------------------------- a worker
def _work(machine: Machine, template: Scheduler, kernels: frozenset[int], pipe) -> None:
    """A worker process: run ``kernels`` an epoch at a time, as told."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    lines: list[tuple[int, int, int, str]] = []
    scheduler = Scheduler(machine, template.quantum, template.fast, RunLimits(), template.exact, kernels, worker=True)
    scheduler.slice_observers = list(template.slice_observers)
    for recorder in _recorders(scheduler):
        recorder.bind(scheduler)  # its copy in this process: stamped with this scheduler's kernel times
    machine.console_sink = lambda kernel, core, text: lines.append((machine.round, core, len(lines), text))
    outcome = None
    try:
        scheduler.start()
        while True:
            command, payload = pipe.recv()
            if command == "finish":
                break
            if machine.channels is not None:
                machine.channels.refresh(kernels)  # the parent merged every worker's changes
            machine.deliver_notifies(payload)
            scheduler.start_epoch()
            error = None
            if outcome is None and not machine.ended_for_good(kernels):
                try:
                    outcome = scheduler.advance()
                except Exception as caught:  # noqa: BLE001 - reported to the parent, which stops the run
                    error = f"{type(caught).__name__}: {caught}"
            notifies, machine.deferred_notifies = machine.deferred_notifies, []
            changes = machine.channels.changes(kernels) if machine.channels is not None else []
            pipe.send(EpochReport(lines[:], notifies, changes, machine.ended_for_good(kernels), scheduler.idle_in_epoch,
                                  sum(machine.cores[i].instructions for i in _cores_of(machine, kernels)), error))
            lines.clear()
        why = payload
        if why is not None:
            machine.end_remaining(lambda kernel: idle(IDLE_END) if why == "idle" else unfinished(why), kernels)
        machine.round = CLOSING_ROUND  # what the consoles still hold comes after everything, by kernel
        for index in sorted(kernels):
            kernel = machine.kernels[index]
            last = kernel.uart.console.close()
            if last is not None:
                lines.append((CLOSING_ROUND, index, len(lines), kernel.console_text(last)))
        pipe.send(_final_state(machine, scheduler, kernels, lines))
    finally:
        pipe.close()
        os._exit(0)  # no atexit handlers, no flushing of the parent's buffers


def _cores_of(machine: Machine, kernels: frozenset[int]) -> list[int]:
    return [core.index for index in sorted(kernels) for core in machine.kernels[index].cores]


def _final_state(machine: Machine, scheduler: Scheduler, kernels: frozenset[int], lines) -> FinalState:
    final = FinalState(rounds=scheduler.rounds, lines=list(lines))
    for index in sorted(kernels):
        kernel = machine.kernels[index]
        final.kernels[index] = {"end": kernel.end, "lives": list(kernel.lives), "restarts_left": kernel.restarts_left}
        final.kernel_ns[index] = scheduler.kernel_ns[index]
        final.kernel_host_seconds[index] = scheduler.kernel_host_seconds[index]
        for core in kernel.cores:
            lapic = machine.lapics[core.index]
            final.cores[core.index] = {name: getattr(core, name) for name in _CORE_FIELDS} | {
                "special_counts": dict(core.special_counts), "msr_counts": dict(core.msr_counts),
                "timer_fires": lapic.timer_fires, "rip": core.rip if core.built else None}
    for apic_id, stats in machine.bus.stats.items():
        final.bus[apic_id] = (stats.sent, stats.received, stats.refused, dict(stats.by_mode),
                              dict(stats.received_by_mode), stats.io_received)
    for recorder in _recorders(scheduler):
        final.timeline = recorder.tracks_of(kernels)
    for owner, stats in machine.bus.io_stats.items():
        final.io[owner] = (stats.sent, stats.delivered, stats.refused)
    monitor = machine.monitor
    if monitor is not None:
        final.monitor = {"exits": dict(monitor.exits), "accounts": {i: monitor.accounts[i] for i in sorted(kernels)},
                         "violations": list(monitor.violations), "dropped": monitor.dropped}
    return final


# ---------------------------------------------------------------- the parent, at the end
def _merge(machine: Machine, scheduler: Scheduler, final: FinalState, last_round: int) -> None:
    """One worker's knowledge of its kernels, into the parent's machine.  A
    worker stops once its kernels have ended; one process would have gone on
    to ``last_round``, an ended kernel's time moving on a quantum a round."""
    step = scheduler.round_ns
    for index, data in final.kernels.items():
        kernel = machine.kernels[index]
        kernel.end, kernel.lives, kernel.restarts_left = data["end"], data["lives"], data["restarts_left"]
        kernel.restart_due = False
        scheduler.kernel_ns[index] = final.kernel_ns[index] + (last_round - final.rounds) * step
        scheduler.kernel_host_seconds[index] = final.kernel_host_seconds[index]
    for index, data in final.cores.items():
        core = machine.cores[index]
        for name in _CORE_FIELDS:
            setattr(core, name, data[name])
        core.final_rip = data["rip"]
        core.special_counts.update(data["special_counts"])
        core.msr_counts.update(data["msr_counts"])
        machine.lapics[index].timer_fires = data["timer_fires"]
    for apic_id, (sent, received, refused, by_mode, received_by_mode, io_received) in final.bus.items():
        stats = machine.bus.stats[apic_id]
        stats.sent += sent
        stats.received += received
        stats.refused += refused
        stats.io_received += io_received
        for counts, more in ((stats.by_mode, by_mode), (stats.received_by_mode, received_by_mode)):
            for mode, count in more.items():
                counts[mode] = counts.get(mode, 0) + count
    if final.timeline is not None:
        for recorder in _recorders(scheduler):
            recorder.absorb(final.timeline)
    for owner, (sent, delivered, refused) in final.io.items():
        stats = machine.bus.io_stats.setdefault(owner, IoStats())
        stats.sent += sent
        stats.delivered += delivered
        stats.refused += refused
    if final.monitor is not None and machine.monitor is not None:
        monitor = machine.monitor
        monitor.exits.update(final.monitor["exits"])
        for index, account in final.monitor["accounts"].items():
            monitor.accounts[index] = account
        monitor.absorb(final.monitor["violations"], final.monitor["dropped"])
    scheduler.rounds = last_round


def _recorders(scheduler: Scheduler) -> list[TimelineRecorder]:
    """The timeline recorders among the scheduler's slice observers."""
    return [observer for observer in scheduler.slice_observers if isinstance(observer, TimelineRecorder)]


def _result(machine: Machine, scheduler: Scheduler, why: str | None, seconds: float) -> RunResult:
    faults = [core.fault for core in machine.cores if core.fault is not None]
    if why == INTERRUPTED:
        return RunResult(EXIT_INTERRUPTED, why, seconds, scheduler.now_ns, scheduler.rounds, faults)
    if why is not None and why != "idle" and not why.startswith("stopped after"):
        return RunResult(EXIT_FAULT, f"a worker failed: {why}", seconds, scheduler.now_ns, scheduler.rounds, faults)
    status = machine.run_status()
    if why is None or why == "idle":
        reason = scheduler.ended_reason()
    else:
        reason = why
    return RunResult(status, reason, seconds, scheduler.now_ns, scheduler.rounds, faults)


__all__ = ["EpochReport", "FinalState", "assign", "run_partitioned"]
