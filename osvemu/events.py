"""Machine events: what the trace tool, the debugger and reports observe.

Cores, the APIC bus, the timers, the UART, the exit port and OSV report what
happens through one :class:`EventBus`, as typed records.  Each record knows
its trace keyword (``name``) and how it reads in a trace line
(``describe``), so every reader formats an event the same way.  With no
subscriber, emitting costs a single truth test, so a plain ``osvemu boot``
pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

#: Formats an address for a trace line, with its symbol where one is known.
Locate = Callable[[int], str]


class TakenKind(Enum):
    """Why a core entered a handler (the trace keyword is the value)."""

    INTERRUPT = "interrupt"  # a LAPIC interrupt
    NMI = "nmi"
    EXCEPTION = "exception"  # raised by an instruction
    SOFTWARE = "int"  # int n, int3, into


class ViolationKind(Enum):
    """What a kernel tried that OSV refused (recorded as a violation)."""

    MEMORY = "memory"
    IPI = "ipi"
    IO_INTERRUPT = "io interrupt"  # an IOAPIC redirection entry aimed outside the partition
    HYPERCALL = "hypercall"


class Record:
    """A typed event payload."""

    name: ClassVar[str]

    def describe(self, located: Locate) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class InterruptTaken(Record):
    """A vector delivered through the IVT or IDT (Intel SDM Vol. 3A 6.12)."""

    kind: TakenKind
    vector: int
    error_code: int | None
    interrupted_at: int
    handler: int
    rsp: int

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.kind.value

    def describe(self, located: Locate) -> str:
        text = f"vector {self.vector:#04x}"
        if self.error_code is not None:
            text += f" error code {self.error_code:#x}"
        return (f"{text} at {located(self.interrupted_at)} -> handler {located(self.handler)}, "
                f"frame at rsp {self.rsp:#x}")


@dataclass(frozen=True)
class DoubleFault(Record):
    """Delivery of a vector faulted and the core took #DF instead (SDM Vol. 3A 6.15)."""

    name: ClassVar[str] = "exception"
    cause: str

    def describe(self, located: Locate) -> str:
        return f"vector 0x08 error code 0x0 ({self.cause})"


@dataclass(frozen=True)
class IpiSent(Record):
    name: ClassVar[str] = "ipi"
    icr: str
    delivered: tuple[int, ...]
    refused: tuple[tuple[int | None, str], ...]

    def describe(self, located: Locate) -> str:
        text = self.icr
        if self.delivered:
            text += " -> APIC " + ", ".join(str(a) for a in self.delivered)
        for apic_id, reason in self.refused:
            text += f"; refused APIC {apic_id}: {reason}" if apic_id is not None else f"; refused: {reason}"
        return text


@dataclass(frozen=True)
class IpiRefused(Record):
    """One refusal of an ICR write under OSV, as the tracer shows OSV's work:
    an isolation refusal (a violation) or an architectural one (Intel SDM
    Vol. 3A 10.5.3, the send errors of the ESR), each with its reason."""

    name: ClassVar[str] = "osv"
    kernel: str
    icr: str
    apic_id: int | None  # the destination refused, or None for the whole message
    reason: str

    def describe(self, located: Locate) -> str:
        return f"kernel {self.kernel}: ipi refused: {self.icr}: {self.reason}"


@dataclass(frozen=True)
class IpiReceived(Record):
    name: ClassVar[str] = "ipi-received"
    sender: int
    icr: str

    def describe(self, located: Locate) -> str:
        return f"{self.icr} from APIC {self.sender}"


@dataclass(frozen=True)
class InitReceived(Record):
    name: ClassVar[str] = "init"

    def describe(self, located: Locate) -> str:
        return "wait for SIPI"


@dataclass(frozen=True)
class StartupReceived(Record):
    name: ClassVar[str] = "sipi"
    vector: int

    def describe(self, located: Locate) -> str:
        return f"vector {self.vector:#04x}: start in real mode at {self.vector << 12:#x}"


@dataclass(frozen=True)
class Halted(Record):
    name: ClassVar[str] = "hlt"
    rip: int

    def describe(self, located: Locate) -> str:
        return f"at {located(self.rip)}"


@dataclass(frozen=True)
class TimerFired(Record):
    name: ClassVar[str] = "timer"
    count: int
    vector: int

    def describe(self, located: Locate) -> str:
        return f"LVT timer vector {self.vector:#04x} fired {self.count} time(s)"


@dataclass(frozen=True)
class ConsoleLine(Record):
    name: ClassVar[str] = "uart"
    line: str

    def describe(self, located: Locate) -> str:
        return repr(self.line)


@dataclass(frozen=True)
class KernelExit(Record):
    """A kernel ended: the exit port, OSV's SHUTDOWN or stop policy, a
    triple fault, or no core able to run again."""

    name: ClassVar[str] = "exit"
    status: int
    kernel: str | None = None
    how: str = ""  # the end's description, when not the exit port

    def describe(self, located: Locate) -> str:
        if self.kernel is None:
            return self.how or f"guest wrote {self.status} to port 0xf4"
        return f"kernel {self.kernel} ended with status {self.status}" + (f": {self.how}" if self.how else "")


@dataclass(frozen=True)
class KernelRestarted(Record):
    """A kernel that ended is booted again in its partition (its restart policy)."""

    name: ClassVar[str] = "restart"
    kernel: str
    life: int  # 2 for the first restart

    def describe(self, located: Locate) -> str:
        return f"kernel {self.kernel} booted again (life {self.life})"


@dataclass(frozen=True)
class CoreFaulted(Record):
    name: ClassVar[str] = "fault"
    report: str

    def describe(self, located: Locate) -> str:
        return self.report


@dataclass(frozen=True)
class OsvRefused(Record):
    """OSV refused something a kernel tried (an isolation violation)."""

    name: ClassVar[str] = "osv"
    kind: ViolationKind
    reason: str
    kernel: str

    def describe(self, located: Locate) -> str:
        return f"kernel {self.kernel}: {self.kind.value} refused: {self.reason}"


@dataclass(frozen=True)
class OsvHypercall(Record):
    """A kernel's VMMCALL, as OSV served it (docs/hypercalls.md): the call,
    its arguments, the result in RAX and, for a refused one, why."""

    name: ClassVar[str] = "osv"
    kernel: str
    number: int
    call: str  # the hypercall's name, or "unknown"
    args: tuple[int, ...]
    result: int
    error: str | None

    def describe(self, located: Locate) -> str:
        names = HYPERCALL_ARGUMENTS.get(self.call)
        if names is None:  # no such call: its number and the raw argument registers
            args = ", ".join(f"{arg:#x}" for arg in self.args)
            call = f"{self.number}({args})"
        else:
            args = ", ".join(f"{name}={_hypercall_argument(name, value)}" for name, value in zip(names, self.args))
            call = f"{self.call.upper()}({args})"
        result = str(self.result) if self.result >= 0 else f"-{_errno_name(-self.result)}"
        text = f"kernel {self.kernel}: hypercall {call} = {result}"
        return f"{text}: {self.error}" if self.error else text


#: The arguments each hypercall takes, in RDI, RSI, RDX order (docs/hypercalls.md, "The calls").
HYPERCALL_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "describe_self": ("buffer", "length"),
    "describe_channel": ("channel", "buffer", "length"),
    "notify": ("kernel", "vector"),
    "shutdown": ("status",),
}
_HEX_ARGUMENTS = frozenset({"buffer", "vector"})


def _hypercall_argument(name: str, value: int) -> str:
    return f"{value:#x}" if name in _HEX_ARGUMENTS else str(value)


def _errno_name(number: int) -> str:
    """EPERM for 1, ...: the error names of docs/hypercalls.md."""
    from osvemu.osv.hypercalls import Errno

    try:
        return Errno(number).name
    except ValueError:
        return str(number)


@dataclass(frozen=True)
class Event:
    core: int  # index of the core it happened on
    instruction: int  # instructions that core had retired when it happened
    record: Record

    @property
    def name(self) -> str:
        return self.record.name


Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)


__all__ = ["HYPERCALL_ARGUMENTS", "ConsoleLine", "CoreFaulted", "DoubleFault", "Event", "EventBus", "Halted",
           "InitReceived", "InterruptTaken", "IpiReceived", "IpiRefused", "IpiSent", "KernelExit", "KernelRestarted",
           "Listener", "Locate", "OsvHypercall", "OsvRefused", "Record", "StartupReceived", "TakenKind", "TimerFired",
           "ViolationKind"]
