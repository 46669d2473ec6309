"""The Opteron machine built from a :class:`~osvemu.platform.plan.MachinePlan`:
cores, their local APICs, the APIC bus, each kernel's COM1 and exit port,
the shared devices and the firmware tables.

It is the cores' :class:`~osvemu.cpu.surroundings.Platform`: every exit a
core takes arrives here, is answered by a device or routed on the APIC bus,
and the exits a monitor owns (VMMCALL, violations, its CPUID leaves) go to
the plan's monitor, whose answer the machine carries out.  Data flows one
way: cores -> machine -> (bus policy | monitor) -> machine -> cores.

The machine counts the monitor's exits where it sees them, per kernel
(``Monitor.count_exit``), while the kernel is alive: what the rest of a
block runs after its kernel ended is no exit, as under a VMM, which stops
the guest at the exit that ends it.  Under a monitor that ``traps_all``
it also counts its cores' local APIC and IOAPIC accesses, port I/O, CPUID,
MSR accesses, HLTs and interrupt deliveries (``_trap`` and
``_settle_core_counts``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from osvemu.clock import CoreClock
from osvemu.cpu.core import Core, CoreState
from osvemu.cpu.delivery import Mode
from osvemu.cpu.lifecycle import SPINNING
from osvemu.cpu.memory import MemoryView
from osvemu.cpu.surroundings import Access, Unmapped
from osvemu.cpu.x86 import APIC_BASE_BSP, APIC_BASE_ENABLE
from osvemu.events import (
    ConsoleLine,
    Event,
    EventBus,
    Halted,
    InterruptTaken,
    IpiReceived,
    IpiSent,
    KernelExit,
    KernelRestarted,
    OsvHypercall,
    OsvRefused,
    Record,
    TakenKind,
    TimerFired,
    ViolationKind,
)
from osvemu.image import KernelImage, check_placement
from osvemu.platform import layout
from osvemu.platform.acpi import S5_SLEEP_TYPE, sleep_request
from osvemu.platform.apicbus import ApicBus, RefusalCause, RoutingDecision
from osvemu.platform.channels import EpochChannels
from osvemu.platform.codewatch import CodeWatch
from osvemu.platform.cpuid import cpuid
from osvemu.platform.ends import (
    EndKind,
    KernelEnd,
    exited,
    faulted,
    halted,
    hung,
    run_status,
    stopped_for_violation,
)
from osvemu.platform.firmware import Firmware, build_firmware
from osvemu.platform.icr import DeliveryMode, Icr, Shorthand
from osvemu.platform.initrd import place_initrd
from osvemu.platform.ioapic import IoApic, IoApicMessage
from osvemu.platform.lapic import LevelEoi, LocalApic
from osvemu.platform.memmap import FIRMWARE_AREAS
from osvemu.platform.plan import KernelPlacement, MachinePlan
from osvemu.platform.pvh import BOOT_GDT, BOOT_TSS, pvh_entry_context, pvh_entry_registers
from osvemu.platform.rtc import Rtc
from osvemu.platform.uart import UART_REGISTER_COUNT, Console, Uart16550

#: Console text kept for the report: a flood of output costs bounded memory.
MAX_TRANSCRIPT_BYTES = 16 << 20


@dataclass
class ExitRequest:
    status: int
    core: int


@dataclass
class Kernel:
    """One kernel as it runs: its placement, its cores and devices (COM1,
    the RTC and its IOAPIC, if its firmware view names one), and the ends
    of its lives (a restart policy may boot it again after an end)."""

    index: int
    placement: KernelPlacement
    uart: Uart16550
    ioapic: IoApic | None = None
    rtc: Rtc = field(default_factory=Rtc)
    cores: list[Core] = field(default_factory=list)
    firmware: Firmware | None = None
    code_watch: CodeWatch | None = None  # its code pages, checked for rewrites by any core
    end: KernelEnd | None = None  # how its current life ended
    lives: list[KernelEnd] = field(default_factory=list)  # how each earlier life ended
    restarts_left: int = 0
    restart_due: bool = False  # ended, to be booted again after the running slice
    own_view: MemoryView | None = None  # its view with its own copies of the channels (lock-step epochs)

    @property
    def name(self) -> str:
        return self.placement.name

    def console_text(self, line: str) -> str:
        """A line of the kernel's console as printed: named when kernels share the console."""
        return f"[{self.name}] {line}" if self.placement.labelled else line

    @property
    def status(self) -> int | None:
        return self.end.status if self.end is not None else None

    @property
    def ended_for_good(self) -> bool:
        return self.end is not None and not self.restart_due

    @property
    def started(self) -> bool:
        """Whether any of its cores ever ran (a kernel without an image may never start)."""
        return any(core.slices_run for core in self.cores)

    @property
    def view(self) -> MemoryView:
        return self.own_view or self.placement.view

    @property
    def image(self) -> KernelImage | None:
        return self.placement.image

    @property
    def ended(self) -> bool:
        return self.end is not None


@dataclass(frozen=True, order=True)
class DeferredNotify:
    """A NOTIFY waiting for the epoch boundary, ordered as it was made."""

    round: int
    sender: int  # core index
    sequence: int
    target: int  # kernel index
    vector: int


class Machine:
    def __init__(self, plan: MachinePlan, console: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.topology = plan.topology
        self.monitor = plan.monitor
        #: A full-virtualization monitor (osvemu.osv.trapall): every device access, CPUID, MSR, HLT and
        #: interrupt delivery is its exit too.
        self.traps_all = bool(plan.monitor is not None and getattr(plan.monitor, "traps_all", False))
        self.events = EventBus()
        self.bus = ApicBus(plan.policy, plan.io_policy)
        #: The core running past its quantum, if any (Scheduler, fast mode).
        self.run_ahead: Core | None = None
        #: Lock-step epochs (osvemu.parallel): a NOTIFY to another kernel is
        #: kept in ``deferred_notifies`` and delivered at the next epoch
        #: boundary, and each kernel works on its own copies of its channels
        #: (osvemu.platform.channels), merged at the boundaries.  Every
        #: machine of several kernels runs so, whichever tool runs it and in
        #: however many processes: the same plan gives the same run.
        self.epochs = epochs = len(plan.kernels) > 1
        self.deferred_notifies: list[DeferredNotify] = []
        #: Where console lines go instead of the console callback: (kernel index, core index, line).
        self.console_sink: Callable[[int, int, str], None] | None = None
        self.round = 0  # the scheduler's round, for the order of deferred notifies
        self.exit: ExitRequest | None = None
        self.transcript: list[str] = []  # the console lines, as printed (the first MAX_TRANSCRIPT_BYTES)
        self._transcript_bytes = 0
        self.transcript_dropped = 0  # lines printed but not kept
        self._print = console or _print_line
        #: Where the machine says, at the moment it happens, what a user must
        #: not miss (a kernel stopped for a violation): the CLI's standard error or -D file.
        self.announce: Callable[[str], None] | None = None
        self.kernels = [Kernel(index, placement, Uart16550(Console()), _ioapic_for(placement),
                               restarts_left=placement.restarts) for index, placement in enumerate(plan.kernels)]
        self.channels: EpochChannels | None = None
        if epochs:
            self.channels = EpochChannels({k.index: k.placement.shared_ranges for k in self.kernels},
                                          {k.index: k.placement.view for k in self.kernels})
            for kernel in self.kernels:
                kernel.own_view = self.channels.views[kernel.index]
        owner = {apic: kernel for kernel in self.kernels for apic in kernel.placement.apic_ids}
        self.cores: list[Core] = []
        self.lapics: list[LocalApic] = []
        self._kernel_of: list[Kernel | None] = []
        for cpu in self.topology.cpus:
            kernel = owner.get(cpu.apic_id)
            clock = CoreClock()
            lapic = LocalApic(cpu.apic_id, clock)
            view = kernel.view if kernel else MemoryView([])  # a core no kernel owns stays offline
            self._kernel_of.append(kernel)  # before the core: it maps its kernel's device pages (mmio_regions)
            core = Core(cpu.index, cpu.apic_id, view, self, lapic, clock, layout.LAPIC_BASE)
            self.cores.append(core)
            self.lapics.append(lapic)
            self.bus.attach(core, lapic)
        self._core_by_apic = {core.apic_id: core for core in self.cores}
        #: Trap-all: per core, the (MSR accesses, CPUID instructions) already counted as exits (_settle_core_counts).
        self._settled = [(0, 0)] * len(self.cores)
        for kernel in self.kernels:
            kernel.cores = [self._core_by_apic[apic] for apic in kernel.placement.apic_ids]
            # The BSP flag of IA32_APIC_BASE (Intel SDM Vol. 3A 10.4.4): each
            # kernel's tables name its first core as the boot processor.
            kernel.cores[0].apic_base_msr |= APIC_BASE_BSP

    def kernel_of(self, core: Core) -> Kernel | None:
        return self._kernel_of[core.index]

    def core_label(self, index: int) -> str:
        """How tools name core ``index``: ``c5`` on the bare machine, with its
        kernel under OSV (``k2/c16``: kernel k2's core 16, the machine's index)."""
        kernel = self._kernel_of[index]
        return f"{kernel.name}/c{index}" if kernel is not None and kernel.placement.labelled else f"c{index}"

    def _ended(self, core: Core) -> bool:
        """The core's kernel has ended: the devices no longer answer it.
        (Not counted exactly, the rest of the block that ended a kernel still
        runs, osvemu.cpu.slices; its device accesses change nothing.)"""
        kernel = self._kernel_of[core.index]
        return kernel is not None and kernel.ended

    def may_run(self, core: Core) -> bool:
        """Running or halted, and its kernel has not ended.  (Asked before
        each slice: under trap-all, the core's MSR and CPUID exits of its
        slices so far are counted here.)"""
        kernel = self._kernel_of[core.index]
        if self.traps_all and kernel is not None:
            self._settle_core_counts(core, kernel)
        return core.can_execute and kernel is not None and not kernel.ended

    # ------------------------------------------------------------ monitor exits
    def _trap(self, kernel: Kernel, kind: str) -> None:
        """An exit a full-virtualization monitor would take, by ``kernel``'s core."""
        self.monitor.count_exit(kernel.index, kind)

    def _settle_core_counts(self, core: Core, kernel: Kernel) -> None:
        """Trap-all: the MSR accesses and CPUID instructions the core made
        since the last look become exits (dropped if its kernel has ended).

        The core counts its RDMSR/WRMSR itself (``Core.msr_counts``: every
        access that reaches the MSR intercept, #GP ones included; one at
        CPL > 0 faults before it, AMD APM Vol. 2 15.7), and its CPUID
        instructions (``Core.special_counts["cpuid"]``; the CPUID checks
        of the CR0/CR4 writes it emulates are no instructions)."""
        msr = sum(core.msr_counts.values())
        instructions = core.special_counts["cpuid"]
        seen_msr, seen_cpuid = self._settled[core.index]
        self._settled[core.index] = (msr, instructions)
        if kernel.ended:
            return
        if msr > seen_msr:
            self.monitor.count_exit(kernel.index, "msr", msr - seen_msr)
        if instructions > seen_cpuid:
            self.monitor.count_exit(kernel.index, "cpuid", instructions - seen_cpuid)

    def _settle_kernel_counts(self, kernel: Kernel) -> None:
        if self.traps_all:
            for core in kernel.cores:
                self._settle_core_counts(core, kernel)

    # ------------------------------------------------------------ boot
    def install_firmware(self, kernel: Kernel) -> Firmware:
        """Write the tables and boot data a kernel's firmware leaves, with the
        boot GDT and TSS of the PVH entry state, into its memory."""
        firmware = build_firmware(kernel.placement.firmware, kernel.placement.cmdline, self._place_initrd(kernel))
        for address, data in firmware.writes:
            kernel.view.write(address, data)
        kernel.view.write(layout.BOOT_GDT_ADDRESS, BOOT_GDT)
        kernel.view.write(layout.BOOT_TSS_ADDRESS, BOOT_TSS)
        kernel.firmware = firmware
        return firmware

    @staticmethod
    def _place_initrd(kernel: Kernel) -> tuple[int, int] | None:
        """Write the kernel's initrd high in its RAM, clear of its image and
        the firmware areas; return its (address, size) for the start info."""
        initrd = kernel.placement.initrd
        if initrd is None:
            return None
        occupied = [(area.base, area.size) for area in FIRMWARE_AREAS]
        if kernel.image is not None:
            occupied += [(segment.paddr, segment.memsz) for segment in kernel.image.segments]
        address = place_initrd(kernel.placement.image_ram, occupied, len(initrd))
        kernel.view.write(address, initrd)
        return address, len(initrd)

    def load_image(self, kernel: Kernel, image: KernelImage) -> None:
        """Check the image fits the kernel's RAM clear of the firmware, write
        it, and watch its code for rewrites (:mod:`osvemu.platform.codewatch`)."""
        check_placement(image, list(kernel.placement.image_ram), FIRMWARE_AREAS)
        self._write_image(kernel, image)
        code = [s for s in image.segments if s.text] or [s for s in image.segments if s.executable]
        self.watch_code(kernel, [(s.paddr, len(s.data), s.vaddr) for s in code])

    def watch_code(self, kernel: Kernel, ranges: list[tuple[int, int, int]]) -> None:
        """Watch these (guest-physical, size, virtual) code ranges of a kernel:
        a page any core rewrites is dropped from every core's translations."""
        kernel.code_watch = CodeWatch(kernel.view, ranges)

    def check_code_writes(self) -> None:
        """Every core of a kernel drops its translations of the watched code
        pages that changed since the last check (the scheduler calls this
        every CODE_CHECK_ROUNDS rounds)."""
        for kernel in self.kernels:
            if kernel.code_watch is None or kernel.ended:
                continue
            for virtual in kernel.code_watch.changed():
                for core in kernel.cores:
                    core.invalidate_code(virtual, virtual + layout.PAGE_SIZE)

    @staticmethod
    def _write_image(kernel: Kernel, image: KernelImage) -> None:
        """Each segment at its physical address, bss zeroed."""
        for segment in image.segments:
            kernel.view.write(segment.paddr, segment.data + bytes(segment.memsz - len(segment.data)))

    def boot(self) -> None:
        """Every kernel: its firmware, its image, its boot CPU at the PVH entry."""
        for kernel in self.kernels:
            firmware = self.install_firmware(kernel)
            if kernel.image is not None:
                self.load_image(kernel, kernel.image)
                self._start_boot_cpu(kernel, firmware)

    @staticmethod
    def _start_boot_cpu(kernel: Kernel, firmware: Firmware) -> None:
        kernel.cores[0].start(pvh_entry_context(), pvh_entry_registers(kernel.image.entry32,
                                                                       firmware.start_info_address))

    def restart_due_kernels(self) -> bool:
        """Boot again every kernel that ended with restarts left (between
        slices: its cores may have been mid-slice when it ended); whether
        one was."""
        due = [kernel for kernel in self.kernels if kernel.restart_due]
        for kernel in due:
            self._restart(kernel)
        return bool(due)

    def _restart(self, kernel: Kernel) -> None:
        """A new life in the same partition (Jailhouse's cell restart): its
        memory cleared, its cores reset, its firmware, image and boot CPU
        exactly as at the first boot; its shared channels keep their data."""
        self._settle_kernel_counts(kernel)  # what ran after its end is no exit of the new life
        kernel.lives.append(kernel.end)
        kernel.end, kernel.restart_due = None, False
        kernel.restarts_left -= 1
        shared = set(kernel.placement.shared_ranges)
        for mapping in kernel.view.mappings:
            if (mapping.gpa, mapping.size) not in shared:
                mapping.bank.clear(mapping.offset, mapping.size)
        for core in kernel.cores:
            core.reset()
        kernel.cores[0].apic_base_msr |= APIC_BASE_BSP
        kernel.uart = Uart16550(Console())
        kernel.ioapic = _ioapic_for(kernel.placement)  # reset; the RTC, battery-backed, keeps its time and RAM
        firmware = self.install_firmware(kernel)
        self._emit(kernel.cores[0], KernelRestarted(kernel.name, len(kernel.lives) + 1))
        if kernel.image is not None:
            self._write_image(kernel, kernel.image)
            self._start_boot_cpu(kernel, firmware)

    # ------------------------------------------------------------ the end of a kernel
    def end_kernel(self, kernel: Kernel, end: KernelEnd, caller: Core | None = None) -> None:
        """A kernel's life ends (exit port, SHUTDOWN, a violation, a fault,
        no core able to run): its cores run no more, each left in the state
        it had.  With restarts left it is booted again after the running
        slice; the run ends when every kernel has ended for good, with the
        status derived from every kernel's end (:func:`run_status`)."""
        if kernel.ended:
            return
        self._settle_kernel_counts(kernel)
        kernel.end = end
        if caller is not None:
            caller.request_stop()
        where = caller or kernel.cores[0]
        if end.kind is EndKind.VIOLATION and self.announce is not None:
            rip = f", rip {caller.rip:#x}" if caller is not None else ""
            self.announce(f"osv: kernel {kernel.name} stopped: {end.detail} ({self.core_label(where.index)}{rip})")
        how = "" if end.kind is EndKind.EXITED and not kernel.placement.labelled else end.describe()
        self._emit(where, KernelExit(end.status, kernel.name if kernel.placement.labelled else None, how))
        last = kernel.uart.console.close()
        if last is not None:
            self._console_line(where, kernel, last)
        if kernel.restarts_left > 0:
            kernel.restart_due = True
        elif all(k.ended_for_good for k in self.kernels) and self.exit is None:
            self.exit = ExitRequest(self.run_status(), where.index)

    def run_status(self) -> int:
        return run_status([kernel.end for kernel in self.kernels if kernel.end is not None])

    def ended_for_good(self, kernels: frozenset[int]) -> bool:
        """Whether every one of these kernels has ended for good."""
        return all(self.kernels[index].ended_for_good for index in kernels)

    def end_remaining(self, make_end, kernels: frozenset[int] | None = None) -> None:
        """End every kernel still alive (of ``kernels``, if given: a worker's
        own) with ``make_end(kernel)`` (the run is over: idle, or stopped by
        a limit); no restarts follow."""
        for kernel in self.kernels:
            if kernels is not None and kernel.index not in kernels:
                continue
            kernel.restarts_left, kernel.restart_due = 0, False  # a restart still due does not happen
            if not kernel.ended:
                self.end_kernel(kernel, make_end(kernel))

    def end_hung_kernels(self, kernels: frozenset[int] | None = None) -> None:
        """End each started kernel none of whose cores can ever run again:
        each is stopped, waiting for a STARTUP IPI, or halted or spinning
        on itself with interrupts off and no NMI pending.  Only its own
        cores could INIT, SIPI or NMI them (OSV confines IPIs), and a NOTIFY
        is a maskable interrupt.  All halted is the end of a kernel's work
        (Linux halts so); a spin is a hang.  ``kernels``: only these (a
        worker of a partitioned run looks at its own)."""
        for kernel in self.kernels:
            if kernel.ended or not kernel.started or (kernels is not None and kernel.index not in kernels):
                continue
            states = _stuck_states(kernel.cores)
            if states is None:
                continue
            why = "no core can run again: " + ", ".join(sorted(set(states)))
            spinning = SPINNING in states
            self.end_kernel(kernel, hung(why) if spinning else halted(why))

    def core_shut_down(self, core: Core) -> None:
        """Platform: a core stopped on a fault (a triple fault's shutdown
        state, memory nothing backs): its kernel ends."""
        kernel = self.kernel_of(core)
        if kernel is not None and core.fault is not None:
            self.end_kernel(kernel, faulted(core.fault.one_line()), core)

    def close_consoles(self) -> None:
        """Print what every console still holds (the run is over)."""
        for kernel in self.kernels:
            last = kernel.uart.console.close()
            if last is not None:
                self._console_line(kernel.cores[0], kernel, last)

    # ------------------------------------------------------------ Platform: ports and devices
    def port_in(self, core: Core, port: int, size: int) -> int:
        kernel = self.kernel_of(core)
        if kernel is None or kernel.ended:
            return _floating(size)
        if self.traps_all:
            self._trap(kernel, "io")
        if layout.COM1_PORT <= port < layout.COM1_PORT + UART_REGISTER_COUNT:
            value = kernel.uart.read(port - layout.COM1_PORT)
            self._com1_irq(core, kernel)
            return value
        if port in (layout.RTC_INDEX_PORT, layout.RTC_DATA_PORT):
            return kernel.rtc.read(port - layout.RTC_INDEX_PORT, core.clock.now_ns())
        if port == layout.ACPI_SLEEP_STATUS_PORT:
            return 0  # WAK_STS: never set, the machine does not sleep and wake
        return _floating(size)

    def port_out(self, core: Core, port: int, size: int, value: int) -> None:
        kernel = self.kernel_of(core)
        if kernel is None or kernel.ended:
            return
        if self.traps_all:
            self._trap(kernel, "io")
        if layout.COM1_PORT <= port < layout.COM1_PORT + UART_REGISTER_COUNT:
            line = kernel.uart.write(port - layout.COM1_PORT, value)
            if line is not None:
                self._console_line(core, kernel, line)
            self._com1_irq(core, kernel)
        elif port in (layout.RTC_INDEX_PORT, layout.RTC_DATA_PORT):
            kernel.rtc.write(port - layout.RTC_INDEX_PORT, value, core.clock.now_ns())
        elif port == layout.ACPI_SLEEP_CONTROL_PORT:
            if sleep_request(value) == S5_SLEEP_TYPE:  # other sleep states are not offered (no \_S1-\_S4)
                self.end_kernel(kernel, exited(0, "ACPI S5 (power off)"), core)
        elif layout.EXIT_PORT <= port < layout.EXIT_PORT + layout.EXIT_PORT_SIZE:
            self.end_kernel(kernel, exited(value, f"wrote {value & 0xFF} to port {port:#x}"), core)

    def mmio_regions(self, core: Core) -> list[tuple[int, int]]:
        """The core's local APIC page and its kernel's IOAPIC page."""
        kernel = self.kernel_of(core)
        regions = [(layout.LAPIC_BASE, layout.PAGE_SIZE)]
        if kernel is not None and kernel.ioapic is not None:
            regions.append((layout.IOAPIC_BASE, layout.PAGE_SIZE))
        return regions

    def mmio_read(self, core: Core, register: int) -> int:
        if self._ended(core):
            return 0
        kernel = self.kernel_of(core)
        if _in_lapic_page(register):
            if self.traps_all:
                self._trap(kernel, "lapic")
            return self.lapics[core.index].read(register - layout.LAPIC_BASE)
        if kernel is not None and kernel.ioapic is not None and _in_ioapic_page(register):
            if self.traps_all:
                self._trap(kernel, "ioapic")
            return kernel.ioapic.mmio_read(register - layout.IOAPIC_BASE)
        return 0

    def mmio_write(self, core: Core, register: int, value: int) -> None:
        kernel = self.kernel_of(core)
        if self._ended(core):
            return
        if _in_lapic_page(register):
            lapic = self.lapics[core.index]
            sent = lapic.write(register - layout.LAPIC_BASE, value)
            if isinstance(sent, Icr):
                self._send_ipi(core, lapic, sent)  # an "icr" exit under every monitor
                return
            if self.traps_all:
                self._trap(kernel, "lapic")
            if isinstance(sent, LevelEoi) and kernel is not None and kernel.ioapic is not None:
                self._send_io_interrupts(core, kernel, kernel.ioapic.eoi(sent.vector))
            return
        if kernel is not None and kernel.ioapic is not None and _in_ioapic_page(register):
            if self.traps_all:
                self._trap(kernel, "ioapic")
            self._send_io_interrupts(core, kernel, kernel.ioapic.mmio_write(register - layout.IOAPIC_BASE, value))

    # ------------------------------------------------------------ Platform: device interrupts
    def _com1_irq(self, core: Core, kernel: Kernel) -> None:
        """Carry the changes of COM1's IRQ line, made by the access just
        done, to its IOAPIC pin (ISA IRQ 4 on pin 4)."""
        for level in kernel.uart.take_irq_changes():
            if kernel.ioapic is not None:
                self._send_io_interrupts(core, kernel, kernel.ioapic.set_input(layout.COM1_IRQ, level))

    def _send_io_interrupts(self, core: Core, kernel: Kernel, messages: list[IoApicMessage]) -> None:
        """Messages of the kernel's IOAPIC, raised by ``core``'s access: the
        bus's I/O policy decides each; an accepted level message waits for
        its EOI; isolation refusals are the monitor's violations."""
        for message in messages:
            decision = self.bus.send_io(kernel.index, message.icr)
            self._end_run_ahead(core, decision)
            if decision.deliveries:
                kernel.ioapic.accepted(message.pin)
            for refusal in decision.refused_for(RefusalCause.ISOLATION):
                self._violation(core, ViolationKind.IO_INTERRUPT, f"{message.describe()}: {refusal.reason}")

    # ------------------------------------------------------------ Platform: IPIs
    def _send_ipi(self, core: Core, lapic: LocalApic, icr: Icr) -> None:
        """An ICR write: the bus's policy decides it whole; isolation
        refusals are the monitor's violations."""
        kernel = self.kernel_of(core)
        if self.monitor is not None and kernel is not None:
            self.monitor.count_exit(kernel.index, "icr")
        decision = self.bus.send(lapic, icr)
        self._end_run_ahead(core, decision)
        self._emit_ipi(core, icr, decision)
        for refusal in decision.refused_for(RefusalCause.ISOLATION):
            self._violation(core, ViolationKind.IPI, f"{icr.describe()}: {refusal.reason}")

    def _notify(self, core: Core, target: Kernel, vector: int) -> None:
        """A monitor's cross-kernel interrupt: a fixed vector to the target
        kernel's boot CPU, carried by the bus like any other -- at the next
        epoch boundary under lock-step epochs."""
        if self.epochs and target is not self.kernel_of(core):
            self.deferred_notifies.append(DeferredNotify(self.round, core.index, len(self.deferred_notifies),
                                                         target.index, vector))
            return
        self.notify_now(core, target, vector)

    def synchronize_channels(self, kernels: frozenset[int]) -> None:
        """An epoch boundary in one process: the channels merged and every copy refreshed."""
        if self.channels is not None:
            self.channels.synchronize(kernels)

    def deliver_notifies(self, notifies: list[DeferredNotify]) -> None:
        """The deferred NOTIFYs of an epoch, in the order they were made, to kernels still alive."""
        for notify in sorted(notifies):
            target = self.kernels[notify.target]
            if not target.ended:
                self.notify_now(self.cores[notify.sender], target, notify.vector)

    def notify_now(self, core: Core, target: Kernel, vector: int) -> None:
        bsp = target.cores[0]
        icr = Icr(vector, DeliveryMode.FIXED, False, True, False, Shorthand.NONE, bsp.apic_id)
        decision = RoutingDecision((bsp.apic_id,))
        self.bus.carry_out(self.lapics[core.index], icr, decision)
        self._end_run_ahead(core, decision)
        self._emit_ipi(core, icr, decision)

    def _end_run_ahead(self, core: Core, decision: RoutingDecision) -> None:
        """The core the scheduler lets run past its quantum while no other
        can run (``run_ahead``, fast mode) reached another core: its slice
        ends after this instruction, so the other core runs promptly."""
        if self.run_ahead is core and any(apic_id != core.apic_id for apic_id in decision.deliveries):
            core.stop_after_instruction()

    def _emit_ipi(self, core: Core, icr: Icr, decision: RoutingDecision) -> None:
        if not self.events:
            return
        text = icr.describe()
        self._emit(core, IpiSent(text, decision.deliveries, tuple((r.apic_id, r.reason) for r in decision.refusals)))
        for apic_id in decision.deliveries:
            self._emit(self._core_by_apic[apic_id], IpiReceived(core.apic_id, text))

    # ------------------------------------------------------------ Platform: monitor exits
    def cpuid(self, core: Core, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        cpu = self.topology.cpus[core.index]
        values = cpuid(self.topology, cpu, leaf, subleaf, bool(core.apic_base_msr & APIC_BASE_ENABLE))
        return self.monitor.cpuid(leaf, subleaf, values) if self.monitor is not None else values

    def hypercall(self, core: Core) -> bool:
        """A VMMCALL.  Without a monitor it is #UD.  The monitor serves CPL 0
        of protected or long mode only: from real mode or CPL 3 the machine
        refuses it with #UD, as a processor without the call would, and
        records the attempt."""
        kernel = self.kernel_of(core)
        if self.monitor is None or kernel is None:
            return False
        if kernel.ended:
            core.request_stop()
            return True
        registers = core.hypercall_registers()
        number = registers[0]
        if not core.supervisor_protected():
            self.monitor.refused_hypercall(kernel.index)
            where = "real mode" if core.mode() is Mode.REAL else f"CPL {core.cpl()}"
            self._violation(core, ViolationKind.HYPERCALL, f"hypercall {number} from {where}: only CPL 0 may call "
                                                           "OSV (#UD)")
            return kernel.ended  # an ended kernel's core takes no #UD
        outcome = self.monitor.hypercall(kernel.index, registers, core.clock.now_ns(), core.buffer_pages)
        if self.events:
            self._emit(core, OsvHypercall(kernel.name, number, self.monitor.call_name(number), tuple(registers[1:]),
                                          outcome.result, outcome.error))
        if outcome.error:
            self._violation(core, ViolationKind.HYPERCALL, f"hypercall {number}: {outcome.error}")
        for address, data in outcome.writes:
            kernel.view.write(address, data)
        if outcome.notify is not None:
            target, vector = outcome.notify
            self._notify(core, self.kernels[target], vector)
        core.finish_hypercall(outcome.result)
        if outcome.shutdown is not None:
            self.end_kernel(kernel, exited(outcome.shutdown, "SHUTDOWN hypercall"), core)
        return True

    def unmapped_access(self, core: Core, access: Access, address: int, size: int) -> Unmapped:
        """An access to guest-physical ``address`` outside the kernel's space.
        Bare machine: nothing is there, the core faults.  Under a monitor: a
        violation, refused (reads see all ones, writes vanish) unless it ends
        the kernel; a refused fetch has no instruction to run and ends it."""
        kernel = self.kernel_of(core)
        if self.monitor is None or kernel is None:
            return Unmapped.FAULT
        self.monitor.count_exit(kernel.index, "violation")
        self._violation(core, ViolationKind.MEMORY, f"{access.value} {address:#x} ({size} bytes) outside the "
                                                    "kernel's memory")
        if access is Access.FETCH:
            self.end_kernel(kernel, stopped_for_violation(f"fetch from {address:#x} outside the kernel's memory"), core)
        if kernel.ended:
            core.state = CoreState.STOPPED  # in the middle of an instruction that cannot complete
            return Unmapped.END_SLICE
        return Unmapped.SCRATCH

    def _violation(self, core: Core, kind: ViolationKind, reason: str) -> None:
        kernel = self.kernel_of(core)
        if self.monitor is None or kernel is None:
            return
        end = self.monitor.violation(kernel.index, core.index, core.rip, kind, reason)
        self._emit(core, OsvRefused(kind, reason, kernel.name))
        if end:
            self.end_kernel(kernel, stopped_for_violation(f"{kind.value}: {reason}"), core)

    # ------------------------------------------------------------ Platform: events
    def symbolize(self, core: Core, address: int) -> str | None:
        kernel = self.kernel_of(core)
        image = kernel.image if kernel else None
        return image.symbols.lookup(address) if image else None

    def core_event(self, core: Core, record: Record) -> None:
        if self.traps_all:
            self._trap_event(core, record)
        self._emit(core, record)

    def _trap_event(self, core: Core, record: Record) -> None:
        """Trap-all: a HLT, or the delivery of an external interrupt or NMI
        (the VMM takes the physical one and injects it, AMD APM Vol. 2
        15.20 "Event Injection"); exceptions and ``int n`` are the guest's."""
        kernel = self._kernel_of[core.index]
        if kernel is None or kernel.ended:
            return
        if isinstance(record, Halted):
            self._trap(kernel, "hlt")
        elif isinstance(record, InterruptTaken) and record.kind in (TakenKind.INTERRUPT, TakenKind.NMI):
            self._trap(kernel, "interrupt")

    def _emit(self, core: Core, record: Record) -> None:
        if self.events:
            self.events.emit(Event(core.index, core.retired_now(), record))

    def advance_timer(self, core: Core, now_ns: int) -> None:
        """Fire the core's APIC timer for every expiry up to ``now_ns``."""
        lapic = self.lapics[core.index]
        fired = lapic.advance_timer(now_ns)
        if fired:
            self._emit(core, TimerFired(fired, lapic.lvt_timer_vector))

    def _console_line(self, core: Core, kernel: Kernel, line: str) -> None:
        text = kernel.console_text(line)
        if self.console_sink is not None:
            self.console_sink(kernel.index, core.index, text)
        else:
            self.print_console_line(text)
        self._emit(core, ConsoleLine(text))

    def console_line(self, core: Core, kernel: Kernel, line: str) -> None:
        """A line of ``kernel``'s console, printed at ``core``."""
        self._console_line(core, kernel, line)

    def print_console_line(self, text: str) -> None:
        """Print a console line and keep it in the transcript."""
        self._print(text)
        if self._transcript_bytes < MAX_TRANSCRIPT_BYTES:
            self.transcript.append(text)
            self._transcript_bytes += len(text) + 1
        else:
            self.transcript_dropped += 1


def _in_lapic_page(address: int) -> bool:
    return layout.LAPIC_BASE <= address < layout.LAPIC_BASE + layout.PAGE_SIZE


def _in_ioapic_page(address: int) -> bool:
    return layout.IOAPIC_BASE <= address < layout.IOAPIC_BASE + layout.PAGE_SIZE


def _ioapic_for(placement: KernelPlacement) -> IoApic | None:
    """The kernel's own IOAPIC, as its firmware tables describe it."""
    ioapic_id = placement.firmware.ioapic_id
    return IoApic(ioapic_id) if ioapic_id is not None else None


def _stuck_states(cores: list[Core]) -> list[str] | None:
    """Why each core can never run again, or None as soon as one can."""
    states = []
    for core in cores:
        state = core.stuck_state()
        if state is None:
            return None
        states.append(state)
    return states


def _floating(size: int) -> int:
    """A port nothing decodes: the bus floats high."""
    return (1 << (8 * size)) - 1


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


__all__ = ["DeferredNotify", "ExitRequest", "Kernel", "Machine"]
