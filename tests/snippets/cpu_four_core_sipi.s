;! description = "BSP broadcasts INIT and STARTUP (all excluding self) to 3 APs; each runs a real-mode trampoline at 0x8000, counts itself with lock inc and halts"
;! mode = "long"
;! cores_per_socket = 4
;! run_on = "bsp"
;! max_instructions = 200000
;! [expect.memory]
;! 0x8f00 = "03 00 00 00"            # three APs checked in
;! 0x8f10 = "01 01 01 00"            # each AP 1..3 marked its own slot
;! [expect.cores.0]
;! rax = 3                           # BSP saw the count
;! state = "halted"
;! [expect.cores.1]
;! rbx = 1                           # its APIC ID from cpuid
;! state = "halted"
;! [expect.cores.2]
;! rbx = 2                           # its APIC ID from cpuid
;! state = "halted"
;! [expect.cores.3]
;! rbx = 3                           # its APIC ID from cpuid
;! state = "halted"
    lea rsi, [rip + tramp]
    mov rdi, 0x8000
    mov rcx, tramp_end - tramp
    rep movsb
    mov dword ptr [0x8f00], 0
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff           # software-enable the LAPIC
    mov dword ptr [r15 + 0x300], 0x000c4500     # INIT, assert, all excluding self
    mov dword ptr [r15 + 0x300], 0x000c4608     # STARTUP vector 8, all excluding self
    mov dword ptr [r15 + 0x300], 0x000c4608     # STARTUP again (ignored by running APs)
    mov ecx, 100000
wait:
    pause
    mov eax, dword ptr [0x8f00]
    cmp eax, 3
    je done
    dec ecx
    jnz wait
done:
    cli
    hlt

tramp:
.code16
    cli
    xor ax, ax
    mov ds, ax
flat:
    lock inc dword ptr [0x8f00]
    # slot index: LAPIC ID is not reachable from real mode, use cpuid leaf 1
    mov eax, 1
    cpuid
    shr ebx, 24
    mov byte ptr [bx + 0x8f10 - 1], 1
    cli
    hlt
tramp_end:
.code64
