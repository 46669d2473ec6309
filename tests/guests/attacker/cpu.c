/*
 * The CPU's own tables: the IDT (AMD APM Vol. 2 8.9), the TSS with RSP0
 * (12.2.5), the user pages of the page tables, and the trap handler that
 * reports every exception and resumes the attack script.
 */
#include "attacker.h"

#define GATE_INTERRUPT 0x8E      /* present, DPL 0, 64-bit interrupt gate */
#define GATE_INTERRUPT_USER 0xEE /* the same with DPL 3: int3 and int $0x80 from CPL 3 */
#define TSS_AVAILABLE 0x89       /* present, 64-bit available TSS */
#define STUB_SIZE 16
#define SPLIT_TABLES 4

struct __attribute__((packed)) idt_gate {
    u16 offset_low, selector;
    u8 ist, type_attr;
    u16 offset_mid;
    u32 offset_high, reserved;
};

struct __attribute__((packed)) tss {
    u32 reserved0;
    u64 rsp[3];
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3, iomap_base;
};

_Static_assert(sizeof(struct idt_gate) == 16, "an IDT gate is 16 bytes");
_Static_assert(sizeof(struct tss) == 104, "the 64-bit TSS is 104 bytes");

extern u64 gdt64[];

static struct idt_gate idt[256] __attribute__((aligned(16)));
static struct tss tss __attribute__((aligned(16)));
/* 4 KiB tables for the 2 MiB pages that hold user pages. */
static u64 split_tables[SPLIT_TABLES][512] __attribute__((aligned(4096)));
static int splits;

jump_buffer recover;
volatile int recover_armed;
volatile u32 ud_skips;

void load_idt(void)
{
    struct table_pointer pointer = { sizeof idt - 1, (u64)idt };
    __asm__ volatile("lidt %0" : : "m"(pointer));
}

void cpu_init(void)
{
    for (int v = 0; v < 256; v++) {
        u64 handler = (u64)interrupt_stubs + (u64)v * STUB_SIZE;
        int user = v == VECTOR_BP || v == SYSCALL_VECTOR;
        idt[v] = (struct idt_gate){
            .offset_low = (u16)handler, .selector = KERNEL_CS, .ist = 0,
            .type_attr = user ? GATE_INTERRUPT_USER : GATE_INTERRUPT,
            .offset_mid = (u16)(handler >> 16), .offset_high = (u32)(handler >> 32), .reserved = 0,
        };
    }
    load_idt();
    u64 base = (u64)&tss;
    tss.iomap_base = sizeof tss; /* no I/O permission bitmap */
    tss.rsp[0] = (u64)trap_stack_top;
    gdt64[TSS_SELECTOR / 8] = (sizeof tss - 1) | (base & 0xFFFFFF) << 16 | (u64)TSS_AVAILABLE << 40
                              | (base >> 24 & 0xFF) << 56;
    gdt64[TSS_SELECTOR / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(TSS_SELECTOR));
    lapic_write(APIC_SVR, APIC_SVR_ENABLE | SPURIOUS_VECTOR);
}

void cpu_init_ap(void)
{
    load_idt();
    lapic_write(APIC_SVR, APIC_SVR_ENABLE | SPURIOUS_VECTOR);
}

void set_rsp0(u64 rsp0) { tss.rsp[0] = rsp0; }

void flush_tlb(void) { write_cr3(read_cr3()); }

/* The page-directory entry of the identity map for `linear` (below 4 GiB). */
u64 *pd_entry(u64 linear) { return &pd[linear >> 21]; }

/* The 4 KiB leaf for `linear`, splitting its 2 MiB page if need be. */
static u64 *pt_entry(u64 linear)
{
    u64 *pde = pd_entry(linear);
    if (*pde & PTE_LARGE) {
        if (splits == SPLIT_TABLES) {
            say("attacker: too many user pages\n");
            halt_forever();
        }
        u64 *table = split_tables[splits++];
        u64 base = *pde & ~(LARGE_PAGE_SIZE - 1) & PTE_ADDRESS;
        for (u64 i = 0; i < 512; i++)
            table[i] = (base + i * PAGE_SIZE) | PTE_PRESENT | PTE_WRITABLE;
        *pde = (u64)table | PTE_PRESENT | PTE_WRITABLE | PTE_USER;
    }
    return &((u64 *)(*pde & PTE_ADDRESS))[linear >> 12 & 511];
}

/* Every page of the kernel is supervisor-only except [user_start, user_end). */
void map_user_pages(void)
{
    for (u64 page = (u64)user_start; page < (u64)user_end; page += PAGE_SIZE)
        *pt_entry(page) |= PTE_USER;
    flush_tlb();
}

/* Back to this kernel's own tables before the script goes on. */
static void restore_tables(void)
{
    __asm__ volatile("lgdt %0" : : "m"(gdt64_pointer));
    load_idt();
    set_rsp0((u64)trap_stack_top);
    write_cr3((u64)pml4);
}

static int is_vmmcall(u64 rip)
{
    const u8 *code = (const u8 *)rip;
    return code[0] == 0x0F && code[1] == 0x01 && code[2] == 0xD9;
}

static __attribute__((noreturn)) void resume_script(u64 vector)
{
    recover_armed = 0;
    restore_tables();
    attack_longjmp(recover, (int)vector + 1);
}

void trap(struct frame *f)
{
    if (f->vector == SYSCALL_VECTOR && recover_armed)
        resume_script(f->vector);
    if (f->vector >= FIRST_INTERRUPT) {
        say("attacker: interrupt %lu on APIC %u\n", f->vector, lapic_read(APIC_ID) >> 24);
        if (f->vector != SPURIOUS_VECTOR)
            lapic_write(APIC_EOI, 0);
        return;
    }
    if (f->vector == VECTOR_PF)
        say("attacker: exception %lu at RIP %#lx error %#lx CPL %lu CR2 %#lx\n", f->vector, f->rip, f->error,
            f->cs & 3, read_cr2());
    else
        say("attacker: exception %lu at RIP %#lx error %#lx CPL %lu\n", f->vector, f->rip, f->error, f->cs & 3);
    if (f->vector == VECTOR_UD && is_vmmcall(f->rip)) {
        ud_skips++;
        f->rip += 3; /* the hypercall was not serviced: go on after it */
        return;
    }
    if (f->vector == VECTOR_NMI)
        return; /* an interrupt, not the step's fault */
    if (recover_armed)
        resume_script(f->vector);
    if (f->vector == VECTOR_BP)
        return;
    say("attacker: unexpected exception, core halted\n");
    halt_forever();
}

/* The CPU pushed its frame outside this kernel's stacks; `old` is where the
 * stub's pushes ended.  Report what reads back from there and resume. */
void trap_off_stack(const volatile u64 *old)
{
    u64 vector = old[0], error = old[1], rip = old[2], cs = old[3];
    say("attacker: exception ? at RIP ? on a stack outside its RAM: the frame at RSP %#lx reads back vector %#lx "
        "error %#lx RIP %#lx CS %#lx\n", (u64)old, vector, error, rip, cs);
    if (recover_armed)
        resume_script(OFF_STACK);
    say("attacker: unexpected exception, core halted\n");
    halt_forever();
}
