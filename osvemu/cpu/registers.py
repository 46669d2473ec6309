"""A core's registers through Unicorn's C API, without the binding's detour.

The Python binding's ``reg_read`` picks a ctypes class for the register by
scanning ranges (``UcIntel._select_reg_class``) and builds fresh ctypes
objects at every call: about 4 us, where the C call ``uc_reg_read`` itself
takes a third of a microsecond.  Interrupt delivery, slice starts and the
exits read registers thousands of times a second, so osvemu calls the C
functions of ``include/unicorn/unicorn.h`` directly for the registers that
are plain integers, with buffers made once, and leaves every other register
(x87, SSE, MSRs) to the binding.

Unicorn writes only a register's own width into the buffer
(``reg_read`` in ``qemu/target/i386/unicorn.c``: two bytes for a segment
selector, four for EFLAGS), so each buffer is cleared before a read.
"""

from __future__ import annotations

import ctypes
import re
import struct
from collections.abc import Sequence

from unicorn import Uc, UcError
from unicorn import x86_const as r
from unicorn.unicorn_py3 import unicorn as _binding

_U64_MASK = (1 << 64) - 1

#: The registers Unicorn reads as plain integers (``reg_read`` in
#: ``qemu/target/i386/unicorn.c``): the general registers at every width, the
#: instruction pointer and flags, segment selectors and bases, control and
#: debug registers.
_INTEGER_NAME = re.compile(r"UC_X86_REG_(([ABCD][HLX]|[SD]IL?|[BS]PL?|E?[ABCD]X|E?[SD]I|E?[BS]P|R[ABCD]X|R[SD]I|"
                           r"R[BS]P|R(8|9|1[0-5])[BDW]?|[E|R]?IP|E?FLAGS|RFLAGS|[CDEFGS]S|CR[0-48]|DR[0-7]|[FG]S_BASE))")
INTEGER_REGISTERS = frozenset(value for name, value in vars(r).items() if _INTEGER_NAME.fullmatch(name))
_STRUCTURED = frozenset({r.UC_X86_REG_IDTR, r.UC_X86_REG_GDTR, r.UC_X86_REG_LDTR, r.UC_X86_REG_TR})
TABLE_REGISTERS = _STRUCTURED


class _TableRegister(ctypes.Structure):
    """``uc_x86_mmr`` (include/unicorn/x86.h): a descriptor-table or task register."""

    _fields_ = [("selector", ctypes.c_uint16), ("base", ctypes.c_uint64), ("limit", ctypes.c_uint32),
                ("flags", ctypes.c_uint32)]


class _ModelSpecificRegister(ctypes.Structure):
    """``uc_x86_msr`` (include/unicorn/x86.h): an MSR's number and value."""

    _fields_ = [("rid", ctypes.c_uint32), ("value", ctypes.c_uint64)]


def _c_function(library: ctypes.CDLL, name: str):
    """One C function, from a second handle on the binding's library so the
    binding's own prototypes stay as they are.  Its arguments are passed as
    ctypes objects, unconverted (a prototype's conversions cost more than
    the call)."""
    function = getattr(library, name)
    function.restype = ctypes.c_int
    return function


_LIBRARY = ctypes.CDLL(_binding.uclib._name)
_reg_read = _c_function(_LIBRARY, "uc_reg_read")
_reg_write = _c_function(_LIBRARY, "uc_reg_write")
_reg_read_batch = _c_function(_LIBRARY, "uc_reg_read_batch")


class _Batch:
    """Buffers for reading one fixed list of integer registers at once."""

    def __init__(self, registers: Sequence[int]) -> None:
        count = len(registers)
        self.count = ctypes.c_int(count)
        self.ids = (ctypes.c_int * count)(*registers)
        self.values = (ctypes.c_uint64 * count)()
        self.pointers = (ctypes.c_void_p * count)(*(ctypes.addressof(self.values) + 8 * i for i in range(count)))
        self.bytes = memoryview(self.values).cast("B")
        self.zeros = bytes(8 * count)
        self.layout = struct.Struct(f"<{count}Q")


class RegisterAccess:
    """Reads and writes one Unicorn instance's registers."""

    def __init__(self, uc: Uc) -> None:
        self._uc = uc
        self._handle = uc._uch
        self._value = ctypes.c_uint64()
        self._value_reference = ctypes.byref(self._value)
        self._table = _TableRegister()
        self._table_reference = ctypes.byref(self._table)
        self._table_address = ctypes.addressof(self._table)
        self._msr = _ModelSpecificRegister()
        self._msr_reference = ctypes.byref(self._msr)
        self._batches: dict[tuple[int, ...], _Batch] = {}

    def read(self, register: int):
        """A register's value: an int, a (selector, base, limit, flags)
        tuple for IDTR, GDTR, LDTR and TR, or the binding's value for the rest."""
        if register in INTEGER_REGISTERS:
            value = self._value
            value.value = 0
            status = _reg_read(self._handle, register, self._value_reference)
            if status:
                raise UcError(status, register)
            return value.value
        if register in TABLE_REGISTERS:
            table = self._table
            ctypes.memset(self._table_address, 0, ctypes.sizeof(table))
            status = _reg_read(self._handle, register, self._table_reference)
            if status:
                raise UcError(status, register)
            return table.selector, table.base, table.limit, table.flags
        return self._uc.reg_read(register)

    def read_many(self, registers: tuple[int, ...]) -> tuple:
        """Several registers in one C call when all are integers."""
        batch = self._batches.get(registers)
        if batch is None:
            if not INTEGER_REGISTERS.issuperset(registers):
                return tuple(self.read(register) for register in registers)
            batch = self._batches[registers] = _Batch(registers)
        batch.bytes[:] = batch.zeros
        status = _reg_read_batch(self._handle, batch.ids, batch.pointers, batch.count)
        if status:
            raise UcError(status)
        return batch.layout.unpack(batch.bytes)

    def write(self, register: int, value) -> None:
        """Write a register (an integer one directly, any other through the binding)."""
        if register in INTEGER_REGISTERS:
            self._value.value = value & _U64_MASK
            status = _reg_write(self._handle, register, self._value_reference)
            if status:
                raise UcError(status, register)
            return
        self._uc.reg_write(register, value)


    def read_msr(self, number: int) -> int:
        """An MSR as QEMU's own RDMSR helper answers it (``reg_read`` of
        UC_X86_REG_MSR; the caller keeps intercepts out of the way)."""
        msr = self._msr
        msr.rid, msr.value = number, 0
        status = _reg_read(self._handle, r.UC_X86_REG_MSR, self._msr_reference)
        if status:
            raise UcError(status, r.UC_X86_REG_MSR)
        return msr.value

    def write_msr(self, number: int, value: int) -> None:
        """Write an MSR through QEMU's own WRMSR helper (as :meth:`read_msr`)."""
        msr = self._msr
        msr.rid, msr.value = number, value & _U64_MASK
        status = _reg_write(self._handle, r.UC_X86_REG_MSR, self._msr_reference)
        if status:
            raise UcError(status, r.UC_X86_REG_MSR)


__all__ = ["INTEGER_REGISTERS", "TABLE_REGISTERS", "RegisterAccess"]
