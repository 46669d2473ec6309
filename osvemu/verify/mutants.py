"""Seeded bugs in OSV's policy, hypercall checks and plan: the mutation
check (``osvemu verify --mutants``) applies each and shows which checks
catch it.  A check that no mutant trips would prove nothing.

Each mutant replaces one function or table of the real code, in its module,
for the duration of :func:`activate`; everything that calls it through the
module (the emulator, the proofs, the SPIN model's generator, the attack
campaign's workers) sees the bug.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from osvemu.cpu import templates
from osvemu.osv import hypercalls, ipi_policy
from osvemu.osv import plan as osv_plan_module
from osvemu.platform import apicbus, icr
from osvemu.platform.apicbus import Refusal, RefusalCause, RoutingDecision
from osvemu.platform.icr import BROADCAST_ID, DeliveryMode, Shorthand
from osvemu.platform.lapic import FIRST_LEGAL_VECTOR

#: One replacement: module, attribute, and a function from the original to its mutated replacement.
Patch = tuple[Any, str, Callable[[Any], Any]]


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    patches: tuple[Patch, ...]


def _mutant(name: str, description: str, module: Any, attribute: str, make: Callable[[Any], Any],
            *more: Patch) -> Mutant:
    return Mutant(name, description, ((module, attribute, make), *more))


def _route_within_wrapper(condition: Callable[[Any], bool]) -> Callable[[Any], Any]:
    """_route_within resolving against every APIC of the machine when ``condition(icr)``."""
    def make(original):
        def mutated(message, sender, partition, layout, apics):
            if condition(message):
                return RoutingDecision(tuple(icr.resolve_destinations(message, sender, apics)))
            return original(message, sender, partition, layout, apics)
        return mutated
    return make


def _physical(message) -> bool:
    return message.shorthand == Shorthand.NONE and not message.logical and message.destination != BROADCAST_ID


def _no_foreign_refusal(original):
    def mutated(message, sender, partition, layout, apics):
        decision = original(message, sender, partition, layout, apics)
        return RoutingDecision(decision.deliveries, tuple(r for r in decision.refusals if r.apic_id is None))
    return mutated


def _lowest_priority_global(original):
    def mutated(message, sender, partition, layout, apics):
        decision = original(message, sender, partition, layout, apics)
        if message.delivery_mode == DeliveryMode.LOWEST_PRIORITY and decision.deliveries:
            everyone = icr.resolve_destinations(message, sender, apics)
            return RoutingDecision(tuple(everyone[:1]), decision.refusals)
        return decision
    return mutated


def _cluster_ignores_cluster(original):
    def mutated(destination, ldr, dfr):
        if destination != BROADCAST_ID and (dfr >> 28) != icr.DFR_MODEL_FLAT:
            return bool(destination & (ldr >> 24) & 0xF)
        return original(destination, ldr, dfr)
    return mutated


def _resolve_shorthand(shorthand: Shorthand, keep_sender: bool) -> Callable[[Any], Any]:
    def make(original):
        def mutated(message, sender, apics):
            if message.shorthand == shorthand:
                return sorted(a.apic_id for a in apics if keep_sender or a.apic_id != sender)
            return original(message, sender, apics)
        return mutated
    return make


def _vector_off_by_one(original):
    def mutated(message):
        if message.delivery_mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY) \
                and message.vector == FIRST_LEGAL_VECTOR:
            return Refusal(None, "illegal vector 16", RefusalCause.ARCHITECTURAL)
        return original(message)
    return mutated


def _io_unfiltered(original):
    def mutated(message, partition, layout, apics):
        refusal = apicbus.io_architectural_refusal(message)
        if refusal is not None or message.delivery_mode in ipi_policy.REFUSED_MODES:
            return original(message, partition, layout, apics)
        return RoutingDecision(tuple(icr.resolve_destinations(message, apicbus.NO_SENDER, apics)))
    return mutated


def _handle_wrapper(rewrite: Callable[[Any, Any, Any], Any]) -> Callable[[Any], Any]:
    def make(original):
        def mutated(call, view):
            return rewrite(original, call, view)
        return mutated
    return make


def _ignore_channel_routes(original, call, view):
    if call.number == hypercalls.Hypercall.NOTIFY:
        every_route = frozenset((kernel, vector) for kernel in range(view.kernel_count) for vector in range(256))
        return original(call, dataclasses.replace(view, notify_routes=every_route))
    return original(call, view)


def _no_rate_limit(original, call, view):
    return original(call, dataclasses.replace(view, last_notify_ns=None))


def _unbounded_length(original, call, view):
    number, (a0, a1, a2) = call.number, call.args
    if number == hypercalls.Hypercall.DESCRIBE_SELF and a1 > hypercalls.MAX_BUFFER:
        return original(hypercalls.Call(number, (a0, hypercalls.MAX_BUFFER, a2)), view)
    return original(call, view)


def _channel_index_off_by_one(original, call, view):
    if call.number == hypercalls.Hypercall.DESCRIBE_CHANNEL and call.args[0] == len(view.channels):
        view.channels[call.args[0]]  # the unchecked index: IndexError inside OSV
    return original(call, view)


def _ram_end_off_by_one(original):
    def mutated(view, address, length):
        return any(base <= address and address + length <= base + size + 1 for base, size in view.ram)
    return mutated


def _wrapping_end(original):
    """The C bug: the end of [address, address + length) computed in 64 bits."""
    def mutated(view, address, length):
        end = (address + length) & ((1 << 64) - 1)
        return any(base <= address and end <= base + size for base, size in view.ram)
    return mutated


def _flat_pages_unchecked(original):
    def mutated(address, length):
        return ((address, length),)
    return mutated


def _channels_everywhere(original):
    def mutated(config):
        placed = original(config)
        everyone = tuple(plan.index for plan in config.kernels)
        return [type(channel)(channel.name, channel.gpa, channel.size, everyone, channel.bank,
                              channel.notify_vectors) for channel in placed]
    return mutated


def _shared_low_memory(original):
    banks: dict[tuple[int, str], Any] = {}

    def mutated(size, name):
        if name.endswith("low memory"):
            key = (size, "low")
            if key not in banks:
                banks[key] = original(size, name)
            return banks[key]
        return original(size, name)
    return mutated


MUTANTS = (
    _mutant("broadcast-unfiltered", "the all-including-self shorthand reaches every core of the machine",
           ipi_policy, "_route_within",
           _route_within_wrapper(lambda m: m.shorthand == Shorthand.ALL_INCLUDING_SELF)),
    _mutant("physical-broadcast-unfiltered", "physical destination 0xFF reaches every core of the machine",
           ipi_policy, "_route_within", _route_within_wrapper(
               lambda m: m.shorthand == Shorthand.NONE and not m.logical and m.destination == BROADCAST_ID)),
    _mutant("physical-foreign-delivered", "a physical destination in another partition is delivered",
           ipi_policy, "_route_within", _route_within_wrapper(_physical)),
    _mutant("logical-all-cores", "logical destinations are matched against every core of the machine",
           ipi_policy, "_route_within", _route_within_wrapper(lambda m: m.shorthand == Shorthand.NONE and m.logical)),
    _mutant("init-unfiltered", "INIT is a delivery mode the partition filter forgets",
           ipi_policy, "_route_within", _route_within_wrapper(lambda m: m.delivery_mode == DeliveryMode.INIT)),
    _mutant("startup-unfiltered", "STARTUP is a delivery mode the partition filter forgets",
           ipi_policy, "_route_within", _route_within_wrapper(lambda m: m.delivery_mode == DeliveryMode.STARTUP)),
    _mutant("smi-delivered", "SMI is no longer refused", ipi_policy, "REFUSED_MODES", lambda original: {}),
    _mutant("foreign-refusal-unrecorded", "a foreign physical destination is dropped silently, not refused",
           ipi_policy, "_route_within", lambda original: _no_foreign_refusal(original)),
    _mutant("lowest-priority-global", "lowest-priority arbitration looks at every core's priority",
           ipi_policy, "_route_within", _lowest_priority_global),
    _mutant("cluster-ignored", "the cluster model matches member bits in any cluster",
           icr, "logical_match", _cluster_ignores_cluster),
    _mutant("self-is-all", "the self shorthand reaches the whole partition",
            ipi_policy, "resolve_destinations", _resolve_shorthand(Shorthand.SELF, keep_sender=True)),
    _mutant("excluding-self-includes-self", "all-excluding-self reaches the sender too",
            ipi_policy, "resolve_destinations", _resolve_shorthand(Shorthand.ALL_EXCLUDING_SELF, keep_sender=True)),
    _mutant("vector-off-by-one", "vector 16, the first legal one, is refused as illegal",
           ipi_policy, "architectural_refusal", _vector_off_by_one),
    _mutant("io-unfiltered", "an I/O APIC's message reaches every core of the machine",
           ipi_policy, "route_io_interrupt", _io_unfiltered),
    _mutant("sipi-vector-unchecked", "the STARTUP vector is used as a 16-bit page number",
           templates, "startup_address", lambda original: lambda vector: vector << 16),
    _mutant("channel-routes-ignored", "NOTIFY ignores the channels' notify rules",
           hypercalls, "handle", _handle_wrapper(_ignore_channel_routes)),
    _mutant("rate-limit-dropped", "NOTIFY forgets the rate limit", hypercalls, "handle", _handle_wrapper(_no_rate_limit)),
    _mutant("length-unbounded", "DESCRIBE_SELF accepts any length over 4096",
           hypercalls, "handle", _handle_wrapper(_unbounded_length)),
    _mutant("channel-index-off-by-one", "DESCRIBE_CHANNEL indexes one past the caller's channels",
           hypercalls, "handle", _handle_wrapper(_channel_index_off_by_one)),
    _mutant("ram-end-off-by-one", "a buffer may end one byte past the caller's RAM",
           hypercalls, "_inside_ram", _ram_end_off_by_one),
    _mutant("unsigned-wrap", "a buffer's end is computed modulo 2**64 and paging off does not catch the wrap",
            hypercalls, "_inside_ram", _wrapping_end, (hypercalls, "flat_pages", _flat_pages_unchecked)),
    _mutant("channels-everywhere", "every channel is mapped into every kernel",
           osv_plan_module, "_place_channels", _channels_everywhere),
    _mutant("shared-low-memory", "the kernels share one low-memory bank (trampolines, tables)",
           osv_plan_module, "MemoryBank", _shared_low_memory),
)
BY_NAME = {mutant.name: mutant for mutant in MUTANTS}


@contextlib.contextmanager
def activate(name: str) -> Iterator[Mutant]:
    """The code with mutant ``name`` in place, restored afterwards."""
    mutant = BY_NAME.get(name)
    if mutant is None:
        raise KeyError(f"no mutant {name!r}")
    originals = [(module, attribute, getattr(module, attribute)) for module, attribute, _ in mutant.patches]
    for (module, attribute, make), (_, _, original) in zip(mutant.patches, originals):
        setattr(module, attribute, make(original))
    try:
        yield mutant
    finally:
        for module, attribute, original in reversed(originals):
            setattr(module, attribute, original)


__all__ = ["BY_NAME", "MUTANTS", "Mutant", "activate"]
