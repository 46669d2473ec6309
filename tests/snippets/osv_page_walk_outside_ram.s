;! description = "under OSV, a page directory entry pointing at a page table outside the kernel's RAM: the walk is a recorded violation and the guest takes its #PF with CR2"
;! mode = "long"
;! cores_per_socket = 2
;! kernels = 2
;! run_on = "bsp"
;! max_instructions = 100000
;! [expect]
;! exit = 0
;! violations = ["page-table walk reading 0x80000000 (8 bytes) outside the kernel's memory"]
;! [expect.cores.0]
;! rcx = 0
;! rdx = 0x40000000
;! state = "halted"
    mov eax, 14
    lea rbx, [rip + handler]
    call set_gate
    mov rax, 0x80000003                       # PDPT[1] -> a page directory outside this kernel's RAM
    mov qword ptr [0x3008], rax
    mov rax, cr3
    mov cr3, rax
    xor ecx, ecx
    mov rsi, 0x40000000
    mov rcx, qword ptr [rsi]
    hlt
handler:
    mov rdx, cr2
    hlt
