"""ACPI tables describing the machine's processors, NUMA layout and
devices (ACPI 6.4 section 5.2): RSDP, RSDT, XSDT, MADT, SRAT, SLIT, FADT
and the DSDT.

Each layout is one ``struct.Struct`` declared here, built by one function and
parsed back by another so tests (and OSV's verification) can check what a
kernel will read.  Proximity domains are numbered 0..N-1 in the order of the
view's nodes, so a view of some sockets still gets a dense SLIT.

The platform is **hardware-reduced ACPI** (ACPI 6.4 4.1): no PM1 event or
control blocks, no PM timer, no SCI, no 8254 PIT and no 8259 PIC.  The FADT
says so with HW_REDUCED_ACPI, which makes Linux drop the PIT and the legacy
PIC (``acpi_generic_reduced_hw_init``, arch/x86/kernel/acpi/boot.c) instead
of wiring a timer through them (``check_timer``), and power-off goes through
the FADT's sleep registers with the ``\\_S5`` sleep type the DSDT names.
The DSDT's few bytes of AML are assembled here by hand (ACPI 6.4 section 20)
and also name COM1 and the RTC, which is how Linux finds their resources
once the legacy PIC, and with it the fixed ISA IRQ numbers, is gone.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

OEM_ID = b"OSVEMU"
OEM_TABLE_ID = b"OPTERON "
OEM_REVISION = 1
CREATOR_ID = b"OSVE"
CREATOR_REVISION = 1

# --- Root System Description Pointer (ACPI 6.4 5.2.5.3) ---
RSDP_SIGNATURE = b"RSD PTR "
#: signature, checksum, OEMID, revision, RSDT address, length, XSDT address,
#: extended checksum, reserved.
RSDP = struct.Struct("<8sB6sBIIQB3s")
assert RSDP.size == 36
RSDP_V1_LENGTH = 20  # the checksum covers the ACPI 1.0 part only
RSDP_REVISION_2 = 2

# --- System Description Table header (ACPI 6.4 5.2.6) ---
#: signature, length, revision, checksum, OEMID, OEM table ID, OEM revision,
#: creator ID, creator revision.
SDT_HEADER = struct.Struct("<4sIBB6s8sI4sI")
assert SDT_HEADER.size == 36
SDT_CHECKSUM_OFFSET = 9

# --- Multiple APIC Description Table (ACPI 6.4 5.2.12) ---
MADT_SIGNATURE = b"APIC"
MADT_REVISION = 5
MADT_FIXED = struct.Struct("<II")  # local APIC address, flags
MADT_PCAT_COMPAT = 1 << 0
MADT_LOCAL_APIC = 0
MADT_IO_APIC = 1
MADT_INTERRUPT_OVERRIDE = 2
MADT_LOCAL_APIC_NMI = 4
#: 5.2.12.2: type, length, ACPI processor UID, APIC ID, flags.
MADT_LOCAL_APIC_ENTRY = struct.Struct("<BBBBI")
assert MADT_LOCAL_APIC_ENTRY.size == 8
LOCAL_APIC_ENABLED = 1 << 0
#: 5.2.12.3: type, length, I/O APIC ID, reserved, address, GSI base.
MADT_IO_APIC_ENTRY = struct.Struct("<BBBBII")
assert MADT_IO_APIC_ENTRY.size == 12
#: 5.2.12.5: type, length, bus, source, GSI, MPS INTI flags.
MADT_INTERRUPT_OVERRIDE_ENTRY = struct.Struct("<BBBBIH")
assert MADT_INTERRUPT_OVERRIDE_ENTRY.size == 10
#: 5.2.12.7: type, length, ACPI processor UID, MPS INTI flags, LINT#.
MADT_LOCAL_APIC_NMI_ENTRY = struct.Struct("<BBBHB")
assert MADT_LOCAL_APIC_NMI_ENTRY.size == 6
ALL_PROCESSORS_UID = 0xFF

# --- System Resource Affinity Table (ACPI 6.4 5.2.16) ---
SRAT_SIGNATURE = b"SRAT"
SRAT_REVISION = 3
SRAT_FIXED = struct.Struct("<IQ")  # reserved (must be 1), reserved
SRAT_PROCESSOR_AFFINITY = 0
SRAT_MEMORY_AFFINITY = 1
#: 5.2.16.1: type, length, proximity domain [7:0], APIC ID, flags, local
#: SAPIC EID, proximity domain [31:8], clock domain.
SRAT_PROCESSOR_ENTRY = struct.Struct("<BBBBIB3sI")
assert SRAT_PROCESSOR_ENTRY.size == 16
#: 5.2.16.2: type, length, proximity domain, reserved, base, length,
#: reserved, flags, reserved.
SRAT_MEMORY_ENTRY = struct.Struct("<BBIHQQIIQ")
assert SRAT_MEMORY_ENTRY.size == 40
AFFINITY_ENABLED = 1 << 0

# --- System Locality Information Table (ACPI 6.4 5.2.17) ---
SLIT_SIGNATURE = b"SLIT"
SLIT_REVISION = 1
SLIT_FIXED = struct.Struct("<Q")  # number of system localities
LOCAL_DISTANCE = 10
#: A remote Opteron node one HyperTransport hop away.
REMOTE_DISTANCE = 20

RSDT_SIGNATURE = b"RSDT"
XSDT_SIGNATURE = b"XSDT"

# --- Generic Address Structure (ACPI 6.4 5.2.3.2) ---
#: address space ID, register bit width, register bit offset, access size, address.
GAS = struct.Struct("<BBBBQ")
assert GAS.size == 12
GAS_SYSTEM_IO = 1  # address space ID (Table 5.2)
GAS_ACCESS_BYTE = 1  # access size (Table 5.2)

# --- Fixed ACPI Description Table (ACPI 6.4 5.2.9, Table 5.9) ---
FADT_SIGNATURE = b"FACP"
FADT_REVISION = 6
FADT_MINOR_REVISION = 4  # ACPI 6.4
#: The fields after the header, in order, with their struct codes ("12s" is
#: a Generic Address Structure); offsets are those of Table 5.9.
FADT_FIELDS: tuple[tuple[str, str], ...] = (
    ("firmware_ctrl", "I"), ("dsdt", "I"), ("reserved0", "B"), ("preferred_pm_profile", "B"),  # 36
    ("sci_int", "H"), ("smi_cmd", "I"), ("acpi_enable", "B"), ("acpi_disable", "B"),  # 46
    ("s4bios_req", "B"), ("pstate_cnt", "B"), ("pm1a_evt_blk", "I"), ("pm1b_evt_blk", "I"),  # 54
    ("pm1a_cnt_blk", "I"), ("pm1b_cnt_blk", "I"), ("pm2_cnt_blk", "I"), ("pm_tmr_blk", "I"),  # 64
    ("gpe0_blk", "I"), ("gpe1_blk", "I"), ("pm1_evt_len", "B"), ("pm1_cnt_len", "B"),  # 80
    ("pm2_cnt_len", "B"), ("pm_tmr_len", "B"), ("gpe0_blk_len", "B"), ("gpe1_blk_len", "B"),  # 90
    ("gpe1_base", "B"), ("cst_cnt", "B"), ("p_lvl2_lat", "H"), ("p_lvl3_lat", "H"),  # 94
    ("flush_size", "H"), ("flush_stride", "H"), ("duty_offset", "B"), ("duty_width", "B"),  # 100
    ("day_alrm", "B"), ("mon_alrm", "B"), ("century", "B"), ("iapc_boot_arch", "H"),  # 106
    ("reserved1", "B"), ("flags", "I"), ("reset_reg", "12s"), ("reset_value", "B"),  # 111
    ("arm_boot_arch", "H"), ("minor_version", "B"), ("x_firmware_ctrl", "Q"), ("x_dsdt", "Q"),  # 129
    ("x_pm1a_evt_blk", "12s"), ("x_pm1b_evt_blk", "12s"), ("x_pm1a_cnt_blk", "12s"),  # 148
    ("x_pm1b_cnt_blk", "12s"), ("x_pm2_cnt_blk", "12s"), ("x_pm_tmr_blk", "12s"),  # 184
    ("x_gpe0_blk", "12s"), ("x_gpe1_blk", "12s"), ("sleep_control_reg", "12s"),  # 220
    ("sleep_status_reg", "12s"), ("hypervisor_vendor_identity", "Q"),  # 256
)
FADT_BODY = struct.Struct("<" + "".join(code for _, code in FADT_FIELDS))
FADT_LENGTH = 276
assert SDT_HEADER.size + FADT_BODY.size == FADT_LENGTH
#: Preferred_PM_Profile (Table 5.9): an Opteron server.
PM_PROFILE_ENTERPRISE_SERVER = 4
#: P_LVL2_LAT above 100 and P_LVL3_LAT above 1000 say C2 and C3 are not supported.
C2_NOT_SUPPORTED = 101
C3_NOT_SUPPORTED = 1001
# Fixed feature flags (Table 5.10).
FADT_WBINVD = 1 << 0  # WBINVD flushes and invalidates caches correctly
FADT_PROC_C1 = 1 << 2  # C1 (HLT) works on every processor
FADT_PWR_BUTTON = 1 << 4  # no fixed-feature power button
FADT_SLP_BUTTON = 1 << 5  # no fixed-feature sleep button
FADT_FIX_RTC = 1 << 6  # no RTC wake status in fixed register space
FADT_HEADLESS = 1 << 12  # no monitor, keyboard or mouse to detect
FADT_HW_REDUCED_ACPI = 1 << 20
FADT_FLAGS = (FADT_WBINVD | FADT_PROC_C1 | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_FIX_RTC | FADT_HEADLESS
              | FADT_HW_REDUCED_ACPI)
# IA-PC boot architecture flags (Table 5.11).
BOOT_LEGACY_DEVICES = 1 << 0  # user-visible ISA/LPC devices: COM1 (and the RTC)
BOOT_8042 = 1 << 1  # a keyboard controller at 0x60/0x64: not present
BOOT_VGA_NOT_PRESENT = 1 << 2
BOOT_MSI_NOT_SUPPORTED = 1 << 3  # there is no PCI, so no MSI either
BOOT_CMOS_RTC_NOT_PRESENT = 1 << 5  # the RTC is present: clear
IAPC_BOOT_ARCH = BOOT_LEGACY_DEVICES | BOOT_VGA_NOT_PRESENT | BOOT_MSI_NOT_SUPPORTED
# The sleep registers of HW-reduced ACPI (ACPI 6.4 4.8.3.7, 4.8.3.8).
SLEEP_CONTROL_SLP_TYP_SHIFT = 2  # bits 4:2
SLEEP_CONTROL_SLP_TYP_MASK = 0b111
SLEEP_CONTROL_SLP_EN = 1 << 5
SLEEP_STATUS_WAK_STS = 1 << 7
#: The SLP_TYP value the DSDT's \_S5 package gives for soft-off.
S5_SLEEP_TYPE = 5

# --- Differentiated System Description Table (ACPI 6.4 5.2.11.1) ---
DSDT_SIGNATURE = b"DSDT"
#: Revision 2 or more: AML integers are 64 bits wide (ACPI 6.4 5.2.11.1).
DSDT_REVISION = 2
# AML opcodes and prefixes (ACPI 6.4 section 20.3, Table 20.2), used below
# with the grammar rule each builds.
AML_ZERO_OP = 0x00  # 20.2.3 ZeroOp: the integer 0
AML_ONE_OP = 0x01  # 20.2.3 OneOp: the integer 1
AML_NAME_OP = 0x08  # 20.2.5.1 DefName := NameOp NameString DataRefObject
AML_BYTE_PREFIX = 0x0A  # 20.2.3 ByteConst := BytePrefix ByteData
AML_WORD_PREFIX = 0x0B  # 20.2.3 WordConst := WordPrefix WordData
AML_DWORD_PREFIX = 0x0C  # 20.2.3 DWordConst := DWordPrefix DWordData
AML_SCOPE_OP = 0x10  # 20.2.5.1 DefScope := ScopeOp PkgLength NameString TermList
AML_BUFFER_OP = 0x11  # 20.2.5.4 DefBuffer := BufferOp PkgLength BufferSize ByteList
AML_PACKAGE_OP = 0x12  # 20.2.5.4 DefPackage := PackageOp PkgLength NumElements PackageElementList
AML_EXT_OP_PREFIX = 0x5B  # 20.2.5.2 DeviceOp := ExtOpPrefix 0x82
AML_DEVICE_OP = 0x82  # DefDevice := DeviceOp PkgLength NameString TermList
AML_ROOT_CHAR = 0x5C  # 20.2.2 RootChar: a backslash, the namespace root
# Small resource data items (ACPI 6.4 6.4.2): tag byte = item name << 3 | length.
RESOURCE_IRQ_NO_FLAGS = 0x04 << 3 | 2  # 6.4.2.1 IRQ descriptor without its information byte
RESOURCE_IO_PORT = 0x08 << 3 | 7  # 6.4.2.5 I/O port descriptor
RESOURCE_END_TAG = 0x0F << 3 | 1  # 6.4.2.9 end tag
IO_DECODE_16 = 0x01  # the I/O port descriptor's information byte: 16-bit decode


def checksum(data: bytes) -> int:
    """The byte that makes ``data`` sum to zero modulo 256."""
    return (-sum(data)) & 0xFF


def checksum_ok(data: bytes) -> bool:
    return sum(data) & 0xFF == 0


# ------------------------------------------------------------------ builders
@dataclass(frozen=True)
class ProcessorInfo:
    uid: int
    apic_id: int
    domain: int


@dataclass(frozen=True)
class MemoryAffinity:
    base: int
    size: int
    domain: int


def sdt(signature: bytes, revision: int, body: bytes) -> bytes:
    """A complete table: header (with length and checksum) plus body."""
    header = SDT_HEADER.pack(
        signature, SDT_HEADER.size + len(body), revision, 0, OEM_ID, OEM_TABLE_ID, OEM_REVISION,
        CREATOR_ID, CREATOR_REVISION,
    )
    table = bytearray(header + body)
    table[SDT_CHECKSUM_OFFSET] = checksum(table)
    return bytes(table)


def build_madt(processors: list[ProcessorInfo], lapic_address: int, ioapic_id: int | None,
               ioapic_address: int) -> bytes:
    """MADT with one enabled local APIC per processor, the IOAPIC (GSIs
    0-23) and LINT1 as NMI.  The flags leave PCAT_COMPAT clear: there is no
    8259 pair to mask (ACPI 6.4 Table 5.20).  No interrupt source override
    is needed: the only ISA interrupt, COM1's IRQ 4, is identity-mapped
    with the ISA defaults (edge, active high), and there is neither an 8254
    on IRQ 0 nor, hardware-reduced, an SCI."""
    body = bytearray(MADT_FIXED.pack(lapic_address, 0))
    for cpu in processors:
        body += MADT_LOCAL_APIC_ENTRY.pack(MADT_LOCAL_APIC, MADT_LOCAL_APIC_ENTRY.size, cpu.uid, cpu.apic_id,
                                           LOCAL_APIC_ENABLED)
    if ioapic_id is not None:
        body += MADT_IO_APIC_ENTRY.pack(MADT_IO_APIC, MADT_IO_APIC_ENTRY.size, ioapic_id, 0, ioapic_address, 0)
    body += MADT_LOCAL_APIC_NMI_ENTRY.pack(MADT_LOCAL_APIC_NMI, MADT_LOCAL_APIC_NMI_ENTRY.size,
                                           ALL_PROCESSORS_UID, 0, 1)
    return sdt(MADT_SIGNATURE, MADT_REVISION, bytes(body))


def build_srat(processors: list[ProcessorInfo], memory: list[MemoryAffinity]) -> bytes:
    body = bytearray(SRAT_FIXED.pack(1, 0))
    for cpu in processors:
        body += SRAT_PROCESSOR_ENTRY.pack(
            SRAT_PROCESSOR_AFFINITY, SRAT_PROCESSOR_ENTRY.size, cpu.domain & 0xFF, cpu.apic_id,
            AFFINITY_ENABLED, 0, (cpu.domain >> 8).to_bytes(3, "little"), 0,
        )
    for rng in memory:
        body += SRAT_MEMORY_ENTRY.pack(SRAT_MEMORY_AFFINITY, SRAT_MEMORY_ENTRY.size, rng.domain, 0,
                                       rng.base, rng.size, 0, AFFINITY_ENABLED, 0)
    return sdt(SRAT_SIGNATURE, SRAT_REVISION, bytes(body))


def build_slit(domains: int) -> bytes:
    matrix = bytes(LOCAL_DISTANCE if i == j else REMOTE_DISTANCE for i in range(domains) for j in range(domains))
    return sdt(SLIT_SIGNATURE, SLIT_REVISION, SLIT_FIXED.pack(domains) + matrix)


def build_rsdt(addresses: list[int]) -> bytes:
    return sdt(RSDT_SIGNATURE, 1, b"".join(struct.pack("<I", a) for a in addresses))


def build_xsdt(addresses: list[int]) -> bytes:
    return sdt(XSDT_SIGNATURE, 1, b"".join(struct.pack("<Q", a) for a in addresses))


def build_rsdp(rsdt_address: int, xsdt_address: int) -> bytes:
    """An ACPI 2.0+ RSDP pointing at both the RSDT and the XSDT."""
    data = bytearray(RSDP.pack(RSDP_SIGNATURE, 0, OEM_ID, RSDP_REVISION_2, rsdt_address, RSDP.size,
                               xsdt_address, 0, b"\0\0\0"))
    data[8] = checksum(data[:RSDP_V1_LENGTH])
    data[32] = checksum(data)
    return bytes(data)


# ------------------------------------------------------------------ AML (ACPI 6.4 section 20)
def aml_pkg_length(body_length: int) -> bytes:
    """20.2.4 PkgLength for ``body_length`` bytes that follow it: the count
    includes the PkgLength bytes themselves.  Up to 63 it is one byte; else
    bits 7:6 of the lead byte say how many bytes follow, its bits 3:0 hold
    the low nibble and the following bytes the rest, least significant first."""
    for extra in range(4):
        total = body_length + 1 + extra
        if extra == 0 and total < 0x40:
            return bytes((total,))
        if extra and total < 1 << (4 + 8 * extra):
            return bytes((extra << 6 | total & 0xF,)) + (total >> 4).to_bytes(extra, "little")
    raise ValueError(f"AML package of {body_length} bytes is too long")


def aml_integer(value: int) -> bytes:
    """20.2.3 ComputationalData: ZeroOp, OneOp or the shortest ByteConst,
    WordConst or DWordConst."""
    if value in (0, 1):
        return bytes((AML_ZERO_OP if value == 0 else AML_ONE_OP,))
    for prefix, size in ((AML_BYTE_PREFIX, 1), (AML_WORD_PREFIX, 2), (AML_DWORD_PREFIX, 4)):
        if value < 1 << (8 * size):
            return bytes((prefix,)) + value.to_bytes(size, "little")
    raise ValueError(f"AML integer {value:#x} needs a QWordConst")


def aml_name_seg(name: str) -> bytes:
    """20.2.2 NameSeg: four characters, short names padded with '_'."""
    if not 1 <= len(name) <= 4:
        raise ValueError(f"AML name {name!r} is not 1 to 4 characters")
    return name.ljust(4, "_").encode("ascii")


def aml_name(name: str, data: bytes) -> bytes:
    """20.2.5.1 DefName: Name(name, data)."""
    return bytes((AML_NAME_OP,)) + aml_name_seg(name) + data


def aml_package(*elements: int) -> bytes:
    """20.2.5.4 DefPackage of integers: Package(){elements}."""
    body = bytes((len(elements),)) + b"".join(aml_integer(element) for element in elements)
    return bytes((AML_PACKAGE_OP,)) + aml_pkg_length(len(body)) + body


def aml_buffer(data: bytes) -> bytes:
    """20.2.5.4 DefBuffer initialised with ``data``: Buffer(){data}."""
    body = aml_integer(len(data)) + data
    return bytes((AML_BUFFER_OP,)) + aml_pkg_length(len(body)) + body


def aml_scope(path: str, *terms: bytes) -> bytes:
    """20.2.5.1 DefScope of a root-relative one-segment path such as ``\\_SB``."""
    body = bytes((AML_ROOT_CHAR,)) + aml_name_seg(path.lstrip("\\")) + b"".join(terms)
    return bytes((AML_SCOPE_OP,)) + aml_pkg_length(len(body)) + body


def aml_device(name: str, *terms: bytes) -> bytes:
    """20.2.5.2 DefDevice: Device(name){terms}."""
    body = aml_name_seg(name) + b"".join(terms)
    return bytes((AML_EXT_OP_PREFIX, AML_DEVICE_OP)) + aml_pkg_length(len(body)) + body


def eisa_id(text: str) -> int:
    """The compressed EISA ID ``EisaId("PNP0501")`` stands for (ACPI 6.4
    19.6.35): three letters of five bits each ('A' = 1) in the first two
    bytes, big-endian, then four hex digits in the next two, as a DWORD."""
    letters = [ord(char) - 0x40 for char in text[:3]]
    vendor = letters[0] << 10 | letters[1] << 5 | letters[2]
    return int.from_bytes(vendor.to_bytes(2, "big") + bytes.fromhex(text[3:]), "little")


def io_port_descriptor(base: int, length: int) -> bytes:
    """6.4.2.5 I/O port descriptor: 16-bit decode, a fixed base (minimum =
    maximum), byte alignment, ``length`` ports."""
    return bytes((RESOURCE_IO_PORT, IO_DECODE_16)) + struct.pack("<HHBB", base, base, 1, length)


def irq_descriptor(irq: int) -> bytes:
    """6.4.2.1 IRQ descriptor without the information byte (IRQNoFlags):
    edge-triggered, active high, not shared -- an ISA interrupt."""
    return bytes((RESOURCE_IRQ_NO_FLAGS,)) + struct.pack("<H", 1 << irq)


def end_tag() -> bytes:
    """6.4.2.9 end tag; a checksum byte of 0 means the template has none."""
    return bytes((RESOURCE_END_TAG, 0))


# ------------------------------------------------------------------ FADT and DSDT
@dataclass(frozen=True)
class PlatformDevices:
    """The legacy devices a kernel's DSDT names, and its sleep registers."""

    com1_port: int
    com1_irq: int | None  # None: no IOAPIC input carries it (the kernel polls COM1)
    rtc_port: int
    sleep_control_port: int
    sleep_status_port: int


def io_register(port: int) -> bytes:
    """A one-byte register at I/O ``port`` as a Generic Address Structure."""
    return GAS.pack(GAS_SYSTEM_IO, 8, 0, GAS_ACCESS_BYTE, port)


def build_dsdt(devices: PlatformDevices) -> bytes:
    """The DSDT: ``\\_S5`` for power-off, and under ``\\_SB`` COM1
    (PNP0501: its 8 ports and, wired to the IOAPIC, ISA IRQ 4) and the RTC
    (PNP0B00: ports 0x70-0x71, no interrupt, so Linux registers it without
    alarms rather than ask for a legacy IRQ 8 a HW-reduced platform lacks).

    ``Name(_S5, Package(){5, 0})`` assembles to ``08 5F 53 35 5F 12 05 02
    0A 05 00``: NameOp, NameSeg "_S5_", PackageOp, PkgLength 5 (itself, the
    element count and three element bytes), NumElements 2, BytePrefix 5
    (SLP_TYPa), ZeroOp (SLP_TYPb)."""
    com1 = [aml_name("_HID", aml_integer(eisa_id("PNP0501"))), aml_name("_UID", aml_integer(1))]
    com1_resources = io_port_descriptor(devices.com1_port, 8)
    if devices.com1_irq is not None:
        com1_resources += irq_descriptor(devices.com1_irq)
    com1.append(aml_name("_CRS", aml_buffer(com1_resources + end_tag())))
    rtc = [aml_name("_HID", aml_integer(eisa_id("PNP0B00"))),
           aml_name("_CRS", aml_buffer(io_port_descriptor(devices.rtc_port, 2) + end_tag()))]
    aml = aml_name("_S5", aml_package(S5_SLEEP_TYPE, 0)) + aml_scope(
        "\\_SB", aml_device("COM1", *com1), aml_device("RTC", *rtc))
    return sdt(DSDT_SIGNATURE, DSDT_REVISION, aml)


def build_fadt(dsdt_address: int, devices: PlatformDevices) -> bytes:
    """A revision 6.4 FADT for a hardware-reduced platform (ACPI 6.4 5.2.9):
    no FACS, no SCI, SMI command or PM register blocks, the DSDT at
    ``dsdt_address`` (both the 32-bit and the X_ field, which must then
    agree), and the sleep control and status registers.

    IAPC_BOOT_ARCH says what the platform really has: legacy devices (COM1
    and the RTC, found through the DSDT), no 8042 (Linux skips probing
    0x60/0x64), no VGA (nor probing for one), no MSI (there is no PCI), and
    the CMOS RTC present (so Linux reads the wall clock from it)."""
    values: dict[str, int | bytes] = {name: bytes(GAS.size) if code == "12s" else 0 for name, code in FADT_FIELDS}
    values.update(
        dsdt=dsdt_address, x_dsdt=dsdt_address, preferred_pm_profile=PM_PROFILE_ENTERPRISE_SERVER,
        p_lvl2_lat=C2_NOT_SUPPORTED, p_lvl3_lat=C3_NOT_SUPPORTED, iapc_boot_arch=IAPC_BOOT_ARCH,
        flags=FADT_FLAGS, minor_version=FADT_MINOR_REVISION,
        sleep_control_reg=io_register(devices.sleep_control_port),
        sleep_status_reg=io_register(devices.sleep_status_port),
    )
    return sdt(FADT_SIGNATURE, FADT_REVISION, FADT_BODY.pack(*(values[name] for name, _ in FADT_FIELDS)))


def sleep_request(value: int) -> int | None:
    """The sleep type a write of ``value`` to the sleep control register
    asks to enter: SLP_TYP when SLP_EN is set (ACPI 6.4 4.8.3.7), else None."""
    if not value & SLEEP_CONTROL_SLP_EN:
        return None
    return (value >> SLEEP_CONTROL_SLP_TYP_SHIFT) & SLEEP_CONTROL_SLP_TYP_MASK


def build_acpi(processors: list[ProcessorInfo], memory: list[MemoryAffinity], domains: int, *,
               lapic_address: int, ioapic_id: int | None, ioapic_address: int, devices: PlatformDevices,
               tables_base: int, tables_size: int, rsdp_address: int) -> list[tuple[int, bytes]]:
    """Lay the tables out from ``tables_base`` (16-byte aligned each) and
    return (address, bytes) writes, the RSDP last.  The RSDT and XSDT list
    the MADT, SRAT, SLIT and FADT, in that order; the DSDT is reached
    through the FADT."""
    tables = [
        build_madt(processors, lapic_address, ioapic_id, ioapic_address),
        build_srat(processors, memory),
        build_slit(domains),
    ]
    listed = len(tables) + 1  # and the FADT
    writes: list[tuple[int, bytes]] = []
    cursor = tables_base
    # RSDT and XSDT come first; their size is known before the addresses are.
    rsdt_address = cursor
    cursor = _align16(cursor + SDT_HEADER.size + 4 * listed)
    xsdt_address = cursor
    cursor = _align16(cursor + SDT_HEADER.size + 8 * listed)
    addresses = []
    for table in tables:
        addresses.append(cursor)
        writes.append((cursor, table))
        cursor = _align16(cursor + len(table))
    dsdt = build_dsdt(devices)
    dsdt_address = cursor
    writes.append((dsdt_address, dsdt))
    cursor = _align16(cursor + len(dsdt))
    addresses.append(cursor)
    writes.append((cursor, build_fadt(dsdt_address, devices)))
    cursor = _align16(cursor + FADT_LENGTH)
    if cursor > tables_base + tables_size:
        raise ValueError(f"ACPI tables need {cursor - tables_base} bytes, the area holds {tables_size}")
    writes.insert(0, (xsdt_address, build_xsdt(addresses)))
    writes.insert(0, (rsdt_address, build_rsdt(addresses)))
    writes.append((rsdp_address, build_rsdp(rsdt_address, xsdt_address)))
    return writes


def _align16(value: int) -> int:
    return (value + 15) & ~15


# ------------------------------------------------------------------ parsers
@dataclass(frozen=True)
class Rsdp:
    revision: int
    rsdt_address: int
    xsdt_address: int
    checksum_ok: bool


@dataclass(frozen=True)
class SdtHeader:
    signature: bytes
    length: int
    revision: int
    oem_id: bytes


@dataclass
class Madt:
    lapic_address: int
    flags: int
    local_apics: list[tuple[int, int, int]] = field(default_factory=list)  # (uid, apic id, flags)
    io_apics: list[tuple[int, int, int]] = field(default_factory=list)  # (id, address, gsi base)
    overrides: list[tuple[int, int, int, int]] = field(default_factory=list)  # (bus, source, gsi, flags)
    nmis: list[tuple[int, int, int]] = field(default_factory=list)  # (uid, flags, lint)


@dataclass
class Srat:
    processors: list[tuple[int, int, int]] = field(default_factory=list)  # (domain, apic id, flags)
    memory: list[tuple[int, int, int, int]] = field(default_factory=list)  # (domain, base, length, flags)


@dataclass(frozen=True)
class Gas:
    """A Generic Address Structure (ACPI 6.4 5.2.3.2)."""

    space_id: int
    bit_width: int
    bit_offset: int
    access_size: int
    address: int

    @classmethod
    def unpack(cls, data: bytes) -> Gas:
        return cls(*GAS.unpack(data))


@dataclass(frozen=True)
class Fadt:
    """A parsed FADT: its header and every field of Table 5.9 by name
    (Generic Address Structures as :class:`Gas`)."""

    header: SdtHeader
    fields: dict[str, int | Gas]

    def __getitem__(self, name: str) -> int | Gas:
        return self.fields[name]

    @property
    def hw_reduced(self) -> bool:
        return bool(self.fields["flags"] & FADT_HW_REDUCED_ACPI)


def parse_rsdp(data: bytes) -> Rsdp:
    signature, _, _, revision, rsdt, _, xsdt, _, _ = RSDP.unpack_from(data)
    if signature != RSDP_SIGNATURE:
        raise ValueError("no RSDP signature")
    ok = checksum_ok(data[:RSDP_V1_LENGTH]) and (revision < RSDP_REVISION_2 or checksum_ok(data[:RSDP.size]))
    return Rsdp(revision, rsdt, xsdt if revision >= RSDP_REVISION_2 else 0, ok)


def parse_header(data: bytes) -> SdtHeader:
    signature, length, revision, _, oem_id, *_ = SDT_HEADER.unpack_from(data)
    return SdtHeader(signature, length, revision, oem_id)


def parse_pointer_table(data: bytes) -> list[int]:
    """The table addresses in an RSDT (u32 entries) or XSDT (u64, unaligned)."""
    header = parse_header(data)
    width = 8 if header.signature == XSDT_SIGNATURE else 4
    body = data[SDT_HEADER.size:header.length]
    return [int.from_bytes(body[i:i + width], "little") for i in range(0, len(body), width)]


def _entries(body: bytes):
    offset = 0
    while offset + 2 <= len(body):
        kind, length = body[offset], body[offset + 1]
        if length < 2:
            raise ValueError(f"entry at offset {offset} has length {length}")
        yield kind, body[offset:offset + length]
        offset += length


def parse_madt(data: bytes) -> Madt:
    header = parse_header(data)
    lapic_address, flags = MADT_FIXED.unpack_from(data, SDT_HEADER.size)
    madt = Madt(lapic_address, flags)
    for kind, entry in _entries(data[SDT_HEADER.size + MADT_FIXED.size:header.length]):
        if kind == MADT_LOCAL_APIC:
            _, _, uid, apic_id, lapic_flags = MADT_LOCAL_APIC_ENTRY.unpack(entry)
            madt.local_apics.append((uid, apic_id, lapic_flags))
        elif kind == MADT_IO_APIC:
            _, _, ioapic_id, _, address, gsi_base = MADT_IO_APIC_ENTRY.unpack(entry)
            madt.io_apics.append((ioapic_id, address, gsi_base))
        elif kind == MADT_INTERRUPT_OVERRIDE:
            _, _, bus, source, gsi, inti = MADT_INTERRUPT_OVERRIDE_ENTRY.unpack(entry)
            madt.overrides.append((bus, source, gsi, inti))
        elif kind == MADT_LOCAL_APIC_NMI:
            _, _, uid, inti, lint = MADT_LOCAL_APIC_NMI_ENTRY.unpack(entry)
            madt.nmis.append((uid, inti, lint))
    return madt


def parse_srat(data: bytes) -> Srat:
    header = parse_header(data)
    srat = Srat()
    for kind, entry in _entries(data[SDT_HEADER.size + SRAT_FIXED.size:header.length]):
        if kind == SRAT_PROCESSOR_AFFINITY:
            _, _, domain_low, apic_id, flags, _, domain_high, _ = SRAT_PROCESSOR_ENTRY.unpack(entry)
            srat.processors.append((domain_low | int.from_bytes(domain_high, "little") << 8, apic_id, flags))
        elif kind == SRAT_MEMORY_AFFINITY:
            _, _, domain, _, base, length, _, flags, _ = SRAT_MEMORY_ENTRY.unpack(entry)
            srat.memory.append((domain, base, length, flags))
    return srat


def parse_fadt(data: bytes) -> Fadt:
    header = parse_header(data)
    if header.signature != FADT_SIGNATURE or min(header.length, len(data)) < FADT_LENGTH:
        raise ValueError(f"not a {FADT_LENGTH}-byte FADT: {header.signature!r}, {len(data)} bytes")
    values = FADT_BODY.unpack_from(data, SDT_HEADER.size)
    fields = {name: Gas.unpack(value) if code == "12s" else value
              for (name, code), value in zip(FADT_FIELDS, values)}
    return Fadt(header, fields)


def parse_slit(data: bytes) -> list[list[int]]:
    (count,) = SLIT_FIXED.unpack_from(data, SDT_HEADER.size)
    start = SDT_HEADER.size + SLIT_FIXED.size
    return [list(data[start + i * count:start + (i + 1) * count]) for i in range(count)]


def read_tables(read: Callable[[int, int], bytes], rsdp_address: int) -> dict[bytes, bytes]:
    """Every table reachable from the RSDP (XSDT preferred, as ACPI 6.4
    5.2.8 tells an OS), and the DSDT the FADT points at (X_DSDT preferred),
    by signature, read through ``read(address, size)``."""
    rsdp = parse_rsdp(read(rsdp_address, RSDP.size))
    root_address = rsdp.xsdt_address or rsdp.rsdt_address
    root = _read_table(read, root_address)
    tables = {parse_header(root).signature: root}
    for address in parse_pointer_table(root):
        table = _read_table(read, address)
        tables[parse_header(table).signature] = table
    if FADT_SIGNATURE in tables:
        fadt = parse_fadt(tables[FADT_SIGNATURE])
        dsdt_address = fadt["x_dsdt"] or fadt["dsdt"]
        if dsdt_address:
            tables[DSDT_SIGNATURE] = _read_table(read, dsdt_address)
    return tables


def _read_table(read: Callable[[int, int], bytes], address: int) -> bytes:
    header = parse_header(read(address, SDT_HEADER.size))
    return read(address, header.length)


__all__ = [
    "Fadt", "Gas", "Madt", "MemoryAffinity", "PlatformDevices", "ProcessorInfo", "Rsdp", "Srat", "aml_buffer",
    "aml_device", "aml_integer", "aml_name", "aml_package", "aml_pkg_length", "aml_scope", "build_acpi",
    "build_dsdt", "build_fadt", "build_madt", "build_rsdp", "build_slit", "build_srat", "checksum", "checksum_ok",
    "eisa_id", "end_tag", "io_port_descriptor", "io_register", "irq_descriptor", "parse_fadt", "parse_header",
    "parse_madt", "parse_pointer_table", "parse_rsdp", "parse_slit", "parse_srat", "read_tables", "sleep_request",
]
