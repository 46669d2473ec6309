"""Saved CPU contexts for the architectural start states a core can enter.

A ``UC_MODE_64`` instance cannot be put back into real mode by register
writes (Unicorn's x86 ``reg_write`` updates a 64-bit instance's selectors
but not their real-mode bases), so the start state after a STARTUP IPI is
prepared once in a ``UC_MODE_16`` instance and moved into a core with
``context_restore``.
"""

from __future__ import annotations

from functools import cache

from unicorn import UC_ARCH_X86, UC_MODE_16, Uc
from unicorn.unicorn import UcContext
from unicorn.x86_const import (
    UC_X86_REG_CR0,
    UC_X86_REG_CR4,
    UC_X86_REG_CS,
    UC_X86_REG_DS,
    UC_X86_REG_EFLAGS,
    UC_X86_REG_ES,
    UC_X86_REG_FS,
    UC_X86_REG_GDTR,
    UC_X86_REG_GS,
    UC_X86_REG_IDTR,
    UC_X86_REG_IP,
    UC_X86_REG_SS,
)

from osvemu.cpu import x86

#: CR0 after INIT: CD | NW | ET; CR4 after INIT: 0 (Intel SDM Vol. 3A 9.1.1,
#: Table 9-1).  Unicorn's own start value of CR4 has OSFXSR, FSGSBASE and
#: OSXSAVE set, bits this processor does not all have.
CR0_AFTER_INIT = x86.CR0_CD | x86.CR0_NW | x86.CR0_ET
CR4_AFTER_INIT = 0


@cache
def _real_mode_template() -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_16)
    uc.ctl_set_tcg_buffer_size(1 << 20)
    uc.reg_write(UC_X86_REG_CR0, CR0_AFTER_INIT)
    uc.reg_write(UC_X86_REG_CR4, CR4_AFTER_INIT)
    uc.reg_write(UC_X86_REG_EFLAGS, x86.RFLAGS_FIXED)
    uc.reg_write(UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))
    uc.reg_write(UC_X86_REG_GDTR, (0, 0, 0xFFFF, 0))
    return uc


#: Real-mode paragraph: a segment's base is its selector times 16.
PARAGRAPH = 16


def startup_address(vector: int) -> int:
    """Where a STARTUP IPI with this 8-bit vector starts an AP: 000VV000h
    (Intel SDM Vol. 3A 10.4.4.1; MP spec 1.4 B.4.2).  Always below 1 MiB,
    in the kernel's own low memory."""
    return (vector & 0xFF) << 12


def startup_context(vector: int) -> UcContext:
    """Real mode at CS:IP = startup_address(vector):0, where a STARTUP IPI
    sends an AP."""
    uc = _real_mode_template()
    uc.reg_write(UC_X86_REG_CS, startup_address(vector) // PARAGRAPH)
    for segment in (UC_X86_REG_DS, UC_X86_REG_ES, UC_X86_REG_SS, UC_X86_REG_FS, UC_X86_REG_GS):
        uc.reg_write(segment, 0)
    uc.reg_write(UC_X86_REG_IP, 0)
    return uc.context_save()


__all__ = ["CR0_AFTER_INIT", "CR4_AFTER_INIT", "PARAGRAPH", "startup_address", "startup_context"]
