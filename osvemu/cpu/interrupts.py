"""Taking interrupts and exceptions: when a core can, and what happens when
delivery itself faults.

:func:`interrupt_ready` is the one rule for "can this core take an interrupt
now?", used by the core after a device write, by the scheduler to wake a
halted core and to skip idle time, and by :func:`service` before a slice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import x86_const as r

from osvemu.cpu import x86
from osvemu.cpu.delivery import DeliveryFault, Source, deliver
from osvemu.events import DoubleFault, InterruptTaken, TakenKind

if TYPE_CHECKING:
    from osvemu.cpu.core import Core

_TAKEN_KIND = {Source.EXCEPTION: TakenKind.EXCEPTION, Source.SOFTWARE: TakenKind.SOFTWARE}


def interrupts_enabled(core: Core) -> bool:
    """RFLAGS.IF: maskable interrupts are recognised (Intel SDM Vol. 3A 6.8.1)."""
    return bool(core.read_register(r.UC_X86_REG_RFLAGS) & x86.RFLAGS_IF)


def interrupt_ready(core: Core, vector: int | None = None) -> bool:
    """Whether the core would take an interrupt at the next instruction
    boundary: an NMI is pending (never masked by IF, SDM Vol. 3A 6.7.1), or
    its local APIC has a vector above the processor priority and IF is set
    (SDM Vol. 3A 10.8.3.1, 6.8.1).  With ``vector``, whether that vector
    would be taken if it arrived now (the timer's, for a halted core)."""
    if core.nmi_pending:
        return True
    if vector is None:
        if core.interrupts.pending_vector() is None:
            return False
    elif not core.interrupts.would_accept(vector):
        return False
    return interrupts_enabled(core)


def service(core: Core) -> None:
    """Take a pending NMI or LAPIC interrupt if the core can (between
    instructions; SDM Vol. 3A 6.9 priorities: NMI before maskable)."""
    if not core.can_execute or not interrupt_ready(core):
        return
    if core.nmi_pending:
        core.nmi_pending = False
        take(core, x86.VECTOR_NMI, Source.EXTERNAL, None, TakenKind.NMI)
        return
    vector = core.interrupts.pending_vector()
    core.interrupts.acknowledge(vector)
    take(core, vector, Source.EXTERNAL, None, TakenKind.INTERRUPT)


def take(core: Core, vector: int, source: Source, error_code: int | None, kind: TakenKind | None = None) -> None:
    """Deliver ``vector``; a fault during delivery becomes #DF, a fault
    delivering #DF a triple fault, which stops the core (SDM Vol. 3A 6.15,
    Table 6-5)."""
    kind = kind or _TAKEN_KIND[source]
    interrupted_at = core.read_register(r.UC_X86_REG_RIP)
    try:
        deliver(core, vector, source, error_code)
    except DeliveryFault as first:
        chain = [f"vector {vector:#x}: {first}"]
        try:
            deliver(core, x86.VECTOR_DF, Source.EXCEPTION, 0)
        except DeliveryFault as second:
            chain.append(f"#DF: {second}")
            core.stop_with_fault("triple fault", "; ".join(chain), chain)
            return
        core.wake()
        core.emit(DoubleFault(str(first)))
        return
    if kind is TakenKind.EXCEPTION:
        core.exceptions_taken += 1
    else:
        core.interrupts_taken += 1
    core.wake()
    handler, rsp = core.read_registers((r.UC_X86_REG_RIP, r.UC_X86_REG_RSP))
    core.emit(InterruptTaken(kind, vector, error_code, interrupted_at, handler, rsp))


__all__ = ["interrupt_ready", "interrupts_enabled", "service", "take"]
