"""``osvemu trace --format perfetto``: the run as Chrome trace-event JSON.

The format is Google's "Trace Event Format" document (the JSON Object
Format, ``{"traceEvents": [...]}``), which Perfetto's UI and trace
processor and chrome://tracing open.  What a run becomes:

* one process per kernel, named after it (the bare machine: one process
  "machine"), and one thread per core in it, named with its label
  (``k2/c16``): the format's metadata events (``ph: "M"``, process_name,
  thread_name and their sort indices);
* every slice the scheduler ran on a core as a complete event named
  "running" (``ph: "X"``) from the slice's start to its end;
* every machine event as an instant on its core's thread (``ph: "i"``,
  ``s: "t"``) named with its trace keyword (interrupt, timer, hlt, uart,
  ...), its trace line's text in ``args``; each refusal (an IPI's, or any
  violation OSV records) as an instant named "refused" with its reason;
* every delivered IPI as a flow arrow: a flow start (``ph: "s"``) on the
  sender's thread and a flow end (``ph: "f"``, ``bp: "e"``) on the
  receiver's, one id per arrow, each bound to a zero-length "ipi" or
  "ipi-received" slice at the same time, so a reader has a slice to attach
  it to whether or not the core was running.

Timestamps are the core's virtual time (osvemu.clock) in microseconds.  An
event on a core that is not running is stamped with the later of its own
clock and its kernel's current time, an IPI inside a kernel arrives no
earlier than it was sent, and no instant on a thread is stamped earlier than
the one before it, so each thread's events read in the order they happened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from osvemu.clock import NS_PER_INSTRUCTION
from osvemu.cpu.core import Core
from osvemu.events import (
    ConsoleLine,
    Event,
    IpiReceived,
    IpiRefused,
    IpiSent,
    Locate,
    OsvHypercall,
    OsvRefused,
    Record,
)
from osvemu.platform.machine import Machine
from osvemu.scheduler import Scheduler

#: Process and thread ids start at 1: readers treat pid/tid 0 as the idle task.
FIRST_ID = 1
BARE_MACHINE_PROCESS = "machine"


def microseconds(ns: int) -> str:
    """Integer nanoseconds as the format's microseconds (a JSON number).

    A quarter of a nanosecond is added: readers that turn microseconds back
    into integer nanoseconds by ``int(us * 1000.0)`` (Perfetto's trace
    processor) get exactly ``ns`` back, which a float of ``ns / 1000`` does
    not always give (5714.46 * 1000.0 truncates to 5714459)."""
    return f"{ns // 1000}.{ns % 1000:03d}25"


@dataclass(frozen=True)
class Track:
    """One core's thread in the trace."""

    pid: int
    tid: int
    process: str  # its kernel's name
    thread: str  # the core's label


class TraceEventWriter:
    """Writes trace events to a text stream as they come, one per line, so
    that :meth:`close` (in a ``finally``) always leaves valid JSON."""

    def __init__(self, out: IO[str], tracks: list[Track]) -> None:
        self.out = out
        self._first = True
        self._closed = False
        out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
        processes: dict[int, str] = {}
        for track in tracks:
            processes.setdefault(track.pid, track.process)
        for pid, name in processes.items():
            self._metadata("process_name", pid, None, {"name": name})
            self._metadata("process_sort_index", pid, None, {"sort_index": pid})
        for track in tracks:
            self._metadata("thread_name", track.pid, track.tid, {"name": track.thread})
            self._metadata("thread_sort_index", track.pid, track.tid, {"sort_index": track.tid})

    def complete(self, track: Track, name: str, start_ns: int, duration_ns: int, args: dict | None = None) -> None:
        """A complete event (``ph: "X"``): a slice with its duration."""
        self._event(track, "X", name, start_ns, f', "dur": {microseconds(duration_ns)}', args)

    def instant(self, track: Track, name: str, ns: int, args: dict | None = None) -> None:
        """A thread-scoped instant event (``ph: "i"``, ``s: "t"``)."""
        self._event(track, "i", name, ns, ', "s": "t"', args)

    def flow_start(self, track: Track, flow: int, ns: int) -> None:
        """A flow start (``ph: "s"``): binds to the enclosing slice at ``ns``."""
        self._event(track, "s", "ipi", ns, f', "cat": "ipi", "id": {flow}', None)

    def flow_end(self, track: Track, flow: int, ns: int) -> None:
        """A flow end (``ph: "f"``) with binding point "e": it binds to the
        slice enclosing ``ns``, not to the next slice to begin."""
        self._event(track, "f", "ipi", ns, f', "cat": "ipi", "id": {flow}, "bp": "e"', None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.out.write("\n]}\n")
            self.out.flush()

    def _metadata(self, name: str, pid: int, tid: int | None, args: dict) -> None:
        thread = f', "tid": {tid}' if tid is not None else ""
        self._line(f'{{"ph": "M", "name": "{name}", "pid": {pid}{thread}, "args": {json.dumps(args)}}}')

    def _event(self, track: Track, phase: str, name: str, ns: int, extra: str, args: dict | None) -> None:
        text = (f'{{"ph": "{phase}", "name": {json.dumps(name)}, "ts": {microseconds(ns)}, "pid": {track.pid}, '
                f'"tid": {track.tid}{extra}')
        if args:
            text += f', "args": {json.dumps(args)}'
        self._line(text + "}")

    def _line(self, text: str) -> None:
        self.out.write(text if self._first else ",\n" + text)
        self._first = False


class PerfettoExporter:
    """Turns the machine's events and the scheduler's slices on the traced
    cores into trace events (the module docstring says how)."""

    def __init__(self, machine: Machine, scheduler: Scheduler, cores: list[Core], out: IO[str],
                 located: Mapping[int, Locate]) -> None:
        self.machine, self.scheduler, self.located = machine, scheduler, located  # per core: its addresses named
        #: A core no kernel owns stays offline: it gets no thread.
        self.tracks = {core.index: _track(machine, core) for core in cores if machine.kernel_of(core)}
        self.writer = TraceEventWriter(out, list(self.tracks.values()))
        self._retired = {index: machine.cores[index].instructions for index in self.tracks}  # at its last slice end
        self._floor = dict.fromkeys(self.tracks, 0)  # the latest instant on each thread
        #: Receiver core -> the arrows of the IPI being sent to it: (flow id, time sent, sender's kernel index).
        self._arrows: dict[int, list[tuple[int, int, int]]] = {}
        self._next_flow = 1
        self._core_of_apic = {core.apic_id: core.index for core in machine.cores}

    def close(self) -> None:
        self.writer.close()

    # ------------------------------------------------------------ inputs
    def start(self) -> None:
        """Tracing starts (at once, or at --from): slices count from here."""
        for index in self.tracks:
            self._retired[index] = self.machine.cores[index].instructions

    def slice_ended(self, core: Core) -> None:
        track = self.tracks.get(core.index)
        if track is None:
            return
        retired = core.instructions - self._retired[core.index]
        self._retired[core.index] = core.instructions
        if retired > 0:
            start = core.clock.slice_start_ns
            duration = retired * NS_PER_INSTRUCTION
            self.writer.complete(track, "running", start, duration, {"instructions": retired})

    def event(self, event: Event) -> None:
        track = self.tracks.get(event.core)
        if track is None:
            return
        core = self.machine.cores[event.core]
        record = event.record
        if isinstance(record, IpiReceived):
            self._received(core, track, record)
            return
        ns = self._stamp(core, self._now(core))
        if isinstance(record, IpiSent):
            self._sent_ipi(core, track, record, ns)
        elif isinstance(record, (IpiRefused, OsvRefused)):
            self.writer.instant(track, "refused", ns, _refusal_args(record))
        else:
            self.writer.instant(track, _instant_name(record), ns, _args(record, self.located[core.index]))

    # ------------------------------------------------------------ IPIs
    def _sent_ipi(self, core: Core, track: Track, record: IpiSent, ns: int) -> None:
        kernel = self.machine.kernel_of(core)
        self.writer.complete(track, "ipi", ns, 0, _args(record, self.located[core.index]))
        self._arrows.clear()
        for apic_id in record.delivered:
            receiver = self._core_of_apic[apic_id]
            if receiver not in self.tracks:
                continue  # not traced: no arrow
            flow = self._next_flow
            self._next_flow += 1
            self._arrows.setdefault(receiver, []).append((flow, ns, kernel.index))
            self.writer.flow_start(track, flow, ns)
        if not kernel.placement.labelled:
            for apic_id, reason in record.refused:  # under OSV the tracer hands these on as IpiRefused
                self.writer.instant(track, "refused", ns, {"icr": record.icr, "apic_id": apic_id, "reason": reason})

    def _received(self, core: Core, track: Track, record: IpiReceived) -> None:
        arrows = self._arrows.get(core.index)
        arrow = arrows.pop(0) if arrows else None  # None: from a core not traced
        natural = self._now(core)
        if arrow is not None and arrow[2] == self.machine.kernel_of(core).index:
            natural = max(natural, arrow[1])  # one kernel's cores share a timeline: no arrival before the send
        ns = self._stamp(core, natural)
        self.writer.complete(track, "ipi-received", ns, 0, _args(record, self.located[core.index]))
        if arrow is not None:
            self.writer.flow_end(track, arrow[0], ns)

    # ------------------------------------------------------------ time
    def _now(self, core: Core) -> int:
        """The core's virtual time: its clock while it runs, else the later of
        its clock (the end of its last slice) and its kernel's time."""
        if core.slices.running:
            return core.clock.now_ns()
        return max(core.clock.now_ns(), self.scheduler.kernel_ns[self.machine.kernel_of(core).index])

    def _stamp(self, core: Core, ns: int) -> int:
        ns = max(ns, self._floor[core.index])
        self._floor[core.index] = ns
        return ns


def _track(machine: Machine, core: Core) -> Track:
    kernel = machine.kernel_of(core)
    if not kernel.placement.labelled:
        return Track(FIRST_ID, FIRST_ID + core.index, BARE_MACHINE_PROCESS, machine.core_label(core.index))
    return Track(FIRST_ID + kernel.index, FIRST_ID + core.index, kernel.name, machine.core_label(core.index))


def _instant_name(record: Record) -> str:
    if isinstance(record, OsvHypercall):
        return "hypercall"
    return record.name


def _args(record: Record, located: Locate) -> dict:
    if isinstance(record, ConsoleLine):
        return {"line": record.line}
    return {"what": record.describe(located)}


def _refusal_args(record: IpiRefused | OsvRefused) -> dict:
    if isinstance(record, IpiRefused):
        return {"kernel": record.kernel, "kind": "ipi", "icr": record.icr, "apic_id": record.apic_id,
                "reason": record.reason}
    return {"kernel": record.kernel, "kind": record.kind.value, "reason": record.reason}


__all__ = ["PerfettoExporter", "TraceEventWriter", "Track", "microseconds"]
