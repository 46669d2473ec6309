"""Running the machine: deterministic round-robin slices, or fast mode.

Deterministic mode runs each runnable core for up to ``quantum``
instructions in turn, in core order: the whole translation blocks that fit
(by default), or exactly ``quantum`` instructions (``exact``; see
:mod:`osvemu.cpu.slices`).  Each kernel has its own virtual time, which advances
by one quantum per round; when none of a kernel's cores can run, its time
jumps to its next timer expiry.  So timer expiries, IPI arrival and every
core's instruction count depend only on the kernel's own guest, its
configuration and the quantum -- never on what another kernel does (only a
NOTIFY or a shared channel, which it accepted, can reach it).

Fast mode (``--fast``) schedules the same way, except that a core which
is the only one of the machine that can run -- a boot CPU bringing up the
others, a one-CPU kernel, the last worker -- runs ahead: its slice lasts
up to RUN_AHEAD_ROUNDS quanta, ending early at the first virtual deadline
(a timer of its kernel), when it reaches another core, or as any slice
ends.  Virtual time moves on by the rounds it used.  Timings and
instruction counts differ from deterministic mode, the guest's results do
not, and a fast run is as reproducible as a deterministic one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from osvemu import clock
from osvemu.cpu.core import Core, CoreState
from osvemu.platform.ends import EXIT_FAULT, EXIT_INTERRUPTED, INTERRUPTED, idle, unfinished
from osvemu.platform.machine import Machine

DEFAULT_QUANTUM = 20_000
#: How a kernel still alive ends when nothing can happen any more.
IDLE_END = "every core halted, nothing pending"
#: Rounds in an epoch of a run with lock-step epochs (osvemu.parallel): a
#: NOTIFY from one kernel to another takes effect at the end of its epoch.
EPOCH_ROUNDS = 16
#: The most quanta a lone runnable core runs in one slice (fast mode).
RUN_AHEAD_ROUNDS = 64
#: How often the --timeout watchdog looks at the clock once the deadline is near.
WATCHDOG_SECONDS = 0.002
#: Rounds between checks for kernels that can never run again.
HUNG_CHECK_ROUNDS = 8
#: Rounds between checks for code one core rewrote under the others
#: (Machine.check_code_writes): bounded lateness for a few percent of host time.
CODE_CHECK_ROUNDS = 256


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




class Scheduler:
    def __init__(self, machine: Machine, quantum: int = DEFAULT_QUANTUM, fast: bool = False,
                 limits: RunLimits | None = None, exact: bool = False, kernels: frozenset[int] | None = None,
                 worker: bool = False) -> None:
        if quantum < 1:
            raise ValueError("quantum must be positive")
        self.machine = machine
        self.quantum = quantum
        self.fast = fast
        #: Deterministic slices counted instruction by instruction (exactly
        #: ``quantum`` each, pausable at any instruction) rather than by
        #: translation blocks (osvemu.cpu.slices).
        self.exact = exact and not fast
        self.limits = limits or RunLimits()
        self.kernel_ns = [0] * len(machine.kernels)  # each kernel's virtual time (deterministic mode)
        #: Host seconds each kernel's cores spent in their slices (the
        #: scheduler's own work between slices is nobody's).
        self.kernel_host_seconds = [0.0] * len(machine.kernels)
        #: (virtual ns, instructions) a partitioned run's parent knows so far (osvemu.parallel).
        self.partitioned_progress: tuple[int, int] | None = None
        self._kernel_index = [kernel.index if kernel else None for kernel in map(machine.kernel_of, machine.cores)]
        self.rounds = 0
        self._current: Core | None = None
        self._host_start = 0.0
        self._deadline: float | None = None
        self._stopper: _SliceStopper | None = None
        self._index = 0  # next core in the current round
        self._ran_cores: set[int] = set()
        self._resume: tuple[int, int] | None = None  # (instructions left, virtual ns) of a paused slice
        self._retired_total = 0  # instructions retired in slices this scheduler ran
        self._extra_rounds = 0  # rounds run ahead in the current round (fast mode)
        self._dormant: dict[int, int | None] = {}  # core index -> its timer's deadline (_fall_dormant)
        self._core_of_apic = {core.apic_id: core.index for core in machine.cores}
        #: Set (by a breakpoint, a trace filter or the debugger) to make
        #: :meth:`advance` return after the running slice.
        self.pause_requested = False
        self.last_core = 0  # the core that ran last
        #: Called after every slice with (core, virtual start ns, instructions
        #: retired): the tracer, recorders such as osvemu.timeline.TimelineRecorder.
        self.slice_observers: list[Callable[[Core, int, int], None]] = []
        #: The kernels this scheduler runs (osvemu.parallel: a worker runs
        #: some of them; the other kernels' cores are not its to run).
        self.kernels = frozenset(k.index for k in machine.kernels) if kernels is None else kernels
        self._runs = [index is not None and index in self.kernels for index in self._kernel_index]
        #: A worker process of a partitioned run: :meth:`advance` returns at
        #: each epoch's end, and an idle round does not end the run (a NOTIFY
        #: from another worker may come).
        self.worker = worker
        self.epoch_done = False
        self.idle_in_epoch = True  # no core ran and no timer is due, since the epoch began

    # ------------------------------------------------------------ helpers
    def _next_deadline(self, cores: list[Core]) -> int | None:
        """The next timer expiry that would wake one of these halted cores;
        a core halted with IF clear, or whose timer is masked or blocked by
        its priority, never wakes on its timer, so its expiries do not count."""
        deadlines = []
        for core in cores:
            lapic = self.machine.lapics[core.index]
            if core.state is CoreState.HALTED and self.machine.may_run(core) and lapic.timer_raises_interrupt \
                    and core.interrupt_ready(lapic.lvt_timer_vector):
                deadlines.append(lapic.timer_deadline)
        return min(deadlines) if deadlines else None

    @property
    def round_ns(self) -> int:
        """The virtual time one round moves a kernel on by: a quantum's instructions."""
        return self.quantum * clock.NS_PER_INSTRUCTION

    def _total_instructions(self) -> int:
        return sum(core.instructions for core in self.machine.cores)

    def _instruction_limit(self) -> tuple[int, str] | None:
        """--max-instructions: checked at round ends, from a running total
        (the sum over every core only once the total may have reached it)."""
        limit = self.limits.max_instructions
        if limit is None or self._retired_total < limit:
            return None
        self._retired_total = self._total_instructions()
        if self._retired_total < limit:
            return None
        return self._limit_result(f"stopped after {self._retired_total} instructions (--max-instructions)")

    def _now(self, core: Core) -> int:
        """The virtual time of ``core``'s kernel."""
        kernel = self._kernel_index[core.index]
        return self.kernel_ns[kernel] if kernel is not None else 0

    @property
    def now_ns(self) -> int:
        """The latest virtual time of any kernel."""
        return max(self.kernel_ns, default=0)

    def progress(self) -> tuple[int, int]:
        """(virtual ns, instructions retired) so far, for the progress line
        (read from its thread: plain counters, a moment old at worst)."""
        if self.partitioned_progress is not None:
            return self.partitioned_progress
        return self.now_ns, self._retired_total

    # ------------------------------------------------------------ main loop
    def run(self) -> RunResult:
        """Run to the end: exit port, every core idle, a limit, a fault or
        Ctrl-C (which ends the run as interrupted, every kernel still alive
        unfinished, so that it is summarised and reported as any other end)."""
        self.start()
        try:
            outcome = None
            while outcome is None:
                outcome = self.advance()
                self.pause_requested = False  # nobody listens for pauses here
        except KeyboardInterrupt:
            self.machine.end_remaining(lambda kernel: unfinished(INTERRUPTED))
            outcome = EXIT_INTERRUPTED, INTERRUPTED
        finally:
            result = self.finish(outcome)
        return result

    def start(self) -> None:
        self._host_start = time.monotonic()
        self._deadline = self._host_start + self.limits.timeout if self.limits.timeout else None
        if self._deadline is not None:
            self._stopper = _SliceStopper(self, self._deadline)

    def finish(self, outcome: tuple[int, str] | None) -> RunResult:
        if self._stopper:
            self._stopper.stop()
            self._stopper = None
        self.machine.close_consoles()
        status, reason = outcome if outcome is not None else (EXIT_FAULT, "interrupted")
        faults = [core.fault for core in self.machine.cores if core.fault is not None]
        return RunResult(status, reason, time.monotonic() - self._host_start, self.now_ns, self.rounds, faults)

    @property
    def out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def advance(self) -> tuple[int, str] | None:
        """Run until the run ends (return its status and reason) or until
        someone sets ``pause_requested`` (return None; call again to go on).

        A pause can fall inside a core's slice (a breakpoint); the next call
        resumes that core with the rest of its quantum and its virtual clock,
        so a paused run retires exactly the instructions an unpaused one does.
        """
        cores = self.machine.cores
        self._dormant.clear()  # whoever paused the run may have changed any core
        while True:
            while self._index < len(cores):
                core = cores[self._index]
                if not self._runs[self._index]:
                    self._index += 1
                    continue
                if self._resume is not None:
                    budget, start_ns = self._resume
                    self._resume = None
                    self._run_slice(core, budget, start_ns)
                elif self._still_dormant(core):
                    self._index += 1
                    continue
                elif self._prepare(core):
                    rounds = self._run_ahead_rounds(core) if self.fast and not self.machine.epochs else 1
                    self._run_slice(core, self.quantum * rounds, self._now(core), rounds)
                else:
                    self._fall_dormant(core)
                    self._index += 1
                    continue
                if self.machine.restart_due_kernels():
                    self._dormant.clear()
                finished = self._finished()
                if finished is not None:
                    return finished
                if self.out_of_time:
                    return self._limit_result(f"stopped after {self.limits.timeout:g} s (--timeout)")
                if self._resume is None:
                    self._index += 1
                if self.pause_requested:
                    return None
            outcome = self._end_round()
            if outcome is not None:
                return outcome
            if self.epoch_done:
                return None

    def _finished(self) -> tuple[int, str] | None:
        """The run is over: every kernel has ended for good -- for a worker,
        every kernel of its own (osvemu.parallel)."""
        if self.machine.exit is not None:
            return self.machine.exit.status, self.ended_reason()
        if self.worker and self.machine.ended_for_good(self.kernels):
            return self.machine.run_status(), "the worker's kernels ended"
        return None

    def ended_reason(self) -> str:
        """Why the run ended when every kernel has: one line for one kernel,
        else how many ended cleanly."""
        kernels = self.machine.kernels
        if len(kernels) == 1:
            end = kernels[0].end
            if end.kind.value == "exited" and not kernels[0].placement.labelled:
                if end.detail.startswith("wrote "):  # the exit port
                    return f"guest wrote {end.status} to the exit port (core {self.machine.exit.core})"
                return f"guest ended: {end.detail} (core {self.machine.exit.core})"
            return end.describe()
        clean = sum(1 for kernel in kernels if kernel.end.clean)
        return f"every kernel ended ({clean} of {len(kernels)} cleanly)"

    # ------------------------------------------------------------ lock-step epochs
    def _end_epoch(self) -> tuple[int, str] | None:
        """Every EPOCH_ROUNDS rounds: a worker's epoch is over (it reports;
        osvemu.parallel decides as below).  In one process: a whole epoch in
        which nothing could happen, with no NOTIFY kept, ends the run idle;
        otherwise the NOTIFYs kept are delivered, then --max-instructions is
        looked at."""
        if self.worker:
            self.epoch_done = True
            return None
        notifies, self.machine.deferred_notifies = self.machine.deferred_notifies, []
        if self.idle_in_epoch and not notifies:
            return self._idle_result()
        self.machine.synchronize_channels(self.kernels)
        self.machine.deliver_notifies(notifies)
        self.start_epoch()
        return self._instruction_limit()

    def start_epoch(self) -> None:
        """A worker's next epoch begins (after its deliveries)."""
        self.epoch_done = False
        self.idle_in_epoch = True
        self._dormant.clear()

    # ------------------------------------------------------------ dormant cores
    def _fall_dormant(self, core: Core) -> None:
        """``core`` cannot run now (halted with nothing to take, waiting for
        a STARTUP IPI, stopped, its kernel ended): skip it, at no cost,
        until something reaches its local APIC or its timer's deadline
        passes -- the only ways the next visit could find it otherwise."""
        self._dormant[core.index] = self.machine.lapics[core.index].timer_deadline

    def _still_dormant(self, core: Core) -> bool:
        dormant = self._dormant
        if not dormant:
            return False
        bus = self.machine.bus
        if bus.reached:
            for apic_id in bus.take_reached():
                dormant.pop(self._core_of_apic[apic_id], None)
        wake = dormant.get(core.index, _AWAKE)
        if wake is _AWAKE:
            return False
        if wake is not None and wake <= self._now(core):
            del dormant[core.index]
            return False
        return True

    # ------------------------------------------------------------ running ahead (fast mode)
    def _run_ahead_rounds(self, core: Core) -> int:
        """How many rounds ``core`` may run in one slice: 1 unless every other
        core is dormant, and then until its kernel's first timer deadline
        (RUN_AHEAD_ROUNDS at most), within --max-instructions.  A dormant
        core of another kernel with a timer keeps it at 1: an idle kernel's
        time jumps to its next deadline at the end of the round."""
        kernel = self._kernel_index[core.index]
        now = self._now(core)
        step = self.round_ns
        rounds = RUN_AHEAD_ROUNDS
        own = self.machine.lapics[core.index].timer_deadline
        deadlines = [own] if own is not None else []
        for other in self.machine.cores:
            if other is core:
                continue
            if other.index not in self._dormant:
                return 1
            wake = self._dormant[other.index]
            if wake is not None:
                if self._kernel_index[other.index] != kernel:
                    return 1
                deadlines.append(wake)
        for deadline in deadlines:
            rounds = min(rounds, max(1, -(-(deadline - now) // step)))
        if self.limits.max_instructions is not None:
            rounds = min(rounds, max(1, (self.limits.max_instructions - self._retired_total) // self.quantum))
        return rounds

    def _account_rounds(self, extra: int) -> None:
        """A slice that ran ahead used ``extra`` rounds beyond its own: every
        kernel's time moves on by them, as those rounds would have moved it."""
        if extra <= 0:
            return
        self.rounds += extra
        self._extra_rounds += extra
        for kernel in self.machine.kernels:
            self.kernel_ns[kernel.index] += extra * self.round_ns

    def _prepare(self, core: Core) -> bool:
        """Timers, wake-up and interrupt delivery before a slice; whether the core runs."""
        if not self.machine.may_run(core):
            return False
        now = self._now(core)
        deadline = self.machine.lapics[core.index].timer_deadline
        if deadline is not None and deadline <= now:
            self.machine.advance_timer(core, now)
        ready = core.interrupt_ready()
        if core.state is CoreState.HALTED and not ready:
            return False
        if ready:
            core.service_interrupts()  # wakes a halted core
        return core.state is CoreState.RUNNING

    def _run_slice(self, core: Core, count: int, start_ns: int, rounds: int = 1) -> None:
        self._current = core
        self.last_core = core.index
        self.machine.run_ahead = core if rounds > 1 else None
        started = time.perf_counter()
        retired = core.run(count, start_ns, self.exact)
        kernel = self._kernel_index[core.index]
        if kernel is not None:
            self.kernel_host_seconds[kernel] += time.perf_counter() - started
        self.machine.run_ahead = None
        self._retired_total += retired
        if rounds > 1:
            self._account_rounds(min(rounds, -(-retired // self.quantum)) - 1)
        self._current = None
        self._ran_cores.add(core.index)
        for observer in self.slice_observers:
            observer(core, start_ns, retired)
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
            retired = core.run(1, start_ns, exact=True)
            self._retired_total += retired
            self._resume = _rest_of_slice(budget, start_ns, retired)
            if self._resume is None:
                self._index += 1
            return retired
        retired = core.run(1, self._now(core), exact=True)
        self._retired_total += retired
        return retired

    def _end_round(self) -> tuple[int, str] | None:
        self._index = 0
        ran_cores, self._ran_cores = self._ran_cores, set()
        before, self.rounds = self.rounds, self.rounds + 1
        self.machine.round = self.rounds
        restarted = False
        if _crossed(before - self._extra_rounds, self.rounds, CODE_CHECK_ROUNDS):
            self.machine.check_code_writes()
        hung_check = _crossed(before - self._extra_rounds, self.rounds, HUNG_CHECK_ROUNDS)
        self._extra_rounds = 0
        ran_kernels = {self._kernel_index[index] for index in ran_cores}
        # Each kernel is looked at on its own: every HUNG_CHECK_ROUNDS rounds,
        # and after every round in which none of its cores ran.
        looked_at = self.kernels if hung_check else self.kernels - ran_kernels
        if looked_at:
            self.machine.end_hung_kernels(looked_at)
            restarted = self.machine.restart_due_kernels()  # a kernel booted again has a core to run
            if restarted:
                self._dormant.clear()
            finished = self._finished()
            if finished is not None:
                return finished
        something_can_happen = self._advance_time(ran_kernels) or restarted
        if not self.machine.epochs:
            if not something_can_happen:
                return self._idle_result()
            limited = self._instruction_limit()
            if limited is not None:
                return limited
        else:
            if something_can_happen:
                self.idle_in_epoch = False
            if self.rounds % EPOCH_ROUNDS == 0:
                outcome = self._end_epoch()
                if outcome is not None:
                    return outcome
        if self.out_of_time:
            return self._limit_result(f"stopped after {self.limits.timeout:g} s (--timeout)")
        return None

    def _advance_time(self, ran_kernels: set[int | None]) -> bool:
        """Move virtual time on after a round in which cores of
        ``ran_kernels`` ran; False when nothing can ever happen again (no
        core ran and no timer will wake one)."""
        step = self.round_ns
        anything = bool(ran_kernels)
        for kernel in self.machine.kernels:
            if kernel.index not in self.kernels:
                continue
            self.kernel_ns[kernel.index] += step
            if kernel.index not in ran_kernels:
                wake_at = self._next_deadline(kernel.cores)
                if wake_at is not None:
                    self.kernel_ns[kernel.index] = max(self.kernel_ns[kernel.index], wake_at)
                    anything = True
        return anything

    def _idle_result(self) -> tuple[int, str]:
        halted = sum(1 for core in self.machine.cores if core.state is CoreState.HALTED)
        self.machine.end_remaining(lambda kernel: idle(IDLE_END))
        if len(self.machine.kernels) == 1 and self.machine.kernels[0].end.clean:
            return 0, f"all cores idle ({halted} halted, nothing pending)"
        return self.machine.run_status(), self.ended_reason()

    def _limit_result(self, why: str) -> tuple[int, str]:
        self.machine.end_remaining(lambda kernel: unfinished(why))
        return self.machine.run_status(), why

    def stop_current(self) -> None:
        """From another thread: end the running slice where its next
        translation block starts (see Core.preempt)."""
        core = self._current
        if core is not None:
            core.preempt()


#: Not in the dormant map (a marker no deadline equals).
_AWAKE = object()


def _crossed(before: int, after: int, period: int) -> bool:
    """Whether a multiple of ``period`` lies in (before, after]: a periodic
    check is due after rounds that went from ``before`` to ``after``."""
    return after // period > before // period


def _rest_of_slice(budget: int, start_ns: int, retired: int) -> tuple[int, int] | None:
    """What remains of a slice of ``budget`` instructions that started at
    ``start_ns`` after ``retired`` of them: (instructions, virtual start)."""
    if retired >= budget:
        return None
    return budget - retired, start_ns + retired * clock.NS_PER_INSTRUCTION


class _SliceStopper:
    """The --timeout watchdog: a host thread that, from the wall-clock
    ``deadline`` on, ends the running slice whatever the guest is doing (a
    slice of a long quantum, a slow hook), where its next translation block
    starts, never inside an instruction (:meth:`Core.preempt`), until the
    run stops."""

    def __init__(self, scheduler: Scheduler, deadline: float) -> None:
        self._scheduler = scheduler
        self._deadline = deadline
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="osvemu-watchdog", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(max(0.0, self._deadline - time.monotonic()) or WATCHDOG_SECONDS):
            if time.monotonic() >= self._deadline:
                self._scheduler.stop_current()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
