"""A per-core timeline of a run: what each core was doing, in virtual time.

:class:`TimelineRecorder` follows a run from the scheduler's slice
observers (each slice: the core ran from its start for the instructions it
retired, then was in the state it was left in) and from the machine's
events (interrupts taken, IPIs sent and received, OSV's refusals, a kernel's
end and restart).  It subscribes only while it records, so a run without
``--timeline`` pays nothing for it.

Each core has *intervals* -- running, halted, wait-for-sipi, stopped (its
kernel ended) -- and *marks*, instants of one kind.  Times are the virtual
nanoseconds of the core's own kernel (:mod:`osvemu.clock`): an event inside
a slice is stamped with the core's clock, one between slices with its
kernel's time; an IPI is received at the time it was sent.  Memory is
bounded: each core keeps its first ``cap`` state changes and ``cap``
marks, and counts what it dropped; the intervals of a core that dropped
state changes end at its first dropped change.

:meth:`TimelineRecorder.to_json` gives the report's ``"timeline"`` section
(docs/report.schema.json); ``osvemu plot`` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osvemu.clock import NS_PER_INSTRUCTION
from osvemu.cpu.core import Core, CoreState
from osvemu.events import (
    DoubleFault,
    Event,
    InitReceived,
    InterruptTaken,
    IpiReceived,
    IpiSent,
    KernelExit,
    KernelRestarted,
    OsvHypercall,
    OsvRefused,
)
from osvemu.osv.hypercalls import Hypercall
from osvemu.platform.machine import Kernel, Machine
from osvemu.scheduler import Scheduler

#: State changes and marks each core keeps by default (each list on its own).
DEFAULT_CAP = 4096
#: The timeline section's own format, inside the report's schema_version.
TIMELINE_FORMAT = 1
#: The state a core of an ended kernel is shown in (its CoreState may still say running).
STOPPED = CoreState.STOPPED.value
#: Mark kinds.
INTERRUPT, NMI, EXCEPTION, SOFTWARE = "interrupt", "nmi", "exception", "int"
IPI_SENT, IPI_RECEIVED, REFUSED, END, RESTART = "ipi-sent", "ipi-received", "refused", "end", "restart"
MARK_KINDS = (INTERRUPT, NMI, EXCEPTION, SOFTWARE, IPI_SENT, IPI_RECEIVED, REFUSED, END, RESTART)


@dataclass
class CoreTrack:
    """One core's recorded state changes and marks."""

    index: int
    state: str  # the state since the last change
    changes: list[tuple[int, str]] = field(default_factory=list)  # (ns, state entered)
    marks: list[tuple[int, str, str]] = field(default_factory=list)  # (ns, kind, detail)
    changes_dropped: int = 0
    marks_dropped: int = 0
    closed_at: int | None = None  # the time of the first dropped change: the intervals end there

    def enter(self, ns: int, state: str, cap: int) -> None:
        if state == self.state:
            return
        self.state = state
        if self.closed_at is not None:
            self.changes_dropped += 1
            return
        if self.changes and ns <= self.changes[-1][0]:
            # Never back in time (a core of the same round ran earlier on the
            # host): the interval the last change opened had no length.
            ns = self.changes.pop()[0]
            if self.changes and self.changes[-1][1] == state:
                return
        if len(self.changes) >= cap:
            self.changes_dropped += 1
            self.closed_at = ns
            return
        self.changes.append((ns, state))

    def mark(self, ns: int, kind: str, detail: str, cap: int) -> None:
        if len(self.marks) >= cap:
            self.marks_dropped += 1
            return
        self.marks.append((ns, kind, detail))

    def intervals(self, end_ns: int) -> list[list]:
        """[start, end, state] from each state change to the next, the last
        closed at ``end_ns``; a span of no length is left out, but for the
        last (the state the core ended in)."""
        end = self.closed_at if self.closed_at is not None else end_ns
        bounds = [ns for ns, _ in self.changes[1:]] + [max(end, self.changes[-1][0])] if self.changes else []
        spans = [[ns, bound, state] for (ns, state), bound in zip(self.changes, bounds, strict=True)]
        return [span for span in spans[:-1] if span[1] > span[0]] + spans[-1:]


class TimelineRecorder:
    """Records every core's intervals and marks, from its creation until :meth:`stop`."""

    def __init__(self, machine: Machine, scheduler: Scheduler, cap: int = DEFAULT_CAP) -> None:
        if cap < 1:
            raise ValueError("the timeline's cap must be positive")
        self.machine = machine
        self.scheduler = scheduler
        self.cap = cap
        self._kernels = [machine.kernel_of(core) for core in machine.cores]
        self._kernel_of_apic = {core.apic_id: self._kernels[core.index] for core in machine.cores}
        self.tracks = [CoreTrack(core.index, "") for core in machine.cores]
        self._sent_ns = 0  # when the IPI whose receptions follow was sent
        self.recording = False
        self.start()

    # ------------------------------------------------------------ recording
    def start(self) -> None:
        """Subscribe to the scheduler's slices and the machine's events (a
        new recorder has: it records from its creation until :meth:`stop`);
        each core starts in the state it is in now."""
        if self.recording:
            return
        for core, track in zip(self.machine.cores, self.tracks, strict=True):
            if self._kernels[core.index] is not None and not track.changes:
                track.enter(self._now(core), self._state_of(core), self.cap)
        self.scheduler.slice_observers.append(self)
        self.machine.events.subscribe(self._on_event)
        self.recording = True

    def stop(self) -> None:
        if not self.recording:
            return
        self.scheduler.slice_observers.remove(self)
        self.machine.events.unsubscribe(self._on_event)
        self.recording = False

    def bind(self, scheduler: Scheduler) -> None:
        """Stamp events with this scheduler's kernel times from now on (a
        worker process of a partitioned run has its own scheduler)."""
        self.scheduler = scheduler

    def __call__(self, core: Core, start_ns: int, retired: int) -> None:
        """A slice observer: ``core`` ran from ``start_ns`` and was left in its state."""
        track = self.tracks[core.index]
        if not retired and core.state is not CoreState.RUNNING:
            return  # it found nothing to do (woken and halted again before an instruction)
        track.enter(start_ns, CoreState.RUNNING.value, self.cap)
        track.enter(start_ns + retired * NS_PER_INSTRUCTION, self._state_of(core), self.cap)

    def _state_of(self, core: Core) -> str:
        kernel = self._kernels[core.index]
        if kernel is not None and kernel.ended:
            return STOPPED
        return core.state.value

    def _now(self, core: Core) -> int:
        """The virtual time of an event on ``core``: its clock inside its
        slice, its kernel's time between slices."""
        kernel = self._kernels[core.index]
        kernel_ns = self.scheduler.kernel_ns[kernel.index] if kernel is not None else 0
        return max(core.clock.now_ns(), kernel_ns)

    def _on_event(self, event: Event) -> None:
        core = self.machine.cores[event.core]
        track = self.tracks[event.core]
        record = event.record
        cap = self.cap
        if isinstance(record, InterruptTaken):
            track.mark(self._now(core), record.kind.value, f"vector {record.vector:#04x}", cap)
        elif isinstance(record, DoubleFault):
            track.mark(self._now(core), EXCEPTION, f"vector 0x08 ({record.cause})", cap)
        elif isinstance(record, IpiSent):
            self._sent_ns = self._now(core)
            own = self._kernels[event.core]
            if not record.delivered or any(self._kernel_of_apic[apic] is own for apic in record.delivered):
                track.mark(self._sent_ns, IPI_SENT, record.describe(hex), cap)
            # else a NOTIFY delivered at an epoch's end, marked when it was made (OsvHypercall)
        elif isinstance(record, IpiReceived):
            own = self._kernel_of_apic[record.sender] is self._kernels[event.core]
            track.mark(self._sent_ns if own else self._now(core), IPI_RECEIVED, record.describe(hex), cap)
        elif isinstance(record, OsvHypercall):
            if record.number == Hypercall.NOTIFY and record.error is None and len(record.args) >= 2:
                target, vector = record.args[:2]
                track.mark(self._now(core), IPI_SENT, f"NOTIFY kernel {target} vector {vector:#04x}", cap)
        elif isinstance(record, InitReceived):
            track.enter(self._sent_ns, CoreState.WAIT_FOR_SIPI.value, cap)
        elif isinstance(record, OsvRefused):
            track.mark(self._now(core), REFUSED, f"{record.kind.value}: {record.reason}", cap)
        elif isinstance(record, KernelExit):
            ns = self._now(core)
            track.mark(ns, END, record.describe(hex), cap)
            self._whole_kernel(self._kernels[event.core], ns)
        elif isinstance(record, KernelRestarted):
            ns = self._now(core)
            track.mark(ns, RESTART, record.describe(hex), cap)
            self._whole_kernel(self._kernels[event.core], ns)

    def _whole_kernel(self, kernel: Kernel | None, ns: int) -> None:
        """A kernel ended or booted again: each of its cores is in its new state."""
        if kernel is None:
            return
        for core in kernel.cores:
            self.tracks[core.index].enter(ns, self._state_of(core), self.cap)

    # ------------------------------------------------------------ workers
    def tracks_of(self, kernels: frozenset[int]) -> dict[int, CoreTrack]:
        """The tracks of these kernels' cores (a worker hands them back)."""
        return {core.index: self.tracks[core.index] for index in sorted(kernels)
                for core in self.machine.kernels[index].cores}

    def absorb(self, tracks: dict[int, CoreTrack]) -> None:
        """Tracks a worker process recorded, in place of this process's."""
        for index, track in tracks.items():
            self.tracks[index] = track

    # ------------------------------------------------------------ the report's section
    def to_json(self) -> dict:
        cores = []
        for core, track in zip(self.machine.cores, self.tracks, strict=True):
            kernel = self._kernels[core.index]
            end_ns = self.scheduler.kernel_ns[kernel.index] if kernel is not None else 0
            cores.append({
                "index": core.index,
                "apic_id": core.apic_id,
                "kernel": kernel.name if kernel is not None else None,
                "intervals": track.intervals(end_ns),
                "marks": [list(mark) for mark in track.marks],
                "intervals_dropped": track.changes_dropped,
                "marks_dropped": track.marks_dropped,
            })
        return {"format": TIMELINE_FORMAT, "cap": self.cap, "end_ns": max(self.scheduler.kernel_ns, default=0),
                "cores": cores}


__all__ = ["DEFAULT_CAP", "MARK_KINDS", "CoreTrack", "TimelineRecorder"]
