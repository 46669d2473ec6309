"""The model-specific registers of the emulated AMD Family 10h core: one
table saying, for every MSR a guest may read or write, what it answers.

Every RDMSR and WRMSR is intercepted (:mod:`osvemu.cpu.ucinternals`), so
this table is the whole truth: an MSR not listed raises #GP, as an
unimplemented MSR does on the processor (AMD APM Vol. 2 A.1; BKDG for
Family 10h #31116, 2.14 "MSR Registers": "access to an unimplemented MSR
causes a #GP").  Kinds:

* ``QEMU``: architectural state Unicorn's CPU keeps and uses (EFER, the
  SYSCALL and SYSENTER targets, the segment bases, PAT): read and
  written through Unicorn, reserved bits #GP.
* ``APIC_BASE``, ``TSC``: modelled by osvemu (the core's APIC base register,
  its virtual time stamp counter).
* ``CONSTANT``: a read-only value of a Family 10h part; writes are ignored
  where the BKDG calls the register writable but osvemu models no effect
  (``write_ignored``), else they #GP.
* ``STORAGE``: read back what was written (configuration registers whose
  effect -- cache, prefetch or errata controls -- has no meaning here).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from osvemu.cpu import x86


class MsrKind(Enum):
    QEMU = "architectural state kept by Unicorn"
    APIC_BASE = "the local APIC base register"
    TSC = "the virtual time stamp counter"
    CONSTANT = "a fixed value"
    STORAGE = "storage"


@dataclass(frozen=True)
class MsrSpec:
    number: int
    name: str
    kind: MsrKind
    value: int = 0  # CONSTANT: the value read; STORAGE: the reset value
    writable_mask: int = 0xFFFF_FFFF_FFFF_FFFF  # QEMU/STORAGE: bits a write may set (others #GP)
    write_ignored: bool = False  # CONSTANT: a write is accepted and has no effect


#: EFER bits a guest may set: SCE, LME, NXE, FFXSR (AMD APM Vol. 2 3.1.7).
#: LMA is the processor's; SVME is reserved here (SVM is not advertised).
EFER_WRITABLE = (1 << 0) | x86.EFER_LME | x86.EFER_LMA | x86.EFER_NXE | (1 << 14)
#: HWCR (BKDG #31116 MSRC001_0015): TscFreqSel, bit 24, reads 1: the TSC
#: runs at the P0 frequency, whatever the P-state.
HWCR_TSC_FREQ_SEL = 1 << 24
#: The microcode patch level of a Family 10h revision D part.
PATCH_LEVEL = 0x010000DC
TSC_AUX = 0xC0000103
#: MSRs holding a linear address: a non-canonical write raises #GP (AMD APM
#: Vol. 2 A.1 and 6.1.1).
ADDRESS_MSRS = frozenset({"FS_BASE", "GS_BASE", "KERNEL_GS_BASE", "LSTAR", "CSTAR"})

MSRS: tuple[MsrSpec, ...] = (
    MsrSpec(x86.MSR_IA32_TSC, "TSC", MsrKind.TSC),
    MsrSpec(x86.MSR_IA32_APIC_BASE, "APIC_BASE", MsrKind.APIC_BASE),
    MsrSpec(0x8B, "PATCH_LEVEL", MsrKind.CONSTANT, PATCH_LEVEL, write_ignored=True),
    MsrSpec(0x174, "SYSENTER_CS", MsrKind.QEMU, writable_mask=0xFFFF),
    MsrSpec(0x175, "SYSENTER_ESP", MsrKind.QEMU),
    MsrSpec(0x176, "SYSENTER_EIP", MsrKind.QEMU),
    MsrSpec(0x277, "PAT", MsrKind.QEMU, 0x0007040600070406, writable_mask=0x0707070707070707),
    MsrSpec(x86.MSR_EFER, "EFER", MsrKind.QEMU, writable_mask=EFER_WRITABLE),
    MsrSpec(x86.MSR_STAR, "STAR", MsrKind.QEMU),
    MsrSpec(x86.MSR_LSTAR, "LSTAR", MsrKind.QEMU),
    MsrSpec(x86.MSR_CSTAR, "CSTAR", MsrKind.QEMU),
    MsrSpec(x86.MSR_SFMASK, "SFMASK", MsrKind.QEMU, writable_mask=0xFFFF_FFFF),
    MsrSpec(0xC0000100, "FS_BASE", MsrKind.QEMU),
    MsrSpec(0xC0000101, "GS_BASE", MsrKind.QEMU),
    MsrSpec(0xC0000102, "KERNEL_GS_BASE", MsrKind.QEMU),
    MsrSpec(TSC_AUX, "TSC_AUX", MsrKind.STORAGE, writable_mask=0xFFFF_FFFF),  # RDTSCP's ECX
    MsrSpec(0xC0010015, "HWCR", MsrKind.CONSTANT, HWCR_TSC_FREQ_SEL, write_ignored=True),
    MsrSpec(0xC001001F, "NB_CFG", MsrKind.STORAGE),
    # Interrupt Pending Message (BKDG MSRC001_0055): C1E on CMP halt and SMI
    # on CMP halt disabled at reset, so Linux's erratum-400 idle path stays off.
    MsrSpec(0xC0010055, "INT_PENDING_MSG", MsrKind.STORAGE),
    MsrSpec(0xC0011029, "DE_CFG", MsrKind.STORAGE),
    MsrSpec(0xC001102A, "BU_CFG2", MsrKind.STORAGE),
)
BY_NUMBER: dict[int, MsrSpec] = {spec.number: spec for spec in MSRS}
assert len(BY_NUMBER) == len(MSRS)


def lookup(number: int) -> MsrSpec | None:
    """The MSR's entry, or None: it raises #GP."""
    return BY_NUMBER.get(number & 0xFFFF_FFFF)


def holds_address(spec: MsrSpec) -> bool:
    return spec.name in ADDRESS_MSRS


__all__ = ["BY_NUMBER", "MSRS", "TSC_AUX", "MsrKind", "MsrSpec", "holds_address", "lookup"]
