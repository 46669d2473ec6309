;! description = "core 1 rewrites an instruction core 0 keeps running (Intel SDM Vol. 3A 8.1.3): core 0's translation is dropped and it runs the new code"
;! mode = "long"
;! cores_per_socket = 2
;! run_on = "all"
;! max_instructions = 30000000
;! [expect.cores.0]
;! rax = 2                       # the patched mov eax, 2
;! state = "halted"
;! [expect.cores.1]
;! state = "halted"
    test edi, edi
    jnz patcher
    mov dword ptr [0x300000], 1  # core 0: running the code
spin:
    call patched
    cmp eax, 2
    jne spin
    cli
    hlt
patcher:
    cmp dword ptr [0x300000], 1  # core 1: wait until core 0 has run the old code
    jne patcher
    lea rbx, [rip + patched]
    mov byte ptr [rbx + 1], 2    # mov eax, 1 -> mov eax, 2
    cli
    hlt
    .align 64
patched:
    mov eax, 1
    ret
