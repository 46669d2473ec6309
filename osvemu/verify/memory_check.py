"""The memory proof and the boot-time half of the boot protocol, over the
real plan :func:`osvemu.osv.plan.osv_plan` builds for a layout
(docs/verification.md, "Memory" and "Boot").

Memory: each kernel's guest-physical space is a list of mappings onto host
banks (the machine's RAM bank, a private low-memory bank, one bank per
channel), exactly as its cores see it.  Every pair of mappings of two
different kernels is compared in machine terms (same bank, overlapping
offsets): an overlap is allowed only where both map a channel that names
both.  Each kernel's RAM mappings must lie inside the machine ranges its
plan owns; a channel's bank may be mapped only by its members; mappings of
one kernel may not overlap each other; the memory map its firmware
advertises must be its own RAM.

Boot: every kernel's boot CPU is its own first core and the only BSP its
tables name; its tables list only its own cores; and every STARTUP vector
(all 256) starts a core inside the kernel's private low memory.
"""

from __future__ import annotations

import time
from itertools import combinations

from osvemu.cpu import templates
from osvemu.osv.monitor import OsvMonitor
from osvemu.osv.plan import osv_plan
from osvemu.platform import layout
from osvemu.platform.plan import MachinePlan
from osvemu.verify.layouts import NamedLayout
from osvemu.verify.outcome import PropertyOutcome
from osvemu.verify.properties import BOOT_PROTOCOL, MEMORY

VECTORS = range(256)
#: A STARTUP vector names a 4 KiB page (SDM Vol. 3A 10.4.4.1).
STARTUP_PAGE = layout.PAGE_SIZE


def prove_memory(named: NamedLayout, plan: MachinePlan | None = None) -> PropertyOutcome:
    outcome = PropertyOutcome(MEMORY.name, named.name, method="every pair of mappings of the real plan")
    start = time.perf_counter()
    plan = plan or osv_plan(named.config)
    monitor = plan.monitor
    assert isinstance(monitor, OsvMonitor)
    # Membership from the configuration, the source of truth, not from the placement under proof.
    named_members = {channel.name: set(channel.kernels) for channel in named.config.channels}
    channel_members = {id(c.bank): (c.name, named_members.get(c.name, set())) for p in monitor.partitions
                       for c in p.channels}
    machine_bank = plan.memory.bank
    placed = [(index, mapping) for index, kernel in enumerate(plan.kernels) for mapping in kernel.view.mappings]
    for index, kernel in enumerate(plan.kernels):
        owned = [(plan.memory.offset_of(r.base), plan.memory.offset_of(r.base) + r.size)
                 for r in monitor.partitions[index].plan.memory]
        own = [mapping for mapping in kernel.view.mappings]
        for first, second in combinations(own, 2):
            outcome.cases += 1
            if first.gpa < second.end and second.gpa < first.end:
                outcome.fail(f"layout {named.name}, kernel {kernel.name}: guest-physical {first.gpa:#x} and "
                             f"{second.gpa:#x} are mapped twice")
        for mapping in own:
            outcome.cases += 1
            if mapping.bank is machine_bank and not any(lo <= mapping.offset and mapping.offset + mapping.size <= hi
                                                        for lo, hi in owned):
                outcome.fail(f"layout {named.name}, kernel {kernel.name}: guest-physical {mapping.gpa:#x} maps "
                             f"machine RAM its plan does not own")
            members = channel_members.get(id(mapping.bank))
            if members is not None and index not in members[1]:
                outcome.fail(f"layout {named.name}, kernel {kernel.name}: maps channel {members[0]}, which does "
                             "not name it")
        advertised = kernel.firmware.memory
        for rng in advertised:
            outcome.cases += 1
            if not any(m.gpa <= rng.base and rng.end <= m.end and m.bank is not None for m in own):
                outcome.fail(f"layout {named.name}, kernel {kernel.name}: its memory map advertises "
                             f"{rng.base:#x}-{rng.end:#x}, which it does not have")
    for (first_kernel, first), (second_kernel, second) in combinations(placed, 2):
        if first_kernel == second_kernel or first.bank is not second.bank:
            continue
        outcome.cases += 1
        if first.offset < second.offset + second.size and second.offset < first.offset + first.size:
            members = channel_members.get(id(first.bank))
            if members is None or not {first_kernel, second_kernel} <= members[1]:
                outcome.fail(f"layout {named.name}: kernels {plan.kernels[first_kernel].name} and "
                             f"{plan.kernels[second_kernel].name} share {first.bank.name} at offset "
                             f"{max(first.offset, second.offset):#x}, and no channel names both")
    outcome.classes = outcome.cases
    outcome.seconds = time.perf_counter() - start
    return outcome


def prove_boot(named: NamedLayout, plan: MachinePlan | None = None) -> PropertyOutcome:
    outcome = PropertyOutcome(BOOT_PROTOCOL.name, named.name, method="the real plan's tables and every vector")
    start = time.perf_counter()
    plan = plan or osv_plan(named.config)
    owners = {apic: index for index, plan_kernel in enumerate(named.config.kernels) for apic in plan_kernel.apic_ids}
    boot_cpus = [kernel.apic_ids[0] for kernel in plan.kernels]
    if len(set(boot_cpus)) != len(boot_cpus):
        outcome.fail(f"layout {named.name}: two kernels share a boot CPU ({boot_cpus})")
    for index, kernel in enumerate(plan.kernels):
        outcome.cases += 1
        if owners.get(kernel.apic_ids[0]) != index or kernel.firmware.bsp_apic_id != kernel.apic_ids[0]:
            outcome.fail(f"layout {named.name}, kernel {kernel.name}: its tables name APIC "
                         f"{kernel.firmware.bsp_apic_id} as BSP, its boot CPU is {kernel.apic_ids[0]}")
        listed = {cpu.apic_id for cpu in kernel.firmware.cpus}
        if listed != set(kernel.apic_ids):
            outcome.fail(f"layout {named.name}, kernel {kernel.name}: its tables list APICs {sorted(listed)}, "
                         f"it owns {sorted(kernel.apic_ids)}")
        low = [m for m in kernel.view.mappings if m.gpa < layout.LOW_MEMORY_END]
        private = [m for m in low if m.gpa == 0 and m.size == layout.LOW_MEMORY_END]
        shared = any(m.bank is private[0].bank for other in plan.kernels if other is not kernel
                     for m in other.view.mappings) if private else True
        if not private or shared:
            outcome.fail(f"layout {named.name}, kernel {kernel.name}: its low MiB is not a private bank")
            continue
        for vector in VECTORS:
            outcome.cases += 1
            address = templates.startup_address(vector)
            if not (0 <= address and address + STARTUP_PAGE <= layout.LOW_MEMORY_END):
                outcome.fail(f"layout {named.name}: STARTUP vector {vector:#04x} starts a core at {address:#x}, "
                             "outside the kernel's low memory")
                break
    outcome.classes = outcome.cases
    outcome.seconds = time.perf_counter() - start
    return outcome


__all__ = ["prove_boot", "prove_memory"]
