"""Exact tests of guest-physical memory: ``MemoryBank`` host buffers and per-core ``MemoryView``s."""

from __future__ import annotations

import mmap

import pytest

from osvemu.cpu.memory import Mapping, MemoryBank, MemoryView
from osvemu.errors import ConfigError, GuestFault

PAGE = mmap.PAGESIZE
MIB = 1 << 20


def test_write_then_read_round_trips_and_lands_at_the_bank_offset() -> None:
    bank = MemoryBank(4 * PAGE, "ram")
    view = MemoryView([Mapping(0x10_0000, 2 * PAGE, bank, 2 * PAGE)])
    view.write(0x10_0000 + 0x10, b"hello, guest")
    assert view.read(0x10_0000 + 0x10, 12) == b"hello, guest"
    assert bytes(bank.view[2 * PAGE + 0x10:2 * PAGE + 0x1C]) == b"hello, guest"
    assert bytes(bank.view[0x10:0x1C]) == bytes(12)  # the unmapped start of the bank is untouched


def two_bank_view() -> tuple[MemoryView, MemoryBank, MemoryBank]:
    """[0x1000, 0x3000) from bank a, [0x3000, 0x4000) from bank b, a hole, then [0x5000, 0x6000) from a."""
    a, b = MemoryBank(4 * PAGE, "a"), MemoryBank(PAGE, "b")
    mappings = [Mapping(0x5000, PAGE, a, 3 * PAGE), Mapping(0x3000, PAGE, b, 0), Mapping(0x1000, 2 * PAGE, a, 0)]
    return MemoryView(mappings), a, b


def test_mappings_are_kept_in_guest_physical_order() -> None:
    view, _, _ = two_bank_view()
    assert [(m.gpa, m.end, m.bank.name) for m in view.mappings] == [
        (0x1000, 0x3000, "a"), (0x3000, 0x4000, "b"), (0x5000, 0x6000, "a")]


def test_read_spanning_adjacent_mappings_joins_both_banks() -> None:
    view, a, b = two_bank_view()
    a.view[2 * PAGE - 4:2 * PAGE] = b"ABCD"
    b.view[0:4] = b"EFGH"
    assert view.read(0x3000 - 4, 8) == b"ABCDEFGH"


def test_write_spanning_adjacent_mappings_splits_across_both_banks() -> None:
    view, a, b = two_bank_view()
    view.write(0x3000 - 2, b"wxyz")
    assert (bytes(a.view[2 * PAGE - 2:2 * PAGE]), bytes(b.view[0:2])) == (b"wx", b"yz")


def test_views_with_private_low_mib_differ_below_1mib_and_share_above() -> None:
    shared = MemoryBank(2 * MIB, "shared")
    low0, low1 = MemoryBank(MIB, "low0"), MemoryBank(MIB, "low1")
    view0 = MemoryView([Mapping(0, MIB, low0, 0), Mapping(MIB, MIB, shared, MIB)])
    view1 = MemoryView([Mapping(0, MIB, low1, 0), Mapping(MIB, MIB, shared, MIB)])
    view0.write(0x7C00, b"core0")
    view1.write(0x7C00, b"core1")
    assert (view0.read(0x7C00, 5), view1.read(0x7C00, 5)) == (b"core0", b"core1")
    view0.write(MIB + 0x40, b"shared!")
    assert view1.read(MIB + 0x40, 7) == b"shared!"
    assert bytes(shared.view[MIB + 0x40:MIB + 0x47]) == b"shared!"


@pytest.mark.parametrize(("gpa", "size", "expected"), [
    (0x1000, 1, True),  # first byte of the first mapping
    (0x0FFF, 1, False),  # byte before it
    (0x0FFF, 2, False),  # range starting in front of the mapping
    (0x3FFF, 1, True),  # last byte of the last adjacent mapping
    (0x4000, 1, False),  # first byte past its end (the hole)
    (0x3FF0, 0x10, True),  # range ending exactly at the hole
    (0x3FF0, 0x11, False),  # range crossing into the hole
    (0x1000, 0x3000, True),  # whole span across two banks
    (0x2FFF, 2, True),  # two bytes straddling the bank boundary
    (0x3000, 0x2001, False),  # range bridging the hole to the next mapping
    (0x5FFF, 1, True),  # last byte after the hole
    (0x6000, 1, False),  # first byte past the end of the view
])
def test_contains_at_mapping_edges(gpa: int, size: int, expected: bool) -> None:
    view, _, _ = two_bank_view()
    assert view.contains(gpa, size) is expected


@pytest.mark.parametrize(("gpa", "size"), [(0x4000, 1), (0x3FFF, 2), (0x0, 8), (0x6000, 1)])
def test_read_of_unmapped_address_raises_guest_fault(gpa: int, size: int) -> None:
    view, _, _ = two_bank_view()
    with pytest.raises(GuestFault, match="read of unmapped guest-physical address"):
        view.read(gpa, size)


@pytest.mark.parametrize(("gpa", "size"), [(0x4000, 1), (0x3FFF, 2), (0x0, 8), (0x6000, 1)])
def test_write_of_unmapped_address_raises_guest_fault(gpa: int, size: int) -> None:
    view, _, _ = two_bank_view()
    with pytest.raises(GuestFault, match="write of unmapped guest-physical address"):
        view.write(gpa, b"\xAA" * size)


@pytest.mark.parametrize("second", [
    (2 * PAGE, 2 * PAGE),  # starts inside [PAGE, 3 * PAGE)
    (0, 2 * PAGE),  # ends inside it
    (PAGE, PAGE),  # same start
    (PAGE, 2 * PAGE),  # identical range
    (0, 4 * PAGE),  # encloses it
], ids=["starts-inside", "ends-inside", "same-start", "identical", "encloses"])
def test_overlapping_mappings_raise_config_error(second: tuple[int, int]) -> None:
    a, b = MemoryBank(4 * PAGE, "a"), MemoryBank(4 * PAGE, "b")
    with pytest.raises(ConfigError, match="overlap"):
        MemoryView([Mapping(second[0], second[1], b, 0), Mapping(PAGE, 2 * PAGE, a, 0)])


def test_adjacent_mappings_do_not_count_as_overlapping() -> None:
    a, b = MemoryBank(PAGE, "a"), MemoryBank(PAGE, "b")
    assert len(MemoryView([Mapping(0, PAGE, a, 0), Mapping(PAGE, PAGE, b, 0)]).mappings) == 2


@pytest.mark.parametrize(("gpa", "size", "offset"), [
    (PAGE // 2, PAGE, 0),  # guest-physical start not page aligned
    (0, PAGE // 2, 0),  # size not a page multiple
    (0, PAGE + 1, 0),
    (0, 2 * PAGE, 3 * PAGE),  # runs past the end of the 4-page bank
    (0, 5 * PAGE, 0),  # larger than the bank
], ids=["gpa", "half-page-size", "odd-size", "past-bank-end", "bigger-than-bank"])
def test_unaligned_or_oversized_mapping_raises_config_error(gpa: int, size: int, offset: int) -> None:
    bank = MemoryBank(4 * PAGE, "ram")
    with pytest.raises(ConfigError, match="not page aligned or exceeds its bank"):
        MemoryView([Mapping(gpa, size, bank, offset)])


@pytest.mark.parametrize("size", [0, -PAGE, 1, PAGE // 2, PAGE + 1, 3 * PAGE - 8])
def test_bank_size_not_a_positive_page_multiple_raises_config_error(size: int) -> None:
    with pytest.raises(ConfigError, match="not a positive multiple of the page size"):
        MemoryBank(size, "bad")


def test_bank_of_one_page_is_zero_filled() -> None:
    bank = MemoryBank(PAGE, "one")
    assert (bank.size, bank.name, bytes(bank.view)) == (PAGE, "one", bytes(PAGE))


def test_read_u64_is_little_endian() -> None:
    view, _, _ = two_bank_view()
    view.write(0x1008, bytes(range(1, 9)))
    assert view.read_u64(0x1008) == 0x0807_0605_0403_0201


def test_read_u64_across_a_bank_boundary_is_little_endian() -> None:
    view, a, b = two_bank_view()
    a.view[2 * PAGE - 3:2 * PAGE] = b"\x11\x22\x33"
    b.view[0:5] = b"\x44\x55\x66\x77\x88"
    assert view.read_u64(0x3000 - 3) == 0x8877_6655_4433_2211
