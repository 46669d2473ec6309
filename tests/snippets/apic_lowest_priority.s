;! description = "a lowest-priority logical IPI to all cores reaches only the core with the lowest TPR; on a priority tie the lowest APIC ID wins"
;! mode = "long"
;! cores_per_socket = 4
;! max_instructions = 400000
;! [expect.memory]
;! 0x300000 = "00 00 00 00 01 00 00 00 01 00 00 00 00 00 00 00"   # handler count per core
;! 0x300020 = "00 00 00 00 02 00 00 00 01 00 00 00 00 00 00 00"   # order: core 2 took IPI 1, core 1 IPI 2
;! [expect.all_cores]
;! state = "halted"
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    mov dword ptr [r15 + 0xe0], 0xffffffff  # DFR: flat model
    lea ecx, [edi + 24]
    mov eax, 1
    shl eax, cl
    mov dword ptr [r15 + 0xd0], eax         # LDR: logical ID = 1 << index
    lea rax, [rip + tpr_values]
    mov eax, dword ptr [rax + rdi*4]
    mov dword ptr [r15 + 0x80], eax         # TPR: 0x30, 0x20, 0x10, 0x40
    test edi, edi
    jnz receiver
    mov eax, 0x80
    lea rbx, [rip + handler]
    call set_gate
    mov dword ptr [0x300040], 1             # gate installed
wait_ready:
    pause
    cmp dword ptr [0x300010], 3
    jne wait_ready
    mov dword ptr [r15 + 0x310], 0x0f000000 # logical destination: all four cores
    mov dword ptr [0x300044], 1             # IPI sequence number
    mov dword ptr [r15 + 0x300], 0x00000980 # lowest priority, logical, vector 0x80
wait_first:
    pause
    cmp dword ptr [0x300048], 1             # a handler finished
    jne wait_first
    # core 2 raised its TPR to 0x20 in the handler: now cores 1 and 2 tie
    mov dword ptr [0x300044], 2
    mov dword ptr [r15 + 0x300], 0x00000980
    mov ecx, 5000
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
idle:
    hlt
    jmp idle
handler:
    lock inc dword ptr [rdi*4 + 0x300000]
    mov eax, dword ptr [0x300044]
    mov dword ptr [rdi*4 + 0x300020], eax   # which IPI this core took
    mov dword ptr [r15 + 0x80], 0x20        # TPR 0x20
    mov dword ptr [r15 + 0xb0], 0           # EOI
    lock inc dword ptr [0x300048]
    iretq
tpr_values:
    .long 0x30, 0x20, 0x10, 0x40
