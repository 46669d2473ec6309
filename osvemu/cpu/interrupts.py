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
from osvemu.cpu.surroundings import ActionAbandoned, Unmapped
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


#: Contributory exceptions (Intel SDM Vol. 3A 6.15, Table 6-4; AMD APM Vol. 2 8.2.9).
CONTRIBUTORY = frozenset({x86.VECTOR_DE, x86.VECTOR_TS, x86.VECTOR_NP, x86.VECTOR_SS, x86.VECTOR_GP})
#: More attempts than Table 6-5 can chain (benign -> #PF -> #PF -> #DF -> shutdown).
_MAX_DELIVERIES = 8


def escalates_to_double_fault(first: int, first_source: Source, second: int) -> bool:
    """Whether exception ``second``, raised while delivering ``first``, is a
    double fault (SDM Vol. 3A Table 6-5); otherwise ``second`` is delivered
    in turn.  Interrupts, NMIs and software interrupts are benign."""
    if first_source is not Source.EXCEPTION:
        return False
    if first in CONTRIBUTORY:
        return second in CONTRIBUTORY
    if first == x86.VECTOR_PF:
        return second in CONTRIBUTORY or second == x86.VECTOR_PF
    return False


def take(core: Core, vector: int, source: Source, error_code: int | None, kind: TakenKind | None = None) -> None:
    """Deliver ``vector`` as the processor would (SDM Vol. 3A 6.15): a fault
    during delivery is delivered in turn or, per Table 6-5, becomes #DF; a
    fault delivering #DF is the shutdown state (a triple fault), which stops
    the core.  An access the platform refuses without a substitute abandons
    the delivery (the core stops with a fault, or its kernel has ended).

    The common case is delivered in C (:mod:`osvemu.cpu.fastdelivery`),
    which declines, changing nothing, whatever it does not cover."""
    done = core.fast_delivery.deliver(vector, error_code, source is Source.SOFTWARE)
    if done is not None:
        interrupted_at, handler, rsp = done
        _taken(core, kind or _TAKEN_KIND[source], vector, error_code, interrupted_at, handler, rsp)
        return
    interrupted_at = core.read_register(r.UC_X86_REG_RIP)
    chain: list[str] = []
    current = (vector, source, error_code)
    for _ in range(_MAX_DELIVERIES):
        core.linear.hold_paging()
        try:
            deliver(core, *current)
            break
        except DeliveryFault as fault:
            chain.append(f"vector {current[0]:#x}: {fault}")
            if current[0] == x86.VECTOR_DF:
                core.stop_with_fault("triple fault", "; ".join(chain), chain)
                return
            if fault.cr2 is not None:
                core.write_register(r.UC_X86_REG_CR2, fault.cr2)
            if escalates_to_double_fault(current[0], current[1], fault.vector):
                current = (x86.VECTOR_DF, Source.EXCEPTION, 0)
            else:
                current = (fault.vector, Source.EXCEPTION, fault.error_code)
        except ActionAbandoned as abandoned:
            if abandoned.verdict is Unmapped.FAULT:
                core.stop_with_fault("unmapped memory", abandoned.description, chain)
            else:
                core.request_stop()  # the platform ended the core's kernel
            return
        finally:
            core.linear.release_paging()
    else:
        core.stop_with_fault("triple fault", "; ".join(chain), chain)
        return
    delivered, _, delivered_error = current
    if delivered == x86.VECTOR_DF and chain:
        core.wake()
        core.emit(DoubleFault("; ".join(chain)))
        return
    if chain or kind is None:
        kind = TakenKind.EXCEPTION if chain else _TAKEN_KIND[source]
    handler, rsp = core.read_registers((r.UC_X86_REG_RIP, r.UC_X86_REG_RSP))
    _taken(core, kind, delivered, delivered_error, interrupted_at, handler, rsp)


def _taken(core: Core, kind: TakenKind, vector: int, error_code: int | None, interrupted_at: int, handler: int,
           rsp: int) -> None:
    """A delivery is done: the core runs its handler, and counts and reports it."""
    core.wake()
    if kind is TakenKind.EXCEPTION:
        core.exceptions_taken += 1
    else:
        core.interrupts_taken += 1
    core.emit(InterruptTaken(kind, vector, error_code, interrupted_at, handler, rsp))


__all__ = ["CONTRIBUTORY", "escalates_to_double_fault", "interrupt_ready", "interrupts_enabled", "service", "take"]
