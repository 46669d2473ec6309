;! description = "8 cores, tiny quantum: a plain increment under an xchg spinlock and a lock xadd counter both reach 8 x 200"
;! mode = "long"
;! sockets = 1
;! cores_per_socket = 8
;! quantum = 7
;! max_instructions = 1000000
;! [expect]
;! exit = 0
;! [expect.memory]
;! 0x300000 = "00 00 00 00"          # lock released
;! 0x300008 = "40 06 00 00"          # 1600 increments under the lock
;! 0x300010 = "40 06 00 00"          # 1600 lock xadd
;! 0x300018 = "08 00 00 00"          # every core finished
    mov r8d, 200
again:
acquire:
    mov eax, 1
    xchg eax, dword ptr [0x300000]
    test eax, eax
    jz locked
spin:
    pause
    cmp dword ptr [0x300000], 0
    jne spin
    jmp acquire
locked:
    mov eax, dword ptr [0x300008]    # non-atomic read-modify-write, split
    inc eax                          # across instructions so a preemption
    mov dword ptr [0x300008], eax    # inside would lose updates without the lock
    mov dword ptr [0x300000], 0      # release
    mov eax, 1
    lock xadd dword ptr [0x300010], eax
    dec r8d
    jnz again
    mov eax, 1
    lock xadd dword ptr [0x300018], eax
    cmp eax, 7
    jne idle
    # last one out: report 0 only if both counters are right
    mov al, 1
    cmp dword ptr [0x300008], 1600
    jne report
    cmp dword ptr [0x300010], 1600
    jne report
    xor eax, eax
report:
    out 0xf4, al
idle:
    cli
    hlt
