;! description = "a self IPI (shorthand 01) is delivered to the sending core once"
;! mode = "long"
;! max_instructions = 100000
;! [expect.cores.0]
;! r14 = 1
;! r13 = 1        # counted when the handler ran before the spin loop ended
;! state = "halted"
    mov eax, 0x40
    lea rbx, [rip + handler]
    call set_gate
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    xor r14, r14
    sti
    mov dword ptr [r15 + 0x300], 0x00040040 # fixed, shorthand self, vector 0x40
    mov ecx, 5000
spin:
    dec ecx
    jnz spin
    mov r13, r14
    cli
    hlt
handler:
    inc r14
    mov dword ptr [r15 + 0xb0], 0           # EOI
    iretq
