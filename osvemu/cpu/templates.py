"""Saved CPU contexts for the architectural start states a core can enter.

A ``UC_MODE_64`` instance cannot be put back into real mode by register
writes (REFERENCE.md), so each start state is prepared once in an instance of
the right mode and moved into a core with ``context_restore``.
"""

from __future__ import annotations

import struct
from functools import cache

from unicorn import UC_ARCH_X86, UC_MODE_16, UC_MODE_32, Uc
from unicorn.unicorn import UcContext
from unicorn.x86_const import (
    UC_X86_REG_CR0,
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
    UC_X86_REG_TR,
)

from osvemu.cpu import x86
from osvemu.platform import layout

#: CR0 after INIT: CD | NW | ET (Intel SDM Vol. 3A 9.1.1, Table 9-1).
CR0_AFTER_INIT = 0x60000010
_DESCRIPTOR = struct.Struct("<HHBBBB")  # limit 15:0, base 15:0, base 23:16, access, flags|limit 19:16, base 31:24
assert _DESCRIPTOR.size == 8


def _descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    return _DESCRIPTOR.pack(limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                            (flags << 4) | ((limit >> 16) & 0xF), base >> 24)


#: Null, flat 32-bit code (0x08), flat 32-bit data (0x10), 32-bit TSS (0x18).
BOOT_GDT = b"".join((
    bytes(8),
    _descriptor(0, 0xFFFFF, 0x9B, 0xC),
    _descriptor(0, 0xFFFFF, 0x93, 0xC),
    _descriptor(layout.BOOT_TSS_ADDRESS, 0x67, 0x8B, 0x0),
))
BOOT_TSS = bytes(0x68)


@cache
def _real_mode_template() -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_16)
    uc.ctl_set_tcg_buffer_size(1 << 20)
    uc.reg_write(UC_X86_REG_CR0, CR0_AFTER_INIT)
    uc.reg_write(UC_X86_REG_EFLAGS, x86.RFLAGS_FIXED)
    uc.reg_write(UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))
    uc.reg_write(UC_X86_REG_GDTR, (0, 0, 0xFFFF, 0))
    return uc


def startup_context(vector: int) -> UcContext:
    """Real mode at CS = vector << 8, IP = 0: where a STARTUP IPI sends an AP
    (Intel SDM Vol. 3A 10.4.4.1; MP spec 1.4 B.4.2)."""
    uc = _real_mode_template()
    uc.reg_write(UC_X86_REG_CS, vector << 8)
    for segment in (UC_X86_REG_DS, UC_X86_REG_ES, UC_X86_REG_SS, UC_X86_REG_FS, UC_X86_REG_GS):
        uc.reg_write(segment, 0)
    uc.reg_write(UC_X86_REG_IP, 0)
    return uc.context_save()


@cache
def pvh_entry_context() -> UcContext:
    """32-bit protected mode, paging off, flat CS/DS/ES/SS/FS/GS, TR a 32-bit
    TSS, no IDT (Xen docs/misc/pvh.pandoc; REFERENCE.md "PVH direct boot")."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.ctl_set_tcg_buffer_size(1 << 20)
    uc.mem_map(layout.BOOT_GDT_ADDRESS, 0x1000)
    uc.mem_write(layout.BOOT_GDT_ADDRESS, BOOT_GDT)
    uc.reg_write(UC_X86_REG_GDTR, (0, layout.BOOT_GDT_ADDRESS, len(BOOT_GDT) - 1, 0))
    uc.reg_write(UC_X86_REG_CR0, x86.CR0_PE | x86.CR0_ET)
    for segment in (UC_X86_REG_DS, UC_X86_REG_ES, UC_X86_REG_SS, UC_X86_REG_FS, UC_X86_REG_GS):
        uc.reg_write(segment, layout.BOOT_DATA_SELECTOR)
    uc.reg_write(UC_X86_REG_CS, layout.BOOT_CODE_SELECTOR)
    uc.reg_write(UC_X86_REG_TR, (layout.BOOT_TSS_SELECTOR, layout.BOOT_TSS_ADDRESS, 0x67, 0x8B))
    uc.reg_write(UC_X86_REG_IDTR, (0, 0, 0, 0))
    uc.reg_write(UC_X86_REG_EFLAGS, x86.RFLAGS_FIXED)
    return uc.context_save()
