;! description = "IA32_APIC_BASE (MSR 0x1b): base 0xfee00000, global enable, BSP flag only on core 0"
;! mode = "long"
;! cores_per_socket = 2
;! max_instructions = 5000
;! [expect.memory]
;! 0x300000 = "00 09 e0 fe 00 00 00 00"   # core 0: BSP | EN | base
;! 0x300008 = "00 08 e0 fe 00 00 00 00"   # core 1: EN | base
;! [expect.all_cores]
;! state = "halted"
    mov ecx, 0x1b
    rdmsr
    mov r8d, edi
    mov dword ptr [0x300000 + r8*8], eax
    mov dword ptr [0x300004 + r8*8], edx
    cli
    hlt
