;! description = "under OSV, a GDT outside the kernel's RAM: delivery reads the handler's code segment descriptor as all ones (refused, recorded), and the kernel still takes its handler"
;! mode = "long"
;! cores_per_socket = 2
;! kernels = 2
;! run_on = "bsp"
;! max_instructions = 100000
;! [expect]
;! violations = ["read of 0x80000008 (8 bytes) outside the kernel's memory"]
;! [expect.cores.0]
;! rcx = 9
;! state = "halted"
    mov eax, 3
    lea rbx, [rip + handler]
    call set_gate
    mov rax, 0x80000000
    push rax
    push 0xfff
    mov word ptr [rsp + 6], 0xfff
    lgdt [rsp + 6]                            # the hidden CS and SS caches stay as they are
    int3
    hlt
handler:
    mov rcx, 9
    hlt
