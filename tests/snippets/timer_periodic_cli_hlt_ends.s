;! description = "a core halted with IF=0 while its periodic LAPIC timer runs can never wake: the run ends idle"
;! mode = "long"
;! max_instructions = 100000
;! [expect.cores.0]
;! state = "halted"
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    mov dword ptr [r15 + 0x3e0], 0xb        # divide by 1
    mov dword ptr [r15 + 0x320], 0x20020    # LVT timer: periodic, vector 32
    mov dword ptr [r15 + 0x380], 20000      # 100 us
    cli
    hlt
