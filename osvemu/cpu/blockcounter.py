"""Counting a slice's instructions by translation block (``blockcount.c``).

The block counter is each core's only UC_HOOK_BLOCK hook, a C function
that adds each block's instruction count, as QEMU translated it, when the
block starts, and ends the slice where a block starts: before a block that
would take it past its budget, or as soon as a stop is requested (from
another thread, or from a device hook of this one).  A slice therefore
retires whole blocks, and the same guest gives the same slices, instruction
counts and virtual times in every run, at the cost of one C call per block
instead of Unicorn's per-instruction count hook (several times faster on
compute-bound code, measured by ``tools/bench.py``).

Where a block is cut short -- an exception or intercept inside it, or an
access that ends the slice with an error -- the instructions it did not
start are taken off again (:meth:`BlockCounter.cut_block_at`), so the count
is that of instructions started, as Unicorn's own count reports it.

The counter also serves every mode as the preemption point: ``--timeout``
and a device access that must end the slice set its stop flag, which ends
the slice where the next block starts, never inside an instruction.
``emu_stop`` from another thread cannot be used for that: Unicorn 2.1.4 checks for a stop after every
guest load and store as well (``check_exit_request`` in
``qemu/tcg/tcg-op.c``), and a stop seen there rewinds the guest to the start
of the accessing instruction (``cpu_loop_exit_restore`` in
``HELPER(check_exit_request)``, ``qemu/accel/tcg/tcg-runtime.c``) although
its store has happened, so the instruction runs a second time on resume: an
``xchg`` that took a lock finds it taken, an ``inc`` counts twice.
"""

from __future__ import annotations

import ctypes

from unicorn import UC_HOOK_BLOCK, Uc
from unicorn.unicorn_py3 import unicorn as _binding

from osvemu.cpu import native
from osvemu.errors import EmulatorError

#: ``UC_CTL_READ_WRITE(UC_CTL_TB_REQUEST_CACHE, 2)`` (include/unicorn/unicorn.h):
#: the control type in bits 25:0, the argument count from bit 26, read and
#: write in bits 31:30.
UC_CTL_TB_REQUEST_CACHE = 8
UC_CTL_IO_READ_WRITE = 3
REQUEST_CACHE_CONTROL = ctypes.c_int32(UC_CTL_TB_REQUEST_CACHE | (2 << 26) | (UC_CTL_IO_READ_WRITE << 30)).value


#: Blocks whose counts a slice keeps (``KNOWN_BLOCKS`` in blockcount.c).
KNOWN_BLOCKS = 1024


class _KnownBlock(ctypes.Structure):
    _fields_ = [("pc", ctypes.c_uint64), ("size", ctypes.c_uint32), ("generation", ctypes.c_uint32),
                ("instructions", ctypes.c_uint64)]


#: RDTSC places kept (``KNOWN_PLACES`` in blockcount.c).
KNOWN_PLACES = 512


class _KnownPlace(ctypes.Structure):
    _fields_ = [("block_pc", ctypes.c_uint64), ("rip", ctypes.c_uint64), ("offset", ctypes.c_uint64),
                ("generation", ctypes.c_uint64)]


class _Counter(ctypes.Structure):
    """``struct osvemu_block_counter`` (blockcount.c), checked against the C
    side's own offsets when the library loads."""

    _fields_ = [("retired", ctypes.c_uint64), ("budget", ctypes.c_uint64), ("stop", ctypes.c_uint64),
                ("block_pc", ctypes.c_uint64), ("block_instructions", ctypes.c_uint64), ("block_size", ctypes.c_uint64),
                ("blocks", ctypes.c_uint64), ("unknown_blocks", ctypes.c_uint64),
                ("uc_ctl", ctypes.c_void_p), ("uc_emu_stop", ctypes.c_void_p), ("request_cache", ctypes.c_int64),
                ("generation", ctypes.c_uint64),
                ("tsc_base", ctypes.c_uint64), ("tsc_per_instruction", ctypes.c_uint64), ("tsc_native", ctypes.c_uint64),
                ("exact_counter", ctypes.c_uint64), ("rax", ctypes.c_uint64), ("rdx", ctypes.c_uint64),
                ("uc_reg_read", ctypes.c_void_p), ("fallback", ctypes.c_void_p), ("rdtsc_answered", ctypes.c_uint64),
                ("place_generation", ctypes.c_uint64),
                ("known", _KnownBlock * KNOWN_BLOCKS), ("places", _KnownPlace * KNOWN_PLACES)]


def _load() -> tuple[int, int]:
    checked = [name for name, _ in _Counter._fields_ if name not in ("known", "places")]  # the tables close it
    native.check_layout(_Counter, "osvemu_block_counter_layout", checked)
    return native.function_address("osvemu_count_block"), native.function_address("osvemu_rdtsc")


_COUNT_BLOCK, NATIVE_RDTSC = _load()


class BlockCounter:
    """One core's block counter, installed as its instance's only block hook."""

    def __init__(self, uc: Uc) -> None:
        self._counter = counter = _Counter()
        counter.uc_ctl = native.unicorn_function("uc_ctl")
        counter.uc_emu_stop = native.unicorn_function("uc_emu_stop")
        counter.request_cache = REQUEST_CACHE_CONTROL
        handle = _binding.uc_hook_h()
        status = _binding.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK, _COUNT_BLOCK,
                                            ctypes.byref(counter), ctypes.c_uint64(1), ctypes.c_uint64(0))
        if status:
            raise EmulatorError(f"cannot add osvemu's block counter to Unicorn (error {status})")
        uc.ctl_flush_tb()  # blocks translated before the hook existed do not call it

    def start(self, budget: int) -> None:
        """A slice begins: nothing counted, no stop pending (a preemption
        that came after the last slice ended is dropped), and ``budget``
        instructions allowed (0: no limit)."""
        counter = self._counter
        counter.retired = 0
        counter.blocks = 0
        counter.block_pc = counter.block_size = counter.block_instructions = 0
        counter.budget = budget
        counter.generation += 1  # the counts kept in the last slice are forgotten
        counter.stop = 0

    def forget(self) -> None:
        """Translations were dropped: the counts and RDTSC places kept are asked for again."""
        self._counter.generation += 1
        self._counter.place_generation += 1

    # ------------------------------------------------------------ RDTSC in C
    @property
    def address(self) -> int:
        """The structure's address: the native RDTSC hook's user data."""
        return ctypes.addressof(self._counter)

    def answer_rdtsc(self, fallback: int, rax: int, rdx: int) -> None:
        """RDTSC answered by ``osvemu_rdtsc`` where it can (its place known),
        by ``fallback`` (a C-callable function) where not; EDX:EAX at these
        addresses (env->regs)."""
        counter = self._counter
        counter.fallback, counter.rax, counter.rdx = fallback, rax, rdx
        counter.uc_reg_read = native.unicorn_function("uc_reg_read")

    def time_slice(self, tsc_base: int, tsc_per_instruction: int, exact_counter: int | None, native: bool) -> None:
        """The TSC of the slice about to run: at its start and per
        instruction; the address of Unicorn's counter when counting exactly;
        ``native``: RDTSC may be answered in C (not in an unbounded slice,
        whose time stands)."""
        counter = self._counter
        counter.tsc_base = tsc_base & ((1 << 64) - 1)
        counter.tsc_per_instruction = tsc_per_instruction
        counter.exact_counter = exact_counter or 0
        counter.tsc_native = int(native)

    def adjust_tsc(self, delta: int) -> None:
        """A write to the TSC moved it by ``delta`` within the running slice."""
        self._counter.tsc_base = (self._counter.tsc_base + delta) & ((1 << 64) - 1)

    def learn_place(self, block_pc: int, rip: int, offset: int) -> None:
        """The instruction at ``rip`` (64-bit code) is ``offset`` instructions into the block at ``block_pc``."""
        place = self._counter.places[(rip ^ (rip >> 9)) & (KNOWN_PLACES - 1)]
        place.block_pc, place.rip, place.offset = block_pc, rip, offset
        place.generation = self._counter.place_generation

    def take_rdtsc_answered(self) -> int:
        """How many RDTSCs the C hook answered since the last call."""
        answered, self._counter.rdtsc_answered = self._counter.rdtsc_answered, 0
        return answered

    def request_stop(self) -> None:
        """End the running slice where its next block starts (any thread)."""
        self._counter.stop = 1

    @property
    def stop_requested(self) -> bool:
        return bool(self._counter.stop)

    @property
    def retired(self) -> int:
        """Instructions of the blocks the slice has entered (a hook sees its
        whole block counted)."""
        return self._counter.retired

    @property
    def blocks(self) -> int:
        """Blocks the slice has entered."""
        return self._counter.blocks

    @property
    def block(self) -> tuple[int, int, int]:
        """(linear address, length in bytes, instruction count) of the block
        entered last in this slice, or (0, 0, 0)."""
        counter = self._counter
        return counter.block_pc, counter.block_size, counter.block_instructions

    def cut_block_at(self, started: int) -> None:
        """The last block ran only its first ``started`` instructions (an
        exception or error cut it short): count only those."""
        counter = self._counter
        if 0 <= started < counter.block_instructions:
            counter.retired -= counter.block_instructions - started
            counter.block_instructions = started


def check_block_counting() -> None:
    """Start-up probe: the counter stops a loop exactly at block boundaries
    within its budget, and its total equals Unicorn's own count."""
    from unicorn import UC_ARCH_X86, UC_MODE_64
    from unicorn.x86_const import UC_X86_REG_RCX, UC_X86_REG_RIP

    # mov ecx, 1000; loop: dec ecx; jnz loop; hlt -- 1 + 2 x 1000 + 1 instructions
    code = bytes.fromhex("b9e8030000" "ffc9" "75fc" "f4")
    base = 0x1000
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 0x10000)
    uc.mem_write(base, code)
    counter = BlockCounter(uc)
    total, slices, rip = 0, 0, base
    while rip != base + len(code) and slices < 10_000:
        counter.start(7)
        uc.emu_start(rip, 0xFFFF)
        total += counter.retired
        slices += 1
        rip = uc.reg_read(UC_X86_REG_RIP)
    if total != 2002 or uc.reg_read(UC_X86_REG_RCX) != 0:
        raise EmulatorError(f"osvemu's block counter does not count as expected ({total} instructions in "
                            f"{slices} slices): unsupported Unicorn version")


__all__ = ["BlockCounter", "check_block_counting"]
