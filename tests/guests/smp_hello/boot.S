/*
 * PVH entry, long-mode switch and the AP trampoline of the smp_hello test
 * guest.  The BSP enters at pvh_start in 32-bit protected mode with EBX =
 * hvm_start_info (Xen docs/misc/pvh.pandoc); each AP enters the trampoline
 * copied to TRAMPOLINE_BASE in real mode after a STARTUP IPI.
 */
#define TRAMPOLINE_BASE 0x8000
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)
#define CR0_PE 1
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define PAGE_PRESENT_WRITABLE 0x3
#define PAGE_LARGE 0x80
#define STACK_SIZE 16384

        /* XEN_ELFNOTE_PHYS32_ENTRY (type 18), an 8-byte descriptor as Linux emits. */
        .section .note.Xen, "a", @note
        .balign 4
        .long 4, 8, 18
        .asciz "Xen"
        .balign 4
        .quad pvh_start

        .section .text.boot, "ax"
        .code32
        .globl pvh_start
pvh_start:
        cli
        mov %ebx, start_info_address
        mov $boot_stack_top, %esp
        /* Identity map 4 GiB with 2 MiB pages: PML4[0] -> PDPT, PDPT[0..3] -> PD. */
        mov $pdpt + PAGE_PRESENT_WRITABLE, %eax
        mov %eax, pml4
        mov $0, %ecx
1:      mov %ecx, %eax
        shl $12, %eax
        add $pd + PAGE_PRESENT_WRITABLE, %eax
        mov %eax, pdpt(, %ecx, 8)
        inc %ecx
        cmp $4, %ecx
        jne 1b
        mov $0, %ecx
2:      mov %ecx, %eax
        shl $21, %eax
        or $PAGE_PRESENT_WRITABLE + PAGE_LARGE, %eax
        mov %eax, pd(, %ecx, 8)
        mov %ecx, %eax
        shr $11, %eax
        mov %eax, pd + 4(, %ecx, 8)
        inc %ecx
        cmp $2048, %ecx
        jne 2b
        call enter_long_mode32
        lgdt gdt64_pointer
        ljmp $0x18, $bsp_entry64

        /* Shared by the BSP and the APs (both arrive here in 32-bit mode). */
enter_long_mode32:
        mov %cr4, %eax
        or $CR4_PAE, %eax
        mov %eax, %cr4
        mov $pml4, %eax
        mov %eax, %cr3
        mov $MSR_EFER, %ecx
        rdmsr
        or $EFER_LME, %eax
        wrmsr
        mov %cr0, %eax
        or $CR0_PG | CR0_PE, %eax
        mov %eax, %cr0
        ret

        .code64
bsp_entry64:
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $boot_stack_top, %rsp
        mov start_info_address, %edi
        call kmain
        jmp halt_forever

ap_entry64:
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $1, %eax
        lock xadd %eax, ap_stack_next
        inc %eax
        imul $STACK_SIZE, %eax
        lea ap_stacks(%rax), %rsp
        call ap_main
halt_forever:
        cli
        hlt
        jmp halt_forever

        /* The real-mode AP trampoline, position independent within itself. */
        .globl trampoline_start, trampoline_end
        .code16
trampoline_start:
        cli
        mov %cs, %ax
        mov %ax, %ds
        lgdtl tramp_gdtr - trampoline_start
        mov %cr0, %eax
        or $CR0_PE, %eax
        mov %eax, %cr0
        ljmpl *(tramp_far32 - trampoline_start)
        .code32
tramp32:
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $TRAMPOLINE_BASE + (tramp_stack - trampoline_start), %esp
        mov $enter_long_mode32, %eax    /* absolute: the trampoline runs away from its link address */
        call *%eax
        ljmp $0x18, $ap_entry64
        .balign 8
tramp_gdt:
        .quad 0
        .quad 0x00CF9A000000FFFF /* 0x08: 32-bit code */
        .quad 0x00CF92000000FFFF /* 0x10: data */
        .quad 0x00AF9A000000FFFF /* 0x18: 64-bit code */
tramp_gdtr:
        .word tramp_gdtr - tramp_gdt - 1
        .long TRAMPOLINE_BASE + (tramp_gdt - trampoline_start)
tramp_far32:
        .long TRAMPOLINE_BASE + (tramp32 - trampoline_start)
        .word 0x08
        .balign 16
        .fill 64, 1, 0
tramp_stack:
trampoline_end:

        .section .rodata
        .balign 8
gdt64:
        .quad 0
        .quad 0x00CF9A000000FFFF
        .quad 0x00CF92000000FFFF
        .quad 0x00AF9A000000FFFF
gdt64_pointer:
        .word gdt64_pointer - gdt64 - 1
        .long gdt64

        .section .bss
        .balign 4096
pml4:   .fill 4096, 1, 0
pdpt:   .fill 4096, 1, 0
pd:     .fill 4 * 4096, 1, 0
        .balign 16
boot_stack:
        .fill STACK_SIZE, 1, 0
boot_stack_top:
        .globl ap_stacks
ap_stacks:
        .fill 64 * STACK_SIZE, 1, 0
ap_stack_next:
        .long 0
start_info_address:
        .long 0
        .section .note.GNU-stack, "", @progbits
