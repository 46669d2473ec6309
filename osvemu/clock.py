"""Virtual time.

In the default (deterministic) mode time is derived from retired
instructions: every instruction takes ``NS_PER_INSTRUCTION`` nanoseconds of
virtual time, so a run's timing depends only on what the guest executed.  The
TSC and the APIC timer's bus clock run at fixed rates on that time base
(values of a 2 GHz Family 10h Opteron with a 200 MHz HyperTransport
reference clock).

Each core has one :class:`CoreClock`, read by the core itself (RDTSC) and by
its local APIC (the timer), so both always agree on "now".
"""

from __future__ import annotations

from collections.abc import Callable

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


class CoreClock:
    """One core's virtual time: the start of its current slice, plus the
    instructions retired in it so far when the slice is counted."""

    def __init__(self) -> None:
        self.slice_start_ns = 0
        self._retired_in_slice: Callable[[], int] | None = None

    def start_slice(self, start_ns: int, retired_in_slice: Callable[[], int] | None) -> None:
        """A slice begins at ``start_ns``; ``retired_in_slice`` counts its
        instructions (None for an uncounted slice: time stands at the start)."""
        self.slice_start_ns = start_ns
        self._retired_in_slice = retired_in_slice

    def now_ns(self) -> int:
        if self._retired_in_slice is None:
            return self.slice_start_ns
        return self.slice_start_ns + self._retired_in_slice() * NS_PER_INSTRUCTION


__all__ = ["APIC_BUS_HZ", "NS_PER_INSTRUCTION", "NS_PER_SECOND", "TSC_HZ", "CoreClock", "bus_ticks_at",
           "ns_for_bus_ticks", "tsc_at"]
