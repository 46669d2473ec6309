"""OSV's hypercall checks, rule by rule, as pure functions (the ICR policy
is checked exhaustively in tests/test_ipi_policy.py)."""

from __future__ import annotations

import pytest

from osvemu.osv import hypercalls as hc

# ---------------------------------------------------------------------------- hypercalls
VIEW = hc.CallerView(kernel=1, kernel_count=3, apic_ids=(4, 5), ram=((0, 0xA0000), (0x100000, 0x1000000)),
                     channels=((0xE0000000, 0x10000, 0b111),), instructions=50_000, last_notify=None)


def call(number, *args):
    return hc.handle(hc.Call(number, tuple(args) + (0,) * (3 - len(args))), VIEW)


def test_describe_self_writes_the_callers_facts():
    outcome = call(hc.Hypercall.DESCRIBE_SELF, 0x200000, hc.SELF_INFO.size)
    assert outcome.result == hc.SELF_INFO.size and outcome.write[0] == 0x200000
    kernel, count, cores, channels, ram, base, apics = hc.SELF_INFO.unpack(outcome.write[1])
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
    assert outcome.result == -errno and outcome.write is None and outcome.error


def test_describe_channel_checks_the_channel_and_the_buffer():
    assert call(hc.Hypercall.DESCRIBE_CHANNEL, 0, 0x200000, 24).write == (0x200000, hc.CHANNEL_INFO.pack(
        0xE0000000, 0x10000, 0b111))
    assert call(hc.Hypercall.DESCRIBE_CHANNEL, 1, 0x200000, 24).result == -hc.Errno.ENOENT
    assert call(hc.Hypercall.DESCRIBE_CHANNEL, 0, 0xE0000000, 24).result == -hc.Errno.EFAULT  # not RAM
    assert call(hc.Hypercall.DESCRIBE_CHANNEL, 0, 0x200000, 4).result == -hc.Errno.EINVAL


def test_notify_checks_the_target_the_vector_and_the_rate():
    assert call(hc.Hypercall.NOTIFY, 0, 0xF8).notify == (0, 0xF8)
    assert call(hc.Hypercall.NOTIFY, 1, 0xF8).result == -hc.Errno.ENOENT  # itself
    assert call(hc.Hypercall.NOTIFY, 3, 0xF8).result == -hc.Errno.ENOENT  # no such kernel
    assert call(hc.Hypercall.NOTIFY, 0, 2).result == -hc.Errno.EINVAL  # an exception vector
    assert call(hc.Hypercall.NOTIFY, 0, 0x100).result == -hc.Errno.EINVAL
    recent = hc.CallerView(**{**VIEW.__dict__, "last_notify": 49_900})
    assert hc.handle(hc.Call(hc.Hypercall.NOTIFY, (0, 0xF8, 0)), recent).result == -hc.Errno.EAGAIN


def test_shutdown_and_unknown_numbers():
    assert call(hc.Hypercall.SHUTDOWN, 0x1234).shutdown == 0x34
    assert call(99).result == -hc.Errno.ENOSYS
