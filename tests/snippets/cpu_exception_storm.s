;! description = "a #PF handler that can never run (its gate points at an unmapped address, so fetching its first instruction faults again at its own entry) is an exception storm: the core stops as faulted after 1024 deliveries instead of livelocking inside one slice"
;! mode = "long"
;! max_instructions = 20000
;! [expect.cores.0]
;! fault = "exception storm"
;! state = "stopped"
    mov eax, 14
    mov rbx, 0x200000000         # 8 GiB: the snippet's page tables map only 4 GiB
    call set_gate
    mov rax, 0x100000000
    mov rcx, qword ptr [rax]     # #PF, delivered to a handler that cannot be fetched
    cli
    hlt
