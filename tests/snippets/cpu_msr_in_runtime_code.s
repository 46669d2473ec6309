;! description = "RDMSR/WRMSR in code written at run time are emulated; an MSR the part lacks raises #GP, as on a Family 10h"
;! mode = "long"
;! max_instructions = 5000
;! [expect.cores.0]
;! rax = 0xfee00900              # IA32_APIC_BASE read by the copied RDMSR: base, EN, BSP
;! r12 = 2                       # two #GP: RDMSR and WRMSR of VM_CR (0xc0010114, SVM is not advertised)
;! r13 = 0x5a5a                  # DE_CFG (0xc0011029) reads back what the copied WRMSR wrote
;! state = "halted"
    mov eax, 13
    lea rbx, [rip + gp]
    call set_gate
    xor r12d, r12d
    mov dword ptr [0x400000], 0xc3320f   # rdmsr; ret  -- written now, run next
    mov dword ptr [0x400010], 0xc3300f   # wrmsr; ret
    mov ecx, 0xc0011029
    mov eax, 0x5a5a
    xor edx, edx
    mov rbx, 0x400010
    call rbx
    mov ecx, 0xc0011029
    mov rbx, 0x400000
    call rbx
    mov r13, rax
    mov ecx, 0xc0010114
    call rbx
    mov ecx, 0xc0010114
    mov rbx, 0x400010
    call rbx
    mov ecx, 0x1b
    mov rbx, 0x400000
    call rbx
    cli
    hlt
gp:
    inc r12
    add qword ptr [rsp + 8], 2   # past the 2-byte instruction that faulted
    add rsp, 8                   # the error code
    iretq
