"""Guest-physical memory layout of the modeled PC/Opteron platform.

The layout follows the convention PVH guests expect from QEMU's ``pc``
machine: RAM below 640 KiB, the EBDA and BIOS areas reserved, RAM again
from 1 MiB, the IOAPIC and local APIC pages reserved, and RAM above the
32-bit PCI hole moved to 4 GiB.  Firmware tables live in the BIOS area
where the ACPI and MP specifications tell an OS to search.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

from osvemu.errors import ConfigError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
PAGE_SIZE = 4 * KiB

# --- Low memory (IBM PC convention; MP spec 1.4 section 4 search areas) ---
BDA_BASE = 0x400
#: BIOS data area word holding the EBDA segment (MP spec 1.4 4.0 a).
BDA_EBDA_SEGMENT = 0x40E
#: BIOS data area word holding the base memory size in KiB (MP spec 1.4 4.0 b).
BDA_BASE_MEMORY_KIB = 0x413

#: Page holding the PVH start info, memory map and command line.  Reserved in
#: the memory map so the guest's allocator leaves it alone.
BOOT_INFO_BASE = 0x9E000
BOOT_INFO_SIZE = 0x1C00
#: Extended BIOS data area: the last KiB of conventional memory.
EBDA_BASE = 0x9FC00
EBDA_SIZE = 1 * KiB
CONVENTIONAL_END = 0xA0000  # 640 KiB

#: Legacy VGA and option ROM window (not RAM, not reported usable).
VGA_BASE = 0xA0000
#: ACPI tables (typed "ACPI" in the memory map; ACPI 6.4 15.1).
ACPI_TABLES_BASE = 0xE0000
ACPI_TABLES_SIZE = 64 * KiB
#: System BIOS area: RSDP (ACPI 6.4 5.2.5.1 searches 0xE0000-0xFFFFF) and the
#: MP floating pointer and configuration table (MP spec 1.4 4.0 c).
BIOS_BASE = 0xF0000
BIOS_SIZE = 64 * KiB
RSDP_ADDRESS = 0xF0000
MP_FLOATING_POINTER_ADDRESS = 0xF0040
MP_CONFIG_TABLE_ADDRESS = 0xF0100
LOW_MEMORY_END = 1 * MiB

# --- The 32-bit hole (Intel SDM Vol. 3A 10.4.1; 82093AA IOAPIC datasheet) ---
IOAPIC_BASE = 0xFEC00000
LAPIC_BASE = 0xFEE00000
#: QEMU's pc machine keeps RAM below 3 GiB when the guest has more than that.
LOWMEM_LIMIT = 3 * GiB
HIGHMEM_BASE = 4 * GiB

# --- I/O ports ---
COM1_PORT = 0x3F8
#: QEMU's isa-debug-exit as configured with iobase=0xf4,iosize=0x04.
EXIT_PORT = 0xF4
EXIT_PORT_SIZE = 4

#: Smallest machine: enough for the low 1 MiB plus some RAM above it.
MIN_MEMORY = 2 * MiB


def ram_ranges(memory_size: int) -> list[tuple[int, int]]:
    """Guest-physical RAM as (base, size) pairs, holes excluded.

    The first MiB counts toward ``memory_size`` as on QEMU's pc machine
    (``-m 512M`` gives RAM to 640 KiB and from 1 MiB to 512 MiB).
    """
    low = min(memory_size, LOWMEM_LIMIT)
    ranges = [(0, CONVENTIONAL_END), (LOW_MEMORY_END, low - LOW_MEMORY_END)]
    if memory_size > LOWMEM_LIMIT:
        ranges.append((HIGHMEM_BASE, memory_size - LOWMEM_LIMIT))
    return ranges


def backed_ranges(memory_size: int) -> list[tuple[int, int]]:
    """Ranges that are host-backed memory: the whole first MiB (so the BIOS
    area and tables are real memory) and the RAM above it."""
    low = min(memory_size, LOWMEM_LIMIT)
    ranges = [(0, low)]
    if memory_size > LOWMEM_LIMIT:
        ranges.append((HIGHMEM_BASE, memory_size - LOWMEM_LIMIT))
    return ranges

#: The flat GDT and 32-bit TSS the PVH entry state refers to (Xen
#: docs/misc/pvh.pandoc: flat 4 GiB code and data segments, a 32-bit TSS).
BOOT_GDT_ADDRESS = 0xFF000
BOOT_TSS_ADDRESS = 0xFF080
BOOT_CODE_SELECTOR = 0x08
BOOT_DATA_SELECTOR = 0x10
BOOT_TSS_SELECTOR = 0x18


#: At most 20 digits: any size osvemu accepts, and no int() of a huge string.
_SIZE = re.compile(r"^\s*(\d{1,20})\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1 << 40}


def parse_size(text: str | int, where: str = "", what: str = "memory size") -> int:
    """'2G', '512M', '65536K' or a byte count (the syntax of --memory and of
    sizes in a partition configuration, where an integer is bytes).  The
    result is never negative; callers check their own bounds."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    match = _SIZE.match(text) if isinstance(text, str) else None
    if not match:
        prefix = f"{where}: " if where else ""
        if isinstance(text, str | bool | float):
            shown = repr(text[:40] if isinstance(text, str) else text)
        else:
            shown = "a negative number" if isinstance(text, int) else f"a {type(text).__name__}"
        raise ConfigError(f"{prefix}invalid {what} {shown} (use a number with K, M or G, e.g. 2G)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def format_size(count: int) -> str:
    """A size in the largest binary unit that divides it exactly: '2 GiB', '640 KiB', '100 bytes'."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def number_runs(numbers: Iterable[int], separator: str = ", ") -> str:
    """``0-7, 9, 12-13``: each run of consecutive numbers, in the order
    given, as one (APIC IDs, cores, vectors); '' for none."""
    parts = []
    for _, run in itertools.groupby(enumerate(numbers), lambda pair: pair[1] - pair[0]):
        values = [value for _, value in run]
        parts.append(str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}")
    return separator.join(parts)


# --- Legacy devices and their interrupt wiring (each kernel has its own set) ---
#: COM1's ISA interrupt, IRQ 4, reaches the I/O APIC on input pin 4 (GSI 4):
#: identity-mapped as on every PC, so no MADT interrupt source override says so.
COM1_IRQ = 4
#: The MC146818 RTC's index and data ports (the index's bit 7 masks NMI).
RTC_INDEX_PORT = 0x70
RTC_DATA_PORT = 0x71
#: HW-reduced ACPI sleep registers (ACPI 6.4 4.8.3.7), which the FADT's
#: SLEEP_CONTROL_REG and SLEEP_STATUS_REG name: one byte each, in I/O space
#: above the legacy ports ACPICA refuses to touch (its hwvalid.c table) and
#: clear of COM1, the RTC and the exit port.
ACPI_SLEEP_CONTROL_PORT = 0x600
ACPI_SLEEP_STATUS_PORT = 0x601
