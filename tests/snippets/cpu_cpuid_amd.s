;! description = "cpuid leaf 0 reports AuthenticAMD and leaf 1 EBX[31:24] is each core's own APIC ID"
;! mode = "long"
;! cores_per_socket = 2
;! max_instructions = 5000
;! [expect.memory]
;! 0x300000 = "41 75 74 68 65 6e 74 69 63 41 4d 44 00 00 00 00"   # core 0: ebx edx ecx "AuthenticAMD", apic id 0
;! 0x300020 = "41 75 74 68 65 6e 74 69 63 41 4d 44 01 00 00 00"   # core 1: apic id 1
;! [expect.cores.0]
;! rbx = 0x68747541
;! rdx = 0x69746e65
;! rcx = 0x444d4163
;! state = "halted"
;! [expect.cores.1]
;! state = "halted"
    mov r8d, edi
    shl r8, 5
    add r8, 0x300000
    mov eax, 1
    cpuid
    shr ebx, 24
    mov dword ptr [r8 + 12], ebx
    xor eax, eax
    xor ecx, ecx
    cpuid
    mov dword ptr [r8], ebx
    mov dword ptr [r8 + 4], edx
    mov dword ptr [r8 + 8], ecx
    cli
    hlt
