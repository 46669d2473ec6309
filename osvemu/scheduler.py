"""Running the machine: deterministic round-robin slices, or fast mode.

Deterministic mode runs each runnable core for ``quantum`` instructions in
turn, in core order.  Virtual time advances by one quantum per round, so
timer expiries, IPI arrival and every core's instruction count depend only on
the guest, the configuration and the quantum.  Halted and waiting cores are
skipped; when no core can run, time jumps to the next timer expiry.

Fast mode (``--fast``) runs uncounted slices that a host timer thread ends
with ``emu_stop`` (several times the throughput of counted slices, which pay
for Unicorn's per-instruction count check).  Virtual time is then host
time, and the run is not reproducible.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from osvemu import clock
from osvemu.cpu.core import Core, CoreState
from osvemu.platform.machine import Machine

DEFAULT_QUANTUM = 20_000
FAST_SLICE_SECONDS = 0.002


@dataclass
class RunLimits:
    max_instructions: int | None = None
    timeout: float | None = None


@dataclass
class RunResult:
    status: int
    reason: str
    host_seconds: float
    virtual_ns: int
    rounds: int
    faults: list = field(default_factory=list)


EXIT_LIMIT = 124  # like timeout(1)
EXIT_FAULT = 1


class Scheduler:
    def __init__(self, machine: Machine, quantum: int = DEFAULT_QUANTUM, fast: bool = False,
                 limits: RunLimits | None = None) -> None:
        if quantum < 1:
            raise ValueError("quantum must be positive")
        self.machine = machine
        self.quantum = quantum
        self.fast = fast
        self.limits = limits or RunLimits()
        self.now_ns = 0
        self.rounds = 0
        self._current: Core | None = None
        self._skipped_ns = 0
        self._host_start = 0.0
        self._deadline: float | None = None
        self._stopper: _SliceStopper | None = None
        self._index = 0  # next core in the current round
        self._ran_this_round = False
        self._resume: tuple[int, int] | None = None  # (instructions left, virtual ns) of a paused slice
        #: Set (by a breakpoint, a trace filter or the debugger) to make
        #: :meth:`advance` return after the running slice.
        self.pause_requested = False
        self.last_core = 0  # the core that ran last
        self.on_slice_end: Callable[[Core], None] | None = None  # the tracer's

    # ------------------------------------------------------------ helpers
    def _next_deadline(self) -> int | None:
        """The next timer expiry that would wake a halted core; a core
        halted with IF clear, or whose timer is masked or blocked by its
        priority, never wakes on its timer, so its expiries do not count."""
        deadlines = []
        for core, lapic in zip(self.machine.cores, self.machine.lapics):
            if core.state is CoreState.HALTED and self.machine.may_run(core) and lapic.timer_raises_interrupt \
                    and core.interrupt_ready(lapic.lvt_timer_vector):
                deadlines.append(lapic.timer_deadline)
        return min(deadlines) if deadlines else None

    def _total_instructions(self) -> int:
        return sum(core.instructions for core in self.machine.cores)

    def _now(self) -> int:
        if self.fast:
            return int((time.monotonic() - self._host_start) * clock.NS_PER_SECOND) + self._skipped_ns
        return self.now_ns

    # ------------------------------------------------------------ main loop
    def run(self) -> RunResult:
        """Run to the end: exit port, every core idle, a limit or a fault."""
        self.start()
        try:
            outcome = None
            while outcome is None:
                outcome = self.advance()
                self.pause_requested = False  # nobody listens for pauses here
        finally:
            result = self.finish(outcome)
        return result

    def start(self) -> None:
        self._host_start = time.monotonic()
        self._deadline = self._host_start + self.limits.timeout if self.limits.timeout else None
        self._stopper = _SliceStopper(self) if self.fast else None

    def finish(self, outcome: tuple[int, str] | None) -> RunResult:
        if self._stopper:
            self._stopper.stop()
            self._stopper = None
        self.machine.close_consoles()
        status, reason = outcome if outcome is not None else (EXIT_FAULT, "interrupted")
        faults = [core.fault for core in self.machine.cores if core.fault is not None]
        return RunResult(status, reason, time.monotonic() - self._host_start, self._now(), self.rounds, faults)

    def advance(self) -> tuple[int, str] | None:
        """Run until the run ends (return its status and reason) or until
        someone sets ``pause_requested`` (return None; call again to go on).

        A pause can fall inside a core's slice (a breakpoint); the next call
        resumes that core with the rest of its quantum and its virtual clock,
        so a paused run retires exactly the instructions an unpaused one does.
        """
        cores = self.machine.cores
        while True:
            while self._index < len(cores):
                core = cores[self._index]
                if self._resume is not None:
                    budget, start_ns = self._resume
                    self._resume = None
                    self._run_slice(core, budget, start_ns)
                elif self._prepare(core):
                    self._run_slice(core, 0 if self.fast else self.quantum, self._now())
                else:
                    self._index += 1
                    continue
                if self.machine.exit is not None:
                    exit_request = self.machine.exit
                    return exit_request.status, f"guest wrote {exit_request.status} to the exit port (core {exit_request.core})"
                if self._resume is None:
                    self._index += 1
                if self.pause_requested:
                    return None
            outcome = self._end_round()
            if outcome is not None:
                return outcome

    def _prepare(self, core: Core) -> bool:
        """Timers, wake-up and interrupt delivery before a slice; whether the core runs."""
        if not self.machine.may_run(core):
            return False
        now = self._now()
        deadline = self.machine.lapics[core.index].timer_deadline
        if deadline is not None and deadline <= now:
            self.machine.advance_timer(core, now)
        ready = core.interrupt_ready()
        if core.state is CoreState.HALTED and not ready:
            return False
        if ready:
            core.service_interrupts()  # wakes a halted core
        return core.state is CoreState.RUNNING

    def _run_slice(self, core: Core, count: int, start_ns: int) -> None:
        self._current = core
        self.last_core = core.index
        retired = core.run(count, start_ns)
        self._current = None
        self._ran_this_round = True
        if self.on_slice_end is not None:
            self.on_slice_end(core)
        if count and core.paused_mid_slice and core.state is CoreState.RUNNING:
            self._resume = _rest_of_slice(count, start_ns, retired)

    def step(self, core: Core) -> int:
        """Execute one instruction on ``core`` while the run is paused (the
        debugger's stepi).  On the core whose slice was interrupted it uses up
        that slice; on another core it runs out of turn."""
        if core.state is CoreState.HALTED:
            return 0
        if self._resume is not None and core.index == self._index:
            budget, start_ns = self._resume
            retired = core.run(1, start_ns)
            self._resume = _rest_of_slice(budget, start_ns, retired)
            if self._resume is None:
                self._index += 1
            return retired
        return core.run(1, self._now())

    def _end_round(self) -> tuple[int, str] | None:
        self._index = 0
        ran, self._ran_this_round = self._ran_this_round, False
        self.rounds += 1
        if not self.fast:
            self.now_ns += self.quantum * clock.NS_PER_INSTRUCTION
        if not ran:
            wake_at = self._next_deadline()
            if wake_at is None:
                return self._idle_result()
            self._skip_to(wake_at)
        if self.limits.max_instructions is not None and not self.fast and \
                self._total_instructions() >= self.limits.max_instructions:
            return EXIT_LIMIT, f"stopped after {self._total_instructions()} instructions (--max-instructions)"
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return EXIT_LIMIT, f"stopped after {self.limits.timeout:g} s (--timeout)"
        return None

    def _skip_to(self, wake_at: int) -> None:
        if self.fast:
            self._skipped_ns += max(0, wake_at - self._now())
        else:
            self.now_ns = max(self.now_ns, wake_at)

    def _idle_result(self) -> tuple[int, str]:
        faulted = [core for core in self.machine.cores if core.fault is not None]
        if faulted:
            return EXIT_FAULT, faulted[0].fault.one_line()
        halted = sum(1 for core in self.machine.cores if core.state is CoreState.HALTED)
        return 0, f"all cores idle ({halted} halted, nothing pending)"

    def stop_current(self) -> None:
        core = self._current
        if core is not None:
            core.request_stop()


def _rest_of_slice(budget: int, start_ns: int, retired: int) -> tuple[int, int] | None:
    """What remains of a slice of ``budget`` instructions that started at
    ``start_ns`` after ``retired`` of them: (instructions, virtual start)."""
    if retired >= budget:
        return None
    return budget - retired, start_ns + retired * clock.NS_PER_INSTRUCTION


class _SliceStopper:
    """The fast mode's persistent host timer: ends the running slice."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="osvemu-slice-timer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(FAST_SLICE_SECONDS):
            self._scheduler.stop_current()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
