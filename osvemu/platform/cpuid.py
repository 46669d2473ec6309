"""CPUID of an AMD Family 10h Opteron (AMD CPUID Specification #25481;
BKDG for Family 10h Processors #31116, section 3.18).

The values describe an 8-core "Magny-Cours" Opteron 6100 part so that the
topology a guest derives from CPUID (cores per package, initial APIC ID,
ApicIdCoreIdSize) agrees with the ACPI and MP tables.
"""

from __future__ import annotations

from osvemu.platform.topology import Cpu, Topology

VENDOR = b"AuthenticAMD"
#: Family 10h (base 0xF + extended 0x1), model 9, stepping 1.
CPU_SIGNATURE = 0x00100F91
BRAND = b"AMD Opteron(tm) Processor 6136"
MAX_STANDARD_LEAF = 0x1  # leaf 5 (MONITOR/MWAIT) describes nothing here
MAX_EXTENDED_LEAF = 0x8000001A

# Fn0000_0001_EDX: FPU VME DE PSE TSC MSR PAE CX8 APIC SEP PGE CMOV PAT PSE36
# CLFSH MMX FXSR SSE SSE2 HTT.  Only what is emulated is advertised: no MCE
# or MCA (bits 7, 14: no machine-check banks), no MTRR (bit 12: no MTRR MSRs;
# osvemu.cpu.msr raises #GP for them, as for every MSR it does not list).
LEAF1_EDX = 0x178BFBFF & ~((1 << 7) | (1 << 12) | (1 << 14))
LEAF1_EDX_APIC = 1 << 9
LEAF1_EDX_HTT = 1 << 28
# Fn0000_0001_ECX: SSE3, CMPXCHG16B, POPCNT.  No MONITOR (bit 3): Unicorn
# 2.1.4 raises #UD for MONITOR/MWAIT.  No x2APIC (bit 21): the local APIC is
# modelled as an xAPIC page only.  No hypervisor bit (OSV's monitor sets it).
LEAF1_ECX = (1 << 0) | (1 << 13) | (1 << 23)
# Fn8000_0001_ECX: LahfSahf, CmpLegacy, AltMovCr8, ABM, SSE4A, 3DNowPrefetch.
EXT1_ECX = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8)
EXT1_ECX_CMP_LEGACY = 1 << 1
# Fn8000_0001_EDX: the Fn0000_0001_EDX subset AMD mirrors, SYSCALL, NX, MmxExt,
# FFXSR, RDTSCP, LM, 3DNowExt, 3DNow.
EXT1_EDX = ((LEAF1_EDX & 0x0183F3FF) | (1 << 11) | (1 << 20) | (1 << 22) | (1 << 25) | (1 << 27) | (1 << 29)
            | (1 << 30) | (1 << 31))
#: Fn8000_0008_EAX: 40 physical address bits -- what Unicorn's CPU implements
#: (``TCG_PHYS_ADDR_BITS``; higher page-table address bits are reserved) --
#: and 48 linear.
ADDRESS_SIZES = (48 << 8) | 40


def _words(data: bytes) -> tuple[int, ...]:
    data = data.ljust(((len(data) + 3) // 4) * 4, b"\0")
    return tuple(int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4))


def cpuid(topology: Topology, cpu: Cpu, leaf: int, subleaf: int, apic_enabled: bool = True) -> tuple[int, int, int, int]:
    """(EAX, EBX, ECX, EDX) for ``leaf`` on ``cpu``; unknown leaves read as 0."""
    leaf &= 0xFFFFFFFF
    vendor = _words(VENDOR)
    cores = topology.cores_per_socket
    if leaf == 0:
        return MAX_STANDARD_LEAF, vendor[0], vendor[2], vendor[1]
    if leaf == 1:
        ebx = (8 << 8) | (min(cores, 255) << 16) | (cpu.apic_id << 24)  # CLFLUSH 64 bytes
        edx = LEAF1_EDX if apic_enabled else LEAF1_EDX & ~LEAF1_EDX_APIC
        if cores == 1:
            edx &= ~LEAF1_EDX_HTT
        return CPU_SIGNATURE, ebx, LEAF1_ECX, edx
    if leaf == 0x80000000:
        return MAX_EXTENDED_LEAF, vendor[0], vendor[2], vendor[1]
    if leaf == 0x80000001:
        ecx = EXT1_ECX | (EXT1_ECX_CMP_LEGACY if cores > 1 else 0)
        return CPU_SIGNATURE, 0, ecx, EXT1_EDX
    if 0x80000002 <= leaf <= 0x80000004:
        words = _words(BRAND.ljust(48, b"\0"))
        i = (leaf - 0x80000002) * 4
        return words[i], words[i + 1], words[i + 2], words[i + 3]
    if leaf == 0x80000005:  # L1 TLBs and caches: 64 KiB 2-way, 64-byte lines
        return 0xFF30FF10, 0xFF30FF20, 0x40020140, 0x40020140
    if leaf == 0x80000006:  # L2 512 KiB 16-way, L3 6 MiB
        return 0x20800000, 0x42004200, 0x02008140, 0x0030B140
    if leaf == 0x80000008:
        # Address sizes; NC = cores - 1; ApicIdCoreIdSize.
        return ADDRESS_SIZES, 0, (cores - 1) | (topology.core_id_bits << 12), 0
    return 0, 0, 0, 0
