"""The hypercall interface between a kernel and OSV (docs/hypercalls.md).

A kernel executes ``vmmcall`` (AMD SVM's instruction) with the number in RAX
and arguments in RDI, RSI, RDX; the result comes back in RAX, negative on
error.  Every argument is checked against the caller's own partition before
anything is read or written: pointers must lie wholly in the caller's RAM,
lengths are bounded, ids must exist.  A bad call returns an error code and is
recorded; it never faults OSV or touches another kernel.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from osvemu.platform import layout


class Hypercall(IntEnum):
    DESCRIBE_SELF = 1  # (buffer, length) -> bytes written
    DESCRIBE_CHANNEL = 2  # (channel, buffer, length) -> bytes written
    NOTIFY = 3  # (kernel, vector) -> 0
    SHUTDOWN = 4  # (status) -> does not return


class Errno(IntEnum):
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
#: At most one notification per this many instructions of the sender.
NOTIFY_MIN_INTERVAL = 1000


@dataclass(frozen=True)
class Call:
    number: int
    args: tuple[int, int, int]


@dataclass(frozen=True)
class Outcome:
    result: int  # RAX: >= 0 success, -errno failure
    error: str | None = None  # why, for the record
    write: tuple[int, bytes] | None = None  # guest-physical write to make
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
    instructions: int  # the calling core's retired instructions
    last_notify: int | None  # instruction count at the caller's last notification


def _inside_ram(view: CallerView, address: int, length: int) -> bool:
    return any(base <= address and address + length <= base + size for base, size in view.ram)


def _check_buffer(view: CallerView, address: int, length: int, needed: int) -> Outcome | None:
    if length < needed or length > MAX_BUFFER:
        return Outcome(-Errno.EINVAL, f"buffer length {length} outside {needed}..{MAX_BUFFER}")
    if not _inside_ram(view, address, length):
        return Outcome(-Errno.EFAULT, f"buffer {address:#x}+{length:#x} is not wholly in the caller's RAM")
    return None


def handle(call: Call, view: CallerView) -> Outcome:
    """The pure decision for one hypercall."""
    a0, a1, a2 = call.args
    if call.number == Hypercall.DESCRIBE_SELF:
        bad = _check_buffer(view, a0, a1, SELF_INFO.size)
        if bad:
            return bad
        ram_base = min(base for base, _ in view.ram if base >= layout.LOW_MEMORY_END)
        ram_bytes = sum(size for base, size in view.ram if base >= layout.LOW_MEMORY_END)
        data = SELF_INFO.pack(view.kernel, view.kernel_count, len(view.apic_ids), len(view.channels), ram_bytes,
                              ram_base, bytes(view.apic_ids[:64]))
        return Outcome(len(data), write=(a0, data))
    if call.number == Hypercall.DESCRIBE_CHANNEL:
        if not 0 <= a0 < len(view.channels):
            return Outcome(-Errno.ENOENT, f"channel {a0} does not exist for this kernel")
        bad = _check_buffer(view, a1, a2, CHANNEL_INFO.size)
        if bad:
            return bad
        data = CHANNEL_INFO.pack(*view.channels[a0])
        return Outcome(len(data), write=(a1, data))
    if call.number == Hypercall.NOTIFY:
        if not 0 <= a0 < view.kernel_count or a0 == view.kernel:
            return Outcome(-Errno.ENOENT, f"kernel {a0} is not another kernel")
        if not FIRST_NOTIFY_VECTOR <= a1 <= 0xFF:
            return Outcome(-Errno.EINVAL, f"vector {a1} is outside {FIRST_NOTIFY_VECTOR}..255")
        if view.last_notify is not None and view.instructions - view.last_notify < NOTIFY_MIN_INTERVAL:
            return Outcome(-Errno.EAGAIN, "notifications are limited to one per "
                                          f"{NOTIFY_MIN_INTERVAL} instructions")
        return Outcome(0, notify=(a0, a1))
    if call.number == Hypercall.SHUTDOWN:
        return Outcome(0, shutdown=a0 & 0xFF)
    return Outcome(-Errno.ENOSYS, f"no hypercall {call.number}")


__all__ = ["CHANNEL_INFO", "SELF_INFO", "Call", "CallerView", "Errno", "Hypercall", "Outcome", "handle"]
