"""A Motorola MC146818A real-time clock and its CMOS RAM, at the PC's
ports 0x70 (index; bit 7 masks NMI) and 0x71 (data).

Its time is the kernel's virtual time: a fixed epoch, 2013-03-16 00:00:00
UTC (the VEE'13 date), plus the virtual nanoseconds of the core that reads
it, so two runs read the same dates and times.  The clock and calendar
registers (0-9) are kept as the chip keeps them, field by field, and count
on at each update (once a virtual second while register A's divider runs
the 32.768 kHz time base and register B's SET bit is clear); a guest may
write them, as Linux's ``mc146818_set_time`` does with SET held.  They read
in BCD or binary (register B's DM bit) and in 12- or 24-hour form (bit 1),
converted at the read: the chip would show the bytes as written after a
format change, osvemu shows the same time in the new format.  The day of
the week is stored as written and recomputed from the date at each update.

Register A's UIP bit is set for the 244 us before each update and the
1984 us it lasts (the datasheet's t_BUC and t_UC at 32.768 kHz), so it is
never stuck: a reader waiting for it to clear, as Linux's
``mc146818_avoid_UIP`` does, waits at most 2.2 ms of virtual time.
Register C's flags (update ended, alarm, periodic) are set as the updates
and the periodic rate say and cleared when C is read; no interrupt is
wired, so IRQF only reports.  Register D reads "valid RAM and time".  Bytes
0x0E-0x7F, and the alarm registers, are plain storage.
"""

from __future__ import annotations

import calendar
import time

from osvemu.clock import NS_PER_SECOND

#: 2013-03-16 00:00:00 UTC, the first day of VEE'13, as a Unix time.
EPOCH = calendar.timegm((2013, 3, 16, 0, 0, 0))
#: The two-digit year register counts in this century.
CENTURY_BASE = 2000

# Register indexes (MC146818A datasheet, Figure 3 address map).
SECONDS = 0x00
SECONDS_ALARM = 0x01
MINUTES = 0x02
MINUTES_ALARM = 0x03
HOURS = 0x04
HOURS_ALARM = 0x05
DAY_OF_WEEK = 0x06
DAY_OF_MONTH = 0x07
MONTH = 0x08
YEAR = 0x09
REGISTER_A = 0x0A
REGISTER_B = 0x0B
REGISTER_C = 0x0C
REGISTER_D = 0x0D
RAM_START = 0x0E
RAM_SIZE = 128  # 14 clock bytes and 114 bytes of RAM
#: The clock and calendar registers, in the order this model keeps them.
TIME_REGISTERS = (SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR)
ALARM_OF = {HOURS: HOURS_ALARM, MINUTES: MINUTES_ALARM, SECONDS: SECONDS_ALARM}

INDEX_NMI_MASK = 0x80
INDEX_MASK = 0x7F
#: Register A: update in progress, divider select (bits 6:4), rate select (3:0).
A_UIP = 0x80
A_DIVIDER_SHIFT = 4
A_DIVIDER_MASK = 0b111
A_DIVIDER_32KHZ = 0b010  # the time base runs: updates happen
A_RATE_MASK = 0x0F
#: Register B.
B_SET = 0x80  # updates inhibited while the time is set
B_PIE = 0x40
B_AIE = 0x20
B_UIE = 0x10
B_SQWE = 0x08
B_DM_BINARY = 0x04
B_24_HOUR = 0x02
B_DSE = 0x01
#: Register C.
C_IRQF = 0x80
C_PF = 0x40
C_AF = 0x20
C_UF = 0x10
#: Register D: valid RAM and time (the battery is good).
D_VRT = 0x80
#: What a PC BIOS leaves: 32.768 kHz time base, 1024 Hz periodic rate; BCD, 24-hour.
REGISTER_A_DEFAULT = (A_DIVIDER_32KHZ << A_DIVIDER_SHIFT) | 0x6
REGISTER_B_DEFAULT = B_24_HOUR
#: 12-hour form: bit 7 of the hours byte is PM.
HOURS_PM = 0x80
#: An alarm byte with both top bits set matches every value ("don't care").
ALARM_DONT_CARE = 0xC0
#: UIP is high for t_BUC (244 us) before an update and during it, t_UC (1984 us).
UIP_NS = 244_000 + 1_984_000
#: The first update after the divider is released comes 500 ms later.
RESTART_PHASE_NS = NS_PER_SECOND // 2
SECONDS_PER_DAY = 86400


def periodic_hz(rate: int) -> int:
    """The periodic rate register A's bits 3:0 select with the 32.768 kHz
    time base (datasheet Table 5): 0 none, 1 and 2 256 and 128 Hz, then
    8192 Hz halving down to 2 Hz at 15."""
    if rate == 0:
        return 0
    return 256 >> (rate - 1) if rate < 3 else 65536 >> rate


def _to_bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def _from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0xF)


class Rtc:
    def __init__(self, epoch: int = EPOCH) -> None:
        self.index = 0
        self.nmi_masked = False
        self.ram = bytearray(RAM_SIZE)  # alarm bytes and 0x0E-0x7F; the clock registers live below
        self.register_a = REGISTER_A_DEFAULT
        self.register_b = REGISTER_B_DEFAULT
        self._fields = _broken_down(epoch)  # by TIME_REGISTERS, in binary
        self._anchor_ns = 0  # when _fields were exact: an update, while the clock runs
        self._divider_start_ns = 0  # the periodic taps count from here
        self._flags = 0  # register C's UF and AF since its last read
        self._flags_read_ns = 0

    # --- ports ---
    def read(self, offset: int, now_ns: int) -> int:
        """A read of the index (offset 0: write-only, reads float high) or data port."""
        return self.read_register(self.index, now_ns) if offset else 0xFF

    def write(self, offset: int, value: int, now_ns: int) -> None:
        if offset:
            self.write_register(self.index, value, now_ns)
        else:
            self.index = value & INDEX_MASK
            self.nmi_masked = bool(value & INDEX_NMI_MASK)

    # --- registers ---
    def read_register(self, index: int, now_ns: int) -> int:
        self._advance(now_ns)
        if index in TIME_REGISTERS:
            return self._encode(index, self._fields[TIME_REGISTERS.index(index)])
        if index == REGISTER_A:
            return self.register_a | (A_UIP if self._update_in_progress(now_ns) else 0)
        if index == REGISTER_B:
            return self.register_b
        if index == REGISTER_C:
            return self._read_flags(now_ns)
        if index == REGISTER_D:
            return D_VRT
        return self.ram[index]

    def write_register(self, index: int, value: int, now_ns: int) -> None:
        value &= 0xFF
        self._advance(now_ns)
        if index in TIME_REGISTERS:
            self._fields[TIME_REGISTERS.index(index)] = self._decode(index, value)
        elif index == REGISTER_A:
            self._write_a(value & ~A_UIP, now_ns)
        elif index == REGISTER_B:
            self._write_b(value, now_ns)
        elif index not in (REGISTER_C, REGISTER_D):  # C and D are read-only
            self.ram[index] = value

    @property
    def running(self) -> bool:
        """Whether updates happen: the time base runs and SET is clear."""
        return not self.register_b & B_SET and self._divider_runs(self.register_a)

    def unix_time(self, now_ns: int) -> int:
        """The time the registers show, as a Unix time (for tests and reports)."""
        self._advance(now_ns)
        return _seconds_of(self._fields)

    # --- the clock ---
    @staticmethod
    def _divider_runs(register_a: int) -> bool:
        return (register_a >> A_DIVIDER_SHIFT) & A_DIVIDER_MASK == A_DIVIDER_32KHZ

    def _advance(self, now_ns: int) -> None:
        """Perform the updates due by ``now_ns``; note UF and AF for register C."""
        if not self.running or now_ns - self._anchor_ns < NS_PER_SECOND:
            return
        updates = (now_ns - self._anchor_ns) // NS_PER_SECOND
        before = _seconds_of(self._fields)
        self._fields = _broken_down(before + updates)
        self._anchor_ns += updates * NS_PER_SECOND
        self._flags |= C_UF
        if self._alarm_between(before, updates):
            self._flags |= C_AF

    def _update_in_progress(self, now_ns: int) -> bool:
        return self.running and (now_ns - self._anchor_ns) % NS_PER_SECOND >= NS_PER_SECOND - UIP_NS

    def _write_a(self, value: int, now_ns: int) -> None:
        """A divider stopped holds the time; released, it makes the first
        update 500 ms later (datasheet, "Divider stages")."""
        was, runs = self._divider_runs(self.register_a), self._divider_runs(value)
        self.register_a = value
        if runs and not was:
            self._anchor_ns = now_ns - RESTART_PHASE_NS
            self._divider_start_ns = now_ns

    def _write_b(self, value: int, now_ns: int) -> None:
        """SET inhibits updates (and clears UIE); the divider keeps its
        phase, so after SET the next update comes on the old second beat."""
        if value & B_SET:
            value &= ~B_UIE
        elif self.register_b & B_SET:
            self._anchor_ns += (now_ns - self._anchor_ns) // NS_PER_SECOND * NS_PER_SECOND
        self.register_b = value

    def _read_flags(self, now_ns: int) -> int:
        """Register C: the flags since its last read, then cleared."""
        flags = self._flags
        hz = periodic_hz(self.register_a & A_RATE_MASK) if self._divider_runs(self.register_a) else 0
        if hz and _ticks(now_ns - self._divider_start_ns, hz) > _ticks(self._flags_read_ns - self._divider_start_ns, hz):
            flags |= C_PF
        if flags & self.register_b & (B_PIE | B_AIE | B_UIE):
            flags |= C_IRQF  # PF, AF, UF sit at the bit positions of PIE, AIE, UIE
        self._flags = 0
        self._flags_read_ns = now_ns
        return flags

    def _alarm_between(self, before: int, updates: int) -> bool:
        """Whether one of the times ``before + 1 .. before + updates`` that
        the updates showed matches the alarm (a day covers every time of
        day).  Whole hours and minutes that cannot match are skipped."""
        t, end = before + 1, before + min(updates, SECONDS_PER_DAY)
        while t <= end:
            hour, minute, second = time.gmtime(t)[3:6]
            if not self._alarm_matches(HOURS, hour):
                t += 3600 - minute * 60 - second
            elif not self._alarm_matches(MINUTES, minute):
                t += 60 - second
            elif not self._alarm_matches(SECONDS, second):
                wanted = self._decode(SECONDS, self.ram[SECONDS_ALARM])
                t += wanted - second if second < wanted < 60 else 60 - second
            else:
                return True
        return False

    def _alarm_matches(self, register: int, value: int) -> bool:
        alarm = self.ram[ALARM_OF[register]]
        return alarm & ALARM_DONT_CARE == ALARM_DONT_CARE or alarm == self._encode(register, value)

    # --- formats ---
    def _encode(self, register: int, value: int) -> int:
        """A field as register B's DM and 24/12 bits show it."""
        pm = 0
        if register == HOURS and not self.register_b & B_24_HOUR:
            value, pm = (value % 12 or 12), (HOURS_PM if value >= 12 else 0)
        return (value if self.register_b & B_DM_BINARY else _to_bcd(value)) | pm

    def _decode(self, register: int, byte: int) -> int:
        pm = False
        if register == HOURS and not self.register_b & B_24_HOUR:
            pm, byte = bool(byte & HOURS_PM), byte & ~HOURS_PM
        value = byte if self.register_b & B_DM_BINARY else _from_bcd(byte)
        if register == HOURS and not self.register_b & B_24_HOUR:
            value = value % 12 + (12 if pm else 0)
        return value


def _ticks(ns: int, hz: int) -> int:
    return ns * hz // NS_PER_SECOND


def _broken_down(seconds: int) -> list[int]:
    """A Unix time as the chip's fields (TIME_REGISTERS order); day of the
    week 1-7 from Sunday."""
    tm = time.gmtime(seconds)
    return [tm.tm_sec, tm.tm_min, tm.tm_hour, (tm.tm_wday + 1) % 7 + 1, tm.tm_mday, tm.tm_mon,
            tm.tm_year - CENTURY_BASE]


def _seconds_of(fields: list[int]) -> int:
    """The Unix time the chip's fields stand for.  Out-of-range values count
    on arithmetically (a 31st of February is the 3rd of March), as the next
    update makes some valid date of them; the month is clamped to 1-12."""
    second, minute, hour, _, day, month, year = fields
    return calendar.timegm((CENTURY_BASE + year, min(max(month, 1), 12), day, hour, minute, second))


__all__ = ["EPOCH", "Rtc", "periodic_hz"]
