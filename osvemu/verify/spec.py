"""The reference the routing proof compares OSV against, written from the
manuals independently of :mod:`osvemu.platform.icr` and
:mod:`osvemu.osv.ipi_policy`.

:func:`accepts` is one local APIC's decision whether an IPI is for it
(Intel SDM Vol. 3A 10.6.2: each local APIC compares the message's
destination with its own APIC ID, or with its own LDR under its own DFR
model, 10.6.2.2, or applies the shorthand, 10.6.1); :func:`bare_deliveries`
is what the bare machine delivers; :func:`osv_deliveries` is the paper's
rule: the bare machine restricted to the sender's partition, with SMI
refused.  A DFR model other than flat (1111b) is undefined in the SDM; the
platform treats it as cluster (0000b), and so does this reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from osvemu.platform.icr import ApicState, DeliveryMode, Icr, Shorthand

MDA_BROADCAST = 0xFF  # SDM Vol. 3A 10.6.2.1 and 10.6.2.2: every APIC
FLAT_MODEL = 0b1111  # DFR bits 31:28 (SDM Vol. 3A Figure 10-14)
#: ICR delivery modes the local APIC never sends (SDM Vol. 3A 10.6.1: 011b
#: reserved, 111b is ExtINT, which only an I/O APIC or LINT pin may use).
NEVER_SENT = (0b011, 0b111)
#: Fixed and lowest-priority messages need a vector of 16 or more (SDM Vol. 3A 10.5.2).
VECTORED = (0b000, 0b001)
LOWEST_LEGAL_VECTOR = 16
#: Redirection-entry modes an I/O APIC never sends here: 011b and 110b are
#: reserved (82093AA 3.2.4), ExtINT needs an 8259A, SMI is OSV's refusal.
IO_NOT_SENT = (0b011, 0b110, 0b111, 0b010)
#: An I/O APIC's message has no sending APIC, so no APIC ID equals it.
IO_SENDER = -1


def accepts(apic: ApicState, icr: Icr, sender: int) -> bool:
    """Whether ``apic`` takes the message: SDM Vol. 3A 10.6.1 (shorthands) and 10.6.2."""
    if icr.shorthand == Shorthand.SELF:
        return apic.apic_id == sender
    if icr.shorthand == Shorthand.ALL_INCLUDING_SELF:
        return True
    if icr.shorthand == Shorthand.ALL_EXCLUDING_SELF:
        return apic.apic_id != sender
    if not icr.logical:
        return icr.destination in (MDA_BROADCAST, apic.apic_id)
    return logical_accepts(icr.destination, apic.ldr, apic.dfr)


def logical_accepts(destination: int, ldr: int, dfr: int) -> bool:
    """Whether an APIC with this LDR and DFR takes a logical destination
    (SDM Vol. 3A 10.6.2.2): 0xFF is every APIC; the flat model compares the
    8-bit logical ID bit by bit; the cluster model needs the cluster (bits
    7:4, 0xF meaning all) to match and a common member bit (bits 3:0)."""
    if destination == MDA_BROADCAST:
        return True
    own_logical_id = ldr >> 24 & 0xFF
    if dfr >> 28 == FLAT_MODEL:
        return destination & own_logical_id != 0
    cluster_matches = destination >> 4 in (0xF, own_logical_id >> 4)
    return cluster_matches and destination & own_logical_id & 0xF != 0


def sends(icr: Icr) -> bool:
    """Whether the local APIC sends the message at all (SDM Vol. 3A 10.5.3, 10.6.1)."""
    mode = int(icr.delivery_mode)
    if mode in NEVER_SENT:
        return False
    return not (mode in VECTORED and icr.vector < LOWEST_LEGAL_VECTOR)


def bare_deliveries(icr: Icr, sender: int, apics: Iterable[ApicState]) -> tuple[int, ...]:
    """The APIC IDs the bare machine delivers to, ascending.  Lowest priority
    goes to the accepting APIC of lowest priority class, the lowest APIC ID
    on a tie (the platform's fixed arbitration, SDM Vol. 3A 10.6.2.4)."""
    if not sends(icr):
        return ()
    taking = sorted((apic for apic in apics if accepts(apic, icr, sender)), key=lambda apic: apic.apic_id)
    return _arbitrate(icr, taking)


def _arbitrate(icr: Icr, taking: list[ApicState]) -> tuple[int, ...]:
    """Lowest priority keeps one of the accepting APICs (``taking``, ascending)."""
    if int(icr.delivery_mode) == DeliveryMode.LOWEST_PRIORITY and taking:
        lowest = min(apic.ppr & 0xF0 for apic in taking)
        taking = [next(apic for apic in taking if apic.ppr & 0xF0 == lowest)]
    return tuple(apic.apic_id for apic in taking)


def osv_deliveries(icr: Icr, sender: int, partition_apics: Sequence[ApicState]) -> tuple[int, ...]:
    """What OSV must deliver: the bare machine made of the sender's
    partition alone; SMI never (no partition owns System Management Mode)."""
    if int(icr.delivery_mode) == DeliveryMode.SMI:
        return ()
    return bare_deliveries(icr, sender, partition_apics)


def io_osv_deliveries(icr: Icr, partition_apics: Sequence[ApicState]) -> tuple[int, ...]:
    """What OSV must deliver of an I/O APIC's message: the owning kernel's
    cores that accept it (82093AA 3.2.4: no shorthand, no sending APIC; modes
    011b and 110b reserved, ExtINT needs an 8259A the platform lacks, SMI
    belongs to no partition).  A vector below 16 is sent; the receiving APIC
    rejects it (SDM Vol. 3A 10.5.3)."""
    if int(icr.delivery_mode) in IO_NOT_SENT:
        return ()
    taking = sorted((apic for apic in partition_apics if accepts(apic, icr, IO_SENDER)), key=lambda apic: apic.apic_id)
    return _arbitrate(icr, taking)


def refuses_foreign_target(icr: Icr, own: frozenset[int]) -> bool:
    """Whether the message names, by physical APIC ID, a core outside the
    partition (another partition's, or none): OSV must record that."""
    return (sends(icr) and int(icr.delivery_mode) != DeliveryMode.SMI and icr.shorthand == Shorthand.NONE
            and not icr.logical and icr.destination != MDA_BROADCAST and icr.destination not in own)


__all__ = ["accepts", "bare_deliveries", "io_osv_deliveries", "logical_accepts", "osv_deliveries", "refuses_foreign_target", "sends"]
