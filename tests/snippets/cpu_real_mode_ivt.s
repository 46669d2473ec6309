;! description = "real mode: int 0x40 vectors through the IVT entry at 0:0x100, pushes FLAGS/CS/IP on SS:SP, and iret returns"
;! mode = "real"
;! max_instructions = 2000
;! [expect]
;! exit = 0
;! [expect.memory]
;! 0x500 = "00 02"               # IF restored by iret
;! [expect.cores.0]
;! rbx = 1                       # handler ran once
;! rcx = 0x0800                  # CS inside the handler (from the IVT entry)
;! rdx = 0x0800                  # saved CS
;! rsi = 0                       # saved IP = offset of the instruction after int 0x40
;! rbp = 0                       # IF cleared on entry
;! rdi = 0xabcd                  # the handler used its own IVT entry's offset
    cli
    mov ax, ss                   # reload SS so its hidden base is SS << 4
    mov ss, ax
    xor ax, ax
    mov ds, ax
    mov word ptr [0x40*4], handler - 0x8000
    mov word ptr [0x40*4 + 2], 0x0800
    mov word ptr [0x41*4], other - 0x8000    # a decoy entry for the next vector
    mov word ptr [0x41*4 + 2], 0x0800
    xor bx, bx
    xor di, di
    sti
    int 0x40
after:
    pushf
    pop ax
    and ax, 0x200
    mov word ptr [0x500], ax
    xor ax, ax
    out 0xf4, al                 # (exit rather than hlt: see the report on real-mode hlt)
other:
    mov di, 0xdead
    iret
handler:
    inc bx
    mov di, 0xabcd
    mov cx, cs
    mov bp, sp
    mov si, word ptr [bp]
    sub si, after - 0x8000
    mov dx, word ptr [bp + 2]
    pushf
    pop bp
    and bp, 0x200
    iret
