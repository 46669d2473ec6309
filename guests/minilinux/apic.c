/*
 * The local APIC (Intel SDM Vol. 3A ch. 10): software enable through the
 * spurious vector register, EOI, IPIs through the ICR with a wait on its
 * delivery status, and the timer as the periodic tick, calibrated against
 * the TSC.
 */
#include "kernel.h"
#include "apic.h"

#define CALIBRATE_MS 2

u64 apic_timer_khz;
u64 tsc_khz;
static volatile u32 *const lapic = (volatile u32 *)APIC_DEFAULT_BASE;

u32 apic_read(u32 reg) { return lapic[reg / 4]; }
void apic_write(u32 reg, u32 value) { lapic[reg / 4] = value; }
u8 read_apic_id(void) { return (u8)(apic_read(APIC_ID) >> APIC_ID_SHIFT); }
void apic_eoi(void) { apic_write(APIC_EOI, 0); }

void setup_local_apic(void)
{
    apic_write(APIC_TPR, 0);
    apic_write(APIC_SVR, APIC_SVR_ENABLE | SPURIOUS_APIC_VECTOR);
    apic_write(APIC_LVT_LINT0, APIC_LVT_MASKED);
    apic_write(APIC_LVT_LINT1, APIC_DM_NMI);
    apic_write(APIC_LVT_ERROR, ERROR_APIC_VECTOR);
    apic_write(APIC_ESR, 0);
}

/* Write ICR high then low and wait until the APIC has sent it. */
bool apic_send_ipi(u32 dest, u32 command)
{
    u64 flags = read_flags();
    local_irq_disable();
    apic_write(APIC_ICR_HIGH, APIC_ICR_DEST(dest));
    apic_write(APIC_ICR_LOW, command);
    bool sent = false;
    for (u32 spin = 0; spin < 1000000; spin++) {
        if (!(apic_read(APIC_ICR_LOW) & APIC_ICR_PENDING)) {
            sent = true;
            break;
        }
        cpu_relax();
    }
    if (flags & 0x200)
        local_irq_enable();
    return sent;
}

/* Spin until ``cycles`` TSC cycles have passed, reading the TSC only now
 * and then (each read is a trap on some machines). */
static void tsc_wait(u64 cycles)
{
    u64 start = rdtsc();
    while (rdtsc() - start < cycles)
        for (int i = 0; i < 64; i++)
            cpu_relax();
}

void calibrate_apic_timer(void)
{
    tsc_khz = boot_options.tsc_khz;
    printk("tsc: %lu.%03lu MHz processor (tsc_khz=%lu%s)\n", tsc_khz / 1000, tsc_khz % 1000, tsc_khz,
           tsc_khz == 2000000 ? ", the default" : "");
    apic_write(APIC_TIMER_DIVIDE, APIC_TIMER_DIVIDE_BY_1);
    apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED | LOCAL_TIMER_VECTOR);
    apic_write(APIC_TIMER_INITIAL, 0xFFFFFFFF);
    tsc_wait(tsc_khz * CALIBRATE_MS);
    u32 elapsed = 0xFFFFFFFF - apic_read(APIC_TIMER_CURRENT);
    apic_write(APIC_TIMER_INITIAL, 0);
    apic_timer_khz = elapsed / CALIBRATE_MS;
    if (!apic_timer_khz)
        apic_timer_khz = 1;
    printk("APIC: timer calibrated against the TSC: bus clock %lu.%03lu MHz\n", apic_timer_khz / 1000,
           apic_timer_khz % 1000);
}

/* The periodic tick on this CPU (LOCAL_TIMER_VECTOR, HZ per second). */
void setup_apic_timer(void)
{
    apic_write(APIC_TIMER_DIVIDE, APIC_TIMER_DIVIDE_BY_1);
    apic_write(APIC_LVT_TIMER, APIC_LVT_TIMER_PERIODIC | LOCAL_TIMER_VECTOR);
    apic_write(APIC_TIMER_INITIAL, (u32)(apic_timer_khz * 1000 / HZ));
}

void udelay(u64 us)
{
    tsc_wait(tsc_khz * us / 1000);
}

/* With interrupts on, sleep on the tick; otherwise spin on the TSC. */
void mdelay(u64 ms)
{
    struct percpu *cpu = this_cpu();
    if (!cpu || !(read_flags() & 0x200)) {
        udelay(ms * 1000);
        return;
    }
    u64 target = cpu->jiffies + ms * HZ / 1000 + 1;
    while (cpu->jiffies < target)
        safe_halt();
}
