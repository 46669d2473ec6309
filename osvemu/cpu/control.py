"""Which CR0 and CR4 values a MOV to a control register may load: the
checks the processor makes before it writes (AMD APM Vol. 2 3.1.1 and
3.1.3; Vol. 3 MOV CRn; Intel SDM Vol. 2B MOV--Move to/from Control
Registers), which Unicorn 2.1.4 does not make (``helper_write_crN`` loads any
value).  A pure function of the value and the state it is loaded into.
"""

from __future__ import annotations

from dataclasses import dataclass

from osvemu.cpu import x86

CR0_RESERVED_HIGH = ~0xFFFF_FFFF  # bits 63:32 (MBZ)

#: CR4 bits (AMD APM Vol. 2 Figure 3-7) and the CPUID Fn0000_0001 feature
#: each needs: a bit whose feature the processor does not report is
#: reserved, and setting it is #GP.  PCE needs none.
CR4_FEATURES_EDX = {
    0: 1 << 1,  # VME: VME
    1: 1 << 1,  # PVI: VME
    2: 1 << 4,  # TSD: TSC
    3: 1 << 2,  # DE: DE
    4: 1 << 3,  # PSE: PSE
    5: 1 << 6,  # PAE: PAE
    6: 1 << 7,  # MCE: MCE
    7: 1 << 13,  # PGE: PGE
    9: 1 << 24,  # OSFXSR: FXSR
    10: 1 << 25,  # OSXMMEXCPT: SSE
}
CR4_FEATURES_ECX = {
    17: 1 << 17,  # PCIDE: PCID
    18: 1 << 26,  # OSXSAVE: XSAVE
}
CR4_PCE = 1 << 8


def supported_cr4(edx: int, ecx: int) -> int:
    """The CR4 bits a processor has whose CPUID Fn0000_0001 reports ``edx``
    and ``ecx`` (the machine reports no leaf 7: no UMIP, LA57, FSGSBASE,
    SMEP, SMAP or PKE)."""
    bits = CR4_PCE
    for bit, feature in CR4_FEATURES_EDX.items():
        if edx & feature:
            bits |= 1 << bit
    for bit, feature in CR4_FEATURES_ECX.items():
        if ecx & feature:
            bits |= 1 << bit
    return bits


@dataclass(frozen=True)
class ControlState:
    """What the checks read besides the value: the registers it replaces."""

    cr0: int
    cr4: int
    efer: int
    in_64bit_mode: bool  # CS.L with EFER.LMA
    supported_cr4: int  # supported_cr4() of the core's CPUID


def cr0_refusal(value: int, state: ControlState) -> str | None:
    """Why loading ``value`` into CR0 is #GP(0), or None."""
    if value & CR0_RESERVED_HIGH:
        return "bits 63:32 of CR0 are reserved"
    if value & x86.CR0_PG and not value & x86.CR0_PE:
        return "paging without protection (PG set, PE clear)"
    if value & x86.CR0_NW and not value & x86.CR0_CD:
        return "not-write-through without cache disable (NW set, CD clear)"
    if state.in_64bit_mode and not value & x86.CR0_PG:
        return "paging cleared in 64-bit mode"
    if value & x86.CR0_PG and not state.cr0 & x86.CR0_PG and state.efer & x86.EFER_LME \
            and not state.cr4 & x86.CR4_PAE:
        return "long mode enabled without PAE"
    return None


def cr4_refusal(value: int, state: ControlState) -> str | None:
    """Why loading ``value`` into CR4 is #GP(0), or None."""
    reserved = value & ~state.supported_cr4
    if reserved:
        return f"CR4 bits {reserved:#x} are reserved on this processor"
    if state.efer & x86.EFER_LMA and not value & x86.CR4_PAE:
        return "PAE cleared in long mode"
    return None


__all__ = ["ControlState", "cr0_refusal", "cr4_refusal", "supported_cr4"]
