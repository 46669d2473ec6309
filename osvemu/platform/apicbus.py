"""The APIC bus: carries an ICR write from one local APIC to its targets,
and an I/O APIC's interrupt message to the local APICs it names.

The bus is built with its *routing policies*, pure functions from the
message, its source and the destination state of the APICs to a
:class:`RoutingDecision`: the APIC IDs reached and the refusals, each with
its cause.  For an ICR write the source is the sending APIC; for an I/O
APIC's message it is the kernel that owns the I/O APIC (under OSV every
kernel has its own).  Every rule lives in the policies: the architectural
ones (:func:`architectural_refusal`, :func:`io_architectural_refusal`,
which the bare machine and OSV share) and, under OSV, the isolation rules.
:meth:`ApicBus.send` and :meth:`ApicBus.send_io` ask the policy and carry
out its decision by delivery mode (Intel SDM Vol. 3A 10.6.1): architectural
refusals of an IPI set the sender's ESR bit, deliveries reach their cores,
and the counters move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from osvemu.platform.icr import DeliveryMode, DestinationState, Icr, resolve_destinations
from osvemu.platform.lapic import ESR_SEND_ILLEGAL_VECTOR, FIRST_LEGAL_VECTOR, LocalApic

#: ICR delivery modes the SDM reserves (Vol. 3A 10.6.1, Figure 10-12).
RESERVED_MODES = (DeliveryMode.RESERVED_3, DeliveryMode.EXTINT)
#: Redirection-entry delivery modes the 82093AA reserves (3.2.4): 011 and 110
#: (an I/O APIC sends no STARTUP).
IO_RESERVED_MODES = (DeliveryMode.RESERVED_3, DeliveryMode.STARTUP)
#: The "sender" of an I/O APIC's message: no local APIC (its shorthand is always none).
NO_SENDER = -1


class RefusalCause(Enum):
    ARCHITECTURAL = "architectural"  # the hardware would not send it either
    ISOLATION = "isolation"  # OSV refused it: an OSV violation


@dataclass(frozen=True)
class Refusal:
    apic_id: int | None  # the destination refused, or None for the whole message
    reason: str
    cause: RefusalCause = RefusalCause.ISOLATION
    esr_bit: int = 0  # the sender's ESR bit an architectural refusal sets


@dataclass(frozen=True)
class RoutingDecision:
    deliveries: tuple[int, ...]
    refusals: tuple[Refusal, ...] = ()

    def refused_for(self, cause: RefusalCause) -> tuple[Refusal, ...]:
        return tuple(refusal for refusal in self.refusals if refusal.cause is cause)


#: ICR, sending APIC ID, APIC states -> decision.
RoutingPolicy = Callable[[Icr, int, Sequence[DestinationState]], RoutingDecision]
#: I/O APIC message, index of the kernel owning the I/O APIC, APIC states -> decision.
IoRoutingPolicy = Callable[[Icr, int, Sequence[DestinationState]], RoutingDecision]


def architectural_refusal(icr: Icr) -> Refusal | None:
    """What the local APIC itself refuses to send (SDM Vol. 3A 10.5.3, 10.6.1)."""
    if icr.delivery_mode in RESERVED_MODES:
        return Refusal(None, f"delivery mode {icr.delivery_mode:03b} is reserved in the ICR",
                       RefusalCause.ARCHITECTURAL)
    if icr.delivery_mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY) and icr.vector < FIRST_LEGAL_VECTOR:
        return Refusal(None, f"illegal vector {icr.vector}", RefusalCause.ARCHITECTURAL, ESR_SEND_ILLEGAL_VECTOR)
    return None


def io_architectural_refusal(icr: Icr) -> Refusal | None:
    """What an I/O APIC's message cannot do on this platform: a reserved
    delivery mode (82093AA 3.2.4), or ExtINT, whose vector an 8259A would
    supply and the platform has none.  A vector below 16 is sent; the
    receiving local APIC rejects it (ESR bit 6, SDM Vol. 3A 10.5.3)."""
    if icr.delivery_mode in IO_RESERVED_MODES:
        return Refusal(None, f"delivery mode {icr.delivery_mode:03b} is reserved in a redirection entry",
                       RefusalCause.ARCHITECTURAL)
    if icr.delivery_mode == DeliveryMode.EXTINT:
        return Refusal(None, "ExtINT needs an 8259A to supply the vector, and the platform has none",
                       RefusalCause.ARCHITECTURAL)
    return None


def bare_machine_policy(icr: Icr, sender_apic_id: int, apics: Sequence[DestinationState]) -> RoutingDecision:
    """Route as the hardware does: every APIC may be reached."""
    refusal = architectural_refusal(icr)
    if refusal is not None:
        return RoutingDecision((), (refusal,))
    return RoutingDecision(tuple(resolve_destinations(icr, sender_apic_id, apics)))


def bare_machine_io_policy(icr: Icr, owner: int, apics: Sequence[DestinationState]) -> RoutingDecision:
    """Route an I/O APIC's message as the hardware does: every APIC may be
    reached; a destination no APIC answers to is simply not reached."""
    refusal = io_architectural_refusal(icr)
    if refusal is not None:
        return RoutingDecision((), (refusal,))
    return RoutingDecision(tuple(resolve_destinations(icr, NO_SENDER, apics)))


class IpiTarget(Protocol):
    """What the bus needs from a core to deliver to it."""

    apic_id: int

    def init(self) -> None: ...
    def startup(self, vector: int) -> bool: ...
    def raise_nmi(self) -> None: ...


@dataclass
class IpiStats:
    """One local APIC's messages.  ``by_mode`` counts the IPIs it sent by
    delivery mode, ``received_by_mode`` those it received (their sum is
    ``received``); ``io_received`` counts the I/O APIC messages that reached it."""

    sent: int = 0
    received: int = 0
    refused: int = 0
    by_mode: dict[str, int] = field(default_factory=dict)
    received_by_mode: dict[str, int] = field(default_factory=dict)
    io_received: int = 0


@dataclass
class IoStats:
    """The messages of one kernel's I/O APIC."""

    sent: int = 0
    delivered: int = 0  # local APICs reached
    refused: int = 0


class ApicBus:
    def __init__(self, policy: RoutingPolicy, io_policy: IoRoutingPolicy = bare_machine_io_policy) -> None:
        self._policy = policy
        self._io_policy = io_policy
        self._targets: dict[int, tuple[IpiTarget, LocalApic]] = {}
        #: The local APICs themselves, for the policies to read what they need of them.
        self._apics: list[LocalApic] = []
        self.stats: dict[int, IpiStats] = {}
        self.io_stats: dict[int, IoStats] = {}  # by the owning kernel's index
        #: APIC IDs that received something (an interrupt, NMI, INIT or
        #: STARTUP) since the scheduler last asked (:meth:`take_reached`).
        self.reached: set[int] = set()

    def take_reached(self) -> set[int]:
        """The APIC IDs reached since the last call."""
        reached, self.reached = self.reached, set()
        return reached

    def attach(self, target: IpiTarget, lapic: LocalApic) -> None:
        self._targets[target.apic_id] = (target, lapic)
        self._apics.append(lapic)
        self.stats[target.apic_id] = IpiStats()

    def send(self, sender: LocalApic, icr: Icr) -> RoutingDecision:
        """An ICR write: decide, then carry out the decision."""
        decision = self._policy(icr, sender.apic_id, self._apics)
        self.carry_out(sender, icr, decision)
        return decision

    def send_io(self, owner: int, icr: Icr) -> RoutingDecision:
        """A message of the I/O APIC that kernel ``owner`` owns: decide, then
        deliver it to each APIC reached."""
        decision = self._io_policy(icr, owner, self._apics)
        stats = self.io_stats.setdefault(owner, IoStats())
        stats.sent += 1
        stats.refused += len(decision.refusals)
        for apic_id in decision.deliveries:
            target, lapic = self._targets[apic_id]
            _deliver(target, lapic, icr)
            self.reached.add(apic_id)
            stats.delivered += 1
            self.stats[apic_id].io_received += 1
        return decision

    def carry_out(self, sender: LocalApic, icr: Icr, decision: RoutingDecision) -> None:
        """Apply a decision: the sender's counters and ESR, then each delivery.
        (OSV's NOTIFY hypercall comes here with its own decision.)"""
        stats = self.stats[sender.apic_id]
        stats.sent += 1
        mode = mode_name(icr)
        stats.by_mode[mode] = stats.by_mode.get(mode, 0) + 1
        stats.refused += len(decision.refusals)
        for refusal in decision.refused_for(RefusalCause.ARCHITECTURAL):
            if refusal.esr_bit:
                sender.report_error(refusal.esr_bit)
        for apic_id in decision.deliveries:
            target, lapic = self._targets[apic_id]
            _deliver(target, lapic, icr)
            self.reached.add(apic_id)
            received = self.stats[apic_id]
            received.received += 1
            received.received_by_mode[mode] = received.received_by_mode.get(mode, 0) + 1


def mode_name(icr: Icr) -> str:
    """How the counters name an ICR's delivery mode: "fixed", "nmi", "init",
    "startup", ..., and "init-deassert" for the level-de-assert INIT."""
    return "init-deassert" if icr.is_init_deassert else icr.delivery_mode.name.lower()


def _deliver(target: IpiTarget, lapic: LocalApic, icr: Icr) -> None:
    mode = icr.delivery_mode
    if mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY):
        lapic.accept_fixed(icr.vector, icr.level_triggered)
    elif mode == DeliveryMode.NMI:
        target.raise_nmi()
    elif mode == DeliveryMode.INIT:
        if not icr.is_init_deassert:  # de-assert only resynchronises arbitration IDs
            target.init()
    elif mode == DeliveryMode.STARTUP:
        target.startup(icr.vector)
    # SMI: the model has no System Management Mode; the IPI is counted only.


__all__ = ["NO_SENDER", "ApicBus", "IoRoutingPolicy", "IoStats", "IpiStats", "Refusal", "RefusalCause",
           "RoutingDecision", "RoutingPolicy", "architectural_refusal", "bare_machine_io_policy", "bare_machine_policy",
           "io_architectural_refusal", "mode_name"]
