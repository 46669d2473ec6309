"""The APIC bus: carries an ICR write from one local APIC to its targets.

The bus is built with its *routing policy*, a pure function from the ICR,
the sender and the destination state of the APICs to a
:class:`RoutingDecision`: the APIC IDs reached and the refusals, each with
its cause.  Every rule lives in the policy: the architectural ones
(:func:`architectural_refusal`, which the bare machine and OSV share) and,
under OSV, the isolation rules.  :meth:`ApicBus.send` asks the policy and
carries out its decision by delivery mode (Intel SDM Vol. 3A 10.6.1):
architectural refusals set the sender's ESR bit, deliveries reach their
cores, and the counters of sender and receivers move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from osvemu.platform.icr import ApicState, DeliveryMode, Icr, resolve_destinations
from osvemu.platform.lapic import ESR_SEND_ILLEGAL_VECTOR, LocalApic

#: Vectors 0-15 are illegal in fixed and lowest-priority messages (SDM Vol. 3A 10.5.2).
FIRST_LEGAL_VECTOR = 16
#: ICR delivery modes the SDM reserves (Vol. 3A 10.6.1, Figure 10-12).
RESERVED_MODES = (DeliveryMode.RESERVED_3, DeliveryMode.EXTINT)


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


RoutingPolicy = Callable[[Icr, int, Sequence[ApicState]], RoutingDecision]


def architectural_refusal(icr: Icr) -> Refusal | None:
    """What the local APIC itself refuses to send (SDM Vol. 3A 10.5.3, 10.6.1)."""
    if icr.delivery_mode in RESERVED_MODES:
        return Refusal(None, f"delivery mode {icr.delivery_mode:03b} is reserved in the ICR",
                       RefusalCause.ARCHITECTURAL)
    if icr.delivery_mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY) and icr.vector < FIRST_LEGAL_VECTOR:
        return Refusal(None, f"illegal vector {icr.vector}", RefusalCause.ARCHITECTURAL, ESR_SEND_ILLEGAL_VECTOR)
    return None


def bare_machine_policy(icr: Icr, sender_apic_id: int, apics: Sequence[ApicState]) -> RoutingDecision:
    """Route as the hardware does: every APIC may be reached."""
    refusal = architectural_refusal(icr)
    if refusal is not None:
        return RoutingDecision((), (refusal,))
    return RoutingDecision(tuple(resolve_destinations(icr, sender_apic_id, apics)))


class IpiTarget(Protocol):
    """What the bus needs from a core to deliver to it."""

    apic_id: int

    def init(self) -> None: ...
    def startup(self, vector: int) -> bool: ...
    def raise_nmi(self) -> None: ...


@dataclass
class IpiStats:
    sent: int = 0
    received: int = 0
    refused: int = 0
    by_mode: dict[str, int] = field(default_factory=dict)


class ApicBus:
    def __init__(self, policy: RoutingPolicy) -> None:
        self._policy = policy
        self._targets: dict[int, tuple[IpiTarget, LocalApic]] = {}
        self.stats: dict[int, IpiStats] = {}

    def attach(self, target: IpiTarget, lapic: LocalApic) -> None:
        self._targets[target.apic_id] = (target, lapic)
        self.stats[target.apic_id] = IpiStats()

    def send(self, sender: LocalApic, icr: Icr) -> RoutingDecision:
        """An ICR write: decide, then carry out the decision."""
        states = [lapic.destination_state() for _, lapic in self._targets.values()]
        decision = self._policy(icr, sender.apic_id, states)
        self.carry_out(sender, icr, decision)
        return decision

    def carry_out(self, sender: LocalApic, icr: Icr, decision: RoutingDecision) -> None:
        """Apply a decision: the sender's counters and ESR, then each delivery.
        (OSV's NOTIFY hypercall comes here with its own decision.)"""
        stats = self.stats[sender.apic_id]
        stats.sent += 1
        mode = "init-deassert" if icr.is_init_deassert else icr.delivery_mode.name.lower()
        stats.by_mode[mode] = stats.by_mode.get(mode, 0) + 1
        stats.refused += len(decision.refusals)
        for refusal in decision.refused_for(RefusalCause.ARCHITECTURAL):
            if refusal.esr_bit:
                sender.report_error(refusal.esr_bit)
        for apic_id in decision.deliveries:
            target, lapic = self._targets[apic_id]
            _deliver(target, lapic, icr)
            self.stats[apic_id].received += 1


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


__all__ = ["ApicBus", "IpiStats", "Refusal", "RefusalCause", "RoutingDecision", "RoutingPolicy",
           "architectural_refusal", "bare_machine_policy"]
