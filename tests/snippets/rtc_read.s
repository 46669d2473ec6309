;! description = "the RTC shows the VEE'13 epoch plus virtual time: read in BCD, set with SET, three idle seconds later rolled over to 2014, shown in binary 12-hour form; CMOS RAM keeps a byte"
;! mode = "long"
;! max_instructions = 200000
;! [expect.memory]
;! 0x200000 = "00 00 00 07 16 03 13"  # seconds, minutes, hours, weekday (Saturday), day, month, year: 2013-03-16 00:00:00
;! 0x200008 = "26 02 80 5a"           # registers A (32.768 kHz, 1024 Hz), B (BCD, 24-hour), D (valid), CMOS byte 0x40
;! 0x200010 = "01 00 00 04 01 01 14"  # 23:59:58 on 2013-12-31 plus 3 s: 2014-01-01 00:00:01, a Wednesday
;! 0x200018 = "01 00 0c 01 01 0e"     # binary, 12-hour: 12 AM is 0x0c (PM bit clear)
;! 0x200020 = "70 00"                 # register C: PF (1024 Hz), AF (the alarm, 00:00:00, passed), UF; then clear
;! [expect.cores.0]
;! r14 = 1                            # the timer interrupt that ended the wait
;! state = "halted"
    mov eax, 32
    lea rbx, [rip + timer]
    call set_gate
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff        # LAPIC SVR: software enable
    mov rdi, 0x200000
    lea rsi, [rip + clock_registers]
    call read_clock                          # the time at boot, BCD
    mov rdi, 0x200008
    mov al, 0x0a
    call rtc_read
    mov al, 0x0b
    call rtc_read
    mov al, 0x0d
    call rtc_read
    mov al, 0x40                             # CMOS RAM: write a byte, read it back
    mov ah, 0x5a
    call rtc_write
    mov al, 0x40
    call rtc_read
    mov al, 0x0c                             # clear register C's flags
    call rtc_read_only
    mov al, 0x0b                             # SET: hold the clock while it is set
    mov ah, 0x82
    call rtc_write
    mov al, 0x09
    mov ah, 0x13
    call rtc_write
    mov al, 0x08
    mov ah, 0x12
    call rtc_write
    mov al, 0x07
    mov ah, 0x31
    call rtc_write
    mov al, 0x04
    mov ah, 0x23
    call rtc_write
    mov al, 0x02
    mov ah, 0x59
    call rtc_write
    mov al, 0x00
    mov ah, 0x58
    call rtc_write
    mov al, 0x0b                             # SET clear: the clock runs again
    mov ah, 0x02
    call rtc_write
    xor r14, r14
    mov dword ptr [r15 + 0x3e0], 0xa         # LAPIC timer: divide by 128
    mov dword ptr [r15 + 0x320], 0x20        # one-shot, vector 32
    mov dword ptr [r15 + 0x380], 4687500     # 3 s of 200 MHz bus clock / 128
    sti
idle:
    hlt
    test r14, r14
    jz idle
    cli
    mov rdi, 0x200010
    lea rsi, [rip + clock_registers]
    call read_clock
    mov al, 0x0b                             # binary, 12-hour
    mov ah, 0x04
    call rtc_write
    mov rdi, 0x200018
    lea rsi, [rip + short_clock]
    call read_clock
    mov rdi, 0x200020
    mov al, 0x0c
    call rtc_read
    mov al, 0x0c
    call rtc_read
    hlt
# Read the registers listed at RSI (0xff ends the list) into RDI onwards.
read_clock:
    mov al, byte ptr [rsi]
    cmp al, 0xff
    je read_clock_done
    call rtc_read
    inc rsi
    jmp read_clock
read_clock_done:
    ret
# Register AL into [RDI], RDI advanced; rtc_read_only discards it.
rtc_read:
    out 0x70, al
    in al, 0x71
    mov byte ptr [rdi], al
    inc rdi
    ret
rtc_read_only:
    out 0x70, al
    in al, 0x71
    ret
# Register AL := AH.
rtc_write:
    out 0x70, al
    mov al, ah
    out 0x71, al
    ret
timer:
    inc r14
    mov dword ptr [r15 + 0xb0], 0            # EOI
    iretq
clock_registers:
    .byte 0, 2, 4, 6, 7, 8, 9, 0xff
short_clock:
    .byte 0, 2, 4, 7, 8, 9, 0xff
