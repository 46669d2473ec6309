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

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_WRITE, UcError
from unicorn.x86_const import UC_X86_REG_RIP

from osvemu.cpu.core import Core, CoreState
from osvemu.cpu.paging import TranslationFault
from osvemu.errors import GuestFault
from osvemu.platform.machine import Machine
from osvemu.scheduler import Scheduler

WATCH_KINDS = ("write", "read", "access")


@dataclass
class Stop:
    """Why the machine stopped."""

    kind: str  # "breakpoint", "watchpoint", "step", "interrupt", "exited"
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
    hooks: list[tuple[Core, int]] = field(default_factory=list)
    hits: int = 0


@dataclass
class Watchpoint:
    number: int
    address: int
    length: int
    kind: str
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
    def add_breakpoint(self, address: int, temporary: bool = False) -> Breakpoint:
        for existing in self.breakpoints.values():
            if existing.address == address and existing.temporary == temporary:
                return existing
        breakpoint = Breakpoint(next(self._numbers), address, temporary)
        for core in self.machine.cores:
            handle = core.uc.hook_add(UC_HOOK_CODE, self._on_breakpoint, (core, breakpoint), address, address)
            breakpoint.hooks.append((core, handle))
            _invalidate(core, address, address + 1)  # code already translated would miss the hook
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
            core.uc.hook_del(handle)
            if isinstance(point, Breakpoint):
                _invalidate(core, point.address, point.address + 1)
        return True

    def delete_all(self) -> None:
        for number in list(self.breakpoints) + list(self.watchpoints):
            self.delete(number)

    def _on_breakpoint(self, uc, address: int, size: int, data: tuple[Core, Breakpoint]) -> None:
        core, breakpoint = data
        if core.skip_breakpoint_at == address:
            core.skip_breakpoint_at = None
            return
        breakpoint.hits += 1
        self._pending = Stop("breakpoint", core.index, address)
        core.pause_before_instruction()
        self.scheduler.pause_requested = True

    # ------------------------------------------------------------ watchpoints
    def add_watchpoint(self, address: int, length: int, kind: str = "write") -> Watchpoint:
        if kind not in WATCH_KINDS:
            raise ValueError(f"watchpoint kind must be one of {WATCH_KINDS}")
        watchpoint = Watchpoint(next(self._numbers), address, length, kind)
        hook_types = {"write": UC_HOOK_MEM_WRITE, "read": UC_HOOK_MEM_READ,
                      "access": UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE}[kind]
        for core in self.machine.cores:
            handle = core.uc.hook_add(hook_types, self._on_access, (core, watchpoint), address, address + length - 1)
            watchpoint.hooks.append((core, handle))
            core.uc.ctl_flush_tb()
        self.watchpoints[watchpoint.number] = watchpoint
        return watchpoint

    def remove_watchpoint(self, address: int, length: int, kind: str) -> bool:
        found = [w for w in self.watchpoints.values() if (w.address, w.length, w.kind) == (address, length, kind)]
        for watchpoint in found:
            self.delete(watchpoint.number)
        return bool(found)

    def _on_access(self, uc, access: int, address: int, size: int, value: int,
                   data: tuple[Core, Watchpoint]) -> None:
        core, watchpoint = data
        if self._pending is not None and self._pending.core == core.index:
            return  # one stop per instruction
        watchpoint.hits += 1
        is_write = access == UC_MEM_WRITE
        old = None
        if is_write:
            try:
                old = int.from_bytes(bytes(uc.mem_read(address, size)), "little")
            except Exception:  # noqa: BLE001 - the old value is informative only
                old = None
        self._pending = Stop("watchpoint", core.index, address, watch=watchpoint.kind,
                             old=old, new=value & ((1 << (8 * size)) - 1) if is_write else None)
        core.pause_after_instruction()
        self.scheduler.pause_requested = True

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
            self.ended = Stop("exited", core, status=status, reason=reason)
            return self._stopped(self.ended)
        stop = self._pending or Stop("interrupt", self.scheduler.last_core)
        return self._stopped(stop)

    def step(self, core: Core | None = None) -> Stop:
        """Execute one instruction on ``core`` (the selected one by default)."""
        if self.ended is not None:
            return self.ended
        core = core or self.machine.cores[self.selected]
        self._step_over_breakpoints(only=core)
        self._pending = None
        if core.state is not CoreState.RUNNING:
            return self._stopped(Stop("step", core.index, reason=f"core {core.index} is {core.state.value}"))
        self.scheduler.step(core)
        self.scheduler.pause_requested = False
        core.skip_breakpoint_at = None
        if self.machine.exit is not None:
            self.ended = Stop("exited", core.index, status=self.machine.exit.status,
                              reason=f"guest wrote {self.machine.exit.status} to the exit port")
            return self._stopped(self.ended)
        return self._stopped(self._pending or Stop("step", core.index))

    def interrupt(self) -> None:
        """Ask a running machine to stop (thread-safe: a flag the scheduler
        reads after the running slice)."""
        self.scheduler.pause_requested = True

    def _stopped(self, stop: Stop) -> Stop:
        self.selected = stop.core
        self.last_stop = stop
        if stop.kind == "breakpoint":
            for number, breakpoint in list(self.breakpoints.items()):
                if breakpoint.temporary and breakpoint.address == stop.address:
                    self.delete(number)
        return stop

    def _step_over_breakpoints(self, only: Core | None = None) -> None:
        """A core paused at a breakpoint executes that instruction when it
        resumes instead of stopping there again."""
        addresses = {b.address for b in self.breakpoints.values()}
        for core in [only] if only else self.machine.cores:
            rip = core.uc.reg_read(UC_X86_REG_RIP)
            core.skip_breakpoint_at = rip if rip in addresses else None

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
            _invalidate(other, address, address + len(data))  # code may have been patched


def _invalidate(core: Core, start: int, end: int) -> None:
    """Drop translated code for [start, end) on ``core``.

    Unicorn's remove-cache walks the core's page tables for the address; a
    walk that faults there is not contained (it unwinds through code that
    never set up a landing point), so the range is checked with osvemu's own
    page walk first, and a core where it does not translate, or that has no
    context yet, drops all its translated code instead."""
    if core.state in (CoreState.WAIT_FOR_SIPI, CoreState.STOPPED):
        return  # it runs no code until a SIPI, which drops the translation cache
    try:
        core.translate(start)
        core.translate(end - 1)
    except (TranslationFault, GuestFault):
        core.uc.ctl_flush_tb()
        return
    try:
        core.uc.ctl_remove_cache(start, end)
    except UcError:
        core.uc.ctl_flush_tb()


__all__ = ["Breakpoint", "DebugMemoryError", "Debugger", "Stop", "Watchpoint"]
