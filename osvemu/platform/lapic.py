"""The xAPIC local APIC of one core (Intel SDM Vol. 3A chapter 10; AMD APM
Vol. 2 chapter 16).

This is the register file and its behaviour; it knows nothing of Unicorn.
A write to the ICR's low half returns the :class:`Icr` message it sends,
and an EOI of a level-triggered vector the :class:`LevelEoi` it broadcasts
to the I/O APICs; the machine routes both.  Time comes from the core's
:class:`CoreClock`.
"""

from __future__ import annotations

from dataclasses import dataclass

from osvemu import clock as vclock
from osvemu.clock import CoreClock
from osvemu.platform.icr import ICR_DELIVERY_STATUS, Icr

# Register offsets in the 4 KiB xAPIC page (SDM Vol. 3A Table 10-1).
APIC_ID = 0x20
APIC_VERSION = 0x30
APIC_TPR = 0x80
APIC_APR = 0x90
APIC_PPR = 0xA0
APIC_EOI = 0xB0
APIC_RRD = 0xC0
APIC_LDR = 0xD0
APIC_DFR = 0xE0
APIC_SVR = 0xF0
APIC_ISR = 0x100
APIC_TMR = 0x180
APIC_IRR = 0x200
APIC_ESR = 0x280
APIC_LVT_CMCI = 0x2F0
APIC_ICR_LOW = 0x300
APIC_ICR_HIGH = 0x310
APIC_LVT_TIMER = 0x320
APIC_LVT_THERMAL = 0x330
APIC_LVT_PERF = 0x340
APIC_LVT_LINT0 = 0x350
APIC_LVT_LINT1 = 0x360
APIC_LVT_ERROR = 0x370
APIC_TIMER_INITIAL = 0x380
APIC_TIMER_CURRENT = 0x390
APIC_TIMER_DIVIDE = 0x3E0

#: Version 0x10 (integrated APIC), six LVT entries (max LVT index 5).
APIC_VERSION_VALUE = 0x00050010
SVR_ENABLE = 1 << 8
LVT_MASKED = 1 << 16
LVT_TIMER_PERIODIC = 1 << 17
LVT_DELIVERY_MODE_SHIFT = 8
# ESR bits (SDM Vol. 3A 10.5.3).
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6
#: Vectors 0-15 are illegal in interrupt messages and LVT entries (SDM Vol. 3A 10.5.2).
FIRST_LEGAL_VECTOR = 16
ESR_ILLEGAL_REGISTER = 1 << 7

_LVT_OFFSETS = (APIC_LVT_TIMER, APIC_LVT_THERMAL, APIC_LVT_PERF, APIC_LVT_LINT0, APIC_LVT_LINT1, APIC_LVT_ERROR)
#: Writable bits of each LVT entry (SDM Vol. 3A Figure 10-8).
_LVT_WRITABLE = {
    APIC_LVT_TIMER: 0x000300FF, APIC_LVT_THERMAL: 0x000107FF, APIC_LVT_PERF: 0x000107FF,
    APIC_LVT_LINT0: 0x0001A7FF, APIC_LVT_LINT1: 0x0001A7FF, APIC_LVT_ERROR: 0x000100FF,
}


def _priority_class(vector: int) -> int:
    return vector >> 4


#: Registers read as a plain field: offset -> attribute.
_FIELD_REGISTERS = {
    APIC_TPR: "tpr", APIC_LDR: "ldr", APIC_DFR: "dfr", APIC_SVR: "svr", APIC_ESR: "esr",
    APIC_ICR_HIGH: "icr_high", APIC_TIMER_INITIAL: "timer_initial", APIC_TIMER_DIVIDE: "timer_divide",
}
#: Read-only registers: writes are ignored (SDM Vol. 3A Table 10-1).
_READ_ONLY = frozenset({APIC_ID, APIC_VERSION, APIC_PPR, APIC_APR, APIC_RRD, APIC_TIMER_CURRENT})
#: The 256-bit ISR, TMR and IRR: eight 32-bit registers each, 16 bytes apart.
_BIT_ARRAYS = {APIC_ISR: "isr", APIC_TMR: "tmr", APIC_IRR: "irr"}
_BIT_ARRAY_SPAN = 0x80


@dataclass(frozen=True)
class LevelEoi:
    """The EOI of a vector whose TMR bit was set: the local APIC broadcasts
    it to the I/O APICs, which clear that vector's Remote IRR (SDM Vol. 3A
    10.8.5)."""

    vector: int


class LocalApic:
    def __init__(self, apic_id: int, clock: CoreClock) -> None:
        self.apic_id = apic_id
        self._clock = clock.now_ns
        self.reset()

    # --- state ---
    def reset(self) -> None:
        """Power-up / INIT state (SDM Vol. 3A 10.4.7.1); the APIC ID is kept."""
        self.tpr = 0
        self.ldr = 0
        self.dfr = 0xFFFFFFFF
        self.svr = 0xFF
        self.irr = 0  # 256-bit sets as Python ints
        self.isr = 0
        self.tmr = 0
        self.esr = 0
        self._esr_pending = 0
        self.icr_low = 0
        self.icr_high = 0
        self.lvt = {offset: LVT_MASKED for offset in _LVT_OFFSETS}
        self.timer_initial = 0
        self.timer_divide = 0
        self._timer_start = 0  # ns
        self.timer_deadline: int | None = None  # ns of the next expiry
        self.timer_fires = 0

    @property
    def software_enabled(self) -> bool:
        return bool(self.svr & SVR_ENABLE)

    @property
    def ppr(self) -> int:
        """Processor priority (SDM Vol. 3A 10.8.3.1)."""
        isrv = self.isr.bit_length() - 1 if self.isr else 0
        if _priority_class(self.tpr) >= _priority_class(isrv):
            return self.tpr & 0xFF
        return isrv & 0xF0

    # --- interrupt acceptance and delivery to the core ---
    def accept_fixed(self, vector: int, level_triggered: bool = False) -> None:
        """A fixed or lowest-priority interrupt arrives (SDM Vol. 3A 10.8.4)."""
        if vector < FIRST_LEGAL_VECTOR:
            self._error(ESR_RECEIVE_ILLEGAL_VECTOR)
            return
        self.irr |= 1 << vector
        if level_triggered:
            self.tmr |= 1 << vector
        else:
            self.tmr &= ~(1 << vector)

    def would_accept(self, vector: int) -> bool:
        """Whether ``vector`` would be handed to the core now: the APIC is
        software-enabled and the vector's priority class is above the PPR's
        (SDM Vol. 3A 10.8.3.1)."""
        return self.software_enabled and _priority_class(vector) > _priority_class(self.ppr)

    def pending_vector(self) -> int | None:
        """The vector the core should take now, if any (SDM Vol. 3A 10.8.3)."""
        if not self.irr:
            return None
        vector = self.irr.bit_length() - 1
        return vector if self.would_accept(vector) else None

    def acknowledge(self, vector: int) -> None:
        """The core takes ``vector``: move it from IRR to ISR."""
        self.irr &= ~(1 << vector)
        self.isr |= 1 << vector

    def eoi(self) -> LevelEoi | None:
        """End the highest in-service interrupt; a level-triggered one is
        broadcast to the I/O APICs (SDM Vol. 3A 10.8.5)."""
        if not self.isr:
            return None
        vector = self.isr.bit_length() - 1
        self.isr &= ~(1 << vector)
        return LevelEoi(vector) if self.tmr >> vector & 1 else None

    def _error(self, bit: int) -> None:
        """Latch an error and raise the error interrupt (SDM Vol. 3A 10.5.3).
        An error LVT with an illegal vector (0-15) is itself a received
        illegal vector: latched, and nothing delivered (never an error about
        the error interrupt, again and again)."""
        self._esr_pending |= bit
        lvt = self.lvt[APIC_LVT_ERROR]
        if lvt & LVT_MASKED or not self.software_enabled:
            return
        if lvt & 0xFF < FIRST_LEGAL_VECTOR:
            self._esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR
            return
        self.accept_fixed(lvt & 0xFF)

    # --- timer (SDM Vol. 3A 10.5.4) ---
    @property
    def divisor(self) -> int:
        code = ((self.timer_divide >> 1) & 4) | (self.timer_divide & 3)
        return 1 if code == 7 else 2 << code

    def _period_ns(self) -> int:
        return vclock.ns_for_bus_ticks(self.timer_initial * self.divisor)

    def _arm_timer(self) -> None:
        self._timer_start = self._clock()
        self.timer_deadline = self._timer_start + self._period_ns() if self.timer_initial else None

    def timer_current(self) -> int:
        if self.timer_deadline is None:
            return 0
        elapsed_ticks = vclock.bus_ticks_at(self._clock() - self._timer_start) // self.divisor
        if self.lvt[APIC_LVT_TIMER] & LVT_TIMER_PERIODIC:
            return self.timer_initial - elapsed_ticks % self.timer_initial
        return max(0, self.timer_initial - elapsed_ticks)

    @property
    def lvt_timer_vector(self) -> int:
        return self.lvt[APIC_LVT_TIMER] & 0xFF

    @property
    def timer_raises_interrupt(self) -> bool:
        """Whether the next expiry puts a vector in the IRR (armed, unmasked)."""
        return self.timer_deadline is not None and not self.lvt[APIC_LVT_TIMER] & LVT_MASKED

    def advance_timer(self, now: int) -> int:
        """Fire the timer for every expiry up to ``now``; return how many."""
        fired = 0
        while self.timer_deadline is not None and self.timer_deadline <= now:
            lvt = self.lvt[APIC_LVT_TIMER]
            if not lvt & LVT_MASKED:
                self.accept_fixed(lvt & 0xFF)
            fired += 1
            self.timer_fires += 1
            if lvt & LVT_TIMER_PERIODIC and self.timer_initial:
                self._timer_start = self.timer_deadline
                self.timer_deadline += self._period_ns()
            else:
                self.timer_deadline = None
        return fired

    # --- MMIO register file ---
    def read(self, offset: int) -> int:
        offset &= 0xFF0
        for base, name in _BIT_ARRAYS.items():
            if base <= offset < base + _BIT_ARRAY_SPAN:
                return (getattr(self, name) >> (32 * ((offset - base) >> 4))) & 0xFFFFFFFF
        if offset in self.lvt:
            return self.lvt[offset]
        name = _FIELD_REGISTERS.get(offset)
        if name is not None:
            return getattr(self, name)
        if offset == APIC_ID:
            return self.apic_id << 24
        if offset == APIC_VERSION:
            return APIC_VERSION_VALUE
        if offset == APIC_PPR:
            return self.ppr
        if offset == APIC_ICR_LOW:
            return self.icr_low & ~ICR_DELIVERY_STATUS
        if offset == APIC_TIMER_CURRENT:
            return self.timer_current()
        return 0  # APR and reserved offsets

    def write(self, offset: int, value: int) -> Icr | LevelEoi | None:
        """Write a register; a write to the ICR's low half returns the IPI it
        sends, an EOI of a level-triggered vector the EOI it broadcasts."""
        offset &= 0xFF0
        value &= 0xFFFFFFFF
        if offset == APIC_TPR:
            self.tpr = value & 0xFF
        elif offset == APIC_EOI:
            return self.eoi()
        elif offset == APIC_LDR:
            self.ldr = value & 0xFF000000
        elif offset == APIC_DFR:
            self.dfr = (value & 0xF0000000) | 0x0FFFFFFF
        elif offset == APIC_SVR:
            self.svr = value & 0x3FF
            if not self.software_enabled:  # SDM 10.4.7.2: disabling masks every LVT entry
                for lvt in self.lvt:
                    self.lvt[lvt] |= LVT_MASKED
        elif offset == APIC_ESR:
            self.esr, self._esr_pending = self._esr_pending, 0
        elif offset == APIC_ICR_HIGH:
            self.icr_high = value & 0xFF000000
        elif offset == APIC_ICR_LOW:
            self.icr_low = value & 0x000CDFFF
            return Icr.decode(self.icr_low, self.icr_high)
        elif offset in self.lvt:
            if not self.software_enabled:
                value |= LVT_MASKED
            self.lvt[offset] = value & _LVT_WRITABLE[offset]
        elif offset == APIC_TIMER_INITIAL:
            self.timer_initial = value
            self._arm_timer()
        elif offset == APIC_TIMER_DIVIDE:
            self.timer_divide = value & 0xB
        elif offset in _READ_ONLY or APIC_ISR <= offset < APIC_IRR + _BIT_ARRAY_SPAN:
            pass  # read-only registers ignore writes
        else:
            self._error(ESR_ILLEGAL_REGISTER)
        return None

    def report_error(self, bit: int) -> None:
        """Record a send error of an IPI this APIC sent (ESR, SDM Vol. 3A 10.5.3)."""
        self._error(bit)
