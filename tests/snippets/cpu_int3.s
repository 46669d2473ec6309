;! description = "int3 is delivered through vector 3 as a trap: the saved RIP points just after the one-byte int3"
;! mode = "long"
;! max_instructions = 2000
;! [expect.cores.0]
;! r12 = 1                       # handler ran once
;! r13 = 0x77                    # execution resumed after int3
;! r14 = 0                       # saved RIP = address after the int3 byte
;! r15 = 0x08                    # saved CS
;! state = "halted"
    mov eax, 3
    lea rbx, [rip + bp_handler]
    call set_gate
    xor r12d, r12d
    xor r13d, r13d
    lea rsi, [rip + after]
    int3
after:
    mov r13, 0x77
    cli
    hlt
bp_handler:
    inc r12
    mov r14, [rsp]
    sub r14, rsi
    mov r15, [rsp + 8]
    iretq
