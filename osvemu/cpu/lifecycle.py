"""A core's run state and its transitions: INIT, STARTUP, HLT and wake-up
(Intel SDM Vol. 3A 9.4 and 10.4.7; MP spec 1.4 B.4)."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from unicorn import x86_const as r

from osvemu.cpu import x86
from osvemu.cpu.paging import TranslationFault
from osvemu.cpu.templates import startup_context
from osvemu.errors import GuestFault
from osvemu.events import Halted, InitReceived, StartupReceived

if TYPE_CHECKING:
    from osvemu.cpu.core import Core

OPCODE_HLT = b"\xf4"


class CoreState(Enum):
    RUNNING = "running"
    HALTED = "halted"
    WAIT_FOR_SIPI = "wait-for-sipi"
    STOPPED = "stopped"


def init(core: Core) -> None:
    """INIT: the local APIC resets and the core waits for a STARTUP IPI
    (SDM Vol. 3A 10.4.7.3).  It does not resume where it was: a SIPI loads
    a new context, so a running slice ends here."""
    core.interrupts.reset()
    core.nmi_pending = False
    core.state = CoreState.WAIT_FOR_SIPI
    core.request_stop()
    core.emit(InitReceived())


def startup(core: Core, vector: int) -> bool:
    """STARTUP IPI: only a core waiting for it starts, in real mode at
    ``vector << 12`` (SDM Vol. 3A 10.4.4.1); any other core ignores it."""
    if core.state is not CoreState.WAIT_FOR_SIPI:
        return False
    core.restore_context(startup_context(vector))
    core.flush_translations()  # the trampoline was written by another core
    core.state = CoreState.RUNNING
    core.emit(StartupReceived(vector))
    return True


def reset(core: Core) -> None:
    """Power-on state (a kernel booted again): waiting for a STARTUP IPI,
    its local APIC reset, no fault, registers as at a fresh start."""
    core.interrupts.reset()
    core.nmi_pending = False
    core.fault = None
    core.apic_base_msr = core.apic_base | x86.APIC_BASE_ENABLE
    if core.built:  # a core never started is still in its power-on state
        core.restore_context(startup_context(0))
        core.flush_translations()
    core.state = CoreState.WAIT_FOR_SIPI


#: ``jmp $`` (EB FE) and ``jmp $`` in its rel32 form (E9 FB FF FF FF): a loop on itself (Intel SDM Vol. 2A JMP).
SELF_JUMPS = (b"\xeb\xfe", b"\xe9\xfb\xff\xff\xff")
OPCODE_PAUSE = b"\xf3\x90"
#: ``pause; jmp`` back to the pause.
PAUSE_LOOP = OPCODE_PAUSE + b"\xeb\xfc"
SPINNING = "spinning with interrupts off"


def stuck_state(core: Core) -> str | None:
    """Why the core can never execute another instruction of its own
    accord, or None: stopped, waiting for a STARTUP IPI, or halted or
    looping on one jump with interrupts off and no NMI pending -- only an
    INIT, SIPI or NMI from another core could move it."""
    if core.state is CoreState.STOPPED:
        return "stopped"
    if core.state is CoreState.WAIT_FOR_SIPI:
        return "waiting for a STARTUP IPI"
    if core.nmi_pending or core.read_register(r.UC_X86_REG_RFLAGS) & x86.RFLAGS_IF:
        return None
    if core.state is CoreState.HALTED:
        return "halted with interrupts off"
    rip = core.read_register(r.UC_X86_REG_RIP)
    try:
        code = core.linear.read_code(rip - len(OPCODE_PAUSE), len(PAUSE_LOOP) + 3)
    except (TranslationFault, GuestFault):
        return None
    here = code[len(OPCODE_PAUSE):]
    if any(here.startswith(jump) for jump in SELF_JUMPS) or here.startswith(PAUSE_LOOP) or \
            code.startswith(PAUSE_LOOP):
        return SPINNING
    return None


def wake(core: Core) -> None:
    """An interrupt taken by a halted core resumes it (SDM Vol. 3A 6.9)."""
    if core.state is CoreState.HALTED:
        core.state = CoreState.RUNNING


def note_halt(core: Core) -> None:
    """After a slice: a running core whose slice ended at HLT is halted.
    Unicorn sets its halted flag also when a slice reaches its ``until``
    address, where it imitates a HLT (``disas_insn`` in
    ``qemu/target/i386/translate.c``): there the flag is cross-checked
    against the HLT byte before RIP."""
    if core.state is not CoreState.RUNNING or not core.internals.halted():
        return
    rip = core.read_register(r.UC_X86_REG_RIP)
    at_hlt = True
    if rip == core.slices.until:
        try:
            at_hlt = core.linear.read_code(rip - len(OPCODE_HLT), len(OPCODE_HLT)) == OPCODE_HLT
        except (TranslationFault, GuestFault):
            at_hlt = False
    if at_hlt:
        core.state = CoreState.HALTED
        core.emit(Halted(rip))


__all__ = ["SPINNING", "CoreState", "init", "note_halt", "reset", "startup", "stuck_state", "wake"]
