;! description = "real mode: cli; hlt halts the core (CS base 0x8000 != 0)"
;! mode = "real"
;! max_instructions = 3000
;! [expect.cores.0]
;! rbx = 1
;! state = "halted"
    mov bx, 1
    cli
    hlt
    mov bx, 2
spin:
    jmp spin
