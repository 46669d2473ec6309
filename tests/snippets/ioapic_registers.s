;! description = "the IOAPIC the MADT lists answers at 0xFEC00000: ID, version with 24 entries, redirection entries reset masked and writable"
;! mode = "long"
;! cores_per_socket = 2
;! run_on = "bsp"
;! [expect.cores.0]
;! rax = 0x02000000            # IOAPIC ID 2: the first APIC ID no core uses
;! rbx = 0x00170020            # version 0x20, maximum redirection entry 23
;! rcx = 0x10000               # entry 5 low dword after reset: masked
;! rdx = 0x0000a030            # entry 5 low dword as written (level, vector 0x30)
;! rsi = 0x03000000            # entry 5 high dword: destination APIC ID 3
;! state = "halted"
    mov r15, 0xfec00000
    mov dword ptr [r15], 0x00            # IOREGSEL = IOAPICID
    mov eax, dword ptr [r15 + 0x10]
    mov dword ptr [r15], 0x01            # IOAPICVER
    mov ebx, dword ptr [r15 + 0x10]
    mov dword ptr [r15], 0x1a            # IOREDTBL[5] low
    mov ecx, dword ptr [r15 + 0x10]
    mov dword ptr [r15 + 0x10], 0xa030
    mov edx, dword ptr [r15 + 0x10]
    mov dword ptr [r15], 0x1b            # IOREDTBL[5] high
    mov dword ptr [r15 + 0x10], 0x03000000
    mov esi, dword ptr [r15 + 0x10]
    cli
    hlt
