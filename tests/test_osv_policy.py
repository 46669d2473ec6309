"""OSV's hypercall checks, rule by rule, as pure functions (the ICR policy
is checked exhaustively in tests/test_ipi_policy.py)."""

from __future__ import annotations

import pytest

from osvemu.osv import hypercalls as hc

# ---------------------------------------------------------------------------- hypercalls
VIEW = hc.CallerView(kernel=1, kernel_count=3, apic_ids=(4, 5), ram=((0, 0xA0000), (0x100000, 0x1000000)),
                     channels=((0xE0000000, 0x10000, 0b111),), now_ns=500_000, last_notify_ns=None,
                     notify_routes=frozenset({(0, 0xF8), (2, 0xF8), (0, 0x40)}))


def call(number, *args):
    return hc.handle(hc.Call(number, tuple(args) + (0,) * (3 - len(args))), VIEW)


def test_describe_self_writes_the_callers_facts():
    outcome = call(hc.Hypercall.DESCRIBE_SELF, 0x200000, hc.SELF_INFO.size)
    assert outcome.result == hc.SELF_INFO.size and [w[0] for w in outcome.writes] == [0x200000]
    kernel, count, cores, channels, ram, base, apics = hc.SELF_INFO.unpack(outcome.writes[0][1])
    assert (kernel, count, cores, channels, ram, base) == (1, 3, 2, 1, 0x1000000, 0x100000) and apics[:2] == b"\x04\x05"


@pytest.mark.parametrize("address, length, errno", [
    (0x200000, 8, hc.Errno.EINVAL),                      # shorter than the structure
    (0x200000, 1 << 40, hc.Errno.EINVAL),                # absurd length
    (0x40000000, 128, hc.Errno.EFAULT),                  # not the caller's RAM (another kernel's, or nobody's)
    (0x10FFFF0, 128, hc.Errno.EFAULT),                   # straddles the end of the caller's RAM
    (0xFFFFFFFFFFFFFF00, 128, hc.Errno.EFAULT),          # wraps around
])
def test_describe_self_checks_its_buffer(address, length, errno):
    outcome = call(hc.Hypercall.DESCRIBE_SELF, address, length)
    assert outcome.result == -errno and outcome.writes == () and outcome.error


def with_pages(pages, **changes):
    return hc.CallerView(**{**VIEW.__dict__, "pages": pages, **changes})


def test_buffers_are_translated_through_the_callers_page_tables():
    """A buffer is a linear address: its pages are written where the caller's
    page tables put them, and a page a CPL-0 write cannot reach is EFAULT."""
    split = with_pages(lambda address, length: ((0x300FE0, 0x20), (0x500000, length - 0x20)))
    outcome = hc.handle(hc.Call(hc.Hypercall.DESCRIBE_SELF, (0x7FFFFFE0, 128, 0)), split)
    assert [(gpa, len(data)) for gpa, data in outcome.writes] == [(0x300FE0, 0x20), (0x500000, hc.SELF_INFO.size - 0x20)]
    read_only = with_pages(lambda address, length: None)
    assert hc.handle(hc.Call(hc.Hypercall.DESCRIBE_SELF, (0x200000, 128, 0)), read_only).result == -hc.Errno.EFAULT
    foreign = with_pages(lambda address, length: ((0x200000, 64), (0x40000000, length - 64)))
    assert hc.handle(hc.Call(hc.Hypercall.DESCRIBE_SELF, (0x200000, 128, 0)), foreign).result == -hc.Errno.EFAULT


def test_describe_channel_checks_the_channel_and_the_buffer():
    assert call(hc.Hypercall.DESCRIBE_CHANNEL, 0, 0x200000, 24).writes == ((0x200000, hc.CHANNEL_INFO.pack(
        0xE0000000, 0x10000, 0b111)),)
    assert call(hc.Hypercall.DESCRIBE_CHANNEL, 1, 0x200000, 24).result == -hc.Errno.ENOENT
    assert call(hc.Hypercall.DESCRIBE_CHANNEL, 0, 0xE0000000, 24).result == -hc.Errno.EFAULT  # not RAM
    assert call(hc.Hypercall.DESCRIBE_CHANNEL, 0, 0x200000, 4).result == -hc.Errno.EINVAL


def test_notify_checks_the_target_the_vector_the_channel_rule_and_the_rate():
    assert call(hc.Hypercall.NOTIFY, 0, 0xF8).notify == (0, 0xF8)
    assert call(hc.Hypercall.NOTIFY, 0, 0x40).notify == (0, 0x40)
    assert call(hc.Hypercall.NOTIFY, 1, 0xF8).result == -hc.Errno.ENOENT  # itself
    assert call(hc.Hypercall.NOTIFY, 3, 0xF8).result == -hc.Errno.ENOENT  # no such kernel
    assert call(hc.Hypercall.NOTIFY, 0, 2).result == -hc.Errno.EINVAL  # an exception vector
    assert call(hc.Hypercall.NOTIFY, 0, 0x100).result == -hc.Errno.EINVAL
    assert call(hc.Hypercall.NOTIFY, 2, 0x40).result == -hc.Errno.EPERM  # a vector no channel to kernel 2 allows
    recent = hc.CallerView(**{**VIEW.__dict__, "last_notify_ns": 500_000 - hc.NOTIFY_MIN_INTERVAL_NS + 1})
    assert hc.handle(hc.Call(hc.Hypercall.NOTIFY, (0, 0xF8, 0)), recent).result == -hc.Errno.EAGAIN
    later = hc.CallerView(**{**VIEW.__dict__, "last_notify_ns": 500_000 - hc.NOTIFY_MIN_INTERVAL_NS})
    assert hc.handle(hc.Call(hc.Hypercall.NOTIFY, (0, 0xF8, 0)), later).notify == (0, 0xF8)


def test_shutdown_and_unknown_numbers():
    assert call(hc.Hypercall.SHUTDOWN, 0x1234).shutdown == 0x34
    assert call(99).result == -hc.Errno.ENOSYS
