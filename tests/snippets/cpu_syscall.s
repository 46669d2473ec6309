;! description = "SYSCALL from ring 3 (AMD APM Vol. 3): RCX = next RIP, R11 = RFLAGS, CS/SS from STAR, RFLAGS masked by SFMASK, RIP = LSTAR, CPL 0"
;! mode = "long"
;! [expect.cores.0]
;! r8 = 1                        # RCX is the instruction after SYSCALL
;! r9 = 0x202                    # R11: the user RFLAGS (IF set)
;! r10 = 0x8                     # CS = STAR[47:32]
;! r11 = 0x10                    # SS = STAR[47:32] + 8
;! r12 = 0x2                     # RFLAGS: IF cleared by SFMASK
;! r13 = 0x50000                 # RSP untouched
;! r14 = 0x2b                    # the caller's CS before
;! state = "halted"
    mov rax, 0x00affa000000ffff  # user code at 0x28, user data at 0x30
    mov qword ptr [0x1028], rax
    mov rax, 0x00cff2000000ffff
    mov qword ptr [0x1030], rax
    lea rax, [rip + gdtr]
    lgdt [rax]
    mov ecx, 0xc0000080          # EFER.SCE
    rdmsr
    or eax, 1
    wrmsr
    mov ecx, 0xc0000081          # STAR: SYSCALL CS 0x08
    xor eax, eax
    mov edx, 0x00180008
    wrmsr
    mov ecx, 0xc0000082          # LSTAR
    lea rax, [rip + entry]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov ecx, 0xc0000084          # SFMASK: IF and TF
    mov eax, 0x300
    xor edx, edx
    wrmsr
    push 0x33
    push 0x50000
    push 0x202
    push 0x2b
    lea rax, [rip + user]
    push rax
    iretq
user:
    mov r14, cs
    syscall
after:
    ud2
entry:
    pushfq
    pop r12
    lea rax, [rip + after]
    xor r8d, r8d
    cmp rcx, rax
    sete r8b
    mov r9, r11
    mov r10, cs
    mov r11, ss
    mov r13, rsp
    cli
    hlt
gdtr:
    .word 7*8-1
    .quad 0x1000
