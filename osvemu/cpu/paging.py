"""Linear-to-physical translation by walking the guest's page tables.

Used when osvemu itself must touch guest memory by linear address (pushing an
interrupt frame, reading the IDT/GDT/TSS, the debugger).  Unicorn's own
``mem_read`` works on physical addresses.  Covers 32-bit paging with PSE,
PAE paging and 4-level IA-32e paging (Intel SDM Vol. 3A 4.3, 4.4, 4.5).
"""

from __future__ import annotations

from collections.abc import Callable

from osvemu.cpu import x86

ReadU64 = Callable[[int], int]


class TranslationFault(Exception):
    """The walk met a not-present or read-only entry: a #PF with this error code."""

    def __init__(self, linear: int, error_code: int) -> None:
        super().__init__(f"page fault at {linear:#x} (error code {error_code:#x})")
        self.linear = linear
        self.error_code = error_code


_ADDR_MASK = 0x000FFFFFFFFFF000


def translate(linear: int, cr0: int, cr3: int, cr4: int, efer: int, read_u64: ReadU64,
              write: bool = False, user: bool = False) -> int:
    """Return the physical address of ``linear`` under the given paging mode."""
    if not cr0 & x86.CR0_PG:
        return linear & 0xFFFFFFFF if not efer & x86.EFER_LMA else linear
    fault_bits = (x86.PF_WRITE if write else 0) | (x86.PF_USER if user else 0)

    def check(entry: int, rights: bool = True) -> None:
        """A not-present entry faults; so does one whose R/W or U/S bit
        forbids the access (SDM Vol. 3A 4.6.1: user writes always need R/W,
        supervisor writes only with CR0.WP; user accesses need U/S).  PAE's
        PDPTEs carry no rights (SDM Vol. 3A 4.4.1, Table 4-8)."""
        if not entry & x86.PTE_PRESENT:
            raise TranslationFault(linear, fault_bits)
        if not rights:
            return
        if write and not entry & x86.PTE_WRITE and (user or cr0 & x86.CR0_WP):
            raise TranslationFault(linear, fault_bits | x86.PF_PRESENT)
        if user and not entry & x86.PTE_USER:
            raise TranslationFault(linear, fault_bits | x86.PF_PRESENT)

    if efer & x86.EFER_LMA:
        # The bits every entry of the walk needs for this access: a quick test
        # first, check() to find the fault's error code only when it fails.
        required = x86.PTE_PRESENT | (x86.PTE_WRITE if write and (user or cr0 & x86.CR0_WP) else 0) \
            | (x86.PTE_USER if user else 0)
        table = cr3 & _ADDR_MASK
        for shift in (39, 30, 21, 12):
            entry = read_u64(table + ((linear >> shift) & 0x1FF) * 8)
            if entry & required != required:
                check(entry)
            if shift in (30, 21) and entry & x86.PTE_LARGE:
                page_mask = (1 << shift) - 1
                return (entry & _ADDR_MASK & ~page_mask) | (linear & page_mask)
            table = entry & _ADDR_MASK
        return table | (linear & 0xFFF)
    linear &= 0xFFFFFFFF
    if cr4 & x86.CR4_PAE:
        pdpte = read_u64((cr3 & 0xFFFFFFE0) + ((linear >> 30) & 3) * 8)
        check(pdpte, rights=False)
        pde = read_u64((pdpte & _ADDR_MASK) + ((linear >> 21) & 0x1FF) * 8)
        check(pde)
        if pde & x86.PTE_LARGE:
            return (pde & _ADDR_MASK & ~0x1FFFFF) | (linear & 0x1FFFFF)
        pte = read_u64((pde & _ADDR_MASK) + ((linear >> 12) & 0x1FF) * 8)
        check(pte)
        return (pte & _ADDR_MASK) | (linear & 0xFFF)
    pde = read_u64((cr3 & 0xFFFFF000) + ((linear >> 22) & 0x3FF) * 4) & 0xFFFFFFFF
    check(pde)
    if pde & x86.PTE_LARGE and cr4 & x86.CR4_PSE:
        return (pde & 0xFFC00000) | (linear & 0x3FFFFF)
    pte = read_u64((pde & 0xFFFFF000) + ((linear >> 12) & 0x3FF) * 4) & 0xFFFFFFFF
    check(pte)
    return (pte & 0xFFFFF000) | (linear & 0xFFF)
