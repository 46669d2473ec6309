"""A 16550A UART at COM1 whose transmitter is the console (National
Semiconductor PC16550D datasheet, register summary Table II).

Transmission takes no time: a byte written to the THR leaves at once, so
LSR always shows the transmitter empty and the THRE interrupt is raised
again as soon as a write has cleared it.  The receiver has no outside input
yet, but loopback (MCR bit 4) feeds it, and :meth:`Uart16550.receive` is
where an input path will put bytes.  The INTR output follows the datasheet's
interrupt sources (Table IV); on a PC it reaches the ISA IRQ line only while
MCR OUT2 is set and loopback is off (loopback forces the outputs inactive).
The machine reads the line's changes after each access
(:meth:`Uart16550.take_irq_changes`) and hands them to the IOAPIC pin.
"""

from __future__ import annotations

import unicodedata
from collections import deque

# Register offsets from the base port (Table II).
UART_RBR_THR_DLL = 0
UART_IER_DLM = 1
UART_IIR_FCR = 2
UART_LCR = 3
UART_MCR = 4
UART_LSR = 5
UART_MSR = 6
UART_SCR = 7
UART_REGISTER_COUNT = 8

# Interrupt enable register.
IER_ERBFI = 0x01  # received data available
IER_ETBEI = 0x02  # transmitter holding register empty
IER_ELSI = 0x04  # receiver line status
IER_EDSSI = 0x08  # modem status
IER_WRITABLE = 0x0F  # bits 7:4 are always 0
# Interrupt identification register (Table IV): the pending source of
# highest priority in bits 3:0, and bits 7:6 set while the FIFOs are enabled.
IIR_NO_INTERRUPT = 0x01
IIR_RECEIVER_LINE_STATUS = 0x06  # priority 1
IIR_RECEIVED_DATA = 0x04  # priority 2
IIR_CHARACTER_TIMEOUT = 0x0C  # priority 2, FIFO mode only
IIR_THR_EMPTY = 0x02  # priority 3
IIR_MODEM_STATUS = 0x00  # priority 4
IIR_FIFO_ENABLED = 0xC0
# FIFO control register.
FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
FCR_TRIGGER_SHIFT = 6
#: Receiver FIFO trigger levels selected by FCR bits 7:6.
RX_TRIGGER_LEVELS = (1, 4, 8, 14)
FIFO_SIZE = 16
# Line control and line status registers.
LCR_DLAB = 0x80
LSR_DR = 0x01  # data ready
LSR_OE = 0x02  # overrun error
LSR_PE = 0x04  # parity error
LSR_FE = 0x08  # framing error
LSR_BI = 0x10  # break interrupt
LSR_THRE = 0x20  # transmitter holding register empty
LSR_TEMT = 0x40  # transmitter empty
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI
# Modem control register: outputs, and the loopback test mode.
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08  # on a PC, enables the INTR output onto the ISA IRQ line
MCR_LOOP = 0x10
MCR_WRITABLE = 0x1F
# Modem status register: delta bits 3:0, input lines 7:4.
MSR_DCTS = 0x01
MSR_DDSR = 0x02
MSR_TERI = 0x04  # trailing edge of ring indicator
MSR_DDCD = 0x08
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
#: Outside loopback the modem inputs are a terminal that is on and ready.
MSR_DCD_DSR_CTS = MSR_DCD | MSR_DSR | MSR_CTS


LINE_FEED = 0x0A
CARRIAGE_RETURN = 0x0D
#: A longer line is cut into lines of this many bytes.
MAX_LINE_BYTES = 4096
#: The raw transmitted bytes kept (the first this many).
MAX_TEXT_BYTES = 1 << 20
#: Unicode categories never shown as themselves: controls (C0, DEL, C1 -- ESC
#: starts every ANSI sequence, U+009B is an 8-bit CSI), format characters
#: (bidirectional overrides, zero-width), line and paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(line: str) -> str:
    """``line`` as it may reach a terminal: tab kept, every control or
    format character shown escaped (``\\x1b``, ``\\u202e``), so a kernel
    cannot move the cursor, erase or recolour another kernel's lines, or
    fake their ``[name]`` prefix."""
    if line.isprintable():
        return line
    out = []
    for char in line:
        if char == "\t" or unicodedata.category(char) not in _HIDDEN_CATEGORIES:
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


class Console:
    """Collects transmitted bytes into lines: the raw text (its first
    MAX_TEXT_BYTES), and each line as it is finished, shown printable
    (:func:`printable`; carriage returns dropped, lines cut at
    MAX_LINE_BYTES), so a guest's output costs bounded memory."""

    def __init__(self) -> None:
        self._partial = bytearray()
        self.text = bytearray()

    def put(self, byte: int) -> str | None:
        """Add a byte; return the line it finished, if any."""
        if len(self.text) < MAX_TEXT_BYTES:
            self.text.append(byte)
        if byte == LINE_FEED:
            return self._take_line()
        if byte != CARRIAGE_RETURN:
            self._partial.append(byte)
            if len(self._partial) >= MAX_LINE_BYTES:
                return self._take_line()
        return None

    def _take_line(self) -> str:
        line = printable(self._partial.decode("utf-8", "replace"))
        self._partial.clear()
        return line

    def close(self) -> str | None:
        """The unfinished last line, if any (the console is done)."""
        return self._take_line() if self._partial else None


class Uart16550:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.ier = 0
        self.lcr = 0x03
        self.mcr = 0
        self.scr = 0
        self.divisor = 1
        self.fcr = 0  # the last FCR value written with the FIFO enable bit (FCR is write-only)
        self.bytes_sent = 0
        self._rx: deque[int] = deque()
        self._rbr = 0  # the last byte read out of the receiver
        self._line_errors = 0  # OE, PE, FE, BI: latched until LSR is read
        self._thre_pending = False  # the THRE interrupt (Table IV, priority 3)
        self._modem_inputs = self._inputs()
        self._modem_deltas = 0
        self._irq = False
        self._irq_changes: list[bool] = []

    # --- register file ---
    def read(self, offset: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == UART_RBR_THR_DLL:
            value = self.divisor & 0xFF if dlab else self._read_rbr()
        elif offset == UART_IER_DLM:
            value = self.divisor >> 8 if dlab else self.ier
        elif offset == UART_IIR_FCR:
            value = self._read_iir()
        elif offset == UART_LCR:
            value = self.lcr
        elif offset == UART_MCR:
            value = self.mcr
        elif offset == UART_LSR:
            value = self._read_lsr()
        elif offset == UART_MSR:
            value = self._modem_inputs | self._modem_deltas
            self._modem_deltas = 0
        else:
            value = self.scr
        self._update_irq()
        return value

    def write(self, offset: int, value: int) -> str | None:
        """Write a register; return the console line a transmitted byte finished."""
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        line = None
        if offset == UART_RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                line = self._transmit(value)
        elif offset == UART_IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0xFF) | (value << 8)
            else:
                self._write_ier(value & IER_WRITABLE)
        elif offset == UART_IIR_FCR:
            self._write_fcr(value)
        elif offset == UART_LCR:
            self.lcr = value
        elif offset == UART_MCR:
            self.mcr = value & MCR_WRITABLE
            self._set_modem_inputs(self._inputs())
        elif offset == UART_SCR:
            self.scr = value
        self._update_irq()
        return line

    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    @property
    def rx_trigger(self) -> int:
        return RX_TRIGGER_LEVELS[self.fcr >> FCR_TRIGGER_SHIFT]

    # --- interrupts ---
    def interrupt_id(self) -> int:
        """IIR bits 3:0: the pending enabled source of highest priority (Table IV)."""
        if self.ier & IER_ELSI and self._line_errors:
            return IIR_RECEIVER_LINE_STATUS
        if self.ier & IER_ERBFI and self._rx:
            if not self.fifo_enabled or len(self._rx) >= self.rx_trigger:
                return IIR_RECEIVED_DATA
            return IIR_CHARACTER_TIMEOUT  # below the trigger level: no character time passes, so it times out at once
        if self.ier & IER_ETBEI and self._thre_pending:
            return IIR_THR_EMPTY
        if self.ier & IER_EDSSI and self._modem_deltas:
            return IIR_MODEM_STATUS
        return IIR_NO_INTERRUPT

    @property
    def intr(self) -> bool:
        """The INTR output: some enabled source is pending."""
        return self.interrupt_id() != IIR_NO_INTERRUPT

    @property
    def irq(self) -> bool:
        """The ISA IRQ line as a PC wires it: INTR gated by OUT2, and cut in
        loopback, where OUT2 is looped back inside the chip instead."""
        return self.intr and bool(self.mcr & MCR_OUT2) and not self.mcr & MCR_LOOP

    def take_irq_changes(self) -> list[bool]:
        """The levels the IRQ line went through since the last call, in order
        (a THR write drops the THRE interrupt and raises it again: a pulse)."""
        changes, self._irq_changes = self._irq_changes, []
        return changes

    def _update_irq(self) -> None:
        level = self.irq
        if level != self._irq:
            self._irq = level
            self._irq_changes.append(level)

    # --- transmitter and receiver ---
    def _transmit(self, byte: int) -> str | None:
        """A THR write clears the THRE interrupt; the byte leaves at once, so
        the holding register is empty again and THRE interrupts anew.  In
        loopback the byte goes to the receiver instead of the line."""
        self._thre_pending = False
        self._update_irq()
        line = None
        if self.mcr & MCR_LOOP:
            self.receive(byte)
        else:
            self.bytes_sent += 1
            line = self.console.put(byte)
        self._thre_pending = bool(self.ier & IER_ETBEI)
        return line

    def receive(self, byte: int) -> None:
        """A byte arrives at the receiver.  With the FIFO full (or, without
        FIFOs, the RBR unread) it is an overrun: the FIFO keeps its bytes,
        the RBR is overwritten."""
        if self.fifo_enabled:
            if len(self._rx) < FIFO_SIZE:
                self._rx.append(byte & 0xFF)
            else:
                self._line_errors |= LSR_OE
        else:
            if self._rx:
                self._line_errors |= LSR_OE
                self._rx.clear()
            self._rx.append(byte & 0xFF)
        self._update_irq()

    def _read_rbr(self) -> int:
        if self._rx:
            self._rbr = self._rx.popleft()
        return self._rbr

    def _read_lsr(self) -> int:
        """LSR; reading it clears the error bits (and so the line status interrupt)."""
        value = LSR_THRE | LSR_TEMT | self._line_errors | (LSR_DR if self._rx else 0)
        self._line_errors = 0
        return value

    def _read_iir(self) -> int:
        """IIR; reading it clears a THRE interrupt it reports (Table IV)."""
        source = self.interrupt_id()
        if source == IIR_THR_EMPTY:
            self._thre_pending = False
        return source | (IIR_FIFO_ENABLED if self.fifo_enabled else 0)

    def _write_ier(self, value: int) -> None:
        """Setting ETBEI while the holding register is empty raises the THRE
        interrupt, even if an IIR read had cleared it (as Linux's THRE test
        in serial8250_do_startup expects of a real 16550A)."""
        rising = value & IER_ETBEI and not self.ier & IER_ETBEI
        self.ier = value
        if rising:
            self._thre_pending = True
        elif not value & IER_ETBEI:
            self._thre_pending = False

    def _write_fcr(self, value: int) -> None:
        """FCR bit 0 enables the FIFOs; the other bits are taken only with it
        set; enabling or disabling the FIFOs clears them (PC16550D FCR)."""
        enable = value & FCR_ENABLE
        if enable != self.fcr & FCR_ENABLE:
            self._rx.clear()
        if enable:
            if value & FCR_CLEAR_RX:
                self._rx.clear()
            self.fcr = value & ~(FCR_CLEAR_RX | FCR_CLEAR_TX)
        else:
            self.fcr = 0

    # --- modem lines ---
    def _inputs(self) -> int:
        """MSR bits 7:4.  In loopback DTR drives DSR, RTS drives CTS, OUT1
        drives RI and OUT2 drives DCD (PC16550D MCR bit 4)."""
        if not self.mcr & MCR_LOOP:
            return MSR_DCD_DSR_CTS
        return ((MSR_CTS if self.mcr & MCR_RTS else 0) | (MSR_DSR if self.mcr & MCR_DTR else 0)
                | (MSR_RI if self.mcr & MCR_OUT1 else 0) | (MSR_DCD if self.mcr & MCR_OUT2 else 0))

    def _set_modem_inputs(self, inputs: int) -> None:
        changed = inputs ^ self._modem_inputs
        if changed & MSR_CTS:
            self._modem_deltas |= MSR_DCTS
        if changed & MSR_DSR:
            self._modem_deltas |= MSR_DDSR
        if changed & MSR_RI and not inputs & MSR_RI:
            self._modem_deltas |= MSR_TERI
        if changed & MSR_DCD:
            self._modem_deltas |= MSR_DDCD
        self._modem_inputs = inputs
