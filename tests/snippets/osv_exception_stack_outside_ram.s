;! description = "under OSV, an exception whose stack lies outside the kernel's RAM: the frame push is a refused write that vanishes, the violation names it, and the handler still runs"
;! mode = "long"
;! cores_per_socket = 2
;! kernels = 2
;! run_on = "bsp"
;! max_instructions = 100000
;! [expect]
;! exit = 0
;! violations = ["write to 0x80000fd8 (40 bytes) outside the kernel's memory"]
;! [expect.cores.0]
;! rcx = 7
;! rsp = 0x80000fd8
;! state = "halted"
    mov eax, 3
    lea rbx, [rip + handler]
    call set_gate
    mov rsp, 0x80001000                       # identity-mapped, but no RAM of this kernel is there
    int3
    hlt
handler:
    mov rcx, 7
    hlt
