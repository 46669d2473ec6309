;! description = "LAPIC timer in one-shot mode fires exactly once; the current count then reads 0 and the initial count keeps its value"
;! mode = "long"
;! max_instructions = 200000
;! [expect.cores.0]
;! r14 = 1              # handler count after ~10 more periods
;! r13 = 1              # handler count right after the wake-up
;! r12 = 0              # current count after expiry
;! r11 = 20000          # initial count register unchanged
;! r10 = 1              # current count was non-zero before expiry
;! state = "halted"
    mov eax, 32
    lea rbx, [rip + timer]
    call set_gate
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    mov dword ptr [r15 + 0x3e0], 0xb        # divide by 1
    mov dword ptr [r15 + 0x320], 0x00020    # LVT timer: one-shot, vector 32
    xor r14, r14
    mov dword ptr [r15 + 0x380], 20000      # 20000 bus ticks = 100 us
    xor r10, r10
    cmp dword ptr [r15 + 0x390], 0
    setne r10b
    sti
wait:
    hlt
    test r14, r14
    jz wait
    mov r13, r14
    mov ecx, 50000                          # ~1 ms: ten timer periods
spin:
    dec ecx
    jnz spin
    mov r12d, dword ptr [r15 + 0x390]
    mov r11d, dword ptr [r15 + 0x380]
    cli
    hlt
timer:
    inc r14
    mov dword ptr [r15 + 0xb0], 0           # EOI
    iretq
