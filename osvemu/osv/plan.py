"""OSV's plan for the machine: one kernel per partition.

Each kernel gets a guest-physical address space built from ranges mapped
onto machine memory, as nested paging does in the paper: a private low MiB
(its own firmware tables, MP floating pointer and AP trampoline page), its
RAM from 1 MiB up, and its shared channels high in the 32-bit hole.  Its
cores map exactly that; anything else is a memory violation.  Its firmware
describes only its cores, its memory and its own devices: no device is
shared (one IOAPIC would be a register file every kernel could write: a
covert channel), so each kernel has a virtual IOAPIC of its own at the usual
address, with its own COM1 on pin 4.  ICR writes are routed by
:func:`osvemu.osv.ipi_policy.route_ipi` and that IOAPIC's messages by
:func:`osvemu.osv.ipi_policy.route_io_interrupt`, which let them reach only
the kernel's own cores; the monitor (:class:`osvemu.osv.monitor.OsvMonitor`)
owns the hypercalls and violations.  ``monitor_mode="trap-all"`` installs
:class:`osvemu.osv.trapall.TrapAllMonitor` instead: the same machine, with
an exit for everything a full-virtualization VMM traps.
"""

from __future__ import annotations

from osvemu.cpu.memory import Mapping, MemoryBank, MemoryView
from osvemu.errors import ConfigError, ImageError
from osvemu.image import KernelImage, load_image
from osvemu.osv.config import MAX_GUEST_RAM, OsvConfig
from osvemu.osv.ipi_policy import PartitionLayout, make_io_policy, make_policy
from osvemu.osv.monitor import ChannelPlacement, OsvMonitor, PartitionInfo
from osvemu.osv.trapall import TrapAllMonitor
from osvemu.platform import layout
from osvemu.platform.firmware import FirmwareView
from osvemu.platform.initrd import load_initrd
from osvemu.platform.plan import KernelPlacement, MachineMemory, MachinePlan
from osvemu.platform.topology import MemoryRange

#: The monitors a plan can install, by the name ``--monitor`` takes.
MONITOR_MODES: dict[str, type[OsvMonitor]] = {"osv": OsvMonitor, "trap-all": TrapAllMonitor}


def osv_plan(config: OsvConfig, images: dict[str, KernelImage] | None = None,
             monitor_mode: str = "osv") -> MachinePlan:
    """The machine ``config`` describes, with OSV installed.  ``images``
    (by kernel name) overrides loading each kernel's image file;
    ``monitor_mode`` is "osv" or "trap-all" (MONITOR_MODES)."""
    monitor_class = MONITOR_MODES.get(monitor_mode)
    if monitor_class is None:
        raise ConfigError(f"--monitor {monitor_mode!r}: the monitors are {', '.join(MONITOR_MODES)}")
    memory = MachineMemory(config.topology)
    channels = _place_channels(config)
    loaded: dict[str, KernelImage] = {}
    initrds: dict[str, bytes] = {}  # one copy of each file's bytes; each kernel's memory gets its own
    kernels, partitions = [], []
    for plan in config.kernels:
        if plan.ram_bytes > MAX_GUEST_RAM:
            raise ImageError(f"kernel {plan.name!r}: {plan.ram_bytes >> 20} MiB of RAM is more than a "
                             f"partition's {MAX_GUEST_RAM >> 20} MiB below the channels")
        mappings = [Mapping(0, layout.LOW_MEMORY_END, MemoryBank(layout.LOW_MEMORY_END, f"{plan.name} low memory"), 0)]
        ram, cursor = [], layout.LOW_MEMORY_END
        for rng in plan.memory:
            mappings.append(Mapping(cursor, rng.size, memory.bank, memory.offset_of(rng.base)))
            ram.append(MemoryRange(cursor, rng.size, rng.node))
            cursor += rng.size
        own_channels = tuple(channel for channel in channels if plan.index in channel.kernels)
        mappings += [Mapping(channel.gpa, channel.size, channel.bank, 0) for channel in own_channels]
        partition = PartitionInfo(plan, tuple(ram), own_channels)
        image = (images or {}).get(plan.name) or loaded.get(plan.image)
        if image is None and plan.image:  # no image: code is placed by hand (snippets)
            image = loaded[plan.image] = load_image(plan.image)
        if plan.initrd and plan.initrd not in initrds:
            initrds[plan.initrd] = load_initrd(plan.initrd)
        kernels.append(KernelPlacement(plan.name, plan.apic_ids, MemoryView(mappings), _firmware_view(config, partition),
                                       partition.image_ram, plan.cmdline, image, labelled=True,
                                       restarts=plan.restarts,
                                       shared_ranges=tuple((c.gpa, c.size) for c in own_channels),
                                       initrd=initrds.get(plan.initrd)))
        partitions.append(partition)
    owner = PartitionLayout({apic: plan.index for plan in config.kernels for apic in plan.apic_ids})
    return MachinePlan(config.topology, memory, tuple(kernels), make_policy(owner), make_io_policy(owner),
                       monitor=monitor_class(tuple(partitions), config.violation_records))


def _place_channels(config: OsvConfig) -> list[ChannelPlacement]:
    """Each channel's memory at its guest-physical address (OsvConfig.channel_addresses)."""
    return [ChannelPlacement(channel.name, gpa, channel.size, channel.kernels,
                             MemoryBank(channel.size, f"channel {channel.name}", shared=True), channel.notify_vectors)
            for channel, gpa in zip(config.channels, config.channel_addresses)]


def _firmware_view(config: OsvConfig, partition: PartitionInfo) -> FirmwareView:
    """The machine as this kernel is told about it: its cores, its RAM at
    its guest-physical addresses (the low 640 KiB on its first node), its
    channels reserved, and its own IOAPIC, with the first APIC ID its
    cores leave free."""
    cpus = tuple(config.topology.cpu_by_apic_id(apic) for apic in partition.plan.apic_ids)
    low = MemoryRange(0, layout.CONVENTIONAL_END, partition.ram[0].node)
    reserved = tuple((channel.gpa, channel.size) for channel in partition.channels)
    return FirmwareView(cpus, cpus[0].apic_id, (low,) + partition.ram, FirmwareView.free_apic_id(cpus), reserved)


__all__ = ["MAX_GUEST_RAM", "MONITOR_MODES", "osv_plan"]
