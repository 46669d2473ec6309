;! description = "after a PTE is repointed to another frame, invlpg makes the next access see the new frame"
;! mode = "long"
;! max_instructions = 20000
;! [expect.cores.0]
;! r12 = 0xaaaa                  # through the old mapping
;! r13 = 0xbbbb                  # through the new mapping after invlpg
;! state = "halted"
    mov qword ptr [0x400000], 0xaaaa
    mov qword ptr [0x401000], 0xbbbb
    # page table at 0x200000: 0x40000000 -> 0x400000 (4 KiB page), rest not present
    mov rdi, 0x200000
    xor eax, eax
    mov ecx, 512
    rep stosq
    mov qword ptr [0x200000], 0x400003
    mov qword ptr [0x5000], 0x200003       # PD entry for 0x40000000 -> the page table
    mov rax, cr3
    mov cr3, rax
    mov rsi, 0x40000000
    mov r12, qword ptr [rsi]               # fills the TLB with the old translation
    mov qword ptr [0x200000], 0x401003     # repoint the PTE
    invlpg [rsi]
    mov r13, qword ptr [rsi]
    cli
    hlt
