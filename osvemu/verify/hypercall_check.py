"""The hypercall proof: every hypercall of every kernel of a layout, through
the real :meth:`osvemu.osv.monitor.OsvMonitor.hypercall` (and so the pure
:func:`osvemu.osv.hypercalls.handle`), over boundary classes of its
arguments (docs/verification.md, "Hypercalls").

The argument: ``handle`` looks at a buffer's linear address ``a`` and length
``L`` only through comparisons of ``L``, ``a`` and ``a + L`` (and of the
translated pieces) with constants: the length bounds, 2**64, and the bounds
of the caller's RAM and of every range it could be aimed at (channels, low
memory, the APIC pages, 4 GiB).  For one length, the outcome is therefore
constant between consecutive thresholds ``c - L`` and ``c``, and every region
holds one of the addresses tried (each threshold, one below and one above):
the address space is covered exactly.  Lengths are tried at every bound and
beside it, and far beyond (2**32, 2**63, 2**64 - 1).  Buffers go through
several page translations a hostile page table can produce: paging off,
page by page, a page mapped onto a channel, onto another range or onto
nothing, a page not writable.  Ids, vectors and statuses are tried at each
bound of their ranges and at 2**64 - 1; NOTIFY at every distance from the
rate limit.  Each call must leave every other kernel's account untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from osvemu.osv import hypercalls
from osvemu.osv.hypercalls import CHANNEL_INFO, MAX_BUFFER, NOTIFY_MIN_INTERVAL_NS, SELF_INFO, Errno, Hypercall, Outcome
from osvemu.osv.monitor import OsvMonitor
from osvemu.osv.plan import osv_plan
from osvemu.platform import layout
from osvemu.platform.plan import MachinePlan
from osvemu.verify.layouts import NamedLayout
from osvemu.verify.outcome import PropertyOutcome
from osvemu.verify.properties import HYPERCALLS

REGISTER_LIMIT = 1 << 64  # RDI, RSI, RDX are 64-bit
PAGE = layout.PAGE_SIZE
#: The errnos docs/hypercalls.md documents for each call.
DOCUMENTED = {
    Hypercall.DESCRIBE_SELF: {Errno.EINVAL, Errno.EFAULT},
    Hypercall.DESCRIBE_CHANNEL: {Errno.ENOENT, Errno.EINVAL, Errno.EFAULT},
    Hypercall.NOTIFY: {Errno.ENOENT, Errno.EINVAL, Errno.EPERM, Errno.EAGAIN},
    Hypercall.SHUTDOWN: set(),
}
UNKNOWN_NUMBERS = (0, 5, 6, 7, 0x7FFF, 1 << 32 | 1, REGISTER_LIMIT - 1)
FAR_VALUES = (1 << 32, 1 << 63, REGISTER_LIMIT - 1)


@dataclass(frozen=True)
class Translation:
    """A page table as the hypercall sees it: linear buffer -> guest-physical pieces."""

    name: str
    pages: Callable[[int, int], tuple[tuple[int, int], ...] | None]


def _paged(remap: Callable[[int, int], int | None]) -> Callable[[int, int], tuple[tuple[int, int], ...] | None]:
    """Page by page; ``remap(page index in the buffer, linear page)`` gives the
    guest-physical page, or None for a page not present or not writable."""
    def pages(address: int, length: int) -> tuple[tuple[int, int], ...] | None:
        if address + length > REGISTER_LIMIT:
            return None
        pieces, cursor, index = [], address, 0
        while cursor < address + length:
            linear_page = cursor & ~(PAGE - 1)
            physical = remap(index, linear_page)
            if physical is None:
                return None
            size = min(linear_page + PAGE, address + length) - cursor
            pieces.append((physical + (cursor - linear_page), size))
            cursor += size
            index += 1
            if index > MAX_BUFFER // PAGE + 2:  # the length was refused before this could matter
                break
        return tuple(pieces)
    return pages


def translations(elsewhere: Iterable[int]) -> list[Translation]:
    """Paging off, identity page by page, and hostile tables: the buffer's
    second page onto each of ``elsewhere`` (channels, ranges past the RAM,
    device pages), or not present."""
    result = [Translation("paging off", hypercalls.flat_pages),
              Translation("identity pages", _paged(lambda index, page: page))]
    for target in elsewhere:
        result.append(Translation(f"second page at {target:#x}",
                                  _paged(lambda index, page, target=target: target if index == 1 else page)))
    result.append(Translation("second page not writable", _paged(lambda index, page: None if index == 1 else page)))
    return result


def prove_hypercalls(named: NamedLayout, plan: MachinePlan | None = None) -> PropertyOutcome:
    outcome = PropertyOutcome(HYPERCALLS.name, named.name, method="boundary classes through the real monitor")
    start = time.perf_counter()
    monitor = (plan or osv_plan(named.config)).monitor
    assert isinstance(monitor, OsvMonitor)
    for kernel in range(len(monitor.partitions)):
        _Caller(named.name, monitor, kernel, outcome).check_all()
    outcome.seconds = time.perf_counter() - start
    return outcome


class _Caller:
    """Every call class of one kernel."""

    def __init__(self, name: str, monitor: OsvMonitor, kernel: int, outcome: PropertyOutcome) -> None:
        self.name, self.monitor, self.kernel, self.outcome = name, monitor, kernel, outcome
        self.partition = monitor.partitions[kernel]
        self.ram = self.partition.image_ram
        channels = [c for p in monitor.partitions for c in p.channels]
        bounds = {0, REGISTER_LIMIT, layout.CONVENTIONAL_END, layout.LOW_MEMORY_END, 1 << 32,
                  layout.IOAPIC_BASE, layout.LAPIC_BASE}
        for base, size in self.ram:
            bounds.update((base, base + size))
        for channel in channels:
            bounds.update((channel.gpa, channel.gpa + channel.size))
        self.bounds = sorted(bounds)
        ram_end = max(base + size for base, size in self.ram)
        self.translations = translations(sorted({c.gpa for c in channels} | {ram_end, layout.LAPIC_BASE}))

    def check_all(self) -> None:
        self._buffers(Hypercall.DESCRIBE_SELF, SELF_INFO.size, lambda a, n: (a, n, 0))
        count = len(self.partition.channels)
        for channel in self._ids(count):
            # A channel the caller lacks is tried with a good and a bad buffer; its own with every class.
            self._buffers(Hypercall.DESCRIBE_CHANNEL, CHANNEL_INFO.size, lambda a, n, c=channel: (c, a, n),
                          channel=channel, exhaustive=0 <= channel < count)
        self._notify()
        for status in (0, 1, 0xFF, 0x100, *FAR_VALUES):
            self._call(Hypercall.SHUTDOWN, (status, 0, 0), self.translations[0],
                       expect=lambda result, status=status: self._expect_shutdown(result, status))
        for number in UNKNOWN_NUMBERS:
            self._call(number, (0, 0, 0), self.translations[0],
                       expect=lambda result: self._expect_errno(result, {Errno.ENOSYS}))

    # ------------------------------------------------------------ buffers
    def _lengths(self, needed: int) -> list[int]:
        return sorted({0, 1, needed - 1, needed, needed + 1, PAGE - 1, PAGE + 1, MAX_BUFFER - 1, MAX_BUFFER,
                       MAX_BUFFER + 1, *FAR_VALUES})

    def _addresses(self, length: int) -> list[int]:
        points = set()
        for bound in self.bounds:
            for threshold in (bound - length, bound):
                points.update((threshold - 1, threshold, threshold + 1))
        return sorted(point for point in points if 0 <= point < REGISTER_LIMIT)

    def _buffers(self, number: Hypercall, needed: int, arguments, channel: int | None = None,
                 exhaustive: bool = True) -> None:
        ram_base, ram_size = self.ram[-1]
        buffers = [(length, address) for length in self._lengths(needed) for address in self._addresses(length)] \
            if exhaustive else [(needed, ram_base), (needed, ram_base + ram_size)]
        for length, address in buffers:
            for translation in self.translations:
                def expect(result: Outcome, address=address, length=length, translation=translation) -> str | None:
                    return self._expect_buffer(result, number, needed, address, length, translation, channel)
                self._call(number, arguments(address, length), translation, expect)

    def _expect_buffer(self, result: Outcome, number: Hypercall, needed: int, address: int, length: int,
                       translation: Translation, channel: int | None) -> str | None:
        violated = set()
        if channel is not None and not 0 <= channel < len(self.partition.channels):
            violated.add(Errno.ENOENT)
        if not needed <= length <= MAX_BUFFER:
            violated.add(Errno.EINVAL)
        else:
            pieces = translation.pages(address, length)
            if pieces is None or not all(self._in_ram(gpa, size) for gpa, size in pieces):
                violated.add(Errno.EFAULT)
        if violated:
            return self._expect_errno(result, violated)
        if result.result != needed:
            return f"returns {result.result}, not the {needed} bytes written"
        data = b"".join(chunk for _, chunk in result.writes)
        if data != self._description(number, channel):
            return f"writes {data.hex()}, not the caller's own description"
        return None

    def _description(self, number: Hypercall, channel: int | None) -> bytes:
        """What the call must write, from the plan (docs/hypercalls.md)."""
        if number == Hypercall.DESCRIBE_SELF:
            ram = [rng for rng in self.partition.ram]
            return SELF_INFO.pack(self.kernel, len(self.monitor.partitions), len(self.partition.plan.apic_ids),
                                  len(self.partition.channels), sum(rng.size for rng in ram), min(r.base for r in ram),
                                  bytes(self.partition.plan.apic_ids[:64]))
        placed = self.partition.channels[channel]
        return CHANNEL_INFO.pack(placed.gpa, placed.size, placed.member_mask)

    def _in_ram(self, gpa: int, size: int) -> bool:
        # The proof's own test, not hypercalls._inside_ram: a bug there must not hide here.
        return any(base <= gpa and gpa + size <= base + extent for base, extent in self.ram)

    # ------------------------------------------------------------ notify
    def _ids(self, count: int) -> list[int]:
        return sorted({0, count - 1, count, count + 1, *FAR_VALUES} - {-1})

    def _notify(self) -> None:
        routes = self.monitor.accounts[self.kernel].notify_routes
        vectors = {0, 15, 16, 31, 32, 33, 254, 255, 256, *FAR_VALUES}
        for _, vector in routes:
            vectors.update((vector - 1, vector, vector + 1))
        for target in self._ids(len(self.monitor.partitions)) + [self.kernel]:
            for vector in sorted(vectors):
                for since in (None, 0, NOTIFY_MIN_INTERVAL_NS - 1, NOTIFY_MIN_INTERVAL_NS):
                    self._notify_once(target, vector, since, routes)

    def _notify_once(self, target: int, vector: int, since: int | None, routes: frozenset[tuple[int, int]]) -> None:
        now = 10 * NOTIFY_MIN_INTERVAL_NS
        self.monitor.accounts[self.kernel].last_notify_ns = None if since is None else now - since
        violated = set()
        if not 0 <= target < len(self.monitor.partitions) or target == self.kernel:
            violated.add(Errno.ENOENT)
        if not hypercalls.FIRST_NOTIFY_VECTOR <= vector <= 0xFF:
            violated.add(Errno.EINVAL)
        if (target, vector) not in routes:
            violated.add(Errno.EPERM)
        if since is not None and since < NOTIFY_MIN_INTERVAL_NS:
            violated.add(Errno.EAGAIN)

        def expect(result: Outcome) -> str | None:
            if violated:
                return self._expect_errno(result, violated)
            if result.result != 0 or result.notify != (target, vector):
                return f"returns {result.result} and notifies {result.notify}, not ({target}, {vector})"
            return None

        self._call(Hypercall.NOTIFY, (target, vector, 0), self.translations[0], expect, now_ns=now)

    # ------------------------------------------------------------ one call
    def _expect_shutdown(self, result: Outcome, status: int) -> str | None:
        if result.result != 0 or result.shutdown != status & 0xFF:
            return f"returns {result.result}, shutdown {result.shutdown}, not status {status & 0xFF}"
        return None

    def _expect_errno(self, result: Outcome, allowed: set[Errno]) -> str | None:
        if result.result >= 0 or -result.result not in allowed:
            names = "/".join(sorted(errno.name for errno in allowed))
            return f"returns {result.result}, not -{names}"
        if not result.error:
            return "fails without a reason for the record"
        return None

    def _call(self, number: int, arguments: tuple[int, int, int], translation: Translation,
              expect: Callable[[Outcome], str | None], now_ns: int = 0) -> None:
        if not self.outcome.proved:  # the proof stops at the first counterexample
            return
        self.outcome.cases += 1
        self.outcome.classes += 1
        accounts = [(a.hypercalls, a.last_notify_ns, dict(a.violations)) for a in self.monitor.accounts]
        exits = self.monitor.exits["hypercall"]
        last_notify = self.monitor.accounts[self.kernel].last_notify_ns
        try:
            result = self.monitor.hypercall(self.kernel, (number, *arguments), now_ns, translation.pages)
            problem = self._safety(result, number) or expect(result)
        except Exception as error:  # noqa: BLE001 - a hypercall raising inside OSV is the failure reported
            problem = f"raises {type(error).__name__}: {error}"
            result = None
        if problem is None:
            problem = self._accounts_consistent(accounts, exits, last_notify, result, now_ns)
        if problem is not None:
            self.outcome.fail(f"layout {self.name}, kernel {self.kernel}: hypercall {number} "
                              f"({', '.join(f'{value:#x}' for value in arguments)}) with {translation.name}: {problem}")

    def _safety(self, result: Outcome, number: int) -> str | None:
        """What no outcome may do, whatever the call."""
        for gpa, data in result.writes:
            if not self._in_ram(gpa, len(data)):
                return f"writes {len(data)} bytes at guest-physical {gpa:#x}, outside the caller's RAM"
        if result.result < 0 and (result.writes or result.notify or result.shutdown is not None):
            return "fails, yet acts"
        if result.result < 0 and number in DOCUMENTED and -result.result not in DOCUMENTED[Hypercall(number)]:
            return f"returns {result.result}, an errno docs/hypercalls.md does not list for this call"
        if result.notify is not None:
            target, vector = result.notify
            if (target, vector) not in self.monitor.accounts[self.kernel].notify_routes or target == self.kernel:
                return f"notifies kernel {target} with vector {vector}, which no channel allows"
        if result.shutdown is not None and number != Hypercall.SHUTDOWN:
            return "shuts the caller down"
        return None

    def _accounts_consistent(self, before: list, exits: int, last_notify: int | None, result: Outcome | None,
                             now_ns: int) -> str | None:
        after = [(a.hypercalls, a.last_notify_ns, dict(a.violations)) for a in self.monitor.accounts]
        for index, (old, new) in enumerate(zip(before, after)):
            if index != self.kernel and old != new:
                return f"changes kernel {index}'s account"
        count, notified, _ = after[self.kernel]
        if count != before[self.kernel][0] + 1 or self.monitor.exits["hypercall"] != exits + 1:
            return "is not counted once"
        wanted = now_ns if result is not None and result.notify is not None else last_notify
        if notified != wanted:
            return f"leaves the last notification at {notified}, not {wanted}"
        return None


__all__ = ["DOCUMENTED", "Translation", "prove_hypercalls", "translations"]
