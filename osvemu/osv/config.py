"""Partition configuration: which kernel gets which cores, memory and
channels.  Read from TOML, or made from the machine (one kernel per socket,
the paper's layout, or ``--kernels N`` even shares), and validated with one
clear ConfigError per problem.

    [machine]
    sockets = 4
    cores_per_socket = 8
    memory = "2G"

    [[kernel]]
    name = "k0"
    image = "guests/minilinux.elf"
    cmdline = "quiet"
    cores = [0, "1-7"]            # APIC IDs or ranges of them
    memory = { node = 0 }         # or { size = "256M" } or { ranges = [["0x100000", "0x20000000"]] }
    on_violation = "log"          # log: refuse and continue; stop: stop this kernel

    [[channel]]
    name = "results"
    kernels = ["k0", "k1"]
    size = "64K"
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from osvemu.errors import ConfigError
from osvemu.platform import layout
from osvemu.platform.topology import MemoryRange, Topology

MACHINE_KEYS = {"sockets", "cores_per_socket", "memory"}
KERNEL_KEYS = {"name", "image", "cmdline", "cores", "memory", "on_violation"}
CHANNEL_KEYS = {"name", "kernels", "size"}
POLICIES = ("log", "stop")
DEFAULT_CHANNEL_SIZE = 64 * layout.KiB
MAX_KERNELS = 16


@dataclass(frozen=True)
class KernelPlan:
    index: int
    name: str
    image: str
    cmdline: str
    apic_ids: tuple[int, ...]
    memory: tuple[MemoryRange, ...]  # machine-physical RAM, above 1 MiB
    on_violation: str = "log"

    @property
    def ram_bytes(self) -> int:
        return sum(r.size for r in self.memory)


@dataclass(frozen=True)
class ChannelPlan:
    index: int
    name: str
    size: int
    kernels: tuple[int, ...]  # kernel indexes


@dataclass(frozen=True)
class OsvConfig:
    topology: Topology
    kernels: tuple[KernelPlan, ...]
    channels: tuple[ChannelPlan, ...] = field(default_factory=tuple)


def allocatable(topology: Topology) -> list[MemoryRange]:
    """Machine RAM a kernel can own: everything above the first MiB (each
    kernel has its own private low MiB instead)."""
    out = []
    for rng in topology.memory:
        lo = max(rng.base, layout.LOW_MEMORY_END)
        if lo < rng.end:
            out.append(MemoryRange(lo, rng.end - lo, rng.node))
    return out


def default_config(topology: Topology, image: str, cmdline: str = "", kernels: int | None = None) -> OsvConfig:
    """One kernel per socket (the paper's layout), or ``kernels`` even shares
    of the cores with memory in proportion; every kernel in one "results"
    channel."""
    count = kernels or topology.sockets
    cpus = topology.cpus
    if count < 1 or count > len(cpus) or len(cpus) % count:
        raise ConfigError(f"--kernels {count}: the machine's {len(cpus)} cores do not split evenly into "
                          f"{count} kernels")
    if count > MAX_KERNELS:
        raise ConfigError(f"--kernels {count}: at most {MAX_KERNELS} kernels")
    per = len(cpus) // count
    ram = allocatable(topology)
    groups = [cpus[index * per:(index + 1) * per] for index in range(count)]
    plans = []
    for index, group in enumerate(groups):
        nodes = sorted({c.node for c in group})
        sharing = [i for i, g in enumerate(groups) if {c.node for c in g} == set(nodes)]
        memory: list[MemoryRange] = []
        for node in nodes:
            node_ram = [r for r in ram if r.node == node]
            total = sum(r.size for r in node_ram)
            share = (total // len(sharing)) & ~(layout.MiB - 1)
            memory += _take(node_ram, sharing.index(index) * share, share)
        plans.append(KernelPlan(index, f"k{index}", image, cmdline, tuple(c.apic_id for c in group), tuple(memory)))
    channels = (ChannelPlan(0, "results", DEFAULT_CHANNEL_SIZE, tuple(range(count))),) if count > 1 else ()
    config = OsvConfig(topology, tuple(plans), channels)
    validate(config)
    return config


def _take(ram: list[MemoryRange], offset: int, size: int) -> list[MemoryRange]:
    """``size`` bytes of the concatenated ranges, starting ``offset`` bytes in."""
    out, position = [], 0
    for rng in ram:
        lo, hi = max(rng.base, rng.base + offset - position), min(rng.end, rng.base + offset + size - position)
        if lo < hi:
            out.append(MemoryRange(lo, hi - lo, rng.node))
        position += rng.size
    return out


def load_config(path: str | Path, default_image: str | None = None) -> OsvConfig:
    """The layout a TOML file describes; ``default_image`` is the image of
    kernels that name none (the command line's IMAGE)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    unknown = set(data) - {"machine", "kernel", "channel"}
    if unknown:
        raise ConfigError(f"{path}: unknown section {min(unknown)!r}")
    machine = data.get("machine", {})
    _no_unknown(machine, MACHINE_KEYS, f"{path}: [machine]")
    topology = Topology(machine.get("sockets", 4), machine.get("cores_per_socket", 8),
                        layout.parse_size(machine.get("memory", "2G"), f"{path}: [machine]"))
    kernels_data = data.get("kernel", [])
    if not kernels_data:
        raise ConfigError(f"{path}: no [[kernel]] defined")
    plans = _kernel_plans(kernels_data, topology, path, default_image)
    names = {plan.name: plan.index for plan in plans}
    config = OsvConfig(topology, tuple(plans), tuple(_channel_plans(data.get("channel", []), names, path)))
    validate(config)
    return config


def _kernel_plans(kernels_data: list, topology: Topology, path: Path, default_image: str | None) -> list[KernelPlan]:
    free = allocatable(topology)
    plans = []
    names: dict[str, int] = {}
    owner: dict[int, str] = {}
    for index, spec in enumerate(kernels_data):
        where = f"{path}: kernel {spec.get('name', index)!r}"
        _no_unknown(spec, KERNEL_KEYS, where)
        name = str(spec.get("name", f"k{index}"))
        if name in names:
            raise ConfigError(f"{where}: the name is used twice")
        names[name] = index
        image = spec.get("image", default_image)
        if image is None:
            raise ConfigError(f"{where}: no image")
        if not Path(image).is_file():
            raise ConfigError(f"{where}: image {image} is not a readable file")
        apics = _cores(spec.get("cores", []), topology, where)
        for apic in apics:
            if apic in owner:
                raise ConfigError(f"{where}: core {apic} is already given to kernel {owner[apic]!r}")
            owner[apic] = name
        memory = _memory(spec.get("memory"), topology, apics, free, where)
        policy = spec.get("on_violation", "log")
        if policy not in POLICIES:
            raise ConfigError(f"{where}: on_violation must be log or stop, not {policy!r}")
        plans.append(KernelPlan(index, name, str(image), str(spec.get("cmdline", "")), apics, tuple(memory), policy))
    return plans


def _channel_plans(channels_data: list, names: dict[str, int], path: Path) -> list[ChannelPlan]:
    channels = []
    for index, spec in enumerate(channels_data):
        where = f"{path}: channel {spec.get('name', index)!r}"
        _no_unknown(spec, CHANNEL_KEYS, where)
        members = []
        for name in spec.get("kernels", []):
            if name not in names:
                raise ConfigError(f"{where}: no kernel named {name!r}")
            members.append(names[name])
        if len(members) < 2:
            raise ConfigError(f"{where}: a channel needs at least two kernels")
        size = layout.parse_size(spec.get("size", DEFAULT_CHANNEL_SIZE), where, "size")
        if size <= 0 or size % layout.PAGE_SIZE or size > 16 * layout.MiB:
            raise ConfigError(f"{where}: size must be a multiple of 4 KiB up to 16 MiB")
        channels.append(ChannelPlan(index, str(spec.get("name", f"ch{index}")), size, tuple(members)))
    return channels


def _no_unknown(table: dict, known: set[str], where: str) -> None:
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key {min(unknown)!r}")


def _cores(values: list, topology: Topology, where: str) -> tuple[int, ...]:
    valid = {c.apic_id for c in topology.cpus}
    apics: list[int] = []
    for value in values:
        if isinstance(value, int):
            chosen = [value]
        else:
            lo, sep, hi = str(value).partition("-")
            try:
                chosen = list(range(int(lo, 0), int(hi, 0) + 1)) if sep else [int(lo, 0)]
            except ValueError:
                raise ConfigError(f"{where}: core {value!r} is neither an APIC ID nor a range") from None
        for apic in chosen:
            if apic not in valid:
                raise ConfigError(f"{where}: core {apic} is not an APIC ID of this machine")
            if apic in apics:
                raise ConfigError(f"{where}: core {apic} is listed twice")
            apics.append(apic)
    if not apics:
        raise ConfigError(f"{where}: no cores")
    return tuple(apics)


def _memory(spec, topology: Topology, apics: tuple[int, ...], free: list[MemoryRange], where: str) -> list[MemoryRange]:
    if spec is None:
        nodes = {topology.cpu_by_apic_id(a).node for a in apics}
        spec = {"node": min(nodes)}
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: memory must be one of {{node = N}}, {{size = \"256M\"}}, {{ranges = [...]}}")
    kind, value = next(iter(spec.items()))
    if kind == "node":
        if value not in topology.nodes:
            raise ConfigError(f"{where}: memory node {value} does not exist")
        wanted = [r for r in free if r.node == value]
        if not wanted:
            raise ConfigError(f"{where}: node {value}'s memory is already given to another kernel")
    elif kind == "size":
        size = layout.parse_size(value, where)
        if size < 8 * layout.MiB or size % layout.MiB:
            raise ConfigError(f"{where}: memory size must be a multiple of 1 MiB and at least 8 MiB")
        nodes = {topology.cpu_by_apic_id(a).node for a in apics}
        wanted, left = [], size
        for rng in sorted(free, key=lambda r: (r.node not in nodes, r.base)):
            take = min(left, rng.size)
            if take:
                wanted.append(MemoryRange(rng.base, take, rng.node))
                left -= take
        if left:
            raise ConfigError(f"{where}: not enough free memory for {value}")
    elif kind == "ranges":
        wanted = []
        for pair in value:
            try:
                base, end = (int(str(x), 0) for x in pair)
            except (ValueError, TypeError):
                raise ConfigError(f"{where}: memory range {pair!r} is not [base, end]") from None
            if base % layout.PAGE_SIZE or end % layout.PAGE_SIZE or end <= base:
                raise ConfigError(f"{where}: memory range {base:#x}-{end:#x} is empty or not page aligned")
            inside = [r for r in allocatable(topology) if r.base <= base and end <= r.end]
            if not inside:
                raise ConfigError(f"{where}: memory range {base:#x}-{end:#x} is outside the machine's RAM "
                                  "above 1 MiB")
            wanted.append(MemoryRange(base, end - base, inside[0].node))
    else:
        raise ConfigError(f"{where}: unknown memory kind {kind!r}")
    for rng in wanted:
        if not any(f.base <= rng.base and rng.end <= f.end for f in free):
            raise ConfigError(f"{where}: memory {rng.base:#x}-{rng.end:#x} overlaps another kernel's")
        _remove(free, rng)
    return wanted


def _remove(free: list[MemoryRange], taken: MemoryRange) -> None:
    for index, rng in enumerate(free):
        if rng.base <= taken.base and taken.end <= rng.end:
            pieces = [MemoryRange(rng.base, taken.base - rng.base, rng.node),
                      MemoryRange(taken.end, rng.end - taken.end, rng.node)]
            free[index:index + 1] = [p for p in pieces if p.size]
            return


def validate(config: OsvConfig) -> None:
    """Cross-kernel checks (also run on generated layouts)."""
    seen: dict[int, str] = {}
    for plan in config.kernels:
        if not plan.apic_ids:
            raise ConfigError(f"kernel {plan.name!r}: no cores")
        if plan.ram_bytes < 8 * layout.MiB:
            raise ConfigError(f"kernel {plan.name!r}: less than 8 MiB of memory")
        for apic in plan.apic_ids:
            if apic in seen:
                raise ConfigError(f"kernel {plan.name!r}: core {apic} is also given to kernel {seen[apic]!r}")
            seen[apic] = plan.name
    ranges = sorted((r.base, r.end, p.name) for p in config.kernels for r in p.memory)
    for (_, end, name), (base, _, other) in itertools.pairwise(ranges):
        if base < end:
            raise ConfigError(f"kernels {name!r} and {other!r} overlap in memory at {base:#x}")


__all__ = ["ChannelPlan", "KernelPlan", "OsvConfig", "default_config", "load_config", "validate"]
