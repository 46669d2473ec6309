;! description = "a write to a not-present 4 KiB page raises #PF with CR2 = the address and error code W; the handler maps it and the write completes"
;! mode = "long"
;! max_instructions = 20000
;! [expect.memory]
;! 0x405010 = "ef be ad de"      # the retried write landed in the mapped frame
;! [expect.cores.0]
;! r12 = 0x40005010              # CR2 seen by the handler
;! r13 = 0x2                     # error code: not present, write, supervisor
;! r14 = 1                       # handler ran once
;! r15 = 0xdeadbeef              # read back through the new mapping
;! state = "halted"
    # page table at 0x200000 mapping 0x40000000-0x401fffff -> 0x400000-0x5fffff (4 KiB pages)
    mov rdi, 0x200000
    mov rax, 0x400003
    mov ecx, 512
fill:
    mov qword ptr [rdi], rax
    add rax, 0x1000
    add rdi, 8
    dec ecx
    jnz fill
    and qword ptr [0x200000 + 5*8], -2     # page 5 (0x40005000) not present
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
