;! description = "real mode: the initial SS:SP stack is at linear (SS<<4)+SP: a segment load sets the hidden base"
;! mode = "real"
;! max_instructions = 100
;! [expect]
;! exit = 0
;! [expect.memory]
;! 0x6fffe = "34 12"             # core 0: SS = (0x70000-0xfff0)>>4 = 0x6001, SP = 0xfff0 -> push lands at 0x6fffe
    mov ax, 0x1234
    push ax
    xor ax, ax
    out 0xf4, al
