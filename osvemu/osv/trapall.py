"""The trap-all monitor: OSV's partitioning under a classic full-virtualization VMM.

The same plans, policies and isolation as OSV, and the same guest results:
what changes is only which exits the monitor takes.  OSV sees ICR writes,
VMMCALLs and violations; a VMM that virtualizes the platform without help
from the hardware's APIC virtualization -- Xen HVM or KVM on an AMD SVM
part without AVIC, as in 2013 -- also intercepts (AMD APM Vol. 2, 15.9
"Instruction Intercepts", 15.10 "IOIO Intercepts", 15.11 "MSR Intercepts",
15.21 "Interrupt and LDT Virtualization"):

* every access to the local APIC and IOAPIC pages, which it emulates
  (nested page faults on the pages it leaves unmapped);
* every port I/O instruction (the IOPM covers every port);
* every CPUID, RDMSR and WRMSR (the CPUID intercept, the MSRPM);
* HLT (the core goes back to the VMM's scheduler);
* every external interrupt and NMI: the physical interrupt exits, and the
  VMM injects the virtual one at the next VMRUN (EVENTINJ).

The machine counts them (:mod:`osvemu.platform.machine`) because this
monitor says it ``traps_all``; it answers every exit as OSV does, so a run
under it retires exactly OSV's instructions and prints OSV's console.
"""

from __future__ import annotations

from typing import ClassVar

from osvemu.osv.monitor import OsvMonitor
from osvemu.platform.monitor import TRAP_ALL_KINDS


class TrapAllMonitor(OsvMonitor):
    """OSV's monitor, taking an exit for everything a full-virtualization VMM traps."""

    kinds: ClassVar[tuple[str, ...]] = TRAP_ALL_KINDS
    traps_all: ClassVar[bool] = True
    mode: ClassVar[str] = "trap-all"


__all__ = ["TRAP_ALL_KINDS", "TrapAllMonitor"]
