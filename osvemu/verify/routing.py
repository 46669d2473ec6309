"""The routing proof: :func:`osvemu.osv.ipi_policy.route_ipi` and
:func:`~osvemu.osv.ipi_policy.route_io_interrupt`, the real functions, over
every ICR value, every sender and every guest-controllable APIC state of a
layout (docs/verification.md, "Routing").

Each sender's whole ICR field space (delivery mode x destination mode x
shorthand x level x trigger x 256 vectors x 256 destinations) is explored by
lazy case splitting (:mod:`osvemu.verify.explore`): a field the policy does
not read on a path is proved not to matter there.  The APIC state enters as
follows.

* **Foreign cores** are poisoned: any read of a foreign core's LDR, DFR or
  processor priority raises, and is an ``independence`` counterexample.
  A decision that completes has provably not read them, so it is the same for
  every foreign state (noninterference).  Enable bits and run state are not
  inputs of the policy at all (:class:`osvemu.platform.icr.ApicState`).
* **Own cores' state** (LDR 256 values, DFR model 16, PPR 256, per core) is
  one lazy field too: a path that never reads it (physical destinations,
  shorthands, every mode but lowest priority) is proved for all of it.  A
  path that reads it (logical destinations, lowest-priority arbitration) is
  checked under each of :data:`STATE_CLASSES`.  The reduction rests on SDM
  Vol. 3A 10.6.2.2: each APIC accepts a logical destination by comparing it
  with its own LDR and DFR alone, so the deliveries are the set of cores that
  accept; :func:`prove_acceptance` checks that per-core acceptance against
  the reference over its whole space (256 destinations x 256 logical IDs x
  16 DFR models), and the state classes check the set, and the
  lowest-priority choice, on top of it.

Every leaf is compared with the independent reference
(:mod:`osvemu.verify.spec`), explored again if the reference reads a field
the policy did not.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from osvemu.osv import ipi_policy
from osvemu.osv.config import OsvConfig
from osvemu.platform import icr as icr_module
from osvemu.platform.apicbus import NO_SENDER, RefusalCause, RoutingDecision
from osvemu.platform.icr import (
    DFR_MODEL_CLUSTER,
    DFR_MODEL_FLAT,
    ICR_DELIVERY_MODE_SHIFT,
    ICR_DEST_MODE_LOGICAL,
    ICR_HIGH_DEST_SHIFT,
    ICR_LEVEL_ASSERT,
    ICR_SHORTHAND_SHIFT,
    ICR_TRIGGER_LEVEL,
    DeliveryMode,
    Icr,
    Shorthand,
)
from osvemu.verify import spec
from osvemu.verify.explore import IntRange, Leaf, Unfixed, class_key, class_size, explore
from osvemu.verify.outcome import PropertyOutcome
from osvemu.verify.properties import BOOT_PROTOCOL, INDEPENDENCE, IPI_ISOLATION

#: The DFR value a model field makes (reserved bits 27:0 read as ones, SDM Vol. 3A 10.6.2.2).
DFR_RESERVED_ONES = 0x0FFF_FFFF
BOOT_MODES = (DeliveryMode.INIT, DeliveryMode.STARTUP)


def _dfr(model: int) -> int:
    return model << 28 | DFR_RESERVED_ONES


@dataclass(frozen=True)
class StateClass:
    """One assignment of LDR, DFR and PPR to every core of a partition."""

    name: str
    state: Callable[[int, random.Random], tuple[int, int, int]]  # position in partition -> (ldr, dfr, ppr)

    def states(self, count: int, seed: int) -> list[tuple[int, int, int]]:
        generator = random.Random(f"{self.name}:{seed}")
        return [self.state(position, generator) for position in range(count)]


def _linux_cluster(position: int, _: random.Random) -> tuple[int, int, int]:
    logical_id = (position // 4) << 4 | 1 << (position % 4)
    return logical_id << 24, _dfr(DFR_MODEL_CLUSTER), 0


#: The own-state classes of paths that read it (logical destinations, lowest priority).
STATE_CLASSES = (
    StateClass("reset", lambda p, g: (0, _dfr(DFR_MODEL_FLAT), 0)),
    StateClass("linux-flat", lambda p, g: ((1 << p if p < 8 else 0) << 24, _dfr(DFR_MODEL_FLAT), 0)),
    StateClass("linux-cluster", _linux_cluster),
    StateClass("mixed-models", lambda p, g: (((p * 37) & 0xFF) << 24, _dfr(DFR_MODEL_FLAT if p % 2 else 0x5),
                                            0x20 if p % 3 else 0x2F)),
    StateClass("equal-priority", lambda p, g: (0xFF << 24, _dfr(DFR_MODEL_CLUSTER), 0x40 + p % 16)),
    StateClass("random", lambda p, g: (g.randrange(256) << 24, _dfr(g.randrange(16)), g.randrange(256))),
)


class ForeignStateRead(BaseException):
    """The policy read a foreign core's state."""


class _Poisoned:
    """A foreign core's LDR, DFR or PPR: any use is an independence failure."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def _read(self, *_: Any) -> Any:
        raise ForeignStateRead(self.what)

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = __bool__ = __int__ = __index__ = _read
    __and__ = __rand__ = __or__ = __ror__ = __rshift__ = __lshift__ = __format__ = __add__ = __radd__ = _read


@dataclass(frozen=True)
class _ForeignApic:
    apic_id: int
    ldr: _Poisoned
    dfr: _Poisoned
    ppr: _Poisoned


class _OwnApic:
    """An own core: its LDR, DFR and PPR are those of the state class under
    exploration, or the lazy own-state field while none is chosen."""

    __slots__ = ("apic_id", "dfr", "ldr", "ppr")

    def __init__(self, apic_id: int) -> None:
        self.apic_id = apic_id


class _StateCell:
    """The own cores of one partition, bound to each assignment in turn."""

    def __init__(self, own: Sequence[int], classes: Sequence[StateClass], seed: int) -> None:
        self.domain = tuple(classes)
        self.apics = {apic: _OwnApic(apic) for apic in own}
        self.tables = {cls.name: cls.states(len(own), seed) for cls in classes}
        self.unchosen = Unfixed("own_state", self.domain)
        self.bound: Any = None

    def bind(self, assignment: Mapping[str, Any]) -> None:
        chosen = assignment["own_state"]
        if chosen is self.bound:
            return
        self.bound = chosen
        if isinstance(chosen, Unfixed):
            for apic in self.apics.values():
                apic.ldr = apic.dfr = apic.ppr = self.unchosen
        else:
            for apic, (ldr, dfr, ppr) in zip(self.apics.values(), self.tables[chosen.name]):
                apic.ldr, apic.dfr, apic.ppr = ldr, dfr, ppr


def _initial(cell: _StateCell, shorthand: Any = None) -> dict[str, Any]:
    return {
        "mode": Unfixed("mode", list(DeliveryMode)),
        "shorthand": shorthand if shorthand is not None else Unfixed("shorthand", list(Shorthand)),
        "logical": Unfixed("logical", (False, True)),
        "level": Unfixed("level", (False, True)),
        "trigger": Unfixed("trigger", (False, True)),
        "vector": IntRange("vector", 0, 0xFF),
        "destination": IntRange("destination", 0, 0xFF),
        "own_state": Unfixed("own_state", cell.domain),
    }


def _icr(assignment: Mapping[str, Any]) -> Icr:
    return Icr(assignment["vector"], assignment["mode"], assignment["logical"], assignment["level"],
               assignment["trigger"], assignment["shorthand"], assignment["destination"])


def representative(assignment: Mapping[str, Any]) -> dict[str, Any]:
    """One concrete input of a leaf's class."""
    chosen = {}
    for name, value in assignment.items():
        if isinstance(value, IntRange):
            value = value.lo
        elif isinstance(value, Unfixed):
            value = value.values[0]
        chosen[name] = value
    return chosen


def icr_words(assignment: Mapping[str, Any]) -> tuple[int, int]:
    """The ICR low and high words of a concrete assignment (SDM Vol. 3A Figure 10-12)."""
    low = (assignment["vector"] | int(assignment["mode"]) << ICR_DELIVERY_MODE_SHIFT
           | (ICR_DEST_MODE_LOGICAL if assignment["logical"] else 0) | (ICR_LEVEL_ASSERT if assignment["level"] else 0)
           | (ICR_TRIGGER_LEVEL if assignment["trigger"] else 0) | int(assignment["shorthand"]) << ICR_SHORTHAND_SHIFT)
    return low, assignment["destination"] << ICR_HIGH_DEST_SHIFT


@dataclass
class RoutingReport:
    isolation: PropertyOutcome
    independence: PropertyOutcome
    boot: PropertyOutcome

    @property
    def refuted(self) -> bool:
        """A counterexample was found: the proof stops at the first."""
        return not (self.isolation.proved and self.independence.proved and self.boot.proved)


class _Partitioned:
    """One layout's APICs as the policy sees them during the proof."""

    def __init__(self, config: OsvConfig, seed: int) -> None:
        self.owner = {apic: plan.index for plan in config.kernels for apic in plan.apic_ids}
        self.layout = ipi_policy.PartitionLayout(self.owner)
        self.machine_order = [cpu.apic_id for cpu in config.topology.cpus]
        self.members = {plan.index: frozenset(plan.apic_ids) for plan in config.kernels}
        self.views: dict[int | None, tuple[list[Any], _StateCell]] = {}
        self.seed = seed
        self._expected: dict[tuple, list[tuple[Mapping[str, Any], tuple[tuple[int, ...], bool]]]] = {}

    def apics_for(self, partition: int | None) -> tuple[list[Any], _StateCell]:
        """The bus's APIC list (machine order) for a sender of ``partition``:
        its own cores lazy, every other core poisoned."""
        if partition not in self.views:
            cell = _StateCell(sorted(self.members.get(partition, ())), STATE_CLASSES, self.seed)
            apics = [cell.apics[apic] if apic in cell.apics else
                     _ForeignApic(apic, *(_Poisoned(f"APIC {apic}'s {what}") for what in ("LDR", "DFR", "PPR")))
                     for apic in self.machine_order]
            self.views[partition] = apics, cell
        return self.views[partition]

    def expected(self, assignment: Mapping[str, Any], sender: int, io: bool,
                 partition: int | None) -> list[tuple[Mapping[str, Any], tuple[tuple[int, ...], bool]]]:
        """The reference's answer over a leaf's class: (sub-class, (deliveries,
        whether a foreign target must be refused)) pairs.  Without a shorthand
        the reference does not look at the sender (:mod:`osvemu.verify.spec`),
        so senders of one partition share the answers."""
        if not io:
            partition = self.owner.get(sender)
        sender_matters = not io and (sender not in self.owner or assignment["shorthand"] is not Shorthand.NONE)
        key = (io, partition, sender if sender_matters else None, tuple(map(class_key, assignment.values())))
        answer = self._expected.get(key)
        if answer is None:
            answer = self._expected[key] = self._reference(assignment, sender, io, partition)
        return answer

    def _reference(self, assignment: Mapping[str, Any], sender: int, io: bool,
                   partition: int | None) -> list[tuple[Mapping[str, Any], tuple[tuple[int, ...], bool]]]:
        _, cell = self.apics_for(partition)
        own_apics = list(cell.apics.values())
        own = self.members.get(partition, frozenset())

        def expected(sub: Mapping[str, Any]) -> tuple[tuple[int, ...], bool]:
            cell.bind(sub)
            icr = _icr(sub)
            if io:
                return spec.io_osv_deliveries(icr, own_apics), False
            if sender not in self.owner:
                return (), False
            return spec.osv_deliveries(icr, sender, own_apics), spec.refuses_foreign_target(icr, own)

        return [(sub.assignment, sub.result) for sub in explore(expected, assignment)]




def prove_routing(name: str, config: OsvConfig, senders: Sequence[int] | None = None, io: bool = True,
                  seed: int = 0) -> RoutingReport:
    """The three routing properties of one layout.  ``senders`` defaults to
    every APIC ID of the machine, owned or offline; ``io`` adds every
    kernel's I/O APIC messages."""
    report = RoutingReport(PropertyOutcome(IPI_ISOLATION.name, name, method="exhaustive by lazy case splitting"),
                           PropertyOutcome(INDEPENDENCE.name, name, method="foreign state poisoned on every case"),
                           PropertyOutcome(BOOT_PROTOCOL.name, name, method="INIT/STARTUP cases of the routing proof"))
    start = time.perf_counter()
    world = _Partitioned(config, seed)
    for sender in (world.machine_order if senders is None else senders):
        if not report.refuted:
            _prove_sender(name, world, sender, report)
    for partition in sorted(world.members) if io else ():
        if not report.refuted:
            _prove_io(name, world, partition, report)
    elapsed = time.perf_counter() - start
    for outcome in (report.isolation, report.independence, report.boot):
        outcome.seconds = elapsed
    report.independence.cases, report.independence.classes = report.isolation.cases, report.isolation.classes
    return report


def _prove_sender(name: str, world: _Partitioned, sender: int, report: RoutingReport) -> None:
    partition = world.owner.get(sender)
    _, cell = world.apics_for(partition)
    leaves = _decisions(world, partition, _initial(cell),
                        lambda icr, apics: ipi_policy.route_ipi(icr, sender, world.layout, apics))
    for leaf in leaves:
        _count(report, leaf)
        _check_leaf(name, world, leaf, sender, world.members.get(partition, frozenset()), report, io=False)
        if report.refuted:
            return


def _prove_io(name: str, world: _Partitioned, partition: int, report: RoutingReport) -> None:
    """An I/O APIC's messages (no shorthand, no sending APIC) for the kernel owning it."""
    _, cell = world.apics_for(partition)
    leaves = _decisions(world, partition, _initial(cell, shorthand=Shorthand.NONE),
                        lambda icr, apics: ipi_policy.route_io_interrupt(icr, partition, world.layout, apics))
    for leaf in leaves:
        _count(report, leaf)
        _check_leaf(name, world, leaf, NO_SENDER, world.members[partition], report, io=True, partition=partition)
        if report.refuted:
            return


def _decisions(world: _Partitioned, partition: int | None, initial: dict[str, Any],
               policy: Callable[[Icr, list[Any]], RoutingDecision]) -> Iterator[Leaf]:
    """The policy's leaves for a source of ``partition``: a read of foreign
    state ends the run with the :class:`ForeignStateRead` as its result."""
    apics, cell = world.apics_for(partition)

    def run(assignment: Mapping[str, Any]) -> RoutingDecision | ForeignStateRead:
        cell.bind(assignment)
        try:
            return policy(_icr(assignment), apics)
        except ForeignStateRead as read:
            return read

    return explore(run, initial)


def _count(report: RoutingReport, leaf: Leaf) -> None:
    cases = class_size(leaf.assignment)
    report.isolation.cases += cases
    report.isolation.classes += 1
    mode = leaf.assignment["mode"]
    if not isinstance(mode, Unfixed) and mode in BOOT_MODES:
        report.boot.cases += cases
        report.boot.classes += 1


def _check_leaf(name: str, world: _Partitioned, leaf: Leaf, sender: int, own: frozenset[int],
                report: RoutingReport, io: bool, partition: int | None = None) -> None:
    decision = leaf.result

    def where() -> str:
        return _where(name, leaf.assignment, sender, io, partition)
    if isinstance(decision, ForeignStateRead):
        report.independence.fail(f"{where()}: the decision reads {decision.args[0]}", _replay(name, leaf, sender, io))
        return
    mode = leaf.assignment["mode"]
    for apic in decision.deliveries:
        if apic not in own:
            whose = world.owner.get(apic)
            target = "no core" if apic not in world.owner and apic not in world.machine_order else \
                f"partition {whose}" if whose is not None else "an offline core"
            outcome = report.boot if not isinstance(mode, Unfixed) and mode in BOOT_MODES else report.isolation
            outcome.fail(f"{where()}: delivers to APIC {apic}, of {target}", _replay(name, leaf, sender, io))
            return
    if not isinstance(mode, Unfixed) and mode in (DeliveryMode.SMI, DeliveryMode.EXTINT) and decision.deliveries:
        report.isolation.fail(f"{where()}: delivers {mode.name} to {list(decision.deliveries)}",
                              _replay(name, leaf, sender, io))
        return
    refused = {refusal.apic_id for refusal in decision.refusals if refusal.cause is RefusalCause.ISOLATION}
    for sub, (deliveries, must_refuse) in world.expected(leaf.assignment, sender, io, partition):
        if tuple(decision.deliveries) != deliveries:
            outcome = report.boot if not isinstance(mode, Unfixed) and mode in BOOT_MODES else report.isolation
            outcome.fail(f"{_where(name, sub, sender, io, partition)}: delivers to {list(decision.deliveries)}, "
                         f"the bare machine of the partition to {list(deliveries)}", _replay(name, sub, sender, io))
            return
        if must_refuse and sub["destination"] not in refused:
            report.isolation.fail(f"{_where(name, sub, sender, io, partition)}: the foreign physical destination is "
                                  "not refused and recorded", _replay(name, sub, sender, io))
            return


def _where(name: str, assignment: Mapping[str, Any], sender: int, io: bool, partition: int | None) -> str:
    concrete = representative(assignment)
    low, high = icr_words(concrete)
    source = f"I/O APIC of kernel {partition}" if io else f"sender APIC {sender}"
    return (f"layout {name}, {source}, ICR {high:#010x}:{low:#010x} "
            f"({_describe(concrete)}), own state {concrete['own_state'].name}")


def _describe(concrete: Mapping[str, Any]) -> str:
    icr = Icr(vector=concrete["vector"], delivery_mode=concrete["mode"], logical=concrete["logical"], level_assert=concrete["level"], level_triggered=concrete["trigger"], shorthand=concrete["shorthand"], destination=concrete["destination"])
    return icr.describe()


def _replay(name: str, leaf: Leaf | Mapping[str, Any], sender: int, io: bool) -> str | None:
    if io:
        return None
    concrete = representative(leaf.assignment if isinstance(leaf, Leaf) else leaf)
    low, high = icr_words(concrete)
    return f"--layout {name} --replay-ipi {sender}:{low:#x}:{high:#x}:{concrete['own_state'].name}"


def prove_acceptance() -> PropertyOutcome:
    """Per-core logical acceptance (:func:`osvemu.platform.icr.logical_match`)
    against the reference over its whole space: 256 destinations x 256
    logical IDs x 16 DFR models (SDM Vol. 3A 10.6.2.2)."""
    outcome = PropertyOutcome(IPI_ISOLATION.name, "every layout", method="exhaustive: per-core logical acceptance")
    start = time.perf_counter()
    match = icr_module.logical_match
    for model in range(16):
        dfr = _dfr(model)
        for logical_id in range(256):
            ldr = logical_id << 24
            for destination in range(256):
                wanted = spec.logical_accepts(destination, ldr, dfr)
                if bool(match(destination, ldr, dfr)) != wanted:
                    outcome.fail(f"logical destination {destination:#04x} against LDR {ldr:#010x}, DFR {dfr:#010x}: "
                                 f"the platform says {not wanted}, SDM Vol. 3A 10.6.2.2 says {wanted}")
                    break
            outcome.cases += 256
    outcome.classes = outcome.cases
    outcome.seconds = time.perf_counter() - start
    return outcome


__all__ = ["STATE_CLASSES", "RoutingReport", "StateClass", "icr_words", "prove_acceptance", "prove_routing",
           "representative"]
