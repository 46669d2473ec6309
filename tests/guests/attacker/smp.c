/*
 * Application processors: INIT / INIT de-assert / STARTUP / STARTUP (MP spec
 * 1.4 B.4) to the kernel's own APIC IDs from DESCRIBE_SELF, and what an AP
 * does once it is in long mode.
 */
#include "attacker.h"

#define START_WAIT 50000000

volatile u32 aps_online;
volatile int bsp_back_from_real_mode;
static volatile enum ap_task ap_task;

void copy_trampolines(void)
{
    copy((void *)TRAMPOLINE_BASE, trampoline_start, (u64)(trampoline_end - trampoline_start));
    copy((void *)REAL_MODE_BASE, real_mode_start, (u64)(real_mode_end - real_mode_start));
}

void send_ipi(u8 apic_id, u32 command)
{
    lapic_write(APIC_ICR_HIGH, (u32)apic_id << 24);
    lapic_write(APIC_ICR_LOW, command);
    for (u32 spin = 0; spin < 100000 && (lapic_read(APIC_ICR_LOW) & ICR_PENDING); spin++)
        cpu_relax();
}

/* INIT-SIPI-SIPI with STARTUP vector start_page >> 12; 1 if the AP came online. */
static int boot_ap(u8 apic_id, u64 start_page)
{
    u32 before = aps_online;
    send_ipi(apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    send_ipi(apic_id, ICR_INIT | ICR_LEVEL);
    delay(10000);
    for (int attempt = 0; attempt < 2 && aps_online == before; attempt++) {
        send_ipi(apic_id, ICR_STARTUP | (u32)(start_page >> 12));
        delay(2000);
    }
    for (u32 spin = 0; spin < START_WAIT && aps_online == before; spin++)
        cpu_relax();
    return aps_online != before;
}

/* Starts every other core of the kernel, each to do `task`; returns how many came up. */
int start_aps(enum ap_task task)
{
    ap_task = task;
    copy_trampolines();
    int started = 0;
    for (u32 i = 0; i < self.osv.cores && i < sizeof self.osv.apic_ids; i++) {
        u8 id = self.osv.apic_ids[i];
        if (id == self.apic_id)
            continue;
        if (boot_ap(id, TRAMPOLINE_BASE))
            started++;
        else
            say("attacker: APIC %u did not start\n", id);
    }
    return started;
}

void ap_main(void)
{
    cpu_init_ap();
    if (bsp_back_from_real_mode) {
        bsp_back_from_real_mode = 0;
        real_hypercall_report();
    }
    u32 me = lapic_read(APIC_ID) >> 24;
    enum ap_task task = ap_task;
    say("attacker: AP APIC %u online%s\n", me,
        task == AP_SPIN ? ", spinning with interrupts off" : task == AP_HALT ? ", halting with interrupts off" : "");
    __atomic_add_fetch(&aps_online, 1, __ATOMIC_RELEASE);
    if (task == AP_SPIN)
        for (;;)
            __asm__ volatile("cli; jmp ." ::: "memory");
    if (task == AP_HALT)
        halt_forever();
    idle();
}
