"""Machine events: what the trace tool, the debugger and reports observe.

Cores, the APIC bus, the timers, the UART and the exit port report what
happens through one :class:`EventBus`.  With no subscriber, emitting costs a
single truth test, so a plain ``osvemu boot`` pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    core: int  # index of the core it happened on
    instruction: int  # instructions that core had retired when it happened
    kind: str  # "interrupt", "exception", "int" (software), "nmi", "ipi", "ipi-received", "init", "sipi", "hlt",
    #            "timer", "uart", "exit", "fault", "mode", "write"
    fields: dict = field(default_factory=dict)


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


__all__ = ["Event", "EventBus", "Listener"]
