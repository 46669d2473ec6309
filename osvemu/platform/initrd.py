"""The initial RAM disk: read from a file and placed in a kernel's RAM for
the PVH start info to hand over as module 0 (Xen ``docs/misc/pvh.pandoc``;
Linux takes module 0 as its initrd, ``arch/x86/platform/pvh/enlighten.c``).

It goes where QEMU puts one: as high as it fits in the kernel's RAM below
4 GiB, page aligned, clear of the image and the firmware areas.  Its pages
stay RAM in the memory map, as on QEMU: the kernel reserves the module
itself early in boot (Linux's ``early_reserve_initrd``) and frees it once
unpacked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from osvemu.errors import ConfigError, ImageError
from osvemu.platform import layout

#: The largest initrd accepted: it is read into host memory whole.
MAX_INITRD_BYTES = 1 << 30
#: Modules live below 4 GiB, where a 32-bit PVH entry can reach them.
INITRD_LIMIT = 4 * layout.GiB


def load_initrd(path: str) -> bytes:
    """The file's bytes (ImageError if it is not a regular file, cannot be
    read, or is empty or huge: a device such as /dev/zero would never end)."""
    try:
        if not os.path.isfile(path):
            raise ImageError(f"initrd {path}: not a regular file" if os.path.exists(path)
                             else f"initrd {path}: no such file")
        size = os.path.getsize(path)
        if size > MAX_INITRD_BYTES:
            raise ImageError(f"initrd {path}: {size >> 20} MiB is more than the {MAX_INITRD_BYTES >> 20} MiB accepted")
        with open(path, "rb") as file:
            data = file.read(MAX_INITRD_BYTES + 1)
    except OSError as error:
        raise ImageError(f"initrd {path}: {error.strerror or error}") from None
    if not data:
        raise ImageError(f"initrd {path}: the file is empty")
    return data


def place_initrd(ram: Iterable[tuple[int, int]], occupied: Iterable[tuple[int, int]], size: int) -> int:
    """The highest page-aligned guest-physical address where ``size`` bytes
    fit in ``ram`` below 4 GiB without touching an ``occupied`` range."""
    taken = _merged(sorted((base, base + length) for base, length in occupied if length > 0))
    best = None
    for base, length in ram:
        top = min(base + length, INITRD_LIMIT)
        for start in _candidates(base, top, size, taken):
            if best is None or start > best:
                best = start
    if best is None:
        raise ConfigError(f"the initrd ({size} bytes) does not fit in the kernel's RAM below 4 GiB "
                          "beside its image and firmware")
    return best


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in ranges:
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _candidates(base: int, top: int, size: int, taken: list[tuple[int, int]]) -> Iterable[int]:
    """For each gap between occupied ranges in [base, top), the highest aligned start that fits."""
    cursor_top = top
    for low, high in reversed([(-1, base)] + taken):
        gap_low = max(base, high)
        if gap_low < cursor_top:
            start = (cursor_top - size) & ~(layout.PAGE_SIZE - 1)
            if start >= gap_low and start >= base:
                yield start
        cursor_top = min(cursor_top, low)
        if cursor_top <= base:
            return


__all__ = ["MAX_INITRD_BYTES", "load_initrd", "place_initrd"]
