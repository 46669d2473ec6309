;! description = "RDTSCP returns TSC_AUX (MSR 0xc0000103) in ECX and the virtual TSC: 2 GHz at 10 ns per instruction"
;! mode = "long"
;! max_instructions = 5000
;! [expect.cores.0]
;! rcx = 0x1234                  # TSC_AUX as written
;! r8 = 140                      # RDTSCP is the 7th instruction (time counts it as it starts): 7 x 10 ns x 2 GHz
;! r9 = 1                        # the TSC MSR reads the same counter, later
;! state = "halted"
    mov ecx, 0xc0000103
    mov eax, 0x1234
    xor edx, edx
    wrmsr
    xor ecx, ecx
    xor eax, eax
    rdtscp
    shl rdx, 32
    or rax, rdx
    mov r8, rax
    mov r10d, ecx
    mov ecx, 0x10
    rdmsr
    shl rdx, 32
    or rax, rdx
    xor r9d, r9d
    cmp rax, r8
    seta r9b
    mov ecx, r10d
    cli
    hlt
