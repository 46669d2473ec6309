;! description = "MOV to CR0 and CR4 is checked as the processor checks it (AMD APM Vol. 2 3.1.1, 3.1.3): SMEP and other bits CPUID does not report, paging cleared in 64-bit mode, PG without PE, NW without CD and CR0 bits 63:32 are #GP(0) and change nothing; a legal write (CR4.PGE off and on) is done"
;! mode = "long"
;! max_instructions = 5000
;! [expect.cores.0]
;! r12 = 6                       # six writes refused with #GP
;! r13 = 0x20                    # CR4 after the refusals: PAE only, as before
;! r14 = 0x80010011              # CR0 unchanged: PG, WP, ET, PE
;! r15 = 0xa0                    # CR4 with PGE set by the legal write
;! state = "halted"
    mov eax, 13
    lea rbx, [rip + gp_handler]
    call set_gate
    xor r12d, r12d
    mov rax, cr4
    bts rax, 20                  # SMEP: leaf 7 is not reported
    mov cr4, rax
    mov rax, cr4
    bts rax, 18                  # OSXSAVE: XSAVE is not reported
    mov cr4, rax
    mov rax, cr0
    btr rax, 31                  # paging cleared in 64-bit mode
    mov cr0, rax
    mov rax, cr0
    btr rax, 0                   # PE cleared with PG set
    mov cr0, rax
    mov rax, cr0
    bts rax, 29                  # NW without CD
    mov cr0, rax
    mov rax, cr0
    bts rax, 32                  # CR0 bits 63:32 are reserved
    mov cr0, rax
    mov r13, cr4
    mov r14, cr0
    mov rax, cr4
    bts rax, 7                   # PGE: reported, so the write is done
    mov cr4, rax
    mov r15, cr4
    cli
    hlt
gp_handler:
    inc r12
    add qword ptr [rsp + 8], 3   # past the 3-byte MOV CRn, r (the error code is on top)
    add rsp, 8
    iretq
