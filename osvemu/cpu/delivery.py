"""Delivering interrupts and exceptions through the guest's IVT or IDT.

Unicorn delivers nothing itself (its UC_HOOK_INTR hook only reports the
vector, and an unhooked exception ends ``emu_start``): external interrupts, NMIs and
the guest's own exceptions all come here.  The frame layouts follow Intel SDM
Vol. 3A 6.12 (protected mode), 6.14 (IA-32e mode) and Vol. 3B 20.1.4 (real
mode); AMD APM Vol. 2 8.9 agrees.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from unicorn.x86_const import (
    UC_X86_REG_CR0,
    UC_X86_REG_CS,
    UC_X86_REG_GDTR,
    UC_X86_REG_IDTR,
    UC_X86_REG_RFLAGS,
    UC_X86_REG_RIP,
    UC_X86_REG_RSP,
    UC_X86_REG_SS,
    UC_X86_REG_TR,
)

from osvemu.cpu import x86
from osvemu.cpu.paging import TranslationFault


class Mode(Enum):
    REAL = "real"
    PROTECTED = "protected"
    LONG = "long"


class Source(Enum):
    """Why the vector is delivered; decides the return address and checks."""

    EXTERNAL = "interrupt"  # LAPIC interrupt or NMI, between instructions
    EXCEPTION = "exception"  # fault raised by an instruction
    SOFTWARE = "software"  # int n / int3 / into: gate DPL is checked


class DeliveryFault(Exception):
    """Delivery itself faulted with ``vector``; the caller delivers that or
    escalates (Intel SDM Vol. 3A 6.15, Table 6-5).  ``cr2`` is the linear
    address of a #PF."""

    def __init__(self, vector: int, error_code: int, why: str, cr2: int | None = None) -> None:
        super().__init__(why)
        self.vector = vector
        self.error_code = error_code
        self.cr2 = cr2


class CpuAccess(Protocol):
    def read_register(self, reg: int) -> object: ...
    def read_registers(self, registers: tuple[int, ...]) -> tuple: ...
    def write_register(self, reg: int, value: object) -> None: ...
    def efer(self) -> int: ...
    def set_cpl(self, cpl: int) -> None: ...
    def guest_read(self, address: int, size: int, write: bool = False) -> bytes: ...
    def guest_write(self, address: int, data: bytes) -> None: ...
    def load_segment(self, reg: int, selector: int) -> None: ...


@dataclass(frozen=True)
class Gate:
    offset: int
    selector: int
    gate_type: int
    dpl: int
    present: bool
    ist: int

    _LEGACY = struct.Struct("<HHBBH")  # offset 15:0, selector, reserved, type/attr, offset 31:16
    _LONG = struct.Struct("<HHBBHII")  # ... offset 63:32, reserved
    assert _LEGACY.size == 8 and _LONG.size == 16

    @classmethod
    def decode(cls, raw: bytes) -> Gate:
        if len(raw) == 16:
            lo, sel, ist, attr, mid, hi, _ = cls._LONG.unpack(raw)
            offset = lo | (mid << 16) | (hi << 32)
        else:
            lo, sel, ist, attr, mid = cls._LEGACY.unpack(raw)
            offset = lo | (mid << 16)
        return cls(offset, sel, attr & 0xF, (attr >> 5) & 3, bool(attr & 0x80), ist & 7)


def cpu_mode(cr0: int, efer: int) -> Mode:
    if not cr0 & x86.CR0_PE:
        return Mode.REAL
    return Mode.LONG if efer & x86.EFER_LMA else Mode.PROTECTED


def _handler_cpl(cpu: CpuAccess, selector: int, cpl: int, long_mode: bool) -> int:
    """The CPL the handler runs at, from its code segment descriptor in the
    GDT, checked as delivery checks it (SDM Vol. 3A 6.12.1.1, 6.14.1): a
    present code segment (64-bit in IA-32e mode: L = 1, D = 0) whose DPL is
    not above CPL; a conforming one keeps the CPL."""
    _, gdt_base, gdt_limit, _ = cpu.read_register(UC_X86_REG_GDTR)
    index = selector & ~7
    error = selector & ~3
    if selector & 4 or index + 7 > gdt_limit or index == 0:
        raise DeliveryFault(x86.VECTOR_GP, error, f"gate selector {selector:#x} is not a valid GDT code segment")
    descriptor = int.from_bytes(cpu.guest_read(gdt_base + index, 8), "little")
    if not descriptor & x86.DESCRIPTOR_S or not descriptor & x86.DESCRIPTOR_CODE:
        raise DeliveryFault(x86.VECTOR_GP, error, f"gate selector {selector:#x} is not a code segment")
    if long_mode and (not descriptor & x86.DESCRIPTOR_L or descriptor & x86.DESCRIPTOR_DB):
        raise DeliveryFault(x86.VECTOR_GP, error, f"gate code segment {selector:#x} is not a 64-bit code segment")
    dpl = (descriptor >> x86.DESCRIPTOR_DPL_SHIFT) & 3
    if dpl > cpl:
        raise DeliveryFault(x86.VECTOR_GP, error, f"gate code segment {selector:#x} has DPL {dpl} above CPL {cpl}")
    if not descriptor & x86.DESCRIPTOR_PRESENT:
        raise DeliveryFault(x86.VECTOR_NP, error, f"gate code segment {selector:#x} is not present")
    return cpl if descriptor & x86.DESCRIPTOR_CONFORMING else dpl


def deliver(cpu: CpuAccess, vector: int, source: Source, error_code: int | None = None) -> None:
    """Transfer control to the handler of ``vector`` as the processor would.

    The saved instruction pointer is the current RIP: the caller sets it to the
    faulting instruction (faults), the next one (traps, ``int n``) or the
    interrupted one (external interrupts) before calling.  A page fault on
    any access delivery makes (the IDT, GDT, TSS or stack) is a
    :class:`DeliveryFault` with vector 14 and its CR2.
    """
    try:
        _deliver(cpu, vector, source, error_code)
    except TranslationFault as fault:
        raise DeliveryFault(x86.VECTOR_PF, fault.error_code, f"page fault at {fault.linear:#x} delivering vector "
                                                             f"{vector:#x}", cr2=fault.linear) from None


#: What delivery reads of the interrupted context, in one call.
_CONTEXT_REGISTERS = (UC_X86_REG_CR0, UC_X86_REG_CS, UC_X86_REG_RFLAGS, UC_X86_REG_RIP, UC_X86_REG_RSP, UC_X86_REG_SS)


def _deliver(cpu: CpuAccess, vector: int, source: Source, error_code: int | None) -> None:
    cr0, cs, rflags, rip, rsp, ss = cpu.read_registers(_CONTEXT_REGISTERS)
    mode = cpu_mode(cr0, cpu.efer())
    if mode is Mode.REAL:
        _deliver_real(cpu, vector)
        return
    _, idt_base, idt_limit, _ = cpu.read_register(UC_X86_REG_IDTR)
    size = 16 if mode is Mode.LONG else 8
    selector_error = vector * 8 + 2  # IDT bit set (SDM Vol. 3A 6.13)
    if vector * size + size - 1 > idt_limit:
        raise DeliveryFault(x86.VECTOR_GP, selector_error, f"vector {vector:#x} is beyond the IDT limit {idt_limit:#x}")
    gate = Gate.decode(cpu.guest_read(idt_base + vector * size, size))
    cpl = cs & 3
    if not gate.present:
        raise DeliveryFault(x86.VECTOR_NP, selector_error, f"IDT gate for vector {vector:#x} is not present")
    if gate.gate_type == x86.GATE_TASK:
        raise DeliveryFault(x86.VECTOR_GP, selector_error, f"vector {vector:#x} uses a task gate, which osvemu does not support")
    if gate.gate_type not in (x86.GATE_INTERRUPT, x86.GATE_TRAP) and not (
        mode is Mode.PROTECTED and gate.gate_type in (x86.GATE_INTERRUPT_16, x86.GATE_TRAP_16)
    ):
        raise DeliveryFault(x86.VECTOR_GP, selector_error, f"IDT entry for vector {vector:#x} has invalid type {gate.gate_type:#x}")
    if source is Source.SOFTWARE and gate.dpl < cpl:
        raise DeliveryFault(x86.VECTOR_GP, selector_error, f"int {vector:#x} from CPL {cpl} through a DPL {gate.dpl} gate")
    new_cpl = _handler_cpl(cpu, gate.selector, cpl, mode is Mode.LONG)
    has_error = error_code is not None
    if mode is Mode.LONG:
        new_ss, new_rsp = _push_long(cpu, gate, cpl, new_cpl, ss, rsp, rflags, cs, rip, error_code)
    else:
        new_ss, new_rsp = _push_protected(cpu, gate, cpl, new_cpl, ss, rsp, rflags, cs, rip, error_code if has_error else None)
    cleared = x86.RFLAGS_TF | x86.RFLAGS_NT | x86.RFLAGS_RF | x86.RFLAGS_VM
    if gate.gate_type in (x86.GATE_INTERRUPT, x86.GATE_INTERRUPT_16):
        cleared |= x86.RFLAGS_IF
    if new_ss is not None:
        cpu.set_cpl(new_cpl)  # before the segment loads, whose checks use CPL
        cpu.write_register(UC_X86_REG_SS, new_ss)
    if gate.selector != cs:
        cpu.write_register(UC_X86_REG_CS, gate.selector)
    cpu.write_register(UC_X86_REG_RSP, new_rsp)
    cpu.write_register(UC_X86_REG_RFLAGS, rflags & ~cleared)
    cpu.write_register(UC_X86_REG_RIP, gate.offset)


def _push_long(cpu: CpuAccess, gate: Gate, cpl: int, new_cpl: int, ss: int, rsp: int, rflags: int,
               cs: int, rip: int, error_code: int | None) -> tuple[int | None, int]:
    """IA-32e frame: SS, RSP, RFLAGS, CS, RIP [, error code], 8 bytes each,
    on a 16-byte aligned stack taken from the TSS on a privilege change or
    from an IST slot (SDM Vol. 3A 6.14.2-6.14.5)."""
    new_ss = None
    stack = rsp
    if gate.ist or new_cpl < cpl:
        _, tss_base, _, _ = cpu.read_register(UC_X86_REG_TR)
        field = x86.TSS64_IST1 + 8 * (gate.ist - 1) if gate.ist else x86.TSS64_RSP0 + 8 * new_cpl
        stack = int.from_bytes(cpu.guest_read(tss_base + field, 8), "little")
        if new_cpl < cpl:
            new_ss = new_cpl  # a null selector with RPL = new CPL
    stack &= ~0xF
    values = [ss, rsp, rflags, cs, rip] + ([error_code] if error_code is not None else [])
    frame = struct.pack(f"<{len(values)}Q", *reversed(values))
    stack -= len(frame)
    cpu.guest_write(stack, frame)
    return new_ss, stack


def _push_protected(cpu: CpuAccess, gate: Gate, cpl: int, new_cpl: int, ss: int, rsp: int, rflags: int,
                    cs: int, rip: int, error_code: int | None) -> tuple[int | None, int]:
    """Protected-mode frame: [SS, ESP,] EFLAGS, CS, EIP [, error code], 4 bytes
    each for 32-bit gates and 2 for 16-bit gates (SDM Vol. 3A 6.12.1, Figure 6-4)."""
    width = 4 if gate.gate_type in (x86.GATE_INTERRUPT, x86.GATE_TRAP) else 2
    fmt = "<I" if width == 4 else "<H"
    mask = (1 << (8 * width)) - 1
    values = [rflags, cs, rip]
    new_ss = None
    stack = rsp & 0xFFFFFFFF
    if new_cpl < cpl:
        _, tss_base, _, _ = cpu.read_register(UC_X86_REG_TR)
        stack = int.from_bytes(cpu.guest_read(tss_base + x86.TSS32_ESP0 + 8 * new_cpl, 4), "little")
        new_ss = int.from_bytes(cpu.guest_read(tss_base + x86.TSS32_SS0 + 8 * new_cpl, 2), "little")
        values = [ss, rsp] + values
    if error_code is not None:
        values.append(error_code)
    frame = b"".join(struct.pack(fmt, v & mask) for v in reversed(values))
    stack = (stack - len(frame)) & 0xFFFFFFFF
    cpu.guest_write(stack, frame)
    return new_ss, stack


def _deliver_real(cpu: CpuAccess, vector: int) -> None:
    """Real-address mode: push FLAGS, CS, IP and jump through the IVT
    (SDM Vol. 3B 20.1.4)."""
    _, ivt_base, ivt_limit, _ = cpu.read_register(UC_X86_REG_IDTR)
    if vector * 4 + 3 > ivt_limit:
        raise DeliveryFault(x86.VECTOR_GP, 0, f"vector {vector:#x} is beyond the IVT limit")
    ip, segment = struct.unpack("<HH", cpu.guest_read(ivt_base + vector * 4, 4))
    cs, rflags = cpu.read_register(UC_X86_REG_CS), cpu.read_register(UC_X86_REG_RFLAGS)
    rip, sp, ss = cpu.read_register(UC_X86_REG_RIP), cpu.read_register(UC_X86_REG_RSP), cpu.read_register(UC_X86_REG_SS)
    sp = (sp - 6) & 0xFFFF
    cpu.guest_write((ss << 4) + sp, struct.pack("<HHH", rip & 0xFFFF, cs, rflags & 0xFFFF))
    cpu.write_register(UC_X86_REG_RSP, sp)
    cpu.write_register(UC_X86_REG_RFLAGS, rflags & ~(x86.RFLAGS_IF | x86.RFLAGS_TF | x86.RFLAGS_AC))
    cpu.load_segment(UC_X86_REG_CS, segment)
    cpu.write_register(UC_X86_REG_RIP, ip)
