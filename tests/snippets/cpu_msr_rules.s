;! description = "MSR rules of osvemu/cpu/msr.py: #GP for a reserved EFER bit, a non-canonical LSTAR, x2APIC enable and a changed LME under paging; PATCH_LEVEL writes ignored; HWCR reads TscFreqSel; a TSC write moves the counter"
;! mode = "long"
;! max_instructions = 5000
;! [expect.cores.0]
;! r12 = 4                       # four #GP: EFER bit 1, LSTAR non-canonical, APIC_BASE.EXTD, EFER.LME cleared under paging
;! r13 = 0x010000dc              # PATCH_LEVEL after a write of 0: unchanged
;! r14 = 0x01000000              # HWCR: TscFreqSel
;! r15 = 1                       # the TSC reads within 1000 cycles above the 0x100000000 written
;! state = "halted"
    mov eax, 13
    lea rbx, [rip + gp]
    call set_gate
    xor r12d, r12d
    mov ecx, 0xc0000080          # EFER: set reserved bit 1
    rdmsr
    or eax, 2
    wrmsr
    mov ecx, 0xc0000082          # LSTAR = 0x0000800000000000 (not canonical)
    xor eax, eax
    mov edx, 0x8000
    wrmsr
    mov ecx, 0x1b                # APIC_BASE with EXTD (bit 10): x2APIC is not advertised
    rdmsr
    or eax, 0x400
    wrmsr
    mov ecx, 0xc0000080          # EFER.LME cleared while paging is on
    rdmsr
    and eax, 0xfffffeff
    wrmsr
    mov ecx, 0x8b                # PATCH_LEVEL: writes ignored
    xor eax, eax
    xor edx, edx
    wrmsr
    rdmsr
    mov r13d, eax
    mov ecx, 0xc0010015          # HWCR
    rdmsr
    mov r14d, eax
    mov ecx, 0x10                # TSC = 1 << 32
    xor eax, eax
    mov edx, 1
    wrmsr
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov rbx, 0x100000000
    sub rax, rbx
    xor r15d, r15d
    cmp rax, 1000
    setb r15b
    cli
    hlt
gp:
    inc r12
    add qword ptr [rsp + 8], 2   # past the WRMSR
    add rsp, 8
    iretq
