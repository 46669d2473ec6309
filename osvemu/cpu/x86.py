"""x86 architectural constants used by the cores (Intel SDM Vol. 3A; AMD APM Vol. 2)."""

from __future__ import annotations

# Control registers (SDM Vol. 3A 2.5)
CR0_PE = 1 << 0
CR0_TS = 1 << 3  # task switched
CR0_ET = 1 << 4
CR0_WP = 1 << 16  # supervisor writes honour read-only pages
CR0_NW = 1 << 29  # not write-through
CR0_CD = 1 << 30  # cache disable
CR0_PG = 1 << 31
PAGE_SIZE = 4096
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
EFER_LME = 1 << 8
EFER_LMA = 1 << 10

# Segment descriptor high-dword bits (Intel SDM Vol. 3A 3.4.5, Figure 3-8).
DESC_A = 1 << 8  # accessed
DESC_W = 1 << 9  # data: writable
DESC_R = 1 << 9  # code: readable
DESC_CODE = 1 << 11  # executable
DESC_S = 1 << 12  # code or data, not system
DESC_P = 1 << 15  # present
DESC_L = 1 << 21  # 64-bit code segment
DESC_DB = 1 << 22  # default operation size 32 bits
DESC_G = 1 << 23  # 4 KiB granularity
# The same descriptor as one 64-bit value: P is bit 47, DPL bits 46:45.
DESCRIPTOR_PRESENT = 1 << 47
DESCRIPTOR_DPL_SHIFT = 45
DESCRIPTOR_S = 1 << 44  # code or data, not system (SDM Vol. 3A 3.4.5)
DESCRIPTOR_CODE = 1 << 43  # type bit 11: executable
DESCRIPTOR_CONFORMING = 1 << 42  # type bit 10 of a code segment
DESCRIPTOR_L = 1 << 53  # 64-bit code segment
DESCRIPTOR_DB = 1 << 54  # default operation size
EFER_NXE = 1 << 11

# RFLAGS (SDM Vol. 1 3.4.3)
RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_NT = 1 << 14
RFLAGS_RF = 1 << 16
RFLAGS_VM = 1 << 17
RFLAGS_AC = 1 << 18
RFLAGS_FIXED = 1 << 1

# Exception vectors (SDM Vol. 3A 6.3, Table 6-1)
VECTOR_DE = 0
VECTOR_DB = 1
VECTOR_NMI = 2
VECTOR_BP = 3
VECTOR_OF = 4
VECTOR_UD = 6
VECTOR_DF = 8
VECTOR_TS = 10
VECTOR_NP = 11
VECTOR_SS = 12
VECTOR_GP = 13
VECTOR_PF = 14
VECTOR_AC = 17
VECTOR_CP = 21
#: Exceptions that push an error code (SDM Vol. 3A 6.13).
VECTORS_WITH_ERROR_CODE = frozenset({VECTOR_DF, VECTOR_TS, VECTOR_NP, VECTOR_SS, VECTOR_GP, VECTOR_PF, VECTOR_AC, VECTOR_CP, 29, 30})
EXCEPTION_NAMES = {
    0: "#DE divide error", 1: "#DB debug", 2: "NMI", 3: "#BP breakpoint", 4: "#OF overflow",
    5: "#BR bound range", 6: "#UD invalid opcode", 7: "#NM device not available", 8: "#DF double fault",
    10: "#TS invalid TSS", 11: "#NP segment not present", 12: "#SS stack fault",
    13: "#GP general protection", 14: "#PF page fault", 16: "#MF x87 error", 17: "#AC alignment check",
    18: "#MC machine check", 19: "#XM SIMD exception", 20: "#VE virtualization", 21: "#CP control protection",
}

# IDT gate types (SDM Vol. 3A 6.11, 6.14.1)
GATE_TASK = 0x5
GATE_INTERRUPT_16 = 0x6
GATE_TRAP_16 = 0x7
GATE_INTERRUPT = 0xE
GATE_TRAP = 0xF

# Page-table entry bits (SDM Vol. 3A 4.5)
PTE_PRESENT = 1 << 0
PTE_WRITE = 1 << 1
PTE_USER = 1 << 2
PTE_LARGE = 1 << 7
# #PF error code bits (SDM Vol. 3A 4.7)
PF_PRESENT = 1 << 0
PF_WRITE = 1 << 1
PF_USER = 1 << 2
PF_RSVD = 1 << 3  # a paging entry had a reserved bit set (SDM Vol. 3A 4.7)
PF_FETCH = 1 << 4

# 64-bit TSS fields (SDM Vol. 3A 8.7, Figure 8-11)
TSS64_RSP0 = 0x04
TSS64_IST1 = 0x24
# 32-bit TSS fields (SDM Vol. 3A 8.2.1, Figure 8-2)
TSS32_ESP0 = 0x04
TSS32_SS0 = 0x08

# MSRs (SDM Vol. 4)
MSR_IA32_APIC_BASE = 0x1B
MSR_IA32_TSC = 0x10
MSR_EFER = 0xC0000080
#: The SYSCALL/SYSRET MSRs (AMD APM Vol. 2 6.1.1).
MSR_STAR = 0xC0000081
MSR_LSTAR = 0xC0000082
MSR_CSTAR = 0xC0000083
MSR_SFMASK = 0xC0000084
EFER_SCE = 1 << 0
APIC_BASE_BSP = 1 << 8
APIC_BASE_EXTD = 1 << 10
APIC_BASE_ENABLE = 1 << 11
