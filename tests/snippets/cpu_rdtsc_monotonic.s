;! description = "two rdtsc reads separated by some work: the second is strictly greater"
;! mode = "long"
;! max_instructions = 5000
;! [expect.cores.0]
;! rcx = 1                       # second > first (unsigned)
;! r10 = 1                       # first read is non-zero
;! state = "halted"
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r8, rax
    mov ecx, 100
work:
    dec ecx
    jnz work
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r9, rax
    xor ecx, ecx
    cmp r9, r8
    seta cl
    xor r10d, r10d
    test r8, r8
    setnz r10b
    cli
    hlt
