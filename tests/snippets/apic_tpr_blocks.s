;! description = "with TPR = 0x50 a self IPI with vector 0x40 stays pending in IRR (IF=1, no handler) until TPR is lowered to 0"
;! mode = "long"
;! max_instructions = 100000
;! [expect.cores.0]
;! r12 = 0x1            # IRR bits 64-95 while blocked: vector 0x40 pending
;! r13 = 0              # handler count while blocked
;! r11 = 1              # handler count after TPR = 0
;! r10 = 0              # IRR bits 64-95 afterwards
;! r9 = 0x50            # PPR while blocked
;! r14 = 1
;! state = "halted"
    mov eax, 0x40
    lea rbx, [rip + handler]
    call set_gate
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    mov dword ptr [r15 + 0x80], 0x50        # TPR: class 5 blocks class 4
    xor r14, r14
    sti
    mov dword ptr [r15 + 0x300], 0x00040040 # fixed, self, vector 0x40
    mov ecx, 5000                           # several slice boundaries with IF=1
spin1:
    dec ecx
    jnz spin1
    mov r13, r14
    mov r12d, dword ptr [r15 + 0x220]
    mov r9d, dword ptr [r15 + 0xa0]
    mov dword ptr [r15 + 0x80], 0           # TPR 0: the interrupt may now be taken
    mov ecx, 5000
spin2:
    dec ecx
    jnz spin2
    mov r11, r14
    mov r10d, dword ptr [r15 + 0x220]
    cli
    hlt
handler:
    inc r14
    mov dword ptr [r15 + 0xb0], 0           # EOI
    iretq
