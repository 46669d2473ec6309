;! description = "under OSV, an IDT outside the kernel's RAM reads as all ones: int3 -> #GP -> #GP -> #DF -> triple fault ends this kernel alone, with every IDT read recorded"
;! mode = "long"
;! cores_per_socket = 2
;! kernels = 2
;! run_on = "bsp"
;! max_instructions = 100000
;! [expect]
;! exit = 1
;! violations = ["read of 0x80000030 (16 bytes) outside the kernel's memory",
;!               "read of 0x800000d0 (16 bytes) outside the kernel's memory",
;!               "read of 0x80000080 (16 bytes) outside the kernel's memory"]
;! [expect.cores.0]
;! fault = "triple fault"
;! state = "stopped"
    mov rax, 0x80000000
    push rax
    push 0xfff
    mov word ptr [rsp + 6], 0xfff
    lidt [rsp + 6]                            # limit 0xfff, base 0x80000000
    int3
    hlt
