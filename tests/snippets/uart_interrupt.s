;! description = "COM1 transmits a message interrupt-driven: its THRE interrupt reaches the IDT through IOAPIC pin 4, one byte per interrupt"
;! mode = "long"
;! max_instructions = 200000
;! [expect]
;! console = "sent by irq\n"
;! exit = 0
;! [expect.cores.0]
;! r14 = 13                 # interrupts taken: one per byte, and one that finds the message sent
;! r13 = 0x02               # IIR in the first interrupt: THR empty, FIFOs off
;! r12 = 0x01               # IIR at the end: nothing pending
;! rdi = 0x24               # IOREDTBL[4] low read back: vector 0x24, unmasked, edge, Remote IRR clear
    mov eax, 0x24
    lea rbx, [rip + com1_irq]
    call set_gate
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff        # LAPIC SVR: software enable
    mov r11, 0xfec00000
    mov dword ptr [r11], 0x19                # IOREDTBL[4] high: destination APIC 0
    mov dword ptr [r11 + 0x10], 0
    mov dword ptr [r11], 0x18                # IOREDTBL[4] low: vector 0x24, fixed, physical, edge, active high
    mov dword ptr [r11 + 0x10], 0x24
    lea rsi, [rip + msg]
    xor r14, r14
    xor r13, r13
    xor r10, r10                             # set by the handler when the message is out
    mov dx, 0x3fc
    mov al, 0x08                             # MCR: OUT2 puts INTR on IRQ 4
    out dx, al
    mov dx, 0x3f9
    mov al, 0x02                             # IER: THR empty interrupt (raised at once: THR is empty)
    out dx, al
    sti
wait:
    hlt
    test r10, r10
    jz wait
    cli
    mov dx, 0x3fa
    in al, dx
    movzx r12, al
    mov dword ptr [r11], 0x18
    mov edi, dword ptr [r11 + 0x10]
    xor eax, eax
    out 0xf4, al
com1_irq:
    push rax
    push rdx
    inc r14
    mov dx, 0x3fa
    in al, dx                                # IIR: reading it clears the THRE interrupt it reports
    test r13, r13
    jnz identified
    movzx r13, al
identified:
    and al, 0x0f
    cmp al, 0x02
    jne end_of_interrupt
    mov al, byte ptr [rsi]
    test al, al
    jz message_sent
    inc rsi
    mov dx, 0x3f8
    out dx, al                               # THR: the byte leaves at once, and THRE interrupts again
    jmp end_of_interrupt
message_sent:
    mov dx, 0x3f9
    xor eax, eax
    out dx, al                               # IER: no more interrupts
    mov r10, 1
end_of_interrupt:
    mov dword ptr [r15 + 0xb0], 0            # LAPIC EOI
    pop rdx
    pop rax
    iretq
msg:
    .byte 0x73, 0x65, 0x6e, 0x74, 0x20, 0x62, 0x79, 0x20, 0x69, 0x72, 0x71, 0x0a, 0
