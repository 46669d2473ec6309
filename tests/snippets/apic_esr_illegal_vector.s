;! description = "a fixed IPI with vector < 16 sets ESR bit 5 (send illegal vector), visible after an ESR write and cleared by the next"
;! mode = "long"
;! cores_per_socket = 2
;! run_on = "bsp"
;! max_instructions = 100000
;! [expect.cores.0]
;! r12 = 0              # ESR before
;! r13 = 0x20           # ESR after the bad IPI: send illegal vector
;! r14 = 0              # ESR after the next write/read
;! state = "halted"
    mov r15, 0xfee00000
    mov dword ptr [r15 + 0xf0], 0x1ff       # SVR: software enable
    mov dword ptr [r15 + 0x280], 0          # latch ESR
    mov r12d, dword ptr [r15 + 0x280]
    mov dword ptr [r15 + 0x310], 0x01000000 # destination APIC ID 1
    mov dword ptr [r15 + 0x300], 0x00000005 # fixed, physical, vector 5: illegal
    mov dword ptr [r15 + 0x280], 0          # latch ESR
    mov r13d, dword ptr [r15 + 0x280]
    mov dword ptr [r15 + 0x280], 0          # latch again: the error is gone
    mov r14d, dword ptr [r15 + 0x280]
    cli
    hlt
