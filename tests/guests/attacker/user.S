/*
 * Code and data that run at CPL 3: the only pages whose page-table leaves
 * have U/S set (cpu.c: map_user_pages).  Each routine ends with int $0x80,
 * which the kernel takes as "back from user mode".
 */
#define HC_DESCRIBE_SELF 1
#define HC_SHUTDOWN 4
#define OSV_SELF_BYTES 96

        .section .user.text, "ax"
        .code64
        .globl user_start, user_describe_self, user_shutdown, user_int3
user_start:
        /* DESCRIBE_SELF into the buffer at user_argument. */
user_describe_self:
        mov $HC_DESCRIBE_SELF, %eax
        mov user_argument(%rip), %rdi
        mov $OSV_SELF_BYTES, %esi
        xor %edx, %edx
        vmmcall
        mov %rax, user_result(%rip)
        int $0x80
        /* SHUTDOWN with the status in user_argument. */
user_shutdown:
        mov $HC_SHUTDOWN, %eax
        mov user_argument(%rip), %rdi
        xor %esi, %esi
        xor %edx, %edx
        vmmcall
        mov %rax, user_result(%rip)
        int $0x80
        /* A breakpoint from CPL 3: the CPU switches to TSS.RSP0. */
user_int3:
        int3
        int $0x80

        .section .user.data, "aw"
        .balign 16
        .globl user_argument, user_result, user_stack_top, user_end
user_argument:
        .quad 0
user_result:
        .quad 0
        .balign 16
        .fill 1024, 1, 0
user_stack_top:
        .balign 4096
user_end:
        .section .note.GNU-stack, "", @progbits
