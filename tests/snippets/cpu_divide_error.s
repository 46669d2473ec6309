;! description = "div by zero raises #DE (vector 0) with the faulting RIP; the handler skips the div"
;! mode = "long"
;! max_instructions = 2000
;! [expect.cores.0]
;! r12 = 1                       # handler ran once
;! r13 = 0xde                    # execution resumed after the div
;! r14 = 0                       # saved RIP is the div (a fault)
;! rax = 100                     # dividend left unchanged
;! state = "halted"
    mov eax, 0
    lea rbx, [rip + de_handler]
    call set_gate
    xor r12d, r12d
    xor r13d, r13d
    lea rsi, [rip + div_site]
    mov eax, 100
    xor edx, edx
    xor ecx, ecx
div_site:
    div ecx
    mov r13d, 0xde
    cli
    hlt
de_handler:
    inc r12
    mov r14, [rsp]
    sub r14, rsi
    add qword ptr [rsp], 2       # div ecx is f7 f1
    iretq
