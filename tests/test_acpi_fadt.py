"""The FADT and DSDT of the hardware-reduced platform parse back with valid
checksums and the chosen fields, the DSDT's AML is the bytes ACPI 6.4
section 20 gives, and power-off through the sleep control register ends a
kernel cleanly."""

from __future__ import annotations

import pytest

from osvemu.osv.config import default_config
from osvemu.osv.plan import osv_plan
from osvemu.platform import acpi, layout
from osvemu.platform.ends import EndKind
from osvemu.platform.firmware import FirmwareView, build_firmware
from osvemu.platform.machine import Machine
from osvemu.platform.topology import Topology
from osvemu.snippets import Snippet, check_expectations, run_snippet

DEVICES = acpi.PlatformDevices(layout.COM1_PORT, layout.COM1_IRQ, layout.RTC_INDEX_PORT,
                               layout.ACPI_SLEEP_CONTROL_PORT, layout.ACPI_SLEEP_STATUS_PORT)

#: Name(_S5, Package(){5, 0}) (ACPI 6.4 20.2.5.1 DefName, 20.2.5.4 DefPackage).
S5_AML = bytes([
    0x08,                    # NameOp
    0x5F, 0x53, 0x35, 0x5F,  # NameSeg "_S5_"
    0x12,                    # PackageOp
    0x05,                    # PkgLength: 5 bytes, itself included (20.2.4)
    0x02,                    # NumElements
    0x0A, 0x05,              # BytePrefix 5: SLP_TYPa, the value written to SLEEP_CONTROL_REG bits 4:2
    0x00,                    # ZeroOp: SLP_TYPb
])
#: Scope(\_SB) { Device(COM1) {...} Device(RTC) {...} }
SB_AML = bytes([
    0x10, 0x48, 0x05,                    # ScopeOp, PkgLength 88 (two bytes: 0x48 = 1 more byte, nibble 8; 0x05)
    0x5C, 0x5F, 0x53, 0x42, 0x5F,        # RootChar, "_SB_"
    0x5B, 0x82, 0x2B,                    # DeviceOp, PkgLength 43
    0x43, 0x4F, 0x4D, 0x31,              # "COM1"
    0x08, 0x5F, 0x48, 0x49, 0x44,        # Name(_HID,
    0x0C, 0x41, 0xD0, 0x05, 0x01,        #   DWordConst EisaId("PNP0501"))
    0x08, 0x5F, 0x55, 0x49, 0x44, 0x01,  # Name(_UID, One)
    0x08, 0x5F, 0x43, 0x52, 0x53,        # Name(_CRS,
    0x11, 0x10, 0x0A, 0x0D,              #   Buffer, PkgLength 16, BufferSize 13:
    0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08,  # IO(Decode16, 0x3F8, 0x3F8, 1, 8)
    0x22, 0x10, 0x00,                    #   IRQNoFlags() {4}
    0x79, 0x00,                          #   end tag)
    0x5B, 0x82, 0x22,                    # DeviceOp, PkgLength 34
    0x52, 0x54, 0x43, 0x5F,              # "RTC_"
    0x08, 0x5F, 0x48, 0x49, 0x44,        # Name(_HID,
    0x0C, 0x41, 0xD0, 0x0B, 0x00,        #   DWordConst EisaId("PNP0B00"))
    0x08, 0x5F, 0x43, 0x52, 0x53,        # Name(_CRS,
    0x11, 0x0D, 0x0A, 0x0A,              #   Buffer, PkgLength 13, BufferSize 10:
    0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02,  # IO(Decode16, 0x70, 0x70, 1, 2)
    0x79, 0x00,                          #   end tag)
])


def tables_of(view: FirmwareView) -> tuple[dict[bytes, bytes], list[tuple[int, bytes]]]:
    firmware = build_firmware(view, "")
    memory = bytearray(1 << 20)
    for address, data in firmware.writes:
        if address + len(data) <= len(memory):
            memory[address:address + len(data)] = data
    return acpi.read_tables(lambda address, size: bytes(memory[address:address + size]), layout.RSDP_ADDRESS), \
        firmware.writes


@pytest.fixture(scope="module")
def tables() -> dict[bytes, bytes]:
    return tables_of(FirmwareView.whole_machine(Topology(2, 2, 256 * layout.MiB)))[0]


def test_fadt_is_a_276_byte_revision_6_4_table_with_a_valid_checksum(tables):
    data = tables[b"FACP"]
    fadt = acpi.parse_fadt(data)
    assert (fadt.header.signature, fadt.header.length, fadt.header.revision, fadt["minor_version"]) == \
        (b"FACP", 276, 6, 4)
    assert len(data) == 276 and acpi.checksum_ok(data)
    assert fadt.header.oem_id == b"OSVEMU"


def test_fadt_says_hardware_reduced_with_the_flags_the_platform_earns(tables):
    fadt = acpi.parse_fadt(tables[b"FACP"])
    assert fadt.hw_reduced
    # WBINVD, PROC_C1, PWR_BUTTON, SLP_BUTTON, FIX_RTC, HEADLESS, HW_REDUCED_ACPI (ACPI 6.4 Table 5.10).
    assert fadt["flags"] == (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 12) | (1 << 20) == 0x101075
    # LEGACY_DEVICES and VGA / MSI not present; an 8042 absent, the CMOS RTC present (Table 5.11).
    assert fadt["iapc_boot_arch"] == 0b001101
    assert fadt["preferred_pm_profile"] == 4  # Enterprise Server
    assert (fadt["p_lvl2_lat"], fadt["p_lvl3_lat"]) == (101, 1001)  # neither C2 nor C3


def test_fadt_has_no_legacy_acpi_hardware(tables):
    fadt = acpi.parse_fadt(tables[b"FACP"])
    for name in ("firmware_ctrl", "x_firmware_ctrl", "sci_int", "smi_cmd", "acpi_enable", "acpi_disable",
                 "pm1a_evt_blk", "pm1a_cnt_blk", "pm_tmr_blk", "gpe0_blk", "pm1_evt_len", "pm_tmr_len",
                 "century", "day_alrm", "mon_alrm", "reset_value", "hypervisor_vendor_identity"):
        assert fadt[name] == 0, name
    empty = acpi.Gas(0, 0, 0, 0, 0)
    for name in ("reset_reg", "x_pm1a_evt_blk", "x_pm1a_cnt_blk", "x_pm_tmr_blk", "x_gpe0_blk"):
        assert fadt[name] == empty, name


def test_fadt_sleep_registers_are_one_byte_io_ports(tables):
    fadt = acpi.parse_fadt(tables[b"FACP"])
    assert fadt["sleep_control_reg"] == acpi.Gas(acpi.GAS_SYSTEM_IO, 8, 0, acpi.GAS_ACCESS_BYTE, 0x600)
    assert fadt["sleep_status_reg"] == acpi.Gas(acpi.GAS_SYSTEM_IO, 8, 0, acpi.GAS_ACCESS_BYTE, 0x601)


def test_rsdt_and_xsdt_list_the_fadt_which_points_at_the_dsdt():
    tables, writes = tables_of(FirmwareView.whole_machine(Topology(1, 2, 64 * layout.MiB)))
    placed = {data[:4]: address for address, data in writes if data[:4] in (b"APIC", b"SRAT", b"SLIT", b"FACP",
                                                                               b"DSDT", b"RSDT")}
    listed = [placed[s] for s in (b"APIC", b"SRAT", b"SLIT", b"FACP")]
    assert acpi.parse_pointer_table(tables[b"XSDT"]) == listed  # the MADT stays first; the DSDT is not listed
    rsdt = next(data for address, data in writes if data[:4] == b"RSDT")
    assert acpi.checksum_ok(rsdt) and acpi.parse_pointer_table(rsdt) == listed
    fadt = acpi.parse_fadt(tables[b"FACP"])
    assert fadt["dsdt"] == fadt["x_dsdt"] == placed[b"DSDT"]
    assert all(address % 16 == 0 for address in placed.values())


def test_dsdt_is_the_hand_assembled_aml(tables):
    dsdt = tables[b"DSDT"]
    header = acpi.parse_header(dsdt)
    assert (header.signature, header.revision, header.length) == (b"DSDT", 2, 36 + len(S5_AML) + len(SB_AML))
    assert acpi.checksum_ok(dsdt)
    assert dsdt[36:36 + len(S5_AML)] == S5_AML
    assert dsdt[36 + len(S5_AML):] == SB_AML


def test_dsdt_without_an_ioapic_leaves_com1_without_an_interrupt():
    dsdt = acpi.build_dsdt(acpi.PlatformDevices(0x3F8, None, 0x70, 0x600, 0x601))
    assert acpi.checksum_ok(dsdt) and b"\x22\x10\x00" not in dsdt
    assert dsdt[36:47] == S5_AML


def test_aml_encodings():
    # PkgLength (20.2.4): one byte up to 63; then the lead byte counts the bytes after it.
    assert acpi.aml_pkg_length(0) == b"\x01"
    assert acpi.aml_pkg_length(62) == b"\x3f"
    assert acpi.aml_pkg_length(63) == b"\x41\x04"  # 65 = 0x41
    assert acpi.aml_pkg_length(4093) == b"\x4f\xff"  # 4095 = 0xfff
    assert acpi.aml_pkg_length(4094) == b"\x81\x00\x01"  # 4097 = 0x1001
    assert [acpi.aml_integer(v) for v in (0, 1, 5, 0x3F8, 0x12345)] == \
        [b"\x00", b"\x01", b"\x0a\x05", b"\x0b\xf8\x03", b"\x0c\x45\x23\x01\x00"]
    assert acpi.aml_name("_S5", acpi.aml_package(5, 0)) == S5_AML
    assert acpi.eisa_id("PNP0501") == 0x0105D041 and acpi.eisa_id("PNP0B00") == 0x000BD041
    assert acpi.io_port_descriptor(0x3F8, 8) == bytes.fromhex("47 01 f8 03 f8 03 01 08")
    assert acpi.irq_descriptor(4) == bytes.fromhex("22 10 00") and acpi.end_tag() == b"\x79\x00"


def test_madt_has_no_pcat_compat_and_no_overrides(tables):
    madt = acpi.parse_madt(tables[b"APIC"])
    assert madt.flags & acpi.MADT_PCAT_COMPAT == 0
    assert madt.overrides == []
    assert madt.io_apics == [(4, layout.IOAPIC_BASE, 0)]  # the first APIC ID the 4 cores leave free


def test_a_fadt_of_the_wrong_size_is_refused(tables):
    with pytest.raises(ValueError, match="276-byte FADT"):
        acpi.parse_fadt(tables[b"FACP"][:244])
    with pytest.raises(ValueError):
        acpi.parse_fadt(tables[b"APIC"])


def test_corrupting_a_byte_breaks_the_checksums(tables):
    for signature in (b"FACP", b"DSDT"):
        table = bytearray(tables[signature])
        table[40] ^= 0x01
        assert not acpi.checksum_ok(bytes(table))


def test_sleep_request_decodes_slp_typ_and_slp_en():
    assert acpi.sleep_request(5 << 2 | 1 << 5) == 5 == acpi.S5_SLEEP_TYPE
    assert acpi.sleep_request(5 << 2) is None  # SLP_EN clear: nothing happens
    assert acpi.sleep_request(1 << 2 | 1 << 5) == 1


def test_each_osv_kernel_has_its_own_fadt_dsdt_and_ioapic():
    machine = Machine(osv_plan(default_config(Topology(2, 2, 256 * layout.MiB), "", "", 2)),
                      console=lambda line: None)
    for kernel in machine.kernels:
        machine.install_firmware(kernel)
        tables = acpi.read_tables(kernel.view.read, layout.RSDP_ADDRESS)
        assert all(acpi.checksum_ok(table) for table in tables.values())
        assert acpi.parse_fadt(tables[b"FACP"]).hw_reduced
        assert tables[b"DSDT"][36:47] == S5_AML
        madt = acpi.parse_madt(tables[b"APIC"])
        own = list(kernel.placement.apic_ids)
        assert [apic for _, apic, _ in madt.local_apics] == own
        (ioapic_id, address, gsi_base), = madt.io_apics
        assert (address, gsi_base) == (layout.IOAPIC_BASE, 0) and ioapic_id not in own
        assert kernel.ioapic is not None and kernel.ioapic.apic_id == ioapic_id
    assert machine.kernels[0].ioapic is not machine.kernels[1].ioapic


POWER_OFF = """
;! mode = "long"
    mov dx, 0x601
    mov al, 0x80
    out dx, al              # clear WAK_STS first, as ACPICA does
    in al, dx
    movzx r12, al
    mov dx, 0x600
    mov al, {first:#x}
    out dx, al
    mov al, {second:#x}
    out dx, al
    cli
    hlt
"""


def test_writing_s5_with_slp_en_powers_the_kernel_off():
    # SLP_TYP 5 without SLP_EN and SLP_TYP 1 (not offered) do nothing; 5 with SLP_EN ends the kernel.
    run = run_snippet(Snippet.parse("power_off", POWER_OFF.format(first=5 << 2, second=5 << 2 | 1 << 5)))
    assert not check_expectations(run)
    kernel = run.machine.kernels[0]
    assert (kernel.end.kind, kernel.end.status, kernel.end.detail) == (EndKind.EXITED, 0, "ACPI S5 (power off)")
    assert run.machine.exit.status == 0 and run.result.status == 0
    assert run.machine.cores[0].registers()["r12"] == 0  # WAK_STS reads clear: the machine never sleeps


def test_other_sleep_requests_leave_the_kernel_running():
    run = run_snippet(Snippet.parse("no_power_off", POWER_OFF.format(first=1 << 2 | 1 << 5, second=5 << 2)))
    assert run.machine.kernels[0].end.kind is EndKind.HALTED
    assert run.machine.cores[0].registers()["r12"] == 0  # WAK_STS never set
