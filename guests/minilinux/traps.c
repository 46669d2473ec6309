/*
 * The IDT (Intel SDM Vol. 3A 6.14): every vector enters through a stub in
 * boot.S and reaches do_interrupt with the saved registers.  Exceptions print
 * what happened and stop the CPU; device and IPI vectors go to their handlers.
 */
#include "kernel.h"

struct __attribute__((packed)) idt_gate {
    u16 offset_low, selector;
    u8 ist, type_attr;
    u16 offset_mid;
    u32 offset_high, reserved;
};

struct __attribute__((packed)) idt_pointer { u16 limit; u64 base; };

#define KERNEL_CS 0x18
#define GATE_INTERRUPT 0x8E
#define STUB_SIZE 16

extern char interrupt_stubs[];
static struct idt_gate idt[256] __attribute__((aligned(16)));
static irq_handler_t handlers[256];

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
    "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor segment overrun",
    "#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved", "#MF x87 error", "#AC alignment check", "#MC machine check",
    "#XM SIMD error", "#VE virtualization", "#CP control protection",
};

void trap_init(void)
{
    for (int v = 0; v < 256; v++) {
        u64 handler = (u64)interrupt_stubs + (u64)v * STUB_SIZE;
        idt[v] = (struct idt_gate){
            .offset_low = (u16)handler, .selector = KERNEL_CS, .ist = 0, .type_attr = GATE_INTERRUPT,
            .offset_mid = (u16)(handler >> 16), .offset_high = (u32)(handler >> 32), .reserved = 0,
        };
    }
    load_idt();
}

void load_idt(void)
{
    struct idt_pointer pointer = { sizeof idt - 1, (u64)idt };
    __asm__ volatile("lidt %0" : : "m"(pointer));
}

void set_irq_handler(u8 vector, irq_handler_t handler)
{
    handlers[vector] = handler;
}

static void die(struct pt_regs *regs)
{
    u32 v = (u32)regs->vector;
    struct percpu *cpu = this_cpu();
    pr_err("CPU %u: exception %u (%s) error code 0x%lx at RIP 0x%lx, CR2 0x%lx, RSP 0x%lx; CPU halted\n",
           cpu ? cpu->cpu : 0, v, v < 22 ? exception_names[v] : "reserved", regs->error_code, regs->rip,
           read_cr2(), regs->rsp);
    if (!cpu || cpu->cpu == 0)
        panic("exception %u on the boot CPU", v);
    cpu->online = 0;
    atomic_dec_return(&nr_cpus_online);
    for (;;) {
        local_irq_disable();
        halt();
    }
}

void do_interrupt(struct pt_regs *regs)
{
    u8 vector = (u8)regs->vector;
    if (vector < 32 && vector != 2) {
        die(regs);
        return;
    }
    if (handlers[vector]) {
        handlers[vector](regs);
        return;
    }
    if (vector == 2) {
        pr_err("NMI received on CPU %u\n", this_cpu() ? this_cpu()->cpu : 0);
        return;
    }
    if (vector != SPURIOUS_APIC_VECTOR) {
        pr_err("unexpected interrupt vector 0x%x on CPU %u\n", vector, this_cpu() ? this_cpu()->cpu : 0);
        apic_eoi();
    }
}
