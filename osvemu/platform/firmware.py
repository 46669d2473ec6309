"""Everything firmware leaves in memory for a PVH kernel: BIOS data area
words, ACPI and MP tables, the e820 memory map, the command line and the
``hvm_start_info`` that points at them.

It is built from a :class:`FirmwareView`, the machine as one kernel should
see it.  Without a monitor the view is the whole machine; OSV builds one view
per partition, with only that partition's cores and memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from osvemu.errors import ConfigError
from osvemu.platform import layout
from osvemu.platform.acpi import MemoryAffinity, PlatformDevices, ProcessorInfo, build_acpi
from osvemu.platform.cpuid import CPU_SIGNATURE, LEAF1_EDX
from osvemu.platform.icr import BROADCAST_ID
from osvemu.platform.lapic import APIC_VERSION_VALUE
from osvemu.platform.memmap import DEVICE_AREAS, FIRMWARE_AREAS, Area, E820Type, MemoryMapEntry, build_memory_map
from osvemu.platform.mptable import MpProcessor, build_config_table, build_floating_pointer
from osvemu.platform.pvh import MEMMAP_ENTRY, MODULE_ENTRY, StartInfo, pack_memory_map
from osvemu.platform.topology import Cpu, MemoryRange, Topology

# Placement inside the boot info area (layout.BOOT_INFO_BASE .. EBDA).
START_INFO_ADDRESS = layout.BOOT_INFO_BASE
MODLIST_ADDRESS = layout.BOOT_INFO_BASE + 0x40  # one module: the initrd
MEMMAP_ADDRESS = MODLIST_ADDRESS + MODULE_ENTRY.size
MEMMAP_MAX_ENTRIES = 64
CMDLINE_ADDRESS = MEMMAP_ADDRESS + MEMMAP_MAX_ENTRIES * MEMMAP_ENTRY.size
CMDLINE_MAX = layout.EBDA_BASE - CMDLINE_ADDRESS - 1  # keep the terminating NUL
#: 639 KiB of base memory: everything below the EBDA (MP spec 1.4 4.0 b).
BASE_MEMORY_KIB = layout.EBDA_BASE // layout.KiB


@dataclass(frozen=True)
class FirmwareView:
    """The machine as one kernel is told about it."""

    cpus: tuple[Cpu, ...]
    bsp_apic_id: int
    memory: tuple[MemoryRange, ...]  # the kernel's RAM, by NUMA node
    ioapic_id: int | None  # the kernel's own IOAPIC (None: it has none, and COM1 is polled)
    reserved: tuple[tuple[int, int], ...] = ()  # other ranges typed reserved (OSV's shared channels)

    @classmethod
    def whole_machine(cls, topology: Topology) -> FirmwareView:
        return cls(topology.cpus, topology.cpus[0].apic_id, topology.memory, cls.free_apic_id(topology.cpus))

    @staticmethod
    def free_apic_id(cpus: tuple[Cpu, ...]) -> int:
        """The IOAPIC gets the first APIC ID no processor of the view uses
        (MP spec 1.4 4.3.3: APIC IDs are unique across local and I/O APICs).
        When the processors use all 255 (0xFF is the broadcast ID), it
        shares ID 0, as on large xAPIC machines: the IOAPIC's ID served only
        the arbitration of the three-wire APIC bus, and an xAPIC system
        delivers its interrupts as messages on the system bus, where the ID
        plays no part (Intel SDM Vol. 3A 10.1, 10.2; ACPI 6.5 5.2.12.3
        requires no uniqueness)."""
        used = {cpu.apic_id for cpu in cpus}
        return next((candidate for candidate in range(BROADCAST_ID) if candidate not in used), 0)

    @property
    def nodes(self) -> tuple[int, ...]:
        """Nodes with a core or memory in the view, in order; the tables
        number them 0..N-1 as proximity domains."""
        return tuple(sorted({cpu.node for cpu in self.cpus} | {rng.node for rng in self.memory}))


@dataclass(frozen=True)
class Firmware:
    writes: list[tuple[int, bytes]]
    start_info_address: int
    rsdp_address: int
    memory_map: list[MemoryMapEntry]


def build_firmware(view: FirmwareView, cmdline: str, initrd: tuple[int, int] | None = None) -> Firmware:
    """The firmware's writes for a kernel; ``initrd`` is the (address, size)
    of an initial RAM disk already in its memory, handed over as module 0."""
    encoded = cmdline.encode()
    if len(encoded) > CMDLINE_MAX:
        raise ConfigError(f"command line is {len(encoded)} bytes, the boot info area holds {CMDLINE_MAX}")
    if b"\0" in encoded:
        raise ConfigError("command line contains a NUL byte")
    domain = {node: index for index, node in enumerate(view.nodes)}
    processors = [ProcessorInfo(uid, cpu.apic_id, domain[cpu.node]) for uid, cpu in enumerate(view.cpus)]
    affinity = [MemoryAffinity(rng.base, rng.size, domain[rng.node]) for rng in view.memory]
    devices = PlatformDevices(layout.COM1_PORT, layout.COM1_IRQ if view.ioapic_id is not None else None,
                              layout.RTC_INDEX_PORT, layout.ACPI_SLEEP_CONTROL_PORT, layout.ACPI_SLEEP_STATUS_PORT)
    writes = build_acpi(
        processors, affinity, len(domain),
        lapic_address=layout.LAPIC_BASE, ioapic_id=view.ioapic_id, ioapic_address=layout.IOAPIC_BASE,
        devices=devices, tables_base=layout.ACPI_TABLES_BASE, tables_size=layout.ACPI_TABLES_SIZE,
        rsdp_address=layout.RSDP_ADDRESS,
    )
    config = build_config_table(
        [MpProcessor(cpu.apic_id, cpu.apic_id == view.bsp_apic_id) for cpu in view.cpus],
        lapic_address=layout.LAPIC_BASE, lapic_version=APIC_VERSION_VALUE & 0xFF, cpu_signature=CPU_SIGNATURE,
        feature_flags=LEAF1_EDX, ioapic_id=view.ioapic_id, ioapic_address=layout.IOAPIC_BASE,
    )
    if layout.MP_CONFIG_TABLE_ADDRESS + len(config) > layout.BOOT_GDT_ADDRESS:
        raise ConfigError(f"MP configuration table of {len(config)} bytes does not fit the BIOS area")
    writes.append((layout.MP_FLOATING_POINTER_ADDRESS, build_floating_pointer(layout.MP_CONFIG_TABLE_ADDRESS)))
    writes.append((layout.MP_CONFIG_TABLE_ADDRESS, config))
    writes.append((layout.BDA_EBDA_SEGMENT, struct.pack("<H", layout.EBDA_BASE >> 4)))
    writes.append((layout.BDA_BASE_MEMORY_KIB, struct.pack("<H", BASE_MEMORY_KIB)))

    areas = FIRMWARE_AREAS + DEVICE_AREAS + tuple(Area(base, size, E820Type.RESERVED, "shared channel")
                                                  for base, size in view.reserved)
    memory_map = build_memory_map([(rng.base, rng.size) for rng in view.memory], areas)
    if len(memory_map) > MEMMAP_MAX_ENTRIES:
        raise ConfigError(f"memory map has {len(memory_map)} entries, at most {MEMMAP_MAX_ENTRIES} fit")
    writes.append((MEMMAP_ADDRESS, pack_memory_map(memory_map)))
    writes.append((CMDLINE_ADDRESS, encoded + b"\0"))
    modules = {}
    if initrd is not None:
        writes.append((MODLIST_ADDRESS, MODULE_ENTRY.pack(initrd[0], initrd[1], 0, 0)))
        modules = {"nr_modules": 1, "modlist_paddr": MODLIST_ADDRESS}
    start_info = StartInfo(cmdline_paddr=CMDLINE_ADDRESS, rsdp_paddr=layout.RSDP_ADDRESS,
                          memmap_paddr=MEMMAP_ADDRESS, memmap_entries=len(memory_map), **modules)
    writes.append((START_INFO_ADDRESS, start_info.pack()))
    return Firmware(writes, START_INFO_ADDRESS, layout.RSDP_ADDRESS, memory_map)


__all__ = ["CMDLINE_MAX", "Firmware", "FirmwareView", "build_firmware"]
