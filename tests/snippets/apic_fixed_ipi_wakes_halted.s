;! description = "a fixed IPI (physical destination 1, vector 0x40) wakes a halted core and runs its handler once"
;! mode = "long"
;! cores_per_socket = 2
;! max_instructions = 200000
;! [expect.memory]
;! 0x300000 = "00 00 00 00 01 00 00 00"   # per-core handler counts: core 0 none, core 1 once
;! 0x300020 = "01 00 00 00"               # core 1 resumed after its HLT
;! [expect.cores.1]
;! r14 = 1
;! state = "halted"
;! [expect.cores.0]
;! state = "halted"
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    test edi, edi
    jnz receiver
    # core 0: wait until core 1 is ready, then send the IPI
wait_ready:
    pause
    cmp dword ptr [0x300010], 1
    jne wait_ready
    mov dword ptr [r15 + 0x310], 0x01000000 # destination APIC ID 1
    mov dword ptr [r15 + 0x300], 0x00000040 # fixed, physical, vector 0x40
    cli
    hlt
receiver:
    mov eax, 0x40
    lea rbx, [rip + handler]
    call set_gate
    xor r14, r14
    lock inc dword ptr [0x300010]
    sti
    hlt
    cli
    mov dword ptr [0x300020], 1
    hlt
handler:
    inc r14
    lock inc dword ptr [rdi*4 + 0x300000]
    mov dword ptr [r15 + 0xb0], 0           # EOI
    iretq
