"""The I/O APIC register file (Intel 82093AA datasheet, section 3).

osvemu has no device that raises an external interrupt, so the IOAPIC has
no inputs: it exists so that a kernel which finds it in the MADT or the MP
table can identify it, program and mask its redirection entries as on real
hardware.  Accesses go through the indirect IOREGSEL/IOWIN pair.
"""

from __future__ import annotations

IOREGSEL = 0x00
IOWIN = 0x10
IOAPICID = 0x00
IOAPICVER = 0x01
IOAPICARB = 0x02
IOREDTBL = 0x10
REDIRECTION_ENTRIES = 24
#: Version 0x20 with "maximum redirection entry" 23 in bits 23:16 (3.2.2).
VERSION_VALUE = 0x20 | ((REDIRECTION_ENTRIES - 1) << 16)
ID_SHIFT = 24
ID_MASK = 0xF << ID_SHIFT
REDIRECTION_MASKED = 1 << 16
#: Read-only redirection bits: delivery status (12) and remote IRR (14).
REDIRECTION_READ_ONLY = (1 << 12) | (1 << 14)


class IoApic:
    def __init__(self, apic_id: int) -> None:
        self.apic_id = apic_id & 0xF
        self.select = 0
        self.redirection = [REDIRECTION_MASKED] * REDIRECTION_ENTRIES

    def read_register(self, index: int) -> int:
        if index == IOAPICID:
            return self.apic_id << ID_SHIFT
        if index == IOAPICVER:
            return VERSION_VALUE
        if index == IOAPICARB:
            return self.apic_id << ID_SHIFT
        entry = self._entry(index)
        if entry is not None:
            value = self.redirection[entry >> 1]
            return (value >> 32) if entry & 1 else value & 0xFFFFFFFF
        return 0

    def write_register(self, index: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if index == IOAPICID:
            self.apic_id = (value & ID_MASK) >> ID_SHIFT
            return
        entry = self._entry(index)
        if entry is None:
            return
        old = self.redirection[entry >> 1]
        if entry & 1:
            new = (old & 0xFFFFFFFF) | (value << 32)
        else:
            new = (old & ~0xFFFFFFFF) | (value & ~REDIRECTION_READ_ONLY) | (old & REDIRECTION_READ_ONLY)
        self.redirection[entry >> 1] = new

    def mmio_read(self, offset: int) -> int:
        if offset == IOREGSEL:
            return self.select
        if offset == IOWIN:
            return self.read_register(self.select)
        return 0

    def mmio_write(self, offset: int, value: int) -> None:
        if offset == IOREGSEL:
            self.select = value & 0xFF
        elif offset == IOWIN:
            self.write_register(self.select, value)

    @staticmethod
    def _entry(index: int) -> int | None:
        entry = index - IOREDTBL
        return entry if 0 <= entry < 2 * REDIRECTION_ENTRIES else None


__all__ = ["IoApic"]
