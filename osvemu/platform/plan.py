"""The plan a machine is built from: its RAM, and for each kernel the cores
it owns, the guest-physical space they see, what its firmware describes,
its image and command line; the routing policies of the APIC bus (for ICR
writes and for I/O APIC messages); and the monitor, if any.

Every kernel has its own devices -- COM1, the RTC and, where its firmware
view names one, the I/O APIC at ``layout.IOAPIC_BASE`` -- which the machine
builds from its placement; no device is shared between kernels.  The bare
machine is the plan with one kernel owning everything and no monitor
(:func:`bare_plan`), so its kernel's I/O APIC is the machine's; OSV
computes a plan with one kernel per partition
(:func:`osvemu.osv.plan.osv_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

from osvemu.cpu.memory import Mapping, MemoryBank, MemoryView
from osvemu.image import KernelImage
from osvemu.platform import layout
from osvemu.platform.apicbus import IoRoutingPolicy, RoutingPolicy, bare_machine_io_policy, bare_machine_policy
from osvemu.platform.firmware import FirmwareView
from osvemu.platform.monitor import Monitor
from osvemu.platform.topology import Topology


class MachineMemory:
    """The machine's physical RAM: one host bank behind every backed range."""

    def __init__(self, topology: Topology) -> None:
        self._ranges = layout.backed_ranges(topology.memory_size)
        self.bank = MemoryBank(sum(size for _, size in self._ranges), "ram")

    def identity_mappings(self) -> list[Mapping]:
        """Guest-physical = machine-physical for every backed range (the bare machine)."""
        mappings, offset = [], 0
        for base, size in self._ranges:
            mappings.append(Mapping(base, size, self.bank, offset))
            offset += size
        return mappings

    def offset_of(self, physical: int) -> int:
        """Offset of a machine-physical RAM address in the bank."""
        offset = 0
        for base, size in self._ranges:
            if base <= physical < base + size:
                return offset + physical - base
            offset += size
        raise ValueError(f"{physical:#x} is not machine RAM")


@dataclass(frozen=True)
class KernelPlacement:
    """One kernel's share of the machine."""

    name: str
    apic_ids: tuple[int, ...]  # its cores; the first is its boot CPU
    view: MemoryView  # the guest-physical space its cores see
    firmware: FirmwareView  # the machine as its firmware tables describe it
    image_ram: tuple[tuple[int, int], ...]  # guest-physical (base, size) an image may occupy
    cmdline: str = ""
    image: KernelImage | None = None  # None: code is placed by hand (snippets)
    labelled: bool = False  # console lines carry "[name] "
    restarts: int = 0  # how many times it is booted again after it ends
    shared_ranges: tuple[tuple[int, int], ...] = ()  # guest-physical (base, size) shared with others: kept on restart
    initrd: bytes | None = None  # an initial RAM disk, handed over as PVH module 0


@dataclass(frozen=True)
class MachinePlan:
    topology: Topology
    memory: MachineMemory
    kernels: tuple[KernelPlacement, ...]
    policy: RoutingPolicy  # ICR writes
    io_policy: IoRoutingPolicy = bare_machine_io_policy  # I/O APIC messages
    monitor: Monitor | None = None


def bare_plan(topology: Topology, cmdline: str = "", image: KernelImage | None = None,
              initrd: bytes | None = None) -> MachinePlan:
    """One kernel owns the whole machine, routed as the hardware routes."""
    memory = MachineMemory(topology)
    firmware = FirmwareView.whole_machine(topology)
    kernel = KernelPlacement("machine", tuple(cpu.apic_id for cpu in topology.cpus),
                             MemoryView(memory.identity_mappings()), firmware,
                             tuple(layout.ram_ranges(topology.memory_size)), cmdline, image, initrd=initrd)
    return MachinePlan(topology, memory, (kernel,), bare_machine_policy)


__all__ = ["KernelPlacement", "MachineMemory", "MachinePlan", "bare_plan"]
