"""COM1's interrupts: the 16550A's register behaviour (PC16550D datasheet),
the probes Linux's 8250 driver runs, the IOAPIC's edge, level, mask and
Remote IRR rules (82093AA), and the road of a UART interrupt to a core --
and, under OSV, that a kernel's IOAPIC reaches only its own cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from osvemu.clock import CoreClock
from osvemu.events import ViolationKind
from osvemu.osv.config import default_config
from osvemu.osv.plan import osv_plan
from osvemu.platform import layout
from osvemu.platform.icr import DeliveryMode
from osvemu.platform.ioapic import (
    IOEOI,
    IOREGSEL,
    IOWIN,
    REDIRECTION_ACTIVE_LOW,
    REDIRECTION_LEVEL,
    REDIRECTION_LOGICAL,
    REDIRECTION_MASKED,
    REDIRECTION_REMOTE_IRR,
    IoApic,
)
from osvemu.platform.lapic import APIC_EOI, APIC_SVR, LevelEoi, LocalApic
from osvemu.platform.machine import Machine
from osvemu.platform.plan import bare_plan
from osvemu.platform.topology import Topology
from osvemu.platform.uart import (
    FIFO_SIZE,
    IER_EDSSI,
    IER_ELSI,
    IER_ERBFI,
    IER_ETBEI,
    LSR_DR,
    LSR_OE,
    MCR_DTR,
    MCR_LOOP,
    MCR_OUT1,
    MCR_OUT2,
    MCR_RTS,
    UART_IER_DLM,
    UART_IIR_FCR,
    UART_LCR,
    UART_LSR,
    UART_MCR,
    UART_MSR,
    UART_RBR_THR_DLL,
    UART_SCR,
    Console,
    Uart16550,
)
from osvemu.snippets import Snippet, check_expectations, run_snippet

VECTOR = 0x24
COM1_PIN = layout.COM1_IRQ
SNIPPET = Path(__file__).parent / "snippets" / "uart_interrupt.s"


@pytest.fixture
def uart() -> Uart16550:
    return Uart16550(Console())


# ------------------------------------------------------------------ the 16550A
def test_reset_state(uart):
    assert [uart.read(offset) for offset in range(1, 7)] == [0x00, 0x01, 0x03, 0x00, 0x60, 0xB0]
    assert not uart.intr and uart.take_irq_changes() == []


def test_ier_keeps_its_four_bits_and_scratch_is_storage(uart):
    uart.write(UART_IER_DLM, 0xFF)
    assert uart.read(UART_IER_DLM) == 0x0F
    uart.write(UART_SCR, 0xA5)
    assert uart.read(UART_SCR) == 0xA5


def test_thre_interrupt_is_cleared_by_reading_iir_and_by_writing_thr(uart):
    uart.write(UART_IER_DLM, IER_ETBEI)  # THR empty: raised at once
    assert uart.read(UART_IIR_FCR) == 0x02
    assert uart.read(UART_IIR_FCR) == 0x01  # the read that reported it cleared it
    uart.write(UART_RBR_THR_DLL, ord("x"))  # the byte leaves at once: THR empty again
    assert uart.read(UART_IIR_FCR) == 0x02
    uart.write(UART_IER_DLM, 0)
    assert uart.read(UART_IIR_FCR) == 0x01
    uart.write(UART_IER_DLM, IER_ETBEI)  # enabling again raises it again (Linux's THRE test)
    assert uart.read(UART_IIR_FCR) == 0x02
    assert uart.read(UART_LSR) == 0x60 and uart.console.text == b"x"


def test_fcr_enables_the_fifos_and_iir_reports_them(uart):
    uart.write(UART_IIR_FCR, 0x01)
    assert uart.read(UART_IIR_FCR) == 0xC1
    uart.write(UART_IER_DLM, IER_ETBEI)
    assert uart.read(UART_IIR_FCR) == 0xC2
    uart.write(UART_IIR_FCR, 0x21)  # a TI16750's 64-byte FIFO bit: a 16550A has none, IIR bit 5 stays 0
    uart.write(UART_LCR, 0x80)
    uart.write(UART_IIR_FCR, 0x21)
    assert uart.read(UART_IIR_FCR) >> 5 == 0b110
    uart.write(UART_LCR, 0x03)
    uart.write(UART_IIR_FCR, 0x00)
    assert uart.read(UART_IIR_FCR) == 0x01
    assert uart.fcr == 0


def test_interrupt_priorities_follow_table_iv(uart):
    uart.write(UART_MCR, MCR_LOOP)  # loopback: what is sent is received, the modem inputs change
    uart.write(UART_IER_DLM, IER_ERBFI | IER_ETBEI | IER_ELSI | IER_EDSSI)
    uart.write(UART_RBR_THR_DLL, 0x11)
    uart.write(UART_RBR_THR_DLL, 0x22)  # no FIFO: the unread RBR is overrun
    assert uart.read(UART_IIR_FCR) == 0x06  # 1: receiver line status
    assert uart.read(UART_LSR) == 0x60 | LSR_OE | LSR_DR  # the read clears OE
    assert uart.read(UART_IIR_FCR) == 0x04  # 2: received data
    assert uart.read(UART_RBR_THR_DLL) == 0x22
    assert uart.read(UART_IIR_FCR) == 0x02  # 3: THR empty (and the read clears it)
    assert uart.read(UART_IIR_FCR) == 0x00  # 4: modem status (entering loopback dropped DCD, DSR, CTS)
    assert uart.read(UART_MSR) == 0x0B  # DDCD, DDSR, DCTS; all inputs now low
    assert uart.read(UART_IIR_FCR) == 0x01
    assert uart.console.text == b""  # loopback sends nothing to the line


def test_fifo_trigger_level_timeout_and_overrun(uart):
    uart.write(UART_MCR, MCR_LOOP)
    uart.write(UART_IIR_FCR, 0x41)  # FIFOs on, trigger level 4
    uart.write(UART_IER_DLM, IER_ERBFI)
    for byte in range(3):
        uart.write(UART_RBR_THR_DLL, byte)
    assert uart.read(UART_IIR_FCR) == 0xCC  # below the trigger: character timeout
    uart.write(UART_RBR_THR_DLL, 3)
    assert uart.read(UART_IIR_FCR) == 0xC4
    for byte in range(4, FIFO_SIZE + 4):
        uart.write(UART_RBR_THR_DLL, byte)
    assert uart.read(UART_LSR) & (LSR_OE | LSR_DR) == LSR_OE | LSR_DR
    received = []
    while uart.read(UART_LSR) & LSR_DR:
        received.append(uart.read(UART_RBR_THR_DLL))
    assert received == list(range(FIFO_SIZE))  # what came with the FIFO full was lost
    uart.write(UART_IIR_FCR, 0x43)  # clearing the receiver FIFO
    assert uart.read(UART_LSR) & LSR_DR == 0


def test_loopback_wires_the_modem_outputs_to_the_inputs(uart):
    uart.write(UART_MCR, MCR_LOOP | MCR_RTS | MCR_OUT2)  # what Linux's autoconfig writes: 0x1A
    assert uart.read(UART_MSR) & 0xF0 == 0x90  # CTS and DCD
    uart.write(UART_MCR, MCR_LOOP | MCR_DTR | MCR_OUT1)
    assert uart.read(UART_MSR) == 0x60 | 0x0B  # DSR and RI; CTS, DSR and DCD changed
    uart.write(UART_MCR, MCR_LOOP)
    assert uart.read(UART_MSR) == 0x06  # DSR changed, RI's trailing edge
    uart.write(UART_MCR, 0)
    assert uart.read(UART_MSR) == 0xB0 | 0x0B  # out of loopback: a terminal that is on and ready


def test_divisor_latch_behind_dlab(uart):
    uart.write(UART_LCR, 0x80)
    uart.write(UART_RBR_THR_DLL, 0x0C)
    uart.write(UART_IER_DLM, 0x00)
    assert (uart.read(UART_RBR_THR_DLL), uart.read(UART_IER_DLM)) == (0x0C, 0x00)
    uart.write(UART_LCR, 0x03)
    assert uart.read(UART_IER_DLM) == 0 and uart.divisor == 12 and uart.console.text == b""


def test_the_irq_line_needs_out2_and_pulses_on_each_byte(uart):
    uart.write(UART_IER_DLM, IER_ETBEI)
    assert uart.intr and uart.take_irq_changes() == []  # OUT2 clear: INTR does not reach IRQ 4
    uart.write(UART_MCR, MCR_OUT2)
    assert uart.take_irq_changes() == [True]
    uart.write(UART_RBR_THR_DLL, ord("a"))  # cleared by the write, raised again as the byte leaves
    assert uart.take_irq_changes() == [False, True]
    uart.read(UART_IIR_FCR)
    assert uart.take_irq_changes() == [False]
    uart.write(UART_RBR_THR_DLL, ord("b"))
    assert uart.take_irq_changes() == [True]
    uart.write(UART_MCR, MCR_OUT2 | MCR_LOOP)  # loopback keeps the outputs inactive
    assert uart.take_irq_changes() == [False]


def linux_8250_probe(uart: Uart16550) -> str:
    """The decisions Linux 6.1's 8250 driver makes about a port at I/O
    0x3F8 (drivers/tty/serial/8250/8250_port.c: autoconfig,
    autoconfig_16550a, size_fifo, and serial8250_do_startup's THRE and TXEN
    tests), replayed as register accesses; the port type and its bugs."""
    def out(offset, value):
        uart.write(offset, value)

    def inp(offset):
        return uart.read(offset)

    # The IER existence test, and the loopback test.
    saved = inp(UART_IER_DLM)
    out(UART_IER_DLM, 0)
    scratch2 = inp(UART_IER_DLM) & 0x0F
    out(UART_IER_DLM, 0x0F)
    scratch3 = inp(UART_IER_DLM) & 0x0F
    out(UART_IER_DLM, saved)
    if scratch2 != 0 or scratch3 != 0x0F:
        return "none: IER test failed"
    save_mcr, save_lcr = inp(UART_MCR), inp(UART_LCR)
    out(UART_MCR, MCR_LOOP | 0x0A)
    status = inp(UART_MSR) & 0xF0
    out(UART_MCR, save_mcr)
    if status != 0x90:
        return "none: LOOP test failed"
    out(UART_LCR, 0xBF)
    out(UART_IIR_FCR, 0)  # the EFR, if any
    out(UART_LCR, 0)
    out(UART_IIR_FCR, 0x01)
    kind = inp(UART_IIR_FCR) >> 6
    if kind != 3:
        return ["8250/16450", "unknown", "16550"][kind]
    # autoconfig_16550a: no EFR with DLAB set, nor behind 0xBF.
    out(UART_LCR, 0x80)
    if inp(UART_IIR_FCR) == 0:
        return "16650 (EFR)"
    out(UART_LCR, 0xBF)
    if inp(UART_IIR_FCR) == 0:
        return "16650V2 (EFR)"
    # National Semiconductor: EXCR1 at offset 2 with LCR 0xE0 would follow MCR's LOOP bit.
    out(UART_LCR, 0)
    status1 = inp(UART_MCR)
    out(UART_LCR, 0xE0)
    status2 = inp(UART_IIR_FCR)
    if not (status2 ^ status1) & MCR_LOOP:
        out(UART_LCR, 0)
        out(UART_MCR, status1 ^ MCR_LOOP)
        out(UART_LCR, 0xE0)
        status2 = inp(UART_IIR_FCR)
        out(UART_LCR, 0)
        out(UART_MCR, status1)
        if (status2 ^ status1) & MCR_LOOP:
            return "NS16550A"
    # TI16750: IIR bit 5 with the 64-byte FIFO bit, only with DLAB set.
    out(UART_LCR, 0)
    out(UART_IIR_FCR, 0x21)
    status1 = inp(UART_IIR_FCR) >> 5
    out(UART_IIR_FCR, 0x01)
    out(UART_LCR, 0x80)
    out(UART_IIR_FCR, 0x21)
    status2 = inp(UART_IIR_FCR) >> 5
    out(UART_IIR_FCR, 0x01)
    out(UART_LCR, 0)
    if (status1, status2) == (6, 7):
        return "16750"
    # XScale: IER bit 6 writable.
    iersave = inp(UART_IER_DLM)
    out(UART_IER_DLM, iersave | 0x40)
    if inp(UART_IER_DLM) & 0x40:
        return "XScale"
    out(UART_IER_DLM, iersave)
    # size_fifo: 256 bytes sent in loopback, count what the receiver holds.
    out(UART_LCR, 0)
    old_fcr = inp(UART_IIR_FCR)
    old_mcr = inp(UART_MCR)
    out(UART_IIR_FCR, 0x07)
    out(UART_MCR, MCR_LOOP)
    out(UART_LCR, 0x80)
    out(UART_RBR_THR_DLL, 1)
    out(UART_IER_DLM, 0)
    out(UART_LCR, 0x03)
    for byte in range(256):
        out(UART_RBR_THR_DLL, byte)
    count = 0
    while inp(UART_LSR) & LSR_DR and count < 256:
        inp(UART_RBR_THR_DLL)
        count += 1
    out(UART_IIR_FCR, old_fcr)
    out(UART_MCR, old_mcr)
    out(UART_LCR, save_lcr)
    if count == 64:
        return "U6_16550A"
    if count != FIFO_SIZE:
        return f"16550A with a FIFO of {count}"
    # serial8250_do_startup, with IRQ 4: the THRE test, then (OUT2 set) the TXEN test.
    bugs = []
    out(UART_IER_DLM, IER_ETBEI)
    iir1 = inp(UART_IIR_FCR)
    out(UART_IER_DLM, 0)
    out(UART_IER_DLM, IER_ETBEI)
    iir = inp(UART_IIR_FCR)
    out(UART_IER_DLM, 0)
    if not iir1 & 0x01 and iir & 0x01:
        bugs.append("UART_BUG_THRE")
    out(UART_MCR, MCR_DTR | MCR_RTS | MCR_OUT2)
    out(UART_IER_DLM, IER_ETBEI)
    lsr, iir = inp(UART_LSR), inp(UART_IIR_FCR)
    out(UART_IER_DLM, 0)
    if lsr & 0x40 and iir & 0x01:
        bugs.append("UART_BUG_TXEN")
    return " ".join(["16550A"] + bugs)


def test_linux_identifies_a_16550a_without_bugs(uart):
    assert linux_8250_probe(uart) == "16550A"
    assert uart.console.text == b""  # the loopback FIFO test put nothing on the line


# ------------------------------------------------------------------ the IOAPIC
def program(ioapic: IoApic, pin: int, low: int, destination: int = 0) -> list:
    ioapic.mmio_write(IOREGSEL, 0x10 + 2 * pin + 1)
    ioapic.mmio_write(IOWIN, destination << 24)
    ioapic.mmio_write(IOREGSEL, 0x10 + 2 * pin)
    return ioapic.mmio_write(IOWIN, low)


def entry_low(ioapic: IoApic, pin: int) -> int:
    ioapic.mmio_write(IOREGSEL, 0x10 + 2 * pin)
    return ioapic.mmio_read(IOWIN)


def test_edge_pin_sends_on_each_rising_edge():
    ioapic = IoApic(2)
    assert program(ioapic, 4, VECTOR | REDIRECTION_LOGICAL, destination=0x03) == []
    (message,) = ioapic.set_input(4, True)
    icr = message.icr
    assert (message.pin, icr.vector, icr.delivery_mode, icr.logical, icr.level_triggered, icr.destination) == \
        (4, VECTOR, DeliveryMode.FIXED, True, False, 0x03)
    assert message.describe() == "IOAPIC pin 4: fixed vector 0x24 to logical 0x03"
    assert ioapic.set_input(4, True) == []  # no edge
    assert ioapic.set_input(4, False) == []
    assert len(ioapic.set_input(4, True)) == 1
    assert entry_low(ioapic, 4) == VECTOR | REDIRECTION_LOGICAL  # delivery status idle, no Remote IRR


def test_an_edge_while_masked_is_lost():
    ioapic = IoApic(2)
    program(ioapic, 4, VECTOR | REDIRECTION_MASKED)
    assert ioapic.set_input(4, True) == []
    assert program(ioapic, 4, VECTOR) == []  # unmasked with the input high: the edge is gone
    ioapic.set_input(4, False)
    assert len(ioapic.set_input(4, True)) == 1


def test_level_pin_waits_for_the_eoi_of_its_vector():
    ioapic = IoApic(2)
    program(ioapic, 4, VECTOR | REDIRECTION_LEVEL)
    (message,) = ioapic.set_input(4, True)
    assert message.icr.level_triggered
    ioapic.accepted(4)
    assert entry_low(ioapic, 4) & REDIRECTION_REMOTE_IRR
    assert ioapic.set_input(4, False) == [] and ioapic.set_input(4, True) == []  # Remote IRR holds it back
    assert ioapic.eoi(VECTOR + 1) == []
    assert len(ioapic.eoi(VECTOR)) == 1  # still asserted: sent again
    ioapic.accepted(4)
    ioapic.set_input(4, False)
    assert ioapic.eoi(VECTOR) == []  # deasserted by then: nothing more
    assert entry_low(ioapic, 4) & REDIRECTION_REMOTE_IRR == 0


def test_eoi_register_and_switching_to_edge_clear_remote_irr():
    ioapic = IoApic(2)
    program(ioapic, 4, VECTOR | REDIRECTION_LEVEL)
    ioapic.set_input(4, True)
    ioapic.accepted(4)
    assert len(ioapic.mmio_write(IOEOI, VECTOR)) == 1  # the version-0x20 EOI register
    ioapic.accepted(4)
    assert program(ioapic, 4, VECTOR) == []  # edge now: Remote IRR cleared, and no edge
    assert entry_low(ioapic, 4) == VECTOR


def test_a_level_held_while_masked_is_sent_on_unmask():
    ioapic = IoApic(2)
    program(ioapic, 4, VECTOR | REDIRECTION_LEVEL | REDIRECTION_MASKED)
    assert ioapic.set_input(4, True) == []
    (message,) = program(ioapic, 4, VECTOR | REDIRECTION_LEVEL)
    assert message.pin == 4


def test_polarity_nmi_and_undriven_pins():
    ioapic = IoApic(2)
    program(ioapic, 4, VECTOR | REDIRECTION_LEVEL | REDIRECTION_ACTIVE_LOW)
    assert ioapic.set_input(4, True) == []
    assert len(ioapic.set_input(4, False)) == 1  # low is asserted
    program(ioapic, 6, 0x400 | REDIRECTION_LEVEL)  # NMI: always edge
    (message,) = ioapic.set_input(6, True)
    assert message.icr.delivery_mode is DeliveryMode.NMI and not message.icr.level_triggered
    ioapic.accepted(6)
    assert entry_low(ioapic, 6) & REDIRECTION_REMOTE_IRR == 0
    # A pin no device drives never asserts, whatever its polarity.
    assert program(ioapic, 7, VECTOR | REDIRECTION_LEVEL | REDIRECTION_ACTIVE_LOW) == []


def test_local_apic_broadcasts_the_eoi_of_a_level_vector_only():
    apic = LocalApic(0, CoreClock())
    apic.write(APIC_SVR, 0x1FF)
    apic.accept_fixed(0x30, level_triggered=True)
    apic.accept_fixed(0x40)
    apic.acknowledge(0x30)
    apic.acknowledge(0x40)
    assert apic.write(APIC_EOI, 0) is None  # 0x40, edge
    assert apic.write(APIC_EOI, 0) == LevelEoi(0x30)
    assert apic.write(APIC_EOI, 0) is None  # nothing in service


# ------------------------------------------------------------------ the road to a core
def bare_machine(cores: int = 2) -> Machine:
    return Machine(bare_plan(Topology(1, cores, 64 * layout.MiB)), console=lambda line: None)


def ioapic_write(machine: Machine, core, index: int, value: int) -> None:
    machine.mmio_write(core, layout.IOAPIC_BASE + IOREGSEL, index)
    machine.mmio_write(core, layout.IOAPIC_BASE + IOWIN, value)


def com1(machine: Machine, core, offset: int, value: int) -> None:
    machine.port_out(core, layout.COM1_PORT + offset, 1, value)


def test_a_uart_interrupt_reaches_the_core_its_entry_names():
    machine = bare_machine()
    core0 = machine.cores[0]
    for lapic in machine.lapics:
        lapic.write(APIC_SVR, 0x1FF)
    assert machine.mmio_regions(core0) == [(layout.LAPIC_BASE, layout.PAGE_SIZE), (layout.IOAPIC_BASE,
                                                                                   layout.PAGE_SIZE)]
    ioapic_write(machine, core0, 0x19, 1 << 24)  # pin 4 to APIC 1
    ioapic_write(machine, core0, 0x18, VECTOR)
    com1(machine, core0, UART_MCR, MCR_OUT2)
    com1(machine, core0, UART_IER_DLM, IER_ETBEI)
    assert machine.lapics[1].pending_vector() == VECTOR and machine.lapics[0].irr == 0
    assert machine.bus.io_stats[0].sent == 1 and machine.bus.io_stats[0].delivered == 1


def test_level_triggered_com1_is_resent_after_the_eoi_while_still_pending():
    machine = bare_machine(1)
    (core,) = machine.cores
    lapic = machine.lapics[0]
    lapic.write(APIC_SVR, 0x1FF)
    ioapic_write(machine, core, 0x19, 0)
    ioapic_write(machine, core, 0x18, VECTOR | REDIRECTION_LEVEL)
    com1(machine, core, UART_MCR, MCR_OUT2)
    com1(machine, core, UART_IER_DLM, IER_ETBEI)
    assert lapic.pending_vector() == VECTOR and lapic.tmr >> VECTOR & 1
    lapic.acknowledge(VECTOR)
    kernel = machine.kernels[0]
    assert kernel.ioapic.redirection[COM1_PIN] & REDIRECTION_REMOTE_IRR
    machine.mmio_write(core, layout.LAPIC_BASE + APIC_EOI, 0)  # the handler did not clear THRE: sent again
    assert lapic.pending_vector() == VECTOR
    lapic.acknowledge(VECTOR)
    machine.port_in(core, layout.COM1_PORT + UART_IIR_FCR, 1)  # now it does
    machine.mmio_write(core, layout.LAPIC_BASE + APIC_EOI, 0)
    assert lapic.irr == 0 and not kernel.ioapic.redirection[COM1_PIN] & REDIRECTION_REMOTE_IRR
    assert machine.bus.io_stats[0].sent == 2


def test_bare_machine_drops_a_message_for_an_apic_nobody_has():
    machine = bare_machine(1)
    (core,) = machine.cores
    ioapic_write(machine, core, 0x19, 9 << 24)
    ioapic_write(machine, core, 0x18, VECTOR)
    com1(machine, core, UART_MCR, MCR_OUT2)
    com1(machine, core, UART_IER_DLM, IER_ETBEI)
    assert machine.lapics[0].irr == 0 and machine.bus.io_stats[0].delivered == 0
    assert machine.monitor is None


def test_uart_interrupt_snippet_is_deterministic():
    first, second = (run_snippet(Snippet.load(SNIPPET)) for _ in range(2))
    assert not check_expectations(first)
    assert [c.instructions for c in first.machine.cores] == [c.instructions for c in second.machine.cores]
    assert first.machine.cores[0].interrupts_taken == second.machine.cores[0].interrupts_taken == 13


# ------------------------------------------------------------------ under OSV
FOREIGN_THEN_OWN = """
;! mode = "long"
;! sockets = 1
;! cores_per_socket = 2
;! kernels = 2
;! max_instructions = 200000
;! [expect]
;! console = "own\\n"
;! exit = 0
;! violations = ["IOAPIC pin 4: fixed vector 0x24 to physical 0x01: physical destination APIC 1 belongs to another partition"]
;! [expect.cores.0]
;! r14 = 5
    mov eax, 0x24
    lea rbx, [rip + com1_irq]
    call set_gate
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff
    mov r11, 0xfec00000
    mov dword ptr [r11], 0x19
    mov dword ptr [r11 + 0x10], 0x01000000   # pin 4 to APIC 1: the other kernel's core
    mov dword ptr [r11], 0x18
    mov dword ptr [r11 + 0x10], 0x24
    lea rsi, [rip + msg]
    xor r14, r14
    xor r10, r10
    mov dx, 0x3fc
    mov al, 0x08
    out dx, al
    mov dx, 0x3f9
    mov al, 0x02
    out dx, al                               # THRE interrupt: refused, never delivered
    xor al, al
    out dx, al
    mov dword ptr [r11], 0x19
    mov dword ptr [r11 + 0x10], 0            # pin 4 to APIC 0: its own core
    mov al, 0x02
    out dx, al
    sti
wait:
    hlt
    test r10, r10
    jz wait
    xor eax, eax
    out 0xf4, al
com1_irq:
    inc r14
    mov dx, 0x3fa
    in al, dx
    mov al, byte ptr [rsi]
    test al, al
    jz sent
    inc rsi
    mov dx, 0x3f8
    out dx, al
    jmp eoi
sent:
    mov dx, 0x3f9
    xor eax, eax
    out dx, al
    mov r10, 1
eoi:
    mov dword ptr [r15 + 0xb0], 0
    iretq
msg:
    .byte 0x6f, 0x77, 0x6e, 0x0a, 0
"""


def test_osv_refuses_an_ioapic_entry_aimed_at_another_partition():
    run = run_snippet(Snippet.parse("osv_ioapic_foreign", FOREIGN_THEN_OWN))
    assert not check_expectations(run), check_expectations(run)
    machine = run.machine
    assert machine.lapics[1].irr == 0 and machine.cores[1].interrupts_taken == 0  # nothing reached kernel 1
    violations = machine.monitor.violations
    assert [(v.kernel, v.kind, v.core) for v in violations] == [("k0", ViolationKind.IO_INTERRUPT, 0)]
    assert machine.bus.io_stats[0].refused == 1 and machine.bus.io_stats[0].delivered == 5
    assert 1 not in machine.bus.io_stats  # kernel 1's own IOAPIC sent nothing


def test_each_osv_kernel_has_its_own_ioapic_and_com1():
    machine = Machine(osv_plan(default_config(Topology(1, 2, 256 * layout.MiB), "", "", 2)),
                      console=lambda line: None)
    core0, core1 = machine.cores
    k0, k1 = machine.kernels
    assert k0.ioapic is not k1.ioapic and k0.uart is not k1.uart and k0.rtc is not k1.rtc
    for core in machine.cores:
        assert (layout.IOAPIC_BASE, layout.PAGE_SIZE) in machine.mmio_regions(core)
    ioapic_write(machine, core0, 0x18, REDIRECTION_MASKED | 0x55)
    assert k0.ioapic.redirection[COM1_PIN] == REDIRECTION_MASKED | 0x55
    assert k1.ioapic.redirection[COM1_PIN] == REDIRECTION_MASKED
    com1(machine, core1, UART_SCR, 0x42)
    assert (k0.uart.scr, k1.uart.scr) == (0, 0x42)
