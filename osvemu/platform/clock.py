"""Virtual time.

In the default (deterministic) mode time is derived from retired
instructions: every instruction takes ``NS_PER_INSTRUCTION`` nanoseconds of
virtual time, so a run's timing depends only on what the guest executed.  The
TSC and the APIC timer's bus clock run at fixed rates on that time base
(values of a 2 GHz Family 10h Opteron with a 200 MHz HyperTransport
reference clock).
"""

from __future__ import annotations

#: A 100-MIPS virtual core: 1 ms of guest time is 100,000 instructions.
NS_PER_INSTRUCTION = 10
TSC_HZ = 2_000_000_000
#: The APIC timer counts at the bus clock divided by the divide configuration.
APIC_BUS_HZ = 200_000_000
NS_PER_SECOND = 1_000_000_000


def tsc_at(ns: int) -> int:
    return ns * (TSC_HZ // 1_000_000) // 1_000


def bus_ticks_at(ns: int) -> int:
    return ns * (APIC_BUS_HZ // 1_000_000) // 1_000


def ns_for_bus_ticks(ticks: int) -> int:
    return -(-ticks * 1_000 // (APIC_BUS_HZ // 1_000_000))
