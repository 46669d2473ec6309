"""The local APIC interrupt command register and destination resolution.

Decoding follows Intel SDM Vol. 3A 10.6.1 (Figure 10-12); destination
matching follows 10.6.2 (physical, logical flat and cluster models) and
10.6.2.3 (broadcast).  :func:`resolve_destinations` is a pure function of the
ICR, the sender and the current LDR/DFR of the APICs that may be reached, so
a partitioning layer can call it with only its own APICs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol


class DeliveryMode(IntEnum):
    FIXED = 0b000
    LOWEST_PRIORITY = 0b001
    SMI = 0b010
    RESERVED_3 = 0b011
    NMI = 0b100
    INIT = 0b101
    STARTUP = 0b110
    EXTINT = 0b111  # reserved in the ICR


class Shorthand(IntEnum):
    NONE = 0b00
    SELF = 0b01
    ALL_INCLUDING_SELF = 0b10
    ALL_EXCLUDING_SELF = 0b11


ICR_VECTOR_MASK = 0xFF
ICR_DELIVERY_MODE_SHIFT = 8
ICR_DEST_MODE_LOGICAL = 1 << 11
ICR_DELIVERY_STATUS = 1 << 12
ICR_LEVEL_ASSERT = 1 << 14
ICR_TRIGGER_LEVEL = 1 << 15
ICR_SHORTHAND_SHIFT = 18
ICR_HIGH_DEST_SHIFT = 24
#: Physical destination ID and logical destination meaning "every APIC".
BROADCAST_ID = 0xFF
#: DFR model field values (SDM Vol. 3A 10.6.2.2, Figure 10-14).
DFR_MODEL_FLAT = 0xF
DFR_MODEL_CLUSTER = 0x0


@dataclass(frozen=True)
class Icr:
    vector: int
    delivery_mode: DeliveryMode
    logical: bool
    level_assert: bool
    level_triggered: bool
    shorthand: Shorthand
    destination: int

    @classmethod
    def decode(cls, low: int, high: int) -> Icr:
        return cls(
            vector=low & ICR_VECTOR_MASK,
            delivery_mode=DeliveryMode((low >> ICR_DELIVERY_MODE_SHIFT) & 7),
            logical=bool(low & ICR_DEST_MODE_LOGICAL),
            level_assert=bool(low & ICR_LEVEL_ASSERT),
            level_triggered=bool(low & ICR_TRIGGER_LEVEL),
            shorthand=Shorthand((low >> ICR_SHORTHAND_SHIFT) & 3),
            destination=(high >> ICR_HIGH_DEST_SHIFT) & 0xFF,
        )

    @property
    def is_init_deassert(self) -> bool:
        """INIT with level de-assert and level trigger (SDM Vol. 3A 10.6.1)."""
        return self.delivery_mode == DeliveryMode.INIT and not self.level_assert and self.level_triggered

    def describe(self) -> str:
        mode = "init-deassert" if self.is_init_deassert else self.delivery_mode.name.lower()
        if self.shorthand != Shorthand.NONE:
            target = self.shorthand.name.lower().replace("_", "-")
        else:
            target = f"{'logical' if self.logical else 'physical'} {self.destination:#04x}"
        return f"{mode} vector {self.vector:#04x} to {target}"


class DestinationState(Protocol):
    """What destination matching reads of one local APIC: a snapshot
    (:class:`ApicState`) or the live :class:`~osvemu.platform.lapic.LocalApic`,
    which the bus hands a routing policy so that only what the decision
    reads is computed (the PPR of each logical or lowest-priority
    candidate).  A policy decides before anything changes and keeps none."""

    @property
    def apic_id(self) -> int: ...
    @property
    def ldr(self) -> int: ...
    @property
    def dfr(self) -> int: ...
    @property
    def ppr(self) -> int: ...


@dataclass(frozen=True)
class ApicState:
    """What destination matching needs to know about one local APIC, as a snapshot."""

    apic_id: int
    ldr: int
    dfr: int
    ppr: int = 0


def logical_match(destination: int, ldr: int, dfr: int) -> bool:
    """Logical destination matching (SDM Vol. 3A 10.6.2.2)."""
    logical_id = (ldr >> 24) & 0xFF
    if destination == BROADCAST_ID:
        return True
    if (dfr >> 28) == DFR_MODEL_FLAT:
        return bool(destination & logical_id)
    cluster, members = destination >> 4, destination & 0xF
    return (cluster == 0xF or cluster == logical_id >> 4) and bool(members & logical_id & 0xF)


def resolve_destinations(icr: Icr, sender_apic_id: int, apics: Sequence[DestinationState]) -> list[int]:
    """APIC IDs the IPI reaches, in ascending order.

    A lowest-priority IPI reaches the one matching APIC with the lowest
    processor priority, ties broken by the lowest APIC ID (deterministic
    stand-in for the bus arbitration of SDM Vol. 3A 10.6.2.4).
    """
    if icr.shorthand == Shorthand.SELF:
        matched = [a for a in apics if a.apic_id == sender_apic_id]
    elif icr.shorthand == Shorthand.ALL_INCLUDING_SELF:
        matched = list(apics)
    elif icr.shorthand == Shorthand.ALL_EXCLUDING_SELF:
        matched = [a for a in apics if a.apic_id != sender_apic_id]
    elif icr.logical:
        matched = [a for a in apics if logical_match(icr.destination, a.ldr, a.dfr)]
    elif icr.destination == BROADCAST_ID:
        matched = list(apics)
    else:
        matched = [a for a in apics if a.apic_id == icr.destination]
    matched.sort(key=lambda a: a.apic_id)
    if icr.delivery_mode == DeliveryMode.LOWEST_PRIORITY and matched:
        matched = [min(matched, key=lambda a: (a.ppr & 0xF0, a.apic_id))]
    return [a.apic_id for a in matched]
