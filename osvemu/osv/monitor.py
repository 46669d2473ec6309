"""The partitioned machine: OSV installed on the Opteron platform.

Each kernel gets a guest-physical address space built from ranges mapped
onto machine memory, as nested paging does in the paper: a private low MiB
(its own firmware tables, MP floating pointer and AP trampoline page), its
RAM from 1 MiB up, and its shared channels high in the 32-bit hole.  Its
cores map exactly that; anything else is a memory violation.  OSV writes
each kernel its own tables and memory map, loads its image and starts its
BSP; afterwards it sees only ICR writes (the routing policy of
:mod:`osvemu.osv.ipi_policy`), hypercalls and violations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osvemu.cpu.core import Core, CoreState
from osvemu.cpu.memory import Mapping, MemoryBank, MemoryView
from osvemu.cpu.paging import TranslationFault
from osvemu.errors import GuestFault, ImageError
from osvemu.image import KernelImage, load_image
from osvemu.osv import hypercalls
from osvemu.osv.config import KernelPlan, OsvConfig
from osvemu.osv.ipi_policy import PartitionLayout, make_policy
from osvemu.platform import layout
from osvemu.platform.firmware import Firmware, FirmwareView
from osvemu.platform.machine import ExitRequest, Machine, MachineConfig, load_image_into, write_firmware
from osvemu.platform.topology import MemoryRange
from osvemu.platform.uart import Console, Uart16550

#: Guest-physical base of the shared channels: in the 32-bit PCI hole, typed
#: reserved in every member's memory map.
CHANNEL_BASE = 0xE000_0000
#: CPUID leaf 0x40000000: the hypervisor signature ("OSVOSVOSVOSV"), as KVM
#: and Xen announce themselves; CPUID.1:ECX bit 31 says a hypervisor is present.
HYPERVISOR_LEAF = 0x4000_0000
HYPERVISOR_SIGNATURE = b"OSVOSVOSVOSV"
CPUID_HYPERVISOR = 1 << 31
MAX_GUEST_RAM = CHANNEL_BASE - layout.LOW_MEMORY_END
#: The exit status of a kernel stopped for a violation (or an impossible fetch).
VIOLATION_STATUS = 0xFF


@dataclass
class Violation:
    kernel: str
    core: int
    kind: str  # "memory", "ipi", "hypercall"
    reason: str
    rip: int | None = None


@dataclass
class Partition:
    plan: KernelPlan
    index: int
    low: MemoryBank
    view: MemoryView
    ram: list[tuple[int, int, int]]  # guest-physical (base, size, node)
    console: Console
    uart: Uart16550
    cores: list[Core] = field(default_factory=list)
    image: KernelImage | None = None
    firmware: Firmware | None = None
    status: int | None = None  # exit status once stopped
    hypercalls: int = 0
    violations: int = 0
    ipis_refused: int = 0
    last_notify: int | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def running(self) -> bool:
        return self.status is None


class OsvMachine(Machine):
    def __init__(self, config: OsvConfig, console=None) -> None:
        self.osv = config
        self._print_osv = console
        self.partitions: list[Partition] = []
        self._by_apic: dict[int, Partition] = {}
        self.violations: list[Violation] = []
        self.monitor_exits: dict[str, int] = {"icr": 0, "hypercall": 0, "violation": 0}
        self._channel_banks: list[MemoryBank] = []
        self._channel_gpa: list[int] = []
        super().__init__(MachineConfig(config.topology, "", console))
        self.ipi_layout = PartitionLayout({apic: p.index for p in self.partitions for apic in p.plan.apic_ids})
        self.bus.policy = make_policy(self.ipi_layout)
        for core in self.cores:
            self._by_apic[core.apic_id].cores.append(core)

    # ------------------------------------------------------------ address spaces
    def _view_for(self, cpu) -> MemoryView:
        if not self.partitions:
            self._build_partitions()
        partition = self._by_apic.get(cpu.apic_id)
        return partition.view if partition else MemoryView([])

    def _build_partitions(self) -> None:
        gpa = CHANNEL_BASE
        for channel in self.osv.channels:
            self._channel_banks.append(MemoryBank(channel.size, f"channel {channel.name}"))
            self._channel_gpa.append(gpa)
            gpa += channel.size
        for index, plan in enumerate(self.osv.kernels):
            if plan.ram_bytes > MAX_GUEST_RAM:
                raise ImageError(f"kernel {plan.name!r}: {plan.ram_bytes >> 20} MiB of RAM is more than a "
                                 f"partition's {MAX_GUEST_RAM >> 20} MiB below the channels")
            low = MemoryBank(layout.LOW_MEMORY_END, f"{plan.name} low memory")
            mappings = [Mapping(0, layout.LOW_MEMORY_END, low, 0)]
            ram, cursor = [], layout.LOW_MEMORY_END
            for rng in plan.memory:
                mappings.append(Mapping(cursor, rng.size, self.bank, self.machine_offset(rng.base)))
                ram.append((cursor, rng.size, rng.node))
                cursor += rng.size
            for number, channel in enumerate(self.osv.channels):
                if index in channel.kernels:
                    mappings.append(Mapping(self._channel_gpa[number], channel.size, self._channel_banks[number], 0))
            partition = Partition(plan, index, low, MemoryView(mappings), ram, Console(lambda line: None),
                                  Uart16550(Console(lambda line: None)))
            partition.console = Console(self._console_sink(partition), plan.name)
            partition.uart = Uart16550(partition.console)
            self.partitions.append(partition)
            for apic in plan.apic_ids:
                self._by_apic[apic] = partition

    def _console_sink(self, partition: Partition):
        def emit(line: str) -> None:
            self._print(line)
            self.console.text.extend(line.encode() + b"\n")
            if self.events:
                self.emit(partition.cores[0], "uart", {"line": line})
        return emit

    def channels_of(self, partition: Partition) -> list[tuple[int, int, int]]:
        out = []
        for number, channel in enumerate(self.osv.channels):
            if partition.index in channel.kernels:
                mask = sum(1 << k for k in channel.kernels)
                out.append((self._channel_gpa[number], channel.size, mask))
        return out

    def firmware_view(self, partition: Partition) -> FirmwareView:
        """The machine as this kernel is told about it (its cores, its RAM at
        its guest-physical addresses, its channels reserved)."""
        cpus = tuple(self.topology.cpu_by_apic_id(apic) for apic in partition.plan.apic_ids)
        first_node = partition.ram[0][2]
        memory = (MemoryRange(0, layout.CONVENTIONAL_END, first_node),) + tuple(
            MemoryRange(base, size, node) for base, size, node in partition.ram)
        reserved = tuple((gpa, size) for gpa, size, _ in self.channels_of(partition))
        return FirmwareView(cpus, cpus[0].apic_id, memory, None, reserved)

    # ------------------------------------------------------------ boot
    def boot_all(self, images: dict[str, KernelImage] | None = None) -> None:
        images = images or {}
        cache: dict[str, KernelImage] = {}
        for partition in self.partitions:
            path = partition.plan.image
            image = images.get(partition.name) or cache.get(path) or load_image(path)
            cache[path] = image
            firmware = write_firmware(partition.view, self.firmware_view(partition), partition.plan.cmdline)
            ram = [(0, layout.CONVENTIONAL_END)] + [(base, size) for base, size, _ in partition.ram]
            load_image_into(partition.view, image, ram, partition.cores)
            partition.image, partition.firmware = image, firmware
            partition.cores[0].enter_pvh(image.entry32, firmware.start_info_address)
        self.image = self.partitions[0].image

    def boot(self, image: KernelImage) -> None:
        self.boot_all({p.name: image for p in self.partitions})

    def partition_of(self, core: Core) -> Partition:
        return self._by_apic[core.apic_id]

    # ------------------------------------------------------------ the platform, per partition
    def _uart_for(self, core: Core) -> Uart16550:
        """Each kernel has its own COM1, its lines prefixed with its name."""
        return self.partition_of(core).uart

    def request_exit(self, status: int, core: Core) -> None:
        """A kernel's exit ends that kernel; the run ends with the last one."""
        self.shutdown(self.partition_of(core), status, core)

    def shutdown(self, partition: Partition, status: int, caller: Core | None = None) -> None:
        if not partition.running:
            return
        partition.status = status
        for core in partition.cores:
            if core.state is not CoreState.STOPPED:
                core.state = CoreState.STOPPED
            if core is caller:
                core.request_stop()
        self.emit(caller or partition.cores[0], "exit", {"status": status, "kernel": partition.name})
        partition.console.close()
        if all(not p.running for p in self.partitions) and self.exit is None:
            final = next((p.status for p in self.partitions if p.status), 0)
            self.exit = ExitRequest(final, (caller or partition.cores[0]).index)

    def cpuid(self, core: Core, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        if leaf == HYPERVISOR_LEAF:
            words = [int.from_bytes(HYPERVISOR_SIGNATURE[i:i + 4], "little") for i in range(0, 12, 4)]
            return HYPERVISOR_LEAF + 1, words[0], words[1], words[2]
        eax, ebx, ecx, edx = super().cpuid(core, leaf, subleaf)
        if leaf == 1:
            ecx |= CPUID_HYPERVISOR
        return eax, ebx, ecx, edx

    def shared_devices(self) -> list:
        """No device is shared between partitions: the IOAPIC belongs to none
        (a register file every kernel could write would be a covert channel)."""
        return []

    def symbolize(self, address: int) -> str | None:
        return self.image.symbols.lookup(address) if self.image else None

    # ------------------------------------------------------------ interception
    def _send_ipi(self, sender, icr) -> None:
        self.monitor_exits["icr"] += 1
        decision = self.bus.send(sender, icr)
        if decision.refusals:
            core = next(c for c in self.cores if c.apic_id == sender.apic_id)
            partition = self.partition_of(core)
            partition.ipis_refused += len(decision.refusals)
            for refusal in decision.refusals:
                self._violation(core, "ipi", f"{icr.describe()}: {refusal.reason}")

    def hypercall(self, core: Core) -> bool:
        self.monitor_exits["hypercall"] += 1
        partition = self.partition_of(core)
        partition.hypercalls += 1
        number, *args = core.hypercall_registers()
        call = hypercalls.Call(number, tuple(args))
        view = hypercalls.CallerView(
            partition.index, len(self.partitions), partition.plan.apic_ids,
            ((0, layout.CONVENTIONAL_END),) + tuple((b, s) for b, s, _ in partition.ram),
            tuple(self.channels_of(partition)), core.retired_now(), partition.last_notify)
        outcome = hypercalls.handle(call, view)
        if outcome.error:
            self._violation(core, "hypercall", f"hypercall {call.number}: {outcome.error}")
        if outcome.write is not None:
            partition.view.write(*outcome.write)
        if outcome.notify is not None:
            target, vector = outcome.notify
            partition.last_notify = core.retired_now()
            self.partitions[target].cores[0].lapic.accept_fixed(vector)
        core.finish_hypercall(outcome.result)
        if outcome.shutdown is not None:
            self.shutdown(partition, outcome.shutdown, core)
        return True

    def memory_violation(self, core: Core, kind: str, address: int, size: int) -> bool:
        """An access outside the kernel's address space: refused (reads see
        all ones, writes vanish) and recorded; with on_violation = "stop" the
        kernel is stopped instead."""
        self.monitor_exits["violation"] += 1
        partition = self.partition_of(core)
        try:
            physical = core.translate(address)
        except (TranslationFault, GuestFault):
            physical = address
        self._violation(core, "memory", f"{kind} {physical:#x} ({size} bytes) outside the kernel's memory")
        if not partition.running:
            return False  # the stop policy ended it
        if kind == "fetch from":  # there is no instruction to run instead
            self.shutdown(partition, VIOLATION_STATUS, core)
            return False
        core.map_scratch_page(physical)
        return True

    def _violation(self, core: Core, kind: str, reason: str) -> None:
        partition = self.partition_of(core)
        partition.violations += 1
        rip = core.current_rip()
        self.violations.append(Violation(partition.name, core.index, kind, reason, rip))
        self.emit(core, "osv", {"kind": kind, "reason": reason, "kernel": partition.name})
        if partition.plan.on_violation == "stop":
            self.shutdown(partition, VIOLATION_STATUS, core)


__all__ = ["CHANNEL_BASE", "OsvMachine", "Partition", "Violation"]
