"""Write small ELF64 files by hand, for loader tests (System V gABI ch. 4-5).

Only what the loader reads is produced: the ELF header, program headers
(PT_LOAD and PT_NOTE) and segment contents; no sections.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ELF_HEADER = struct.Struct("<4sBBBBB7sHHIQQQIHHHHHH")
PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")
assert ELF_HEADER.size == 64 and PROGRAM_HEADER.size == 56
ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ET_EXEC, EM_X86_64 = 2, 1, 1, 2, 62
PT_LOAD, PT_NOTE = 1, 4
PF_R, PF_W, PF_X = 4, 2, 1


@dataclass
class LoadSegment:
    paddr: int
    data: bytes
    vaddr: int | None = None
    memsz: int | None = None
    flags: int = PF_R | PF_W | PF_X


def note(name: bytes, kind: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)
    return struct.pack("<III", len(name) + 1, len(desc), kind) + pad(name + b"\0") + pad(desc)


def pvh_note(entry: int, width: int = 8) -> bytes:
    return note(b"Xen", 18, entry.to_bytes(width, "little"))


def build_elf(segments: list[LoadSegment], notes: bytes = b"", *, machine: int = EM_X86_64, entry: int = 0) -> bytes:
    count = len(segments) + (1 if notes else 0)
    offset = ELF_HEADER.size + count * PROGRAM_HEADER.size
    headers, payload = b"", b""
    for seg in segments:
        vaddr = seg.paddr if seg.vaddr is None else seg.vaddr
        memsz = len(seg.data) if seg.memsz is None else seg.memsz
        headers += PROGRAM_HEADER.pack(PT_LOAD, seg.flags, offset + len(payload), vaddr, seg.paddr, len(seg.data),
                                       memsz, 0x1000)
        payload += seg.data
    if notes:
        headers += PROGRAM_HEADER.pack(PT_NOTE, PF_R, offset + len(payload), 0, 0, len(notes), len(notes), 4)
        payload += notes
    header = ELF_HEADER.pack(b"\x7fELF", ELFCLASS64, ELFDATA2LSB, EV_CURRENT, 0, 0, bytes(7), ET_EXEC, machine,
                             EV_CURRENT, entry, ELF_HEADER.size, 0, 0, ELF_HEADER.size, PROGRAM_HEADER.size, count,
                             64, 0, 0)
    return header + headers + payload
