"""The instructions osvemu emulates itself: RDMSR, WRMSR and writes of CR0
and CR4 (arriving as SVM intercepts wherever they execute,
:mod:`osvemu.cpu.ucinternals`; the control-register rules are
:mod:`osvemu.cpu.control`), RDTSC and
RDTSCP (through their instruction hooks) and SYSCALL (through Unicorn's
instruction hook, which leaves the instruction undone).  Each leaves the core as the instruction would:
registers written and RIP past it, or an exception delivered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import x86_const as r

from osvemu import clock
from osvemu.cpu import control, msr, x86
from osvemu.cpu.delivery import Source
from osvemu.cpu.linear import canonical
from osvemu.cpu.msr import MsrKind
from osvemu.cpu.paging import TranslationFault
from osvemu.cpu.ucinternals import (
    SVM_EXIT_MSR,
    SVM_EXIT_SHUTDOWN,
    SVM_EXIT_WRITE_CR0,
)
from osvemu.errors import GuestFault

if TYPE_CHECKING:
    from osvemu.cpu.core import Core

#: Legacy and REX prefixes (Intel SDM Vol. 2A 2.1.1, 2.2.1): skipped to find
#: an instruction's opcode and length.
PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3} | set(range(0x40, 0x50)))
MAX_INSTRUCTION_BYTES = 15
#: SYSCALL's fixed segment attributes (AMD APM Vol. 3 SYSCALL): flat, DPL 0,
#: accessed; CS readable code (64-bit in long mode), SS writable data, 32-bit.
SYSCALL_CS_FLAGS = x86.DESC_G | x86.DESC_P | x86.DESC_S | x86.DESC_CODE | x86.DESC_R | x86.DESC_A
SYSCALL_SS_FLAGS = x86.DESC_G | x86.DESC_DB | x86.DESC_P | x86.DESC_S | x86.DESC_W | x86.DESC_A
MASK_64 = 0xFFFF_FFFF_FFFF_FFFF


def intercepted(core: Core, exit_code: int, info: int) -> None:
    """An SVM intercept (AMD APM Vol. 2 Appendix C): RIP is at the instruction."""
    if exit_code == SVM_EXIT_MSR:
        (write_msr if info else read_msr)(core)
    elif SVM_EXIT_WRITE_CR0 <= exit_code < SVM_EXIT_WRITE_CR0 + 16:
        write_control_register(core, exit_code - SVM_EXIT_WRITE_CR0)
    elif exit_code == SVM_EXIT_SHUTDOWN:
        core.stop_with_fault("triple fault", "QEMU raised a shutdown (an exception while delivering #DF)")
    else:
        core.stop_with_fault("emulation error", f"unexpected SVM intercept {exit_code:#x}")


def _prefix_count(core: Core, rip: int) -> int:
    """How many legacy and REX prefix bytes precede the opcode at ``rip``."""
    try:
        code = core.linear.read_code(rip, MAX_INSTRUCTION_BYTES)
    except (TranslationFault, GuestFault):
        code = core.linear.read_code(rip, 3)  # the instruction ran, so its own bytes translate
    prefixes = 0
    while prefixes < len(code) and code[prefixes] in PREFIXES:
        prefixes += 1
    return prefixes


def _finish(core: Core, rip: int, length: int) -> None:
    core.write_register(r.UC_X86_REG_RIP, rip + length)


def _general_protection(core: Core) -> None:
    core.take(x86.VECTOR_GP, Source.EXCEPTION, 0)


# ------------------------------------------------------------------ control registers
OPCODE_MOV_TO_CR = b"\x0f\x22"  # MOV CRn, r (AMD APM Vol. 3)
OPCODE_CLTS = b"\x0f\x06"
OPCODE_GROUP_7 = b"\x0f\x01"  # /6 is LMSW
LMSW_REG = 6
MODRM_REGISTER_FORM = 0b11
REX_R, REX_B = 1 << 2, 1 << 0
#: LMSW loads CR0 bits 3:0 but cannot clear PE (AMD APM Vol. 3 LMSW).
LMSW_BITS = 0xF
_CONTROL_REGISTERS = {0: r.UC_X86_REG_CR0, 4: r.UC_X86_REG_CR4}


def write_control_register(core: Core, number: int) -> None:
    """A write of CR0 or CR4 (MOV CRn, CLTS or LMSW), checked as the
    processor checks it (:mod:`osvemu.cpu.control`): #GP(0), or the write
    done and RIP past the instruction."""
    rip = core.rip
    prefixes = _prefix_count(core, rip)
    code = core.linear.read_code(rip, prefixes + 3)
    rex = code[prefixes - 1] if prefixes and 0x40 <= code[prefixes - 1] <= 0x4F else 0
    opcode, modrm = code[prefixes:prefixes + 2], code[prefixes + 2] if len(code) > prefixes + 2 else 0
    current = core.read_register(_CONTROL_REGISTERS[number])  # only CR0 and CR4 writes are intercepted
    if opcode == OPCODE_MOV_TO_CR:
        source = (modrm & 7) | (8 if rex & REX_B else 0)
        value, length = core.internals.general_register(source), prefixes + 3
        if core.code_width() != 64:
            value &= 0xFFFF_FFFF
    elif opcode == OPCODE_CLTS and number == 0:
        value, length = current & ~x86.CR0_TS, prefixes + 2
    elif opcode == OPCODE_GROUP_7 and modrm >> 3 & 7 == LMSW_REG and number == 0:
        instruction = core.decode(rip, operands=True)[0]
        if modrm >> 6 == MODRM_REGISTER_FORM:
            word = core.internals.general_register((modrm & 7) | (8 if rex & REX_B else 0))
        else:
            word = int.from_bytes(core.linear.read(_effective_address(core, instruction), 2), "little")
        value, length = (current & ~(LMSW_BITS & ~x86.CR0_PE)) | (word & LMSW_BITS), instruction.size
    else:
        core.stop_with_fault("emulation error", f"a write of CR{number} by an instruction osvemu does not decode "
                                                f"({code.hex()})")
        return
    state = control.ControlState(core.read_register(r.UC_X86_REG_CR0), core.read_register(r.UC_X86_REG_CR4),
                                 core.efer(), core.code_width() == 64, _supported_cr4(core))
    refusal = (control.cr0_refusal if number == 0 else control.cr4_refusal)(value, state)
    core.special_counts[f"mov cr{number}" + (" #GP" if refusal else "")] += 1
    if refusal is not None:
        _general_protection(core)
        return
    with core.internals.intercepts_suspended():
        core.write_register(_CONTROL_REGISTERS[number], value)
    _finish(core, rip, length)


def _supported_cr4(core: Core) -> int:
    _, _, ecx, edx = core.platform.cpuid(core, 1, 0)
    return control.supported_cr4(edx, ecx)


def _effective_address(core: Core, instruction) -> int:
    """The linear address of a memory operand (capstone's decoding): base +
    index x scale + displacement, RIP-relative from the next instruction,
    plus an FS or GS base."""
    from capstone.x86 import X86_OP_MEM, X86_REG_FS, X86_REG_GS, X86_REG_INVALID, X86_REG_RIP

    operand = next(op for op in instruction.operands if op.type == X86_OP_MEM)
    address = operand.mem.disp
    for register, scale in ((operand.mem.base, 1), (operand.mem.index, operand.mem.scale)):
        if register == X86_REG_RIP:
            address += instruction.address + instruction.size
        elif register != X86_REG_INVALID:
            address += scale * core.read_register(getattr(r, f"UC_X86_REG_{instruction.reg_name(register).upper()}"))
    if operand.mem.segment in (X86_REG_FS, X86_REG_GS):
        address += core.read_register(r.UC_X86_REG_FS_BASE if operand.mem.segment == X86_REG_FS else
                                      r.UC_X86_REG_GS_BASE)
    return address & MASK_64


# ------------------------------------------------------------------ time stamp counter
def tsc(core: Core) -> int:
    """The core's time stamp counter now (AMD APM Vol. 2 13.2.4): virtual
    time at the TSC rate, plus what a write to the TSC MSR moved it by."""
    return (clock.tsc_at(core.clock.now_ns()) + core.tsc_adjust) & MASK_64


def read_tsc(core: Core, with_aux: bool = False) -> None:
    """RDTSC, or RDTSCP (``with_aux``: ECX = TSC_AUX), from its instruction
    hook: Unicorn checked CPL against CR4.TSD and moves RIP past it."""
    core.internals.set_edx_eax(tsc(core))
    if with_aux:
        core.internals.set_ecx(core.msr_storage.get(msr.TSC_AUX, 0))
    core.special_counts["rdtscp" if with_aux else "rdtsc"] += 1


# ------------------------------------------------------------------ MSRs
def read_msr(core: Core) -> None:
    """RDMSR at CPL 0 (Unicorn raised #GP at CPL > 0 itself)."""
    rip = core.rip
    number = core.read_register(r.UC_X86_REG_RCX) & 0xFFFFFFFF
    spec = msr.lookup(number)
    core.msr_counts[(number, "read" if spec else "read #GP")] += 1
    if spec is None:
        _general_protection(core)
        return
    if spec.kind is MsrKind.TSC:
        value = tsc(core)
    elif spec.kind is MsrKind.APIC_BASE:
        value = core.apic_base_msr
    elif spec.kind is MsrKind.CONSTANT:
        value = spec.value
    elif spec.kind is MsrKind.STORAGE:
        value = core.msr_storage.get(number, spec.value)
    else:
        value = core.internals.msr_read(number)
    core.internals.set_edx_eax(value)
    prefixes = _prefix_count(core, rip)
    _finish(core, rip, prefixes + 2)


def write_msr(core: Core) -> None:
    """WRMSR at CPL 0: the value in EDX:EAX."""
    rip = core.rip
    number = core.read_register(r.UC_X86_REG_RCX) & 0xFFFFFFFF
    value = ((core.read_register(r.UC_X86_REG_RDX) & 0xFFFFFFFF) << 32) | (core.read_register(r.UC_X86_REG_RAX)
                                                                       & 0xFFFFFFFF)
    spec = msr.lookup(number)
    if spec is None or not _write(core, spec, value):
        core.msr_counts[(number, "write #GP")] += 1
        _general_protection(core)
        return
    core.msr_counts[(number, "write")] += 1
    prefixes = _prefix_count(core, rip)
    _finish(core, rip, prefixes + 2)


def _write(core: Core, spec: msr.MsrSpec, value: int) -> bool:
    """Carry out a write; False if it raises #GP."""
    if spec.kind is MsrKind.TSC:
        core.tsc_adjust = value - clock.tsc_at(core.clock.now_ns())
        return True
    if spec.kind is MsrKind.APIC_BASE:
        if value & x86.APIC_BASE_EXTD:  # x2APIC is not advertised (Intel SDM Vol. 3A 10.12.1)
            return False
        keep = x86.APIC_BASE_BSP
        core.apic_base_msr = (core.apic_base_msr & keep) | (value & ~keep)
        return True
    if spec.kind is MsrKind.CONSTANT:
        return spec.write_ignored
    if value & ~spec.writable_mask:
        return False
    if msr.holds_address(spec) and not canonical(value):
        return False
    if spec.kind is MsrKind.STORAGE:
        core.msr_storage[spec.number] = value
        return True
    if spec.number == x86.MSR_EFER and not _efer_change_allowed(core, value):
        return False
    core.internals.msr_write(spec.number, value)
    return True


def _efer_change_allowed(core: Core, value: int) -> bool:
    """EFER.LME may not change while paging is on (AMD APM Vol. 2 14.6.1)."""
    old = core.efer()
    paging = core.read_register(r.UC_X86_REG_CR0) & x86.CR0_PG
    return not (paging and (old ^ value) & x86.EFER_LME)


# ------------------------------------------------------------------ SYSCALL
def syscall(core: Core) -> None:
    """SYSCALL (AMD APM Vol. 3; Vol. 2 6.1.1).  RIP is at the instruction
    and Unicorn adds its length once this returns (``helper_syscall``,
    ``qemu/target/i386/seg_helper.c``), so the target is written less it."""
    uc = core.uc
    rip = core.rip
    prefixes = _prefix_count(core, rip)
    length = prefixes + 2
    efer = core.efer()
    if not efer & x86.EFER_SCE or not uc.reg_read(r.UC_X86_REG_CR0) & x86.CR0_PE:
        core.take(x86.VECTOR_UD, Source.EXCEPTION, None)
        uc.reg_write(r.UC_X86_REG_RIP, (core.rip - length) & MASK_64)
        return
    star, lstar, cstar, sfmask = (core.internals.msr_read(number) for number in
                                  (x86.MSR_STAR, x86.MSR_LSTAR, x86.MSR_CSTAR, x86.MSR_SFMASK))
    rflags = uc.reg_read(r.UC_X86_REG_RFLAGS)
    selector = (star >> 32) & 0xFFFC
    next_rip = (rip + length) & MASK_64
    core.special_counts["syscall"] += 1
    if efer & x86.EFER_LMA:
        uc.reg_write(r.UC_X86_REG_RCX, next_rip)
        uc.reg_write(r.UC_X86_REG_R11, rflags & ~x86.RFLAGS_RF)
        target = lstar if core.code_width() == 64 else cstar
        core.internals.load_flat_segments(selector, SYSCALL_CS_FLAGS | x86.DESC_L, selector + 8, SYSCALL_SS_FLAGS)
        uc.reg_write(r.UC_X86_REG_RFLAGS, rflags & ~sfmask & ~x86.RFLAGS_RF | x86.RFLAGS_FIXED)
    else:
        uc.reg_write(r.UC_X86_REG_RCX, next_rip & 0xFFFFFFFF)
        target = star & 0xFFFFFFFF
        core.internals.load_flat_segments(selector, SYSCALL_CS_FLAGS | x86.DESC_DB, selector + 8, SYSCALL_SS_FLAGS)
        uc.reg_write(r.UC_X86_REG_RFLAGS,
                     rflags & ~(x86.RFLAGS_IF | x86.RFLAGS_VM | x86.RFLAGS_RF) | x86.RFLAGS_FIXED)
    uc.reg_write(r.UC_X86_REG_RIP, (target - length) & MASK_64)


__all__ = ["intercepted", "read_msr", "read_tsc", "syscall", "tsc", "write_control_register", "write_msr"]
