;! description = "logical cluster-model IPI to cluster 1, members 0b0101, reaches only cores 0 and 2 (core 3 has member bit 0 but sits in cluster 2)"
;! mode = "long"
;! cores_per_socket = 4
;! max_instructions = 100000
;! [expect.memory]
;! 0x300000 = "01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00"   # handler count per core
;! [expect.all_cores]
;! state = "halted"
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    mov dword ptr [r15 + 0xe0], 0x0fffffff  # DFR: cluster model
    lea rax, [rip + ldr_values]
    mov eax, dword ptr [rax + rdi*4]
    mov dword ptr [r15 + 0xd0], eax         # LDR
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
    mov dword ptr [r15 + 0x310], 0x15000000 # cluster 1, members 0b0101
    mov dword ptr [r15 + 0x300], 0x00000840 # fixed, logical, vector 0x40
    sti
    mov ecx, 5000                           # core 0's own delivery is taken here
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
ldr_values:
    # cluster in bits 31:28, member bit in bits 27:24
    .long 0x11000000, 0x12000000, 0x14000000, 0x21000000
