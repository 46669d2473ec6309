;! description = "BSP starts an AP with INIT-SIPI-SIPI; the AP runs a real-mode trampoline to long mode and reports back through memory"
;! mode = "long"
;! cores_per_socket = 2
;! run_on = "bsp"
;! [expect]
;! exit = 0
;! [expect.memory]
;! 0x300000 = "01 00 00 00"          # online count
;! 0x300010 = "a1 00 00 00"          # AP wrote 0xa0 + its APIC ID
;! [expect.cores.1]
;! state = "halted"
;! efer = 0x500                    # LME | LMA, set by the trampoline
    # copy the trampoline to 0x8000 (the page a STARTUP vector of 8 names)
    lea rsi, [rip + tramp]
    mov rdi, 0x8000
    mov rcx, tramp_end - tramp
    rep movsb
    # far pointer to ap_entry (offset32, selector 0x08) and a GDTR for the AP
    lea rax, [rip + ap_entry]
    mov dword ptr [0x8f00], eax
    mov word ptr [0x8f04], 0x08
    mov word ptr [0x8f10], 5*8-1
    mov dword ptr [0x8f12], 0x1000
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff
    mov dword ptr [r15 + 0x310], 0x01000000   # destination APIC ID 1
    mov dword ptr [r15 + 0x300], 0x0000c500   # INIT, level assert
    mov dword ptr [r15 + 0x300], 0x00008500   # INIT de-assert
    mov dword ptr [r15 + 0x300], 0x00000608   # STARTUP, vector 8
    mov dword ptr [r15 + 0x300], 0x00000608   # STARTUP again (ignored: AP already running)
    mov ecx, 1000000
wait:
    pause
    cmp dword ptr [0x300000], 1
    je done
    dec ecx
    jnz wait
    mov al, 1
    out 0xf4, al
done:
    xor eax, eax
    out 0xf4, al

tramp:
.code16
    cli
    xor ax, ax
    mov ds, ax
    lgdt [0x8f10]
    mov eax, 0x20                 # CR4.PAE
    mov cr4, eax
    mov eax, 0x2000               # the snippet's PML4
    mov cr3, eax
    mov ecx, 0xc0000080           # EFER.LME
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, 0x80000011           # PG | ET | PE
    mov cr0, eax
    .byte 0x66, 0xff, 0x2e, 0x00, 0x8f   # ljmp m16:32 [0x8f00]
tramp_end:
.code64
ap_entry:
    mov ax, 0x10
    mov ss, ax
    mov rsp, 0x60000
    mov rbx, 0xfee00000
    mov eax, dword ptr [rbx + 0x20]
    shr eax, 24
    add eax, 0xa0
    mov dword ptr [0x300010], eax
    lock inc dword ptr [0x300000]
    cli
    hlt
