;! description = "a fixed IPI with shorthand 10 (all including self) reaches every core, the sender too"
;! mode = "long"
;! cores_per_socket = 4
;! max_instructions = 100000
;! [expect.memory]
;! 0x300000 = "01 00 00 00 01 00 00 00 01 00 00 00 01 00 00 00"   # handler count per core
;! [expect.all_cores]
;! state = "halted"
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    test edi, edi
    jnz receiver
    mov eax, 0x40
    lea rbx, [rip + handler]
    call set_gate
    mov dword ptr [0x300040], 1             # gate installed
wait_ready:
    pause
    cmp dword ptr [0x300010], 3
    jne wait_ready
    sti
    mov dword ptr [r15 + 0x300], 0x00080040 # fixed, vector 0x40, shorthand
    mov ecx, 5000                           # core 0's own delivery (if any) is taken here
spin:
    dec ecx
    jnz spin
    cli
    hlt
receiver:
    pause
    cmp dword ptr [0x300040], 1
    jne receiver
    lock inc dword ptr [0x300010]
    sti
    hlt
    cli
    hlt
handler:
    lock inc dword ptr [rdi*4 + 0x300000]
    mov dword ptr [r15 + 0xb0], 0           # EOI
    iretq
