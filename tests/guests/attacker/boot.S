/*
 * PVH entry, long mode, the AP trampoline, the real-mode hypercall
 * trampoline, the way back down from long mode to real mode, the interrupt
 * stubs and setjmp/longjmp of the attacker test guest.  The BSP enters at
 * pvh_start in 32-bit protected mode with EBX = hvm_start_info (Xen
 * docs/misc/pvh.pandoc); an AP enters a trampoline copied to low memory in
 * real mode after a STARTUP IPI.
 */
#define TRAMPOLINE_BASE 0x8000
#define TRAMPOLINE_SEGMENT 0x800
#define REAL_MODE_BASE 0x9000
#define REAL_MODE_SEGMENT 0x900
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)
#define CR0_PE 1
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define TABLE_ENTRY 0x7     /* present, writable, user: the leaves decide who may use a page */
#define LARGE_LEAF 0x83     /* present, writable, 2 MiB, supervisor only */
#define CODE32 0x08
#define DATA 0x10
#define CODE64 0x18
#define CODE16 0x40
#define DATA16 0x48
#define STACK_SIZE 16384
#define AP_STACK_SIZE 8192
#define MAX_APS 64
#define HC_SHUTDOWN 4
#define REAL_MODE_STATUS 0x56

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
        mov %ebx, start_info_address
        mov $boot_stack_top, %esp
        /* Identity map 4 GiB with 2 MiB pages: PML4[0] -> PDPT, PDPT[0..3] -> PD. */
        mov $pdpt + TABLE_ENTRY, %eax
        mov %eax, pml4
        xor %ecx, %ecx
1:      mov %ecx, %eax
        shl $12, %eax
        add $pd + TABLE_ENTRY, %eax
        mov %eax, pdpt(, %ecx, 8)
        inc %ecx
        cmp $4, %ecx
        jne 1b
        xor %ecx, %ecx
2:      mov %ecx, %eax
        shl $21, %eax
        or $LARGE_LEAF, %eax
        mov %eax, pd(, %ecx, 8)
        mov %ecx, %eax
        shr $11, %eax
        mov %eax, pd + 4(, %ecx, 8)
        inc %ecx
        cmp $2048, %ecx
        jne 2b
        call enter_long_mode32
        lgdt gdt64_pointer
        ljmp $CODE64, $bsp_entry64

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
        mov $DATA, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $boot_stack_top, %rsp
        xor %ebp, %ebp
        mov start_info_address, %edi
        call kmain
        jmp halt_forever

ap_entry64:
        mov $DATA, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        lgdt gdt64_pointer
        mov $1, %eax
        lock xadd %eax, ap_stack_next
        and $MAX_APS - 1, %eax
        inc %eax
        imul $AP_STACK_SIZE, %eax
        lea ap_stacks(%rax), %rsp
        xor %ebp, %ebp
        call ap_main
        jmp halt_forever

        /* The long-mode AP trampoline, position independent within itself
         * (STARTUP vector 0x08; the BSP also comes back up through it). */
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
        mov $DATA, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $TRAMPOLINE_BASE + (tramp_stack - trampoline_start), %esp
        mov $enter_long_mode32, %eax    /* absolute: the trampoline runs away from its link address */
        call *%eax
        ljmp $CODE64, $ap_entry64
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
        .word CODE32
        .balign 16
        .fill 64, 1, 0
tramp_stack:
trampoline_end:

        /* The real-mode hypercall trampoline (STARTUP vector 0x09): SHUTDOWN
         * by vmmcall in real mode.  It reports in real_mode_flag: 1 started,
         * 2 the vmmcall returned (RAX in real_mode_result), 3 it raised #UD
         * (the BSP points IVT vector 6 at real_mode_ud).  With
         * real_mode_return set it goes back up to long mode through the AP
         * trampoline; otherwise it halts. */
        .globl real_mode_start, real_mode_end, real_mode_ud, real_mode_flag, real_mode_result, real_mode_return
        .code16
real_mode_start:
        jmp real_mode_entry
real_mode_pm16:                 /* from drop_to_real_mode: 16-bit protected mode, CS base 0 */
        mov $DATA16, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov %cr0, %eax
        and $~CR0_PE, %eax
        mov %eax, %cr0
        ljmp $REAL_MODE_SEGMENT, $(real_mode_entry - real_mode_start)
real_mode_entry:
        cli
        mov %cs, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $(real_mode_stack - real_mode_start), %sp
        lidtw real_mode_idtr - real_mode_start
        movb $1, real_mode_flag - real_mode_start
        mov $HC_SHUTDOWN, %eax
        mov $REAL_MODE_STATUS, %edi
        vmmcall
        mov %eax, real_mode_result - real_mode_start
        movb $2, real_mode_flag - real_mode_start
        jmp real_mode_after
real_mode_ud:                   /* IVT vector 6 */
        mov %cs, %ax
        mov %ax, %ds
        movb $3, real_mode_flag - real_mode_start
real_mode_after:
        cmpb $0, real_mode_return - real_mode_start
        jne 2f
1:      cli
        hlt
        jmp 1b
2:      ljmp $TRAMPOLINE_SEGMENT, $0
real_mode_idtr:
        .word 0x3FF
        .long 0
real_mode_flag:
        .byte 0
real_mode_return:
        .byte 0
        .balign 4
real_mode_result:
        .long 0
        .balign 16
        .fill 64, 1, 0
real_mode_stack:
real_mode_end:

        /* From long mode down to real mode (AMD APM Vol. 2 14.7): to
         * compatibility mode, paging off (which leaves long mode), EFER.LME
         * off, 16-bit protected mode in the copied trampoline, PE off. */
        .code64
        .section .text
        .globl drop_to_real_mode
drop_to_real_mode:
        cli
        lgdt gdt64_pointer
        pushq $CODE32
        pushq $compat32
        lretq
        .code32
compat32:
        mov $DATA, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov %cr0, %eax
        and $~CR0_PG, %eax
        mov %eax, %cr0
        mov $MSR_EFER, %ecx
        rdmsr
        and $~EFER_LME, %eax
        wrmsr
        mov %cr4, %eax
        and $~CR4_PAE, %eax
        mov %eax, %cr4
        ljmp $CODE16, $REAL_MODE_BASE + (real_mode_pm16 - real_mode_start)

        /* Interrupt entry: one stub per vector pushes a dummy error code
         * where the CPU pushes none, then the vector (AMD APM Vol. 2 8.9). */
        .code64
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

        /* A frame the CPU pushed outside this kernel's stacks (a foreign RSP
         * or TSS.RSP0) cannot be trusted or returned through: trap_off_stack
         * reports it from the emergency stack and never returns. */
interrupt_common:
        cmp stacks_floor(%rip), %rsp
        jb off_stack
        cmp stacks_ceiling(%rip), %rsp
        jae off_stack
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
        cld
        call trap
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
off_stack:
        mov %rsp, %rdi
        lea emergency_stack_top(%rip), %rsp
        cld
        call trap_off_stack
        jmp halt_forever

        /* setjmp/longjmp for the attack script: callee-saved registers,
         * the stack pointer and the return address. */
        .globl attack_setjmp, attack_longjmp
attack_setjmp:
        mov %rbx, 0(%rdi)
        mov %rbp, 8(%rdi)
        mov %r12, 16(%rdi)
        mov %r13, 24(%rdi)
        mov %r14, 32(%rdi)
        mov %r15, 40(%rdi)
        lea 8(%rsp), %rdx
        mov %rdx, 48(%rdi)
        mov (%rsp), %rdx
        mov %rdx, 56(%rdi)
        xor %eax, %eax
        ret
attack_longjmp:
        mov 0(%rdi), %rbx
        mov 8(%rdi), %rbp
        mov 16(%rdi), %r12
        mov 24(%rdi), %r13
        mov 32(%rdi), %r14
        mov 40(%rdi), %r15
        mov 48(%rdi), %rsp
        mov $DATA, %ax
        mov %ax, %ss
        mov %ax, %ds
        mov %ax, %es
        mov %esi, %eax
        test %eax, %eax
        jnz 1f
        inc %eax
1:      jmp *56(%rdi)

        /* To CPL 3 at RDI with stack RSI, interrupts off (AMD APM Vol. 2 8.9.3 IRET). */
        .globl enter_user
enter_user:
        pushq $(0x20 | 3)
        pushq %rsi
        pushq $0x2
        pushq $(0x28 | 3)
        pushq %rdi
        mov $(0x20 | 3), %ax
        mov %ax, %ds
        mov %ax, %es
        iretq

        .globl halt_forever
halt_forever:
        cli
        hlt
        jmp halt_forever

        .section .rodata
        .balign 8
stacks_floor:
        .quad stacks_start
stacks_ceiling:
        .quad stacks_end

        /* Writable: the TSS descriptor is filled in at run time and LTR marks it busy. */
        .section .data
        .balign 16
        .globl gdt64
gdt64:
        .quad 0
        .quad 0x00CF9A000000FFFF /* 0x08: 32-bit code */
        .quad 0x00CF92000000FFFF /* 0x10: data */
        .quad 0x00AF9A000000FFFF /* 0x18: 64-bit code */
        .quad 0x00CFF2000000FFFF /* 0x20: user data, DPL 3 */
        .quad 0x00AFFA000000FFFF /* 0x28: user 64-bit code, DPL 3 */
        .quad 0, 0               /* 0x30: the TSS (cpu.c) */
        .quad 0x00009A000000FFFF /* 0x40: 16-bit code, base 0 */
        .quad 0x000092000000FFFF /* 0x48: 16-bit data, base 0 */
gdt64_end:
        .globl gdt64_pointer
gdt64_pointer:
        .word gdt64_end - gdt64 - 1
        .quad gdt64

        .section .bss
        .balign 4096
        .globl pml4, pdpt, pd
pml4:   .fill 4096, 1, 0
pdpt:   .fill 4096, 1, 0
pd:     .fill 4 * 4096, 1, 0
        /* Every stack the interrupt stubs trust lies in [stacks_start, stacks_end). */
        .balign 16
stacks_start:
        .fill STACK_SIZE, 1, 0
boot_stack_top:
ap_stacks:
        .fill MAX_APS * AP_STACK_SIZE, 1, 0
        .globl trap_stack_top
        .fill STACK_SIZE, 1, 0
trap_stack_top:
        .fill STACK_SIZE, 1, 0
emergency_stack_top:
stacks_end:
ap_stack_next:
        .long 0
start_info_address:
        .long 0
        .section .note.GNU-stack, "", @progbits
