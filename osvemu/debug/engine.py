"""The debug engine under ``osvemu debug`` and the GDB stub: breakpoints,
watchpoints, continue, single-step and all-stop pauses.

Breakpoints are Unicorn code hooks on exactly their address (one per core),
watchpoints memory hooks on exactly their range, so an address nobody
watches runs at full speed.  A breakpoint stops its core *before* the
instruction and a watchpoint *after* the accessing instruction (as x86 debug
registers report data breakpoints, Intel SDM Vol. 3B 17.3.1); either way the
scheduler pauses the whole machine and later resumes the interrupted slice,
so instruction counts, and therefore the run, are what they would have been
without the debugger.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum

from osvemu.cpu.core import Core, CoreState
from osvemu.cpu.paging import TranslationFault
from osvemu.errors import GuestFault
from osvemu.platform.machine import Machine
from osvemu.scheduler import Scheduler

WATCH_KINDS = ("write", "read", "access")
#: How debuggers name a core's state: a core waiting for its STARTUP IPI
#: (Intel SDM Vol. 3A 10.4.7.3, "wait-for-SIPI") runs no code at all.
STATE_NAMES = {CoreState.RUNNING: "running", CoreState.HALTED: "halted", CoreState.WAIT_FOR_SIPI: "wait-for-SIPI",
               CoreState.STOPPED: "stopped"}


def state_name(core: Core) -> str:
    return STATE_NAMES[core.state]


def thread_name(machine: Machine, core: Core) -> str:
    """A core as a debugger thread: ``k2 CPU#16 [APIC 16, running]`` under
    OSV (its kernel, machine index and APIC ID), ``CPU#3 [APIC 3, halted]``
    on the bare machine (as QEMU names its vCPU threads)."""
    kernel = machine.kernel_of(core)
    prefix = f"{kernel.name} " if kernel is not None and kernel.placement.labelled else ""
    return f"{prefix}CPU#{core.index} [APIC {core.apic_id}, {state_name(core)}]"


class StopKind(Enum):
    BREAKPOINT = "breakpoint"
    WATCHPOINT = "watchpoint"
    STEP = "step"
    INTERRUPT = "interrupt"  # the user (Ctrl-C) or the GDB client asked
    EXITED = "exited"  # the run ended


@dataclass
class Stop:
    """Why the machine stopped."""

    kind: StopKind
    core: int
    address: int | None = None  # breakpoint address, or the watched data address
    watch: str | None = None  # "write", "read" or "access"
    old: int | None = None  # watched value before a write
    new: int | None = None  # watched value written
    status: int | None = None  # exit status, for "exited"
    reason: str = ""


@dataclass
class Breakpoint:
    number: int
    address: int
    temporary: bool
    cores: tuple[int, ...]  # the machine indices of the cores it stops
    hooks: list[tuple[Core, int]] = field(default_factory=list)
    hits: int = 0


@dataclass
class Watchpoint:
    number: int
    address: int
    length: int
    kind: str
    cores: tuple[int, ...]
    hooks: list[tuple[Core, int]] = field(default_factory=list)
    hits: int = 0


class DebugMemoryError(Exception):
    """A debugger memory access to an address that does not translate to RAM."""


class Debugger:
    def __init__(self, machine: Machine, scheduler: Scheduler) -> None:
        self.machine = machine
        self.scheduler = scheduler
        self.breakpoints: dict[int, Breakpoint] = {}
        self.watchpoints: dict[int, Watchpoint] = {}
        self._numbers = itertools.count(1)
        self._pending: Stop | None = None
        self.ended: Stop | None = None
        self.selected = 0  # the core commands apply to
        self.last_stop: Stop | None = None

    # ------------------------------------------------------------ breakpoints
    def add_breakpoint(self, address: int, temporary: bool = False, cores: list[Core] | None = None) -> Breakpoint:
        """A breakpoint on ``cores`` (every core by default): under OSV an
        address means one thing only in the kernels that run one image."""
        cores = self.machine.cores if cores is None else cores
        indices = tuple(core.index for core in cores)
        for existing in self.breakpoints.values():
            if (existing.address, existing.temporary, existing.cores) == (address, temporary, indices):
                return existing
        breakpoint = Breakpoint(next(self._numbers), address, temporary, indices)
        for core in cores:
            handle = core.add_code_hook(self._breakpoint_hook(core, breakpoint), address, address)
            breakpoint.hooks.append((core, handle))
        self.breakpoints[breakpoint.number] = breakpoint
        return breakpoint

    def remove_breakpoint_at(self, address: int) -> bool:
        found = [b for b in self.breakpoints.values() if b.address == address]
        for breakpoint in found:
            self.delete(breakpoint.number)
        return bool(found)

    def delete(self, number: int) -> bool:
        point = self.breakpoints.pop(number, None) or self.watchpoints.pop(number, None)
        if point is None:
            return False
        for core, handle in point.hooks:
            core.remove_hook(handle)
            if isinstance(point, Breakpoint):
                core.invalidate_code(point.address, point.address + 1)
        return True

    def delete_all(self) -> None:
        for number in list(self.breakpoints) + list(self.watchpoints):
            self.delete(number)

    def _breakpoint_hook(self, core: Core, breakpoint: Breakpoint):
        def on_breakpoint(address: int, size: int) -> None:
            if core.skip_breakpoint_at == address:
                core.skip_breakpoint_at = None
                return
            breakpoint.hits += 1
            self._pending = Stop(StopKind.BREAKPOINT, core.index, address)
            core.pause_before_instruction()
            self.scheduler.pause_requested = True
        return on_breakpoint

    # ------------------------------------------------------------ watchpoints
    def add_watchpoint(self, address: int, length: int, kind: str = "write",
                       cores: list[Core] | None = None) -> Watchpoint:
        if kind not in WATCH_KINDS:
            raise ValueError(f"watchpoint kind must be one of {WATCH_KINDS}")
        cores = self.machine.cores if cores is None else cores
        watchpoint = Watchpoint(next(self._numbers), address, length, kind, tuple(core.index for core in cores))
        for core in cores:
            handle = core.add_memory_hook(kind, self._watchpoint_hook(core, watchpoint), address, address + length - 1)
            watchpoint.hooks.append((core, handle))
        self.watchpoints[watchpoint.number] = watchpoint
        return watchpoint

    def remove_watchpoint(self, address: int, length: int, kind: str) -> bool:
        found = [w for w in self.watchpoints.values() if (w.address, w.length, w.kind) == (address, length, kind)]
        for watchpoint in found:
            self.delete(watchpoint.number)
        return bool(found)

    def _watchpoint_hook(self, core: Core, watchpoint: Watchpoint):
        def on_access(is_write: bool, address: int, size: int, value: int) -> None:
            if self._pending is not None and self._pending.core == core.index:
                return  # one stop per instruction
            watchpoint.hits += 1
            old = None
            if is_write:
                try:
                    old = int.from_bytes(core.read_physical(address, size), "little")
                except Exception:  # noqa: BLE001 - the old value is informative only
                    old = None
            self._pending = Stop(StopKind.WATCHPOINT, core.index, address, watch=watchpoint.kind,
                                 old=old, new=value & ((1 << (8 * size)) - 1) if is_write else None)
            core.pause_after_instruction()
            self.scheduler.pause_requested = True
        return on_access

    # ------------------------------------------------------------ execution
    def cont(self) -> Stop:
        """Run until a breakpoint, a watchpoint, an interrupt request or the
        end of the run."""
        if self.ended is not None:
            return self.ended
        self._step_over_breakpoints()
        self._pending = None
        outcome = self.scheduler.advance()
        self.scheduler.pause_requested = False
        if outcome is not None:
            status, reason = outcome
            core = self.machine.exit.core if self.machine.exit is not None else self.selected
            self.ended = Stop(StopKind.EXITED, core, status=status, reason=reason)
            return self._stopped(self.ended)
        stop = self._pending or Stop(StopKind.INTERRUPT, self.scheduler.last_core)
        return self._stopped(stop)

    def step(self, core: Core | None = None) -> Stop:
        """Execute one instruction on ``core`` (the selected one by default)."""
        if self.ended is not None:
            return self.ended
        core = core or self.machine.cores[self.selected]
        self._step_over_breakpoints(only=core)
        self._pending = None
        if core.state is not CoreState.RUNNING:
            reason = f"core {self.machine.core_label(core.index)} is {state_name(core)}"
            return self._stopped(Stop(StopKind.STEP, core.index, reason=reason))
        self.scheduler.step(core)
        self.scheduler.pause_requested = False
        core.skip_breakpoint_at = None
        if self.machine.exit is not None:
            self.ended = Stop(StopKind.EXITED, core.index, status=self.machine.exit.status,
                              reason=f"guest wrote {self.machine.exit.status} to the exit port")
            return self._stopped(self.ended)
        return self._stopped(self._pending or Stop(StopKind.STEP, core.index))

    def interrupt(self) -> None:
        """Ask a running machine to stop (thread-safe: a flag the scheduler
        reads after the running slice)."""
        self.scheduler.pause_requested = True

    def clear_interrupt(self) -> None:
        """Forget a pause request that came while nothing ran."""
        self.scheduler.pause_requested = False

    def _stopped(self, stop: Stop) -> Stop:
        self.selected = stop.core
        self.last_stop = stop
        if stop.kind is StopKind.BREAKPOINT:
            for number, breakpoint in list(self.breakpoints.items()):
                if breakpoint.temporary and breakpoint.address == stop.address:
                    self.delete(number)
        return stop

    def _step_over_breakpoints(self, only: Core | None = None) -> None:
        """A core paused at a breakpoint executes that instruction when it
        resumes instead of stopping there again.  Breakpoint hooks see linear
        addresses, RIP is an offset in CS (CS.base + IP in real mode)."""
        addresses = {b.address for b in self.breakpoints.values()}
        for core in [only] if only else self.machine.cores:
            pc = core.linear.code_linear(core.rip)
            core.skip_breakpoint_at = pc if pc in addresses else None

    # ------------------------------------------------------------ memory
    def read_memory(self, address: int, length: int, core: Core | None = None) -> bytes:
        core = core or self.machine.cores[self.selected]
        try:
            return core.read_linear(address, length)
        except (TranslationFault, GuestFault) as error:
            raise DebugMemoryError(f"cannot access memory at {address:#x}: {error}") from None

    def write_memory(self, address: int, data: bytes, core: Core | None = None) -> None:
        core = core or self.machine.cores[self.selected]
        try:
            core.write_linear(address, data)
        except (TranslationFault, GuestFault) as error:
            raise DebugMemoryError(f"cannot access memory at {address:#x}: {error}") from None
        for other in self.machine.cores:
            other.invalidate_code(address, address + len(data))  # code may have been patched


__all__ = ["STATE_NAMES", "Breakpoint", "DebugMemoryError", "Debugger", "Stop", "StopKind", "Watchpoint", "state_name",
           "thread_name"]
