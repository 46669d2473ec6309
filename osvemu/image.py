"""Loading a guest kernel: an x86-64 ELF booted through PVH.

Every PT_LOAD segment is placed at its physical address ``p_paddr`` as QEMU's
``-kernel`` does for PVH images, and the entry point is the 32-bit physical
address in the ``Xen`` ELF note of type XEN_ELFNOTE_PHYS32_ENTRY (Xen
``docs/misc/pvh.pandoc``; the descriptor is 4 bytes in Xen's examples and 8
in Linux, both accepted).  Anything wrong with the file is an ImageError
naming the problem.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from osvemu.errors import ImageError
from osvemu.symbols import Symbol, SymbolTable

ELF_MAGIC = b"\x7fELF"
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PF_X = 1
PF_W = 2
XEN_NOTE_NAME = b"Xen"
XEN_ELFNOTE_PHYS32_ENTRY = 18
#: Elf64_Nhdr: namesz, descsz, type (System V gABI "Note Section").
NOTE_HEADER = struct.Struct("<III")
NOTE_ALIGN = 4
#: The largest image read: far above any kernel osvemu boots, and a bound
#: on what a file name such as /dev/zero can make it read.
MAX_IMAGE_BYTES = 256 << 20
#: What pyelftools raises on a malformed file: its own errors, and the
#: Python errors of the structures it parses from fields nobody checked
#: (an offset past 2**63, a count that divides by zero, an assertion).
_MALFORMED = (ELFError, ConstructError, struct.error, ValueError, KeyError, IndexError, AttributeError, TypeError,
              OverflowError, ZeroDivisionError, AssertionError, RecursionError, UnicodeError)


@dataclass(frozen=True)
class Segment:
    paddr: int
    vaddr: int
    data: bytes
    memsz: int
    flags: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)

    @property
    def text(self) -> bool:
        """Executable and not writable (ELF p_flags): code only, as a kernel's
        .text segment is; its writable-and-executable neighbours hold data."""
        return bool(self.flags & PF_X) and not self.flags & PF_W


class SourceLines:
    """Address -> (file, line) from the image's DWARF line programs (DWARF 5
    section 6.2), parsed on first use: a large kernel's debug information
    takes a while and most runs never ask."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._rows: list[tuple[int, str, int]] | None = None
        self._addresses: list[int] = []

    def lookup(self, address: int) -> tuple[str, int] | None:
        if self._rows is None:
            self._rows = self._parse()
            self._addresses = [row[0] for row in self._rows]
        index = bisect.bisect_right(self._addresses, address) - 1
        if index < 0:
            return None
        row_address, name, line = self._rows[index]
        if address - row_address > _MAX_LINE_SPAN:
            return None
        return name, line

    def _parse(self) -> list[tuple[int, str, int]]:
        import io
        rows: list[tuple[int, str, int]] = []
        try:
            elf = ELFFile(io.BytesIO(self._raw))
            if not elf.has_dwarf_info():
                return rows
            dwarf = elf.get_dwarf_info()
            for unit in dwarf.iter_CUs():
                program = dwarf.line_program_for_CU(unit)
                if program is None:
                    continue
                files = program["file_entry"]
                base = 0 if program.header["version"] >= 5 else 1
                for entry in program.get_entries():
                    state = entry.state
                    if state is None or state.end_sequence:
                        continue
                    index = state.file - base
                    name = files[index].name.decode() if 0 <= index < len(files) else "?"
                    rows.append((state.address, name, state.line))
        except _MALFORMED:  # line numbers are a convenience: malformed debug information has none
            return []
        rows.sort()
        return rows


#: A line-table row further than this before an address does not describe it.
_MAX_LINE_SPAN = 0x1000


@dataclass(frozen=True)
class KernelImage:
    path: str
    entry32: int  # PVH 32-bit physical entry point
    elf_entry: int  # e_entry, for reference
    segments: tuple[Segment, ...]
    symbols: SymbolTable
    lines: SourceLines | None = None


def load_image(path: str | Path) -> KernelImage:
    """The image in the file at ``path``, parsed once per process while the
    file stays the same (its size and modification time)."""
    path = Path(path)
    try:
        status = path.stat()
        return _load_unchanged(path, status.st_size, status.st_mtime_ns)
    except (OSError, ValueError):
        return _load(path)  # _load says what is wrong with it


@lru_cache(maxsize=16)
def _load_unchanged(path: Path, _size: int, _mtime_ns: int) -> KernelImage:
    return _load(path)


def _load(path: Path) -> KernelImage:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an ELF image") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot read: {error.strerror}") from None
    except ValueError:  # a NUL in the name
        raise ImageError(f"{path!r}: not a valid file name") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise ImageError(f"{path}: larger than {MAX_IMAGE_BYTES >> 20} MiB: not a kernel image")
    return parse_image(raw, str(path))


def parse_image(raw: bytes, name: str = "<image>") -> KernelImage:
    if raw[:4] != ELF_MAGIC:
        raise ImageError(f"{name}: not an ELF file")
    if len(raw) < 5 or raw[4] != 2:
        raise ImageError(f"{name}: a 32-bit ELF; osvemu boots 64-bit x86-64 images")
    try:
        import io
        elf = ELFFile(io.BytesIO(raw))
        machine = elf["e_machine"]
        if machine != "EM_X86_64":
            raise ImageError(f"{name}: ELF for {machine}, not x86-64 (EM_X86_64)")
        segments, entry32 = _read_segments(elf, raw, name)
        symbols = _read_symbols(elf, segments)
        entry = elf["e_entry"]
    except ImageError:
        raise
    except _MALFORMED as error:
        detail = str(error)[:120] or type(error).__name__
        raise ImageError(f"{name}: malformed or truncated ELF ({detail})") from None
    if entry32 is None:
        raise ImageError(f"{name}: no PVH entry point (ELF note \"Xen\" type {XEN_ELFNOTE_PHYS32_ENTRY}, "
                         "XEN_ELFNOTE_PHYS32_ENTRY)")
    return KernelImage(name, entry32, entry, tuple(segments), symbols, SourceLines(raw))


def _read_segments(elf: ELFFile, raw: bytes, name: str) -> tuple[list[Segment], int | None]:
    segments: list[Segment] = []
    entry32 = None
    for index in range(elf.num_segments()):
        header = elf.get_segment(index).header
        kind = header["p_type"]
        offset, filesz, memsz = header["p_offset"], header["p_filesz"], header["p_memsz"]
        if kind not in ("PT_LOAD", "PT_NOTE"):
            continue
        if offset + filesz > len(raw):
            raise ImageError(f"{name}: truncated: segment {index} needs bytes up to {offset + filesz:#x}, "
                             f"the file has {len(raw):#x}")
        data = raw[offset:offset + filesz]
        if kind == "PT_NOTE":
            found = _pvh_entry(data, name)
            entry32 = found if found is not None else entry32
            continue
        if filesz > memsz:
            raise ImageError(f"{name}: segment {index} has file size {filesz:#x} above memory size {memsz:#x}")
        if memsz:
            segments.append(Segment(header["p_paddr"], header["p_vaddr"], data, memsz, header["p_flags"]))
    if not segments:
        raise ImageError(f"{name}: no loadable (PT_LOAD) segment")
    return segments, entry32


def _pvh_entry(notes: bytes, name: str) -> int | None:
    offset = 0
    while offset + NOTE_HEADER.size <= len(notes):
        namesz, descsz, kind = NOTE_HEADER.unpack_from(notes, offset)
        name_start = offset + NOTE_HEADER.size
        desc_start = name_start + _aligned(namesz)
        end = desc_start + _aligned(descsz)
        if desc_start + descsz > len(notes):
            raise ImageError(f"{name}: truncated ELF note at offset {offset:#x} of a PT_NOTE segment")
        if notes[name_start:name_start + namesz].rstrip(b"\0") == XEN_NOTE_NAME and kind == XEN_ELFNOTE_PHYS32_ENTRY:
            if descsz not in (4, 8):
                raise ImageError(f"{name}: PVH entry note has a {descsz}-byte descriptor, expected 4 or 8")
            return int.from_bytes(notes[desc_start:desc_start + descsz], "little") & 0xFFFFFFFF
        offset = end
    return None


def _aligned(size: int) -> int:
    return (size + NOTE_ALIGN - 1) & ~(NOTE_ALIGN - 1)


def _read_symbols(elf: ELFFile, segments: list[Segment]) -> SymbolTable:
    return SymbolTable(_elf_symbols(elf), _aliases(segments))


def _elf_symbols(elf: ELFFile) -> list[Symbol]:
    """Functions, objects and untyped labels of the ELF's symbol tables."""
    symbols = []
    for section in elf.iter_sections():
        if not isinstance(section, SymbolTableSection):
            continue
        for symbol in section.iter_symbols():
            kind = symbol["st_info"]["type"]
            if kind in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") and symbol.name and symbol["st_shndx"] != "SHN_UNDEF":
                symbols.append(Symbol(symbol["st_value"], symbol.name, symbol["st_size"]))
    return symbols


def _aliases(segments: Sequence[Segment]) -> list[tuple[int, int, int]]:
    """(physical, virtual, size) of each segment: a symbol is found at either address."""
    return [(s.paddr, s.vaddr, s.memsz) for s in segments]


#: A System.map line: address, type letter, name (Linux ``scripts/mksysmap``).
_SYSTEM_MAP_LINE = re.compile(r"^([0-9a-fA-F]{1,16})\s+([A-Za-z?])\s+(\S+)")
#: System.map types of code and data symbols (``nm(1)``): absolute and
#: undefined ones are left out.
_SYSTEM_MAP_TYPES = frozenset("TtDdBbRrVvWw")
MAX_SYMBOL_FILE_BYTES = 256 << 20


def load_symbols(path: str, image: KernelImage) -> SymbolTable:
    """Symbols for ``image`` from a System.map or an ELF that has a symbol
    table (the stripped image's unstripped twin), with the image's
    physical-to-virtual aliases; ImageError if none can be read."""
    try:
        with open(path, "rb") as file:
            head = file.read(4)
            file.seek(0)
            if head == b"\x7fELF":
                symbols = _elf_symbols(ELFFile(file))
            else:
                symbols = _read_system_map(file.read(MAX_SYMBOL_FILE_BYTES).decode("ascii", "replace"))
    except OSError as error:
        raise ImageError(f"symbols {path}: {error.strerror or error}") from None
    except _MALFORMED as error:
        raise ImageError(f"symbols {path}: not a readable ELF ({error})") from None
    if not symbols:
        raise ImageError(f"symbols {path}: no symbols found (expected a System.map or an ELF with a symbol table)")
    return SymbolTable(symbols, _aliases(image.segments))


def _read_system_map(text: str) -> list[Symbol]:
    symbols = []
    for line in text.splitlines():
        match = _SYSTEM_MAP_LINE.match(line)
        if match and match.group(2) in _SYSTEM_MAP_TYPES:
            symbols.append(Symbol(int(match.group(1), 16), match.group(3)))
    return symbols


def check_placement(image: KernelImage, ram: list[tuple[int, int]], firmware_areas: Sequence) -> None:
    """Every segment must lie in RAM and clear of the firmware areas
    (``(base, size, type, name)`` records, osvemu.platform.memmap.Area)."""
    for segment in image.segments:
        lo, hi = segment.paddr, segment.paddr + segment.memsz
        for base, size, _, what in firmware_areas:
            if lo < base + size and base < hi:
                raise ImageError(f"{image.path}: segment at {lo:#x}-{hi:#x} overlaps the {what} at "
                                 f"{base:#x}-{base + size:#x}")
        if not any(base <= lo and hi <= base + size for base, size in ram):
            raise ImageError(f"{image.path}: segment at {lo:#x}-{hi:#x} lies outside RAM")


__all__ = ["KernelImage", "Segment", "check_placement", "load_image", "parse_image"]
