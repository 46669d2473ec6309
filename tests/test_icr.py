"""ICR decoding and destination resolution (Intel SDM Vol. 3A 10.6)."""

from osvemu.platform.apicbus import bare_machine_policy
from osvemu.platform.icr import ApicState, DeliveryMode, Icr, Shorthand, logical_match, resolve_destinations

FLAT = 0xFFFFFFFF
CLUSTER = 0x0FFFFFFF


def apics(count=4, ldr=None, dfr=FLAT, ppr=None):
    return [ApicState(i, (ldr(i) if ldr else 0) << 24, dfr, ppr(i) if ppr else 0) for i in range(count)]


def icr(mode=DeliveryMode.FIXED, vector=0x40, logical=False, shorthand=Shorthand.NONE, dest=0):
    return Icr(vector, mode, logical, True, False, shorthand, dest)


def test_decode_fields():
    decoded = Icr.decode(0x000CC6AB | (1 << 11), 0x7F000000)
    assert decoded.vector == 0xAB
    assert decoded.delivery_mode == DeliveryMode.STARTUP
    assert decoded.logical and decoded.level_assert and decoded.level_triggered
    assert decoded.shorthand == Shorthand.ALL_EXCLUDING_SELF
    assert decoded.destination == 0x7F
    assert Icr.decode(0x8500, 0).is_init_deassert


def test_physical_destination_and_broadcast():
    assert resolve_destinations(icr(dest=2), 0, apics()) == [2]
    assert resolve_destinations(icr(dest=9), 0, apics()) == []
    assert resolve_destinations(icr(dest=0xFF), 0, apics()) == [0, 1, 2, 3]


def test_shorthands():
    everyone = apics()
    assert resolve_destinations(icr(shorthand=Shorthand.SELF, dest=3), 1, everyone) == [1]
    assert resolve_destinations(icr(shorthand=Shorthand.ALL_INCLUDING_SELF), 1, everyone) == [0, 1, 2, 3]
    assert resolve_destinations(icr(shorthand=Shorthand.ALL_EXCLUDING_SELF), 1, everyone) == [0, 2, 3]


def test_logical_flat():
    flat = apics(ldr=lambda i: 1 << i)
    assert resolve_destinations(icr(logical=True, dest=0b1010), 0, flat) == [1, 3]
    assert resolve_destinations(icr(logical=True, dest=0xFF), 0, flat) == [0, 1, 2, 3]
    assert logical_match(0x01, 0x01000000, FLAT) and not logical_match(0x02, 0x01000000, FLAT)


def test_logical_cluster():
    # cluster = i // 2, member bit = i % 2
    clustered = apics(ldr=lambda i: ((i // 2) << 4) | (1 << (i % 2)), dfr=CLUSTER)
    assert resolve_destinations(icr(logical=True, dest=0x12), 0, clustered) == [3]
    assert resolve_destinations(icr(logical=True, dest=0x03), 0, clustered) == [0, 1]
    assert resolve_destinations(icr(logical=True, dest=0xF1), 0, clustered) == [0, 2]  # broadcast cluster


def test_lowest_priority_picks_lowest_ppr_then_lowest_id():
    prioritized = apics(ldr=lambda i: 1 << i, ppr=lambda i: [0x50, 0x20, 0x20, 0x10][i])
    assert resolve_destinations(icr(DeliveryMode.LOWEST_PRIORITY, logical=True, dest=0x0F), 0, prioritized) == [3]
    assert resolve_destinations(icr(DeliveryMode.LOWEST_PRIORITY, logical=True, dest=0x07), 0, prioritized) == [1]


def test_bare_policy_refuses_reserved_modes():
    for mode in (DeliveryMode.RESERVED_3, DeliveryMode.EXTINT):
        decision = bare_machine_policy(icr(mode, dest=1), 0, apics())
        assert decision.deliveries == () and decision.refusals
    assert bare_machine_policy(icr(DeliveryMode.NMI, dest=1), 0, apics()).deliveries == (1,)
