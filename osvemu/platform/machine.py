"""The bare Opteron machine: memory, cores, local APICs, COM1, the exit port
and the firmware tables, wired together.  One guest image owns the machine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from osvemu.cpu.core import Core, CoreState
from osvemu.cpu.memory import Mapping, MemoryBank, MemoryView
from osvemu.cpu.templates import BOOT_GDT, BOOT_TSS
from osvemu.cpu.x86 import APIC_BASE_BSP
from osvemu.errors import ImageError
from osvemu.events import Event, EventBus
from osvemu.image import KernelImage, check_placement
from osvemu.platform import layout
from osvemu.platform.apicbus import ApicBus
from osvemu.platform.cpuid import cpuid
from osvemu.platform.firmware import Firmware, FirmwareView, build_firmware
from osvemu.platform.ioapic import IoApic
from osvemu.platform.lapic import LocalApic
from osvemu.platform.topology import Topology
from osvemu.platform.uart import UART_REGISTER_COUNT, Console, Uart16550

#: Byte sequences of the instructions Unicorn cannot hook by kind: RDMSR,
#: WRMSR and RDTSC (Intel SDM Vol. 2).
INTERCEPTED_OPCODES = (b"\x0f\x32", b"\x0f\x30", b"\x0f\x31")

#: Firmware areas no image segment may overlap.
FIRMWARE_AREAS = (
    (layout.BOOT_INFO_BASE, layout.CONVENTIONAL_END - layout.BOOT_INFO_BASE, "boot info and EBDA"),
    (layout.ACPI_TABLES_BASE, layout.ACPI_TABLES_SIZE, "ACPI tables"),
    (layout.BIOS_BASE, layout.BIOS_SIZE, "BIOS area (RSDP, MP tables, boot GDT)"),
)


@dataclass
class ExitRequest:
    status: int
    core: int


@dataclass
class MappedDevice:
    """A shared device at a fixed guest-physical page (core.SharedDevice)."""

    base: int
    size: int
    device: IoApic

    def mmio_read(self, offset: int) -> int:
        return self.device.mmio_read(offset)

    def mmio_write(self, offset: int, value: int) -> None:
        self.device.mmio_write(offset, value)


@dataclass
class MachineConfig:
    topology: Topology = field(default_factory=Topology)
    cmdline: str = ""
    console: Callable[[str], None] | None = None  # receives each console line


class Machine:
    def __init__(self, config: MachineConfig) -> None:
        self.config = config
        self.topology = config.topology
        self.bank = MemoryBank(self._backing_size(), "ram")
        self.view = MemoryView(self._native_mappings())
        self.events = EventBus()
        self._print = config.console or _print_line
        self._uart_writer = 0  # the core whose output the UART is assembling
        self.console = Console(self._console_line)
        self.uart = Uart16550(self.console)
        self.exit: ExitRequest | None = None
        self.image: KernelImage | None = None
        self.bus = ApicBus()
        self.ioapic = IoApic(FirmwareView.whole_machine(self.topology).ioapic_id)
        self.cores: list[Core] = []
        for cpu in self.topology.cpus:
            core = Core(cpu.index, cpu.apic_id, self._view_for(cpu), layout.LAPIC_BASE, self)
            core.lapic = LocalApic(cpu.apic_id, self._send_ipi, core.now_ns)
            core.on_event = self._core_event
            self.bus.attach(core)
            self.cores.append(core)
        self.bus.on_ipi = self._ipi_event
        # The BSP flag of IA32_APIC_BASE (Intel SDM Vol. 3A 10.4.4): the
        # firmware tables name the first core as the boot processor.
        self.cores[0].apic_base_msr |= APIC_BASE_BSP

    # ------------------------------------------------------------ memory
    def _backing_size(self) -> int:
        return sum(size for _, size in layout.backed_ranges(self.topology.memory_size))

    def _native_mappings(self) -> list[Mapping]:
        mappings, offset = [], 0
        for base, size in layout.backed_ranges(self.topology.memory_size):
            mappings.append(Mapping(base, size, self.bank, offset))
            offset += size
        return mappings

    def _view_for(self, cpu) -> MemoryView:
        """The memory a core sees: all of it on the bare machine."""
        return self.view

    def machine_offset(self, physical: int) -> int:
        """Offset of a machine-physical RAM address in the RAM bank."""
        offset = 0
        for base, size in layout.backed_ranges(self.topology.memory_size):
            if base <= physical < base + size:
                return offset + physical - base
            offset += size
        raise ValueError(f"{physical:#x} is not machine RAM")

    # ------------------------------------------------------------ boot
    def install_firmware(self) -> int:
        """Write the tables and boot data; return the PVH start info address."""
        self.firmware = write_firmware(self.view, FirmwareView.whole_machine(self.topology), self.config.cmdline)
        return self.firmware.start_info_address

    def load(self, image: KernelImage) -> None:
        load_image_into(self.view, image, layout.ram_ranges(self.topology.memory_size), self.cores)
        self.image = image

    def intercept_special_instructions(self, ranges: list[tuple[int, int]]) -> None:
        """Hook the RDMSR/WRMSR/RDTSC byte sequences found in these ranges
        of guest memory on every core (code placed without an ELF image)."""
        sites: set[int] = set()
        for address, size in ranges:
            sites |= opcode_sites(self.view.read(address, size), address)
        for core in self.cores:
            core.intercept_instructions_at(sorted(sites))

    def boot(self, image: KernelImage) -> None:
        start_info = self.install_firmware()
        self.load(image)
        self.cores[0].enter_pvh(image.entry32, start_info)

    # ------------------------------------------------------------ Platform protocol for cores
    def port_in(self, core: Core, port: int, size: int) -> int:
        if layout.COM1_PORT <= port < layout.COM1_PORT + UART_REGISTER_COUNT:
            return self._uart_for(core).read(port - layout.COM1_PORT)
        return (1 << (8 * size)) - 1  # nothing decodes the port: the bus floats high

    def port_out(self, core: Core, port: int, size: int, value: int) -> None:
        if layout.COM1_PORT <= port < layout.COM1_PORT + UART_REGISTER_COUNT:
            self._uart_writer = core.index
            self._uart_for(core).write(port - layout.COM1_PORT, value)
        elif layout.EXIT_PORT <= port < layout.EXIT_PORT + layout.EXIT_PORT_SIZE:
            self.request_exit(value & 0xFF, core)

    def _uart_for(self, core: Core) -> Uart16550:
        """The COM1 a core talks to: the machine's one UART."""
        return self.uart

    def request_exit(self, status: int, core: Core) -> None:
        if self.exit is None:
            self.exit = ExitRequest(status, core.index)
            self.emit(core, "exit", {"status": status})
        core.exit_requested = True
        core.request_stop()

    def cpuid(self, core: Core, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        from osvemu.cpu.x86 import APIC_BASE_ENABLE
        cpu = self.topology.cpus[core.index]
        return cpuid(self.topology, cpu, leaf, subleaf, bool(core.apic_base_msr & APIC_BASE_ENABLE))

    def hypercall(self, core: Core) -> bool:
        return False  # the bare machine has no monitor: VMMCALL raises #UD

    def memory_violation(self, core: Core, kind: str, address: int, size: int) -> bool:
        return False  # the bare machine: an access to nothing stops the core

    def shared_devices(self) -> list[MappedDevice]:
        return [MappedDevice(layout.IOAPIC_BASE, layout.PAGE_SIZE, self.ioapic)]

    def symbolize(self, address: int) -> str | None:
        return self.image.symbols.lookup(address) if self.image else None

    def _send_ipi(self, sender: LocalApic, icr) -> None:
        self.bus.send(sender, icr)

    # ------------------------------------------------------------ events
    def emit(self, core: Core, kind: str, fields: dict) -> None:
        if self.events:
            self.events.emit(Event(core.index, core.retired_now(), kind, fields))

    def _core_event(self, core: Core, kind: str, fields: dict) -> None:
        self.emit(core, kind, fields)

    def timer_fired(self, core: Core, count: int) -> None:
        self.emit(core, "timer", {"count": count, "vector": core.lapic.lvt_timer_vector})

    def _ipi_event(self, sender_apic_id: int, icr, decision) -> None:
        if not self.events:
            return
        by_apic = {core.apic_id: core for core in self.cores}
        sender = by_apic[sender_apic_id]
        self.emit(sender, "ipi", {"icr": icr.describe(), "delivered": list(decision.deliveries),
                                  "refused": [(r.apic_id, r.reason) for r in decision.refusals]})
        for apic_id in decision.deliveries:
            self.emit(by_apic[apic_id], "ipi-received", {"from": sender_apic_id, "icr": icr.describe()})

    def _console_line(self, line: str) -> None:
        self._print(line)
        if self.events:
            self.emit(self.cores[self._uart_writer], "uart", {"line": line})

    # ------------------------------------------------------------ state
    def all_idle(self) -> bool:
        return all(core.state is not CoreState.RUNNING for core in self.cores)


def write_firmware(view: MemoryView, firmware_view: FirmwareView, cmdline: str) -> Firmware:
    """Build the firmware one kernel sees and write it, with the boot GDT and
    TSS of the PVH entry state, into that kernel's memory."""
    firmware = build_firmware(firmware_view, cmdline)
    for address, data in firmware.writes:
        view.write(address, data)
    view.write(layout.BOOT_GDT_ADDRESS, BOOT_GDT)
    view.write(layout.BOOT_TSS_ADDRESS, BOOT_TSS)
    return firmware


def load_image_into(view: MemoryView, image: KernelImage, ram: list[tuple[int, int]], cores: list[Core]) -> None:
    """Check the image fits ``ram`` clear of the firmware, write each segment
    (bss zeroed) and hook its special instructions on ``cores``."""
    check_placement(image, ram, FIRMWARE_AREAS)
    for segment in image.segments:
        view.write(segment.paddr, segment.data + bytes(segment.memsz - len(segment.data)))
    sites = image_sites(image)
    for core in cores:
        core.intercept_instructions_at(sites)


def opcode_sites(code: bytes, base: int) -> set[int]:
    """Addresses where an RDMSR, WRMSR or RDTSC byte sequence starts (a false
    positive costs nothing: the hook runs only if an instruction starts
    there, and re-checks the opcode)."""
    sites = set()
    for opcode in INTERCEPTED_OPCODES:
        start = code.find(opcode)
        while start >= 0:
            sites.add(base + start)
            start = code.find(opcode, start + 1)
    return sites


def image_sites(image: KernelImage) -> list[int]:
    """Special-instruction sites in the executable segments, at their physical
    and (where different) virtual addresses."""
    sites: set[int] = set()
    for segment in image.segments:
        if segment.executable:
            sites |= opcode_sites(segment.data, segment.paddr)
            if segment.vaddr != segment.paddr:
                sites |= opcode_sites(segment.data, segment.vaddr)
    return sorted(sites)


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


__all__ = ["ExitRequest", "ImageError", "Machine", "MachineConfig"]
