"""PVH boot data: ``hvm_start_info`` and its memory map (Xen
``docs/misc/pvh.pandoc``; ``xen/include/public/arch-x86/hvm/start_info.h``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as r
from unicorn.unicorn import UcContext

from osvemu.cpu import x86
from osvemu.cpu.templates import CR4_AFTER_INIT
from osvemu.platform import layout
from osvemu.platform.memmap import E820Type, MemoryMapEntry

XEN_HVM_START_MAGIC_VALUE = 0x336EC578
#: Version 1 adds the memory map fields Linux needs outside Xen.
START_INFO_VERSION = 1

#: struct hvm_start_info: magic, version, flags, nr_modules, modlist_paddr,
#: cmdline_paddr, rsdp_paddr, memmap_paddr, memmap_entries, reserved.
START_INFO = struct.Struct("<IIIIQQQQII")
assert START_INFO.size == 56

#: struct hvm_modlist_entry: paddr, size, cmdline_paddr, reserved.
MODULE_ENTRY = struct.Struct("<QQQQ")
assert MODULE_ENTRY.size == 32

#: struct hvm_memmap_table_entry: addr, size, type, reserved.
MEMMAP_ENTRY = struct.Struct("<QQII")
assert MEMMAP_ENTRY.size == 24


@dataclass(frozen=True)
class StartInfo:
    cmdline_paddr: int
    rsdp_paddr: int
    memmap_paddr: int
    memmap_entries: int
    magic: int = XEN_HVM_START_MAGIC_VALUE
    version: int = START_INFO_VERSION
    flags: int = 0
    nr_modules: int = 0
    modlist_paddr: int = 0

    def pack(self) -> bytes:
        return START_INFO.pack(
            self.magic, self.version, self.flags, self.nr_modules, self.modlist_paddr,
            self.cmdline_paddr, self.rsdp_paddr, self.memmap_paddr, self.memmap_entries, 0,
        )

    @classmethod
    def unpack(cls, data: bytes) -> StartInfo:
        magic, version, flags, nr_modules, modlist, cmdline, rsdp, memmap, entries, _ = START_INFO.unpack_from(data)
        return cls(cmdline, rsdp, memmap, entries, magic, version, flags, nr_modules, modlist)


def pack_memory_map(entries: list[MemoryMapEntry]) -> bytes:
    return b"".join(MEMMAP_ENTRY.pack(entry.base, entry.size, int(entry.type), 0) for entry in entries)


def unpack_memory_map(data: bytes, count: int) -> list[MemoryMapEntry]:
    entries = []
    for index in range(count):
        base, size, kind, _ = MEMMAP_ENTRY.unpack_from(data, index * MEMMAP_ENTRY.size)
        entries.append(MemoryMapEntry(base, size, E820Type(kind)))
    return entries


# --- The PVH entry state (Xen docs/misc/pvh.pandoc, "x86/HVM direct boot ABI") ---
#: A segment descriptor: limit 15:0, base 15:0, base 23:16, access, flags | limit 19:16, base 31:24
#: (Intel SDM Vol. 3A 3.4.5, Figure 3-8).
SEGMENT_DESCRIPTOR = struct.Struct("<HHBBBB")
assert SEGMENT_DESCRIPTOR.size == 8
#: A 32-bit TSS (SDM Vol. 3A 8.2.1): 104 bytes, all zero for the boot CPU.
TSS32_SIZE = 0x68
CODE_READ_ACCESS = 0x9B  # present, DPL 0, code, readable, accessed
DATA_WRITE_ACCESS = 0x93  # present, DPL 0, data, writable, accessed
TSS_BUSY_ACCESS = 0x8B  # present, busy 32-bit TSS
FLAT_32BIT_FLAGS = 0xC  # 4 KiB granularity, 32-bit default size
FLAT_LIMIT = 0xFFFFF


def _descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    return SEGMENT_DESCRIPTOR.pack(limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                                   (flags << 4) | ((limit >> 16) & 0xF), base >> 24)


#: Null, flat 32-bit code (0x08), flat 32-bit data (0x10), 32-bit TSS (0x18).
BOOT_GDT = b"".join((
    bytes(SEGMENT_DESCRIPTOR.size),
    _descriptor(0, FLAT_LIMIT, CODE_READ_ACCESS, FLAT_32BIT_FLAGS),
    _descriptor(0, FLAT_LIMIT, DATA_WRITE_ACCESS, FLAT_32BIT_FLAGS),
    _descriptor(layout.BOOT_TSS_ADDRESS, TSS32_SIZE - 1, TSS_BUSY_ACCESS, 0),
))
BOOT_TSS = bytes(TSS32_SIZE)


@cache
def pvh_entry_context() -> UcContext:
    """32-bit protected mode, paging off, flat CS/DS/ES/SS/FS/GS, TR a 32-bit
    TSS, no IDT; EBX and EIP are the loader's to set."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.ctl_set_tcg_buffer_size(1 << 20)
    uc.mem_map(layout.BOOT_GDT_ADDRESS, layout.PAGE_SIZE)
    uc.mem_write(layout.BOOT_GDT_ADDRESS, BOOT_GDT)
    uc.reg_write(r.UC_X86_REG_GDTR, (0, layout.BOOT_GDT_ADDRESS, len(BOOT_GDT) - 1, 0))
    uc.reg_write(r.UC_X86_REG_CR0, x86.CR0_PE | x86.CR0_ET)
    uc.reg_write(r.UC_X86_REG_CR4, CR4_AFTER_INIT)  # paging off, no extension enabled: as after INIT
    for segment in (r.UC_X86_REG_DS, r.UC_X86_REG_ES, r.UC_X86_REG_SS, r.UC_X86_REG_FS, r.UC_X86_REG_GS):
        uc.reg_write(segment, layout.BOOT_DATA_SELECTOR)
    uc.reg_write(r.UC_X86_REG_CS, layout.BOOT_CODE_SELECTOR)
    uc.reg_write(r.UC_X86_REG_TR, (layout.BOOT_TSS_SELECTOR, layout.BOOT_TSS_ADDRESS, TSS32_SIZE - 1,
                                   TSS_BUSY_ACCESS))
    uc.reg_write(r.UC_X86_REG_IDTR, (0, 0, 0, 0))
    uc.reg_write(r.UC_X86_REG_EFLAGS, x86.RFLAGS_FIXED)
    return uc.context_save()


def pvh_entry_registers(entry: int, start_info: int) -> dict[int, int]:
    """EIP = the PVH entry point, EBX = the start info's guest-physical address."""
    return {r.UC_X86_REG_RIP: entry, r.UC_X86_REG_RBX: start_info}


__all__ = [
    "BOOT_GDT",
    "BOOT_TSS",
    "MEMMAP_ENTRY",
    "MODULE_ENTRY",
    "START_INFO",
    "START_INFO_VERSION",
    "XEN_HVM_START_MAGIC_VALUE",
    "StartInfo",
    "pack_memory_map",
    "pvh_entry_context",
    "pvh_entry_registers",
    "unpack_memory_map",
]
