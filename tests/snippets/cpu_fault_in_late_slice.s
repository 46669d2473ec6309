;! description = "#UD in a late counted slice (quantum 10, fault at instruction ~30) is delivered: no phantom #PF from the slice end poisons the exception state"
;! mode = "long"
;! quantum = 10
;! max_instructions = 2000
;! [expect.cores.0]
;! r12 = 1                       # handler ran once
;! r13 = 0x55                    # execution resumed after ud2
;! r14 = 0                       # saved RIP was the ud2 itself (fault, not trap)
;! r15 = 0x08                    # saved CS
;! state = "halted"
    mov eax, 6
    lea rbx, [rip + ud_handler]
    call set_gate
    xor r12d, r12d
    xor r13d, r13d
    lea rsi, [rip + ud_site]
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    nop
ud_site:
    ud2
    mov r13, 0x55
    cli
    hlt
ud_handler:
    inc r12
    mov r14, [rsp]
    sub r14, rsi
    mov r15, [rsp + 8]
    add qword ptr [rsp], 2
    iretq
