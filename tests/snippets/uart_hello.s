;! description = "bytes written to the COM1 THR appear on the console"
;! mode = "long"
;! [expect]
;! console = "hi\n"
;! exit = 0
    lea rsi, [rip + msg]
    mov dx, 0x3f8
next:
    lodsb
    test al, al
    jz done
    out dx, al
    jmp next
done:
    xor eax, eax
    out 0xf4, al
msg:
    .byte 0x68, 0x69, 0x0a, 0
