"""How a kernel's life ends, and the exit status of a run.

Every kernel ends in one of the ways of :class:`EndKind`, each standing for
an exit status (README, "Exit status").  The run's status is derived from
every kernel's end: that of the first kernel, in configuration order, that
did not end cleanly, or 0 -- so one kernel's clean or idle end never masks
another's failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: A core stopped on a fault it cannot go on from (triple fault, memory nothing backs, an emulation error).
EXIT_FAULT = 1
#: No core of the kernel can ever run again and one is spinning on itself with interrupts off.
EXIT_HUNG = 4
#: Still running when --timeout or --max-instructions ended the run (as timeout(1) exits).
EXIT_LIMIT = 124
#: Stopped by the monitor for a violation (its ``on_violation = "stop"`` policy).
EXIT_VIOLATION = 0xFF
#: The user ended the run with Ctrl-C (SIGINT), as a shell reports it (128 + 2).
EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted (Ctrl-C)"


class EndKind(Enum):
    EXITED = "exited"  # the exit port or SHUTDOWN, with the kernel's own status
    VIOLATION = "stopped for a violation"
    FAULT = "fault"
    HALTED = "halted"  # every core halted with interrupts off or waiting for a SIPI: done for good (Linux's halt)
    HUNG = "hung"  # no core can run again and one spins on itself with interrupts off
    IDLE = "idle"  # at the end of the run every core waited for an interrupt nothing could send
    UNFINISHED = "unfinished"  # a limit ended the run first


@dataclass(frozen=True)
class KernelEnd:
    kind: EndKind
    status: int  # the exit status this end stands for
    detail: str  # why, in one line

    @property
    def clean(self) -> bool:
        return self.kind in (EndKind.IDLE, EndKind.HALTED) or (self.kind is EndKind.EXITED and self.status == 0)

    def describe(self) -> str:
        if self.kind is EndKind.EXITED:
            return f"exited with status {self.status} ({self.detail})"
        return f"{self.kind.value}: {self.detail}"

    def to_json(self) -> dict:
        return {"end": self.kind.value, "exit_status": self.status, "detail": self.detail}


def exited(status: int, how: str) -> KernelEnd:
    return KernelEnd(EndKind.EXITED, status & 0xFF, how)


def stopped_for_violation(reason: str) -> KernelEnd:
    return KernelEnd(EndKind.VIOLATION, EXIT_VIOLATION, reason)


def faulted(report: str) -> KernelEnd:
    return KernelEnd(EndKind.FAULT, EXIT_FAULT, report)


def halted(why: str) -> KernelEnd:
    return KernelEnd(EndKind.HALTED, 0, why)


def hung(why: str) -> KernelEnd:
    return KernelEnd(EndKind.HUNG, EXIT_HUNG, why)


def idle(why: str) -> KernelEnd:
    return KernelEnd(EndKind.IDLE, 0, why)


def unfinished(why: str) -> KernelEnd:
    return KernelEnd(EndKind.UNFINISHED, EXIT_LIMIT, why)


def run_status(ends: list[KernelEnd]) -> int:
    """The status of the first end that is not clean, or 0."""
    return next((end.status for end in ends if not end.clean), 0)


__all__ = ["EXIT_FAULT", "EXIT_HUNG", "EXIT_INTERRUPTED", "EXIT_LIMIT", "EXIT_VIOLATION", "INTERRUPTED", "EndKind", "KernelEnd", "exited", "faulted",
           "halted", "hung", "idle", "run_status", "stopped_for_violation", "unfinished"]
