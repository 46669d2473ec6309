"""The I/O APIC (Intel 82093AA datasheet, section 3; the EOI register of
the version-0x20 I/O APICs in Intel's ICH datasheets).

Registers are reached through the indirect IOREGSEL/IOWIN pair.  Each
input pin has a redirection entry; when a pin's input calls for it the
IOAPIC returns the interrupt message to send (:class:`IoApicMessage`) and
the machine carries it on the APIC bus, where the routing policy decides
which local APICs it reaches.  The rules (82093AA 3.2.4):

* an edge-triggered pin sends a message on each rising edge of its input
  (after the polarity bit); an edge that comes while the pin is masked is
  lost;
* a level-triggered pin sends while its input is asserted, unmasked and its
  Remote IRR is clear; Remote IRR is set once a local APIC accepts the
  message and cleared by an EOI of its vector (the local APIC's EOI
  broadcast, or the EOI register); an input still asserted then sends again,
  as does one that was held while masked, on unmask;
* NMI, SMI, INIT and ExtINT messages are always edge-triggered;
* a pin no device drives never asserts, whatever its polarity (a board
  ties unused inputs inactive).

Delivery takes no time, so the delivery status bit always reads idle.  The
destination field is the 8-bit one of later I/O APICs (bits 63:56): the
82093AA's 4-bit physical IDs cannot name the Opteron's APIC IDs above 15.
"""

from __future__ import annotations

from dataclasses import dataclass

from osvemu.platform.icr import DeliveryMode, Icr, Shorthand

# MMIO offsets in the IOAPIC page.
IOREGSEL = 0x00
IOWIN = 0x10
IOEOI = 0x40  # EOI register: the vector whose level entries' Remote IRR to clear
# Registers behind IOREGSEL.
IOAPICID = 0x00
IOAPICVER = 0x01
IOAPICARB = 0x02
IOREDTBL = 0x10
REDIRECTION_ENTRIES = 24
#: Version 0x20 with "maximum redirection entry" 23 in bits 23:16 (3.2.2).
VERSION_VALUE = 0x20 | ((REDIRECTION_ENTRIES - 1) << 16)
ID_SHIFT = 24
ID_MASK = 0xF << ID_SHIFT

# Redirection entry fields (3.2.4).
REDIRECTION_VECTOR = 0xFF
REDIRECTION_DELIVERY_MODE_SHIFT = 8
REDIRECTION_DELIVERY_MODE_MASK = 0b111
REDIRECTION_LOGICAL = 1 << 11
REDIRECTION_DELIVERY_STATUS = 1 << 12
REDIRECTION_ACTIVE_LOW = 1 << 13
REDIRECTION_REMOTE_IRR = 1 << 14
REDIRECTION_LEVEL = 1 << 15
REDIRECTION_MASKED = 1 << 16
REDIRECTION_DESTINATION_SHIFT = 56
REDIRECTION_DESTINATION_MASK = 0xFF
#: Read-only redirection bits: delivery status (12) and remote IRR (14).
REDIRECTION_READ_ONLY = REDIRECTION_DELIVERY_STATUS | REDIRECTION_REMOTE_IRR
#: Delivery modes that honour the trigger mode bit; the others are edge (3.2.4).
LEVEL_CAPABLE_MODES = (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY)


@dataclass(frozen=True)
class IoApicMessage:
    """An interrupt message the IOAPIC sends for input ``pin``, in the form
    the APIC bus carries (no shorthand, always "assert")."""

    pin: int
    icr: Icr

    def describe(self) -> str:
        return f"IOAPIC pin {self.pin}: {self.icr.describe()}"


def decode_entry(entry: int) -> Icr:
    """The message a redirection entry sends (82093AA 3.2.4)."""
    mode = DeliveryMode((entry >> REDIRECTION_DELIVERY_MODE_SHIFT) & REDIRECTION_DELIVERY_MODE_MASK)
    level = bool(entry & REDIRECTION_LEVEL) and mode in LEVEL_CAPABLE_MODES
    return Icr(entry & REDIRECTION_VECTOR, mode, bool(entry & REDIRECTION_LOGICAL), True, level, Shorthand.NONE,
               (entry >> REDIRECTION_DESTINATION_SHIFT) & REDIRECTION_DESTINATION_MASK)


class IoApic:
    def __init__(self, apic_id: int) -> None:
        self.apic_id = apic_id & 0xF
        self.select = 0
        self.redirection = [REDIRECTION_MASKED] * REDIRECTION_ENTRIES
        #: Each pin's input line as its device drives it (True high), before
        #: polarity; None for a pin no device drives, which never asserts.
        self.inputs: list[bool | None] = [None] * REDIRECTION_ENTRIES

    # --- inputs ---
    def set_input(self, pin: int, level: bool) -> list[IoApicMessage]:
        """Input ``pin`` goes to ``level``; the message it sends, if any."""
        if not 0 <= pin < REDIRECTION_ENTRIES or self.inputs[pin] == level:
            return []
        was_asserted = self._asserted(pin)
        self.inputs[pin] = level
        entry = self.redirection[pin]
        if entry & REDIRECTION_MASKED or not self._asserted(pin):
            return []
        if self._level_triggered(pin):
            return self._level_check(pin)
        return [] if was_asserted else [self._message(pin)]

    def accepted(self, pin: int) -> None:
        """A local APIC accepted the message of ``pin``: a level-triggered
        entry now waits for the EOI of its vector (Remote IRR)."""
        if self._level_triggered(pin):
            self.redirection[pin] |= REDIRECTION_REMOTE_IRR

    def eoi(self, vector: int) -> list[IoApicMessage]:
        """An EOI for ``vector`` (a local APIC's broadcast for a
        level-triggered vector, or the EOI register): Remote IRR clears in
        every level entry with that vector; inputs still asserted send again."""
        messages = []
        for pin, entry in enumerate(self.redirection):
            if entry & REDIRECTION_REMOTE_IRR and entry & REDIRECTION_VECTOR == vector:
                self.redirection[pin] = entry & ~REDIRECTION_REMOTE_IRR
                messages += self._level_check(pin)
        return messages

    def _asserted(self, pin: int) -> bool:
        line = self.inputs[pin]
        return line is not None and line != bool(self.redirection[pin] & REDIRECTION_ACTIVE_LOW)

    def _level_triggered(self, pin: int) -> bool:
        return decode_entry(self.redirection[pin]).level_triggered

    def _level_check(self, pin: int) -> list[IoApicMessage]:
        """A level pin sends while asserted, unmasked and not waiting for an EOI."""
        entry = self.redirection[pin]
        if not self._level_triggered(pin) or entry & (REDIRECTION_MASKED | REDIRECTION_REMOTE_IRR) \
                or not self._asserted(pin):
            return []
        return [self._message(pin)]

    def _message(self, pin: int) -> IoApicMessage:
        return IoApicMessage(pin, decode_entry(self.redirection[pin]))

    # --- registers ---
    def read_register(self, index: int) -> int:
        if index == IOAPICID:
            return self.apic_id << ID_SHIFT
        if index == IOAPICVER:
            return VERSION_VALUE
        if index == IOAPICARB:
            return self.apic_id << ID_SHIFT
        entry = self._entry(index)
        if entry is not None:
            value = self.redirection[entry >> 1]
            return (value >> 32) if entry & 1 else value & 0xFFFFFFFF
        return 0

    def write_register(self, index: int, value: int) -> list[IoApicMessage]:
        """Write a register; a redirection entry written unmasked over an
        asserted level input sends at once."""
        value &= 0xFFFFFFFF
        if index == IOAPICID:
            self.apic_id = (value & ID_MASK) >> ID_SHIFT
            return []
        entry = self._entry(index)
        if entry is None:
            return []
        pin = entry >> 1
        old = self.redirection[pin]
        if entry & 1:
            self.redirection[pin] = (old & 0xFFFFFFFF) | (value << 32)
            return []
        new = (old & ~0xFFFFFFFF) | (value & ~REDIRECTION_READ_ONLY) | (old & REDIRECTION_READ_ONLY)
        if not new & REDIRECTION_LEVEL:
            new &= ~REDIRECTION_REMOTE_IRR  # switching to edge clears Remote IRR (Linux relies on it)
        self.redirection[pin] = new
        return self._level_check(pin)

    def mmio_read(self, offset: int) -> int:
        if offset == IOREGSEL:
            return self.select
        if offset == IOWIN:
            return self.read_register(self.select)
        return 0

    def mmio_write(self, offset: int, value: int) -> list[IoApicMessage]:
        """An MMIO write; the messages it makes the IOAPIC send."""
        if offset == IOREGSEL:
            self.select = value & 0xFF
        elif offset == IOWIN:
            return self.write_register(self.select, value)
        elif offset == IOEOI:
            return self.eoi(value & REDIRECTION_VECTOR)
        return []

    @staticmethod
    def _entry(index: int) -> int | None:
        entry = index - IOREDTBL
        return entry if 0 <= entry < 2 * REDIRECTION_ENTRIES else None


__all__ = ["IoApic", "IoApicMessage", "decode_entry"]
