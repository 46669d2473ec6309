"""OSV's ICR policy and hypercall checks, rule by rule, as pure functions."""

from __future__ import annotations

import pytest

from osvemu.osv import hypercalls as hc
from osvemu.osv.ipi_policy import PartitionLayout, route_ipi
from osvemu.platform.icr import ApicState, DeliveryMode, Icr, Shorthand

# Two partitions of four cores: APIC 0-3 and 4-7.  Both number their CPUs
# 0-3 in the logical flat model, as two real kernels would.
LAYOUT = PartitionLayout({apic: apic // 4 for apic in range(8)})
FLAT = [ApicState(apic, (1 << (apic % 4)) << 24, 0xFFFFFFFF, ppr=0x10 * (apic % 4)) for apic in range(8)]
CLUSTER = [ApicState(apic, ((apic // 4) << 28) | (1 << (24 + apic % 4)), 0x0FFFFFFF) for apic in range(8)]


def icr(mode=DeliveryMode.FIXED, vector=0x40, destination=0, logical=False, shorthand=Shorthand.NONE) -> Icr:
    low = vector | (int(mode) << 8) | (int(logical) << 11) | (1 << 14) | (int(shorthand) << 18)
    return Icr.decode(low, destination << 24)


def route(sender, **fields):
    return route_ipi(icr(**fields), sender, LAYOUT, FLAT)


@pytest.mark.parametrize("mode", [DeliveryMode.FIXED, DeliveryMode.NMI, DeliveryMode.INIT, DeliveryMode.STARTUP])
def test_physical_own_core_is_delivered_exactly_as_on_the_bare_machine(mode):
    decision = route(1, mode=mode, destination=2)
    assert decision.deliveries == (2,) and decision.refusals == ()


@pytest.mark.parametrize("mode", [DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY, DeliveryMode.NMI,
                                  DeliveryMode.INIT, DeliveryMode.STARTUP])
def test_physical_foreign_core_is_refused(mode):
    decision = route(1, mode=mode, destination=5)
    assert decision.deliveries == ()
    assert decision.refusals[0].apic_id == 5 and "another partition" in decision.refusals[0].reason


def test_physical_destination_of_no_processor_is_refused():
    decision = route(1, destination=0x30)
    assert decision.deliveries == () and "no processor" in decision.refusals[0].reason


def test_broadcast_id_reaches_own_cores_only():
    decision = route(5, destination=0xFF)
    assert decision.deliveries == (4, 5, 6, 7) and decision.refusals == ()


@pytest.mark.parametrize("shorthand, expected", [(Shorthand.SELF, (6,)), (Shorthand.ALL_INCLUDING_SELF, (4, 5, 6, 7)),
                                                 (Shorthand.ALL_EXCLUDING_SELF, (4, 5, 7))])
def test_shorthands_stay_inside_the_partition(shorthand, expected):
    for mode in (DeliveryMode.FIXED, DeliveryMode.NMI, DeliveryMode.INIT):
        decision = route(6, shorthand=shorthand, mode=mode)
        assert decision.deliveries == expected and decision.refusals == ()


def test_logical_flat_resolves_against_own_cores_only():
    # logical IDs 0b0011 exist in both partitions: only partition 1's CPUs 0 and 1 (APIC 4, 5) are reached
    decision = route(6, logical=True, destination=0b0011)
    assert decision.deliveries == (4, 5) and decision.refusals == ()


def test_logical_cluster_resolves_against_own_cores_only():
    # cluster 0, members 0b0101: APIC 0 and 2 -- but the sender is in partition 1 (cluster 1)
    foreign = route_ipi(icr(logical=True, destination=0x05), 4, LAYOUT, CLUSTER)
    assert foreign.deliveries == ()
    own = route_ipi(icr(logical=True, destination=0x15), 4, LAYOUT, CLUSTER)
    assert own.deliveries == (4, 6)


def test_lowest_priority_picks_among_own_cores():
    # APIC 4 has the lowest PPR in partition 1 (APIC 0, in partition 0, has the same)
    decision = route(7, mode=DeliveryMode.LOWEST_PRIORITY, logical=True, destination=0xFF)
    assert decision.deliveries == (4,)


@pytest.mark.parametrize("mode", [DeliveryMode.SMI, DeliveryMode.EXTINT, DeliveryMode.RESERVED_3])
def test_smi_extint_and_reserved_modes_are_refused(mode):
    for destination in (1, 5, 0xFF):
        decision = route(1, mode=mode, destination=destination)
        assert decision.deliveries == () and len(decision.refusals) == 1


def test_a_sender_outside_every_partition_is_refused():
    decision = route_ipi(icr(destination=1), 0x20, LAYOUT, FLAT)
    assert decision.deliveries == () and "belongs to no partition" in decision.refusals[0].reason


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
