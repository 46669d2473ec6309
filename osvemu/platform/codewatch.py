"""Cross-core code invalidation: finding code another core rewrote.

Each core is its own Unicorn instance, and an instance drops its translated
code only for its own stores (QEMU's self-modifying-code check runs per
instance), so text one core patches -- Linux's static keys, alternatives and
ftrace after SMP bring-up -- would run stale on the others for ever.  The
x86 rule for cross-modifying code (Intel SDM Vol. 3A 8.1.3; AMD APM Vol. 2
7.6.1) only promises the new code once the executing processor serialises,
so late visibility is allowed; never is not.

A :class:`CodeWatch` holds a checksum of each watched page (a kernel image's
executable segments, or a snippet's code) as the host last saw it; the
scheduler asks it every few rounds which pages changed, and every core of
the kernel drops its translations of those pages.  The check is
deterministic (round-based), costs one CRC of the watched bytes per check,
and per-page CRCs only when something changed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from osvemu.cpu.memory import MemoryView

PAGE_SIZE = 4096


@dataclass(frozen=True)
class WatchedRange:
    physical: int  # guest-physical base, page aligned
    size: int
    virtual: int  # where the kernel's page tables map it (== physical when not linked high)


class CodeWatch:
    def __init__(self, view: MemoryView, ranges: Iterable[tuple[int, int, int]]) -> None:
        self._view = view
        self.ranges = [_aligned(physical, size, virtual) for physical, size, virtual in ranges if size > 0]
        self._whole = [self._crc(rng.physical, rng.size) for rng in self.ranges]
        self._pages = [self._page_crcs(rng) for rng in self.ranges]
        self.pages_changed = 0  # over the run, for the report

    def changed(self) -> list[int]:
        """Where the kernel's page tables map each watched page whose bytes
        changed since the last call; the new contents become the reference."""
        found = []
        for index, rng in enumerate(self.ranges):
            whole = self._crc(rng.physical, rng.size)
            if whole == self._whole[index]:
                continue
            self._whole[index] = whole
            pages = self._page_crcs(rng)
            for page, (old, new) in enumerate(zip(self._pages[index], pages)):
                if old != new:
                    found.append(rng.virtual + page * PAGE_SIZE)
            self._pages[index] = pages
        self.pages_changed += len(found)
        return found

    def _crc(self, physical: int, size: int) -> int:
        crc = 0
        for piece in self._view.pieces(physical, size):  # the guest's memory itself, not a copy
            crc = zlib.crc32(piece, crc)
        return crc

    def _page_crcs(self, rng: WatchedRange) -> list[int]:
        return [self._crc(page, PAGE_SIZE) for page in range(rng.physical, rng.physical + rng.size, PAGE_SIZE)]


def _aligned(physical: int, size: int, virtual: int) -> WatchedRange:
    start = physical & ~(PAGE_SIZE - 1)
    end = (physical + size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    return WatchedRange(start, end - start, virtual - (physical - start))


__all__ = ["CodeWatch", "WatchedRange"]
