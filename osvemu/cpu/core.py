"""One emulated core: a Unicorn instance, its memory view, and its state.

The core executes guest code in slices of a given instruction count and
turns what Unicorn reports -- hooks on port I/O, CPUID, the local APIC page,
exceptions, unmapped accesses, HLT -- into calls on its :class:`Platform`
and into state changes (Intel SDM Vol. 3A 9.4 for the INIT/SIPI states).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum
from typing import Protocol

import capstone
from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_64,
    UC_PROT_ALL,
    Uc,
    UcError,
)
from unicorn import x86_const as r

from osvemu.cpu import x86
from osvemu.cpu.delivery import DeliveryFault, Mode, Source, cpu_mode, deliver
from osvemu.cpu.fault import FaultReport
from osvemu.cpu.memory import MemoryView
from osvemu.cpu.paging import TranslationFault, translate
from osvemu.cpu.templates import BOOT_GDT, pvh_entry_context, startup_context
from osvemu.cpu.ucinternals import CoreInternals
from osvemu.errors import EmulatorError, GuestFault
from osvemu.platform import clock
from osvemu.platform.lapic import LocalApic

#: Each instance's translation cache; Unicorn reserves 1 GiB by default.
TCG_BUFFER_SIZE = 32 << 20
_OPCODE_VMMCALL = bytes.fromhex("0f01d9")
_OPCODE_VMCALL = bytes.fromhex("0f01c1")

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


class CoreState(Enum):
    RUNNING = "running"
    HALTED = "halted"
    WAIT_FOR_SIPI = "wait-for-sipi"
    STOPPED = "stopped"


class Platform(Protocol):
    """What a core asks of the machine around it."""

    def port_in(self, core: Core, port: int, size: int) -> int: ...
    def port_out(self, core: Core, port: int, size: int, value: int) -> None: ...
    def cpuid(self, core: Core, leaf: int, subleaf: int) -> tuple[int, int, int, int]: ...
    def hypercall(self, core: Core) -> bool: ...
    def symbolize(self, address: int) -> str | None: ...
    def shared_devices(self) -> list[SharedDevice]: ...
    def memory_violation(self, core: Core, kind: str, address: int, size: int) -> bool: ...


class SharedDevice(Protocol):
    """A memory-mapped device every core sees at the same address (the IOAPIC)."""

    base: int
    size: int

    def mmio_read(self, offset: int) -> int: ...
    def mmio_write(self, offset: int, value: int) -> None: ...


def _guarded(method: Callable) -> Callable:
    """Run a Unicorn hook so that a Python exception stops emulation and is
    re-raised after ``emu_start`` returns, instead of vanishing in ctypes."""

    @functools.wraps(method)
    def wrapper(self: Core, *args):
        try:
            return method(self, *args)
        except BaseException as error:  # noqa: BLE001 - re-raised after emu_start
            if self.hook_error is None:
                self.hook_error = error
            self.uc.emu_stop()
            return False

    return wrapper


class Core:
    def __init__(self, index: int, apic_id: int, view: MemoryView, lapic_base: int, platform: Platform,
                 lapic: LocalApic | None = None) -> None:
        self.index = index
        self.apic_id = apic_id
        self.view = view
        self.platform = platform
        self.state = CoreState.WAIT_FOR_SIPI
        self.lapic = lapic
        self.lapic_base = lapic_base
        self.apic_base_msr = lapic_base | x86.APIC_BASE_ENABLE
        self.instructions = 0
        self.interrupts_taken = 0
        self.exceptions_taken = 0
        self.nmi_pending = False
        self.fault: FaultReport | None = None
        self.hook_error: BaseException | None = None
        self.exit_requested = False
        self.slice_start_ns = 0
        self.paused_mid_slice = False
        self._stopped_before_instruction = False
        self.uc_running = False  # inside emu_start (hooks may read the in-slice count)
        self.skip_breakpoint_at: int | None = None  # a debugger breakpoint to run through once
        self._scratch_pages: list[int] = []
        self._checked_until: tuple[int, int] | None = None
        self.counted = True
        self.on_event: Callable[[Core, str, dict], None] | None = None
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.uc.ctl_set_tcg_buffer_size(TCG_BUFFER_SIZE)
        self.internals = CoreInternals(self.uc)
        for mapping in view.mappings:
            self.uc.mem_map_ptr(mapping.gpa, mapping.size, UC_PROT_ALL, mapping.host_address)
        self.uc.mmio_map(lapic_base, 0x1000, self._lapic_read, None, self._lapic_write, None)
        for device in platform.shared_devices():
            self.uc.mmio_map(device.base, device.size, self._device_read, device, self._device_write, device)
        self._add_hooks()

    # ------------------------------------------------------------ setup
    def _add_hooks(self) -> None:
        uc = self.uc
        uc.hook_add(UC_HOOK_INTR, self._on_exception)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid_instruction)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, r.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, r.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INSN, self._on_cpuid, None, 1, 0, r.UC_X86_INS_CPUID)
        uc.hook_add(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED,
                    self._on_unmapped)

    def intercept_instructions_at(self, addresses: list[int]) -> None:
        """Hook RDMSR/WRMSR/RDTSC at these linear addresses (Unicorn cannot hook
        those instructions by kind; see REFERENCE.md)."""
        for address in addresses:
            self.uc.hook_add(UC_HOOK_CODE, self._on_special_instruction, None, address, address)
        self.uc.ctl_flush_tb()

    def enter_pvh(self, entry: int, start_info: int) -> None:
        """Start as the PVH boot CPU: 32-bit protected mode at ``entry`` with
        EBX = start info (REFERENCE.md "PVH direct boot")."""
        self.uc.context_restore(pvh_entry_context())
        self.uc.reg_write(r.UC_X86_REG_RBX, start_info)
        self.uc.reg_write(r.UC_X86_REG_RIP, entry)
        self.state = CoreState.RUNNING

    # ------------------------------------------------------------ INIT / SIPI / NMI
    def init(self) -> None:
        """INIT: the core waits for a STARTUP IPI (SDM Vol. 3A 10.4.7.3)."""
        if self.lapic:
            self.lapic.reset()
        self.nmi_pending = False
        self.state = CoreState.WAIT_FOR_SIPI
        self.request_stop()  # it does not resume here: a SIPI loads a new context
        self._event("init", {})

    def startup(self, vector: int) -> bool:
        """STARTUP IPI: only a core waiting for it starts, at vector << 12."""
        if self.state is not CoreState.WAIT_FOR_SIPI:
            return False
        self.uc.context_restore(startup_context(vector))
        self.uc.ctl_flush_tb()  # the trampoline was written by another core
        self.state = CoreState.RUNNING
        self._event("sipi", {"vector": vector, "address": vector << 12})
        return True

    def raise_nmi(self) -> None:
        self.nmi_pending = True

    def interrupt_waiting(self) -> bool:
        return self.nmi_pending or (self.lapic is not None and self.lapic.pending_vector() is not None)

    # ------------------------------------------------------------ running
    def now_ns(self) -> int:
        """Virtual time on this core, including the slice in progress."""
        if self.counted:
            return self.slice_start_ns + self.internals.retired_so_far() * clock.NS_PER_INSTRUCTION
        return self.slice_start_ns

    def service_interrupts(self) -> None:
        """Take a pending NMI or LAPIC interrupt if the core can (between
        instructions; SDM Vol. 3A 6.9 priorities: NMI before maskable)."""
        if self.state in (CoreState.STOPPED, CoreState.WAIT_FOR_SIPI):
            return
        if self.nmi_pending:
            self.nmi_pending = False
            self._take(x86.VECTOR_NMI, Source.EXTERNAL, None, "nmi")
            return
        if self.lapic is None or not self.lapic.irr:
            return
        vector = self.lapic.pending_vector()
        if vector is None or not self.uc.reg_read(r.UC_X86_REG_RFLAGS) & x86.RFLAGS_IF:
            return
        self.lapic.acknowledge(vector)
        self._take(vector, Source.EXTERNAL, None, "interrupt")

    def run(self, count: int, now_ns: int) -> int:
        """Execute up to ``count`` instructions (0 = until stopped); return
        how many retired (exact when ``count`` > 0)."""
        self.slice_start_ns = now_ns
        self.counted = count > 0
        self.paused_mid_slice = False
        self._stopped_before_instruction = False
        rip = self.uc.reg_read(r.UC_X86_REG_RIP)
        error: UcError | None = None
        self.uc_running = True
        try:
            self.uc.emu_start(rip, self._slice_until(rip), 0, count)
        except UcError as caught:
            error = caught
        finally:
            self.uc_running = False
        for page in self._scratch_pages:
            self.uc.mem_unmap(page, x86.PAGE_SIZE)
        self._scratch_pages.clear()
        retired = self.internals.retired() if count else 0
        if count and self._stopped_before_instruction:
            retired -= 1  # the count hook had already counted the instruction a breakpoint held back
        self.instructions += retired
        if self.hook_error is not None:
            hook_error, self.hook_error = self.hook_error, None
            if isinstance(hook_error, EmulatorError):
                raise hook_error
            raise EmulatorError(f"core {self.index}: error in a hook: {hook_error!r}") from hook_error
        if error is not None and self.state is not CoreState.STOPPED:
            self.stop_with_fault("emulation error", str(error))
        if self.state is CoreState.RUNNING and not self.exit_requested and self.internals.halted() \
                and self._after_hlt():
            self.state = CoreState.HALTED
            self._event("hlt", {"rip": self.uc.reg_read(r.UC_X86_REG_RIP)})
        return retired

    def _slice_until(self, rip: int) -> int:
        """The ``until`` address of a slice.

        Unicorn walks the guest's page tables for ``until`` at every start; a
        walk that fails sets CR2 and QEMU's pending-exception record without
        raising anything, so the guest's next real fault escalates to #DF and
        then to a silent shutdown, and its #PF handler may read a wrong CR2.
        (Unicorn's exit list avoids the walk but an empty one made code hooks
        stop firing in some process memory layouts.)  So ``until`` is an
        address in a page known to translate -- the page being executed, or
        failing that the IDT's -- at an offset the slice does not start at.
        Should execution reach it exactly, the slice just ends early.
        """
        page = rip & ~(x86.PAGE_SIZE - 1)
        until = page | (x86.PAGE_SIZE - 1) if rip != page | (x86.PAGE_SIZE - 1) else page
        if not self.uc.reg_read(r.UC_X86_REG_CR0) & x86.CR0_PG:
            return until
        key = (self.uc.reg_read(r.UC_X86_REG_CR3), until)
        if key == self._checked_until:
            return until  # this page translated at the last slice start under the same page tables
        try:
            self.translate(until)
            self._checked_until = key
            return until
        except (TranslationFault, GuestFault):
            _, idt_base, _, _ = self.uc.reg_read(r.UC_X86_REG_IDTR)
            candidate = idt_base | (x86.PAGE_SIZE - 1)
            try:
                self.translate(candidate)
                return candidate if candidate != rip else idt_base
            except (TranslationFault, GuestFault):
                return until  # nothing translates: the guest is about to fault anyway

    # ------------------------------------------------------------ for the monitor
    def hypercall_registers(self) -> tuple[int, int, int, int]:
        """(RAX, RDI, RSI, RDX) at a VMMCALL: the number and three arguments."""
        return tuple(self.uc.reg_read_batch((r.UC_X86_REG_RAX, r.UC_X86_REG_RDI, r.UC_X86_REG_RSI,
                                             r.UC_X86_REG_RDX)))

    def finish_hypercall(self, result: int) -> None:
        """Return ``result`` in RAX and continue after the 3-byte VMMCALL."""
        self.uc.reg_write(r.UC_X86_REG_RAX, result & 0xFFFF_FFFF_FFFF_FFFF)
        self.uc.reg_write(r.UC_X86_REG_RIP, self.uc.reg_read(r.UC_X86_REG_RIP) + len(_OPCODE_VMMCALL))

    def current_rip(self) -> int:
        return self.uc.reg_read(r.UC_X86_REG_RIP)

    def _after_hlt(self) -> bool:
        """A cross-check of Unicorn's halted flag: the byte before RIP is HLT."""
        try:
            rip = self.uc.reg_read(r.UC_X86_REG_RIP)
            return self.read_linear(self.code_linear(rip - 1), 1) == b"\xf4"
        except (TranslationFault, GuestFault):
            return False

    def request_stop(self) -> None:
        """End the running slice now (from another thread, or from a hook
        whose instruction will not resume: a fault, INIT, the exit port)."""
        self.uc.emu_stop()

    def pause_before_instruction(self) -> None:
        """From a code hook (a breakpoint): stop with the hooked instruction
        not executed; the scheduler resumes the rest of the slice later."""
        self._stopped_before_instruction = True
        self.paused_mid_slice = True
        self.uc.emu_stop()

    def pause_after_instruction(self) -> None:
        """From a memory hook (a watchpoint): stop once the accessing
        instruction completes; the scheduler resumes the rest of the slice."""
        self.paused_mid_slice = True
        if self.counted:
            self.internals.end_slice_here()
        else:
            self.uc.emu_stop()

    def stop_after_instruction(self) -> None:
        """From inside an MMIO or port I/O hook: end the slice once the current
        instruction completes.  In fast mode the slice just runs on."""
        if self.counted:
            self.internals.end_slice_here()

    def wake(self) -> None:
        if self.state is CoreState.HALTED:
            self.state = CoreState.RUNNING

    # ------------------------------------------------------------ delivery
    def _take(self, vector: int, source: Source, error_code: int | None, kind: str) -> None:
        chain: list[str] = []
        interrupted_at = self.uc.reg_read(r.UC_X86_REG_RIP)
        try:
            deliver(self, vector, source, error_code)
        except DeliveryFault as first:
            chain.append(f"vector {vector:#x}: {first}")
            try:
                deliver(self, x86.VECTOR_DF, Source.EXCEPTION, 0)
                self._event("exception", {"vector": x86.VECTOR_DF, "error_code": 0, "cause": str(first)})
                return
            except DeliveryFault as second:
                chain.append(f"#DF: {second}")
                self.stop_with_fault("triple fault", "; ".join(chain), chain)
                return
        if kind == "exception":
            self.exceptions_taken += 1
        else:
            self.interrupts_taken += 1
        self.wake()
        self._event(kind, {"vector": vector, "error_code": error_code, "from": interrupted_at,
                           "handler": self.uc.reg_read(r.UC_X86_REG_RIP), "rsp": self.uc.reg_read(r.UC_X86_REG_RSP)})

    def stop_with_fault(self, kind: str, description: str, chain: list[str] | None = None) -> None:
        self.state = CoreState.STOPPED
        self.fault = self.fault_report(kind, description, chain or [])
        self.request_stop()
        self._event("fault", {"report": self.fault.one_line()})

    def fault_report(self, kind: str, description: str, chain: list[str]) -> FaultReport:
        registers = self.registers()
        rip = registers["rip"]
        try:
            instruction = self.disassemble(rip)
        except Exception:  # noqa: BLE001 - a report must never fail
            instruction = "<unreadable>"
        return FaultReport(self.index, self.apic_id, kind, description, rip, instruction,
                           self.platform.symbolize(rip), registers, chain)

    # ------------------------------------------------------------ hooks
    @_guarded
    def _on_exception(self, uc: Uc, vector: int, _data: object) -> None:
        error_code = self.internals.take_exception_error_code()
        source = Source.EXCEPTION
        rip = uc.reg_read(r.UC_X86_REG_RIP)
        if vector >= 32 or self._is_software_interrupt(rip, vector):
            source = Source.SOFTWARE
        pushes_error = source is Source.EXCEPTION and vector in x86.VECTORS_WITH_ERROR_CODE
        kind = "exception" if source is Source.EXCEPTION else "int"
        self._take(vector, source, error_code if pushes_error else None, kind)

    def _is_software_interrupt(self, rip: int, vector: int) -> bool:
        try:
            before = self.read_linear(self.code_linear(rip - 2), 2)
        except (TranslationFault, GuestFault):
            return False
        return before == bytes((0xCD, vector)) or (vector == x86.VECTOR_BP and before[1] == 0xCC) or (
            vector == x86.VECTOR_OF and before[1] == 0xCE)

    @_guarded
    def _on_invalid_instruction(self, uc: Uc, _data: object) -> bool:
        rip = uc.reg_read(r.UC_X86_REG_RIP)
        try:
            opcode = self.read_linear(self.code_linear(rip), 3)
        except (TranslationFault, GuestFault):
            opcode = b""
        if opcode in (_OPCODE_VMMCALL, _OPCODE_VMCALL) and self.platform.hypercall(self):
            return True
        self._take(x86.VECTOR_UD, Source.EXCEPTION, None, "exception")
        return True

    @_guarded
    def _on_in(self, uc: Uc, port: int, size: int, _data: object) -> int:
        return self.platform.port_in(self, port, size)

    @_guarded
    def _on_out(self, uc: Uc, port: int, size: int, value: int, _data: object) -> None:
        self.platform.port_out(self, port, size, value)

    @_guarded
    def _on_cpuid(self, uc: Uc, _data: object) -> int:
        leaf, subleaf = uc.reg_read(r.UC_X86_REG_EAX), uc.reg_read(r.UC_X86_REG_ECX)
        eax, ebx, ecx, edx = self.platform.cpuid(self, leaf, subleaf)
        uc.reg_write(r.UC_X86_REG_RAX, eax)
        uc.reg_write(r.UC_X86_REG_RBX, ebx)
        uc.reg_write(r.UC_X86_REG_RCX, ecx)
        uc.reg_write(r.UC_X86_REG_RDX, edx)
        return 1

    @_guarded
    def _lapic_read(self, uc: Uc, offset: int, size: int, _data: object) -> int:
        value = self.lapic.read(offset & ~3) if self.lapic else 0
        return (value >> (8 * (offset & 3))) & ((1 << (8 * size)) - 1)

    @_guarded
    def _lapic_write(self, uc: Uc, offset: int, size: int, value: int, _data: object) -> None:
        if self.lapic:
            self.lapic.write(offset & ~3, value)
            if self.lapic.irr and self.lapic.pending_vector() is not None:
                self.stop_after_instruction()  # so the interrupt is taken promptly

    @_guarded
    def _device_read(self, uc: Uc, offset: int, size: int, device: SharedDevice) -> int:
        value = device.mmio_read(offset & ~3)
        return (value >> (8 * (offset & 3))) & ((1 << (8 * size)) - 1)

    @_guarded
    def _device_write(self, uc: Uc, offset: int, size: int, value: int, device: SharedDevice) -> None:
        device.mmio_write(offset & ~3, value)

    @_guarded
    def _on_unmapped(self, uc: Uc, access: int, address: int, size: int, value: int, _data: object) -> bool:
        kind = "fetch from" if access == UC_MEM_FETCH_UNMAPPED else "write to" if access == UC_MEM_WRITE_UNMAPPED else "read of"
        if self.platform.memory_violation(self, kind, address, size):
            return True  # the platform mapped a scratch page: retry the access there
        if self.state is not CoreState.STOPPED:
            self.stop_with_fault("unmapped memory", f"{kind} guest-physical {address:#x} ({size} bytes), which no RAM "
                                 "or device backs")
        return False

    def map_scratch_page(self, physical: int, fill: int = 0xFF) -> None:
        """Back one page with throw-away memory for the current instruction
        only: a refused access completes without touching real memory (reads
        see ``fill``); the page is unmapped when the slice ends."""
        page = physical & ~(x86.PAGE_SIZE - 1)
        self.uc.mem_map(page, x86.PAGE_SIZE)
        self.uc.mem_write(page, bytes([fill]) * x86.PAGE_SIZE)
        self._scratch_pages.append(page)
        self.stop_after_instruction()

    @_guarded
    def _on_special_instruction(self, uc: Uc, address: int, size: int, _data: object) -> None:
        opcode = self.read_linear(address, 2)
        if opcode == b"\x0f\x31":  # RDTSC (SDM Vol. 2B)
            self._set_edx_eax(clock.tsc_at(self.now_ns()))
        elif opcode == b"\x0f\x32":  # RDMSR
            msr = uc.reg_read(r.UC_X86_REG_ECX)
            if msr == x86.MSR_IA32_APIC_BASE:
                self._set_edx_eax(self.apic_base_msr)
            elif msr == x86.MSR_IA32_TSC:
                self._set_edx_eax(clock.tsc_at(self.now_ns()))
            else:
                return
        elif opcode == b"\x0f\x30":  # WRMSR
            msr = uc.reg_read(r.UC_X86_REG_ECX)
            if msr != x86.MSR_IA32_APIC_BASE:
                return
            value = (uc.reg_read(r.UC_X86_REG_RDX) << 32) | (uc.reg_read(r.UC_X86_REG_RAX) & 0xFFFFFFFF)
            if value & x86.APIC_BASE_EXTD:  # x2APIC is not advertised: #GP (SDM Vol. 3A 10.12.1)
                self._take(x86.VECTOR_GP, Source.EXCEPTION, 0, "exception")
                return
            keep = x86.APIC_BASE_BSP
            self.apic_base_msr = (self.apic_base_msr & keep) | (value & ~keep & ~x86.APIC_BASE_EXTD)
        else:
            return
        uc.reg_write(r.UC_X86_REG_RIP, address + 2)

    def _set_edx_eax(self, value: int) -> None:
        self.uc.reg_write(r.UC_X86_REG_RAX, value & 0xFFFFFFFF)
        self.uc.reg_write(r.UC_X86_REG_RDX, (value >> 32) & 0xFFFFFFFF)

    # ------------------------------------------------------------ memory and registers
    def reg_read(self, reg: int):
        return self.uc.reg_read(reg)

    def reg_write(self, reg: int, value) -> None:
        self.uc.reg_write(reg, value)

    def set_cpl(self, cpl: int) -> None:
        self.internals.set_cpl(cpl)

    def efer(self) -> int:
        return self.uc.reg_read(r.UC_X86_REG_MSR, x86.MSR_EFER)

    def mode(self) -> Mode:
        return cpu_mode(self.uc.reg_read(r.UC_X86_REG_CR0), self.efer())

    def translate(self, linear: int, write: bool = False) -> int:
        uc = self.uc
        return translate(linear, uc.reg_read(r.UC_X86_REG_CR0), uc.reg_read(r.UC_X86_REG_CR3),
                         uc.reg_read(r.UC_X86_REG_CR4), self.efer(),
                         self.view.read_u64, write=write)

    def read_linear(self, address: int, size: int, write: bool = False) -> bytes:
        out = b""
        while size > 0:
            step = min(size, 0x1000 - (address & 0xFFF))
            out += self.view.read(self.translate(address, write), step)
            address, size = address + step, size - step
        return out

    def write_linear(self, address: int, data: bytes) -> None:
        while data:
            step = min(len(data), 0x1000 - (address & 0xFFF))
            self.view.write(self.translate(address, write=True), data[:step])
            address, data = address + step, data[step:]

    def registers(self) -> dict[str, int]:
        values = dict(zip(_REGISTER_NAMES, self.uc.reg_read_batch(_REGISTER_IDS)))
        values["efer"] = self.efer()
        return values

    def code_width(self) -> int:
        """16, 32 or 64: the operand width the current code segment decodes
        with, from its hidden descriptor (L and D/B bits, Intel SDM Vol. 3A 3.4.5)."""
        _, _, _, flags = self.internals.segment("cs")
        if self.efer() & x86.EFER_LMA and flags & x86.DESC_L:
            return 64
        return 32 if flags & x86.DESC_DB else 16

    def code_linear(self, offset: int) -> int:
        """The linear address of ``offset`` in the current code segment."""
        if self.code_width() == 64:
            return offset
        _, base, _, _ = self.internals.segment("cs")
        return (base + offset) & 0xFFFFFFFF

    def load_segment(self, reg: int, selector: int) -> None:
        """Load a segment register; in real mode the hidden base follows the
        selector (the CpuAccess protocol of osvemu.cpu.delivery)."""
        if self.mode() is Mode.REAL:
            self.internals.load_real_mode_segment(_SEGMENT_NAMES[reg], selector)
        else:
            self.uc.reg_write(reg, selector)

    def decode(self, offset: int, count: int = 1) -> list[capstone.CsInsn]:
        """Up to ``count`` instructions at ``offset`` in the current code
        segment, decoded in its operand width (TranslationFault or GuestFault
        when the code cannot be read)."""
        cs_mode = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}[self.code_width()]
        code = self.read_linear(self.code_linear(offset), 15 * count)
        return list(capstone.Cs(capstone.CS_ARCH_X86, cs_mode).disasm(code, offset, count))

    def disassemble(self, offset: int, count: int = 1) -> str:
        """``count`` instructions at ``offset`` in the current code segment, as text."""
        lines = [f"{i.mnemonic} {i.op_str}".strip() for i in self.decode(offset, count)]
        return "; ".join(lines) if lines else "<invalid>"

    def retired_now(self) -> int:
        """Instructions this core has retired, counting the slice in progress
        (read from a hook: the current instruction is not yet included)."""
        if self.counted and self.uc_running:
            return self.instructions + self.internals.retired_so_far() - 1
        return self.instructions

    def _event(self, kind: str, fields: dict) -> None:
        if self.on_event is not None:
            self.on_event(self, kind, fields)


_SEGMENT_NAMES = {r.UC_X86_REG_ES: "es", r.UC_X86_REG_CS: "cs", r.UC_X86_REG_SS: "ss", r.UC_X86_REG_DS: "ds",
                  r.UC_X86_REG_FS: "fs", r.UC_X86_REG_GS: "gs"}

__all__ = ["BOOT_GDT", "GENERAL_REGISTERS", "Core", "CoreState", "Platform"]
