"""Running a core for one slice of guest instructions.

A slice is one ``emu_start``, counted one of three ways:

* *by blocks* (deterministic mode's default): the block counter
  (:mod:`osvemu.cpu.blockcounter`) ends the slice where a translation block
  starts, before the block that would pass the budget, so a slice runs whole
  blocks -- reproducible, at one C call per block;
* *exactly* (``--exact``, the tracer, the debugger): Unicorn's own count, one
  check per instruction, ends the slice after exactly the budget, and a
  breakpoint or watchpoint can pause at any instruction;
* *unbounded* (a count of 0): no budget; the slice ends only in the ways
  below.

Every way counts the instructions retired.  The runner also holds the ways a
slice ends early and resumably: a breakpoint pauses before its instruction,
a watchpoint or a device access after it (or, counted by blocks, where the
next block starts), the --timeout watchdog's preemption where a block starts.
"""

from __future__ import annotations

from unicorn import UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, Uc, UcError
from unicorn import x86_const as r
from unicorn.unicorn import UcContext

from osvemu.clock import NS_PER_INSTRUCTION, CoreClock, tsc_at
from osvemu.cpu import x86
from osvemu.cpu.blockcounter import BlockCounter
from osvemu.cpu.linear import LinearMemory
from osvemu.cpu.paging import TranslationFault
from osvemu.cpu.registers import RegisterAccess
from osvemu.cpu.ucinternals import CoreInternals
from osvemu.errors import GuestFault

PAGE_OFFSET_MASK = x86.PAGE_SIZE - 1
_SLICE_START_REGISTERS = (r.UC_X86_REG_RIP, r.UC_X86_REG_CR0, r.UC_X86_REG_CR3)
#: Places in blocks whose instruction offsets are kept (a few per RDTSC loop or device access).
BLOCK_OFFSETS_KEPT = 4096


class SliceRunner:
    def __init__(self, uc: Uc, registers: RegisterAccess, internals: CoreInternals, clock: CoreClock,
                 linear: LinearMemory) -> None:
        self._uc = uc
        self._registers = registers
        self._internals = internals
        self._clock = clock
        self._linear = linear
        self.exact = False  # the running (or last) slice is counted by Unicorn, instruction by instruction
        self.running = False  # inside emu_start: hooks may read the in-slice count
        self.paused_mid_slice = False
        self._stopped_before_instruction = False
        self._checked_until: tuple[int, int] | None = None
        self.until: int | None = None  # the last slice's ``until`` address (_slice_until)
        self._counter = BlockCounter(uc)
        self._block_offsets: dict[tuple[int, int], int] = {}  # (block, place) -> instructions before it
        self._frozen: UcContext | None = None  # the state a stop left, while the slice winds down
        self._tsc_adjust = 0  # what writes to the TSC MSR moved it by (Core.tsc_adjust)
        self._translated_exact: bool | None = None  # how the translated code counts

    def run(self, count: int, now_ns: int, exact: bool = False) -> tuple[int, UcError | None]:
        """Execute up to ``count`` instructions (0 = until stopped) from RIP,
        ``exact``-ly or by blocks; return how many retired and Unicorn's
        error, if any."""
        exact = exact and count > 0
        if exact is not self._translated_exact:
            # Unicorn compiles its per-instruction count into the code it
            # translates, and ignores a count on code translated without it.
            if self._translated_exact is not None:
                self._uc.ctl_flush_tb()
                self.forget_decoded_code()
            self._translated_exact = exact
        self.exact = exact
        self._counter.start(0 if exact else count)
        self._clock.start_slice(now_ns, self._retired_so_far if count else None)
        self._counter.time_slice(tsc_at(now_ns) + self._tsc_adjust, tsc_at(NS_PER_INSTRUCTION),
                                 self._internals.counter_address if exact else None, native=count > 0)
        self._internals.clear_exception_record()  # nothing is being delivered between slices
        self._internals.arm_intercepts()
        self.paused_mid_slice = False
        self._stopped_before_instruction = False
        rip, cr0, cr3 = self._registers.read_many(_SLICE_START_REGISTERS)
        error: UcError | None = None
        self.until = self._slice_until(rip, cr0, cr3)
        self.running = True
        try:
            self._uc.emu_start(rip, self.until, 0, count if exact else 0)
        except UcError as caught:
            error = caught
            if not exact and self._frozen is None:
                self.cut_block(self._registers.read(r.UC_X86_REG_RIP), through=False)
        finally:
            self.running = False
            if self._frozen is not None:
                self._thaw()
                error = None  # what the frozen core ran into after its end does not count
        if not exact:
            return self._counter.retired, error
        retired = self._internals.retired()
        if self._stopped_before_instruction:
            retired -= 1  # the count hook had already counted the instruction a breakpoint held back
        return retired, error

    def _retired_so_far(self) -> int:
        """The slice's count as the clock reads it during the slice: the
        instruction being executed included, as Unicorn's own count has it."""
        if self.exact:
            return self._internals.retired_so_far()
        if not self.running:
            return self._counter.retired
        return self._before_instruction() + 1

    def retired_in_slice(self) -> int:
        """Instructions retired so far in the running slice, as a hook sees
        it (the instruction being executed is not yet included)."""
        if not self.running:
            return 0
        return self._internals.retired_so_far() - 1 if self.exact else self._before_instruction()

    def _before_instruction(self) -> int:
        """Counted by blocks: the slice's instructions before the one at RIP
        -- those of the blocks before the running one, and the running
        block's own up to RIP, decoded once per place (RIP is where Unicorn
        last wrote it: exact at an I/O port or special instruction, and at
        the last of those before a device access).  The places are
        forgotten whenever osvemu drops translations; code a core rewrites
        under itself keeps its old place until then, which moves only the
        time a hook reads, never what runs."""
        start, size, instructions = self._counter.block
        before_block = self._counter.retired - instructions
        linear = self._linear.code_linear(self._registers.read(r.UC_X86_REG_RIP))
        if not start <= linear < start + size:
            return before_block
        key = (start, linear)
        offset = self._block_offsets.get(key)
        if offset is None:
            try:
                offset = min(self._linear.count_instructions(start, linear), instructions - 1)
            except (TranslationFault, GuestFault):
                offset = 0
            if len(self._block_offsets) >= BLOCK_OFFSETS_KEPT:
                self._block_offsets.clear()
            self._block_offsets[key] = offset
        if self._linear.code_width() == 64:
            self._counter.learn_place(start, linear, offset)  # the next RDTSC here is answered in C
        return before_block + offset

    @property
    def tsc_adjust(self) -> int:
        return self._tsc_adjust

    @tsc_adjust.setter
    def tsc_adjust(self, value: int) -> None:
        """A write to the TSC: the running slice's RDTSCs answered in C see it at once."""
        self._counter.adjust_tsc(value - self._tsc_adjust)
        self._tsc_adjust = value

    @property
    def counter(self) -> BlockCounter:
        return self._counter

    def take_rdtsc_answered(self) -> int:
        """RDTSCs answered in C since the last call."""
        return self._counter.take_rdtsc_answered()

    def forget_decoded_code(self) -> None:
        """Translations were dropped: so are the places decoded in them and
        the block counts kept."""
        self._block_offsets.clear()
        self._counter.forget()

    def cut_block(self, rip: int, through: bool) -> None:
        """Counted by blocks, an exception, intercept or error at ``rip``
        cut the running block short: count only the instructions it started
        -- those before ``rip``, and the one at ``rip`` when ``through`` (a
        fault or intercept reports the instruction it stopped in; a trap the
        next one).  Nothing changes when ``rip`` lies outside the block (a
        fetch fault before the next block could start)."""
        if self.exact:
            return
        start, size, instructions = self._counter.block
        linear = self._linear.code_linear(rip)
        if not instructions or not start <= linear < start + size:
            return
        try:
            started = self._linear.count_instructions(start, linear) + (1 if through else 0)
        except (TranslationFault, GuestFault):
            return  # the code cannot be read back: the block stays counted whole
        self._counter.cut_block_at(started)

    def _slice_until(self, rip: int, cr0: int, cr3: int) -> int:
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
        if not cr0 & x86.CR0_PG:
            return until
        key = (cr3, until)
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
        end of its kernel): end the running slice with the core's state as
        it is now.

        Unicorn ends it at its next check: counted exactly, before the next
        instruction; otherwise after the next memory access (rewound to that
        instruction's start, its store done) or where the next block starts,
        so the rest of the block could run on.  So the core is frozen
        instead: its registers are saved here and restored when the slice
        ends, its memory is read-only to it until then (Unicorn refuses the
        store before making it), and its exits ignore what it does meanwhile
        (:attr:`frozen`)."""
        self._uc.emu_stop()
        if self.running and not self.exact and self._frozen is None:
            self.cut_block(self._registers.read(r.UC_X86_REG_RIP), through=True)
            self._frozen = self._uc.context_save()
            for mapping in self._linear.view.mappings:
                self._uc.mem_protect(mapping.gpa, mapping.size, UC_PROT_READ | UC_PROT_EXEC)

    @property
    def frozen(self) -> bool:
        """The running slice goes on only until Unicorn notices its stop:
        nothing the core does from here on takes effect (:meth:`stop`)."""
        return self._frozen is not None

    def _thaw(self) -> None:
        self._uc.context_restore(self._frozen)
        self._frozen = None
        for mapping in self._linear.view.mappings:
            self._uc.mem_protect(mapping.gpa, mapping.size, UC_PROT_ALL)

    def preempt(self) -> None:
        """From another thread (the --timeout watchdog): end the running
        slice where the next translation block starts, every instruction
        before it complete and none after it begun.  ``emu_stop`` could land
        between an instruction's store and its end, and the instruction
        would run again (see :mod:`osvemu.cpu.blockcounter`)."""
        self._counter.request_stop()

    def stop_after_instruction(self) -> None:
        """From inside an MMIO or port I/O hook: end the slice once the
        current instruction completes -- counted by blocks or unbounded,
        where the next block starts (``emu_stop`` there would make Unicorn
        execute the access again on resume)."""
        if self.exact:
            self._internals.end_slice_here()
        else:
            self._counter.request_stop()

    def pause_before_instruction(self) -> None:
        """From a code hook (a breakpoint): stop with the hooked instruction
        not executed; the scheduler resumes the rest of the slice later."""
        self._stopped_before_instruction = True
        self.paused_mid_slice = True
        self._uc.emu_stop()

    def pause_after_instruction(self) -> None:
        """From a memory hook (a watchpoint): stop once the accessing
        instruction completes (not counted exactly: where the next block
        starts); the scheduler resumes the rest of the slice."""
        self.paused_mid_slice = True
        self.stop_after_instruction()


__all__ = ["SliceRunner"]
