/*
 * PVH entry, the switch to long mode, the AP trampoline and the interrupt
 * entry stubs.  The BSP enters at pvh_start in 32-bit protected mode with
 * EBX = hvm_start_info (Xen docs/misc/pvh.pandoc); an AP enters the
 * trampoline (copied to TRAMPOLINE_BASE) in real mode after a STARTUP IPI.
 */
#define TRAMPOLINE_BASE 0x8000
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)
#define EFER_NXE (1 << 11)
#define CR0_PE 1
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define PAGE_PRESENT_WRITABLE 0x3
#define PAGE_LARGE 0x80
#define IDENTITY_GIB 16
#define BOOT_STACK_SIZE 16384

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
        cld
        mov %ebx, pvh_start_info
        mov $boot_stack_top, %esp
        /* Identity map IDENTITY_GIB GiB with 2 MiB pages. */
        mov $pdpt + PAGE_PRESENT_WRITABLE, %eax
        mov %eax, pml4
        xor %ecx, %ecx
1:      mov %ecx, %eax
        shl $12, %eax
        add $identity_pd + PAGE_PRESENT_WRITABLE, %eax
        mov %eax, pdpt(, %ecx, 8)
        inc %ecx
        cmp $IDENTITY_GIB, %ecx
        jne 1b
        xor %ecx, %ecx
2:      mov %ecx, %eax
        shl $21, %eax
        or $PAGE_PRESENT_WRITABLE + PAGE_LARGE, %eax
        mov %eax, identity_pd(, %ecx, 8)
        mov %ecx, %eax
        shr $11, %eax
        mov %eax, identity_pd + 4(, %ecx, 8)
        inc %ecx
        cmp $IDENTITY_GIB * 512, %ecx
        jne 2b
        call enter_long_mode32
        lgdt gdt64_pointer
        ljmp $0x18, $bsp_entry64

        /* Shared by the BSP and the APs, both in 32-bit protected mode. */
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
        xor %eax, %eax
        mov %ax, %fs
        mov %ax, %gs
        mov $boot_stack_top, %rsp
        xor %ebp, %ebp
        mov pvh_start_info, %edi
        call start_kernel
        jmp halt_forever

ap_entry64:
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        xor %eax, %eax
        mov %ax, %fs
        mov %ax, %gs
        lgdt gdt64_pointer
        mov ap_boot_stack, %rsp
        xor %ebp, %ebp
        call start_secondary
        .globl halt_forever
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

        /* Interrupt entry: one stub per vector pushes a dummy error code
         * where the CPU pushes none, then the vector (Intel SDM Vol. 3A 6.13). */
        .code64
        .section .text
        .globl interrupt_stubs
        .balign 16
interrupt_stubs:
        vector = 0
        .rept 256
        .balign 16
        .if (vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
        .else
        pushq $0
        .endif
        pushq $vector
        jmp interrupt_common
        vector = vector + 1
        .endr

interrupt_common:
        push %rax
        push %rbx
        push %rcx
        push %rdx
        push %rsi
        push %rdi
        push %rbp
        push %r8
        push %r9
        push %r10
        push %r11
        push %r12
        push %r13
        push %r14
        push %r15
        mov %rsp, %rdi
        call do_interrupt
        pop %r15
        pop %r14
        pop %r13
        pop %r12
        pop %r11
        pop %r10
        pop %r9
        pop %r8
        pop %rbp
        pop %rdi
        pop %rsi
        pop %rdx
        pop %rcx
        pop %rbx
        pop %rax
        add $16, %rsp
        iretq

        .section .rodata
        .balign 8
gdt64:
        .quad 0
        .quad 0x00CF9A000000FFFF
        .quad 0x00CF92000000FFFF
        .quad 0x00AF9A000000FFFF
gdt64_pointer:
        .word gdt64_pointer - gdt64 - 1
        .quad gdt64

        .section .bss
        .balign 4096
        .globl pml4
pml4:   .fill 4096, 1, 0
pdpt:   .fill 4096, 1, 0
identity_pd:
        .fill IDENTITY_GIB * 4096, 1, 0
        .balign 16
boot_stack:
        .fill BOOT_STACK_SIZE, 1, 0
boot_stack_top:
        .globl ap_boot_stack, pvh_start_info
ap_boot_stack:
        .quad 0
pvh_start_info:
        .long 0

        .section .note.GNU-stack, "", @progbits
