;! description = "32-bit protected mode: int 0x30 goes through a 32-bit interrupt gate, pushes EFLAGS/CS/EIP, clears IF, and iretd returns"
;! mode = "protected"
;! max_instructions = 2000
;! [expect.cores.0]
;! rbx = 1                       # handler ran once
;! rcx = 0x08                    # saved CS
;! rdx = 0                       # saved EIP = the instruction after int 0x30
;! rsi = 0x200                   # IF was set in the saved EFLAGS
;! rbp = 0                       # IF clear inside the interrupt-gate handler
;! rdi = 0x200                   # IF restored by iretd
;! rax = 0x5a
;! state = "halted"
    mov edx, 0x200000
    lea eax, [handler]
    mov word ptr [edx + 0x30*8], ax
    mov word ptr [edx + 0x30*8 + 2], 0x08
    mov word ptr [edx + 0x30*8 + 4], 0x8e00
    shr eax, 16
    mov word ptr [edx + 0x30*8 + 6], ax
    lidt [idtr]
    xor ebx, ebx
    xor eax, eax
    mov ebp, 0xffff
    sti
    int 0x30
after:
    pushfd
    pop edi
    and edi, 0x200
    cli
    hlt
handler:
    inc ebx
    mov ecx, dword ptr [esp + 4]
    mov edx, dword ptr [esp]
    lea esi, [after]
    sub edx, esi
    mov esi, dword ptr [esp + 8]
    and esi, 0x200
    pushfd
    pop ebp
    and ebp, 0x200
    mov eax, 0x5a
    iretd
idtr:
    .word 256*8-1
    .long 0x200000
