;! description = "an SMI IPI is only counted: the target core (spinning with IF=1) runs no handler, keeps going and the run ends cleanly"
;! mode = "long"
;! cores_per_socket = 2
;! max_instructions = 200000
;! [expect]
;! exit = 0
;! [expect.memory]
;! 0x300000 = "00 00 00 00"               # no handler ran on core 1
;! 0x300020 = "aa 00 00 00"               # core 1 finished its loop
;! [expect.cores.1]
;! state = "halted"
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    test edi, edi
    jnz receiver
wait_ready:
    pause
    cmp dword ptr [0x300010], 1
    jne wait_ready
    mov dword ptr [r15 + 0x310], 0x01000000 # destination APIC ID 1
    mov dword ptr [r15 + 0x300], 0x00000240 # SMI (vector field 0x40), physical
    mov ecx, 5000                           # let core 1 run a few slices with IF=1
spin:
    dec ecx
    jnz spin
    mov dword ptr [0x300014], 1             # tell core 1 to stop
wait_done:
    pause
    cmp dword ptr [0x300020], 0xaa
    jne wait_done
    mov eax, dword ptr [0x300000]
    out 0xf4, al                            # exit status = handler count (0)
receiver:
    mov eax, 0x40
    lea rbx, [rip + handler]
    call set_gate
    mov eax, 2
    lea rbx, [rip + handler]
    call set_gate
    sti
    lock inc dword ptr [0x300010]
loop:
    pause
    cmp dword ptr [0x300014], 1
    jne loop
    mov dword ptr [0x300020], 0xaa
    cli
    hlt
handler:
    lock inc dword ptr [0x300000]
    mov dword ptr [r15 + 0xb0], 0
    iretq
