;! description = "an interrupt from ring 3 switches to the ring-0 stack from TSS.RSP0 and pushes SS:RSP"
;! mode = "long"
;! [expect.cores.0]
;! r12 = 0x33                    # saved SS: the user data selector, RPL 3
;! r13 = 0x50000                 # saved user RSP
;! r14 = 0x2b                    # saved CS: user code, RPL 3
;! r15 = 0x80000                 # handler ran on TSS.RSP0 (frame of 5 qwords below it)
;! rbx = 0x3                     # the interrupted code ran at CPL 3
;! state = "halted"
    # GDT: add user code (0x18 is the TSS) at 0x28 and user data at 0x30
    mov rax, 0x00affa000000ffff
    mov qword ptr [0x1028], rax
    mov rax, 0x00cff2000000ffff
    mov qword ptr [0x1030], rax
    lea rax, [rip + gdtr]
    lgdt [rax]
    mov qword ptr [0x1104], 0x80000     # TSS.RSP0
    mov eax, 0x80
    lea rbx, [rip + handler]
    call set_gate
    mov word ptr [0x9000 + 0x80*16 + 4], 0xee00   # DPL 3 so ring 3 may int 0x80
    push 0x33                    # SS = user data | 3
    push 0x50000                 # user RSP
    push 0x2                     # RFLAGS
    push 0x2b                    # CS = user code | 3
    lea rax, [rip + user]
    push rax
    iretq
user:
    int 0x80
    ud2
handler:
    mov r15, rsp
    add r15, 40
    mov r12, [rsp + 32]
    mov r13, [rsp + 24]
    mov r14, [rsp + 8]
    mov rbx, [rsp + 8]
    and rbx, 3
    cli
    hlt
gdtr:
    .word 7*8-1
    .quad 0x1000
