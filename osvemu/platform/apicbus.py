"""The APIC bus: carries an ICR write from one local APIC to its targets.

Routing is split in two: a *policy* decides which APIC IDs an IPI reaches
(by default every APIC of the machine, via
:func:`osvemu.platform.icr.resolve_destinations`; a partitioning monitor may
substitute its own), and :meth:`ApicBus.send` applies the result to the
target cores by delivery mode (Intel SDM Vol. 3A 10.6.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from osvemu.platform.icr import ApicState, DeliveryMode, Icr, resolve_destinations
from osvemu.platform.lapic import LocalApic


@dataclass(frozen=True)
class Refusal:
    apic_id: int | None
    reason: str


@dataclass(frozen=True)
class RoutingDecision:
    deliveries: tuple[int, ...]
    refusals: tuple[Refusal, ...] = ()


RoutingPolicy = Callable[[Icr, int, Sequence[ApicState]], RoutingDecision]


def bare_machine_policy(icr: Icr, sender_apic_id: int, apics: Sequence[ApicState]) -> RoutingDecision:
    """Route as the hardware does: every APIC may be reached."""
    if icr.delivery_mode in (DeliveryMode.RESERVED_3, DeliveryMode.EXTINT):
        return RoutingDecision((), (Refusal(None, f"delivery mode {icr.delivery_mode:03b} is reserved in the ICR"),))
    return RoutingDecision(tuple(resolve_destinations(icr, sender_apic_id, apics)))


class IpiTarget:
    """What the bus needs from a core to deliver to it."""

    apic_id: int
    lapic: LocalApic

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
    def __init__(self, policy: RoutingPolicy = bare_machine_policy) -> None:
        self.policy = policy
        self._targets: dict[int, IpiTarget] = {}
        self.stats: dict[int, IpiStats] = {}
        self.on_ipi: Callable[[int, Icr, RoutingDecision], None] | None = None

    def attach(self, target: IpiTarget) -> None:
        self._targets[target.apic_id] = target
        self.stats[target.apic_id] = IpiStats()

    def send(self, sender: LocalApic, icr: Icr) -> RoutingDecision:
        states = [t.lapic.destination_state() for t in self._targets.values()]
        decision = self.policy(icr, sender.apic_id, states)
        stats = self.stats[sender.apic_id]
        stats.sent += 1
        mode = "init-deassert" if icr.is_init_deassert else icr.delivery_mode.name.lower()
        stats.by_mode[mode] = stats.by_mode.get(mode, 0) + 1
        stats.refused += len(decision.refusals)
        if icr.delivery_mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY) and icr.vector < 16:
            sender.report_send_illegal_vector()  # SDM Vol. 3A 10.5.3: vectors 0-15 are illegal
            decision = RoutingDecision((), decision.refusals + (Refusal(None, f"illegal vector {icr.vector}"),))
        for apic_id in decision.deliveries:
            self._deliver(self._targets[apic_id], icr)
            self.stats[apic_id].received += 1
        if self.on_ipi is not None:
            self.on_ipi(sender.apic_id, icr, decision)
        return decision

    @staticmethod
    def _deliver(target: IpiTarget, icr: Icr) -> None:
        mode = icr.delivery_mode
        if mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY):
            target.lapic.accept_fixed(icr.vector, icr.level_triggered)
        elif mode == DeliveryMode.NMI:
            target.raise_nmi()
        elif mode == DeliveryMode.INIT:
            if not icr.is_init_deassert:  # de-assert only resynchronises arbitration IDs
                target.init()
        elif mode == DeliveryMode.STARTUP:
            target.startup(icr.vector)
        # SMI: the model has no System Management Mode; the IPI is counted only.
