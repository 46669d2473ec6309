"""OSV's interface model-checked in SPIN (issue 11, part 3).

``verify/osv.pml`` is the protocol: K kernels of C cores, one malicious (any
ICR class from any running core, any hypercall class, INIT/SIPI and
SHUTDOWN at any time), the others honest (INIT, INIT de-assert, STARTUP,
STARTUP to each AP, Intel SDM Vol. 3A 8.4.4.1 and 10.4.4; a NOTIFY to their
peer over the channel; SHUTDOWN).  It takes none of OSV's decisions itself:
this module generates them, as Promela tables and inline choices in
``osv_tables.pml``, by calling the Python policy on every class of message
for the layout, so the model cannot drift from the code.

The layout is the real one: :func:`osvemu.osv.config.default_config` on one
socket of K*C cores (APIC IDs 0..K*C-1, kernel k owns k*C..k*C+C-1), with
its "results" channel narrowed to one notify vector (:data:`AGREED_VECTOR`)
so that a legal but unrouted vector exists, and
:func:`osvemu.osv.plan.osv_plan` for the memory views and the monitor.

The abstraction:

* **ICR writes** (SDM Vol. 3A 10.6.1, Figure 10-12): every delivery mode
  (fixed, lowest priority, SMI, the reserved 011, NMI, INIT asserted level
  and edge, INIT de-assert, STARTUP, ExtINT), three vector classes (illegal
  below 16, the trampoline vector, the top vector), and every destination
  form: the three shorthands; each physical APIC ID, a nonexistent one and
  broadcast 0xFF; logical destinations 0x00, each own core's bit, all own
  bits, the bit past them, 0x0F, 0x11, 0xF1 and 0xFF, each against two LDR
  set-ups: every kernel in the flat model with LDR bit j for its core j,
  or every kernel in the cluster model (cluster j // 4, bit j % 4).  Each
  kernel numbers its own cores from 0 (as Linux does), so a foreign core
  answers to every logical ID an own core answers to: the worst case for a
  policy that looked at foreign LDRs.  ``ipi_policy.route_ipi`` gives each
  (sender, class) its delivery mask; the malicious kernel gets one choice
  per distinct outcome (sender, mask, delivery kind, start-page verdict),
  kinds the model treats alike (:data:`INERT_EFFECTS`) merged.  A delivered
  INIT resets the core to wait-for-SIPI (SDM Vol. 3A 10.4.7.3), a STARTUP
  starts only a waiting core (10.4.4), the other modes change nothing the
  protocol depends on (``apicbus._deliver``, ``cpu/lifecycle.py``).
* **Hypercalls** (docs/hypercalls.md): each number with buffers in own RAM,
  own low memory, straddling the end of either, in the channel, in the VGA
  hole, at another kernel's machine address, unmapped, wrapping past 2**64;
  lengths too short, exact, a page, too long; channel indexes valid,
  invalid, huge; NOTIFY to itself, each other kernel, a nonexistent and a
  huge one, with the agreed, an unrouted, a too low and a too high vector,
  first, within and after the rate interval; SHUTDOWN; unknown numbers.
  Each goes through the real monitor (``OsvMonitor.hypercall``, which calls
  ``hypercalls.handle``); its outcome becomes: success or errno, whose RAM
  its writes land in (a write is the caller's when its firmware reports
  the range as RAM and the caller's memory view backs it with the caller's
  own machine memory), the notified (kernel, vector class), and whether
  the caller stops.  The channel rule the model asserts is read from the
  configuration, not from the monitor.
* **Time** is abstracted away: the malicious kernel may pick "within the
  rate interval" or "after it" at any moment; honest kernels notify once.

A malicious INIT could stop an honest kernel (its BSP acts only while
running, and waits for its APs) only by reaching one of its cores; the
model applies INIT's effect, so a routing that leaked it would fail the
delivery assertion and the liveness property, and the passing check shows
that routing keeps every INIT inside its partition.  The tables are written
to ``osv_tables.pml`` in the work directory beside a copy of osv.pml, never
into the source tree.

Properties: the isolation and boot invariants are assertions in osv.pml
(each with a "property:" comment quoted in failures); the safety run
(``pan`` compiled with -DSAFETY -DNOCLAIM) checks them and invalid end
states (deadlock); the liveness run checks the LTL formula ``honest_finish``
(<> every honest kernel finished) with ``pan -a -f`` (acceptance cycles
under weak fairness; SPIN manual, pan options).  Both runs must cover the
full state space: a search cut by the depth bound (-m) or memory counts as
incomplete, never as a pass.  Pan never uses bitstate hashing here.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from osvemu.cpu.memory import MemoryBank
from osvemu.errors import OsvemuError
from osvemu.osv import hypercalls, ipi_policy
from osvemu.osv.config import OsvConfig, default_config, validate
from osvemu.osv.plan import osv_plan
from osvemu.platform import layout
from osvemu.platform.icr import (
    BROADCAST_ID,
    DFR_MODEL_CLUSTER,
    DFR_MODEL_FLAT,
    ApicState,
    DeliveryMode,
    Icr,
    Shorthand,
)
from osvemu.platform.plan import MachinePlan
from osvemu.platform.topology import Topology

#: The committed protocol, shipped in the package (``verify/osv.pml`` in the
#: source tree links to it); the generated tables are written beside a copy of it.
MODEL = Path(__file__).with_name("osv.pml")
TABLES = "osv_tables.pml"

#: The notify vector the model's channel allows (the example configuration's 248).
AGREED_VECTOR = 0xF8
#: A legal notify vector no channel of the model allows.
UNROUTED_VECTOR = 0xF0
#: ICR vector classes: illegal for fixed/lowest priority (SDM Vol. 3A 10.5.2),
#: the honest kernels' trampoline (STARTUP to 0x8000), the top vector.
ICR_VECTORS = (0x02, 0x08, 0xFF)
TRAMPOLINE_VECTOR = 1  # index in ICR_VECTORS
#: (delivery mode, level assert, level triggered) of every ICR message class.
ICR_MODES = (
    (DeliveryMode.FIXED, True, False),
    (DeliveryMode.LOWEST_PRIORITY, True, False),
    (DeliveryMode.SMI, True, False),
    (DeliveryMode.RESERVED_3, True, False),
    (DeliveryMode.NMI, True, False),
    (DeliveryMode.INIT, True, True),
    (DeliveryMode.INIT, False, False),  # edge-triggered: still an INIT (only level de-assert is not)
    (DeliveryMode.INIT, False, True),  # INIT level de-assert
    (DeliveryMode.STARTUP, True, False),
    (DeliveryMode.EXTINT, True, False),
)
#: Cluster-model logical destinations worth trying besides each core's own ID.
CLUSTER_DESTINATIONS = (0x0F, 0x11, 0xF1)
#: The virtual time of every modelled hypercall (any value past one interval).
NOW_NS = 100 * hypercalls.NOTIFY_MIN_INTERVAL_NS
#: Ceilings for pan: search depth (-m), hash table (-w, log2 slots), memory (MiB).
DEFAULT_MAX_DEPTH = 100_000
HASH_BITS = 20
MEMORY_LIMIT_MB = 4096
GCC_FLAGS = ("-O2", "-w")
#: pan's runs: compile flags and search options.  Safety: assertions and
#: invalid end states, no claim.  Liveness: the LTL claim's acceptance cycles
#: under weak fairness (room for 10 processes' fairness counters).
RUNS = {
    "safety": (("-DSAFETY", "-DNOCLAIM"), ()),
    "liveness": (("-DNFAIR=3",), ("-a", "-f")),
}
#: A "property:" comment on an assert() line of osv.pml.
PROPERTY = re.compile(r"/\*\s*property:\s*(.*?)\s*\*/")


class CoreRun(IntEnum):
    """A core's run state in the model (osvemu.cpu.lifecycle.CoreState)."""

    WAIT_SIPI = 0
    RUNNING = 1
    STOPPED = 2


class Effect(IntEnum):
    """What a delivered ICR message does to its core (ApicBus._deliver)."""

    INTERRUPT = 0  # fixed, lowest priority: a vector in IRR
    NMI = 1
    INIT = 2  # reset to wait-for-SIPI (SDM Vol. 3A 10.4.7.3)
    INIT_DEASSERT = 3  # resynchronises arbitration IDs only
    STARTUP = 4  # starts a core waiting for it (SDM Vol. 3A 10.4.4)
    SMI = 5
    RESERVED = 6  # 011 and ExtINT


#: Delivery kinds osv.pml treats alike: no state the protocol depends on changes.
INERT_EFFECTS = (Effect.INTERRUPT, Effect.NMI, Effect.INIT_DEASSERT)


class HonestCall(IntEnum):
    """The honest kernels' hypercalls, in protocol order."""

    DESCRIBE_CHANNEL = 0
    NOTIFY = 1
    SHUTDOWN = 2


class NotifyVector(IntEnum):
    """Vector classes of a NOTIFY; OTHER is any vector outside the list."""

    AGREED = 0
    UNROUTED = 1
    BELOW = 2
    ABOVE = 3
    OTHER = 4


NOTIFY_VECTORS = {
    NotifyVector.AGREED: AGREED_VECTOR,
    NotifyVector.UNROUTED: UNROUTED_VECTOR,
    NotifyVector.BELOW: hypercalls.FIRST_NOTIFY_VECTOR - 1,
    NotifyVector.ABOVE: 0x100 | AGREED_VECTOR,
}
#: Sentinels of the tables (every kernel index is below them).
NO_WRITE = 255
NO_NOTIFY = 255
NO_PEER = 255
MAX_KERNELS = 8
MAX_CORES = 8  # the flat logical model names 8 cores
#: Machine memory per kernel (a partition needs 8 MiB of RAM above its low MiB).
KERNEL_MEMORY = 16 * layout.MiB


class SpinError(OsvemuError):
    """SPIN, gcc or pan could not run the model check (not a property failure)."""

    exit_status = 3


# ---------------------------------------------------------------- the layout

@dataclass(frozen=True)
class ModelLayout:
    """The real configuration and plan behind one model."""

    kernels: int
    cores: int
    malicious: int
    config: OsvConfig
    plan: MachinePlan
    partitions: ipi_policy.PartitionLayout

    @property
    def apic_ids(self) -> tuple[int, ...]:
        """Every core's APIC ID; a core's model index is its position here."""
        return tuple(apic for kernel in self.plan.kernels for apic in kernel.apic_ids)

    @property
    def honest(self) -> tuple[int, ...]:
        return tuple(k for k in range(self.kernels) if k != self.malicious)

    def peer(self, kernel: int) -> int:
        """The honest kernel this one notifies: the next honest one, in a ring."""
        ring = self.honest
        return ring[(ring.index(kernel) + 1) % len(ring)] if len(ring) > 1 else NO_PEER

    @property
    def shared(self) -> int:
        """Owner code of shared channel memory."""
        return self.kernels

    @property
    def nowhere(self) -> int:
        """Owner code of no memory (unmapped, or past 2**64)."""
        return self.kernels + 1

    def memory_owner(self, kernel: int, gpa: int, size: int, ram: bool = True) -> int:
        """Whose memory [gpa, gpa+size) of ``kernel``'s guest-physical space is:
        ``kernel`` when its memory view backs every byte with the kernel's own
        machine memory (and, with ``ram``, every byte is RAM its firmware
        reports), else the first other owner (a kernel index, :attr:`shared`
        for a channel, :attr:`nowhere` for what is not memory, or not RAM:
        unmapped, past 2**64, with ``ram`` the low MiB's holes)."""
        if gpa < 0 or gpa + size > 1 << 64:
            return self.nowhere
        placement = self.plan.kernels[kernel]
        owners = set()
        while size > 0:
            mapping = next((m for m in placement.view.mappings if m.gpa <= gpa < m.end), None)
            if mapping is None:
                return self.nowhere
            step = min(size, mapping.end - gpa)
            owner = self._bank_owner(mapping.bank, mapping.offset + gpa - mapping.gpa, step)
            reported = any(rng.base <= gpa and gpa + step <= rng.end for rng in placement.firmware.memory)
            owners.add(owner if reported or not ram or owner == self.shared else self.nowhere)
            gpa, size = gpa + step, size - step
        others = owners - {kernel}
        return min(others) if others else kernel

    def _bank_owner(self, bank: MemoryBank, offset: int, size: int) -> int:
        """The kernel whose machine memory [offset, offset+size) of ``bank`` is."""
        machine = self.plan.memory
        if bank is machine.bank:
            for index, kernel in enumerate(self.config.kernels):
                for rng in kernel.memory:
                    base = machine.offset_of(rng.base)
                    if base <= offset and offset + size <= base + rng.size:
                        return index
            return self.nowhere
        if any(bank is channel.bank for partition in self.plan.monitor.partitions for channel in partition.channels):
            return self.shared
        for index, placement in enumerate(self.plan.kernels):  # a private bank: the low MiB
            if any(bank is mapping.bank for mapping in placement.view.mappings):
                return index
        return self.nowhere


def build_layout(kernels: int = 3, cores: int = 2, malicious: int | None = None) -> ModelLayout:
    """The default OSV layout of ``kernels`` x ``cores`` on one socket, its
    channel narrowed to :data:`AGREED_VECTOR`, planned by ``osv_plan``."""
    if not 2 <= kernels <= MAX_KERNELS or not 1 <= cores <= MAX_CORES:
        raise SpinError(f"the model takes 2..{MAX_KERNELS} kernels of 1..{MAX_CORES} cores, not {kernels} x {cores}")
    malicious = kernels - 1 if malicious is None else malicious
    if not 0 <= malicious < kernels:
        raise SpinError(f"malicious kernel {malicious} is not one of the {kernels} kernels")
    config = default_config(Topology(1, kernels * cores, kernels * KERNEL_MEMORY), image="", kernels=kernels)
    channels = tuple(dataclasses.replace(channel, notify_vectors=(AGREED_VECTOR,)) for channel in config.channels)
    config = dataclasses.replace(config, channels=channels)
    validate(config)
    plan = osv_plan(config)
    owner = ipi_policy.PartitionLayout({apic: index for index, kernel in enumerate(plan.kernels)
                                        for apic in kernel.apic_ids})
    return ModelLayout(kernels, cores, malicious, config, plan, owner)


def route_allowed(model: ModelLayout, caller: int, target: int, vector: int) -> bool:
    """The channel rule, read from the configuration (not from the monitor):
    both kernels members of one channel that lists the vector."""
    return caller != target and any(caller in channel.kernels and target in channel.kernels
                                    and vector in channel.notify_vectors for channel in model.config.channels)


# ---------------------------------------------------------------- ICR classes

@dataclass(frozen=True)
class IcrClass:
    """One representative ICR write, with the LDR set-up it is resolved against."""

    icr: Icr
    ldr_model: str  # "flat" or "cluster"

    @property
    def name(self) -> str:
        text = self.icr.describe()
        return f"{text} ({self.ldr_model} LDRs)" if self.icr.logical and self.icr.shorthand == Shorthand.NONE else text


@dataclass(frozen=True)
class IcrEffect:
    """What the policy makes of one ICR class from one sender core."""

    mask: int  # model core indexes reached
    kind: Effect
    vector: int  # index in ICR_VECTORS (STARTUP only; else 0)


def apic_states(model: ModelLayout, ldr_model: str) -> list[ApicState]:
    """Every local APIC as its kernel sets it up: core j of each kernel is
    logical ID bit j (flat, SDM Vol. 3A 10.6.2.2) or cluster j // 4, bit j % 4."""
    states = []
    for kernel in model.plan.kernels:
        for j, apic in enumerate(kernel.apic_ids):
            if ldr_model == "flat":
                ldr, dfr = 1 << j, DFR_MODEL_FLAT
            else:
                ldr, dfr = (j // 4) << 4 | 1 << (j % 4), DFR_MODEL_CLUSTER
            states.append(ApicState(apic, (ldr & 0xFF) << 24, dfr << 28 | 0x0FFF_FFFF))
    return states


def _logical_destinations(cores: int) -> list[int]:
    own = [1 << j for j in range(cores)] + [((j // 4) << 4) | 1 << (j % 4) for j in range(cores)]
    extra = [0x00, (1 << cores) - 1, BROADCAST_ID, *CLUSTER_DESTINATIONS] + ([1 << cores] if cores < 8 else [])
    return sorted({value & 0xFF for value in own + extra})


def icr_classes(model: ModelLayout) -> list[IcrClass]:
    """Every class of ICR write (see the module docstring)."""
    used = set(model.apic_ids)
    nonexistent = next(apic for apic in range(BROADCAST_ID) if apic not in used)
    targets = [(shorthand, False, 0, "flat") for shorthand in (Shorthand.SELF, Shorthand.ALL_INCLUDING_SELF,
                                                               Shorthand.ALL_EXCLUDING_SELF)]
    targets += [(Shorthand.NONE, False, apic, "flat") for apic in (*sorted(used), nonexistent, BROADCAST_ID)]
    targets += [(Shorthand.NONE, True, dest, ldr) for ldr in ("flat", "cluster")
                for dest in _logical_destinations(model.cores)]
    return [IcrClass(Icr(vector, mode, logical, assert_, trigger, shorthand, dest), ldr)
            for mode, assert_, trigger in ICR_MODES for vector in ICR_VECTORS
            for shorthand, logical, dest, ldr in targets]


def effect_kind(icr: Icr) -> Effect:
    """What delivering ``icr`` does to a core (ApicBus._deliver, cpu/lifecycle.py)."""
    mode = icr.delivery_mode
    if mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY):
        return Effect.INTERRUPT
    if mode == DeliveryMode.INIT:
        return Effect.INIT_DEASSERT if icr.is_init_deassert else Effect.INIT
    return {DeliveryMode.NMI: Effect.NMI, DeliveryMode.STARTUP: Effect.STARTUP,
            DeliveryMode.SMI: Effect.SMI}.get(mode, Effect.RESERVED)


def icr_effect(model: ModelLayout, sender: int, cls: IcrClass) -> IcrEffect:
    """The policy's decision for ``cls`` written by core ``sender`` (a model
    index): ``ipi_policy.route_ipi``, looked up at call time."""
    apic_ids = model.apic_ids
    decision = ipi_policy.route_ipi(cls.icr, apic_ids[sender], model.partitions, apic_states(model, cls.ldr_model))
    mask = sum(1 << apic_ids.index(apic) for apic in set(decision.deliveries) if apic in apic_ids)
    kind = effect_kind(cls.icr)
    vector = ICR_VECTORS.index(cls.icr.vector) if kind == Effect.STARTUP else 0
    return IcrEffect(mask, kind, vector)


# ---------------------------------------------------------------- hypercall classes

@dataclass(frozen=True)
class HypercallClass:
    """One representative hypercall: its registers and the caller's last NOTIFY."""

    name: str
    registers: tuple[int, int, int, int]  # RAX, RDI, RSI, RDX
    last_notify_ns: int | None = None


@dataclass(frozen=True)
class HypercallEffect:
    """What one hypercall does, as the model needs it."""

    ok: bool  # RAX >= 0
    write: int  # owner of the memory written (memory_owner), or NO_WRITE
    target: int  # kernel notified (``kernels`` for none that exists), or NO_NOTIFY
    vclass: NotifyVector
    shutdown: bool


def _buffers(model: ModelLayout, caller: int, needed: int) -> list[tuple[str, int]]:
    partition = model.plan.monitor.partitions[caller]
    ram_end = partition.ram[-1].end
    other = model.config.kernels[(caller + 1) % model.kernels].memory[0].base
    channel = partition.channels[0].gpa if partition.channels else layout.IOAPIC_BASE - layout.PAGE_SIZE
    return [("own RAM", partition.ram[0].base), ("own low memory", layout.PAGE_SIZE),
            ("straddling its RAM's end", ram_end - needed // 2),
            ("straddling its low memory's end", layout.CONVENTIONAL_END - needed // 2), ("the channel", channel),
            ("the VGA hole", layout.VGA_BASE), ("another kernel's machine address", other),
            ("unmapped", layout.HIGHMEM_BASE), ("wrapping past 2**64", (1 << 64) - needed // 2)]


def _lengths(needed: int) -> list[tuple[str, int]]:
    return [("too short", needed - 1), ("exact", needed), ("a page", hypercalls.MAX_BUFFER),
            ("too long", hypercalls.MAX_BUFFER + 1)]


def hypercall_classes(model: ModelLayout, caller: int) -> list[HypercallClass]:
    """Every class of hypercall from ``caller`` (see the module docstring)."""
    call = hypercalls.Hypercall
    classes = []
    for where, address in _buffers(model, caller, hypercalls.SELF_INFO.size):
        for size, length in _lengths(hypercalls.SELF_INFO.size):
            classes.append(HypercallClass(f"DESCRIBE_SELF buffer {where}, length {size}",
                                          (call.DESCRIBE_SELF, address, length, 0)))
    channels = len(model.plan.monitor.partitions[caller].channels)
    for which, channel in (("0", 0), ("past the last", channels), ("huge", (1 << 64) - 1)):
        for where, address in _buffers(model, caller, hypercalls.CHANNEL_INFO.size):
            for size, length in _lengths(hypercalls.CHANNEL_INFO.size):
                classes.append(HypercallClass(f"DESCRIBE_CHANNEL {which}, buffer {where}, length {size}",
                                              (call.DESCRIBE_CHANNEL, channel, address, length)))
    targets = [(f"kernel {k}" + (" (itself)" if k == caller else ""), k) for k in range(model.kernels)]
    targets += [("a nonexistent kernel", model.kernels), ("kernel 2**63", 1 << 63)]
    timings = (("first", None), ("within the rate interval", NOW_NS - 1),
               ("after the rate interval", NOW_NS - hypercalls.NOTIFY_MIN_INTERVAL_NS))
    for who, target in targets:
        for vclass, vector in NOTIFY_VECTORS.items():
            for when, last in timings:
                classes.append(HypercallClass(f"NOTIFY {who} vector {vector:#x} ({vclass.name.lower()}), {when}",
                                              (call.NOTIFY, target, vector, 0), last))
    classes += [HypercallClass(f"SHUTDOWN status {status:#x}", (call.SHUTDOWN, status, 0, 0)) for status in (0, 0x1FF)]
    classes += [HypercallClass(f"unknown hypercall {number:#x}", (number, 0, 0, 0))
                for number in (0, max(call) + 1, (1 << 64) - 1)]
    return classes


def hypercall_effect(model: ModelLayout, caller: int, cls: HypercallClass) -> HypercallEffect:
    """The monitor's outcome for ``cls`` (``OsvMonitor.hypercall``, which
    builds the CallerView and calls ``hypercalls.handle``), made abstract."""
    monitor = model.plan.monitor
    monitor.accounts[caller].last_notify_ns = cls.last_notify_ns
    outcome = monitor.hypercall(caller, cls.registers, NOW_NS, hypercalls.flat_pages)
    write = NO_WRITE
    for gpa, data in outcome.writes:
        owner = model.memory_owner(caller, gpa, len(data)) if data else caller
        if write in (NO_WRITE, caller):
            write = owner
    target, vclass = NO_NOTIFY, NotifyVector.OTHER
    if outcome.notify is not None:
        kernel, vector = outcome.notify
        target = kernel if 0 <= kernel < model.kernels else model.kernels
        vclass = next((vc for vc, value in NOTIFY_VECTORS.items() if value == vector), NotifyVector.OTHER)
    return HypercallEffect(outcome.result >= 0, write, target, vclass, outcome.shutdown is not None)


def honest_calls(model: ModelLayout, kernel: int) -> dict[HonestCall, HypercallClass]:
    """The honest protocol's hypercalls: read channel 0 into own RAM, notify
    the peer with the agreed vector, shut down."""
    call = hypercalls.Hypercall
    buffer = model.plan.monitor.partitions[kernel].ram[0].base
    return {
        HonestCall.DESCRIBE_CHANNEL: HypercallClass("DESCRIBE_CHANNEL 0 into own RAM",
                                                    (call.DESCRIBE_CHANNEL, 0, buffer, hypercalls.CHANNEL_INFO.size)),
        HonestCall.NOTIFY: HypercallClass(f"NOTIFY kernel {model.peer(kernel)} vector {AGREED_VECTOR:#x}",
                                          (call.NOTIFY, model.peer(kernel), AGREED_VECTOR, 0)),
        HonestCall.SHUTDOWN: HypercallClass("SHUTDOWN status 0", (call.SHUTDOWN, 0, 0, 0)),
    }


def boot_writes(model: ModelLayout, kernel: int) -> list[IcrClass]:
    """The honest BSP's ICR writes: INIT, INIT de-assert, STARTUP, STARTUP to
    each AP in turn, physical destination (SDM Vol. 3A 8.4.4.1)."""
    writes = []
    for apic in model.plan.kernels[kernel].apic_ids[1:]:
        for mode, assert_, trigger in ((DeliveryMode.INIT, True, True), (DeliveryMode.INIT, False, True),
                                       (DeliveryMode.STARTUP, True, False), (DeliveryMode.STARTUP, True, False)):
            writes.append(IcrClass(Icr(ICR_VECTORS[TRAMPOLINE_VECTOR], mode, False, assert_, trigger,
                                       Shorthand.NONE, apic), "flat"))
    return writes


# ---------------------------------------------------------------- the tables

@dataclass(frozen=True)
class ModelTables:
    """Every decision the model takes, case by case, and its Promela text."""

    model: ModelLayout
    icr_cases: tuple[tuple[int, IcrClass, IcrEffect], ...]  # (malicious core index, class, effect)
    hypercall_cases: tuple[tuple[HypercallClass, HypercallEffect], ...]  # the malicious kernel's
    boot: dict[int, tuple[tuple[IcrClass, IcrEffect], ...]]  # honest kernel -> its BSP's writes
    calls: dict[int, dict[HonestCall, HypercallEffect]]  # honest kernel -> its hypercalls
    sipi_low: tuple[tuple[bool, ...], ...]  # core index -> ICR vector index -> inside its own low memory
    text: str


def generate_tables(model: ModelLayout) -> ModelTables:
    """Ask the Python policy about every class, and write the Promela include."""
    core_of = {apic: index for index, apic in enumerate(model.apic_ids)}
    bad = model.plan.kernels[model.malicious]
    classes = icr_classes(model)
    icr_cases = tuple((core_of[apic], cls, icr_effect(model, core_of[apic], cls))
                      for apic in bad.apic_ids for cls in classes)
    hypercall_cases = tuple((cls, hypercall_effect(model, model.malicious, cls))
                            for cls in hypercall_classes(model, model.malicious))
    boot = {k: tuple((cls, icr_effect(model, core_of[model.plan.kernels[k].apic_ids[0]], cls))
                     for cls in boot_writes(model, k)) for k in model.honest}
    calls = {k: {call: hypercall_effect(model, k, cls) for call, cls in honest_calls(model, k).items()
                 if call != HonestCall.NOTIFY or model.peer(k) != NO_PEER} for k in model.honest}
    sipi_low = tuple(tuple(_in_own_low_memory(model, kernel, vector) for vector in ICR_VECTORS)
                     for kernel, placement in enumerate(model.plan.kernels) for _ in placement.apic_ids)
    tables = ModelTables(model, icr_cases, hypercall_cases, boot, calls, sipi_low, "")
    return dataclasses.replace(tables, text=render_tables(tables))


def _in_own_low_memory(model: ModelLayout, kernel: int, vector: int) -> bool:
    """A STARTUP's start page (``vector << 12``, SDM Vol. 3A 10.4.4.1) lies in
    the kernel's own low MiB (RAM or not: the BIOS area is its own copy too)."""
    start = vector << 12
    return start + layout.PAGE_SIZE <= layout.LOW_MEMORY_END and \
        model.memory_owner(kernel, start, layout.PAGE_SIZE, ram=False) == kernel


def _defines(prefix: str, enum: type[IntEnum]) -> list[str]:
    return [f"#define {prefix}{member.name} {member.value}" for member in enum]


def _array(kind: str, name: str, values: list[int]) -> tuple[str, list[str]]:
    """A hidden Promela table and the assignments that fill it."""
    values = values or [0]
    return f"hidden {kind} {name}[{len(values)}];", [f"{name}[{i}] = {value}" for i, value in enumerate(values)]


def _printable(text: str) -> str:
    return text.replace("\\", "/").replace('"', "'").replace("%", " percent")


def render_tables(tables: ModelTables) -> str:
    """``osv_tables.pml``: the constants, tables and choices osv.pml includes."""
    model = tables.model
    kernels, cores, ncores = model.kernels, model.cores, len(model.apic_ids)
    core_of = {apic: index for index, apic in enumerate(model.apic_ids)}
    steps = 4 * (cores - 1)
    bad_cores = [core_of[apic] for apic in model.plan.kernels[model.malicious].apic_ids]
    header = (f"/* Generated by osvemu.verify.spin from the Python policy for {kernels} kernels x {cores} cores, "
              f"kernel {model.malicious} malicious: do not edit. */")
    lines = [header,
             f"#define KERNELS {kernels}", f"#define CORES {cores}", f"#define NCORES {ncores}",
             f"#define MALICIOUS {model.malicious}", f"#define NVECTORS {len(ICR_VECTORS)}",
             f"#define NVCLASSES {len(NotifyVector)}", f"#define HONEST_CALLS {len(HonestCall)}",
             f"#define BOOT_STEPS {steps}", f"#define NO_WRITE {NO_WRITE}", f"#define NO_NOTIFY {NO_NOTIFY}",
             f"#define NO_PEER {NO_PEER}",
             *_defines("CORE_", CoreRun), *_defines("E_", Effect), *_defines("HC_", HonestCall),
             *_defines("VC_", NotifyVector),
             "#define BSP_RUNNING(k) (cstate[tab_bsp[k]] == CORE_RUNNING)",
             "#define KERNEL_UP(k) (" + " && ".join(f"cstate[tab_core[(k) * CORES + {j}]] == CORE_RUNNING"
                                                   for j in range(cores)) + ")",
             "#define MALICIOUS_RUNNING (" + " || ".join(f"cstate[{c}] == CORE_RUNNING" for c in bad_cores) + ")",
             "#define ALL_HONEST_DONE (" + " && ".join(f"finished[{k}]" for k in model.honest) + ")"]
    boot_mask, boot_kind, boot_vector = [0] * (kernels * steps), [0] * (kernels * steps), [0] * (kernels * steps)
    for k, writes in tables.boot.items():
        for step, (_, effect) in enumerate(writes):
            index = k * steps + step
            boot_mask[index], boot_kind[index], boot_vector[index] = effect.mask, effect.kind, effect.vector
    calls = len(HonestCall)
    hc = {name: [0] * (kernels * calls) for name in ("ok", "write", "target", "vclass", "shutdown")}
    for k, effects in tables.calls.items():
        for call in HonestCall:
            effect = effects.get(call, HypercallEffect(True, NO_WRITE, NO_NOTIFY, NotifyVector.OTHER, False))
            for name, values in hc.items():
                values[k * calls + call] = int(getattr(effect, name))
    route = [int(vclass != NotifyVector.OTHER and route_allowed(model, caller, target, NOTIFY_VECTORS[vclass]))
             for caller in range(kernels) for target in range(kernels) for vclass in NotifyVector]
    arrays = [
        ("byte", "tab_owner", [model.partitions.owner[apic] for apic in model.apic_ids]),
        ("byte", "tab_core", [core_of[apic] for placement in model.plan.kernels for apic in placement.apic_ids]),
        ("byte", "tab_bsp", [core_of[placement.firmware.bsp_apic_id] for placement in model.plan.kernels]),
        ("byte", "tab_peer", [model.peer(k) if k != model.malicious else NO_PEER for k in range(kernels)]),
        ("byte", "tab_sipi_low", [int(low) for per_core in tables.sipi_low for low in per_core]),
        ("byte", "tab_route", route),
        ("int", "tab_boot_mask", boot_mask), ("byte", "tab_boot_kind", boot_kind),
        ("byte", "tab_boot_vector", boot_vector),
        *(("byte", f"tab_hc_{name}", values) for name, values in hc.items()),
    ]
    fills = []
    for kind, name, values in arrays:
        declaration, assignments = _array(kind, name, values)
        lines.append(declaration)
        fills += assignments
    # OSV starts each kernel's boot CPU (Machine.boot: the first APIC ID of each kernel); the rest wait for SIPI.
    fills += [f"cstate[{core_of[placement.apic_ids[0]]}] = CORE_RUNNING" for placement in model.plan.kernels]
    lines += ["inline load_tables() {", *(f"    {fill};" for fill in fills), "    skip", "}",
              "inline start_kernels() {", *(f"    run honest({k});" for k in model.honest), "    run malicious()", "}"]
    lines += _malicious_icr(model, tables) + _malicious_hypercall(model, tables)
    return "\n".join(lines) + "\n"


def _malicious_icr(model: ModelLayout, tables: ModelTables) -> list[str]:
    """One choice per distinct outcome of the malicious kernel's ICR writes:
    (core, mask, kind, vector), with the kinds osv.pml treats alike
    (INERT_EFFECTS) and STARTUP vectors with the same start-page verdicts
    merged, as they lead to the same states and the same assertions."""
    choices: dict[tuple, tuple[int, IcrEffect, str]] = {}
    for core, cls, effect in tables.icr_cases:
        choices.setdefault((core, 0), (core, IcrEffect(0, Effect.INTERRUPT, 0), "a write that reaches no core"))
        if effect.mask:
            choices.setdefault((core, *_outcome(tables, effect)), (core, effect, cls.name))
    lines = ["inline malicious_icr() {", "    if"]
    for core, effect, name in choices.values():
        event = _printable(f"EVENT k{model.malicious} core {core} ICR: {name}")
        lines.append(f"    :: cstate[{core}] == CORE_RUNNING -> h_mask = {effect.mask}; h_kind = E_{effect.kind.name}; "
                     f'h_vec = {effect.vector}; printf("{event}\\n")')
    return lines + ["    fi", "}"]


def _outcome(tables: ModelTables, effect: IcrEffect) -> tuple:
    """What osv.pml can tell apart in an ICR effect."""
    kind = Effect.INTERRUPT if effect.kind in INERT_EFFECTS else effect.kind
    cores = [core for core in range(len(tables.sipi_low)) if effect.mask >> core & 1]
    verdicts = tuple(tables.sipi_low[core][effect.vector] for core in cores) if kind == Effect.STARTUP else ()
    return effect.mask, kind, verdicts


def _malicious_hypercall(model: ModelLayout, tables: ModelTables) -> list[str]:
    """One choice per distinct effect of the malicious kernel's hypercalls."""
    choices: dict[tuple[int, int, int, bool], str] = {}
    for cls, effect in tables.hypercall_cases:
        choices.setdefault((effect.write, effect.target, effect.vclass, effect.shutdown), cls.name)
    lines = ["inline malicious_hypercall() {", "    if"]
    for (write, target, vclass, shutdown), name in choices.items():
        event = _printable(f"EVENT k{model.malicious} hypercall: {name}")
        lines.append(f"    :: h_write = {write}; h_target = {target}; h_vclass = VC_{NotifyVector(vclass).name}; "
                     f'h_shutdown = {int(shutdown)}; printf("{event}\\n")')
    return lines + ["    fi", "}"]


# ---------------------------------------------------------------- running SPIN

@dataclass(frozen=True)
class SpinRun:
    """One pan run over the full state space."""

    name: str  # "safety" (assertions, invalid end states) or "liveness" (LTL under weak fairness)
    commands: tuple[str, ...]  # spin -a, gcc, pan, as run in the run's directory
    errors: int
    states_stored: int
    transitions: int
    memory_mb: float
    depth: int
    complete: bool  # the whole state space was searched
    seconds: float  # pan's own run, compilation excluded
    failures: tuple[str, ...]
    output: str = dataclasses.field(repr=False, default="")


@dataclass(frozen=True)
class SpinResult:
    """Both runs: errors, states and transitions are summed, memory and
    depth the larger of the two, ``complete`` when both were, ``seconds``
    the wall time of the whole check (generation and compilation included)."""

    kernels: int
    cores: int
    malicious: int
    errors: int
    states_stored: int
    transitions: int
    memory_mb: float
    depth: int
    complete: bool
    seconds: float
    failures: tuple[str, ...]
    runs: tuple[SpinRun, ...]
    commands: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.complete and not self.failures

    def summary(self) -> list[str]:
        """One line per run and per failure, as ``osvemu verify`` prints them."""
        verdict = "complete" if self.complete else "INCOMPLETE"
        lines = [f"spin: {self.kernels} kernels x {self.cores} cores, kernel {self.malicious} malicious: "
                 + f"{self.errors} errors, {verdict}, {self.seconds:.1f} s"]
        for run in self.runs:
            lines.append(f"  {run.name}: {run.errors} errors, {run.states_stored} states, {run.transitions} "
                         f"transitions, depth {run.depth}, {run.memory_mb:.1f} MB, {run.seconds:.2f} s"
                         + ("" if run.complete else ", search incomplete"))
        return lines + [f"  FAILED {failure}" for failure in self.failures]


def spin_available() -> bool:
    """Whether ``spin`` and ``gcc`` are on the PATH."""
    return shutil.which("spin") is not None and shutil.which("gcc") is not None


def check_model(kernels: int = 3, cores: int = 2, malicious: int | None = None, workdir: str | Path | None = None,
                timeout: float = 120, max_depth: int = DEFAULT_MAX_DEPTH,
                runs: tuple[str, ...] = tuple(RUNS)) -> SpinResult:
    """Generate the tables from the Python policy, then run pan's searches
    (``runs``: by default the safety and the liveness one, in parallel, each
    in its own directory under ``workdir`` or a temporary one).  Raises
    :class:`SpinError` when SPIN, gcc or pan cannot do their part; a
    property that fails is a result."""
    started = time.monotonic()
    deadline = started + timeout
    spin, gcc = shutil.which("spin"), shutil.which("gcc")
    if spin is None or gcc is None:
        raise SpinError(f"the model check needs {'spin' if spin is None else 'gcc'} on the PATH "
                        "(Debian: apt-get install spin gcc)")
    if not MODEL.is_file():
        raise SpinError(f"the model {MODEL} is missing: reinstall osvemu")
    unknown = [name for name in runs if name not in RUNS]
    if unknown or not runs:
        raise SpinError(f"unknown pan run {unknown[0] if unknown else '(none)'}: the runs are {', '.join(RUNS)}")
    model = build_layout(kernels, cores, malicious)
    tables = generate_tables(model).text
    with _directory(workdir) as root, ThreadPoolExecutor(len(runs)) as pool:
        futures = [pool.submit(_run, root / name, name, model, tables, spin, gcc, *RUNS[name], max_depth, deadline)
                   for name in runs]
        done = tuple(future.result() for future in futures)
    return SpinResult(
        kernels, cores, model.malicious, sum(run.errors for run in done), sum(run.states_stored for run in done),
        sum(run.transitions for run in done), max(run.memory_mb for run in done), max(run.depth for run in done),
        all(run.complete for run in done), time.monotonic() - started,
        tuple(failure for run in done for failure in run.failures), done,
        tuple(command for run in done for command in run.commands))


class _directory:
    """``workdir`` (kept), or a temporary directory removed afterwards."""

    def __init__(self, workdir: str | Path | None) -> None:
        self._temporary = tempfile.TemporaryDirectory(prefix="osvemu-spin-") if workdir is None else None
        self._path = Path(self._temporary.name if self._temporary else workdir)

    def __enter__(self) -> Path:
        self._path.mkdir(parents=True, exist_ok=True)
        return self._path

    def __exit__(self, *exc: object) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()


def _execute(command: list[str], cwd: Path, deadline: float, what: str) -> subprocess.CompletedProcess:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise SpinError(f"{what}: the model check ran out of time")
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=remaining, check=False)
    except subprocess.TimeoutExpired:
        raise SpinError(f"{what}: timed out (the whole check was given its timeout)") from None
    except OSError as error:
        raise SpinError(f"{what}: cannot run {command[0]}: {error.strerror}") from None


def _checked(command: list[str], cwd: Path, deadline: float, what: str) -> str:
    done = _execute(command, cwd, deadline, what)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise SpinError(f"{what} failed (status {done.returncode}): {detail[0] if detail else 'no output'}")
    return done.stdout


def _run(directory: Path, name: str, model: ModelLayout, tables: str, spin: str, gcc: str, flags: tuple[str, ...],
         args: tuple[str, ...], max_depth: int, deadline: float) -> SpinRun:
    """spin -a, gcc -O2, pan: one search, then the trail of its first error replayed."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MODEL, directory / MODEL.name)
    (directory / TABLES).write_text(tables)
    generate = [spin, "-a", MODEL.name]
    compile_ = [gcc, *GCC_FLAGS, *flags, f"-DMEMLIM={MEMORY_LIMIT_MB}", "-o", "pan", "pan.c"]
    search = ["./pan", *args, f"-m{max_depth}", f"-w{HASH_BITS}", "-n"]
    _checked(generate, directory, deadline, f"{name}: spin -a {MODEL.name}")
    _checked(compile_, directory, deadline, f"{name}: compiling pan")
    started = time.monotonic()
    output = _execute(search, directory, deadline, f"{name}: pan").stdout
    seconds = time.monotonic() - started
    stats = _statistics(output, name)
    failures = list(_pan_failures(output, name, max_depth))
    if stats["errors"] and (directory / f"{MODEL.name}.trail").is_file():
        failures = [_explain(failure, directory, spin, deadline, model) for failure in failures]
    commands = tuple(" ".join(command) for command in (generate, compile_, search))
    return SpinRun(name, commands, stats["errors"], stats["states"], stats["transitions"], stats["memory"],
                   stats["depth"], _complete(output), seconds, tuple(f"{name}: {f}" for f in failures), output)


def _statistics(output: str, name: str) -> dict:
    def number(pattern: str) -> float:
        found = re.search(pattern, output)
        if found is None:
            raise SpinError(f"{name}: pan ended without its statistics: {output.strip()[-300:] or 'no output'}")
        return float(found.group(1))

    memory = re.search(r"([\d.]+)\s+total actual memory usage", output)
    return {"errors": int(number(r"errors: (\d+)")), "depth": int(number(r"depth reached (\d+)")),
            "states": int(number(r"([\d.e+]+) states, stored")),
            "transitions": int(number(r"([\d.e+]+) transitions \(")),
            "memory": float(memory.group(1)) if memory else 0.0}


def _complete(output: str) -> bool:
    """No truncation: pan neither stopped early (an error, -DMEMLIM, out of
    memory) nor hit the depth bound."""
    return not any(sign in output for sign in ("Search not completed", "max search depth too small",
                                               "-DMEMLIM", "out of memory"))


def _pan_failures(output: str, name: str, max_depth: int) -> list[str]:
    failures = []
    for line in output.splitlines():
        found = re.match(r"pan:\d+: (.*?) \(at depth (\d+)\)", line)
        if found:
            failures.append(f"{found.group(1)} at depth {found.group(2)}")
    if "max search depth too small" in output:
        failures.append(f"search truncated: max search depth {max_depth} too small (pan -m)")
    if "-DMEMLIM" in output or "out of memory" in output:
        failures.append(f"search truncated: out of memory (limit {MEMORY_LIMIT_MB} MB)")
    return failures


def _explain(failure: str, directory: Path, spin: str, deadline: float, model: ModelLayout) -> str:
    """Name the broken property and say how the trail ends (``spin -t``)."""
    try:
        replay = _execute([spin, "-t", MODEL.name], directory, min(deadline, time.monotonic() + 30), "spin -t")
    except SpinError:
        return failure
    text = replay.stdout
    events = [_event(line.split("EVENT ", 1)[1].strip()) for line in text.splitlines() if "EVENT " in line][-3:]
    trail = f"; trail ends: {' | '.join(events)}" if events else ""
    if failure.startswith("assertion violated"):
        where = re.search(r"spin: (\S+):(\d+), Error: assertion violated", text)
        asserted = re.search(r"spin: text of failed assertion: (.*)", text)
        prop = _property(directory / where.group(1), int(where.group(2))) if where else None
        place = f" at {where.group(1)}:{where.group(2)}" if where else ""
        return f"{prop or 'an assertion'} -- violated: {asserted.group(1) if asserted else failure}{place}{trail}"
    if failure.startswith("acceptance cycle"):
        finished = dict(re.findall(r"finished\[(\d+)\] = (\d+)", text))
        never = [f"k{k}" for k in model.honest if finished.get(str(k)) == "0"]
        who = f"{', '.join(never)} never finish{'es' if len(never) == 1 else ''}" if never else "a kernel never finishes"
        return f"every honest kernel eventually finishes -- violated: {failure}, {who}{trail}"
    if failure.startswith("invalid end state"):
        blocked = []
        for pid, proc, file, line in re.findall(r"proc\s+(\d+) \((\w+):\d+\) (\S+):(\d+) \(state \d+\)\s*$",
                                               text.split("#processes", 1)[-1], re.MULTILINE):
            who = f"honest k{model.honest[int(pid) - 1]}" if proc == "honest" else proc
            blocked.append(f"{who} at {file}:{line} ({_statement(directory / file, int(line))})")
        return f"no deadlock -- violated: {failure}; blocked: {', '.join(blocked) or 'every process'}{trail}"
    return failure + trail


BOOT_STEP_NAMES = ("INIT", "INIT de-assert", "STARTUP", "STARTUP")


def _event(text: str) -> str:
    """A model's EVENT line, with the honest kernels' step numbers named."""
    found = re.fullmatch(r"(k\d+): honest hypercall (\d+)", text)
    if found:
        return f"{found.group(1)}: {HonestCall(int(found.group(2))).name}"
    found = re.fullmatch(r"(k\d+): boot ICR write (\d+)", text)
    if found:
        step = int(found.group(2))
        return f"{found.group(1)}: {BOOT_STEP_NAMES[step % 4]} to AP {step // 4 + 1}"
    return text


def _statement(path: Path, line: int) -> str:
    """The model's source line, without its comment."""
    try:
        return path.read_text().splitlines()[line - 1].split("/*")[0].strip()
    except (OSError, IndexError):
        return "?"


def _property(path: Path, line: int) -> str | None:
    """The "property:" comment of an assert() line of the model."""
    try:
        text = path.read_text().splitlines()[line - 1]
    except (OSError, IndexError):
        return None
    found = PROPERTY.search(text)
    return found.group(1) if found else None


__all__ = ["AGREED_VECTOR", "INERT_EFFECTS", "MODEL", "NO_NOTIFY", "NO_WRITE", "RUNS", "Effect", "HonestCall",
           "HypercallClass", "HypercallEffect", "IcrClass", "IcrEffect", "ModelLayout", "ModelTables", "NotifyVector",
           "SpinError", "SpinResult", "SpinRun", "apic_states", "build_layout", "check_model", "generate_tables",
           "hypercall_classes", "hypercall_effect", "icr_classes", "icr_effect", "render_tables", "spin_available"]
