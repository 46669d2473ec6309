;! description = "under OSV, VMMCALL in real mode is refused with #UD (only CPL 0 of protected or long mode may call OSV) and recorded; the kernel goes on through its IVT"
;! mode = "real"
;! cores_per_socket = 2
;! kernels = 2
;! run_on = "bsp"
;! max_instructions = 2000
;! [expect]
;! violations = ["hypercall 4 from real mode: only CPL 0 may call OSV (#UD)"]
;! [expect.cores.0]
;! rbx = 0x66
;! state = "halted"
    cli
    mov ax, ss
    mov ss, ax
    xor ax, ax
    mov ds, ax
    mov word ptr [6*4], handler - 0x8000
    mov word ptr [6*4 + 2], 0x0800
    mov eax, 4                                # SHUTDOWN
    xor edi, edi
    vmmcall
    mov bx, 0x55                              # not reached: #UD
    hlt
handler:
    mov bx, 0x66
    hlt
