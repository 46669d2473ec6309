;! description = "#PF with one instruction per slice: CR2 and the error code survive the slice boundaries between the fault and the handler reading them"
;! mode = "long"
;! max_instructions = 5000
;! quantum = 1
;! [expect.memory]
;! 0x405010 = "ef be ad de"      # the retried write landed in the mapped frame
;! 0x200028 = "63 50 40 00"      # PTE now present (and accessed, dirty)
;! [expect.cores.0]
;! r12 = 0x40005010              # CR2 seen by the handler
;! r13 = 0x2                     # error code: not present, write, supervisor
;! r14 = 1                       # handler ran once
;! r15 = 0xdeadbeef              # read back through the new mapping
;! state = "halted"
    # page table at 0x200000 for 0x40000000-0x401fffff: only page 5 -> 0x405000, not present
    mov rdi, 0x200000
    xor eax, eax
    mov ecx, 512
    rep stosq
    mov qword ptr [0x200000 + 5*8], 0x405002
    mov qword ptr [0x5000], 0x200003       # PD entry for 0x40000000 -> the page table
    mov rax, cr3
    mov cr3, rax
    mov eax, 14
    lea rbx, [rip + pf_handler]
    call set_gate
    xor r14d, r14d
    mov rsi, 0x40005010
    mov dword ptr [rsi], 0xdeadbeef
    mov r15d, dword ptr [rsi]
    cli
    hlt
pf_handler:
    inc r14
    mov r12, cr2
    pop r13                      # error code
    or qword ptr [0x200000 + 5*8], 1
    invlpg [r12]
    iretq
