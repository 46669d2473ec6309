"""ACPI tables describing the machine's processors and NUMA layout
(ACPI 6.4 section 5.2): RSDP, RSDT, XSDT, MADT, SRAT and SLIT.

Each layout is one ``struct.Struct`` declared here, built by one function and
parsed back by another so tests (and OSV's verification) can check what a
kernel will read.  Proximity domains are numbered 0..N-1 in the order of the
view's nodes, so a view of some sockets still gets a dense SLIT.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

OEM_ID = b"OSVEMU"
OEM_TABLE_ID = b"OPTERON "
OEM_REVISION = 1
CREATOR_ID = b"OSVE"
CREATOR_REVISION = 1

# --- Root System Description Pointer (ACPI 6.4 5.2.5.3) ---
RSDP_SIGNATURE = b"RSD PTR "
#: signature, checksum, OEMID, revision, RSDT address, length, XSDT address,
#: extended checksum, reserved.
RSDP = struct.Struct("<8sB6sBIIQB3s")
assert RSDP.size == 36
RSDP_V1_LENGTH = 20  # the checksum covers the ACPI 1.0 part only
RSDP_REVISION_2 = 2

# --- System Description Table header (ACPI 6.4 5.2.6) ---
#: signature, length, revision, checksum, OEMID, OEM table ID, OEM revision,
#: creator ID, creator revision.
SDT_HEADER = struct.Struct("<4sIBB6s8sI4sI")
assert SDT_HEADER.size == 36
SDT_CHECKSUM_OFFSET = 9

# --- Multiple APIC Description Table (ACPI 6.4 5.2.12) ---
MADT_SIGNATURE = b"APIC"
MADT_REVISION = 5
MADT_FIXED = struct.Struct("<II")  # local APIC address, flags
MADT_PCAT_COMPAT = 1 << 0
MADT_LOCAL_APIC = 0
MADT_IO_APIC = 1
MADT_INTERRUPT_OVERRIDE = 2
MADT_LOCAL_APIC_NMI = 4
#: 5.2.12.2: type, length, ACPI processor UID, APIC ID, flags.
MADT_LOCAL_APIC_ENTRY = struct.Struct("<BBBBI")
assert MADT_LOCAL_APIC_ENTRY.size == 8
LOCAL_APIC_ENABLED = 1 << 0
#: 5.2.12.3: type, length, I/O APIC ID, reserved, address, GSI base.
MADT_IO_APIC_ENTRY = struct.Struct("<BBBBII")
assert MADT_IO_APIC_ENTRY.size == 12
#: 5.2.12.5: type, length, bus, source, GSI, MPS INTI flags.
MADT_INTERRUPT_OVERRIDE_ENTRY = struct.Struct("<BBBBIH")
assert MADT_INTERRUPT_OVERRIDE_ENTRY.size == 10
#: 5.2.12.7: type, length, ACPI processor UID, MPS INTI flags, LINT#.
MADT_LOCAL_APIC_NMI_ENTRY = struct.Struct("<BBBHB")
assert MADT_LOCAL_APIC_NMI_ENTRY.size == 6
ALL_PROCESSORS_UID = 0xFF
#: MPS INTI flags (Table 5.26): polarity bits 1:0, trigger mode bits 3:2.
INTI_ACTIVE_HIGH = 0b01
INTI_LEVEL = 0b11 << 2

# --- System Resource Affinity Table (ACPI 6.4 5.2.16) ---
SRAT_SIGNATURE = b"SRAT"
SRAT_REVISION = 3
SRAT_FIXED = struct.Struct("<IQ")  # reserved (must be 1), reserved
SRAT_PROCESSOR_AFFINITY = 0
SRAT_MEMORY_AFFINITY = 1
#: 5.2.16.1: type, length, proximity domain [7:0], APIC ID, flags, local
#: SAPIC EID, proximity domain [31:8], clock domain.
SRAT_PROCESSOR_ENTRY = struct.Struct("<BBBBIB3sI")
assert SRAT_PROCESSOR_ENTRY.size == 16
#: 5.2.16.2: type, length, proximity domain, reserved, base, length,
#: reserved, flags, reserved.
SRAT_MEMORY_ENTRY = struct.Struct("<BBIHQQIIQ")
assert SRAT_MEMORY_ENTRY.size == 40
AFFINITY_ENABLED = 1 << 0

# --- System Locality Information Table (ACPI 6.4 5.2.17) ---
SLIT_SIGNATURE = b"SLIT"
SLIT_REVISION = 1
SLIT_FIXED = struct.Struct("<Q")  # number of system localities
LOCAL_DISTANCE = 10
#: A remote Opteron node one HyperTransport hop away.
REMOTE_DISTANCE = 20

RSDT_SIGNATURE = b"RSDT"
XSDT_SIGNATURE = b"XSDT"


def checksum(data: bytes) -> int:
    """The byte that makes ``data`` sum to zero modulo 256."""
    return (-sum(data)) & 0xFF


def checksum_ok(data: bytes) -> bool:
    return sum(data) & 0xFF == 0


# ------------------------------------------------------------------ builders
@dataclass(frozen=True)
class ProcessorInfo:
    uid: int
    apic_id: int
    domain: int


@dataclass(frozen=True)
class MemoryAffinity:
    base: int
    size: int
    domain: int


def sdt(signature: bytes, revision: int, body: bytes) -> bytes:
    """A complete table: header (with length and checksum) plus body."""
    header = SDT_HEADER.pack(
        signature, SDT_HEADER.size + len(body), revision, 0, OEM_ID, OEM_TABLE_ID, OEM_REVISION,
        CREATOR_ID, CREATOR_REVISION,
    )
    table = bytearray(header + body)
    table[SDT_CHECKSUM_OFFSET] = checksum(table)
    return bytes(table)


def build_madt(processors: list[ProcessorInfo], lapic_address: int, ioapic_id: int | None,
               ioapic_address: int) -> bytes:
    """MADT with one enabled local APIC per processor, the IOAPIC, QEMU-like
    ISA overrides (IRQ0 on GSI2, the SCI level-triggered) and LINT1 as NMI."""
    body = bytearray(MADT_FIXED.pack(lapic_address, MADT_PCAT_COMPAT))
    for cpu in processors:
        body += MADT_LOCAL_APIC_ENTRY.pack(MADT_LOCAL_APIC, MADT_LOCAL_APIC_ENTRY.size, cpu.uid, cpu.apic_id,
                                           LOCAL_APIC_ENABLED)
    if ioapic_id is not None:  # a view without an IOAPIC (an OSV partition) has no ISA routing either
        body += MADT_IO_APIC_ENTRY.pack(MADT_IO_APIC, MADT_IO_APIC_ENTRY.size, ioapic_id, 0, ioapic_address, 0)
        for source, gsi, flags in ((0, 2, 0), (9, 9, INTI_ACTIVE_HIGH | INTI_LEVEL)):
            body += MADT_INTERRUPT_OVERRIDE_ENTRY.pack(MADT_INTERRUPT_OVERRIDE, MADT_INTERRUPT_OVERRIDE_ENTRY.size,
                                                       0, source, gsi, flags)
    body += MADT_LOCAL_APIC_NMI_ENTRY.pack(MADT_LOCAL_APIC_NMI, MADT_LOCAL_APIC_NMI_ENTRY.size,
                                           ALL_PROCESSORS_UID, 0, 1)
    return sdt(MADT_SIGNATURE, MADT_REVISION, bytes(body))


def build_srat(processors: list[ProcessorInfo], memory: list[MemoryAffinity]) -> bytes:
    body = bytearray(SRAT_FIXED.pack(1, 0))
    for cpu in processors:
        body += SRAT_PROCESSOR_ENTRY.pack(
            SRAT_PROCESSOR_AFFINITY, SRAT_PROCESSOR_ENTRY.size, cpu.domain & 0xFF, cpu.apic_id,
            AFFINITY_ENABLED, 0, (cpu.domain >> 8).to_bytes(3, "little"), 0,
        )
    for rng in memory:
        body += SRAT_MEMORY_ENTRY.pack(SRAT_MEMORY_AFFINITY, SRAT_MEMORY_ENTRY.size, rng.domain, 0,
                                       rng.base, rng.size, 0, AFFINITY_ENABLED, 0)
    return sdt(SRAT_SIGNATURE, SRAT_REVISION, bytes(body))


def build_slit(domains: int) -> bytes:
    matrix = bytes(LOCAL_DISTANCE if i == j else REMOTE_DISTANCE for i in range(domains) for j in range(domains))
    return sdt(SLIT_SIGNATURE, SLIT_REVISION, SLIT_FIXED.pack(domains) + matrix)


def build_rsdt(addresses: list[int]) -> bytes:
    return sdt(RSDT_SIGNATURE, 1, b"".join(struct.pack("<I", a) for a in addresses))


def build_xsdt(addresses: list[int]) -> bytes:
    return sdt(XSDT_SIGNATURE, 1, b"".join(struct.pack("<Q", a) for a in addresses))


def build_rsdp(rsdt_address: int, xsdt_address: int) -> bytes:
    """An ACPI 2.0+ RSDP pointing at both the RSDT and the XSDT."""
    data = bytearray(RSDP.pack(RSDP_SIGNATURE, 0, OEM_ID, RSDP_REVISION_2, rsdt_address, RSDP.size,
                               xsdt_address, 0, b"\0\0\0"))
    data[8] = checksum(data[:RSDP_V1_LENGTH])
    data[32] = checksum(data)
    return bytes(data)


def build_acpi(processors: list[ProcessorInfo], memory: list[MemoryAffinity], domains: int, *,
               lapic_address: int, ioapic_id: int | None, ioapic_address: int,
               tables_base: int, tables_size: int, rsdp_address: int) -> list[tuple[int, bytes]]:
    """Lay the tables out from ``tables_base`` (16-byte aligned each) and
    return (address, bytes) writes, the RSDP last."""
    tables = [
        build_madt(processors, lapic_address, ioapic_id, ioapic_address),
        build_srat(processors, memory),
        build_slit(domains),
    ]
    writes: list[tuple[int, bytes]] = []
    cursor = tables_base
    # RSDT and XSDT come first; their size is known before the addresses are.
    rsdt_address = cursor
    cursor = _align16(cursor + SDT_HEADER.size + 4 * len(tables))
    xsdt_address = cursor
    cursor = _align16(cursor + SDT_HEADER.size + 8 * len(tables))
    addresses = []
    for table in tables:
        addresses.append(cursor)
        writes.append((cursor, table))
        cursor = _align16(cursor + len(table))
    if cursor > tables_base + tables_size:
        raise ValueError(f"ACPI tables need {cursor - tables_base} bytes, the area holds {tables_size}")
    writes.insert(0, (xsdt_address, build_xsdt(addresses)))
    writes.insert(0, (rsdt_address, build_rsdt(addresses)))
    writes.append((rsdp_address, build_rsdp(rsdt_address, xsdt_address)))
    return writes


def _align16(value: int) -> int:
    return (value + 15) & ~15


# ------------------------------------------------------------------ parsers
@dataclass(frozen=True)
class Rsdp:
    revision: int
    rsdt_address: int
    xsdt_address: int
    checksum_ok: bool


@dataclass(frozen=True)
class SdtHeader:
    signature: bytes
    length: int
    revision: int
    oem_id: bytes


@dataclass
class Madt:
    lapic_address: int
    flags: int
    local_apics: list[tuple[int, int, int]] = field(default_factory=list)  # (uid, apic id, flags)
    io_apics: list[tuple[int, int, int]] = field(default_factory=list)  # (id, address, gsi base)
    overrides: list[tuple[int, int, int, int]] = field(default_factory=list)  # (bus, source, gsi, flags)
    nmis: list[tuple[int, int, int]] = field(default_factory=list)  # (uid, flags, lint)


@dataclass
class Srat:
    processors: list[tuple[int, int, int]] = field(default_factory=list)  # (domain, apic id, flags)
    memory: list[tuple[int, int, int, int]] = field(default_factory=list)  # (domain, base, length, flags)


def parse_rsdp(data: bytes) -> Rsdp:
    signature, _, _, revision, rsdt, _, xsdt, _, _ = RSDP.unpack_from(data)
    if signature != RSDP_SIGNATURE:
        raise ValueError("no RSDP signature")
    ok = checksum_ok(data[:RSDP_V1_LENGTH]) and (revision < RSDP_REVISION_2 or checksum_ok(data[:RSDP.size]))
    return Rsdp(revision, rsdt, xsdt if revision >= RSDP_REVISION_2 else 0, ok)


def parse_header(data: bytes) -> SdtHeader:
    signature, length, revision, _, oem_id, *_ = SDT_HEADER.unpack_from(data)
    return SdtHeader(signature, length, revision, oem_id)


def parse_pointer_table(data: bytes) -> list[int]:
    """The table addresses in an RSDT (u32 entries) or XSDT (u64, unaligned)."""
    header = parse_header(data)
    width = 8 if header.signature == XSDT_SIGNATURE else 4
    body = data[SDT_HEADER.size:header.length]
    return [int.from_bytes(body[i:i + width], "little") for i in range(0, len(body), width)]


def _entries(body: bytes):
    offset = 0
    while offset + 2 <= len(body):
        kind, length = body[offset], body[offset + 1]
        if length < 2:
            raise ValueError(f"entry at offset {offset} has length {length}")
        yield kind, body[offset:offset + length]
        offset += length


def parse_madt(data: bytes) -> Madt:
    header = parse_header(data)
    lapic_address, flags = MADT_FIXED.unpack_from(data, SDT_HEADER.size)
    madt = Madt(lapic_address, flags)
    for kind, entry in _entries(data[SDT_HEADER.size + MADT_FIXED.size:header.length]):
        if kind == MADT_LOCAL_APIC:
            _, _, uid, apic_id, lapic_flags = MADT_LOCAL_APIC_ENTRY.unpack(entry)
            madt.local_apics.append((uid, apic_id, lapic_flags))
        elif kind == MADT_IO_APIC:
            _, _, ioapic_id, _, address, gsi_base = MADT_IO_APIC_ENTRY.unpack(entry)
            madt.io_apics.append((ioapic_id, address, gsi_base))
        elif kind == MADT_INTERRUPT_OVERRIDE:
            _, _, bus, source, gsi, inti = MADT_INTERRUPT_OVERRIDE_ENTRY.unpack(entry)
            madt.overrides.append((bus, source, gsi, inti))
        elif kind == MADT_LOCAL_APIC_NMI:
            _, _, uid, inti, lint = MADT_LOCAL_APIC_NMI_ENTRY.unpack(entry)
            madt.nmis.append((uid, inti, lint))
    return madt


def parse_srat(data: bytes) -> Srat:
    header = parse_header(data)
    srat = Srat()
    for kind, entry in _entries(data[SDT_HEADER.size + SRAT_FIXED.size:header.length]):
        if kind == SRAT_PROCESSOR_AFFINITY:
            _, _, domain_low, apic_id, flags, _, domain_high, _ = SRAT_PROCESSOR_ENTRY.unpack(entry)
            srat.processors.append((domain_low | int.from_bytes(domain_high, "little") << 8, apic_id, flags))
        elif kind == SRAT_MEMORY_AFFINITY:
            _, _, domain, _, base, length, _, flags, _ = SRAT_MEMORY_ENTRY.unpack(entry)
            srat.memory.append((domain, base, length, flags))
    return srat


def parse_slit(data: bytes) -> list[list[int]]:
    (count,) = SLIT_FIXED.unpack_from(data, SDT_HEADER.size)
    start = SDT_HEADER.size + SLIT_FIXED.size
    return [list(data[start + i * count:start + (i + 1) * count]) for i in range(count)]


def read_tables(read: Callable[[int, int], bytes], rsdp_address: int) -> dict[bytes, bytes]:
    """Every table reachable from the RSDP (XSDT preferred, as ACPI 6.4
    5.2.8 tells an OS), by signature, read through ``read(address, size)``."""
    rsdp = parse_rsdp(read(rsdp_address, RSDP.size))
    root_address = rsdp.xsdt_address or rsdp.rsdt_address
    root = _read_table(read, root_address)
    tables = {parse_header(root).signature: root}
    for address in parse_pointer_table(root):
        table = _read_table(read, address)
        tables[parse_header(table).signature] = table
    return tables


def _read_table(read: Callable[[int, int], bytes], address: int) -> bytes:
    header = parse_header(read(address, SDT_HEADER.size))
    return read(address, header.length)


__all__ = [
    "Madt", "MemoryAffinity", "ProcessorInfo", "Rsdp", "Srat", "build_acpi", "build_madt", "build_rsdp",
    "build_slit", "build_srat", "checksum", "checksum_ok", "parse_header", "parse_madt", "parse_pointer_table",
    "parse_rsdp", "parse_slit", "parse_srat", "read_tables",
]
