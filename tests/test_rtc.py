"""The MC146818A RTC: the VEE'13 epoch plus virtual time, in BCD or binary
and 24- or 12-hour form, UIP never stuck, SET and the divider holding the
clock, register C's flags, CMOS RAM -- and per kernel, read through the
ports at the reading core's virtual time."""

from __future__ import annotations

import calendar

import pytest

from osvemu.osv.config import default_config
from osvemu.osv.plan import osv_plan
from osvemu.platform import layout
from osvemu.platform.machine import Machine
from osvemu.platform.plan import bare_plan
from osvemu.platform.rtc import (
    B_24_HOUR,
    B_AIE,
    B_DM_BINARY,
    B_SET,
    B_UIE,
    C_AF,
    C_IRQF,
    C_PF,
    C_UF,
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    EPOCH,
    HOURS,
    HOURS_ALARM,
    MINUTES,
    MINUTES_ALARM,
    MONTH,
    REGISTER_A,
    REGISTER_B,
    REGISTER_C,
    REGISTER_D,
    SECONDS,
    SECONDS_ALARM,
    UIP_NS,
    YEAR,
    Rtc,
    periodic_hz,
)
from osvemu.platform.topology import Topology

S = 1_000_000_000
CLOCK = (SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR)


def clock(rtc: Rtc, now: int) -> list[int]:
    return [rtc.read_register(index, now) for index in CLOCK]


def test_epoch_is_the_vee13_date():
    assert EPOCH == calendar.timegm((2013, 3, 16, 0, 0, 0)) == 1363392000


def test_registers_after_power_on():
    rtc = Rtc()
    assert clock(rtc, 0) == [0x00, 0x00, 0x00, 0x07, 0x16, 0x03, 0x13]  # Saturday 2013-03-16, BCD
    assert [rtc.read_register(index, 0) for index in (REGISTER_A, REGISTER_B, REGISTER_C, REGISTER_D)] == \
        [0x26, 0x02, 0x00, 0x80]


def test_time_is_the_epoch_plus_virtual_time():
    rtc = Rtc()
    now = (13 * 3600 + 5 * 60 + 9) * S + S // 3  # 13:05:09.33
    assert clock(rtc, now) == [0x09, 0x05, 0x13, 0x07, 0x16, 0x03, 0x13]
    assert rtc.unix_time(now) == EPOCH + 13 * 3600 + 5 * 60 + 9
    assert clock(rtc, (86400 * 300) * S)[3:] == [0x06, 0x10, 0x01, 0x14]  # Friday 2014-01-10


def test_binary_and_twelve_hour_forms():
    rtc = Rtc()
    now = (13 * 3600 + 5 * 60 + 9) * S
    rtc.write_register(REGISTER_B, B_DM_BINARY | B_24_HOUR, now)
    assert clock(rtc, now) == [9, 5, 13, 7, 16, 3, 13]
    rtc.write_register(REGISTER_B, B_DM_BINARY, now)
    assert rtc.read_register(HOURS, now) == 0x81  # 1 PM
    rtc.write_register(REGISTER_B, 0, now)
    assert rtc.read_register(HOURS, now) == 0x81  # BCD 01, PM
    rtc.write_register(HOURS, 0x92, now)  # writes decode in the current form too: 12 PM
    rtc.write_register(REGISTER_B, B_24_HOUR, now)
    assert rtc.read_register(HOURS, now) == 0x12


@pytest.mark.parametrize(("seconds", "bcd", "binary"), [(30 * 60, 0x12, 0x0C), (12 * 3600, 0x92, 0x8C),
                                                         (23 * 3600, 0x91, 0x8B), (3600, 0x01, 0x01)])
def test_twelve_hour_midnight_and_noon(seconds, bcd, binary):
    for mode, expected in ((0, bcd), (B_DM_BINARY, binary)):
        rtc = Rtc()
        rtc.write_register(REGISTER_B, mode, 0)
        assert rtc.read_register(HOURS, seconds * S) == expected


def test_uip_is_set_only_just_before_an_update():
    rtc = Rtc()
    window = S - UIP_NS  # 244 us before the update and 1984 us for it: never stuck
    assert not rtc.read_register(REGISTER_A, window - 1) & 0x80
    assert rtc.read_register(REGISTER_A, window) == 0xA6
    assert rtc.read_register(REGISTER_A, S - 1) == 0xA6 and rtc.read_register(SECONDS, S - 1) == 0x00
    assert rtc.read_register(REGISTER_A, S) == 0x26 and rtc.read_register(SECONDS, S) == 0x01


def test_set_holds_the_clock_and_the_old_beat_resumes():
    rtc = Rtc()
    rtc.write_register(REGISTER_B, B_SET | B_24_HOUR | B_UIE, S // 2)
    assert rtc.read_register(REGISTER_B, S // 2) == B_SET | B_24_HOUR  # SET clears UIE
    assert not rtc.read_register(REGISTER_A, 2 * S - 1000) & 0x80  # no update, so no UIP
    assert rtc.read_register(SECONDS, 5 * S) == 0x00
    for index, value in ((YEAR, 0x13), (MONTH, 0x12), (DAY_OF_MONTH, 0x31), (HOURS, 0x23), (MINUTES, 0x59),
                         (SECONDS, 0x58)):
        rtc.write_register(index, value, 5 * S)
    rtc.write_register(REGISTER_B, B_24_HOUR, 5 * S + S // 5)
    assert rtc.read_register(SECONDS, 6 * S - 1) == 0x58  # the divider kept its phase: next update at 6 s
    assert clock(rtc, 6 * S) == [0x59, 0x59, 0x23, 0x03, 0x31, 0x12, 0x13]  # the weekday follows the date
    assert clock(rtc, 7 * S) == [0x00, 0x00, 0x00, 0x04, 0x01, 0x01, 0x14]  # Wednesday 2014-01-01


def test_fields_written_one_at_a_time_are_not_normalised_midway():
    rtc = Rtc()
    rtc.write_register(REGISTER_B, B_SET | B_24_HOUR, 0)
    rtc.write_register(DAY_OF_MONTH, 0x31, 0)
    rtc.write_register(MONTH, 0x02, 0)  # for now the 31st of February
    assert (rtc.read_register(DAY_OF_MONTH, 0), rtc.read_register(MONTH, 0)) == (0x31, 0x02)
    rtc.write_register(DAY_OF_MONTH, 0x28, 0)
    rtc.write_register(REGISTER_B, B_24_HOUR, 0)
    assert clock(rtc, S)[4:] == [0x28, 0x02, 0x13]


def test_divider_reset_stops_the_clock_and_restarts_half_a_second_late():
    rtc = Rtc()
    rtc.write_register(REGISTER_A, 0x76, 2 * S + S // 3)  # divider chain reset
    assert rtc.read_register(SECONDS, 9 * S) == 0x02 and rtc.read_register(REGISTER_A, 9 * S) == 0x76
    rtc.write_register(REGISTER_A, 0x26, 10 * S)
    assert rtc.read_register(SECONDS, 10 * S + S // 2 - 1) == 0x02
    assert rtc.read_register(SECONDS, 10 * S + S // 2) == 0x03
    assert rtc.read_register(REGISTER_A, 0) == 0x26  # UIP is read-only; the other bits as written


def test_register_c_flags_are_set_by_updates_and_cleared_by_reading():
    rtc = Rtc()
    rtc.write_register(REGISTER_A, 0x20, 0)  # no periodic rate
    assert rtc.read_register(REGISTER_C, S - 1) == 0
    assert rtc.read_register(REGISTER_C, S) == C_UF
    assert rtc.read_register(REGISTER_C, S) == 0
    rtc.write_register(SECONDS_ALARM, 0x05, S)
    rtc.write_register(MINUTES_ALARM, 0xC0, S)  # don't care
    rtc.write_register(HOURS_ALARM, 0xFF, S)
    assert rtc.read_register(REGISTER_C, 4 * S) == C_UF
    rtc.write_register(REGISTER_B, B_24_HOUR | B_AIE, 4 * S)
    assert rtc.read_register(REGISTER_C, 5 * S) == C_IRQF | C_AF | C_UF  # xx:xx:05, and AIE set
    assert rtc.read_register(REGISTER_C, 65 * S) == C_IRQF | C_AF | C_UF  # 00:01:05 came by
    assert rtc.read_register(REGISTER_C, 66 * S) == C_UF


def test_an_alarm_long_ago_is_found_among_a_day_of_updates():
    rtc = Rtc()
    rtc.write_register(REGISTER_A, 0x20, 0)
    for index, value in ((HOURS_ALARM, 0x17), (MINUTES_ALARM, 0x42), (SECONDS_ALARM, 0x07)):
        rtc.write_register(index, value, 0)
    assert rtc.read_register(REGISTER_C, (17 * 3600 + 42 * 60 + 6) * S) == C_UF
    assert rtc.read_register(REGISTER_C, (17 * 3600 + 42 * 60 + 7) * S) == C_AF | C_UF
    assert rtc.read_register(REGISTER_C, 40 * 86400 * S) == C_AF | C_UF
    rtc.write_register(SECONDS_ALARM, 0x61, 40 * 86400 * S)  # no such second: never
    assert rtc.read_register(REGISTER_C, 42 * 86400 * S) == C_UF


def test_periodic_flag_follows_the_rate():
    assert [periodic_hz(rate) for rate in (0, 1, 2, 3, 6, 15)] == [0, 256, 128, 8192, 1024, 2]
    rtc = Rtc()
    rtc.write_register(REGISTER_A, 0x2F, 0)  # 2 Hz
    assert rtc.read_register(REGISTER_C, S // 2 - 1) == 0
    assert rtc.read_register(REGISTER_C, S // 2) == C_PF
    assert rtc.read_register(REGISTER_C, S // 2 + 1000) == 0


def test_cmos_ram_is_storage_and_c_d_are_read_only():
    rtc = Rtc()
    for index in range(0x0E, 0x80):
        rtc.write_register(index, index ^ 0xA5, 0)
    assert [rtc.read_register(index, 0) for index in range(0x0E, 0x80)] == [i ^ 0xA5 for i in range(0x0E, 0x80)]
    rtc.write_register(REGISTER_C, 0xFF, 0)
    rtc.write_register(REGISTER_D, 0x00, 0)
    assert (rtc.read_register(REGISTER_C, 0), rtc.read_register(REGISTER_D, 0)) == (0, 0x80)


def test_index_port_masks_nmi_and_reads_float():
    rtc = Rtc()
    rtc.write(0, 0x80 | 0x32, 0)
    assert rtc.index == 0x32 and rtc.nmi_masked
    rtc.write(1, 0x20, 0)
    assert rtc.read(1, 0) == 0x20 and rtc.read(0, 0) == 0xFF
    rtc.write(0, 0x09, 0)
    assert not rtc.nmi_masked and rtc.read(1, 0) == 0x13


def test_two_clocks_read_the_same():
    times = [0, 123_456_789, S - UIP_NS, 3 * S + 7, 3600 * S]
    first, second = Rtc(), Rtc()
    assert [clock(first, t) for t in times] == [clock(second, t) for t in times]


@pytest.mark.parametrize("kernels", [1, 2])
def test_each_kernel_reads_its_own_rtc_through_the_ports(kernels):
    topology = Topology(1, 2, 256 * layout.MiB)
    plan = bare_plan(topology) if kernels == 1 else osv_plan(default_config(topology, "", "", 2))
    machine = Machine(plan, console=lambda line: None)
    core0, core1 = machine.cores

    def cmos(core, index, value=None):
        machine.port_out(core, layout.RTC_INDEX_PORT, 1, index)
        if value is not None:
            machine.port_out(core, layout.RTC_DATA_PORT, 1, value)
        return machine.port_in(core, layout.RTC_DATA_PORT, 1)

    assert [cmos(core0, index) for index in CLOCK] == [0x00, 0x00, 0x00, 0x07, 0x16, 0x03, 0x13]
    cmos(core0, 0x50, 0x77)
    assert cmos(core1, 0x50) == (0x77 if kernels == 1 else 0x00)  # under OSV the other kernel's CMOS is its own
    core1.clock.start_slice(3 * S, None)  # the reading core's virtual time
    assert cmos(core1, SECONDS) == 0x03
    assert machine.port_in(core0, layout.RTC_INDEX_PORT, 1) == 0xFF
