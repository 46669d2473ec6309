"""Machine topology: sockets, cores, APIC IDs, NUMA nodes and their memory.

An AMD Family 10h Opteron numbers its cores' initial APIC IDs as
``(socket << core_bits) | core`` where ``core_bits`` is CPUID
Fn8000_0008_ECX[ApicIdCoreIdSize] (AMD BKDG for Family 10h, 2.9.2 "Initial
APIC ID").  Each socket is one NUMA node with its own memory controller, so
the RAM is split evenly across the nodes by physical address.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osvemu.errors import ConfigError
from osvemu.platform import layout

#: xAPIC destinations are 8 bits and 0xFF is the broadcast ID.
MAX_APIC_ID = 0xFE
#: The most sockets, and cores per socket, the APIC ID space can number
#: (with one core per socket, or one socket); their product is bounded by
#: the APIC ID of the last core.
MAX_SOCKETS = MAX_APIC_ID + 1
MAX_CORES_PER_SOCKET = MAX_APIC_ID + 1
#: The smallest machine: room for a kernel (an image, page tables, a heap)
#: above the first MiB, as on the smallest machine the tests boot.
MIN_MEMORY = 16 * layout.MiB
#: The largest machine: 1 TiB, far below the 52-bit physical address limit;
#: the host backs it lazily, or refuses it in one line when it cannot.
MAX_MEMORY = 1 << 40


@dataclass(frozen=True)
class Cpu:
    """One core of the machine."""

    index: int  # position in the machine, 0-based; also the ACPI processor UID
    apic_id: int
    socket: int
    core: int

    @property
    def node(self) -> int:
        return self.socket


@dataclass(frozen=True)
class MemoryRange:
    """A guest-physical RAM range belonging to one NUMA node."""

    base: int
    size: int
    node: int

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class Topology:
    sockets: int = 4
    cores_per_socket: int = 8
    memory_size: int = 2 * layout.GiB
    cpus: tuple[Cpu, ...] = field(init=False)
    memory: tuple[MemoryRange, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.sockets <= MAX_SOCKETS:
            raise ConfigError(f"--sockets must be 1..{MAX_SOCKETS}, not {self.sockets}")
        if not 1 <= self.cores_per_socket <= MAX_CORES_PER_SOCKET:
            raise ConfigError(f"--cores-per-socket must be 1..{MAX_CORES_PER_SOCKET}, not {self.cores_per_socket}")
        highest = ((self.sockets - 1) << self.core_id_bits) | (self.cores_per_socket - 1)
        if highest > MAX_APIC_ID:
            raise ConfigError(
                f"{self.sockets} sockets x {self.cores_per_socket} cores needs APIC ID {highest}, "
                f"above the xAPIC limit {MAX_APIC_ID}"
            )
        if self.memory_size % layout.PAGE_SIZE:
            raise ConfigError(f"memory size {self.memory_size} is not a multiple of 4 KiB")
        min_memory = max(MIN_MEMORY, self.sockets * layout.MiB * 2)
        if self.memory_size < min_memory:
            raise ConfigError(f"memory size {self.memory_size} is below the minimum {min_memory >> 20} MiB "
                              f"(16 MiB, and 2 MiB per socket)")
        if self.memory_size > MAX_MEMORY:
            raise ConfigError(f"memory size {self.memory_size} is above the maximum {MAX_MEMORY >> 40} TiB")
        cpus = tuple(
            Cpu(index=s * self.cores_per_socket + c, apic_id=(s << self.core_id_bits) | c, socket=s, core=c)
            for s in range(self.sockets)
            for c in range(self.cores_per_socket)
        )
        object.__setattr__(self, "cpus", cpus)
        object.__setattr__(self, "memory", tuple(_split_by_node(self.memory_size, self.sockets)))

    @property
    def core_id_bits(self) -> int:
        """CPUID Fn8000_0008_ECX[15:12] ApicIdCoreIdSize."""
        return max(0, (self.cores_per_socket - 1).bit_length())

    @property
    def cpu_count(self) -> int:
        return len(self.cpus)

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(range(self.sockets))

    def cpu_by_apic_id(self, apic_id: int) -> Cpu | None:
        for cpu in self.cpus:
            if cpu.apic_id == apic_id:
                return cpu
        return None


def _split_by_node(memory_size: int, nodes: int) -> list[MemoryRange]:
    """Split RAM into ``nodes`` equal shares, walking the RAM ranges in address order."""
    share = (memory_size // nodes) & ~(layout.PAGE_SIZE - 1)
    result: list[MemoryRange] = []
    node, left_in_node = 0, share
    # RAM "capacity" counts the first MiB as memory, like layout.ram_ranges.
    for base, size in _capacity_ranges(memory_size):
        while size:
            take = size if node == nodes - 1 else min(size, left_in_node)
            for ram_base, ram_size in _ram_within(base, take):
                result.append(MemoryRange(ram_base, ram_size, node))
            base, size, left_in_node = base + take, size - take, left_in_node - take
            if left_in_node == 0 and node < nodes - 1:
                node, left_in_node = node + 1, share
    return result


def _capacity_ranges(memory_size: int) -> list[tuple[int, int]]:
    return layout.backed_ranges(memory_size)


def _ram_within(base: int, size: int) -> list[tuple[int, int]]:
    """The parts of [base, base+size) that are RAM (the 640K-1M hole removed)."""
    out = []
    for ram_base, ram_size in layout.ram_ranges(1 << 62):
        lo, hi = max(base, ram_base), min(base + size, ram_base + ram_size)
        if lo < hi:
            out.append((lo, hi - lo))
    return out
