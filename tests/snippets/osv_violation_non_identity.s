;! description = "under OSV, a kernel maps linear 0x40000000 onto guest-physical 0x30000000, outside its memory, while linear 0x30000000 maps its own RAM: the violations name the guest-physical address, the read sees all ones, the write vanishes and the core goes on"
;! mode = "long"
;! cores_per_socket = 2
;! kernels = 2
;! run_on = "bsp"
;! max_instructions = 100000
;! [expect]
;! # Addresses through a register: keystone encodes `[0x40000000]` RIP-relative in 64-bit mode.
;! violations = ["write to 0x30000000 (8 bytes) outside the kernel's memory",
;!               "read of 0x30000008 (8 bytes) outside the kernel's memory"]
;! [expect.memory]
;! 0x200000 = "00 00 00 00 00 00 00 00"   # the own page behind linear 0x30000000 is untouched
;! [expect.cores.0]
;! rcx = 0xffffffffffffffff
;! rdx = 0
;! state = "halted"
    mov rax, 0x30000087                      # PD[1][0]: linear 1 GiB -> physical 0x30000000 (2 MiB page)
    mov qword ptr [0x5000], rax
    mov rax, 0x00200087                      # PD[0][384]: linear 0x30000000 -> physical 0x200000
    mov qword ptr [0x4c00], rax
    mov rax, cr3
    mov cr3, rax                             # flush the TLB
    mov rbx, 0x1122334455667788
    mov rsi, 0x40000000
    mov qword ptr [rsi], rbx                 # refused: the write vanishes
    mov rcx, qword ptr [rsi + 8]             # refused: reads see all ones
    mov rsi, 0x30000000
    mov rdx, qword ptr [rsi]                 # own memory: still zero
    hlt
