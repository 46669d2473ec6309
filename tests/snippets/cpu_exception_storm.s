;! description = "a #PF handler that can never run (CR4.SMEP set while the code pages are user pages, so every supervisor fetch faults at the handler's entry) is an exception storm: the core stops as faulted after 1024 deliveries instead of livelocking inside one slice"
;! mode = "long"
;! max_instructions = 20000
;! [expect.cores.0]
;! fault = "exception storm"
;! state = "stopped"
    mov eax, 14
    lea rbx, [rip + pf_handler]
    call set_gate
    mov rax, cr4
    bts rax, 20                  # SMEP (AMD APM Vol. 2 5.6.6): supervisor fetches from user pages fault
    mov cr4, rax
    nop                          # never fetched: the page is a user page
pf_handler:
    cli
    hlt
