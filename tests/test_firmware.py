"""Firmware tables parse back with valid checksums and describe the topology."""

from __future__ import annotations

import pytest

from osvemu.platform import acpi, layout, mptable
from osvemu.platform.firmware import (
    CMDLINE_ADDRESS,
    MEMMAP_ADDRESS,
    FirmwareView,
    build_firmware,
)
from osvemu.platform.memmap import Area, E820Type, MemoryMapEntry, build_memory_map, usable_ram
from osvemu.platform.pvh import XEN_HVM_START_MAGIC_VALUE, StartInfo, unpack_memory_map
from osvemu.platform.topology import Topology


class FakeMemory:
    """Guest-physical memory as a sparse dict of writes."""

    def __init__(self, writes):
        self.bytes = bytearray(1 << 20)
        self.high = {}
        for address, data in writes:
            if address + len(data) <= len(self.bytes):
                self.bytes[address:address + len(data)] = data
            else:
                self.high[address] = data

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.bytes[address:address + size])


def firmware_for(topology: Topology, cmdline: str = ""):
    firmware = build_firmware(FirmwareView.whole_machine(topology), cmdline)
    return firmware, FakeMemory(firmware.writes)


TOPOLOGIES = [Topology(4, 8), Topology(1, 1, 64 * layout.MiB), Topology(2, 3, 6 * layout.GiB), Topology(8, 4)]


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda t: f"{t.sockets}x{t.cores_per_socket}")
def test_acpi_tables_describe_the_topology(topology):
    _, memory = firmware_for(topology)
    rsdp_bytes = memory.read(layout.RSDP_ADDRESS, acpi.RSDP.size)
    rsdp = acpi.parse_rsdp(rsdp_bytes)
    assert rsdp.revision == 2 and rsdp.checksum_ok
    assert layout.ACPI_TABLES_BASE <= rsdp.rsdt_address < layout.ACPI_TABLES_BASE + layout.ACPI_TABLES_SIZE
    tables = acpi.read_tables(memory.read, layout.RSDP_ADDRESS)
    assert set(tables) == {b"XSDT", b"APIC", b"SRAT", b"SLIT", b"FACP", b"DSDT"}
    for table in tables.values():
        assert acpi.checksum_ok(table)
    # The RSDT and the XSDT list the same tables.
    rsdt = memory.read(rsdp.rsdt_address, acpi.parse_header(memory.read(rsdp.rsdt_address, 36)).length)
    assert acpi.checksum_ok(rsdt)
    assert acpi.parse_pointer_table(rsdt) == acpi.parse_pointer_table(tables[b"XSDT"])

    madt = acpi.parse_madt(tables[b"APIC"])
    assert madt.lapic_address == layout.LAPIC_BASE
    assert [(uid, apic) for uid, apic, _ in madt.local_apics] == [(c.index, c.apic_id) for c in topology.cpus]
    assert all(flags & acpi.LOCAL_APIC_ENABLED for _, _, flags in madt.local_apics)
    (ioapic_id, ioapic_address, gsi_base), = madt.io_apics
    assert ioapic_address == layout.IOAPIC_BASE and gsi_base == 0
    assert ioapic_id not in {c.apic_id for c in topology.cpus}
    assert madt.flags == 0 and madt.overrides == []  # no 8259 (PCAT_COMPAT), no PIT or SCI to override
    assert madt.nmis == [(acpi.ALL_PROCESSORS_UID, 0, 1)]

    srat = acpi.parse_srat(tables[b"SRAT"])
    assert [(d, apic) for d, apic, _ in srat.processors] == [(c.node, c.apic_id) for c in topology.cpus]
    assert [(d, b, s) for d, b, s, _ in srat.memory] == [(m.node, m.base, m.size) for m in topology.memory]
    assert sum(s for _, _, s, _ in srat.memory) == usable_ram(build_memory_map(layout.ram_ranges(
        topology.memory_size), ())) 
    slit = acpi.parse_slit(tables[b"SLIT"])
    assert len(slit) == topology.sockets
    assert all(slit[i][j] == (10 if i == j else 20) for i in range(len(slit)) for j in range(len(slit)))


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda t: f"{t.sockets}x{t.cores_per_socket}")
def test_mp_table_is_found_where_the_spec_searches(topology):
    _, memory = firmware_for(topology)
    pointer = mptable.find_floating_pointer(memory.read)
    assert pointer == layout.MP_FLOATING_POINTER_ADDRESS
    config = mptable.read_config(memory.read)
    assert config.checksum_ok and config.lapic_address == layout.LAPIC_BASE
    assert [apic for apic, _, _ in config.processors] == [c.apic_id for c in topology.cpus]
    bsp_flags = [bool(flags & mptable.CPU_BOOTSTRAP) for _, _, flags in config.processors]
    assert bsp_flags == [True] + [False] * (topology.cpu_count - 1)
    assert all(flags & mptable.CPU_ENABLED for _, _, flags in config.processors)
    assert config.buses == [(0, b"ISA   ")]
    assert len(config.io_apics) == 1 and config.io_apics[0][3] == layout.IOAPIC_BASE
    # The one ISA interrupt wired, COM1's IRQ 4 on INTIN4 (no 8254, 8259 or RTC interrupt), and NMI on LINT1.
    assert config.io_interrupts == [(mptable.INT, 0, 0, layout.COM1_IRQ, config.io_apics[0][0], layout.COM1_IRQ)]
    assert config.local_interrupts == [(mptable.NMI, 0, 0, 0, mptable.ALL_LOCAL_APICS, 1)]
    assert config.entry_count == topology.cpu_count + 2 + 1 + 1


def test_mp_search_covers_ebda_and_base_memory():
    """A floating pointer in the first KiB of the EBDA is found first."""
    _, memory = firmware_for(Topology(1, 2, 64 * layout.MiB))
    memory.bytes[layout.EBDA_BASE:layout.EBDA_BASE + 16] = mptable.build_floating_pointer(0x12340)
    assert mptable.find_floating_pointer(memory.read) == layout.EBDA_BASE
    bad = bytearray(mptable.build_floating_pointer(0x12340))
    bad[4] ^= 1  # checksum now wrong: skipped
    memory.bytes[layout.EBDA_BASE:layout.EBDA_BASE + 16] = bad
    assert mptable.find_floating_pointer(memory.read) == layout.MP_FLOATING_POINTER_ADDRESS


def test_pvh_start_info_memory_map_and_cmdline():
    topology = Topology(2, 2, 4 * layout.GiB)
    firmware, memory = firmware_for(topology, "console=ttyS0 tsc_early_khz=2000000")
    info = StartInfo.unpack(memory.read(firmware.start_info_address, 56))
    assert (info.magic, info.version) == (XEN_HVM_START_MAGIC_VALUE, 1)
    assert info.rsdp_paddr == layout.RSDP_ADDRESS
    assert info.cmdline_paddr == CMDLINE_ADDRESS
    assert memory.read(CMDLINE_ADDRESS, 37) == b"console=ttyS0 tsc_early_khz=2000000\0\0"[:37]
    entries = unpack_memory_map(memory.read(MEMMAP_ADDRESS, 24 * info.memmap_entries), info.memmap_entries)
    assert entries == firmware.memory_map
    described = [(e.base, e.end, e.type) for e in entries]
    assert described == [
        (0, layout.BOOT_INFO_BASE, E820Type.RAM),
        (layout.BOOT_INFO_BASE, layout.CONVENTIONAL_END, E820Type.RESERVED),
        (layout.ACPI_TABLES_BASE, layout.BIOS_BASE, E820Type.ACPI),
        (layout.BIOS_BASE, layout.LOW_MEMORY_END, E820Type.RESERVED),
        (layout.LOW_MEMORY_END, 3 * layout.GiB, E820Type.RAM),
        (layout.IOAPIC_BASE, layout.IOAPIC_BASE + 0x1000, E820Type.RESERVED),
        (layout.LAPIC_BASE, layout.LAPIC_BASE + 0x1000, E820Type.RESERVED),
        (4 * layout.GiB, 5 * layout.GiB, E820Type.RAM),
    ]
    assert entries[0].describe() == "[mem 0x0000000000000000-0x000000000009dfff] usable"


def test_bios_data_area_points_at_the_ebda():
    _, memory = firmware_for(Topology(1, 1, 64 * layout.MiB))
    assert int.from_bytes(memory.read(layout.BDA_EBDA_SEGMENT, 2), "little") << 4 == layout.EBDA_BASE
    assert int.from_bytes(memory.read(layout.BDA_BASE_MEMORY_KIB, 2), "little") == 639


def test_a_partial_view_renumbers_proximity_domains():
    """OSV's per-partition view: sockets 2 and 3 only become domains 0 and 1."""
    topology = Topology(4, 2, 1 * layout.GiB)
    cpus = tuple(c for c in topology.cpus if c.socket >= 2)
    ranges = tuple(m for m in topology.memory if m.node >= 2)
    view = FirmwareView(cpus, cpus[0].apic_id, ranges, ioapic_id=0xF0)
    firmware = build_firmware(view, "")
    memory = FakeMemory(firmware.writes)
    tables = acpi.read_tables(memory.read, layout.RSDP_ADDRESS)
    madt = acpi.parse_madt(tables[b"APIC"])
    assert [apic for _, apic, _ in madt.local_apics] == [c.apic_id for c in cpus]
    srat = acpi.parse_srat(tables[b"SRAT"])
    assert {d for d, _, _ in srat.processors} == {0, 1}
    assert len(acpi.parse_slit(tables[b"SLIT"])) == 2
    config = mptable.read_config(memory.read)
    assert [apic for apic, _, flags in config.processors if flags & mptable.CPU_BOOTSTRAP] == [cpus[0].apic_id]
    assert usable_ram(firmware.memory_map) == sum(m.size for m in ranges)


def test_memory_map_carves_firmware_areas_out_of_ram():
    entries = build_memory_map([(0, 0x100000)], (Area(0x1000, 0x1000, E820Type.ACPI, "a table"),))
    assert entries == [MemoryMapEntry(0, 0x1000, E820Type.RAM), MemoryMapEntry(0x1000, 0x1000, E820Type.ACPI),
                       MemoryMapEntry(0x2000, 0xFE000, E820Type.RAM)]


def test_corrupted_tables_fail_their_checksums():
    _, memory = firmware_for(Topology(1, 2, 64 * layout.MiB))
    tables = acpi.read_tables(memory.read, layout.RSDP_ADDRESS)
    madt = bytearray(tables[b"APIC"])
    madt[50] ^= 0x40
    assert not acpi.checksum_ok(bytes(madt))
    rsdp = bytearray(memory.read(layout.RSDP_ADDRESS, 36))
    rsdp[16] ^= 1
    assert not acpi.parse_rsdp(bytes(rsdp)).checksum_ok
