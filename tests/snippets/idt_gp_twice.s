;! description = "two #GP faults in a row are both delivered through the IDT (not escalated to #DF)"
;! mode = "long"
;! [expect.cores.0]
;! rbx = 2
;! r12 = 0x1238
;! state = "halted"
    lea rax, [rip + gp_handler]
    mov rdx, 0x200000
 # build a 64-bit interrupt gate for vector 13 at IDT base 0x200000
    mov word ptr [rdx + 13*16], ax
    mov word ptr [rdx + 13*16 + 2], 0x08
    mov word ptr [rdx + 13*16 + 4], 0x8e00
    shr rax, 16
    mov word ptr [rdx + 13*16 + 6], ax
    shr rax, 16
    mov dword ptr [rdx + 13*16 + 8], eax
    mov dword ptr [rdx + 13*16 + 12], 0
    lea rax, [rip + idtr]
    lidt [rax]
    xor ebx, ebx
    mov ax, 0x1238 # selector beyond the GDT limit: #GP(0x1238)
    mov ds, ax
    mov ds, ax
    cli
    hlt
gp_handler:
    inc rbx
    pop r12 # error code
    add qword ptr [rsp], 3  # skip the 3-byte mov ds, ax (66 8e d8)
    iretq
idtr:
    .word 256*16-1
    .quad 0x200000
