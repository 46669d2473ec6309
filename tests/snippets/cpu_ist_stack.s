;! description = "an IDT gate with IST=1 switches to TSS.IST1, aligned down to 16 bytes, and saves the old RSP"
;! mode = "long"
;! max_instructions = 2000
;! [expect.cores.0]
;! r12 = 0x4ffd8                 # (0x50008 & ~15) - 5 qwords
;! r13 = 0                       # RSP & 15 before the frame was pushed
;! r14 = 0                       # saved RSP = RSP at the int
;! r15 = 0x10                    # saved SS
;! state = "halted"
    mov rax, 0x50008
    mov qword ptr [0x1100 + 0x24], rax    # TSS.IST1 (deliberately misaligned)
    mov eax, 0x40
    lea rbx, [rip + handler]
    call set_gate
    mov byte ptr [0x9000 + 0x40*16 + 4], 1   # IST = 1
    mov rsi, rsp
    int 0x40
    cli
    hlt
handler:
    mov r12, rsp
    lea r13, [rsp + 40]
    and r13, 15
    mov r14, [rsp + 24]
    sub r14, rsi
    mov r15, [rsp + 32]
    cli
    hlt
