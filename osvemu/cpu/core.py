"""One emulated core: a Unicorn instance, its memory view, its state, and
the accessors everything outside ``osvemu.cpu`` uses to reach it.

The jobs live in their own modules: :mod:`~osvemu.cpu.exits` (what Unicorn
reports inside a slice), :mod:`~osvemu.cpu.slices` (running and pausing a
slice), :mod:`~osvemu.cpu.lifecycle` (INIT, SIPI, HLT), :mod:`~osvemu.cpu.
interrupts` (taking interrupts and exceptions), :mod:`~osvemu.cpu.linear`
(linear-address access and disassembly), :mod:`~osvemu.cpu.fault` (fault
reports) and :mod:`~osvemu.cpu.scratch` (pages for refused accesses).
"""

from __future__ import annotations

import ctypes
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_CODE,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_MEM_WRITE,
    UC_MODE_64,
    UC_PROT_ALL,
    Uc,
    UcError,
)
from unicorn import x86_const as r
from unicorn.unicorn import UcContext
from unicorn.unicorn_py3 import unicorn as _uc_library

from osvemu.clock import NS_PER_INSTRUCTION, CoreClock
from osvemu.cpu import interrupts, lifecycle, x86
from osvemu.cpu.delivery import Mode, Source, cpu_mode
from osvemu.cpu.exits import OPCODE_VMMCALL, CoreExits
from osvemu.cpu.fastdelivery import FastDelivery
from osvemu.cpu.fault import FaultReport, fault_report
from osvemu.cpu.lifecycle import CoreState
from osvemu.cpu.linear import LinearMemory, canonical, page_pieces
from osvemu.cpu.memory import MemoryView
from osvemu.cpu.paging import TranslationFault
from osvemu.cpu.registers import RegisterAccess
from osvemu.cpu.scratch import ScratchPages
from osvemu.cpu.slices import SliceRunner
from osvemu.cpu.surroundings import InterruptController, Platform
from osvemu.cpu.ucinternals import CoreInternals
from osvemu.errors import EmulatorError, GuestFault
from osvemu.events import CoreFaulted, Record

if TYPE_CHECKING:
    import capstone

#: Each instance's translation cache; Unicorn reserves 1 GiB by default.
TCG_BUFFER_SIZE = 32 << 20
#: The fill byte of a scratch page: reads of refused memory see all ones,
#: as reads of a bus nothing answers on do.
SCRATCH_FILL = 0xFF

GENERAL_REGISTERS = {
    "rax": r.UC_X86_REG_RAX, "rbx": r.UC_X86_REG_RBX, "rcx": r.UC_X86_REG_RCX, "rdx": r.UC_X86_REG_RDX,
    "rsi": r.UC_X86_REG_RSI, "rdi": r.UC_X86_REG_RDI, "rbp": r.UC_X86_REG_RBP, "rsp": r.UC_X86_REG_RSP,
    "r8": r.UC_X86_REG_R8, "r9": r.UC_X86_REG_R9, "r10": r.UC_X86_REG_R10, "r11": r.UC_X86_REG_R11,
    "r12": r.UC_X86_REG_R12, "r13": r.UC_X86_REG_R13, "r14": r.UC_X86_REG_R14, "r15": r.UC_X86_REG_R15,
    "rip": r.UC_X86_REG_RIP, "rflags": r.UC_X86_REG_RFLAGS,
    "cs": r.UC_X86_REG_CS, "ss": r.UC_X86_REG_SS, "ds": r.UC_X86_REG_DS, "es": r.UC_X86_REG_ES,
    "fs": r.UC_X86_REG_FS, "gs": r.UC_X86_REG_GS,
    "cr0": r.UC_X86_REG_CR0, "cr2": r.UC_X86_REG_CR2, "cr3": r.UC_X86_REG_CR3, "cr4": r.UC_X86_REG_CR4,
    "fs_base": r.UC_X86_REG_FS_BASE, "gs_base": r.UC_X86_REG_GS_BASE,
}
_REGISTER_NAMES = tuple(GENERAL_REGISTERS)
_REGISTER_IDS = tuple(GENERAL_REGISTERS.values())
_SEGMENT_NAMES = {r.UC_X86_REG_ES: "es", r.UC_X86_REG_CS: "cs", r.UC_X86_REG_SS: "ss", r.UC_X86_REG_DS: "ds",
                  r.UC_X86_REG_FS: "fs", r.UC_X86_REG_GS: "gs"}
_HOOK_KINDS = {"write": UC_HOOK_MEM_WRITE, "read": UC_HOOK_MEM_READ, "access": UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE}
#: Where each core keeps the VMCB and MSR permission map of its intercepts
#: (:meth:`CoreInternals.arm_intercepts`): above the 40 physical address bits
#: of Unicorn's CPU (``TCG_PHYS_ADDR_BITS``, ``qemu/target/i386/cpu.h``), so
#: no guest page table can reach it (higher address bits are reserved: #PF).
INTERCEPT_PAGES_BASE = 1 << 40
INTERCEPT_PAGES_SIZE = 3 * x86.PAGE_SIZE
#: Above this many bytes, dropping all translated code is cheaper than a range.
_INVALIDATE_LIMIT = 16 * x86.PAGE_SIZE
#: Tries at the one counted step that completes a refused access (a preemption
#: that lands before the step's first instruction leaves it undone).
_REFUSED_STEP_ATTEMPTS = 64
#: Counted slices in a row that retire nothing, with no exit, fault or pause
#: to explain it, after which the core is stopped: its state is one Unicorn
#: cannot execute from, and a core that never advances its clock would
#: otherwise be picked again and again.  (The attack campaign reached one
#: with CR0 holding PG without PE, which MOV CR0 now refuses with #GP as the
#: processor does, osvemu/cpu/control.py; the guard stays for any other.)
NO_PROGRESS_SLICES = 64
#: Room for the largest register Unicorn reads into a buffer (an x87 or SSE register).
_RAW_REGISTER_BYTES = 64
#: What Core._build makes.
_BUILT_ATTRIBUTES = frozenset({"uc", "register_access", "internals", "linear", "slices", "scratch", "exits",
                               "fast_delivery"})


class Core:
    def __init__(self, index: int, apic_id: int, view: MemoryView, platform: Platform,
                 interrupts: InterruptController, clock: CoreClock, apic_base: int) -> None:
        self.index = index
        self.apic_id = apic_id
        self.view = view
        self.platform = platform
        self.interrupts = interrupts
        self.clock = clock
        self.state = CoreState.WAIT_FOR_SIPI
        self.apic_base = apic_base
        self.apic_base_msr = apic_base | x86.APIC_BASE_ENABLE
        self.instructions = 0
        self.slices_run = 0
        self._slices_without_progress = 0
        self.interrupts_taken = 0
        self.exceptions_taken = 0
        self.nmi_pending = False
        self.fault: FaultReport | None = None
        self.hook_error: BaseException | None = None
        self.refused_access_at: int | None = None  # guest-physical address of a refused access, uncounted
        self.skip_breakpoint_at: int | None = None  # a debugger breakpoint to run through once
        self.msr_storage: dict[int, int] = {}  # MSRs that read back what was written (osvemu.cpu.msr)
        self.msr_counts: Counter[tuple[int, str]] = Counter()  # (MSR, "read"/"write"/"... #GP")
        self.special_counts: Counter[str] = Counter()  # emulated RDTSC/RDTSCP and SYSCALL
        self.built = False  # the Unicorn instance exists (_build)
        #: RIP where the process that ran the core last left it, when that
        #: was another one (a worker of a partitioned run, osvemu.parallel).
        self.final_rip: int | None = None

    def __getattr__(self, name: str):
        """The core's Unicorn instance and what works on it are made when
        first needed -- when the core starts, or a tool looks at it -- so a
        core that never leaves wait-for-SIPI (an offline core, one a kernel
        does not bring up) costs neither start-up time nor host memory
        (about 3 MiB and 4 ms each)."""
        if name in _BUILT_ATTRIBUTES and not self.__dict__.get("built", True):
            self._build()
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _build(self) -> None:
        self.built = True
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)  # for osvemu.cpu's own modules; tools use the accessors
        self.uc.ctl_set_tcg_buffer_size(TCG_BUFFER_SIZE)
        self.register_access = RegisterAccess(self.uc)
        self.internals = CoreInternals(self.uc)
        for mapping in self.view.mappings:
            self.uc.mem_map_ptr(mapping.gpa, mapping.size, UC_PROT_ALL, mapping.host_address)
        self.uc.mem_map(INTERCEPT_PAGES_BASE, INTERCEPT_PAGES_SIZE)
        self.internals.install_intercepts(INTERCEPT_PAGES_BASE)
        self.linear = LinearMemory(self.register_access, self.view, self.internals,
                                   lambda access, gpa, size: self.platform.unmapped_access(self, access, gpa, size))
        self.slices = SliceRunner(self.uc, self.register_access, self.internals, self.clock, self.linear)
        self.scratch = ScratchPages(self.uc)
        self.exits = CoreExits(self, self.uc)
        self.fast_delivery = FastDelivery(self.uc._uch.value, self.internals, self.view)

    @property
    def tsc_adjust(self) -> int:
        """What writes to the TSC MSR moved the counter by (kept with the slices, which time RDTSC)."""
        return self.slices.tsc_adjust

    @tsc_adjust.setter
    def tsc_adjust(self, value: int) -> None:
        self.slices.tsc_adjust = value

    # ------------------------------------------------------------ state
    @property
    def stopped(self) -> bool:
        return self.state is CoreState.STOPPED

    @property
    def can_execute(self) -> bool:
        """Running or halted: not waiting for a STARTUP IPI, not stopped."""
        return self.state in (CoreState.RUNNING, CoreState.HALTED)

    def start(self, context: UcContext | None, registers: dict[int, object]) -> None:
        """Start executing from a saved context (or the current one) with
        these registers written in order (the PVH entry state, a snippet's
        start state)."""
        if context is not None:
            self.restore_context(context)
        for register, value in registers.items():
            self.write_register(register, value)
        self.flush_translations()
        self.state = CoreState.RUNNING

    def init(self) -> None:
        lifecycle.init(self)

    def startup(self, vector: int) -> bool:
        return lifecycle.startup(self, vector)

    def wake(self) -> None:
        lifecycle.wake(self)

    def reset(self) -> None:
        lifecycle.reset(self)

    def stuck_state(self) -> str | None:
        return lifecycle.stuck_state(self)

    def raise_nmi(self) -> None:
        self.nmi_pending = True

    def interrupt_ready(self, vector: int | None = None) -> bool:
        return interrupts.interrupt_ready(self, vector)

    def service_interrupts(self) -> None:
        interrupts.service(self)

    def take(self, vector: int, source: Source, error_code: int | None) -> None:
        interrupts.take(self, vector, source, error_code)

    # ------------------------------------------------------------ running
    def run(self, count: int, now_ns: int, exact: bool = False) -> int:
        """Execute up to ``count`` instructions (0 = until stopped), counted
        ``exact``-ly or by blocks (:mod:`osvemu.cpu.slices`); return how many retired."""
        retired, error = self.slices.run(count, now_ns, exact)
        self.scratch.release()
        if self.refused_access_at is not None:  # Unicorn's unmapped-access error, or none if a stop came first
            stepped, error = self._complete_refused_access(now_ns + retired * NS_PER_INSTRUCTION)
            retired += stepped
        self.instructions += retired
        self.slices_run += 1
        answered = self.slices.take_rdtsc_answered()
        if answered:
            self.special_counts["rdtsc"] += answered
        if self.hook_error is not None:
            hook_error, self.hook_error = self.hook_error, None
            if isinstance(hook_error, EmulatorError | KeyboardInterrupt):
                raise hook_error
            raise EmulatorError(f"core {self.index}: error in a hook: {hook_error!r}") from hook_error
        if error is not None and not self.stopped:
            self.stop_with_fault("emulation error", str(error))
        lifecycle.note_halt(self)
        self._check_progress(count, retired)
        return retired

    def _check_progress(self, count: int, retired: int) -> None:
        """Stop a core that runs slice after slice without retiring anything (NO_PROGRESS_SLICES)."""
        if not count or retired or self.state is not CoreState.RUNNING or self.slices.paused_mid_slice:
            self._slices_without_progress = 0
            return
        self._slices_without_progress += 1
        if self._slices_without_progress >= NO_PROGRESS_SLICES:
            self._slices_without_progress = 0
            self.stop_with_fault("no progress", f"{NO_PROGRESS_SLICES} slices in a row retired no instruction at "
                                 f"{self.rip:#x} (CR0 {self.read_register(r.UC_X86_REG_CR0):#x}): the core is in a "
                                 "state it cannot execute from")

    def _complete_refused_access(self, now_ns: int) -> tuple[int, UcError | None]:
        """Not counted exactly, a refused access ended its slice before the
        instruction (the scratch page could not be withdrawn after it: only
        exact counting stops after an instruction).  The instruction now runs
        alone, counted exactly, on the scratch page, so its read sees all
        ones, its write vanishes, and the next access is trapped and recorded
        again, as when counted exactly."""
        address, self.refused_access_at = self.refused_access_at, None
        self.scratch.map(address, SCRATCH_FILL)
        rip = self.rip
        for _ in range(_REFUSED_STEP_ATTEMPTS):  # the fast-mode timer may preempt the step before it begins
            retired, error = self.slices.run(1, now_ns, exact=True)
            if retired or error is not None or self.rip != rip or not self.can_execute:
                break
        self.scratch.release()
        return retired, error

    @property
    def paused_mid_slice(self) -> bool:
        return self.slices.paused_mid_slice

    def request_stop(self) -> None:
        """End the running slice now: from a hook whose instruction will not
        resume (a fault, INIT, the end of its kernel), or between slices."""
        if self.built:
            self.slices.stop()

    def preempt(self) -> None:
        """From another thread (the --timeout watchdog):
        end the running slice where its next translation block starts, so
        that no instruction is left half done to run again on resume
        (:meth:`SliceRunner.preempt`)."""
        self.slices.preempt()

    def stop_after_instruction(self) -> None:
        self.slices.stop_after_instruction()

    def pause_before_instruction(self) -> None:
        self.slices.pause_before_instruction()

    def pause_after_instruction(self) -> None:
        self.slices.pause_after_instruction()

    def retired_now(self) -> int:
        """Instructions this core has retired, counting the slice in progress
        (read from a hook: the current instruction is not yet included)."""
        return self.instructions + self.slices.retired_in_slice()

    def stop_with_fault(self, kind: str, description: str, chain: list[str] | None = None) -> None:
        """The core cannot go on (a triple fault, memory nothing backs, an
        emulation error): it stops with a report and the platform is told."""
        self.state = CoreState.STOPPED
        self.fault = fault_report(self, kind, description, chain or [])
        self.request_stop()
        self.emit(CoreFaulted(self.fault.one_line()))
        self.platform.core_shut_down(self)

    def emit(self, record: Record) -> None:
        self.platform.core_event(self, record)

    # ------------------------------------------------------------ exits owned by others
    def hypercall_registers(self) -> tuple[int, int, int, int]:
        """(RAX, RDI, RSI, RDX) at a VMMCALL: the number and three arguments."""
        return self.register_access.read_many((r.UC_X86_REG_RAX, r.UC_X86_REG_RDI, r.UC_X86_REG_RSI, r.UC_X86_REG_RDX))

    def cpl(self) -> int:
        return self.linear.cpl()

    def supervisor_protected(self) -> bool:
        """CPL 0 of protected or long mode (who may call a monitor)."""
        return self.linear.supervisor_protected()

    def buffer_pages(self, address: int, length: int) -> tuple[tuple[int, int], ...] | None:
        """The guest-physical pieces of the linear buffer [address,
        address+length) as a CPL-0 write would reach them through the
        current page tables (CR0.WP honoured), or None if a page is not
        present or not writable, or the buffer is not canonical (Intel SDM
        Vol. 3A 3.3.7.1) or wraps."""
        if length <= 0 or address < 0 or address + length > 1 << 64:
            return None
        if self.linear.efer() & x86.EFER_LMA and not (canonical(address) and canonical(address + length - 1)):
            return None
        pieces = []
        for linear, step in page_pieces(address, length):
            try:
                pieces.append((self.linear.translate(linear, write=True), step))
            except (TranslationFault, GuestFault):
                return None
        return tuple(pieces)

    def finish_hypercall(self, result: int) -> None:
        """Return ``result`` in RAX and continue after the 3-byte VMMCALL."""
        self.register_access.write(r.UC_X86_REG_RAX, result)
        self.register_access.write(r.UC_X86_REG_RIP, self.rip + len(OPCODE_VMMCALL))

    def map_scratch_page(self, physical: int) -> None:
        """Back one page with throw-away memory for the current instruction
        only: a refused access completes without touching real memory."""
        self.scratch.map(physical, SCRATCH_FILL)
        self.stop_after_instruction()

    # ------------------------------------------------------------ registers
    @property
    def rip(self) -> int:
        return self.register_access.read(r.UC_X86_REG_RIP)

    def read_register(self, register: int):
        return self.register_access.read(register)

    def read_registers(self, registers: Sequence[int]) -> tuple:
        return self.register_access.read_many(tuple(registers))

    def write_register(self, register: int, value) -> None:
        """Write a register; an MSR as ``(number, value)``, as Unicorn takes it."""
        if register == r.UC_X86_REG_MSR:
            self.internals.msr_write(*value)
        else:
            self.register_access.write(register, value)

    def read_register_bytes(self, register: int, size: int) -> bytes:
        """A register's raw bytes (the binding drops an x87 register's exponent)."""
        buffer = ctypes.create_string_buffer(_RAW_REGISTER_BYTES)
        _uc_library.uclib.uc_reg_read(self.uc._uch, register, buffer)
        return buffer.raw[:size]

    def write_register_bytes(self, register: int, data: bytes) -> None:
        buffer = ctypes.create_string_buffer(data.ljust(_RAW_REGISTER_BYTES, b"\0"), _RAW_REGISTER_BYTES)
        _uc_library.uclib.uc_reg_write(self.uc._uch, register, buffer)

    def registers(self) -> dict[str, int]:
        values = dict(zip(_REGISTER_NAMES, self.register_access.read_many(_REGISTER_IDS)))
        values["efer"] = self.efer()
        return values

    def efer(self) -> int:
        return self.linear.efer()

    def mode(self) -> Mode:
        return cpu_mode(self.register_access.read(r.UC_X86_REG_CR0), self.efer())

    def set_cpl(self, cpl: int) -> None:
        self.internals.set_cpl(cpl)

    def load_segment(self, register: int, selector: int) -> None:
        """Load a segment register; in real mode the hidden base follows the
        selector (the CpuAccess protocol of osvemu.cpu.delivery)."""
        if self.mode() is Mode.REAL:
            self.internals.load_real_mode_segment(_SEGMENT_NAMES[register], selector)
        else:
            self.register_access.write(register, selector)

    def restore_context(self, context: UcContext) -> None:
        self.uc.context_restore(context)

    # ------------------------------------------------------------ memory and code
    def translate(self, linear: int, write: bool = False) -> int:
        return self.linear.translate(linear, write)

    def read_linear(self, address: int, size: int, write: bool = False) -> bytes:
        """Inspect memory by linear address (GuestFault outside the view)."""
        return self.linear.read(address, size, write)

    def write_linear(self, address: int, data: bytes) -> None:
        self.linear.write(address, data)

    def guest_read(self, address: int, size: int, write: bool = False) -> bytes:
        """Read by linear address as the processor does for the guest (the
        CpuAccess protocol of osvemu.cpu.delivery): outside the view, the
        platform decides."""
        return self.linear.guest_read(address, size, write)

    def guest_write(self, address: int, data: bytes) -> None:
        self.linear.guest_write(address, data)

    def read_physical(self, address: int, size: int) -> bytes:
        """Guest-physical memory as this core maps it (devices excluded)."""
        return bytes(self.uc.mem_read(address, size))

    def code_width(self) -> int:
        return self.linear.code_width()

    def decode(self, offset: int, count: int = 1, operands: bool = False) -> list[capstone.CsInsn]:
        return self.linear.decode(offset, count, operands)

    def disassemble(self, offset: int, count: int = 1) -> str:
        return self.linear.disassemble(offset, count)

    # ------------------------------------------------------------ hooks for tools
    def add_code_hook(self, callback: Callable[[int, int], None], begin: int = 1, end: int = 0) -> int:
        """Call ``callback(address, size)`` before each instruction in
        [begin, end] (every instruction when begin > end); code already
        translated is dropped so the hook is seen."""
        handle = self.uc.hook_add(UC_HOOK_CODE, lambda _uc, address, size, _data: callback(address, size),
                                  None, begin, end)
        if begin <= end and end - begin < _INVALIDATE_LIMIT:
            self.invalidate_code(begin, end + 1)
        else:
            self.flush_translations()
        return handle

    def add_memory_hook(self, kind: str, callback: Callable[[bool, int, int, int], None], begin: int,
                        end: int) -> int:
        """Call ``callback(is_write, address, size, value)`` on each data
        access of ``kind`` ("write", "read" or "access") to [begin, end]."""
        def on_access(_uc, access: int, address: int, size: int, value: int, _data) -> None:
            callback(access == UC_MEM_WRITE, address, size, value)
        handle = self.uc.hook_add(_HOOK_KINDS[kind], on_access, None, begin, end)
        self.flush_translations()
        return handle

    def remove_hook(self, handle: int) -> None:
        self.uc.hook_del(handle)

    def flush_translations(self) -> None:
        if not self.built:
            return  # nothing translated yet
        self.uc.ctl_flush_tb()
        self.slices.forget_decoded_code()

    def invalidate_code(self, start: int, end: int) -> None:
        """Drop translated code for linear [start, end).

        Unicorn's remove-cache walks the core's page tables for the address;
        a walk that faults there is not contained, so the range is checked
        with osvemu's own page walk first, and a core where it does not
        translate drops all its translated code instead."""
        if not self.can_execute:
            return  # it runs no code until a SIPI, which drops the translation cache
        try:
            self.translate(start)
            self.translate(end - 1)
        except (TranslationFault, GuestFault):
            self.flush_translations()
            return
        try:
            self.uc.ctl_remove_cache(start, end)
            self.slices.forget_decoded_code()
        except UcError:
            self.flush_translations()


__all__ = ["GENERAL_REGISTERS", "Core", "CoreState"]
