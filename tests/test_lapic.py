"""The local APIC register file and its behaviour (Intel SDM Vol. 3A ch. 10)."""

import pytest

from osvemu import clock
from osvemu.clock import CoreClock
from osvemu.platform.icr import DeliveryMode, Icr, Shorthand
from osvemu.platform.lapic import (
    APIC_DFR,
    APIC_EOI,
    APIC_ESR,
    APIC_ICR_HIGH,
    APIC_ICR_LOW,
    APIC_ID,
    APIC_IRR,
    APIC_ISR,
    APIC_LDR,
    APIC_LVT_ERROR,
    APIC_LVT_LINT0,
    APIC_LVT_TIMER,
    APIC_PPR,
    APIC_SVR,
    APIC_TIMER_CURRENT,
    APIC_TIMER_DIVIDE,
    APIC_TIMER_INITIAL,
    APIC_TMR,
    APIC_TPR,
    APIC_VERSION,
    LocalApic,
)


class Harness:
    """A local APIC on a clock the test sets, keeping the IPIs its ICR writes send."""

    def __init__(self, apic_id: int = 3) -> None:
        self.clock = CoreClock()
        self.sent: list[Icr] = []
        self.apic = _Recording(apic_id, self.clock, self.sent)
        self.apic.write(APIC_SVR, 0x1FF)

    @property
    def now(self) -> int:
        return self.clock.now_ns()

    @now.setter
    def now(self, ns: int) -> None:
        self.clock.start_slice(ns, None)


class _Recording(LocalApic):
    def __init__(self, apic_id: int, clock: CoreClock, sent: list[Icr]) -> None:
        self._sent = sent
        super().__init__(apic_id, clock)

    def write(self, offset: int, value: int) -> Icr | None:
        icr = super().write(offset, value)
        if icr is not None:
            self._sent.append(icr)
        return icr


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_reset_values():
    apic = Harness().apic
    apic.reset()
    assert apic.read(APIC_ID) == 3 << 24
    assert apic.read(APIC_VERSION) & 0xFF == 0x10
    assert (apic.read(APIC_VERSION) >> 16) & 0xFF == 5  # six LVT entries
    assert apic.read(APIC_DFR) == 0xFFFFFFFF
    assert apic.read(APIC_SVR) == 0xFF
    assert apic.read(APIC_LVT_TIMER) == 0x10000  # masked
    assert apic.read(APIC_LVT_LINT0) == 0x10000


def test_read_only_registers_ignore_writes(h):
    h.apic.write(APIC_ID, 0x7F000000)
    h.apic.write(APIC_VERSION, 0)
    assert h.apic.read(APIC_ID) == 3 << 24
    assert h.apic.read(APIC_VERSION) == 0x00050010


def test_irr_isr_priority_and_eoi(h):
    h.apic.accept_fixed(0x31)
    h.apic.accept_fixed(0x52)
    assert h.apic.read(APIC_IRR + 0x10) == 1 << (0x31 - 32)
    assert h.apic.read(APIC_IRR + 0x20) == 1 << (0x52 - 64)
    assert h.apic.pending_vector() == 0x52
    h.apic.acknowledge(0x52)
    assert h.apic.read(APIC_ISR + 0x20) == 1 << (0x52 - 64)
    assert h.apic.read(APIC_PPR) == 0x50
    assert h.apic.pending_vector() is None  # 0x31 is a lower class than the in-service 0x52
    h.apic.write(APIC_EOI, 0)
    assert h.apic.read(APIC_ISR + 0x20) == 0
    assert h.apic.pending_vector() == 0x31


def test_tpr_blocks_lower_classes(h):
    h.apic.write(APIC_TPR, 0x40)
    h.apic.accept_fixed(0x45)
    assert h.apic.read(APIC_PPR) == 0x40
    assert h.apic.pending_vector() is None
    h.apic.accept_fixed(0x51)
    assert h.apic.pending_vector() == 0x51


def test_level_triggered_sets_tmr(h):
    h.apic.accept_fixed(0x40, level_triggered=True)
    assert h.apic.read(APIC_TMR + 0x20) == 1


def test_software_disabled_apic_holds_interrupts(h):
    h.apic.write(APIC_SVR, 0xFF)
    h.apic.accept_fixed(0x40)
    assert h.apic.pending_vector() is None
    assert h.apic.read(APIC_LVT_TIMER) & 0x10000
    h.apic.write(APIC_LVT_TIMER, 0x20)  # cannot unmask while disabled
    assert h.apic.read(APIC_LVT_TIMER) & 0x10000
    h.apic.write(APIC_SVR, 0x1FF)
    assert h.apic.pending_vector() == 0x40


def test_illegal_vector_latches_esr_on_write(h):
    h.apic.accept_fixed(3)
    assert h.apic.read(APIC_ESR) == 0  # latched only by a write to ESR
    h.apic.write(APIC_ESR, 0)
    assert h.apic.read(APIC_ESR) == 1 << 6
    h.apic.write(APIC_ESR, 0)
    assert h.apic.read(APIC_ESR) == 0


def test_an_error_lvt_with_an_illegal_vector_latches_and_delivers_nothing(h):
    """Found by the attack campaign (seed 1, program 1219): an unmasked error
    LVT with vector 5 made every error an error about the error interrupt,
    recursively, until Python's stack ran out."""
    h.apic.write(APIC_LVT_ERROR, 5)
    h.apic.accept_fixed(3)  # a received illegal vector
    h.apic.write(APIC_ESR, 0)
    assert h.apic.read(APIC_ESR) == 1 << 6 and h.apic.irr == 0


def test_ldr_dfr_writable_bits(h):
    h.apic.write(APIC_LDR, 0x12345678)
    h.apic.write(APIC_DFR, 0x0)
    assert h.apic.read(APIC_LDR) == 0x12000000
    assert h.apic.read(APIC_DFR) == 0x0FFFFFFF


def test_icr_write_sends_decoded_ipi(h):
    h.apic.write(APIC_ICR_HIGH, 0x05000000)
    h.apic.write(APIC_ICR_LOW, 0x0000C500)
    icr = h.sent[-1]
    assert icr.delivery_mode == DeliveryMode.INIT and icr.destination == 5 and icr.level_assert
    h.apic.write(APIC_ICR_LOW, 0x000C0000 | 0x4000 | 0x40)  # all-excluding-self, fixed 0x40
    assert h.sent[-1].shorthand == Shorthand.ALL_EXCLUDING_SELF and h.sent[-1].vector == 0x40
    assert h.apic.read(APIC_ICR_LOW) & (1 << 12) == 0  # delivery status: idle
    assert h.apic.read(APIC_ICR_HIGH) == 0x05000000


@pytest.mark.parametrize(("divide", "divisor"), [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xA, 128), (0xB, 1)])
def test_timer_divide_configuration(h, divide, divisor):
    h.apic.write(APIC_TIMER_DIVIDE, divide)
    assert h.apic.divisor == divisor
    h.apic.write(APIC_LVT_TIMER, 0x20)
    h.apic.write(APIC_TIMER_INITIAL, 1000)
    h.now = clock.ns_for_bus_ticks(100 * divisor)
    assert h.apic.read(APIC_TIMER_CURRENT) == 900


def test_one_shot_timer_fires_once(h):
    h.apic.write(APIC_TIMER_DIVIDE, 0xB)
    h.apic.write(APIC_LVT_TIMER, 0x30)
    h.apic.write(APIC_TIMER_INITIAL, 200)
    deadline = h.apic.timer_deadline
    assert deadline == clock.ns_for_bus_ticks(200)
    assert h.apic.advance_timer(deadline - 1) == 0
    assert h.apic.advance_timer(deadline * 10) == 1
    assert h.apic.pending_vector() == 0x30
    h.now = deadline * 10
    assert h.apic.read(APIC_TIMER_CURRENT) == 0


def test_periodic_timer_reloads(h):
    h.apic.write(APIC_TIMER_DIVIDE, 0xB)
    h.apic.write(APIC_LVT_TIMER, 0x20030)
    h.apic.write(APIC_TIMER_INITIAL, 200)
    period = clock.ns_for_bus_ticks(200)
    assert h.apic.advance_timer(period * 5) == 5
    assert h.apic.timer_fires == 5
    assert h.apic.timer_deadline == period * 6


def test_masked_timer_counts_but_does_not_interrupt(h):
    h.apic.write(APIC_LVT_TIMER, 0x10030)
    h.apic.write(APIC_TIMER_INITIAL, 10)
    h.apic.advance_timer(10**9)
    assert h.apic.pending_vector() is None
