"""Guest-physical memory: host-backed banks and per-core views of them.

All cores share one host buffer (an anonymous mmap, touched lazily), but each
core maps its own *view*: a list of guest-physical ranges, each backed by a
slice of some bank.  Two views may map the same guest-physical address to
different host memory (a private low MiB) or leave a range unmapped; a later
layer builds partitioned views this way, as nested paging would.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import struct
from dataclasses import dataclass

from osvemu.errors import ConfigError, GuestFault

_U64 = struct.Struct("<Q")


class MemoryBank:
    """One host buffer of guest memory (machine-physical memory).  A
    ``shared`` bank stays one buffer across ``fork``: OSV's channels, which
    kernels run by different processes use (osvemu.parallel)."""

    def __init__(self, size: int, name: str, shared: bool = False) -> None:
        if size <= 0 or size % mmap.PAGESIZE:
            raise ConfigError(f"memory bank {name!r} size {size:#x} is not a positive multiple of the page size")
        self.name = name
        self.size = size
        try:
            sharing = mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE
            self._map = mmap.mmap(-1, size, flags=sharing | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0))
        except (OSError, OverflowError) as error:
            raise ConfigError(f"cannot allocate {size:#x} bytes of guest memory: {error}") from None
        self.view = memoryview(self._map)
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self._map))

    def clear(self, offset: int, size: int) -> None:
        """Zero [offset, offset+size) and give its pages back to the host
        (a private anonymous mapping reads zeros after MADV_DONTNEED)."""
        if offset % mmap.PAGESIZE or size % mmap.PAGESIZE or offset + size > self.size:
            raise ValueError(f"clear {offset:#x}+{size:#x} of bank {self.name!r}: not whole pages inside it")
        self._map.madvise(mmap.MADV_DONTNEED, offset, size)


@dataclass(frozen=True)
class Mapping:
    """Guest-physical [gpa, gpa+size) backed by ``bank`` from ``offset``."""

    gpa: int
    size: int
    bank: MemoryBank
    offset: int

    @property
    def end(self) -> int:
        return self.gpa + self.size

    @property
    def host_address(self) -> int:
        return self.bank.address + self.offset


class MemoryView:
    """The guest-physical address space one core sees."""

    def __init__(self, mappings: list[Mapping]) -> None:
        ordered = sorted(mappings, key=lambda m: m.gpa)
        for left, right in itertools.pairwise(ordered):
            if left.end > right.gpa:
                raise ConfigError(f"memory view ranges overlap at {right.gpa:#x}")
        for m in ordered:
            if m.gpa % mmap.PAGESIZE or m.size % mmap.PAGESIZE or m.offset + m.size > m.bank.size:
                raise ConfigError(f"memory mapping at {m.gpa:#x} is not page aligned or exceeds its bank")
        self.mappings = tuple(ordered)
        # (start, end, bank view, bank offset of start) per mapping, and the last one hit:
        # page walks and interrupt frames hit the same mapping again and again.
        self._spans = tuple((m.gpa, m.end, m.bank.view, m.offset - m.gpa) for m in ordered)
        self._last = self._spans[0] if ordered else (0, 0, None, 0)

    def _locate(self, gpa: int) -> Mapping | None:
        for m in self.mappings:
            if m.gpa <= gpa < m.end:
                return m
        return None

    def _span(self, gpa: int, size: int) -> tuple[memoryview, int] | None:
        """The bank view and offset of [gpa, gpa+size) when one mapping holds it all."""
        start, end, view, shift = self._last
        if start <= gpa and gpa + size <= end:
            return view, gpa + shift
        for span in self._spans:
            start, end, view, shift = span
            if start <= gpa and gpa + size <= end:
                self._last = span
                return view, gpa + shift
        return None

    def contains(self, gpa: int, size: int = 1) -> bool:
        """True when [gpa, gpa+size) is mapped (possibly across adjacent mappings)."""
        while size > 0:
            m = self._locate(gpa)
            if m is None:
                return False
            step = min(size, m.end - gpa)
            gpa, size = gpa + step, size - step
        return True

    def pieces(self, gpa: int, size: int) -> list[memoryview]:
        """The host memory behind [gpa, gpa+size), uncopied, in order."""
        out = []
        while size > 0:
            m = self._locate(gpa)
            if m is None:
                raise GuestFault(f"read of unmapped guest-physical address {gpa:#x}")
            step = min(size, m.end - gpa)
            start = m.offset + gpa - m.gpa
            out.append(m.bank.view[start:start + step])
            gpa, size = gpa + step, size - step
        return out

    def read(self, gpa: int, size: int) -> bytes:
        span = self._span(gpa, size)
        if span is not None:
            view, offset = span
            return bytes(view[offset:offset + size])
        return b"".join(self.pieces(gpa, size))

    def write(self, gpa: int, data: bytes) -> None:
        span = self._span(gpa, len(data))
        if span is not None:
            view, offset = span
            view[offset:offset + len(data)] = data
            return
        data = memoryview(bytes(data))
        while data:
            m = self._locate(gpa)
            if m is None:
                raise GuestFault(f"write of unmapped guest-physical address {gpa:#x}")
            step = min(len(data), m.end - gpa)
            start = m.offset + gpa - m.gpa
            m.bank.view[start:start + step] = data[:step]
            gpa, data = gpa + step, data[step:]

    def read_u64(self, gpa: int) -> int:
        span = self._span(gpa, 8)
        if span is not None:
            return _U64.unpack_from(*span)[0]
        return int.from_bytes(self.read(gpa, 8), "little")

    def u64_if_mapped(self, gpa: int) -> int | None:
        """The little-endian quadword at ``gpa``, or None when it is not all mapped."""
        span = self._span(gpa, 8)
        if span is not None:
            return _U64.unpack_from(*span)[0]
        return self.read_u64(gpa) if self.contains(gpa, 8) else None
