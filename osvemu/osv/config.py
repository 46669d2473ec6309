"""Partition configuration: which kernel gets which cores, memory and
channels.  Read from TOML, or made from the machine (one kernel per socket,
the paper's layout, or ``--kernels N`` even shares).  Every value is checked
by the schema (:mod:`osvemu.osv.schema`: types, bounds, known keys) before
anything is built, then the layout as a whole (cores and memory owned once,
channels naming existing kernels and fitting their window); each problem is
one ConfigError naming the file and the key.

    [machine]                     # optional; these are the defaults
    sockets = 4                   # 1..255, and the last APIC ID must be below 0xFF
    cores_per_socket = 8
    memory = "2G"                 # 16M..1T, a multiple of 4K

    [[kernel]]                    # 1..16 of them
    name = "k0"                   # default "k<index>"
    image = "../guests/minilinux.elf"   # relative to this file; default: the command line's IMAGE
    cmdline = "quiet"
    cores = [0, "1-7"]            # APIC IDs or ranges of them; the first is the boot CPU
    memory = { node = 0 }         # or { size = "256M" } or { ranges = [["0x100000", "0x20000000"]] }
    on_violation = "log"          # log: refuse and continue; stop: stop this kernel
    restart = "never"             # or 0..100: how many times it may be booted again after it ends

    [[channel]]                   # shared memory between kernels, from 0xE0000000 up
    name = "results"
    kernels = ["k0", "k1"]
    size = "64K"                  # 4K..16M, a multiple of 4K; all channels below the IOAPIC
    notify = [248]                # vectors ("lo-hi" ranges too, 32..255) members may NOTIFY each other with

    [monitor]
    violation_records = 64        # violations kept in full at each end of the record

Cores no kernel owns stay offline.  Memory: ``node`` is the free RAM of
that node (by default the lowest node of the kernel's cores), up to what a
partition holds below its channels (MAX_GUEST_RAM); ``size`` is taken from
free RAM, the kernel's own nodes first; ``ranges`` are machine-physical.
"""

from __future__ import annotations

import itertools
import json
import os
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osvemu.errors import ConfigError
from osvemu.osv import schema
from osvemu.osv.hypercalls import FIRST_NOTIFY_VECTOR
from osvemu.osv.schema import Key, Table, Where, shown
from osvemu.platform import layout
from osvemu.platform.firmware import CMDLINE_MAX
from osvemu.platform.topology import (
    MAX_APIC_ID,
    MAX_CORES_PER_SOCKET,
    MAX_MEMORY,
    MAX_SOCKETS,
    MIN_MEMORY,
    MemoryRange,
    Topology,
)

POLICIES = ("log", "stop")
MAX_KERNELS = 16
MAX_CHANNELS = 64
DEFAULT_CHANNEL_SIZE = 64 * layout.KiB
MAX_CHANNEL_SIZE = 16 * layout.MiB
#: Channels are placed one after another from CHANNEL_BASE, in the 32-bit
#: hole, and must end below the IOAPIC page (the local APIC page is above it).
CHANNEL_BASE = 0xE000_0000
CHANNEL_LIMIT = layout.IOAPIC_BASE
#: A kernel's guest RAM runs from 1 MiB up to its channels.
MAX_GUEST_RAM = CHANNEL_BASE - layout.LOW_MEMORY_END
MIN_GUEST_RAM = 8 * layout.MiB
NOTIFY_VECTORS = range(FIRST_NOTIFY_VECTOR, 256)
DEFAULT_VIOLATION_RECORDS = 64
MAX_VIOLATION_RECORDS = 100_000
#: A partition configuration is a few hundred bytes; anything this large is not one.
MAX_CONFIG_BYTES = 1 << 20
MAX_PATH = 4096
#: A kernel's RAM ranges each take an entry of its memory map and SRAT.
MAX_MEMORY_RANGES = 16


@dataclass(frozen=True)
class KernelPlan:
    index: int
    name: str
    image: str
    cmdline: str
    apic_ids: tuple[int, ...]
    memory: tuple[MemoryRange, ...]  # machine-physical RAM, above 1 MiB
    on_violation: str = "log"
    restarts: int = 0  # times it may be booted again after it ends (0: never)
    initrd: str = ""  # an initial RAM disk file ("": none)

    @property
    def ram_bytes(self) -> int:
        return sum(r.size for r in self.memory)


@dataclass(frozen=True)
class ChannelPlan:
    index: int
    name: str
    size: int
    kernels: tuple[int, ...]  # kernel indexes
    notify_vectors: tuple[int, ...] = ()  # sorted: what members may NOTIFY each other with


@dataclass(frozen=True)
class OsvConfig:
    topology: Topology
    kernels: tuple[KernelPlan, ...]
    channels: tuple[ChannelPlan, ...] = field(default_factory=tuple)
    violation_records: int = DEFAULT_VIOLATION_RECORDS  # kept in full at each end of the record

    @property
    def offline_apic_ids(self) -> tuple[int, ...]:
        """The cores no kernel owns, in machine order: they are never started."""
        owned = {apic for plan in self.kernels for apic in plan.apic_ids}
        return tuple(cpu.apic_id for cpu in self.topology.cpus if cpu.apic_id not in owned)

    @property
    def channel_addresses(self) -> tuple[int, ...]:
        """Each channel's guest-physical base, the same in every member: one
        after another from CHANNEL_BASE."""
        addresses, gpa = [], CHANNEL_BASE
        for channel in self.channels:
            addresses.append(gpa)
            gpa += channel.size
        return tuple(addresses)


def allocatable(topology: Topology) -> list[MemoryRange]:
    """Machine RAM a kernel can own: everything above the first MiB (each
    kernel has its own private low MiB instead)."""
    out = []
    for rng in topology.memory:
        lo = max(rng.base, layout.LOW_MEMORY_END)
        if lo < rng.end:
            out.append(MemoryRange(lo, rng.end - lo, rng.node))
    return out


# ---------------------------------------------------------------- generated layouts

def default_config(topology: Topology, image: str, cmdline: str = "", kernels: int | None = None,
                   initrd: str = "") -> OsvConfig:
    """One kernel per socket (the paper's layout), or ``kernels`` equal
    shares of the cores in machine order.  Each kernel gets RAM on the nodes
    of its cores in proportion to its cores there, so equal kernels get
    equal RAM and none overlap; every kernel is in one "results" channel,
    where any member may notify any other with any vector."""
    count = kernels or topology.sockets
    cpus = topology.cpus
    if count > MAX_KERNELS:
        raise ConfigError(f"--kernels {count}: at most {MAX_KERNELS} kernels")
    if count < 1 or count > len(cpus) or len(cpus) % count:
        raise ConfigError(f"--kernels {count}: the machine's {len(cpus)} cores do not split evenly into "
                          f"{count} kernels")
    per = len(cpus) // count
    groups = [cpus[index * per:(index + 1) * per] for index in range(count)]
    ram = allocatable(topology)
    cores_on = Counter(cpu.node for cpu in cpus)
    before: Counter[int] = Counter()  # cores of the kernels so far, by node
    plans = []
    for index, group in enumerate(groups):
        here = Counter(cpu.node for cpu in group)
        memory: list[MemoryRange] = []
        for node in sorted(here):
            node_ram = [r for r in ram if r.node == node]
            total = sum(r.size for r in node_ram)
            lo = _share_boundary(total, before[node], cores_on[node])
            hi = _share_boundary(total, before[node] + here[node], cores_on[node])
            memory += _take(node_ram, lo, hi - lo)
            before[node] += here[node]
        plans.append(KernelPlan(index, f"k{index}", image, cmdline, tuple(c.apic_id for c in group),
                                tuple(_at_most(memory, MAX_GUEST_RAM)), initrd=initrd))
    channels = (ChannelPlan(0, "results", DEFAULT_CHANNEL_SIZE, tuple(range(count)), tuple(NOTIFY_VECTORS)),) \
        if count > 1 else ()
    config = OsvConfig(topology, tuple(plans), channels)
    validate(config)
    return config


def _share_boundary(total: int, cores: int, node_cores: int) -> int:
    """Where the RAM of a node's first ``cores`` cores ends, MiB aligned."""
    return (total * cores // node_cores) & ~(layout.MiB - 1)


def _take(ram: list[MemoryRange], offset: int, size: int) -> list[MemoryRange]:
    """``size`` bytes of the concatenated ranges, starting ``offset`` bytes in."""
    out, position = [], 0
    for rng in ram:
        lo, hi = max(rng.base, rng.base + offset - position), min(rng.end, rng.base + offset + size - position)
        if lo < hi:
            out.append(MemoryRange(lo, hi - lo, rng.node))
        position += rng.size
    return out


def _at_most(ranges: list[MemoryRange], limit: int) -> list[MemoryRange]:
    """The first ``limit`` bytes of ``ranges``."""
    return _take(ranges, 0, limit)


# ---------------------------------------------------------------- the file's schema

def _memory_kind(value: Any, where: Where) -> tuple[str, Any]:
    """``{node = N}``, ``{size = "256M"}`` or ``{ranges = [[base, end], ...]}``."""
    forms = 'one of {node = N}, {size = "256M"}, {ranges = [["0x100000", "0x20000000"]]}'
    if not isinstance(value, Mapping):
        raise where.error(f"expected {forms}, got {shown(value)}")
    if len(value) != 1:
        keys = ", ".join(schema.printable(repr(key[:schema.SHOWN_LENGTH])) for key in list(value)[:4]) or "none"
        raise where.error(f"expected exactly one of node, size or ranges, got {keys}")
    kind, spec = next(iter(value.items()))
    if kind == "node":
        return kind, schema.integer(0, MAX_SOCKETS - 1)(spec, where.at("node"))
    if kind == "size":
        return kind, schema.size(MIN_GUEST_RAM, MAX_MEMORY, layout.MiB)(spec, where.at("size"))
    if kind == "ranges":
        inner = where.at("ranges")
        if not isinstance(spec, list) or not 1 <= len(spec) <= MAX_MEMORY_RANGES:
            raise inner.error(f"expected a list of 1..{MAX_MEMORY_RANGES} [base, end] pairs, got {shown(spec)}")
        pairs = []
        for pair in spec:
            if not isinstance(pair, list) or len(pair) != 2:
                raise inner.error(f"memory range {shown(pair)} is not [base, end]")
            pairs.append((schema.address(pair[0], inner), schema.address(pair[1], inner)))
        return kind, pairs
    raise where.error(f"unknown memory kind {schema.printable(repr(kind[:schema.SHOWN_LENGTH]))}: expected {forms}")


def _kernel_names(value: Any, where: Where) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_KERNELS:
        raise where.error(f"expected a list of up to {MAX_KERNELS} kernel names, got {shown(value)}")
    names = tuple(schema.name(item, where) for item in value)
    for one in names:
        if names.count(one) > 1:
            raise where.error(f"kernel {json.dumps(one)} is listed twice")
    return names


MACHINE = Table({
    "sockets": Key(schema.integer(1, MAX_SOCKETS), 4),
    "cores_per_socket": Key(schema.integer(1, MAX_CORES_PER_SOCKET), 8),
    "memory": Key(schema.size(MIN_MEMORY, MAX_MEMORY, layout.PAGE_SIZE), 2 * layout.GiB),
})
KERNEL = Table({
    "name": Key(schema.name, None),
    "image": Key(schema.text(MAX_PATH, "a file name", empty=False), None),
    "cmdline": Key(schema.text(CMDLINE_MAX, "a command line"), ""),
    "initrd": Key(schema.text(MAX_PATH, "a file name", empty=False), None),
    "cores": Key(schema.numbers(0, MAX_APIC_ID, "APIC ID", "APIC IDs"), hint='a list of APIC IDs or "lo-hi" ranges'),
    "memory": Key(_memory_kind, None),
    "on_violation": Key(schema.one_of(*POLICIES), "log"),
    "restart": Key(schema.restart, 0),
})
CHANNEL = Table({
    "name": Key(schema.name, None),
    "kernels": Key(_kernel_names, hint="the names of its member kernels"),
    "size": Key(schema.size(layout.PAGE_SIZE, MAX_CHANNEL_SIZE, layout.PAGE_SIZE), DEFAULT_CHANNEL_SIZE),
    "notify": Key(schema.numbers(NOTIFY_VECTORS.start, NOTIFY_VECTORS.stop - 1, "vector", "vectors"), ()),
})
MONITOR = Table({
    "violation_records": Key(schema.integer(1, MAX_VIOLATION_RECORDS), DEFAULT_VIOLATION_RECORDS),
})
SECTIONS = ("machine", "kernel", "channel", "monitor")


# ---------------------------------------------------------------- reading a file

def load_config(path: str | Path, default_image: str | None = None) -> OsvConfig:
    """The layout a TOML file describes.  Image paths in the file are
    relative to the file; ``default_image`` (the command line's IMAGE,
    relative to the working directory) is the image of kernels that name
    none."""
    path = Path(path)
    where = Where.file(str(path))
    data = _read_toml(path, where)
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise where.error(f"unknown section {schema.printable(repr(unknown[0][:schema.SHOWN_LENGTH]))} "
                          f"(known: {', '.join(SECTIONS)})")
    machine = MACHINE.read(data.get("machine", {}), where.at("[machine]"), "a [machine] table")
    try:
        topology = Topology(machine["sockets"], machine["cores_per_socket"], machine["memory"])
    except ConfigError as error:
        raise where.at("[machine]").error(str(error)) from None
    if "kernel" not in data:
        raise where.error("no [[kernel]] defined")
    kernel_specs = schema.tables(data["kernel"], where.at("kernel"), "[[kernel]]", MAX_KERNELS)
    if not kernel_specs:
        raise where.error("no [[kernel]] defined")
    plans = _kernel_plans(kernel_specs, topology, where, path.parent, default_image)
    channel_specs = schema.tables(data.get("channel", []), where.at("channel"), "[[channel]]", MAX_CHANNELS)
    channels = _channel_plans(channel_specs, {plan.name: plan.index for plan in plans}, where)
    monitor = MONITOR.read(data.get("monitor", {}), where.at("[monitor]"), "a [monitor] table")
    config = OsvConfig(topology, tuple(plans), tuple(channels), monitor["violation_records"])
    validate(config, str(where))
    return config


def _read_toml(path: Path, where: Where) -> dict:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise where.error("no such configuration file") from None
    except IsADirectoryError:
        raise where.error("is a directory, not a configuration file") from None
    except OSError as error:
        raise where.error(f"cannot read: {error.strerror}") from None
    except ValueError:  # a NUL in the name
        raise where.error("not a valid file name") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise where.error(f"larger than {MAX_CONFIG_BYTES >> 20} MiB: not a partition configuration")
    try:
        return tomllib.loads(raw.decode())
    except UnicodeDecodeError as error:
        raise where.error(f"not UTF-8 text (byte {error.start})") from None
    except RecursionError:
        raise where.error("not valid TOML: nested too deeply") from None
    except ValueError as error:  # TOMLDecodeError, or an integer too long to convert
        raise where.error(f"not valid TOML: {schema.printable(str(error))[:200]}") from None


def _label(spec: Mapping, kind: str, index: int) -> str:
    """``kernel "A"`` when the table has a valid name, else ``kernel 2``."""
    value = spec.get("name")
    if isinstance(value, str) and value and len(value) <= schema.MAX_NAME and value.isprintable():
        return f"{kind} {json.dumps(value)}"
    return f"{kind} {index}"


def _kernel_plans(specs: list[Mapping], topology: Topology, file: Where, base: Path,
                  default_image: str | None) -> list[KernelPlan]:
    free = allocatable(topology)
    valid = {cpu.apic_id for cpu in topology.cpus}
    plans: list[KernelPlan] = []
    owner: dict[int, str] = {}
    for index, spec in enumerate(specs):
        where = file.at(_label(spec, "kernel", index))
        values = KERNEL.read(spec, where)
        name = values["name"] or f"k{index}"
        if any(plan.name == name for plan in plans):
            raise where.at("name").error(f"the name {json.dumps(name)} is used twice")
        image = _image(values["image"], base, default_image, where.at("image"))
        apics = values["cores"]
        if not apics:
            raise where.at("cores").error('no cores (give a list of APIC IDs or "lo-hi" ranges)')
        for apic in apics:
            if apic not in valid:
                raise where.at("cores").error(f"core {apic} is not an APIC ID of this machine "
                                              f"(it has {layout.number_runs(sorted(valid))})")
            if apic in owner:
                raise where.at("cores").error(f"core {apic} is already given to kernel {json.dumps(owner[apic])}")
            owner[apic] = name
        memory = _memory(values["memory"], topology, apics, free, where.at("memory"))
        initrd = "" if values["initrd"] is None else _readable_file(str(base / values["initrd"]), "initrd",
                                                                    where.at("initrd"))
        plans.append(KernelPlan(index, name, image, values["cmdline"], apics, tuple(memory),
                                values["on_violation"], values["restart"], initrd))
    return plans


def _image(value: str | None, base: Path, default_image: str | None, where: Where) -> str:
    """The image file: ``value`` relative to the configuration's directory, or
    the command line's IMAGE."""
    if value is None:
        if default_image is None:
            raise where.error("required: this kernel names no image and the command line gives no IMAGE")
        image = default_image
    else:
        image = str(base / value)
    return _readable_file(image, "image", where)


def _readable_file(path: str, what: str, where: Where) -> str:
    try:
        readable = Path(path).is_file() and os.access(path, os.R_OK)
    except (OSError, ValueError):
        readable = False
    if not readable:
        raise where.error(f"{what} {schema.printable(path)} is not a readable file")
    return path


def _memory(spec: tuple[str, Any] | None, topology: Topology, apics: tuple[int, ...], free: list[MemoryRange],
            where: Where) -> list[MemoryRange]:
    nodes = sorted({topology.cpu_by_apic_id(a).node for a in apics})
    kind, value = spec if spec is not None else ("node", nodes[0])
    if kind == "node":
        if value not in topology.nodes:
            raise where.error(f"memory node {value} does not exist (the nodes are 0..{topology.sockets - 1})")
        wanted = _at_most([r for r in free if r.node == value], MAX_GUEST_RAM)
        if not wanted:
            raise where.error(f"node {value}'s memory is already given to another kernel "
                              '(kernels sharing a node need memory = { size = "..." })')
    elif kind == "size":
        wanted, left = [], value
        for rng in sorted(free, key=lambda r: (r.node not in nodes, r.base)):
            take = min(left, rng.size)
            if take:
                wanted.append(MemoryRange(rng.base, take, rng.node))
                left -= take
        if left:
            raise where.error(f"not enough free memory for {value >> 20} MiB")
    else:
        wanted = []
        ram = allocatable(topology)
        for base, end in value:
            if base % layout.PAGE_SIZE or end % layout.PAGE_SIZE or end <= base:
                raise where.error(f"memory range {base:#x}-{end:#x} is empty or not page aligned")
            inside = [r for r in ram if r.base <= base and end <= r.end]
            if not inside:
                raise where.error(f"memory range {base:#x}-{end:#x} is outside the machine's RAM above 1 MiB")
            wanted.append(MemoryRange(base, end - base, inside[0].node))
    for rng in wanted:
        if not any(f.base <= rng.base and rng.end <= f.end for f in free):
            raise where.error(f"memory {rng.base:#x}-{rng.end:#x} overlaps another kernel's")
        _remove(free, rng)
    return wanted


def _remove(free: list[MemoryRange], taken: MemoryRange) -> None:
    for index, rng in enumerate(free):
        if rng.base <= taken.base and taken.end <= rng.end:
            pieces = [MemoryRange(rng.base, taken.base - rng.base, rng.node),
                      MemoryRange(taken.end, rng.end - taken.end, rng.node)]
            free[index:index + 1] = [p for p in pieces if p.size]
            return


def _channel_plans(specs: list[Mapping], names: dict[str, int], file: Where) -> list[ChannelPlan]:
    channels: list[ChannelPlan] = []
    for index, spec in enumerate(specs):
        where = file.at(_label(spec, "channel", index))
        values = CHANNEL.read(spec, where)
        name = values["name"] or f"ch{index}"
        if any(channel.name == name for channel in channels):
            raise where.at("name").error(f"the name {json.dumps(name)} is used twice")
        members = []
        for member in values["kernels"]:
            if member not in names:
                raise where.at("kernels").error(f"no kernel named {schema.printable(repr(member))}")
            members.append(names[member])
        if len(members) < 2:
            raise where.at("kernels").error("a channel needs at least two kernels")
        total = sum(channel.size for channel in channels) + values["size"]
        if CHANNEL_BASE + total > CHANNEL_LIMIT:
            raise where.at("size").error(f"the channels up to this one take {layout.format_size(total)}, more than the "
                                         f"{layout.format_size(CHANNEL_LIMIT - CHANNEL_BASE)} from {CHANNEL_BASE:#x} to the "
                                         f"IOAPIC at {CHANNEL_LIMIT:#x}")
        channels.append(ChannelPlan(index, name, values["size"], tuple(members), tuple(sorted(values["notify"]))))
    return channels


# ---------------------------------------------------------------- the layout as a whole

def validate(config: OsvConfig, where: str = "") -> None:
    """Checks of the layout as a whole, for files and generated layouts alike:
    each core and byte owned once, enough RAM and not more than a partition
    holds, channels between existing kernels inside their window."""
    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{where}: {problem}" if where else problem)

    if not 1 <= len(config.kernels) <= MAX_KERNELS:
        raise fail(f"{len(config.kernels)} kernels: 1..{MAX_KERNELS} are possible")
    if not 1 <= config.violation_records <= MAX_VIOLATION_RECORDS:
        raise fail(f"violation_records {config.violation_records} is outside 1..{MAX_VIOLATION_RECORDS}")
    valid = {cpu.apic_id for cpu in config.topology.cpus}
    seen: dict[int, str] = {}
    for plan in config.kernels:
        label = f"kernel {json.dumps(plan.name)}"
        if not plan.apic_ids:
            raise fail(f"{label}: no cores")
        if not plan.ram_bytes >= MIN_GUEST_RAM:
            raise fail(f"{label}: {plan.ram_bytes >> 20} MiB of memory, less than {MIN_GUEST_RAM >> 20} MiB")
        if plan.ram_bytes > MAX_GUEST_RAM:
            raise fail(f"{label}: {plan.ram_bytes >> 20} MiB of memory is more than a partition's "
                       f"{MAX_GUEST_RAM >> 20} MiB below the channels")
        if not 0 <= plan.restarts <= schema.MAX_RESTARTS:
            raise fail(f"{label}: restart {plan.restarts} is outside 0..{schema.MAX_RESTARTS}")
        for apic in plan.apic_ids:
            if apic not in valid:
                raise fail(f"{label}: core {apic} is not an APIC ID of this machine")
            if apic in seen:
                raise fail(f"{label}: core {apic} is also given to kernel {json.dumps(seen[apic])}")
            seen[apic] = plan.name
    ram = allocatable(config.topology)
    for plan in config.kernels:
        for rng in plan.memory:
            if not any(r.base <= rng.base and rng.end <= r.end for r in ram):
                raise fail(f"kernel {json.dumps(plan.name)}: memory {rng.base:#x}-{rng.end:#x} is outside the "
                           "machine's RAM above 1 MiB")
    ranges = sorted((r.base, r.end, p.name) for p in config.kernels for r in p.memory)
    for (_, end, name), (base, _, other) in itertools.pairwise(ranges):
        if base < end:
            raise fail(f"kernels {json.dumps(name)} and {json.dumps(other)} overlap in memory at {base:#x}")
    _validate_channels(config, fail)


def _validate_channels(config: OsvConfig, fail) -> None:
    if len(config.channels) > MAX_CHANNELS:
        raise fail(f"{len(config.channels)} channels, at most {MAX_CHANNELS}")
    for channel in config.channels:
        label = f"channel {json.dumps(channel.name)}"
        if len(set(channel.kernels)) != len(channel.kernels) or len(channel.kernels) < 2:
            raise fail(f"{label}: needs at least two different kernels")
        if not all(0 <= member < len(config.kernels) for member in channel.kernels):
            raise fail(f"{label}: names a kernel that does not exist")
        if not 0 < channel.size <= MAX_CHANNEL_SIZE or channel.size % layout.PAGE_SIZE:
            raise fail(f"{label}: size must be a multiple of 4 KiB up to {MAX_CHANNEL_SIZE >> 20} MiB")
        if any(v not in NOTIFY_VECTORS for v in channel.notify_vectors) or \
                list(channel.notify_vectors) != sorted(set(channel.notify_vectors)):
            raise fail(f"{label}: notify vectors must be sorted, unique and in {NOTIFY_VECTORS.start}..255")
    total = sum(channel.size for channel in config.channels)
    if CHANNEL_BASE + total > CHANNEL_LIMIT:
        raise fail(f"the channels take {layout.format_size(total)} in all, more than the {layout.format_size(CHANNEL_LIMIT - CHANNEL_BASE)} "
                   f"from {CHANNEL_BASE:#x} to the IOAPIC at {CHANNEL_LIMIT:#x}")


# ---------------------------------------------------------------- describing a layout

def describe_layout(config: OsvConfig) -> list[str]:
    """The layout as ``osvemu config check`` prints it."""
    topology = config.topology
    nodes = f"{topology.sockets} NUMA node{'s' if topology.sockets > 1 else ''}"
    apics = layout.number_runs([c.apic_id for c in topology.cpus])
    lines = [f"machine: {topology.sockets} sockets x {topology.cores_per_socket} cores (APIC IDs {apics}), "
             + f"{layout.format_size(topology.memory_size)} of RAM on {nodes}"]
    for plan in config.kernels:
        lines.append(f"kernel {json.dumps(plan.name)}: cores {layout.number_runs(list(plan.apic_ids))} (APIC IDs; boot CPU "
                     f"{plan.apic_ids[0]}), {layout.format_size(plan.ram_bytes)} of guest RAM at "
                     f"{layout.LOW_MEMORY_END:#x}-{layout.LOW_MEMORY_END + plan.ram_bytes - 1:#x}")
        for rng in plan.memory:
            lines.append(f"  machine memory {rng.base:#x}-{rng.end - 1:#x} ({layout.format_size(rng.size)}, node {rng.node})")
        lines.append(f"  image {schema.printable(plan.image) or '(none)'}")
        lines.append(f"  cmdline {json.dumps(plan.cmdline)}")
        if plan.initrd:
            lines.append(f"  initrd {schema.printable(plan.initrd)}")
        restart = "never" if plan.restarts == 0 else f"up to {plan.restarts} time{'s' if plan.restarts > 1 else ''}"
        lines.append(f"  on_violation {plan.on_violation}, restart {restart}")
    for channel, gpa in zip(config.channels, config.channel_addresses, strict=True):
        members = ", ".join(json.dumps(config.kernels[k].name) for k in channel.kernels)
        notify = layout.number_runs(list(channel.notify_vectors)) if channel.notify_vectors else "none"
        lines.append(f"channel {json.dumps(channel.name)}: kernels {members}; {layout.format_size(channel.size)} at guest-physical "
                     f"{gpa:#x}-{gpa + channel.size - 1:#x}; notify vectors {notify}")
    offline = config.offline_apic_ids
    lines.append(f"offline cores: {layout.number_runs(list(offline)) + ' (APIC IDs)' if offline else 'none'}")
    lines.append(f"monitor: violation_records {config.violation_records}")
    return lines


__all__ = ["CHANNEL_BASE", "CHANNEL_LIMIT", "MAX_CHANNELS", "MAX_GUEST_RAM", "MAX_KERNELS", "ChannelPlan",
           "KernelPlan", "OsvConfig", "allocatable", "default_config", "describe_layout", "load_config", "validate"]
