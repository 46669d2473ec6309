"""OSV's ICR policy checked exhaustively against its specification.

For an irregular layout (partitions of 5, 2 and 4 cores, an APIC ID no
partition owns, one partition in the logical cluster model) every sender,
every delivery mode, both destination modes, every shorthand, all 256
destinations, a legal and an illegal vector and both INIT levels are routed
by :func:`route_ipi` and compared with what the specification says:

* the architectural rules refuse exactly what the bare machine refuses;
* SMI is refused;
* otherwise the deliveries are the bare machine's resolution restricted to
  the sender's partition (Intel SDM Vol. 3A 10.6.2), never a foreign core;
* a physical destination outside the partition is refused, naming it.

The shorthands ignore the destination field, so one destination stands for
all 256 there.
"""

from __future__ import annotations

import itertools
import time

from osvemu.osv.ipi_policy import PartitionLayout, route_ipi
from osvemu.platform.apicbus import RefusalCause, architectural_refusal
from osvemu.platform.icr import (
    BROADCAST_ID,
    ICR_DELIVERY_MODE_SHIFT,
    ICR_DEST_MODE_LOGICAL,
    ICR_HIGH_DEST_SHIFT,
    ICR_LEVEL_ASSERT,
    ICR_SHORTHAND_SHIFT,
    ICR_TRIGGER_LEVEL,
    ApicState,
    DeliveryMode,
    Icr,
    Shorthand,
    resolve_destinations,
)

PARTITIONS = {0: (0, 1, 2, 3, 4), 1: (8, 9), 2: (16, 17, 18, 19)}
UNOWNED = 5  # a processor no partition owns
LAYOUT = PartitionLayout({apic: p for p, apics in PARTITIONS.items() for apic in apics})
#: Partitions 0 and 1 number their CPUs 0.. in the flat model (the same
#: logical IDs in both), partition 2 uses clusters; PPRs differ for lowest priority.
FLAT_DFR, CLUSTER_DFR = 0xFFFFFFFF, 0x0FFFFFFF
STATES = [ApicState(apic, (1 << i) << 24, FLAT_DFR, ppr=0x10 * (4 - i))
          for p in (0, 1) for i, apic in enumerate(PARTITIONS[p])] + \
         [ApicState(apic, (((i // 2) << 4) | (1 << (i % 2))) << 24, CLUSTER_DFR, ppr=0x20)
          for i, apic in enumerate(PARTITIONS[2])] + [ApicState(UNOWNED, 1 << 24, FLAT_DFR)]


def icrs():
    for mode, logical, shorthand, vector, level in itertools.product(
            DeliveryMode, (False, True), Shorthand, (0x05, 0x40), (False, True)):
        if not level and mode is not DeliveryMode.INIT:
            continue  # de-assert matters only for INIT
        low = vector | (int(mode) << ICR_DELIVERY_MODE_SHIFT) | (ICR_DEST_MODE_LOGICAL if logical else 0) | \
            (ICR_LEVEL_ASSERT if level else ICR_TRIGGER_LEVEL) | (int(shorthand) << ICR_SHORTHAND_SHIFT)
        for destination in range(256) if shorthand is Shorthand.NONE else (0,):
            yield Icr.decode(low, destination << ICR_HIGH_DEST_SHIFT)


def expected(icr: Icr, sender: int) -> tuple[tuple[int, ...], set[RefusalCause]]:
    """The specification's deliveries and refusal causes."""
    if architectural_refusal(icr) is not None:
        return (), {RefusalCause.ARCHITECTURAL}
    if icr.delivery_mode is DeliveryMode.SMI:
        return (), {RefusalCause.ISOLATION}
    own = PARTITIONS[LAYOUT.owner[sender]]
    deliveries = tuple(resolve_destinations(icr, sender, [s for s in STATES if s.apic_id in own]))
    causes = set()
    physical = icr.shorthand is Shorthand.NONE and not icr.logical
    if physical and icr.destination != BROADCAST_ID and icr.destination not in own:
        causes.add(RefusalCause.ISOLATION)
    if icr.delivery_mode is DeliveryMode.LOWEST_PRIORITY and not deliveries:
        causes.add(RefusalCause.ISOLATION)
    return deliveries, causes


def test_every_icr_from_every_sender_follows_the_specification():
    started, checked = time.monotonic(), 0
    all_icrs = list(icrs())
    for sender in LAYOUT.owner:
        own = set(PARTITIONS[LAYOUT.owner[sender]])
        for icr in all_icrs:
            decision = route_ipi(icr, sender, LAYOUT, STATES)
            deliveries, causes = expected(icr, sender)
            assert decision.deliveries == deliveries, (icr, sender)
            assert {r.cause for r in decision.refusals} == causes, (icr, sender, decision.refusals)
            assert set(decision.deliveries) <= own
            for refusal in decision.refusals:
                if refusal.cause is RefusalCause.ISOLATION and refusal.apic_id is not None:
                    assert refusal.apic_id == icr.destination and refusal.apic_id not in own
            checked += 1
    # (7 modes + INIT at both levels) x 2 destination modes x 2 vectors x (256 destinations + 3 shorthands)
    assert checked == len(LAYOUT.owner) * len(all_icrs) == 11 * 9 * 2 * 2 * 259
    assert time.monotonic() - started < 30  # generous; it takes about a second


def test_a_sender_outside_every_partition_reaches_nobody():
    for icr in itertools.islice(icrs(), 0, None, 97):
        decision = route_ipi(icr, UNOWNED, LAYOUT, STATES)
        assert decision.deliveries == () and len(decision.refusals) == 1


def test_logical_ids_are_a_per_partition_name_space():
    """Logical flat ID 0b11 exists in partitions 0 and 1: only the sender's own CPUs are reached."""
    icr = Icr.decode(0x40 | ICR_DEST_MODE_LOGICAL | ICR_LEVEL_ASSERT, 0b11 << ICR_HIGH_DEST_SHIFT)
    assert route_ipi(icr, 9, LAYOUT, STATES).deliveries == (8, 9)
    assert route_ipi(icr, 0, LAYOUT, STATES).deliveries == (0, 1)
