"""The hypercall interface between a kernel and OSV (docs/hypercalls.md).

A kernel executes ``vmmcall`` (AMD SVM's instruction) at CPL 0 with the
number in RAX and arguments in RDI, RSI, RDX; the result comes back in RAX,
negative on error.  (From CPL 3 or real mode the machine refuses the call
with #UD before it reaches :func:`handle`.)  Every argument is checked
against the caller's own partition before anything is read or written: a
buffer is a linear address that must be writable at CPL 0 through the
caller's page tables and land wholly in its RAM, lengths are bounded, ids
must exist, and a NOTIFY must follow a channel's notify rule.  A bad call
returns an error code and is recorded; it never faults OSV or touches
another kernel.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from osvemu.platform import layout


class Hypercall(IntEnum):
    DESCRIBE_SELF = 1  # (buffer, length) -> bytes written
    DESCRIBE_CHANNEL = 2  # (channel, buffer, length) -> bytes written
    NOTIFY = 3  # (kernel, vector) -> 0
    SHUTDOWN = 4  # (status) -> does not return


class Errno(IntEnum):
    EPERM = 1
    ENOENT = 2
    EAGAIN = 11
    EFAULT = 14
    EINVAL = 22
    ENOSYS = 38


#: DESCRIBE_SELF: kernel id, kernel count, core count, channel count, RAM
#: bytes, RAM guest-physical base, then the APIC IDs (one byte each, 64 max).
SELF_INFO = struct.Struct("<IIIIQQ64s")
#: DESCRIBE_CHANNEL: guest-physical address, size, bit mask of member kernels.
CHANNEL_INFO = struct.Struct("<QQQ")
MAX_BUFFER = 4096
FIRST_NOTIFY_VECTOR = 32
#: At most one notification per this much of the sending core's virtual time
#: (1,000 instructions' worth in deterministic mode; the same in fast mode).
NOTIFY_MIN_INTERVAL_NS = 10_000

#: A buffer's linear address and length -> the guest-physical (address, length)
#: pieces a CPL-0 write reaches through the caller's page tables, or None when
#: a page is not present or not writable.
BufferPages = Callable[[int, int], "tuple[tuple[int, int], ...] | None"]


def flat_pages(address: int, length: int) -> tuple[tuple[int, int], ...] | None:
    """Paging off: linear = physical (no wrap-around past 2**64)."""
    return ((address, length),) if address + length <= 1 << 64 else None


@dataclass(frozen=True)
class Call:
    number: int
    args: tuple[int, int, int]


@dataclass(frozen=True)
class Outcome:
    result: int  # RAX: >= 0 success, -errno failure
    error: str | None = None  # why, for the record
    writes: tuple[tuple[int, bytes], ...] = ()  # guest-physical writes to make, in the caller's RAM
    notify: tuple[int, int] | None = None  # (kernel, vector) to interrupt
    shutdown: int | None = None  # the caller stops with this status


@dataclass(frozen=True)
class CallerView:
    """What a hypercall may know about its caller and the system: plain data."""

    kernel: int
    kernel_count: int
    apic_ids: tuple[int, ...]
    ram: tuple[tuple[int, int], ...]  # guest-physical (base, size)
    channels: tuple[tuple[int, int, int], ...]  # (gpa, size, member mask) of the caller's channels
    now_ns: int  # the calling core's virtual time
    last_notify_ns: int | None  # virtual time of the caller's last notification
    #: (kernel, vector) pairs the caller's channels let it notify.
    notify_routes: frozenset[tuple[int, int]] = frozenset()
    pages: BufferPages = field(default=flat_pages, compare=False)


def _inside_ram(view: CallerView, address: int, length: int) -> bool:
    return any(base <= address and address + length <= base + size for base, size in view.ram)


def _buffer(view: CallerView, address: int, length: int, needed: int) -> tuple[tuple[int, int], ...] | Outcome:
    """The buffer's guest-physical pieces, or the failing Outcome."""
    if length < needed or length > MAX_BUFFER:
        return Outcome(-Errno.EINVAL, f"buffer length {length} outside {needed}..{MAX_BUFFER}")
    pieces = view.pages(address, length)
    if pieces is None:
        return Outcome(-Errno.EFAULT, f"buffer {address:#x}+{length:#x} is not writable at CPL 0 through the "
                                      "caller's page tables")
    for gpa, size in pieces:
        if not _inside_ram(view, gpa, size):
            return Outcome(-Errno.EFAULT, f"buffer {address:#x}+{length:#x} reaches guest-physical {gpa:#x}, "
                                          "not the caller's RAM")
    return pieces


def _write(pieces: tuple[tuple[int, int], ...], data: bytes) -> tuple[tuple[int, bytes], ...]:
    """``data`` laid over the buffer's pieces (the rest of the buffer untouched)."""
    writes, offset = [], 0
    for gpa, size in pieces:
        if offset >= len(data):
            break
        writes.append((gpa, data[offset:offset + size]))
        offset += size
    return tuple(writes)


def handle(call: Call, view: CallerView) -> Outcome:
    """The pure decision for one hypercall."""
    a0, a1, a2 = call.args
    if call.number == Hypercall.DESCRIBE_SELF:
        pieces = _buffer(view, a0, a1, SELF_INFO.size)
        if isinstance(pieces, Outcome):
            return pieces
        ram_base = min(base for base, _ in view.ram if base >= layout.LOW_MEMORY_END)
        ram_bytes = sum(size for base, size in view.ram if base >= layout.LOW_MEMORY_END)
        data = SELF_INFO.pack(view.kernel, view.kernel_count, len(view.apic_ids), len(view.channels), ram_bytes,
                              ram_base, bytes(view.apic_ids[:64]))
        return Outcome(len(data), writes=_write(pieces, data))
    if call.number == Hypercall.DESCRIBE_CHANNEL:
        if not 0 <= a0 < len(view.channels):
            return Outcome(-Errno.ENOENT, f"channel {a0} does not exist for this kernel")
        pieces = _buffer(view, a1, a2, CHANNEL_INFO.size)
        if isinstance(pieces, Outcome):
            return pieces
        data = CHANNEL_INFO.pack(*view.channels[a0])
        return Outcome(len(data), writes=_write(pieces, data))
    if call.number == Hypercall.NOTIFY:
        if not 0 <= a0 < view.kernel_count or a0 == view.kernel:
            return Outcome(-Errno.ENOENT, f"kernel {a0} is not another kernel")
        if not FIRST_NOTIFY_VECTOR <= a1 <= 0xFF:
            return Outcome(-Errno.EINVAL, f"vector {a1} is outside {FIRST_NOTIFY_VECTOR}..255")
        if (a0, a1) not in view.notify_routes:
            return Outcome(-Errno.EPERM, f"no channel lets this kernel notify kernel {a0} with vector {a1:#x}")
        if view.last_notify_ns is not None and view.now_ns - view.last_notify_ns < NOTIFY_MIN_INTERVAL_NS:
            return Outcome(-Errno.EAGAIN, f"notifications are limited to one per {NOTIFY_MIN_INTERVAL_NS} ns "
                                          "of virtual time")
        return Outcome(0, notify=(a0, a1))
    if call.number == Hypercall.SHUTDOWN:
        return Outcome(0, shutdown=a0 & 0xFF)
    return Outcome(-Errno.ENOSYS, f"no hypercall {call.number}")


__all__ = ["CHANNEL_INFO", "NOTIFY_MIN_INTERVAL_NS", "SELF_INFO", "BufferPages", "Call", "CallerView", "Errno",
           "Hypercall", "Outcome", "flat_pages", "handle"]
