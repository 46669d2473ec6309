;! description = "CLTS and LMSW, the other writes of CR0, go through the same checked path: CLTS clears TS; LMSW loads CR0 bits 3:0 from a register or from memory and cannot clear PE (AMD APM Vol. 3 CLTS, LMSW)"
;! mode = "long"
;! max_instructions = 2000
;! [expect.cores.0]
;! r12 = 0x80010019              # TS set by MOV CR0
;! r13 = 0x80010011              # CLTS: TS clear
;! r14 = 0x8001001b              # LMSW ax = 0x0a: MP and TS set, PE kept
;! r15 = 0x80010013              # LMSW [mem] = 0x0002: MP only, PE still set
;! state = "halted"
    mov rax, cr0
    bts rax, 3
    mov cr0, rax
    mov r12, cr0
    clts
    mov r13, cr0
    mov ax, 0x0a
    lmsw ax
    mov r14, cr0
    lea rbx, [rip + word_two]
    lmsw word ptr [rbx]
    mov r15, cr0
    cli
    hlt
word_two:
    .word 0x0002
