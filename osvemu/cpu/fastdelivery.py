"""Interrupt delivery's common case in C (``delivery.c``).

A 64-bit kernel takes almost every interrupt the same way: IA-32e mode, a
present 64-bit interrupt or trap gate, a code segment at the current
privilege level, and every byte delivery touches in RAM of the core's view.
:meth:`FastDelivery.deliver` does exactly that delivery in one C call, with
the checks and frame of :mod:`osvemu.cpu.delivery` (Intel SDM Vol. 3A
6.12.1.1, 6.14); for anything else -- a fault of delivery itself, an access
outside the view, a privilege change, real or protected mode -- it changes
nothing and says so, and the caller delivers in Python as before.  So the
guest sees the same delivery either way; ``tests/test_fast_delivery.py``
checks them against each other on real guests and on every hostile gate,
descriptor and stack a test can build.
"""

from __future__ import annotations

import ctypes

from unicorn import x86_const as r

from osvemu.cpu import native, x86
from osvemu.cpu.memory import MemoryView
from osvemu.cpu.ucinternals import HF_GUEST, CoreInternals
from osvemu.errors import EmulatorError

#: Mappings a view may have for the fast path (``MAX_SPANS`` in delivery.c).
MAX_SPANS = 64
#: The context delivery reads, in ``enum context_register``'s order.
_CONTEXT_REGISTERS = (r.UC_X86_REG_CR0, r.UC_X86_REG_CR3, r.UC_X86_REG_CR4, r.UC_X86_REG_CS, r.UC_X86_REG_RFLAGS,
                      r.UC_X86_REG_RIP, r.UC_X86_REG_RSP, r.UC_X86_REG_SS)


class _Span(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("host", ctypes.c_void_p)]


class _Delivery(ctypes.Structure):
    """``struct osvemu_delivery`` (delivery.c)."""

    _fields_ = [("uc", ctypes.c_void_p), ("uc_reg_read", ctypes.c_void_p), ("uc_reg_write", ctypes.c_void_p),
                ("uc_reg_read_batch", ctypes.c_void_p), ("hflags", ctypes.c_void_p), ("hf_guest", ctypes.c_uint64),
                ("context_ids", ctypes.c_int64 * len(_CONTEXT_REGISTERS)), ("idtr_id", ctypes.c_int64),
                ("gdtr_id", ctypes.c_int64), ("tr_id", ctypes.c_int64), ("msr_id", ctypes.c_int64),
                ("msr_efer", ctypes.c_int64), ("span_count", ctypes.c_uint64), ("spans", _Span * MAX_SPANS),
                ("interrupted_at", ctypes.c_uint64), ("handler", ctypes.c_uint64), ("stack", ctypes.c_uint64)]


native.check_layout(_Delivery, "osvemu_delivery_layout", [name for name, _ in _Delivery._fields_])
_deliver = native.LIBRARY.osvemu_deliver
_deliver.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int, ctypes.c_int]
_deliver.restype = ctypes.c_int


class FastDelivery:
    """One core's native delivery."""

    def __init__(self, uc_handle: int, internals: CoreInternals, view: MemoryView) -> None:
        self._state = state = _Delivery()
        state.uc = uc_handle
        state.uc_reg_read = native.unicorn_function("uc_reg_read")
        state.uc_reg_write = native.unicorn_function("uc_reg_write")
        state.uc_reg_read_batch = native.unicorn_function("uc_reg_read_batch")
        state.hflags, state.hf_guest = internals.hflags_address, HF_GUEST
        state.context_ids[:] = _CONTEXT_REGISTERS
        state.idtr_id, state.gdtr_id, state.tr_id = r.UC_X86_REG_IDTR, r.UC_X86_REG_GDTR, r.UC_X86_REG_TR
        state.msr_id, state.msr_efer = r.UC_X86_REG_MSR, x86.MSR_EFER
        if len(view.mappings) <= MAX_SPANS:  # else every delivery is Python's
            for span, mapping in zip(state.spans, view.mappings):
                span.start, span.end, span.host = mapping.gpa, mapping.end, mapping.host_address
            state.span_count = len(view.mappings)
        self._reference = ctypes.byref(state)

    def deliver(self, vector: int, error_code: int | None, software: bool) -> tuple[int, int, int] | None:
        """Deliver ``vector`` if this is the common case: (the interrupted
        RIP, the handler, the new RSP); None, with nothing changed, if not."""
        done = _deliver(self._reference, vector, error_code or 0, error_code is not None, software)
        if done == 1:
            state = self._state
            return state.interrupted_at, state.handler, state.stack
        if done < 0:
            raise EmulatorError("Unicorn refused a register write of interrupt delivery")
        return None


__all__ = ["FastDelivery"]
