;! description = "an NMI IPI (delivery mode 100) runs the vector-2 handler of a core halted with IF=0"
;! mode = "long"
;! cores_per_socket = 2
;! max_instructions = 200000
;! [expect.memory]
;! 0x300000 = "00 00 00 00 00 00 00 00"   # no fixed-vector handler ran anywhere
;! 0x300020 = "01 00 00 00"               # core 1 resumed after its HLT
;! [expect.cores.1]
;! r14 = 1              # NMI handler ran once
;! r13 = 0              # it saw IF = 0 in the interrupted RFLAGS
;! state = "halted"
;! [expect.cores.0]
;! r14 = 0
;! state = "halted"
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    xor r14, r14
    test edi, edi
    jnz receiver
wait_ready:
    pause
    cmp dword ptr [0x300010], 1
    jne wait_ready
    mov dword ptr [r15 + 0x310], 0x01000000 # destination APIC ID 1
    mov dword ptr [r15 + 0x300], 0x00000440 # NMI (vector field ignored), physical
    cli
    hlt
receiver:
    mov eax, 2
    lea rbx, [rip + nmi_handler]
    call set_gate
    mov eax, 0x40
    lea rbx, [rip + fixed_handler]
    call set_gate
    mov r13, -1
    cli
    lock inc dword ptr [0x300010]
    hlt
    mov dword ptr [0x300020], 1
    hlt
nmi_handler:
    inc r14
    mov r13, qword ptr [rsp + 16]           # interrupted RFLAGS
    and r13, 0x200
    iretq
fixed_handler:
    lock inc dword ptr [rdi*4 + 0x300000]
    mov dword ptr [r15 + 0xb0], 0
    iretq
