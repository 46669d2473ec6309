"""Guest memory by linear address, and the code at an address in the
current code segment, for osvemu's own accesses (interrupt frames,
descriptor tables, the debugger, fault reports).

Unicorn's ``mem_read`` works on guest-physical addresses, so linear
addresses go through osvemu's page walk (:mod:`osvemu.cpu.paging`) under the
core's current CR0, CR3, CR4 and EFER.
"""

from __future__ import annotations

import capstone
from unicorn import Uc
from unicorn import x86_const as r

from osvemu.cpu import x86
from osvemu.cpu.memory import MemoryView
from osvemu.cpu.paging import translate
from osvemu.cpu.ucinternals import CoreInternals

#: The longest x86 instruction (Intel SDM Vol. 2A 2.3.11).
MAX_INSTRUCTION_LENGTH = 15
_CAPSTONE_MODES = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}


class LinearMemory:
    def __init__(self, uc: Uc, view: MemoryView, internals: CoreInternals) -> None:
        self._uc = uc
        self.view = view
        self._internals = internals

    def efer(self) -> int:
        return self._uc.reg_read(r.UC_X86_REG_MSR, x86.MSR_EFER)

    def translate(self, linear: int, write: bool = False) -> int:
        """The guest-physical address of ``linear`` (TranslationFault as a #PF would)."""
        cr0, cr3, cr4 = self._uc.reg_read_batch((r.UC_X86_REG_CR0, r.UC_X86_REG_CR3, r.UC_X86_REG_CR4))
        return translate(linear, cr0, cr3, cr4, self.efer(), self.view.read_u64, write=write)

    def read(self, address: int, size: int, write: bool = False) -> bytes:
        out = b""
        while size > 0:
            step = min(size, x86.PAGE_SIZE - (address & (x86.PAGE_SIZE - 1)))
            out += self.view.read(self.translate(address, write), step)
            address, size = address + step, size - step
        return out

    def write(self, address: int, data: bytes) -> None:
        while data:
            step = min(len(data), x86.PAGE_SIZE - (address & (x86.PAGE_SIZE - 1)))
            self.view.write(self.translate(address, write=True), data[:step])
            address, data = address + step, data[step:]

    def code_width(self) -> int:
        """16, 32 or 64: the operand width the current code segment decodes
        with, from its hidden descriptor (L and D/B bits, Intel SDM Vol. 3A 3.4.5)."""
        _, _, _, flags = self._internals.segment("cs")
        if self.efer() & x86.EFER_LMA and flags & x86.DESC_L:
            return 64
        return 32 if flags & x86.DESC_DB else 16

    def code_linear(self, offset: int) -> int:
        """The linear address of ``offset`` in the current code segment."""
        if self.code_width() == 64:
            return offset
        _, base, _, _ = self._internals.segment("cs")
        return (base + offset) & 0xFFFFFFFF

    def read_code(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` in the current code segment."""
        return self.read(self.code_linear(offset), size)

    def decode(self, offset: int, count: int = 1) -> list[capstone.CsInsn]:
        """Up to ``count`` instructions at ``offset`` in the current code
        segment, decoded in its operand width (TranslationFault or GuestFault
        when the code cannot be read)."""
        width = self.code_width()
        code = self.read_code(offset, MAX_INSTRUCTION_LENGTH * count)
        return list(capstone.Cs(capstone.CS_ARCH_X86, _CAPSTONE_MODES[width]).disasm(code, offset, count))

    def disassemble(self, offset: int, count: int = 1) -> str:
        """``count`` instructions at ``offset`` in the current code segment, as text."""
        lines = [f"{i.mnemonic} {i.op_str}".strip() for i in self.decode(offset, count)]
        return "; ".join(lines) if lines else "<invalid>"


__all__ = ["MAX_INSTRUCTION_LENGTH", "LinearMemory"]
