;! description = "ISR bits: vector 0x40 is in service during its handler, a nested higher-class 0x50 adds its bit, and each EOI clears only the highest bit"
;! mode = "long"
;! cores_per_socket = 2
;! max_instructions = 200000
;! [expect.cores.0]
;! r12 = 0x00010001     # ISR bits 64-95 in the nested 0x50 handler: 0x40 and 0x50
;! r13 = 0x00000001     # after the inner EOI: 0x40 only
;! r11 = 0x00000001     # back in the 0x40 handler
;! r10 = 0              # after the outer EOI
;! rbx = 0              # after IRETQ
;! r8 = 0x40            # PPR inside the 0x40 handler
;! r14 = 2              # both handlers ran
;! state = "halted"
;! [expect.cores.1]
;! state = "halted"
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    test edi, edi
    jnz sender
    mov eax, 0x40
    lea rbx, [rip + outer]
    call set_gate
    mov eax, 0x50
    lea rbx, [rip + inner]
    call set_gate
    xor r14, r14
    mov rbx, -1
    mov dword ptr [0x300010], 1             # ready for 0x40
    sti
    hlt
    cli
    mov ebx, dword ptr [r15 + 0x120]
    hlt
outer:
    inc r14
    mov r8d, dword ptr [r15 + 0xa0]
    xor r9, r9
    sti                                     # allow nesting
    mov dword ptr [0x300010], 2             # ready for 0x50
wait_inner:
    pause
    test r9, r9
    jz wait_inner
    cli
    mov r11d, dword ptr [r15 + 0x120]
    mov dword ptr [r15 + 0xb0], 0           # EOI (0x40)
    mov r10d, dword ptr [r15 + 0x120]
    iretq
inner:
    inc r14
    mov r12d, dword ptr [r15 + 0x120]
    mov dword ptr [r15 + 0xb0], 0           # EOI (0x50)
    mov r13d, dword ptr [r15 + 0x120]
    mov r9, 1
    iretq
sender:
    mov dword ptr [r15 + 0x310], 0x00000000 # destination APIC ID 0
wait1:
    pause
    cmp dword ptr [0x300010], 1
    jne wait1
    mov dword ptr [r15 + 0x300], 0x00000040 # fixed, vector 0x40
wait2:
    pause
    cmp dword ptr [0x300010], 2
    jne wait2
    mov dword ptr [r15 + 0x300], 0x00000050 # fixed, vector 0x50
    cli
    hlt
