;! description = "under OSV, CR3 loaded with an address outside the kernel's RAM: every walk reads a refused paging structure (recorded), the #PF cannot be delivered, and the triple fault ends this kernel alone"
;! mode = "long"
;! cores_per_socket = 2
;! kernels = 2
;! run_on = "bsp"
;! max_instructions = 100000
;! [expect]
;! exit = 1
;! violations = ["page-table walk reading 0x80000000 (8 bytes) outside the kernel's memory"]
;! [expect.cores.0]
;! fault = "triple fault"
;! state = "stopped"
    mov rax, 0x80000000
    mov cr3, rax
    mov rbx, 1
    hlt
