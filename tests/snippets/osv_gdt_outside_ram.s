;! description = "under OSV, a GDT outside the kernel's RAM reads as all ones: the handler's code segment descriptor (L = 1 and D = 1) is no 64-bit code segment, so int3 -> #GP -> #GP -> #DF -> triple fault ends this kernel alone (QEMU triple-faults too)"
;! mode = "long"
;! cores_per_socket = 2
;! kernels = 2
;! run_on = "bsp"
;! max_instructions = 100000
;! [expect]
;! exit = 1
;! violations = ["read of 0x80000008 (8 bytes) outside the kernel's memory"]
;! [expect.cores.0]
;! fault = "triple fault"
;! rcx = 0
;! state = "stopped"
    mov eax, 3
    lea rbx, [rip + handler]
    call set_gate
    mov rax, 0x80000000
    push rax
    push 0xfff
    mov word ptr [rsp + 6], 0xfff
    xor ecx, ecx
    lgdt [rsp + 6]                            # the hidden CS and SS caches stay as they are
    int3
    hlt
handler:
    mov rcx, 9
    hlt
