"""``osvemu tables``: a kernel's rewritten firmware, readable (as ``acpidump``
and ``iasl -d`` would show it) or as raw binary tables."""

from __future__ import annotations

from pathlib import Path

from osvemu.errors import ConfigError
from osvemu.platform import acpi, layout, mptable
from osvemu.platform.machine import Kernel
from osvemu.platform.pvh import START_INFO, StartInfo, unpack_memory_map


def _tables(read) -> tuple[acpi.Rsdp, dict[bytes, bytes]]:
    """The RSDP and every table it reaches, the RSDT included when an XSDT
    is the root an OS uses (ACPI 6.4 5.2.5.3: the RSDP names both)."""
    rsdp = acpi.parse_rsdp(read(layout.RSDP_ADDRESS, acpi.RSDP.size))
    tables = acpi.read_tables(read, layout.RSDP_ADDRESS)
    if rsdp.rsdt_address and acpi.RSDT_SIGNATURE not in tables:
        header = acpi.parse_header(read(rsdp.rsdt_address, acpi.SDT_HEADER.size))
        tables = {acpi.RSDT_SIGNATURE: read(rsdp.rsdt_address, header.length), **tables}
    return rsdp, tables


def describe(kernel: Kernel) -> str:
    read = kernel.view.read
    rsdp, tables = _tables(read)
    ram_bytes = sum(size for base, size in kernel.placement.image_ram if base >= layout.LOW_MEMORY_END)
    who = f"Kernel {kernel.name}" if kernel.placement.labelled else "The machine's one kernel"
    title = f"{who}: cores {list(kernel.placement.apic_ids)}, {ram_bytes >> 20} MiB of RAM"
    root = (f"RSDP @ {layout.RSDP_ADDRESS:#x}: revision {rsdp.revision}, RSDT {rsdp.rsdt_address:#x}, "
            f"XSDT {rsdp.xsdt_address:#x}, checksums {'valid' if rsdp.checksum_ok else 'INVALID'}")
    out = [title, "", root]
    for signature, table in tables.items():
        header = acpi.parse_header(table)
        out.append(f"{signature.decode()}: length {header.length}, revision {header.revision}, "
                   f"OEM {header.oem_id.decode().strip()}, checksum {'valid' if acpi.checksum_ok(table) else 'INVALID'}")
        if signature == b"APIC":
            madt = acpi.parse_madt(table)
            out.append(f"  Local APIC address {madt.lapic_address:#x}, flags {madt.flags:#x}")
            out += [f"  Processor Local APIC: UID {uid}, APIC ID {apic}, {'enabled' if flags & 1 else 'disabled'}"
                    for uid, apic, flags in madt.local_apics]
            out += [f"  I/O APIC: ID {i}, address {a:#x}, GSI base {g}" for i, a, g in madt.io_apics]
            out += [f"  Interrupt Source Override: bus {b}, IRQ {s} -> GSI {g}, flags {f:#x}"
                    for b, s, g, f in madt.overrides]
            out += [f"  Local APIC NMI: UID {u:#x}, flags {f:#x}, LINT{lint}" for u, f, lint in madt.nmis]
        elif signature == b"SRAT":
            srat = acpi.parse_srat(table)
            out += [f"  Processor affinity: APIC ID {apic} -> domain {d}" for d, apic, _ in srat.processors]
            out += [f"  Memory affinity: [{b:#x}-{b + s - 1:#x}] -> domain {d}" for d, b, s, _ in srat.memory]
        elif signature == b"SLIT":
            out += [f"  {' '.join(str(x) for x in row)}" for row in acpi.parse_slit(table)]
    config = mptable.read_config(read)
    out.append(f"MP floating pointer @ {mptable.find_floating_pointer(read):#x}, configuration table checksum "
               f"{'valid' if config.checksum_ok else 'INVALID'}")
    out += [f"  Processor: APIC ID {apic}{' (BSP)' if flags & mptable.CPU_BOOTSTRAP else ''}"
            for apic, _, flags in config.processors]
    info = StartInfo.unpack(read(kernel.firmware.start_info_address, START_INFO.size))
    cmdline = read(info.cmdline_paddr, 256).split(b"\0")[0].decode()
    out.append(f"Memory map (PVH start info @ {kernel.firmware.start_info_address:#x}), "
               f"command line {cmdline!r}:")
    out += [f"  {entry.describe()}" for entry in
            unpack_memory_map(read(info.memmap_paddr, 24 * info.memmap_entries), info.memmap_entries)]
    return "\n".join(out) + "\n"


def write_raw(kernel: Kernel, directory: str | Path) -> list[Path]:
    """The RSDP as rsdp.dat, each ACPI table as SIGNATURE.dat (the RSDT and
    XSDT among them), plus mptable.dat and e820.dat."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--raw {directory}: {error.strerror}") from None
    read = kernel.view.read
    files: list[tuple[Path, bytes]] = [(directory / "rsdp.dat", read(layout.RSDP_ADDRESS, acpi.RSDP.size))]
    for signature, table in _tables(read)[1].items():
        files.append((directory / f"{signature.decode().lower()}.dat", table))
    pointer = mptable.find_floating_pointer(read)
    address = mptable.parse_floating_pointer(read(pointer, 16))
    length = mptable.CONFIG_HEADER.unpack_from(read(address, mptable.CONFIG_HEADER.size))[1]
    files.append((directory / "mptable.dat", read(pointer, 16) + read(address, length)))
    info = StartInfo.unpack(read(kernel.firmware.start_info_address, START_INFO.size))
    files.append((directory / "e820.dat", read(info.memmap_paddr, 24 * info.memmap_entries)))
    written = []
    for path, data in files:
        try:
            path.write_bytes(data)
        except OSError as error:
            raise ConfigError(f"--raw {directory}: cannot write {path.name}: {error.strerror}") from None
        written.append(path)
    return written


__all__ = ["describe", "write_raw"]
