#!/usr/bin/env python3
"""Recover a stripped kernel's symbol table from its own kallsyms tables.

Debian's unsigned linux-image ships a System.map stub; the real one is in an
858 MB -dbg package.  With CONFIG_KALLSYMS(_ALL) the image carries every
symbol for /proc/kallsyms, so this module finds those tables in the vmlinux
ELF and prints them in System.map form::

    python3 tools/kallsyms.py VMLINUX > System.map

Layout, as written by ``write_src()`` in Linux 6.1 ``scripts/kallsyms.c``
(``--base-relative --absolute-percpu``) and read by ``kernel/kallsyms.c``;
every label is preceded by ``ALGN`` (``.balign 8`` on 64-bit)::

    kallsyms_offsets        s32 per symbol (see _addresses)
    kallsyms_relative_base  u64: the lowest non-absolute symbol address
    kallsyms_num_syms       u32
    kallsyms_names          per symbol: ULEB128 length (1-2 bytes), token indices
    kallsyms_markers        u32 per 256 symbols: offset of that symbol in names
    kallsyms_seqs_of_names  optional (Linux 6.2, backported to Debian's 6.1.y):
                            the symbols in name order, 3-byte big-endian (or
                            u32 in its first version)
    kallsyms_token_table    256 NUL-terminated strings
    kallsyms_token_index    u16 per token: its offset in the token table

The tables are found from the token table: every character used in a symbol
name is its own one-character token (``insert_real_symbols_in_table``), so
the tokens for '0'..'9' sit at indices 0x30..0x39 as ten consecutive
"d\\0" strings.  The token index after the table pins its start; from there
the header (relative_base, num_syms) is searched before it and the layout in
between must account for every byte.  Names are decoded and cross-checked
against the markers, the name-order permutation, the address order
(``sort_symbols``), the ELF program headers and the PVH entry note.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import struct
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile

from osvemu.errors import ImageError

#: ``ALGN`` in scripts/kallsyms.c on 64-bit: ``.balign 8`` before each label.
ALIGN = 8
#: Tokens in kallsyms_token_table (one per byte value of a compressed name).
TOKEN_COUNT = 256
#: kallsyms_markers holds the names offset of every 256th symbol.
MARKER_STRIDE = 256
#: KSYM_NAME_LEN (include/linux/kallsyms.h, 512 since 6.1); names are shorter.
KSYM_NAME_LEN = 512
#: Name lengths are ULEB128 of at most two bytes (scripts/kallsyms.c, 6.1).
ULEB_CONTINUE = 0x80
ULEB_MASK = 0x7F
ULEB_SHIFT = 7
#: Widths of a kallsyms_seqs_of_names entry: absent (6.1), u8[3] (6.2), u32 (6.2-rc).
SEQ_WIDTHS = (0, 3, 4)
#: Upper bound of the token table's size: kallsyms_token_index entries are u16.
MAX_TOKEN_TABLE = 1 << 16
#: The anchor: the self-tokens of the ten digits, "0\0" .. "9\0".
DIGIT_TOKENS = b"".join(bytes((digit, 0)) for digit in b"0123456789")
DIGIT_TOKEN_INDEX = ord("0")
#: Characters of a valid symbol name and type (printable ASCII, no space).
NAME_CHARS = bytes(range(0x21, 0x7F))
#: Xen ELF note announcing the PVH 32-bit physical entry point (xen/include/public/elfnote.h).
XEN_NOTE_NAME = b"Xen"
XEN_ELFNOTE_PHYS32_ENTRY = 18
#: The symbol at that entry point (arch/x86/platform/pvh/head.S).
PVH_ENTRY_SYMBOL = "pvh_start_xen"

TOKEN_INDEX = struct.Struct(f"<{TOKEN_COUNT}H")
#: kallsyms_relative_base (u64), kallsyms_num_syms (u32), then ALGN padding.
HEADER = struct.Struct("<QII")
NUM_SYMS_IN_HEADER = 8
#: ALGN slots are read as u64 words when searching for the header.
WORD = struct.Struct("<Q")
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
NOTE_HEADER = struct.Struct("<III")
NOTE_ALIGN = 4
assert TOKEN_INDEX.size == 512 and HEADER.size == 16 and NOTE_HEADER.size == 12 and WORD.size == ALIGN
#: What pyelftools raises on a malformed ELF.
_MALFORMED_ELF = (ELFError, ConstructError, struct.error, ValueError, KeyError, IndexError, AttributeError, TypeError,
                  OverflowError)


class KallsymsError(ImageError):
    """No kallsyms tables, or tables that do not agree with each other or the image."""


#: How far a candidate got before a check failed; the furthest one is reported.
NO_MARKERS, BAD_MARKERS, DECODED = range(3)


class _Mismatch(Exception):
    """A candidate table that fails a consistency check (the reason is the message)."""

    def __init__(self, reason: str, depth: int = DECODED) -> None:
        super().__init__(reason)
        self.depth = depth


class KernelSymbol(NamedTuple):
    address: int
    kind: str  # nm type letter; 'A' for absolute per-CPU symbols
    name: str


@dataclass(frozen=True)
class Region:
    """Bytes of the file at ``offset`` mapped at virtual address ``vaddr``."""

    offset: int
    size: int
    vaddr: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    def vaddr_of(self, offset: int) -> int:
        return self.vaddr + (offset - self.offset)

    def align_up(self, offset: int) -> int:
        """The first file offset at or after ``offset`` whose address is ALGN-aligned."""
        return offset + (-self.vaddr_of(offset) % ALIGN)


@dataclass(frozen=True)
class LoadSegment:
    vaddr: int
    paddr: int
    memsz: int


@dataclass(frozen=True)
class ImageLayout:
    """What the decoder needs from the ELF headers."""

    search: tuple[Region, ...]  # .rodata if named, else every PT_LOAD
    search_name: str  # what ``search`` is, for messages
    loads: tuple[LoadSegment, ...]
    pvh_entry: int | None

    def physical(self, vaddr: int) -> int | None:
        for seg in self.loads:
            if seg.vaddr <= vaddr < seg.vaddr + seg.memsz:
                return vaddr - seg.vaddr + seg.paddr
        return None

    def is_loaded(self, vaddr: int) -> bool:
        return self.physical(vaddr) is not None

    @property
    def top(self) -> int:
        return max(seg.vaddr + seg.memsz for seg in self.loads)


@dataclass(frozen=True)
class TokenTable:
    start: int  # file offset of kallsyms_token_table
    index: int  # file offset of kallsyms_token_index
    tokens: tuple[bytes, ...]


@dataclass(frozen=True)
class Kallsyms:
    symbols: tuple[KernelSymbol, ...]  # in table order, which is address order
    relative_base: int
    tables: dict[str, int]  # kallsyms_* label -> virtual address

    def __len__(self) -> int:
        return len(self.symbols)


# --- ELF headers ----------------------------------------------------------------------------------------------------

def read_layout(data: bytes, name: str) -> ImageLayout:
    """Program headers, the .rodata section if named, and the PVH note (System V gABI ch. 4-5)."""
    if data[:4] != b"\x7fELF":
        raise KallsymsError(f"{name}: not an ELF file")
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 64 or not elf.little_endian:
            raise KallsymsError(f"{name}: not a 64-bit little-endian ELF")
        regions, loads, notes = _segments(elf, len(data))
        rodata = _rodata(elf, len(data))
    except _MALFORMED_ELF as error:
        raise KallsymsError(f"{name}: malformed ELF ({str(error)[:100] or type(error).__name__})") from None
    if not loads:
        raise KallsymsError(f"{name}: no loadable (PT_LOAD) segment")
    entry = _pvh_entry(data, notes)
    if rodata:
        return ImageLayout((rodata,), ".rodata", tuple(loads), entry)
    return ImageLayout(tuple(regions), "the PT_LOAD segments", tuple(loads), entry)


def _segments(elf: ELFFile, file_size: int) -> tuple[list[Region], list[LoadSegment], list[Region]]:
    regions, loads, notes = [], [], []
    for segment in elf.iter_segments():
        header = segment.header
        offset, filesz = header["p_offset"], header["p_filesz"]
        if offset + filesz > file_size:
            raise ValueError(f"segment at {offset:#x} runs past the end of the file")
        if header["p_type"] == "PT_LOAD" and header["p_memsz"]:
            regions.append(Region(offset, filesz, header["p_vaddr"]))
            loads.append(LoadSegment(header["p_vaddr"], header["p_paddr"], header["p_memsz"]))
        elif header["p_type"] == "PT_NOTE":
            notes.append(Region(offset, filesz, header["p_vaddr"]))
    return regions, loads, notes


def _rodata(elf: ELFFile, file_size: int) -> Region | None:
    """The linker's .rodata, where scripts/kallsyms.c puts its tables (``.section .rodata``)."""
    if not elf.num_sections():
        return None
    section = elf.get_section_by_name(".rodata")
    if section is None or section["sh_type"] != "SHT_PROGBITS":
        return None
    if section["sh_offset"] + section["sh_size"] > file_size:
        raise ValueError(".rodata runs past the end of the file")
    return Region(section["sh_offset"], section["sh_size"], section["sh_addr"])


def _pvh_entry(data: bytes, notes: list[Region]) -> int | None:
    """XEN_ELFNOTE_PHYS32_ENTRY (Xen docs/misc/pvh.pandoc): 4 or 8 bytes, a 32-bit physical address."""
    for region in notes:
        offset = region.offset
        while offset + NOTE_HEADER.size <= region.end:
            namesz, descsz, kind = NOTE_HEADER.unpack_from(data, offset)
            name_at = offset + NOTE_HEADER.size
            desc_at = name_at + _note_aligned(namesz)
            if desc_at + descsz > region.end:
                break
            if kind == XEN_ELFNOTE_PHYS32_ENTRY and data[name_at:name_at + namesz].rstrip(b"\0") == XEN_NOTE_NAME:
                return int.from_bytes(data[desc_at:desc_at + min(descsz, 8)], "little") & 0xFFFFFFFF
            offset = desc_at + _note_aligned(descsz)
    return None


def _note_aligned(size: int) -> int:
    return (size + NOTE_ALIGN - 1) & ~(NOTE_ALIGN - 1)


# --- token table ----------------------------------------------------------------------------------------------------

def find_token_tables(data: bytes, region: Region) -> Iterator[TokenTable]:
    """Every (kallsyms_token_table, kallsyms_token_index) pair in ``region``."""
    anchor = data.find(DIGIT_TOKENS, region.offset, region.end)
    while anchor != -1:
        table = _token_table_at(data, region, anchor)
        if table is not None:
            yield table
        anchor = data.find(DIGIT_TOKENS, anchor + 1, region.end)


def _token_table_at(data: bytes, region: Region, anchor: int) -> TokenTable | None:
    """The token index is the first ALGN-aligned 512 bytes after the table that describe it."""
    limit = min(region.end - TOKEN_INDEX.size, anchor + MAX_TOKEN_TABLE)
    index = region.align_up(anchor + len(DIGIT_TOKENS))
    while index <= limit:
        if data[index:index + 2] == b"\0\0":
            start = anchor - U16.unpack_from(data, index + U16.size * DIGIT_TOKEN_INDEX)[0]
            if start >= region.offset and region.align_up(start) == start:
                tokens = _tokens(data, start, index)
                if tokens is not None:
                    return TokenTable(start, index, tokens)
        index += ALIGN
    return None


def _tokens(data: bytes, start: int, index: int) -> tuple[bytes, ...] | None:
    """The 256 tokens if the index marks exactly the table's strings, and the table ends at ALGN before it."""
    offsets = TOKEN_INDEX.unpack_from(data, index)
    if offsets[0] != 0:
        return None
    ends = offsets[1:] + (index - start,)
    tokens = []
    for number, (offset, end) in enumerate(zip(offsets, ends)):
        terminator = data.find(b"\0", start + offset, start + end)
        if terminator == -1 or (number < TOKEN_COUNT - 1 and terminator != start + end - 1):
            return None
        tokens.append(data[start + offset:terminator])
    last_end = start + offsets[-1] + len(tokens[-1]) + 1
    if index - last_end >= ALIGN or data[last_end:index].strip(b"\0"):
        return None
    if any(tokens[DIGIT_TOKEN_INDEX + i] != bytes((ord("0") + i,)) for i in range(10)):
        return None
    return tuple(tokens)


# --- header and layout ----------------------------------------------------------------------------------------------

def decode_tables(data: bytes, region: Region, table: TokenTable, layout: ImageLayout) -> Kallsyms:
    """The tables that end with ``table``: the first header before it that makes them all consistent."""
    reasons: list[_Mismatch] = []
    tried: set[int] = set()
    for names in itertools.chain(_likely_headers(data, region, table, layout),
                                 _all_headers(data, region, table, layout)):
        if names in tried:
            continue
        tried.add(names)
        try:
            return _decode_at(data, region, table, names, layout)
        except _Mismatch as reason:
            reasons.append(reason)
    raise _most_telling(reasons) if reasons else _Mismatch("no kallsyms_relative_base and kallsyms_num_syms",
                                                           NO_MARKERS)


def _likely_headers(data: bytes, region: Region, table: TokenTable, layout: ImageLayout) -> Iterator[int]:
    """Headers whose relative_base starts a PT_LOAD segment, as _text does on x86-64: found by bytes.find.

    A segment linked at 0 is the per-CPU one (arch/x86/kernel/vmlinux.lds.S), whose symbols are absolute.
    """
    for vaddr in sorted({seg.vaddr for seg in layout.loads if seg.vaddr}):
        needle = WORD.pack(vaddr)
        at = data.find(needle, region.offset, table.start)
        while at != -1:
            if region.align_up(at) == at and _plausible_header(data, region, table, at + HEADER.size, layout):
                yield at + HEADER.size
            at = data.find(needle, at + 1, table.start)


def _all_headers(data: bytes, region: Region, table: TokenTable, layout: ImageLayout) -> Iterator[int]:
    """Every ALGN-aligned place before ``table`` that could hold relative_base, num_syms and padding."""
    first = region.align_up(region.offset)
    words = struct.unpack_from(f"<{(table.start - first) // WORD.size}Q", data, first)
    for k in range(len(words) - 1):
        if not words[k + 1] >> 32 and words[k + 1]:  # num_syms, then zero padding
            names = first + WORD.size * (k + 2)
            if _plausible_header(data, region, table, names, layout):
                yield names


def _plausible_header(data: bytes, region: Region, table: TokenTable, names: int, layout: ImageLayout) -> bool:
    """Room for the offsets before and two bytes a name after; zero padding; a loaded relative_base."""
    base, count, padding = HEADER.unpack_from(data, names - HEADER.size)
    offsets = names - HEADER.size - _aligned(4 * count)
    return (not padding and count > 0 and offsets >= region.offset and table.start - names >= 2 * count
            and layout.is_loaded(base))


def _aligned(size: int) -> int:
    return (size + ALIGN - 1) & ~(ALIGN - 1)


def _decode_at(data: bytes, region: Region, table: TokenTable, names: int, layout: ImageLayout) -> Kallsyms:
    """Decode the tables whose kallsyms_names starts at ``names``, trying each kallsyms_seqs_of_names width."""
    _, count, _ = HEADER.unpack_from(data, names - HEADER.size)
    reasons: list[_Mismatch] = []
    for width in SEQ_WIDTHS:
        seqs = table.start - _aligned(width * count)
        markers = seqs - _aligned(4 * _marker_count(count))
        try:
            return _decode_layout(data, region, table, names, markers, seqs, width, layout)
        except _Mismatch as reason:
            reasons.append(reason)
        except (struct.error, IndexError, UnicodeError) as error:
            reasons.append(_Mismatch(f"unreadable tables ({error})", NO_MARKERS))
    reason = _most_telling(reasons)
    where = region.vaddr_of(names - HEADER.size + NUM_SYMS_IN_HEADER)
    raise _Mismatch(f"kallsyms_num_syms {count} at {where:#x}: {reason}", reason.depth)


def _most_telling(reasons: Sequence[_Mismatch]) -> _Mismatch:
    """The first of the reasons that got furthest."""
    return max(reasons, key=lambda reason: reason.depth)


def _marker_count(count: int) -> int:
    return (count + MARKER_STRIDE - 1) // MARKER_STRIDE


def _decode_layout(data: bytes, region: Region, table: TokenTable, names: int, markers: int, seqs: int, width: int,
                   layout: ImageLayout) -> Kallsyms:
    base, count, _ = HEADER.unpack_from(data, names - HEADER.size)
    marks = _read_markers(data, names, markers, count)
    raw_names, names_end = _decode_names(data, names, markers, count, table.tokens, marks)
    if region.align_up(names_end) != markers:
        raise _Mismatch(f"kallsyms_names ends at {region.vaddr_of(names_end):#x}, "
                        f"not at kallsyms_markers {region.vaddr_of(markers):#x}")
    _check_names(raw_names, table.tokens)
    if width:
        _check_name_order(raw_names, _read_seqs(data, seqs, count, width))
    offsets_at = names - HEADER.size - _aligned(4 * count)
    addresses = _addresses(struct.unpack_from(f"<{count}i", data, offsets_at), base)
    symbols = tuple(KernelSymbol(address, chr(raw[0]), raw[1:].decode("ascii"))
                    for address, raw in zip(addresses, raw_names))
    _check_image(symbols, layout)
    labels = {"kallsyms_offsets": offsets_at, "kallsyms_relative_base": names - HEADER.size,
              "kallsyms_num_syms": names - HEADER.size + NUM_SYMS_IN_HEADER, "kallsyms_names": names,
              "kallsyms_markers": markers}
    if width:
        labels["kallsyms_seqs_of_names"] = seqs
    labels |= {"kallsyms_token_table": table.start, "kallsyms_token_index": table.index}
    return Kallsyms(symbols, base, {label: region.vaddr_of(at) for label, at in labels.items()})


def _read_markers(data: bytes, names: int, markers: int, count: int) -> tuple[int, ...]:
    """kallsyms_markers: starts at 0, and each 256-name block takes at least 2 bytes a name."""
    if markers <= names:
        raise _Mismatch("no room for kallsyms_names", NO_MARKERS)
    first = U32.unpack_from(data, markers)[0]
    if first != 0:
        raise _Mismatch(f"kallsyms_markers[0] is {first:#x}, not 0", NO_MARKERS)
    marks = struct.unpack_from(f"<{_marker_count(count)}I", data, markers)
    minimum = 2 * MARKER_STRIDE
    if any(later - earlier < minimum for earlier, later in itertools.pairwise(marks)):
        raise _Mismatch("kallsyms_markers do not grow by at least 2 bytes a name", BAD_MARKERS)
    if marks[-1] + 2 * (count - MARKER_STRIDE * (len(marks) - 1)) > markers - names:
        raise _Mismatch("kallsyms_markers point past kallsyms_names", BAD_MARKERS)
    return marks


def _decode_names(data: bytes, start: int, limit: int, count: int, tokens: Sequence[bytes],
                  marks: Sequence[int]) -> tuple[list[bytes], int]:
    """Expand each name's tokens (kernel/kallsyms.c kallsyms_expand_symbol); check the markers on the way."""
    names = []
    expand = tokens.__getitem__
    pos = start
    for number in range(count):
        if number % MARKER_STRIDE == 0 and marks[number // MARKER_STRIDE] != pos - start:
            raise _Mismatch(f"kallsyms_markers[{number // MARKER_STRIDE}] is {marks[number // MARKER_STRIDE]:#x}, "
                            f"symbol {number} is at {pos - start:#x}")
        length = data[pos]
        pos += 1
        if length & ULEB_CONTINUE:
            length = (length & ULEB_MASK) | (data[pos] << ULEB_SHIFT)
            pos += 1
        if not length or pos + length > limit:
            raise _Mismatch(f"symbol {number} has compressed length {length}")
        names.append(b"".join(map(expand, data[pos:pos + length])))
        pos += length
    return names, pos


def _check_names(names: list[bytes], tokens: Sequence[bytes]) -> None:
    """Printable names after a type letter; every character used is its own token, as the compressor made it."""
    if min(map(len, names)) < 2 or max(map(len, names)) > KSYM_NAME_LEN:
        raise _Mismatch("a decoded name is empty or longer than KSYM_NAME_LEN")
    if not bytes(name[0] for name in names).isalpha():
        raise _Mismatch("a decoded symbol type is not a letter")
    blob = b"".join(names)
    if blob.translate(None, NAME_CHARS):
        raise _Mismatch("a decoded name has a non-printable character")
    strays = [char for char in set(blob) if tokens[char] != bytes((char,))]
    if strays:
        raise _Mismatch(f"character {chr(min(strays))!r} is used in names but is not its own token")


def _read_seqs(data: bytes, seqs: int, count: int, width: int) -> list[int]:
    """kallsyms_seqs_of_names: a permutation of the symbol numbers, big-endian u8[3] or little-endian u32."""
    raw = data[seqs:seqs + width * count]
    if width == 4:
        numbers = list(struct.unpack(f"<{count}I", raw))
    else:
        numbers = [int.from_bytes(raw[at:at + width], "big") for at in range(0, len(raw), width)]
    seen = bytearray(count)
    for number in numbers:
        if number >= count or seen[number]:
            raise _Mismatch("kallsyms_seqs_of_names is not a permutation of the symbols")
        seen[number] = 1
    return numbers


def _check_name_order(names: Sequence[bytes], numbers: Sequence[int]) -> None:
    """kallsyms_seqs_of_names lists the symbols by name (scripts/kallsyms.c compare_names).

    Names are compared up to their first '.', which holds whether or not the
    build stripped LTO suffixes before sorting (cleanup_symbol_name).
    """
    keys = [name[1:].split(b".", 1)[0] for name in names]
    if any(keys[later] < keys[earlier] for earlier, later in itertools.pairwise(numbers)):
        raise _Mismatch("the names are not in kallsyms_seqs_of_names order")


def _addresses(offsets: Sequence[int], base: int) -> list[int]:
    """kernel/kallsyms.c kallsyms_sym_address() with CONFIG_KALLSYMS_ABSOLUTE_PERCPU.

    A non-negative offset is an absolute value (a per-CPU symbol); a negative
    one is ``relative_base - 1 - offset``.  scripts/kallsyms.c sorts by
    address and takes relative_base from the first relative symbol, so the
    offsets are absolute ones rising, then -1, -2, ... falling.
    """
    first_relative = next((number for number, offset in enumerate(offsets) if offset < 0), None)
    if first_relative is None or offsets[first_relative] != -1:
        raise _Mismatch("kallsyms_offsets are not base-relative with absolute per-CPU symbols "
                        "(no first relative offset of -1)")
    addresses = [offset if offset >= 0 else base - 1 - offset for offset in offsets]
    if any(later < earlier for earlier, later in itertools.pairwise(addresses)):
        raise _Mismatch("decoded addresses are not in ascending order")
    return addresses


def _check_image(symbols: Sequence[KernelSymbol], layout: ImageLayout) -> None:
    """The last address is inside the image and the PVH entry symbol at the note's entry.

    (relative_base, the first relative address, was required to be in a PT_LOAD segment already.)
    """
    if symbols[-1].address > layout.top:
        raise _Mismatch(f"symbol {symbols[-1].name} at {symbols[-1].address:#x} is beyond the image")
    if layout.pvh_entry is None:
        return
    for symbol in symbols:
        if symbol.name == PVH_ENTRY_SYMBOL:
            physical = layout.physical(symbol.address)
            if physical != layout.pvh_entry:
                raise _Mismatch(f"{PVH_ENTRY_SYMBOL} at {symbol.address:#x} is not at the PVH entry "
                                f"{layout.pvh_entry:#x}")
            return


# --- public entry points --------------------------------------------------------------------------------------------

def parse_kallsyms(data: bytes, name: str = "<image>") -> Kallsyms:
    """The one consistent set of kallsyms tables in the ELF image ``data``."""
    layout = read_layout(data, name)
    found: list[Kallsyms] = []
    reasons: list[_Mismatch] = []
    tables = 0
    for region in layout.search:
        for table in find_token_tables(data, region):
            tables += 1
            try:
                found.append(decode_tables(data, region, table, layout))
            except _Mismatch as reason:
                reasons.append(reason)
    if not tables:
        raise KallsymsError(f"{name}: no kallsyms token table in {layout.search_name} "
                            "(a kernel without CONFIG_KALLSYMS?)")
    if not found:
        detail = f": {_most_telling(reasons)}" if reasons else ""
        raise KallsymsError(f"{name}: kallsyms token table found but no consistent kallsyms_num_syms, "
                            f"kallsyms_names and kallsyms_offsets before it{detail}")
    if len(found) > 1:
        raise KallsymsError(f"{name}: {len(found)} consistent sets of kallsyms tables; refusing to guess")
    return found[0]


def load_kallsyms(path: str | os.PathLike[str]) -> Kallsyms:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KallsymsError(f"{path}: cannot read: {error.strerror}") from None
    return parse_kallsyms(data, str(path))


def format_system_map(symbols: Sequence[KernelSymbol]) -> str:
    """System.map lines, "%016x %c %s" (``nm -n`` order: the table's own address order)."""
    return "".join(f"{symbol.address:016x} {symbol.kind} {symbol.name}\n" for symbol in symbols)


def write_system_map(vmlinux_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> int:
    """Write ``out_path`` from the kallsyms of ``vmlinux_path``; return the symbol count.

    Raises KallsymsError (nothing is written then) or OSError.
    """
    kallsyms = load_kallsyms(vmlinux_path)
    _replace_file(Path(out_path), format_system_map(kallsyms.symbols))
    return len(kallsyms)


def _replace_file(out: Path, text: str) -> None:
    """Write through a temporary file and rename it, so a failure leaves no partial map."""
    handle, temporary = tempfile.mkstemp(prefix=out.name + ".", dir=out.parent)
    try:
        with os.fdopen(handle, "w", encoding="ascii") as stream:
            stream.write(text)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kallsyms.py",
                                     description="Print a System.map recovered from a vmlinux's kallsyms tables.")
    parser.add_argument("vmlinux", type=Path, help="uncompressed kernel ELF (vmlinux)")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    parser.add_argument("-v", "--verbose", action="store_true", help="also say where each table is")
    args = parser.parse_args(argv)
    try:
        kallsyms = load_kallsyms(args.vmlinux)
        text = format_system_map(kallsyms.symbols)
        if args.output:
            _replace_file(args.output, text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except KallsymsError as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return error.exit_status
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        print(f"{parser.prog}: {args.output or 'standard output'}: cannot write: {error.strerror}", file=sys.stderr)
        return 1
    if args.verbose:
        for label, vaddr in kallsyms.tables.items():
            print(f"{parser.prog}: {label} at {vaddr:#x}", file=sys.stderr)
    print(f"{parser.prog}: {len(kallsyms)} symbols", file=sys.stderr)
    return 0


__all__ = ["Kallsyms", "KallsymsError", "KernelSymbol", "format_system_map", "load_kallsyms", "parse_kallsyms",
           "write_system_map"]

if __name__ == "__main__":
    sys.exit(main())
