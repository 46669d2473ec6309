;! description = "from real mode: GDT, protected mode, own PAE identity tables at 0x20000, EFER.LME via wrmsr, paging on, far jump to 64-bit code"
;! mode = "real"
;! max_instructions = 20000
;! [expect.memory]
;! 0x300000 = "88 77 66 55 44 33 22 11"   # written by 64-bit code
;! 0x300008 = "00 05 00 00"               # EFER read back with rdmsr in long mode: LME | LMA
;! [expect.cores.0]
;! efer = 0x500
;! rbx = 0x20000                          # CR3: our own PML4
;! rcx = 0x18                             # CS: the 64-bit code segment
;! rdx = 0x0000000100000000               # a 64-bit register result
;! state = "halted"
.code16
    cli
    xor ax, ax
    mov ds, ax
    lgdt [gdtr]                  # DS = 0 and labels are linear addresses
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    .byte 0x66, 0xea             # ljmp 0x08:pm32 (32-bit offset)
    .long pm32
    .word 0x08
.code32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x70000
    # PML4 0x20000 -> PDPT 0x21000 -> PD 0x22000: 512 x 2 MiB pages = 1 GiB identity
    mov edi, 0x20000
    xor eax, eax
    mov ecx, 3*1024
    rep stosd
    mov dword ptr [0x20000], 0x21003
    mov dword ptr [0x21000], 0x22003
    mov edi, 0x22000
    mov eax, 0x83
    mov ecx, 512
fill:
    mov dword ptr [edi], eax
    add eax, 0x200000
    add edi, 8
    dec ecx
    jnz fill
    mov eax, cr4
    or eax, 0x20                 # PAE
    mov cr4, eax
    mov eax, 0x20000
    mov cr3, eax
    mov ecx, 0xc0000080          # EFER
    rdmsr
    or eax, 0x100                # LME
    wrmsr
    mov eax, cr0
    or eax, 0x80000000           # PG
    mov cr0, eax
    .byte 0xea                   # ljmp 0x18:lm64
    .long lm64
    .word 0x18
.code64
lm64:
    mov ax, 0x10
    mov ds, ax
    mov ss, ax
    mov rax, 0x1122334455667788
    mov qword ptr [0x300000], rax
    mov ecx, 0xc0000080
    rdmsr
    mov dword ptr [0x300008], eax
    mov rbx, cr3
    mov ecx, cs
    mov edx, 0xffffffff
    add rdx, 1
    cli
    hlt
    .align 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff     # 0x08 code32
    .quad 0x00cf92000000ffff     # 0x10 data
    .quad 0x00af9a000000ffff     # 0x18 code64
gdtr:
    .word 4*8-1
    .long gdt
