"""Guest memory by linear address, and the code at an address in the
current code segment, for osvemu's own accesses.

Unicorn's ``mem_read`` works on guest-physical addresses, so linear
addresses go through osvemu's page walk (:mod:`osvemu.cpu.paging`) under the
core's current CR0, CR3, CR4 and EFER.  Two kinds of access:

* *inspections* (the debugger, the tracer, fault reports): memory outside
  the core's view raises :class:`~osvemu.errors.GuestFault` and nothing is
  recorded;
* *guest accesses* -- what the processor itself reads and writes while it
  acts for the guest: interrupt frames, the IDT, GDT and TSS, and the page
  tables it walks for them.  Memory outside the view is the platform's to
  answer, as for the guest's own instructions: refused reads see all ones
  (a paging entry of all ones has reserved bits set, so a walk through one
  is a #PF with RSVD, Intel SDM Vol. 3A 4.7) and refused writes vanish.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from unicorn import x86_const as r

from osvemu.cpu import x86
from osvemu.cpu.memory import MemoryView
from osvemu.cpu.paging import TranslationFault, translate
from osvemu.cpu.registers import RegisterAccess
from osvemu.cpu.surroundings import Access, ActionAbandoned, Unmapped
from osvemu.cpu.ucinternals import CoreInternals

#: The platform's answer to an access outside the view: (access, guest-physical address, size) -> verdict.
ForeignAccess = Callable[[Access, int, int], Unmapped]
#: QEMU's hidden-flag bits for the code segment's width (target/i386/cpu.h HF_CS32_SHIFT, HF_CS64_SHIFT).
HF_CS32 = 1 << 4
HF_CS64 = 1 << 15
#: ... and for CR0.PE and EFLAGS.VM (HF_PE_SHIFT, HF_VM_SHIFT).
HF_PE = 1 << 7
HF_VM = 1 << 17
#: What a refused read returns, byte by byte (a bus nothing answers on).
REFUSED_READ_BYTE = 0xFF

#: The longest x86 instruction (Intel SDM Vol. 2A 2.3.11).
MAX_INSTRUCTION_LENGTH = 15
_PAGE_OFFSET_MASK = x86.PAGE_SIZE - 1
#: 4-level walks remembered per core (the IDT, GDT, TSS and stack pages of
#: interrupt delivery, the debugger's and tracer's pages).
WALKS_REMEMBERED = 512
_PAGING_REGISTERS = (r.UC_X86_REG_CR0, r.UC_X86_REG_CR3, r.UC_X86_REG_CR4)

if TYPE_CHECKING:
    import capstone


@cache
def _decoder(width: int, operands: bool) -> capstone.Cs:
    """A capstone decoder for 16-, 32- or 64-bit code (capstone is imported
    on first use: a run that decodes nothing does not pay for it)."""
    import capstone

    decoder = capstone.Cs(capstone.CS_ARCH_X86,
                          {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}[width])
    decoder.detail = operands
    return decoder


class LinearMemory:
    def __init__(self, registers: RegisterAccess, view: MemoryView, internals: CoreInternals,
                 foreign: ForeignAccess) -> None:
        self._registers = registers
        self.view = view
        self._internals = internals
        self._foreign = foreign
        self._held: tuple[int, int, int, int] | None = None  # CR0, CR3, CR4, EFER while held
        #: 4-level walks done: (CR3, linear page, write, user, CR0.WP) -> (the
        #: entries read, their values, the physical page).
        self._walks: dict[tuple[int, int, bool, bool, int], tuple[tuple[int, ...], tuple[int, ...], int]] = {}

    def efer(self) -> int:
        if self._held is not None:
            return self._held[3]
        return self._internals.msr_read(x86.MSR_EFER)

    def hold_paging(self) -> None:
        """Read CR0, CR3, CR4 and EFER once for the walks of one act of the
        processor (an interrupt's delivery), during which they cannot change."""
        self._held = (*self._registers.read_many(_PAGING_REGISTERS), self._internals.msr_read(x86.MSR_EFER))

    def release_paging(self) -> None:
        self._held = None

    def translate(self, linear: int, write: bool = False, user: bool = False) -> int:
        """The guest-physical address of ``linear`` (TranslationFault as a #PF
        would; GuestFault when a paging structure lies outside the view)."""
        return self._walk(linear, self.view.read_u64, write, user)

    def _walk(self, linear: int, read_entry: Callable[[int], int], write: bool = False, user: bool = False) -> int:
        """The page walk under the core's current paging mode, reading entries with ``read_entry``.

        A 4-level walk is remembered with the entries it read: the same walk
        again, its entries still mapped and unchanged, has the same result
        (:func:`translate` is a function of them), so it is answered after
        reading them, without walking.  That is a reading of memory, not a
        TLB: a changed entry is seen at once."""
        cr0, cr3, cr4, efer = self._held or (*self._registers.read_many(_PAGING_REGISTERS), self.efer())
        if not efer & x86.EFER_LMA or not cr0 & x86.CR0_PG:
            return translate(linear, cr0, cr3, cr4, efer, read_entry, write=write, user=user)
        key = (cr3, linear >> 12, write, user, cr0 & x86.CR0_WP)
        remembered = self._walks.get(key)
        if remembered is not None:
            addresses, values, frame = remembered
            read = self.view.u64_if_mapped
            for address, value in zip(addresses, values):
                if read(address) != value:
                    break
            else:
                return frame | (linear & _PAGE_OFFSET_MASK)
        addresses_read: list[int] = []
        values_read: list[int] = []

        def recording(gpa: int) -> int:
            value = read_entry(gpa)
            addresses_read.append(gpa)
            values_read.append(value)
            return value

        physical = translate(linear, cr0, cr3, cr4, efer, recording, write=write, user=user)
        if len(self._walks) >= WALKS_REMEMBERED:
            self._walks.clear()
        self._walks[key] = (tuple(addresses_read), tuple(values_read), physical & ~_PAGE_OFFSET_MASK)
        return physical

    # ------------------------------------------------------------ guest accesses
    def guest_translate(self, linear: int, write: bool = False, user: bool = False) -> int:
        """:meth:`translate` as the processor's own walk: a paging structure
        outside the view is refused by the platform (recorded) and faults."""

        def read_entry(gpa: int) -> int:
            entry = self.view.u64_if_mapped(gpa)
            if entry is not None:
                return entry
            self._refuse(Access.WALK, gpa, 8, "a paging structure")
            error = x86.PF_PRESENT | x86.PF_RSVD | (x86.PF_WRITE if write else 0) | (x86.PF_USER if user else 0)
            raise TranslationFault(linear, error)

        return self._walk(linear, read_entry, write, user)

    def foreign_paging_structure(self, linear: int) -> int | None:
        """The guest-physical address of the first paging-structure entry
        outside the view that a walk for ``linear`` reads, or None."""
        outside: list[int] = []

        def read_entry(gpa: int) -> int:
            if self.view.contains(gpa, 8):
                return self.view.read_u64(gpa)
            outside.append(gpa)
            raise TranslationFault(linear, 0)

        try:
            self._walk(linear, read_entry)
        except TranslationFault:
            pass
        return outside[0] if outside else None

    def guest_read(self, address: int, size: int, write: bool = False) -> bytes:
        """Bytes the processor reads at a linear address while acting for the
        guest (``write``: the access is a read-modify-write, checked as a write)."""
        out = b""
        for linear, step in page_pieces(address, size):
            gpa = self.guest_translate(linear, write)
            if self.view.contains(gpa, step):
                out += self.view.read(gpa, step)
            else:
                self._refuse(Access.READ, gpa, step, "memory")
                out += bytes([REFUSED_READ_BYTE]) * step
        return out

    def guest_write(self, address: int, data: bytes) -> None:
        """Bytes the processor writes at a linear address while acting for
        the guest; a refused write vanishes."""
        offset = 0
        for linear, step in page_pieces(address, len(data)):
            gpa = self.guest_translate(linear, write=True)
            if self.view.contains(gpa, step):
                self.view.write(gpa, data[offset:offset + step])
            else:
                self._refuse(Access.WRITE, gpa, step, "memory")
            offset += step

    def _refuse(self, access: Access, gpa: int, size: int, what: str) -> None:
        verdict = self._foreign(access, gpa, size)
        if verdict is not Unmapped.SCRATCH:
            raise ActionAbandoned(verdict, f"{access.value} {what} at guest-physical {gpa:#x} ({size} bytes), "
                                           "which no RAM or device backs")

    # ------------------------------------------------------------ inspections
    def read(self, address: int, size: int, write: bool = False) -> bytes:
        return b"".join(self.view.read(self.translate(linear, write), step)
                        for linear, step in page_pieces(address, size))

    def write(self, address: int, data: bytes) -> None:
        offset = 0
        for linear, step in page_pieces(address, len(data)):
            self.view.write(self.translate(linear, write=True), data[offset:offset + step])
            offset += step

    def code_width(self) -> int:
        """16, 32 or 64: the operand width the current code segment decodes
        with (CS.L and CS.D, Intel SDM Vol. 3A 3.4.5), as Unicorn's decoder
        itself holds it in QEMU's hidden flags HF_CS64 and HF_CS32."""
        flags = self._internals.hflags()
        if flags & HF_CS64:
            return 64
        return 32 if flags & HF_CS32 else 16

    def cpl(self) -> int:
        """The current privilege level (QEMU's hidden flags, bits 1:0)."""
        return self._internals.hflags() & 3

    def supervisor_protected(self) -> bool:
        """CPL 0 in protected or long mode (not real or virtual-8086 mode),
        from one read of QEMU's hidden flags (HF_PE, HF_VM)."""
        flags = self._internals.hflags()
        return flags & HF_PE != 0 and flags & HF_VM == 0 and flags & 3 == 0

    def code_linear(self, offset: int) -> int:
        """The linear address of ``offset`` in the current code segment."""
        if self.code_width() == 64:
            return offset
        _, base, _, _ = self._internals.segment("cs")
        return (base + offset) & 0xFFFFFFFF

    def read_code(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` in the current code segment."""
        return self.read(self.code_linear(offset), size)

    def decode(self, offset: int, count: int = 1, operands: bool = False) -> list[capstone.CsInsn]:
        """Up to ``count`` instructions at ``offset`` in the current code
        segment, decoded in its operand width, with capstone's operand details
        when ``operands`` (TranslationFault or GuestFault when the code cannot
        be read)."""
        width = self.code_width()
        code = self.read_code(offset, MAX_INSTRUCTION_LENGTH * count)
        return list(_decoder(width, operands).disasm(code, offset, count))

    def count_instructions(self, start: int, end: int) -> int:
        """How many instructions of the current code width start in the
        linear range [start, end) when decoding begins at ``start``."""
        if end <= start:
            return 0
        return sum(1 for _ in _decoder(self.code_width(), False).disasm_lite(self.read(start, end - start), start))

    def disassemble(self, offset: int, count: int = 1) -> str:
        """``count`` instructions at ``offset`` in the current code segment, as text."""
        lines = [f"{i.mnemonic} {i.op_str}".strip() for i in self.decode(offset, count)]
        return "; ".join(lines) if lines else "<invalid>"


def canonical(address: int) -> bool:
    """Bits 63:47 all equal: a canonical 48-bit linear address (Intel SDM
    Vol. 3A 3.3.7.1)."""
    top = address >> 47
    return top == 0 or top == (1 << 17) - 1


def page_pieces(address: int, size: int) -> list[tuple[int, int]]:
    """[address, address+size) cut at page boundaries: (linear, length) pieces."""
    pieces = []
    while size > 0:
        step = min(size, x86.PAGE_SIZE - (address & (x86.PAGE_SIZE - 1)))
        pieces.append((address, step))
        address, size = address + step, size - step
    return pieces


__all__ = ["MAX_INSTRUCTION_LENGTH", "REFUSED_READ_BYTE", "ForeignAccess", "LinearMemory", "canonical", "page_pieces"]
