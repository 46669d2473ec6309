"""Running a core for one slice of guest instructions, exactly counted.

A slice is one ``emu_start`` with an instruction count (deterministic mode)
or without one (fast mode, ended from another thread).  The runner also
holds the ways a slice ends early and resumably: a breakpoint pauses before
its instruction, a watchpoint or a device access after it, another thread's
preemption where a translation block starts.
"""

from __future__ import annotations

from unicorn import Uc, UcError
from unicorn import x86_const as r

from osvemu.clock import CoreClock
from osvemu.cpu import x86
from osvemu.cpu.linear import LinearMemory
from osvemu.cpu.paging import TranslationFault
from osvemu.cpu.registers import RegisterAccess
from osvemu.cpu.ucinternals import BlockStop, CoreInternals
from osvemu.errors import GuestFault

PAGE_OFFSET_MASK = x86.PAGE_SIZE - 1


class SliceRunner:
    def __init__(self, uc: Uc, registers: RegisterAccess, internals: CoreInternals, clock: CoreClock,
                 linear: LinearMemory) -> None:
        self._uc = uc
        self._registers = registers
        self._internals = internals
        self._clock = clock
        self._linear = linear
        self.counted = True
        self.running = False  # inside emu_start: hooks may read the in-slice count
        self.paused_mid_slice = False
        self._stopped_before_instruction = False
        self._checked_until: tuple[int, int] | None = None
        self._block_stop: BlockStop | None = None  # installed by enable_preemption

    def run(self, count: int, now_ns: int) -> tuple[int, UcError | None]:
        """Execute up to ``count`` instructions (0 = until stopped) from RIP;
        return how many retired (exact when counted) and Unicorn's error, if any."""
        self._clock.start_slice(now_ns, self._internals.retired_so_far if count else None)
        self._internals.clear_exception_record()  # nothing is being delivered between slices
        self._internals.arm_intercepts()
        self.counted = count > 0
        self.paused_mid_slice = False
        self._stopped_before_instruction = False
        rip = self._registers.read(r.UC_X86_REG_RIP)
        error: UcError | None = None
        if self._block_stop is not None:
            self._block_stop.disarm()  # a preemption that came after the last slice had ended
        self.running = True
        try:
            self._uc.emu_start(rip, self._slice_until(rip), 0, count)
        except UcError as caught:
            error = caught
        finally:
            self.running = False
        retired = self._internals.retired() if count else 0
        if count and self._stopped_before_instruction:
            retired -= 1  # the count hook had already counted the instruction a breakpoint held back
        return retired, error

    def retired_in_slice(self) -> int:
        """Instructions retired so far in the running slice, as a hook sees
        it (the instruction being executed is not yet included)."""
        if self.counted and self.running:
            return self._internals.retired_so_far() - 1
        return 0

    def _slice_until(self, rip: int) -> int:
        """The ``until`` address of a slice.

        Unicorn walks the guest's page tables for ``until`` at every start
        (``uc_emu_start`` in Unicorn's ``uc.c``); a walk that fails sets CR2
        and QEMU's pending-exception record without raising anything, so the
        guest's next real fault escalates to #DF and then to a silent
        shutdown, and its #PF handler may read a wrong CR2.  (Unicorn's exit
        list avoids the walk, but an empty one made code hooks stop firing
        in some process memory layouts.)  So ``until`` is an address in a
        page known to translate -- the page being executed, or failing that
        the IDT's -- at an offset the slice does not start at.  Should
        execution reach it exactly, the slice just ends early.
        """
        page = rip & ~PAGE_OFFSET_MASK
        until = page | PAGE_OFFSET_MASK if rip != page | PAGE_OFFSET_MASK else page
        if not self._registers.read(r.UC_X86_REG_CR0) & x86.CR0_PG:
            return until
        key = (self._registers.read(r.UC_X86_REG_CR3), until)
        if key == self._checked_until:
            return until  # this page translated at the last slice start under the same page tables
        try:
            self._linear.translate(until)
            self._checked_until = key
            return until
        except (TranslationFault, GuestFault):
            _, idt_base, _, _ = self._registers.read(r.UC_X86_REG_IDTR)
            candidate = idt_base | PAGE_OFFSET_MASK
            try:
                self._linear.translate(candidate)
                return candidate if candidate != rip else idt_base
            except (TranslationFault, GuestFault):
                return until  # nothing translates: the guest is about to fault anyway

    # ------------------------------------------------------------ ending a slice
    def stop(self) -> None:
        """From a hook whose instruction will not resume (a fault, INIT, the
        end of its kernel): end the running slice at Unicorn's next check --
        before the next instruction that has a code hook, after the next
        memory access (rewound to that instruction's start), or where the
        next block starts, whichever comes first."""
        self._uc.emu_stop()

    def preempt(self) -> None:
        """From another thread (fast mode's timer, the --timeout watchdog):
        end the running slice where the next translation block starts,
        every instruction before it complete and none after it begun.
        ``emu_stop`` could land between an instruction's store and its end,
        and the instruction would run again (see :class:`BlockStop`).
        Needs :meth:`enable_preemption` first."""
        self._block_stop.arm()

    def enable_preemption(self) -> None:
        """Install the block stop before a run that is preempted (fast mode,
        a --timeout): it costs a helper call per translation block, which a
        run that is never preempted does not pay."""
        if self._block_stop is None:
            self._block_stop = BlockStop(self._uc)

    def stop_after_instruction(self) -> None:
        """From inside an MMIO or port I/O hook: end the slice once the
        current instruction completes (``emu_stop`` there would make Unicorn
        execute the access again on resume).  In fast mode the slice runs on."""
        if self.counted:
            self._internals.end_slice_here()

    def pause_before_instruction(self) -> None:
        """From a code hook (a breakpoint): stop with the hooked instruction
        not executed; the scheduler resumes the rest of the slice later."""
        self._stopped_before_instruction = True
        self.paused_mid_slice = True
        self._uc.emu_stop()

    def pause_after_instruction(self) -> None:
        """From a memory hook (a watchpoint): stop once the accessing
        instruction completes; the scheduler resumes the rest of the slice.
        Uncounted, the slice stops where the next block starts (``emu_stop``
        here would rewind the instruction, to run its access again)."""
        self.paused_mid_slice = True
        if self.counted:
            self._internals.end_slice_here()
        else:
            self.preempt()


__all__ = ["SliceRunner"]
