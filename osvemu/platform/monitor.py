"""The monitor protocol: the exits a monitor installed on the machine owns.

The bare machine has no monitor.  Under OSV the machine hands the monitor
exactly these exits -- VMMCALL, an isolation refusal or an access outside a
kernel's memory (a *violation*), and the CPUID leaves a hypervisor
announces itself in -- and carries out what the monitor answers.  Every
ICR write is routed by the policy the machine's APIC bus was built with.

The machine counts each exit it hands over, per kernel and kind
(:meth:`Monitor.count_exit`).  A monitor that says it ``traps_all`` is a
classic full-virtualization VMM (:mod:`osvemu.osv.trapall`): the machine
then also counts as its exits every local APIC and IOAPIC access, port
I/O, CPUID, MSR access, HLT and interrupt delivery (``TRAP_ALL_KINDS``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

from osvemu.events import ViolationKind

#: A buffer's linear address and length -> its guest-physical pieces as a
#: CPL-0 write reaches them through the caller's page tables, or None.
BufferPages = Callable[[int, int], "tuple[tuple[int, int], ...] | None"]


class HypercallOutcome(Protocol):
    result: int  # RAX: >= 0 success, -errno failure
    error: str | None  # why it failed, recorded as a violation
    writes: tuple[tuple[int, bytes], ...]  # guest-physical writes into the caller's memory
    notify: tuple[int, int] | None  # (kernel, vector): a fixed interrupt to that kernel's boot CPU
    shutdown: int | None  # the caller's kernel ends with this status


#: The exits every monitor takes: ICR writes, VMMCALLs and accesses outside
#: a kernel's memory (other violations arrive as one of the first two).
OWN_KINDS = ("icr", "hypercall", "violation")
#: What a trap-everything monitor takes besides: local APIC and IOAPIC MMIO
#: (an ICR write that sends an IPI is an "icr" exit), port I/O, CPUID
#: instructions, RDMSR/WRMSR, HLT, and the delivery of an external interrupt
#: or NMI (AMD APM Vol. 2 15.9-15.21: the intercepts a VMM without APIC
#: virtualization must set to emulate them).
TRAP_ALL_KINDS = OWN_KINDS + ("lapic", "ioapic", "io", "cpuid", "msr", "hlt", "interrupt")


class Monitor(Protocol):
    #: Monitor exits by kind (OWN_KINDS, or TRAP_ALL_KINDS): the sum over the kernels.
    exits: Counter[str]
    #: Whether the monitor traps everything a full-virtualization VMM traps.
    traps_all: bool

    def count_exit(self, kernel: int, kind: str, count: int = 1) -> None:
        """``count`` exits of ``kind`` taken by ``kernel``'s cores."""

    def cpuid(self, leaf: int, subleaf: int, values: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The machine's CPUID values for a leaf, as the monitor presents them."""

    def hypercall(self, kernel: int, registers: tuple[int, int, int, int], now_ns: int,
                  pages: BufferPages) -> HypercallOutcome:
        """VMMCALL at CPL 0 with (RAX, RDI, RSI, RDX) from ``kernel``;
        ``now_ns`` is the calling core's virtual time."""

    def refused_hypercall(self, kernel: int) -> None:
        """A VMMCALL the machine refused (not CPL 0), for the counters."""

    def call_name(self, number: int) -> str:
        """A hypercall number's name, for traces ("unknown" for none)."""

    def violation(self, kernel: int, core: int, rip: int, kind: ViolationKind, reason: str) -> bool:
        """Record a violation; True when the kernel is to be ended for it."""

    def report(self) -> dict:
        """The monitor's part of the run report."""

    def report_kernel(self, kernel: int) -> dict:
        """The monitor's view of one kernel, for the run report."""


__all__ = ["OWN_KINDS", "TRAP_ALL_KINDS", "BufferPages", "HypercallOutcome", "Monitor"]
