"""PVH boot data: ``hvm_start_info`` and its memory map (Xen
``docs/misc/pvh.pandoc``; ``xen/include/public/arch-x86/hvm/start_info.h``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from osvemu.platform.memmap import E820Type, MemoryMapEntry

XEN_HVM_START_MAGIC_VALUE = 0x336EC578
#: Version 1 adds the memory map fields Linux needs outside Xen.
START_INFO_VERSION = 1

#: struct hvm_start_info: magic, version, flags, nr_modules, modlist_paddr,
#: cmdline_paddr, rsdp_paddr, memmap_paddr, memmap_entries, reserved.
START_INFO = struct.Struct("<IIIIQQQQII")
assert START_INFO.size == 56

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


__all__ = [
    "MEMMAP_ENTRY",
    "START_INFO",
    "START_INFO_VERSION",
    "XEN_HVM_START_MAGIC_VALUE",
    "StartInfo",
    "pack_memory_map",
    "unpack_memory_map",
]
