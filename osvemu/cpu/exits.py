"""The core's exits: what Unicorn reports from inside a slice, turned into
calls on the core's :class:`~osvemu.cpu.surroundings.Platform` and into
exceptions delivered to the guest.

Port I/O, CPUID, device pages (the local APIC, the IOAPIC), VMMCALL and
accesses to unbacked guest-physical memory go to the platform; exceptions
and invalid instructions are delivered through the guest's IDT; RDMSR,
WRMSR and writes of CR0 and CR4 arrive as SVM intercepts wherever they execute (:mod:`osvemu.cpu.
ucinternals`), RDTSC, RDTSCP and SYSCALL (which Unicorn 2.1.4 leaves undone)
through instruction hooks: all are emulated in
:mod:`osvemu.cpu.special`.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from unicorn import (
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_WRITE_UNMAPPED,
    Uc,
)
from unicorn import x86_const as r

from osvemu.cpu import special, x86
from osvemu.cpu.blockcounter import NATIVE_RDTSC
from osvemu.cpu.delivery import Source
from osvemu.cpu.paging import TranslationFault
from osvemu.cpu.surroundings import Access, Unmapped
from osvemu.cpu.ucinternals import EXCP_VMEXIT, INSTRUCTION_CALLBACK, add_instruction_hook, add_native_instruction_hook
from osvemu.errors import GuestFault

if TYPE_CHECKING:
    from osvemu.cpu.core import Core

#: VMMCALL (AMD APM Vol. 3) and VMCALL (Intel SDM Vol. 2B): the hypercall instructions.
OPCODE_VMMCALL = bytes.fromhex("0f01d9")
OPCODE_VMCALL = bytes.fromhex("0f01c1")
_ACCESS = {UC_MEM_FETCH_UNMAPPED: Access.FETCH, UC_MEM_WRITE_UNMAPPED: Access.WRITE}
_REGISTER_BYTES = 4  # device registers are 32-bit, at 4-byte aligned offsets
#: What an IN reads where nothing answers (a floating bus reads all ones).
FLOATING_PORT = 0xFFFFFFFF
#: Exceptions in a row raised at the entry of the handler just delivered to:
#: the handler can never run (a fetch or stack fault at its first
#: instruction: a gate to an unmapped or non-executable address, a handler
#: whose IST stack faults).  A real core livelocks there (Intel
#: SDM Vol. 3A 6.15 bounds only the escalation to #DF and shutdown); the
#: machine ends the core as faulted, so that one kernel's livelock inside a
#: slice, where no instruction retires and no slice count or preemption
#: ends it, cannot hold the host thread every core shares.
EXCEPTION_STORM_LIMIT = 1024


def guarded(frozen_answer: object = None) -> Callable[[Callable], Callable]:
    """Run a Unicorn hook so that a Python exception stops emulation and is
    re-raised after ``emu_start`` returns, instead of vanishing in ctypes;
    and so that a frozen core (its slice stopping after the end of its
    instruction stream, :attr:`SliceRunner.frozen`) gets ``frozen_answer``
    and changes nothing."""

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: CoreExits, *args):
            if self.core.slices.frozen:
                return frozen_answer
            try:
                return method(self, *args)
            except BaseException as error:  # noqa: BLE001 - re-raised after emu_start
                if self.core.hook_error is None:
                    self.core.hook_error = error
                self.core.request_stop()
                return False

        return wrapper

    return decorate


class CoreExits:
    def __init__(self, core: Core, uc: Uc) -> None:
        self.core = core
        self._uc = uc
        self._handler_entry: int | None = None  # where the last exception delivered sent the core
        self._storm = 0  # exceptions in a row raised at that entry
        uc.hook_add(UC_HOOK_INTR, self._on_exception)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid_instruction)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, r.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, r.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INSN, self._on_cpuid, None, 1, 0, r.UC_X86_INS_CPUID)
        uc.hook_add(UC_HOOK_INSN, self._on_syscall, None, 1, 0, r.UC_X86_INS_SYSCALL)
        # RDTSC in C where its place is known (osvemu_rdtsc in blockcount.c), here where not.
        fallback = INSTRUCTION_CALLBACK(self._on_rdtsc)
        counter = core.slices.counter
        counter.answer_rdtsc(ctypes.cast(fallback, ctypes.c_void_p).value, *core.internals.edx_eax_addresses)
        add_native_instruction_hook(uc, r.UC_X86_INS_RDTSC, NATIVE_RDTSC, counter.address)
        self._native_hooks = [fallback, add_instruction_hook(uc, r.UC_X86_INS_RDTSCP, self._on_rdtscp)]
        uc.hook_add(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED,
                    self._on_unmapped)
        for base, size in core.platform.mmio_regions(core):
            uc.mmio_map(base, size, self._mmio_read, base, self._mmio_write, base)

    # ------------------------------------------------------------ exceptions
    @guarded()
    def _on_exception(self, uc: Uc, vector: int, _data: object) -> None:
        error_code = self.core.internals.take_exception_error_code()
        rip = self.core.rip
        if vector >= EXCP_VMEXIT:
            self.core.slices.cut_block(rip, through=True)  # the intercepted instruction is emulated: it ran
            special.intercepted(self.core, vector - EXCP_VMEXIT, error_code)
            return
        source = Source.SOFTWARE if vector >= 32 or self._is_software_interrupt(rip, vector) else Source.EXCEPTION
        self.core.slices.cut_block(rip, through=source is Source.EXCEPTION)  # a fault's RIP is its instruction's
        pushes_error = source is Source.EXCEPTION and vector in x86.VECTORS_WITH_ERROR_CODE
        if vector == x86.VECTOR_PF and not self._page_walk_allowed(self.core.read_register(r.UC_X86_REG_CR2)):
            return
        if self._storming(rip, source, vector):
            return
        self.core.take(vector, source, error_code if pushes_error else None)
        self._handler_entry = self.core.rip if source is Source.EXCEPTION else None

    def _storming(self, rip: int, source: Source, vector: int) -> bool:
        """Whether this exception, at the entry of the handler just delivered
        to, is the last one of an exception storm (EXCEPTION_STORM_LIMIT)."""
        if source is not Source.EXCEPTION or rip != self._handler_entry:
            self._storm = 0
            return False
        self._storm += 1
        if self._storm < EXCEPTION_STORM_LIMIT:
            return False
        self._storm, self._handler_entry = 0, None
        self.core.stop_with_fault("exception storm", f"{EXCEPTION_STORM_LIMIT} exceptions in a row at the entry "
                                  f"of their own handler ({rip:#x}, last vector {vector}): it can never run")
        return True

    def _page_walk_allowed(self, linear: int) -> bool:
        """A #PF whose walk read a paging structure outside the view (Unicorn
        reads nothing there and faults): the platform is told, as of any
        access outside the view; the guest still takes its #PF unless the
        platform ended its kernel for it."""
        table = self.core.linear.foreign_paging_structure(linear)
        if table is None:
            return True
        verdict = self.core.platform.unmapped_access(self.core, Access.WALK, table, 8)
        if verdict is Unmapped.END_SLICE:
            self.core.request_stop()
            return False
        return True

    def _is_software_interrupt(self, rip: int, vector: int) -> bool:
        try:
            before = self.core.linear.read_code(rip - 2, 2)
        except (TranslationFault, GuestFault):
            return False
        return before == bytes((0xCD, vector)) or (vector == x86.VECTOR_BP and before[1] == 0xCC) or (
            vector == x86.VECTOR_OF and before[1] == 0xCE)

    @guarded(False)
    def _on_invalid_instruction(self, uc: Uc, _data: object) -> bool:
        rip = self.core.rip
        self.core.slices.cut_block(rip, through=True)
        try:
            opcode = self.core.linear.read_code(rip, len(OPCODE_VMMCALL))
        except (TranslationFault, GuestFault):
            opcode = b""
        if opcode in (OPCODE_VMMCALL, OPCODE_VMCALL) and self.core.platform.hypercall(self.core):
            return True
        self.core.take(x86.VECTOR_UD, Source.EXCEPTION, None)
        return True

    # ------------------------------------------------------------ I/O, CPUID, devices
    @guarded(FLOATING_PORT)
    def _on_in(self, uc: Uc, port: int, size: int, _data: object) -> int:
        value = self.core.platform.port_in(self.core, port, size)
        if self.core.interrupt_ready():
            self.core.stop_after_instruction()  # a device read raised an interrupt: take it promptly
        return value

    @guarded()
    def _on_out(self, uc: Uc, port: int, size: int, value: int, _data: object) -> None:
        self.core.platform.port_out(self.core, port, size, value)
        if self.core.interrupt_ready():
            self.core.stop_after_instruction()  # so the interrupt is taken promptly

    @guarded(1)
    def _on_cpuid(self, uc: Uc, _data: object) -> int:
        leaf, subleaf = self.core.read_registers((r.UC_X86_REG_EAX, r.UC_X86_REG_ECX))
        self.core.special_counts["cpuid"] += 1  # emulated by the platform (the report's emulated_instructions)
        eax, ebx, ecx, edx = self.core.platform.cpuid(self.core, leaf, subleaf)
        for register, value in zip((r.UC_X86_REG_RAX, r.UC_X86_REG_RBX, r.UC_X86_REG_RCX, r.UC_X86_REG_RDX),
                                   (eax, ebx, ecx, edx)):
            self.core.write_register(register, value)
        return 1  # skip Unicorn's own CPUID

    @guarded(0)
    def _mmio_read(self, uc: Uc, offset: int, size: int, base: int) -> int:
        register = (base + offset) & ~(_REGISTER_BYTES - 1)
        value = self.core.platform.mmio_read(self.core, register)
        return (value >> (8 * (offset & (_REGISTER_BYTES - 1)))) & ((1 << (8 * size)) - 1)

    @guarded()
    def _mmio_write(self, uc: Uc, offset: int, size: int, value: int, base: int) -> None:
        self.core.platform.mmio_write(self.core, (base + offset) & ~(_REGISTER_BYTES - 1), value)
        if self.core.interrupt_ready():
            self.core.stop_after_instruction()  # so the interrupt is taken promptly

    @guarded(False)
    def _on_unmapped(self, uc: Uc, access: int, address: int, size: int, value: int, _data: object) -> bool:
        """``address`` is guest-physical: Unicorn reports the access after its own page walk."""
        kind = _ACCESS.get(access, Access.READ)
        verdict = self.core.platform.unmapped_access(self.core, kind, address, size)
        if verdict is Unmapped.SCRATCH:
            if not self.core.slices.exact:
                self.core.refused_access_at = address  # Core.run completes it, alone (Core._complete_refused_access)
                return False
            self.core.map_scratch_page(address)
            return True  # retry the access on the scratch page
        if verdict is Unmapped.FAULT and not self.core.stopped:
            self.core.stop_with_fault("unmapped memory", f"{kind.value} guest-physical {address:#x} ({size} bytes), "
                                      "which no RAM or device backs")
        return False

    @guarded(1)
    def _on_rdtsc(self, _engine: int, _data: int) -> int:
        special.read_tsc(self.core)
        return 1  # skip Unicorn's read of the host's counter

    @guarded(1)
    def _on_rdtscp(self, _engine: int, _data: int) -> int:
        special.read_tsc(self.core, with_aux=True)
        return 1

    @guarded()
    def _on_syscall(self, uc: Uc, _data: object) -> None:
        special.syscall(self.core)


__all__ = ["EXCEPTION_STORM_LIMIT", "OPCODE_VMMCALL", "CoreExits", "guarded"]
