;! description = "LAPIC timer in periodic mode wakes HLT a counted number of times"
;! mode = "long"
;! [expect.cores.0]
;! r14 = 5
;! state = "halted"
    mov eax, 32
    lea rbx, [rip + timer]
    call set_gate
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable, spurious 0xff
    mov dword ptr [r15 + 0x3e0], 0xb        # divide by 1
    mov dword ptr [r15 + 0x320], 0x20020    # LVT timer: periodic, vector 32
    mov dword ptr [r15 + 0x380], 20000      # 20000 bus ticks = 100 us
    xor r14, r14
    sti
wait:
    hlt
    cmp r14, 5
    jb wait
    mov dword ptr [r15 + 0x320], 0x10020    # mask the timer
    cli
    hlt
timer:
    inc r14
    mov dword ptr [r15 + 0xb0], 0           # EOI
    iretq
