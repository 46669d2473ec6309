"""The e820-typed guest-physical memory map (ACPI 6.4 15 "System Address
Map Interfaces", Table 15.1; the types PVH's ``hvm_memmap_table_entry`` uses).

A map is built from the RAM a kernel may use plus the firmware and device
areas that sit inside or beside it; RAM overlapped by a firmware area is
carved out so every byte has exactly one type.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from osvemu.platform import layout


class E820Type(IntEnum):
    """ACPI 6.4 Table 15.1 address range types."""

    RAM = 1
    RESERVED = 2
    ACPI = 3
    NVS = 4
    UNUSABLE = 5
    DISABLED = 6
    PERSISTENT = 7


@dataclass(frozen=True)
class MemoryMapEntry:
    base: int
    size: int
    type: E820Type

    @property
    def end(self) -> int:
        return self.base + self.size

    def describe(self) -> str:
        """Linux's boot-time format: ``[mem 0x...-0x...] usable``."""
        name = {E820Type.RAM: "usable", E820Type.ACPI: "ACPI data"}.get(self.type, self.type.name.lower())
        return f"[mem {self.base:#018x}-{self.end - 1:#018x}] {name}"


class Area(NamedTuple):
    """A range of the guest-physical layout that is not free RAM."""

    base: int
    size: int
    type: E820Type  # what the memory map calls it
    name: str  # what an error message calls it


#: Firmware areas of the PC layout: no image segment may overlap them.
FIRMWARE_AREAS: tuple[Area, ...] = (
    Area(layout.BOOT_INFO_BASE, layout.CONVENTIONAL_END - layout.BOOT_INFO_BASE, E820Type.RESERVED,
         "boot info and EBDA"),
    Area(layout.ACPI_TABLES_BASE, layout.ACPI_TABLES_SIZE, E820Type.ACPI, "ACPI tables"),
    Area(layout.BIOS_BASE, layout.BIOS_SIZE, E820Type.RESERVED, "BIOS area (RSDP, MP tables, boot GDT)"),
)

#: Device pages in the 32-bit hole (IOAPIC and local APIC), reserved so a
#: kernel never treats them as free address space.
DEVICE_AREAS: tuple[Area, ...] = (
    Area(layout.IOAPIC_BASE, layout.PAGE_SIZE, E820Type.RESERVED, "IOAPIC"),
    Area(layout.LAPIC_BASE, layout.PAGE_SIZE, E820Type.RESERVED, "local APIC"),
)


def build_memory_map(ram: list[tuple[int, int]], areas: tuple[Area, ...] = FIRMWARE_AREAS + DEVICE_AREAS,
                     ) -> list[MemoryMapEntry]:
    """RAM ranges minus ``areas``, plus ``areas``, sorted and with adjacent
    entries of one type merged."""
    pieces: list[MemoryMapEntry] = []
    for base, size in ram:
        for lo, hi in _subtract(base, base + size, [(area.base, area.base + area.size) for area in areas]):
            pieces.append(MemoryMapEntry(lo, hi - lo, E820Type.RAM))
    pieces.extend(MemoryMapEntry(area.base, area.size, area.type) for area in areas)
    pieces.sort(key=lambda entry: entry.base)
    merged: list[MemoryMapEntry] = []
    for entry in pieces:
        last = merged[-1] if merged else None
        if last is not None and last.type == entry.type and last.end == entry.base:
            merged[-1] = MemoryMapEntry(last.base, last.size + entry.size, last.type)
        else:
            merged.append(entry)
    return merged


def usable_ram(entries: list[MemoryMapEntry]) -> int:
    return sum(entry.size for entry in entries if entry.type == E820Type.RAM)


def _subtract(lo: int, hi: int, holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = [(lo, hi)]
    for hole_lo, hole_hi in holes:
        next_out = []
        for a, b in out:
            if hole_hi <= a or b <= hole_lo:
                next_out.append((a, b))
                continue
            if a < hole_lo:
                next_out.append((a, hole_lo))
            if hole_hi < b:
                next_out.append((hole_hi, b))
        out = next_out
    return out


__all__ = ["DEVICE_AREAS", "FIRMWARE_AREAS", "Area", "E820Type", "MemoryMapEntry", "build_memory_map", "usable_ram"]
