"""MultiProcessor Specification 1.4 tables: the floating pointer structure
(section 4.1) and the configuration table (section 4.2) with processor, bus,
I/O APIC, I/O interrupt and local interrupt entries (section 4.3).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from osvemu.platform import layout
from osvemu.platform.acpi import checksum, checksum_ok

SPEC_REVISION_1_4 = 4

#: 4.1: signature, configuration table address, length in 16-byte
#: paragraphs, spec revision, checksum, feature byte 1, feature bytes 2-5.
FLOATING_POINTER = struct.Struct("<4sIBBBB4s")
assert FLOATING_POINTER.size == 16
FLOATING_POINTER_SIGNATURE = b"_MP_"
FLOATING_POINTER_CHECKSUM_OFFSET = 10

#: 4.2 Table 4-2: signature, base table length, spec revision, checksum, OEM
#: ID, product ID, OEM table pointer, OEM table size, entry count, local APIC
#: address, extended table length, extended table checksum, reserved.
CONFIG_HEADER = struct.Struct("<4sHBB8s12sIHHIHBB")
assert CONFIG_HEADER.size == 44
CONFIG_SIGNATURE = b"PCMP"
CONFIG_CHECKSUM_OFFSET = 7
OEM_ID = b"OSVEMU  "
PRODUCT_ID = b"OPTERON     "

PROCESSOR = 0
BUS = 1
IO_APIC = 2
IO_INTERRUPT = 3
LOCAL_INTERRUPT = 4
#: 4.3.1: type, local APIC ID, local APIC version, CPU flags, CPU signature,
#: feature flags, reserved.
PROCESSOR_ENTRY = struct.Struct("<BBBBII8s")
assert PROCESSOR_ENTRY.size == 20
CPU_ENABLED = 1 << 0
CPU_BOOTSTRAP = 1 << 1
#: 4.3.2: type, bus ID, bus type string.
BUS_ENTRY = struct.Struct("<BB6s")
assert BUS_ENTRY.size == 8
BUS_TYPE_ISA = b"ISA   "
#: 4.3.3: type, I/O APIC ID, version, flags, address.
IO_APIC_ENTRY = struct.Struct("<BBBBI")
assert IO_APIC_ENTRY.size == 8
IO_APIC_ENABLED = 1 << 0
IO_APIC_VERSION = 0x20
#: 4.3.4 / 4.3.5: type, interrupt type, flags, source bus, source IRQ,
#: destination APIC ID, destination INTIN# / LINTIN#.
INTERRUPT_ENTRY = struct.Struct("<BBHBBBB")
assert INTERRUPT_ENTRY.size == 8
INT = 0
NMI = 1
EXTINT = 3
ALL_LOCAL_APICS = 0xFF
ENTRY_SIZES = {PROCESSOR: PROCESSOR_ENTRY.size, BUS: 8, IO_APIC: 8, IO_INTERRUPT: 8, LOCAL_INTERRUPT: 8}
#: The ISA interrupts wired to the IOAPIC, as (IRQ, INTIN#): only COM1's,
#: identity-mapped.  The platform has no 8254, 8259, keyboard controller or
#: RTC interrupt, so no other ISA IRQ is listed (4.3.4: one entry per
#: interrupt source connected to an I/O APIC).
ISA_INTERRUPTS = ((layout.COM1_IRQ, layout.COM1_IRQ),)


@dataclass(frozen=True)
class MpProcessor:
    apic_id: int
    bootstrap: bool


def build_config_table(processors: list[MpProcessor], *, lapic_address: int, lapic_version: int,
                       cpu_signature: int, feature_flags: int, ioapic_id: int | None, ioapic_address: int) -> bytes:
    entries = bytearray()
    count = 0
    for cpu in processors:
        flags = CPU_ENABLED | (CPU_BOOTSTRAP if cpu.bootstrap else 0)
        entries += PROCESSOR_ENTRY.pack(PROCESSOR, cpu.apic_id, lapic_version, flags, cpu_signature,
                                        feature_flags, bytes(8))
        count += 1
    isa_bus = 0
    entries += BUS_ENTRY.pack(BUS, isa_bus, BUS_TYPE_ISA)
    count += 1
    if ioapic_id is not None:
        entries += IO_APIC_ENTRY.pack(IO_APIC, ioapic_id, IO_APIC_VERSION, IO_APIC_ENABLED, ioapic_address)
        count += 1
        for irq, pin in ISA_INTERRUPTS:  # flags 0: conforming to the ISA bus (edge, active high)
            entries += INTERRUPT_ENTRY.pack(IO_INTERRUPT, INT, 0, isa_bus, irq, ioapic_id, pin)
            count += 1
    # LINT1 is NMI; no ExtINT entry for LINT0, which only an 8259 in virtual wire mode would drive.
    entries += INTERRUPT_ENTRY.pack(LOCAL_INTERRUPT, NMI, 0, isa_bus, 0, ALL_LOCAL_APICS, 1)
    count += 1
    header = CONFIG_HEADER.pack(CONFIG_SIGNATURE, CONFIG_HEADER.size + len(entries), SPEC_REVISION_1_4, 0,
                                OEM_ID, PRODUCT_ID, 0, 0, count, lapic_address, 0, 0, 0)
    table = bytearray(header + entries)
    table[CONFIG_CHECKSUM_OFFSET] = checksum(table)
    return bytes(table)


def build_floating_pointer(config_address: int) -> bytes:
    data = bytearray(FLOATING_POINTER.pack(FLOATING_POINTER_SIGNATURE, config_address, 1, SPEC_REVISION_1_4,
                                           0, 0, bytes(4)))
    data[FLOATING_POINTER_CHECKSUM_OFFSET] = checksum(data)
    return bytes(data)


# ------------------------------------------------------------------ parsers
@dataclass
class MpConfig:
    lapic_address: int
    processors: list[tuple[int, int, int]] = field(default_factory=list)  # (APIC ID, version, flags)
    buses: list[tuple[int, bytes]] = field(default_factory=list)
    io_apics: list[tuple[int, int, int, int]] = field(default_factory=list)  # (id, version, flags, address)
    io_interrupts: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    local_interrupts: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    entry_count: int = 0
    checksum_ok: bool = False


def parse_floating_pointer(data: bytes) -> int:
    """The configuration table address; ValueError if this is no valid pointer."""
    signature, config_address, length, _, _, feature1, _ = FLOATING_POINTER.unpack_from(data)
    if signature != FLOATING_POINTER_SIGNATURE or not checksum_ok(data[:16 * length]):
        raise ValueError("no valid MP floating pointer")
    if feature1 != 0:
        raise ValueError(f"MP default configuration {feature1} (no table) is not used here")
    return config_address


def parse_config_table(data: bytes) -> MpConfig:
    signature, length, _, _, _, _, _, _, count, lapic_address, _, _, _ = CONFIG_HEADER.unpack_from(data)
    if signature != CONFIG_SIGNATURE:
        raise ValueError("no PCMP signature")
    config = MpConfig(lapic_address, entry_count=count, checksum_ok=checksum_ok(data[:length]))
    offset = CONFIG_HEADER.size
    for _ in range(count):
        kind = data[offset]
        if kind == PROCESSOR:
            _, apic_id, version, flags, _, _, _ = PROCESSOR_ENTRY.unpack_from(data, offset)
            config.processors.append((apic_id, version, flags))
        elif kind == BUS:
            _, bus_id, bus_type = BUS_ENTRY.unpack_from(data, offset)
            config.buses.append((bus_id, bus_type))
        elif kind == IO_APIC:
            _, ioapic_id, version, flags, address = IO_APIC_ENTRY.unpack_from(data, offset)
            config.io_apics.append((ioapic_id, version, flags, address))
        elif kind in (IO_INTERRUPT, LOCAL_INTERRUPT):
            fields = INTERRUPT_ENTRY.unpack_from(data, offset)[1:]
            (config.io_interrupts if kind == IO_INTERRUPT else config.local_interrupts).append(fields)
        else:
            raise ValueError(f"unknown MP entry type {kind} at offset {offset}")
        offset += ENTRY_SIZES[kind]
    return config


def search_areas(read: Callable[[int, int], bytes]) -> list[tuple[int, int]]:
    """The three areas MP spec 1.4 section 4 tells an OS to search, in order:
    the first KiB of the EBDA, the last KiB of base memory, 0xF0000-0xFFFFF."""
    ebda = int.from_bytes(read(layout.BDA_EBDA_SEGMENT, 2), "little") << 4
    base_kib = int.from_bytes(read(layout.BDA_BASE_MEMORY_KIB, 2), "little")
    areas = []
    if ebda:
        areas.append((ebda, 1024))
    areas.append(((base_kib - 1) * 1024, 1024))
    areas.append((layout.BIOS_BASE, layout.BIOS_SIZE))
    return areas


def find_floating_pointer(read: Callable[[int, int], bytes]) -> int | None:
    """Search as an OS does (16-byte boundaries, signature and checksum)."""
    for base, size in search_areas(read):
        area = read(base, size)
        for offset in range(0, size - FLOATING_POINTER.size + 1, 16):
            if area[offset:offset + 4] == FLOATING_POINTER_SIGNATURE:
                try:
                    parse_floating_pointer(area[offset:offset + 16])
                except ValueError:
                    continue
                return base + offset
    return None


def read_config(read: Callable[[int, int], bytes]) -> MpConfig | None:
    pointer = find_floating_pointer(read)
    if pointer is None:
        return None
    address = parse_floating_pointer(read(pointer, FLOATING_POINTER.size))
    length = CONFIG_HEADER.unpack_from(read(address, CONFIG_HEADER.size))[1]
    return parse_config_table(read(address, length))


__all__ = [
    "MpConfig", "MpProcessor", "build_config_table", "build_floating_pointer", "find_floating_pointer",
    "parse_config_table", "parse_floating_pointer", "read_config", "search_areas",
]
