"""OSV's monitor: the state behind the exits OSV owns after boot.

The machine hands it each hypercall (decided by the pure
:func:`osvemu.osv.hypercalls.handle` on plain data about the caller) and
each violation (an isolation refusal of the IPI policy, an access outside a
kernel's memory, a refused hypercall), and carries out what it answers.  It
keeps the per-kernel counters and the violation record, and announces
itself in CPUID as KVM and Xen do.  It never touches a core or Unicorn.

The record costs constant memory whatever a kernel does: violations are
counted per kernel and kind without limit, but kept in full only for the
first and the last ``violation_records`` of them.

Its exits are counted per kernel and kind (:meth:`OsvMonitor.count_exit`),
in each kernel's account, so they survive a partitioned run
(:mod:`osvemu.parallel` hands the accounts back as they are) and the
kernels' counts add up to ``exits``.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import ClassVar

from osvemu.cpu.memory import MemoryBank
from osvemu.events import ViolationKind
from osvemu.osv import hypercalls
from osvemu.osv.config import CHANNEL_BASE, KernelPlan
from osvemu.platform import layout
from osvemu.platform.monitor import OWN_KINDS
from osvemu.platform.topology import MemoryRange

#: CPUID leaf 0x40000000: the hypervisor signature ("OSVOSVOSVOSV"), as KVM
#: and Xen announce themselves; CPUID.1:ECX bit 31 says a hypervisor is present.
HYPERVISOR_LEAF = 0x4000_0000
HYPERVISOR_SIGNATURE = b"OSVOSVOSVOSV"
CPUID_HYPERVISOR = 1 << 31
#: Violations kept in full at each end of the record, unless configured.
DEFAULT_VIOLATION_RECORDS = 64


@dataclass(frozen=True)
class ChannelPlacement:
    name: str
    gpa: int  # the same guest-physical address in every member
    size: int
    kernels: tuple[int, ...]  # member kernel indexes
    bank: MemoryBank
    notify_vectors: tuple[int, ...] = ()  # members may NOTIFY each other with these

    @property
    def member_mask(self) -> int:
        return sum(1 << kernel for kernel in self.kernels)


@dataclass(frozen=True)
class PartitionInfo:
    """What OSV knows about one kernel's partition."""

    plan: KernelPlan
    ram: tuple[MemoryRange, ...]  # guest-physical, from 1 MiB
    channels: tuple[ChannelPlacement, ...]

    @property
    def image_ram(self) -> tuple[tuple[int, int], ...]:
        """Guest-physical RAM: the private low 640 KiB, then its RAM."""
        return ((0, layout.CONVENTIONAL_END),) + tuple((rng.base, rng.size) for rng in self.ram)

    def notify_routes(self) -> frozenset[tuple[int, int]]:
        """(kernel, vector) pairs this kernel may NOTIFY: every other member
        of each of its channels, with that channel's vectors."""
        return frozenset((member, vector) for channel in self.channels for member in channel.kernels
                         if member != self.plan.index for vector in channel.notify_vectors)


@dataclass
class Violation:
    kernel: str
    core: int
    kind: ViolationKind
    reason: str
    rip: int | None = None


@dataclass
class KernelAccount:
    hypercalls: int = 0
    violations: Counter[ViolationKind] = field(default_factory=Counter)
    last_notify_ns: int | None = None  # the caller's virtual time at its last NOTIFY
    notify_routes: frozenset[tuple[int, int]] = frozenset()
    exits: Counter[str] = field(default_factory=Counter)  # the monitor exits its cores took, by kind


@dataclass
class OsvMonitor:
    partitions: tuple[PartitionInfo, ...]
    violation_records: int = DEFAULT_VIOLATION_RECORDS
    exits: Counter[str] = field(init=False)
    accounts: list[KernelAccount] = field(init=False)
    _first: list[Violation] = field(init=False, default_factory=list)
    _last: deque[Violation] = field(init=False)
    dropped: int = field(init=False, default=0)  # violations counted but not kept in full
    #: The exit kinds this monitor takes (each reported, 0 or not).
    kinds: ClassVar[tuple[str, ...]] = OWN_KINDS
    #: OSV traps only its own exits (osvemu.osv.trapall traps all).
    traps_all: ClassVar[bool] = False
    mode: ClassVar[str] = "osv"

    def __post_init__(self) -> None:
        self.exits = Counter(dict.fromkeys(self.kinds, 0))
        self.accounts = [KernelAccount(notify_routes=partition.notify_routes(),
                                       exits=Counter(dict.fromkeys(self.kinds, 0))) for partition in self.partitions]
        self._last = deque(maxlen=self.violation_records)

    def count_exit(self, kernel: int, kind: str, count: int = 1) -> None:
        """``count`` exits of ``kind`` by ``kernel``'s cores: its account's and the total."""
        self.exits[kind] += count
        self.accounts[kernel].exits[kind] += count

    @property
    def violations(self) -> list[Violation]:
        """The violations kept in full: the first and the last ``violation_records``."""
        return self._first + list(self._last)

    @property
    def violation_count(self) -> int:
        return sum(sum(account.violations.values()) for account in self.accounts)

    def cpuid(self, leaf: int, subleaf: int, values: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        if leaf == HYPERVISOR_LEAF:
            words = [int.from_bytes(HYPERVISOR_SIGNATURE[i:i + 4], "little") for i in range(0, 12, 4)]
            return HYPERVISOR_LEAF + 1, words[0], words[1], words[2]
        eax, ebx, ecx, edx = values
        if leaf == 1:
            ecx |= CPUID_HYPERVISOR
        return eax, ebx, ecx, edx

    def hypercall(self, kernel: int, registers: tuple[int, int, int, int], now_ns: int,
                  pages: hypercalls.BufferPages) -> hypercalls.Outcome:
        """A CPL-0 VMMCALL from ``kernel``: ``now_ns`` is the calling core's
        virtual time, ``pages`` translates a buffer through its page tables."""
        self.count_exit(kernel, "hypercall")
        account, partition = self.accounts[kernel], self.partitions[kernel]
        account.hypercalls += 1
        number, *args = registers
        view = hypercalls.CallerView(
            kernel, len(self.partitions), partition.plan.apic_ids, partition.image_ram,
            tuple((channel.gpa, channel.size, channel.member_mask) for channel in partition.channels),
            now_ns, account.last_notify_ns, account.notify_routes, pages)
        outcome = hypercalls.handle(hypercalls.Call(number, tuple(args)), view)
        if outcome.notify is not None:
            account.last_notify_ns = now_ns
        return outcome

    @staticmethod
    def call_name(number: int) -> str:
        """The hypercall's name as docs/hypercalls.md spells it, or "unknown"."""
        try:
            return hypercalls.Hypercall(number).name.lower()
        except ValueError:
            return "unknown"

    def refused_hypercall(self, kernel: int) -> None:
        """A VMMCALL the machine refused with #UD (not CPL 0): counted, not serviced."""
        self.count_exit(kernel, "hypercall")
        self.accounts[kernel].hypercalls += 1

    def absorb(self, violations: list[Violation], dropped: int) -> None:
        """Violations recorded elsewhere (a worker process of a partitioned
        run), kept as :meth:`violation` keeps them; their counts are in the
        kernels' accounts."""
        for record in violations:
            self._keep(record)
        self.dropped += dropped

    def _keep(self, record: Violation) -> None:
        """The first ``violation_records`` in full, then the last ones."""
        if len(self._first) < self.violation_records:
            self._first.append(record)
        else:
            if len(self._last) == self._last.maxlen:
                self.dropped += 1
            self._last.append(record)

    def violation(self, kernel: int, core: int, rip: int, kind: ViolationKind, reason: str) -> bool:
        plan = self.partitions[kernel].plan
        self.accounts[kernel].violations[kind] += 1
        self._keep(Violation(plan.name, core, kind, reason, rip))
        return plan.on_violation == "stop"

    def report(self) -> dict:
        return {
            "violations": [{"kernel": v.kernel, "core": v.core, "kind": v.kind.value, "reason": v.reason,
                            "rip": f"{v.rip:#x}" if v.rip is not None else None} for v in self.violations],
            "violations_total": self.violation_count,
            "violations_dropped": self.dropped,
            "violation_records": self.violation_records,
            "monitor": self.mode,
            "monitor_exits": dict(self.exits),
        }

    def report_kernel(self, kernel: int) -> dict:
        partition, account = self.partitions[kernel], self.accounts[kernel]
        return {
            "image": partition.plan.image,
            "cmdline": partition.plan.cmdline,
            "memory": [{"machine": [f"{r.base:#x}", f"{r.end:#x}"], "node": r.node} for r in partition.plan.memory],
            "guest_ram": [[f"{r.base:#x}", f"{r.end:#x}"] for r in partition.ram],
            "on_violation": partition.plan.on_violation,
            "hypercalls": account.hypercalls,
            "violations": sum(account.violations.values()),
            "violations_by_kind": {kind.value: count for kind, count in sorted(account.violations.items(),
                                                                               key=lambda item: item[0].value)},
            "monitor_exits": dict(account.exits),
        }


__all__ = ["CHANNEL_BASE", "ChannelPlacement", "OsvMonitor", "PartitionInfo", "Violation"]
