"""A 16550A UART at COM1 whose transmitter is the console (National
Semiconductor PC16550D datasheet, register summary Table II)."""

from __future__ import annotations

import unicodedata

# Register offsets from the base port.
UART_RBR_THR_DLL = 0
UART_IER_DLM = 1
UART_IIR_FCR = 2
UART_LCR = 3
UART_MCR = 4
UART_LSR = 5
UART_MSR = 6
UART_SCR = 7
UART_REGISTER_COUNT = 8

LCR_DLAB = 0x80
LSR_THRE = 0x20  # transmitter holding register empty
LSR_TEMT = 0x40  # transmitter empty
IIR_NO_INTERRUPT = 0x01
IIR_FIFO_ENABLED = 0xC0
MSR_DCD_DSR_CTS = 0xB0


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
        self.fcr = 0
        self.lcr = 0x03
        self.mcr = 0
        self.scr = 0
        self.divisor = 1
        self.bytes_sent = 0

    def read(self, offset: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == UART_RBR_THR_DLL:
            return self.divisor & 0xFF if dlab else 0  # no input
        if offset == UART_IER_DLM:
            return self.divisor >> 8 if dlab else self.ier
        if offset == UART_IIR_FCR:
            return IIR_NO_INTERRUPT | (IIR_FIFO_ENABLED if self.fcr & 1 else 0)
        if offset == UART_LCR:
            return self.lcr
        if offset == UART_MCR:
            return self.mcr
        if offset == UART_LSR:
            return LSR_THRE | LSR_TEMT
        if offset == UART_MSR:
            return MSR_DCD_DSR_CTS
        return self.scr

    def write(self, offset: int, value: int) -> str | None:
        """Write a register; return the console line a transmitted byte finished."""
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == UART_RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self.bytes_sent += 1
                return self.console.put(value)
        elif offset == UART_IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0xFF) | (value << 8)
            else:
                self.ier = value & 0x0F
        elif offset == UART_IIR_FCR:
            self.fcr = value
        elif offset == UART_LCR:
            self.lcr = value
        elif offset == UART_MCR:
            self.mcr = value & 0x1F
        elif offset == UART_SCR:
            self.scr = value
        return None
