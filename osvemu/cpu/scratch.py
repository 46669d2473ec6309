"""Scratch pages: throw-away memory that lets one refused access complete.

When a monitor refuses an access to guest-physical memory its kernel does
not own, the instruction still has to retire: a scratch page is mapped at
the address for the rest of the slice (reads see the fill byte, writes
vanish), and the slice ends after the instruction so the page is gone
before anything else runs.
"""

from __future__ import annotations

from unicorn import Uc
from unicorn import x86_const as r

from osvemu.cpu import x86


class ScratchPages:
    def __init__(self, uc: Uc) -> None:
        self._uc = uc
        self._pages: list[int] = []

    def map(self, physical: int, fill: int) -> None:
        page = physical & ~(x86.PAGE_SIZE - 1)
        self._uc.mem_map(page, x86.PAGE_SIZE)
        self._uc.mem_write(page, bytes([fill]) * x86.PAGE_SIZE)
        self._pages.append(page)

    def release(self) -> None:
        """Unmap every scratch page (at the end of a slice)."""
        for page in self._pages:
            self._uc.mem_unmap(page, x86.PAGE_SIZE)
        if self._pages:  # drop TLB entries that still point at the page (a CR3 load flushes them)
            self._uc.reg_write(r.UC_X86_REG_CR3, self._uc.reg_read(r.UC_X86_REG_CR3))
        self._pages.clear()


__all__ = ["ScratchPages"]
