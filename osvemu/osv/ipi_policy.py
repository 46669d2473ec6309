"""OSV's decision on every ICR write and every I/O APIC message: pure
functions from the message, its source (the sending APIC, or the kernel
owning the I/O APIC) and the partition layout to deliveries and refusals.

Rules (the paper's interface, section "Interrupt virtualization"):

* fixed and lowest-priority IPIs reach only the sender's own cores; a
  physical destination outside the partition is refused (other targets of the
  same write are still delivered);
* the broadcast ID 0xFF and the shorthands "all including self" / "all
  excluding self" become deliveries to the partition's own cores only;
* logical flat and cluster destinations are resolved against the partition's
  own cores only: logical IDs are a per-partition name space (every kernel
  numbers its CPUs from 0), so a foreign core with a matching logical ID is
  simply not addressed, and no refusal is recorded for it;
* NMI, INIT and STARTUP reach only own cores;
* SMI is refused.

Before any of these, the architectural rules the hardware itself applies
(:func:`osvemu.platform.apicbus.architectural_refusal`: reserved delivery
modes, illegal vectors) refuse a message exactly as on the bare machine;
those refusals are the guest's own mistake, not OSV violations.  Inside a
partition a legitimate IPI is routed exactly as on the bare machine
(:func:`osvemu.platform.icr.resolve_destinations`).

An I/O APIC's message (:func:`route_io_interrupt`) obeys the same rules as
an IPI without a shorthand, with the partition of the kernel that owns the
I/O APIC (each kernel has its own) in place of the sender's: a redirection
entry aimed at a physical APIC of another partition is refused, never
delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from osvemu.platform.apicbus import (
    NO_SENDER,
    IoRoutingPolicy,
    Refusal,
    RoutingDecision,
    RoutingPolicy,
    architectural_refusal,
    io_architectural_refusal,
)
from osvemu.platform.icr import (
    BROADCAST_ID,
    DeliveryMode,
    DestinationState,
    Icr,
    Shorthand,
    resolve_destinations,
)

REFUSED_MODES = {
    DeliveryMode.SMI: "SMI IPIs are refused: System Management Mode belongs to no partition",
}


@dataclass(frozen=True)
class PartitionLayout:
    """Which APIC IDs belong to which partition (fixed once built: the
    members of each partition are computed once, not at every ICR write)."""

    owner: dict[int, int]  # APIC ID -> partition index
    _members: dict[int, frozenset[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        members: dict[int, set[int]] = {}
        for apic, partition in self.owner.items():
            members.setdefault(partition, set()).add(apic)
        object.__setattr__(self, "_members", {partition: frozenset(apics) for partition, apics in members.items()})

    def members(self, partition: int) -> frozenset[int]:
        return self._members.get(partition, frozenset())


def route_ipi(icr: Icr, sender_apic_id: int, layout: PartitionLayout,
              apics: Sequence[DestinationState]) -> RoutingDecision:
    """Deliveries and refusals for one ICR write (see the module docstring)."""
    architectural = architectural_refusal(icr)
    if architectural is not None:
        return RoutingDecision((), (architectural,))
    if icr.delivery_mode in REFUSED_MODES:
        return RoutingDecision((), (Refusal(None, REFUSED_MODES[icr.delivery_mode]),))
    partition = layout.owner.get(sender_apic_id)
    if partition is None:
        return RoutingDecision((), (Refusal(None, f"APIC {sender_apic_id} belongs to no partition"),))
    return _route_within(icr, sender_apic_id, partition, layout, apics)


def route_io_interrupt(icr: Icr, partition: int, layout: PartitionLayout,
                       apics: Sequence[DestinationState]) -> RoutingDecision:
    """Deliveries and refusals for a message of ``partition``'s I/O APIC."""
    architectural = io_architectural_refusal(icr)
    if architectural is not None:
        return RoutingDecision((), (architectural,))
    if icr.delivery_mode in REFUSED_MODES:
        return RoutingDecision((), (Refusal(None, REFUSED_MODES[icr.delivery_mode]),))
    return _route_within(icr, NO_SENDER, partition, layout, apics)


def _route_within(icr: Icr, sender_apic_id: int, partition: int, layout: PartitionLayout,
                  apics: Sequence[DestinationState]) -> RoutingDecision:
    """Resolve the destination among the partition's own APICs only."""
    own = layout.members(partition)
    own_apics = [a for a in apics if a.apic_id in own]
    deliveries = tuple(resolve_destinations(icr, sender_apic_id, own_apics))
    refusals: list[Refusal] = []
    physical = icr.shorthand == Shorthand.NONE and not icr.logical
    if physical and icr.destination != BROADCAST_ID and icr.destination not in own:
        where = "another partition" if icr.destination in layout.owner else "no processor"
        refusals.append(Refusal(icr.destination, f"physical destination APIC {icr.destination} belongs to {where}"))
    if icr.delivery_mode == DeliveryMode.LOWEST_PRIORITY and not deliveries and not refusals:
        what = "IPI" if sender_apic_id != NO_SENDER else "interrupt"
        refusals.append(Refusal(None, f"lowest-priority {what} matches no core of the partition"))
    return RoutingDecision(deliveries, tuple(refusals))


def make_policy(layout: PartitionLayout) -> RoutingPolicy:
    """The ApicBus routing policy for this layout."""
    def policy(icr: Icr, sender_apic_id: int, apics: Sequence[DestinationState]) -> RoutingDecision:
        return route_ipi(icr, sender_apic_id, layout, apics)
    return policy


def make_io_policy(layout: PartitionLayout) -> IoRoutingPolicy:
    """The ApicBus policy for I/O APIC messages under this layout."""
    def policy(icr: Icr, owner: int, apics: Sequence[DestinationState]) -> RoutingDecision:
        return route_io_interrupt(icr, owner, layout, apics)
    return policy


__all__ = ["REFUSED_MODES", "PartitionLayout", "make_io_policy", "make_policy", "route_io_interrupt", "route_ipi"]
