"""Running the machine: deterministic round-robin slices, or fast mode.

Deterministic mode runs each runnable core for ``quantum`` instructions in
turn, in core order.  Virtual time advances by one quantum per round, so
timer expiries, IPI arrival and every core's instruction count depend only on
the guest, the configuration and the quantum.  Halted and waiting cores are
skipped; when no core can run, time jumps to the next timer expiry.

Fast mode (``--fast``) runs uncounted slices that a host timer thread ends
with ``emu_stop`` (REFERENCE.md: about 5x the throughput of counted slices).
Virtual time is then host time, and the run is not reproducible.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from unicorn.x86_const import UC_X86_REG_RFLAGS

from osvemu.cpu.core import Core, CoreState
from osvemu.cpu.x86 import RFLAGS_IF
from osvemu.platform import clock
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

    @property
    def clean(self) -> bool:
        return self.status == 0


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

    # ------------------------------------------------------------ helpers
    def _can_wake(self, core: Core) -> bool:
        """A halted core wakes on NMI, or on a deliverable interrupt with IF set."""
        if core.nmi_pending:
            return True
        if core.lapic.pending_vector() is None:
            return False
        return bool(core.uc.reg_read(UC_X86_REG_RFLAGS) & RFLAGS_IF)

    def _next_deadline(self) -> int | None:
        """The next timer expiry that would wake a halted core; a core
        halted with IF clear, or whose timer is masked or blocked by its
        priority, never wakes on its timer, so its expiries do not count."""
        deadlines = [c.lapic.timer_deadline for c in self.machine.cores
                     if c.state is CoreState.HALTED and c.lapic.timer_can_interrupt()
                     and c.uc.reg_read(UC_X86_REG_RFLAGS) & RFLAGS_IF]
        return min(deadlines) if deadlines else None

    def _total_instructions(self) -> int:
        return sum(core.instructions for core in self.machine.cores)

    def _now(self) -> int:
        if self.fast:
            return int((time.monotonic() - self._host_start) * clock.NS_PER_SECOND) + self._skipped_ns
        return self.now_ns

    # ------------------------------------------------------------ main loop
    def run(self) -> RunResult:
        self._host_start = time.monotonic()
        stopper = _SliceStopper(self) if self.fast else None
        try:
            status, reason = self._loop()
        finally:
            if stopper:
                stopper.stop()
            self.machine.console.close()
        faults = [core.fault for core in self.machine.cores if core.fault is not None]
        return RunResult(status, reason, time.monotonic() - self._host_start, self._now(), self.rounds, faults)

    def _loop(self) -> tuple[int, str]:
        machine, cores = self.machine, self.machine.cores
        count = 0 if self.fast else self.quantum
        deadline = self._host_start + self.limits.timeout if self.limits.timeout else None
        while True:
            ran = False
            for core in cores:
                state = core.state
                if state is CoreState.STOPPED or state is CoreState.WAIT_FOR_SIPI:
                    continue
                now = self._now()
                if core.lapic.timer_deadline is not None and core.lapic.timer_deadline <= now:
                    core.lapic.advance_timer(now)
                if state is CoreState.HALTED:
                    if not self._can_wake(core):
                        continue
                    core.wake()
                if core.nmi_pending or core.lapic.irr:
                    core.service_interrupts()
                    if core.state is not CoreState.RUNNING:
                        continue
                self._current = core
                core.run(count, now)
                self._current = None
                ran = True
                if machine.exit is not None:
                    return machine.exit.status, f"guest wrote {machine.exit.status} to the exit port (core {machine.exit.core})"
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
            if deadline is not None and time.monotonic() >= deadline:
                return EXIT_LIMIT, f"stopped after {self.limits.timeout:g} s (--timeout)"

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
