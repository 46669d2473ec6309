"""What a core needs from the machine around it, declared here so that
``osvemu.cpu`` depends on no other layer: the platform implements
:class:`Platform`, its local APIC implements :class:`InterruptController`.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from osvemu.cpu.core import Core
    from osvemu.events import Record


class Access(Enum):
    """How an instruction, or the processor for it, touched memory that nothing backs."""

    READ = "read of"
    WRITE = "write to"
    FETCH = "fetch from"
    WALK = "page-table walk reading"  # a paging-structure entry (Intel SDM Vol. 3A 4.5)


class Unmapped(Enum):
    """What becomes of an access to guest-physical memory nothing backs."""

    SCRATCH = "scratch"  # a scratch page was mapped: the instruction completes there
    END_SLICE = "end slice"  # the platform ended the kernel: stop without a fault
    FAULT = "fault"  # nothing is there: the core stops with a fault


class ActionAbandoned(Exception):
    """An access osvemu made on a core's behalf (an interrupt frame, a
    descriptor table, a page-table walk) met guest-physical memory the
    platform answered with END_SLICE or FAULT: the action cannot complete."""

    def __init__(self, verdict: Unmapped, description: str) -> None:
        super().__init__(description)
        self.verdict = verdict
        self.description = description


class InterruptController(Protocol):
    """The core's local APIC, as the core sees it (Intel SDM Vol. 3A 10.8)."""

    def pending_vector(self) -> int | None:
        """The highest vector the APIC would hand the core now, or None."""

    def would_accept(self, vector: int) -> bool:
        """Whether ``vector`` would be handed to the core if it arrived now."""

    def acknowledge(self, vector: int) -> None:
        """The core takes ``vector`` (IRR -> ISR)."""

    def reset(self) -> None:
        """INIT state (SDM Vol. 3A 10.4.7.1)."""


class Platform(Protocol):
    """Everything a core hands to the machine: its exits and its events."""

    def port_in(self, core: Core, port: int, size: int) -> int: ...
    def port_out(self, core: Core, port: int, size: int, value: int) -> None: ...
    def mmio_regions(self, core: Core) -> list[tuple[int, int]]:
        """(base, size) of the device pages this core traps (its local APIC, shared devices)."""
    def mmio_read(self, core: Core, register: int) -> int:
        """The 32-bit device register at guest-physical ``register``."""
    def mmio_write(self, core: Core, register: int, value: int) -> None: ...
    def cpuid(self, core: Core, leaf: int, subleaf: int) -> tuple[int, int, int, int]: ...
    def hypercall(self, core: Core) -> bool:
        """A VMMCALL: True if a monitor serviced it, False for #UD."""
    def unmapped_access(self, core: Core, access: Access, address: int, size: int) -> Unmapped:
        """An access to guest-physical ``address`` that nothing backs, by the
        guest's instruction or by osvemu acting for the core."""
    def core_shut_down(self, core: Core) -> None:
        """The core stopped on a fault it cannot continue from (a triple
        fault is the shutdown state, Intel SDM Vol. 3A 6.15 / AMD APM Vol. 2
        8.2.9); its report is ``core.fault``."""
    def symbolize(self, core: Core, address: int) -> str | None: ...
    def core_event(self, core: Core, record: Record) -> None: ...


__all__ = ["Access", "ActionAbandoned", "InterruptController", "Platform", "Unmapped"]
