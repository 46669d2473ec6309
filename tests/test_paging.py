"""Exact tests of ``osvemu.cpu.paging.translate`` over hand-built page tables.

References (Intel SDM Vol. 3A): 4.3 32-bit paging (4 KiB pages, 4 MiB pages when CR4.PSE = 1),
4.4 PAE paging (PDPTEs, 2 MiB and 4 KiB pages), 4.5 4-level IA-32e paging (4 KiB, 2 MiB, 1 GiB
pages), 4.6 access rights (CR0.WP, R/W, U/S), 4.7 page-fault error code (P, W/R, U/S bits).
"""

from __future__ import annotations

import pytest

from osvemu.cpu import x86
from osvemu.cpu.paging import TranslationFault, translate

P, W, U, PS = x86.PTE_PRESENT, x86.PTE_WRITE, x86.PTE_USER, x86.PTE_LARGE
XD, PAT_LARGE = 1 << 63, 1 << 12  # bit 12 of a 2 MiB / 1 GiB entry is PAT, not an address bit
CR0 = x86.CR0_PE | x86.CR0_PG
CR0_WP = 1 << 16
LONG = x86.EFER_LME | x86.EFER_LMA


class PhysMem:
    """Sparse byte-addressed fake physical memory; unwritten bytes read as 0."""

    def __init__(self) -> None:
        self.data: dict[int, int] = {}

    def put(self, addr: int, value: int, size: int = 8) -> None:
        for i, byte in enumerate(value.to_bytes(size, "little")):
            self.data[addr + i] = byte

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(bytes(self.data.get(addr + i, 0) for i in range(8)), "little")


def no_memory(addr: int) -> int:
    raise AssertionError(f"page tables read at {addr:#x} with paging off")


def test_paging_off_truncates_linear_to_32_bits_when_lma_clear() -> None:
    assert translate(0x1_2345_6789, x86.CR0_PE, 0x1000, 0, 0, no_memory) == 0x2345_6789


def test_paging_off_with_lma_set_does_not_truncate() -> None:
    assert translate(0x1_2345_6789, x86.CR0_PE, 0x1000, 0, LONG, no_memory) == 0x1_2345_6789


def legacy_tables() -> PhysMem:
    """32-bit paging: PD at 0x1000 (4-byte entries), one PT at 0x2000, one PDE with PS=1."""
    mem = PhysMem()
    mem.put(0x1004, 0x2000 | P | W, 4)  # PDE 1 -> PT at 0x2000
    mem.put(0x1008, 0xDEAD_B000 | P, 4)  # PDE 2: its neighbour must not leak into PDE 1's bits
    mem.put(0x100C, 0x0AC0_0000 | P | W | PS, 4)  # PDE 3: 4 MiB page, or (PS ignored) PT, at 0x0AC00000
    mem.put(0x200C, 0x0055_5000 | P | W, 4)  # PTE 3 -> 0x555000
    mem.put(0x2010, 0xFFFF_F000 | P, 4)  # PTE 4 (neighbour)
    mem.put(0x0AC0_0048, 0x0077_7000 | P, 4)  # PTE 0x12 of the table PDE 3 points to when PS is ignored
    return mem


def test_32bit_paging_4k_page() -> None:
    assert translate(0x0040_3ABC, CR0, 0x1000 | 0x18, 0, 0, legacy_tables().read_u64) == 0x0055_5ABC


def test_32bit_paging_4m_page_with_cr4_pse() -> None:
    assert translate(0x00C1_2345, CR0, 0x1000, x86.CR4_PSE, 0, legacy_tables().read_u64) == 0x0AC1_2345


def test_32bit_paging_ps_bit_ignored_without_cr4_pse() -> None:
    assert translate(0x00C1_2345, CR0, 0x1000, 0, 0, legacy_tables().read_u64) == 0x0077_7345


def pae_tables() -> PhysMem:
    """PAE paging: PDPT at 0x1020 (CR3 is only 32-byte aligned), PDPTEs with bits 2:1 reserved (0)."""
    mem = PhysMem()
    mem.put(0x1028, 0x4000 | P)  # PDPTE 1 -> PD at 0x4000
    mem.put(0x1038, 0x2000 | P)  # PDPTE 3 -> PD at 0x2000
    mem.put(0x2008, 0x3000 | P | W)  # PD[1] -> PT at 0x3000
    mem.put(0x3008, 0x1_2345_6000 | P | W)  # PT[1] -> 4 KiB page above 4 GiB
    mem.put(0x4018, 0x2_0060_0000 | PAT_LARGE | P | W | PS)  # PD[3] -> 2 MiB page
    return mem


def test_pae_paging_4k_page() -> None:
    assert translate(0xC020_1ABC, CR0, 0x1020, x86.CR4_PAE, 0, pae_tables().read_u64) == 0x1_2345_6ABC


def test_pae_paging_2m_page_regardless_of_cr4_pse() -> None:
    assert translate(0x4065_4321, CR0, 0x1020, x86.CR4_PAE, 0, pae_tables().read_u64) == 0x2_0065_4321


def test_pae_paging_supervisor_write_with_wp_ignores_pdpte_rw() -> None:
    pa = translate(0xC020_1ABC, CR0 | CR0_WP, 0x1020, x86.CR4_PAE, 0, pae_tables().read_u64, write=True)
    assert pa == 0x1_2345_6ABC


def long_tables() -> PhysMem:
    """4-level paging, PML4 at 0x1000; every entry has U set so user accesses are architecturally allowed."""
    mem = PhysMem()
    mem.put(0x1000, 0x5000 | P | W | U)  # PML4[0] -> PDPT 0x5000
    mem.put(0x1008, 0x7000 | P | W | U)  # PML4[1] -> PDPT 0x7000
    mem.put(0x1FF8, 0x2000 | P | W | U)  # PML4[511] -> PDPT 0x2000
    mem.put(0x2FF0, 0x3000 | P | W | U)  # PDPT[510] -> PD 0x3000
    mem.put(0x3000, 0x4000 | P | W | U)  # PD[0] -> PT 0x4000
    mem.put(0x4008, XD | 0x0020_0000 | P | W | U)  # PT[1] -> 0x200000 (XD is not an address bit)
    mem.put(0x4010, 0x0030_0000 | P | U)  # PT[2] -> 0x300000, read-only
    mem.put(0x5008, 0x6000 | P | W | U)  # PDPT[1] -> PD 0x6000
    mem.put(0x6018, 0x1_0000_0000 | PAT_LARGE | P | W | U | PS)  # PD[3] -> 2 MiB page
    mem.put(0x7018, 0x3_4000_0000 | PAT_LARGE | P | W | U | PS)  # PDPT[3] -> 1 GiB page
    return mem


KERNEL = 0xFFFF_FFFF_8000_1234  # PML4 511, PDPT 510, PD 0, PT 1, offset 0x234
KERNEL_RO = 0xFFFF_FFFF_8000_2234  # same walk, PT 2 (read-only page)


def walk64(linear: int, cr0: int = CR0, mem: PhysMem | None = None, **access: bool) -> int:
    return translate(linear, cr0, 0x1000 | 0x18, x86.CR4_PAE, LONG, (mem or long_tables()).read_u64, **access)


def test_4level_paging_4k_page_non_identity_higher_half() -> None:
    assert walk64(KERNEL) == 0x0020_0234


def test_4level_paging_2m_page() -> None:
    assert walk64(0x4061_2345) == 0x1_0001_2345


def test_4level_paging_1g_page() -> None:
    assert walk64(0x80_C123_4567) == 0x3_4123_4567


NOT_PRESENT_CASES = {"pml4e": 0x1FF8, "pdpte": 0x2FF0, "pde": 0x3000, "pte": 0x4008}  # entries of the KERNEL walk
ERROR_CODES = [  # (write, user, error code): P = 0 for not-present, W/R and U/S mirror the access
    (False, False, 0), (True, False, x86.PF_WRITE), (False, True, x86.PF_USER),
    (True, True, x86.PF_WRITE | x86.PF_USER)]


@pytest.mark.parametrize("level", NOT_PRESENT_CASES)
@pytest.mark.parametrize(("write", "user", "code"), ERROR_CODES)
def test_4level_not_present_entry_faults_with_exact_error_code(level: str, write: bool, user: bool, code: int) -> None:
    mem = long_tables()
    addr = NOT_PRESENT_CASES[level]
    mem.put(addr, mem.read_u64(addr) & ~P)
    with pytest.raises(TranslationFault) as info:
        walk64(KERNEL, mem=mem, write=write, user=user)
    assert (info.value.linear, info.value.error_code) == (KERNEL, code)


LEGACY, PAE = (legacy_tables, 0, 0x1000, 4), (pae_tables, x86.CR4_PAE, 0x1020, 8)  # tables, CR4, CR3, entry size


@pytest.mark.parametrize(("mode", "linear", "entry"), [
    (LEGACY, 0x0040_3ABC, 0x1004), (LEGACY, 0x0040_3ABC, 0x200C),  # PDE, PTE
    (PAE, 0xC020_1ABC, 0x1038), (PAE, 0xC020_1ABC, 0x2008), (PAE, 0xC020_1ABC, 0x3008),  # PDPTE, PDE, PTE
], ids=["32bit-pde", "32bit-pte", "pae-pdpte", "pae-pde", "pae-pte"])
def test_legacy_and_pae_not_present_entry_faults_with_write_error_code(mode: tuple, linear: int, entry: int) -> None:
    tables, cr4, cr3, size = mode
    mem = tables()
    mem.put(entry, 0, size)
    with pytest.raises(TranslationFault) as info:
        translate(linear, CR0, cr3, cr4, 0, mem.read_u64, write=True)
    assert (info.value.linear, info.value.error_code) == (linear, x86.PF_WRITE)


def test_supervisor_write_to_read_only_page_faults_with_cr0_wp() -> None:
    with pytest.raises(TranslationFault) as info:
        walk64(KERNEL_RO, cr0=CR0 | CR0_WP, write=True)
    assert (info.value.linear, info.value.error_code) == (KERNEL_RO, x86.PF_PRESENT | x86.PF_WRITE)


def test_supervisor_write_through_read_only_pde_faults_with_cr0_wp() -> None:
    mem = long_tables()
    mem.put(0x3000, 0x4000 | P | U)  # PD[0] loses R/W: the whole 2 MiB region is read-only
    with pytest.raises(TranslationFault) as info:
        walk64(KERNEL, cr0=CR0 | CR0_WP, mem=mem, write=True)
    assert info.value.error_code == x86.PF_PRESENT | x86.PF_WRITE


def test_supervisor_write_to_read_only_page_succeeds_without_cr0_wp() -> None:
    assert walk64(KERNEL_RO, cr0=CR0, write=True) == 0x0030_0234


def test_read_of_read_only_page_succeeds_with_cr0_wp() -> None:
    assert walk64(KERNEL_RO, cr0=CR0 | CR0_WP) == 0x0030_0234


def test_user_write_to_read_only_page_faults_even_without_cr0_wp() -> None:
    with pytest.raises(TranslationFault) as info:
        walk64(KERNEL_RO, cr0=CR0, write=True, user=True)
    assert info.value.error_code == x86.PF_PRESENT | x86.PF_WRITE | x86.PF_USER


def test_user_read_of_supervisor_page_faults() -> None:
    mem = long_tables()
    mem.put(0x4008, 0x0020_0000 | P | W)  # PT[1] without U/S
    with pytest.raises(TranslationFault) as info:
        walk64(KERNEL, mem=mem, user=True)
    assert info.value.error_code == x86.PF_PRESENT | x86.PF_USER
