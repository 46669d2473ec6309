;! description = "real mode: int 0x40 vectors through the IVT entry at 0:0x100 (to CS=0), pushes FLAGS/CS/IP, and iret returns to 0800:IP"
;! mode = "real"
;! max_instructions = 2000
;! [expect.cores.0]
;! rbx = 1                       # handler ran once
;! rcx = 0                       # CS inside the handler (from the IVT entry)
;! rdx = 0x0800                  # saved CS
;! rsi = 0                       # saved IP = offset of the instruction after int 0x40
;! rbp = 0                       # IF cleared on entry
;! rax = 0x200                   # IF restored by iret
;! r8 = 0                        # the handler saw its own code at CS:IP (CS base 0)
;! state = "halted"
    cli
    mov ax, ss                   # reload SS so its base is SS << 4
    mov ss, ax
    xor ax, ax
    mov ds, ax
    mov word ptr [0x40*4], handler   # linear address = offset from segment 0
    mov word ptr [0x40*4 + 2], 0
    xor bx, bx
    sti
    int 0x40
after:
    pushf
    pop ax
    and ax, 0x200
    cli
    hlt
handler:
    inc bx
    mov cx, cs
    mov bp, sp
    mov si, word ptr [bp]
    sub si, after - 0x8000
    mov dx, word ptr [bp + 2]
    pushf
    pop bp
    and bp, 0x200
    iret
