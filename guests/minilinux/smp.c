/*
 * SMP: per-CPU areas, bringing up the application processors with
 * INIT / INIT de-assert / 10 ms / STARTUP / 200 us / STARTUP (MP spec 1.4
 * B.4, as Linux's smpboot does), and the IPIs Linux uses: call-function
 * (shorthand, physical and logical destinations), reschedule wake-ups and
 * TLB shootdowns.
 */
#include "kernel.h"
#include "apic.h"

#define TRAMPOLINE_BASE 0x8000
#define STACK_PAGES 4
#define AP_START_TIMEOUT_MS 1000
#define NO_CPU 0xFF
#define TLB_WINDOW 0x7FC0000000UL /* 511 GiB: outside the identity map */

struct percpu *per_cpu[MAX_CPUS];
u32 nr_cpus_online, nr_cpus_possible;
u64 jiffies;

extern char trampoline_start[], trampoline_end[];
extern volatile u64 ap_boot_stack;
static u8 apic_to_cpu[256];
static volatile u32 booting_cpu;

enum logical_model { LOGICAL_NONE, LOGICAL_FLAT, LOGICAL_CLUSTER };
static enum logical_model logical_model;

struct call_data {
    void (*func)(void *);
    void *info;
    volatile u32 pending;
};
static struct call_data *volatile call_data;
static spinlock_t call_lock = SPINLOCK_INIT;
static volatile u64 tlb_address;
static volatile u32 tlb_pending;
static idle_hook_fn idle_hook;

struct percpu *this_cpu(void)
{
    u8 cpu = apic_to_cpu[read_apic_id()];
    return cpu == NO_CPU ? NULL : per_cpu[cpu];
}

u32 smp_processor_id(void)
{
    struct percpu *cpu = this_cpu();
    return cpu ? cpu->cpu : 0;
}

/* ---------------------------------------------------------------- handlers */
static void timer_interrupt(struct pt_regs *regs)
{
    (void)regs;
    struct percpu *cpu = this_cpu();
    if (cpu) {
        cpu->jiffies++;
        if (cpu->cpu == 0)
            jiffies++;
    }
    apic_eoi();
}

static void error_interrupt(struct pt_regs *regs)
{
    (void)regs;
    apic_write(APIC_ESR, 0);
    u32 esr = apic_read(APIC_ESR);
    pr_err("APIC error on CPU %u: ESR 0x%x\n", smp_processor_id(), esr);
    apic_eoi();
}

static void reschedule_interrupt(struct pt_regs *regs)
{
    (void)regs;
    apic_eoi();
}

static void call_function_interrupt(struct pt_regs *regs)
{
    (void)regs;
    struct call_data *data = call_data;
    apic_eoi();
    if (data) {
        data->func(data->info);
        atomic_dec_return(&data->pending);
    }
}

static void invalidate_interrupt(struct pt_regs *regs)
{
    (void)regs;
    invlpg(tlb_address);
    struct percpu *cpu = this_cpu();
    if (cpu)
        cpu->tlb_flushes++;
    apic_eoi();
    atomic_dec_return(&tlb_pending);
}

/* ---------------------------------------------------------------- per-CPU state */
static struct percpu *alloc_percpu(u32 number, u8 apic_id, u8 node)
{
    struct percpu *cpu = alloc_pages(1);
    void *stack = alloc_pages(STACK_PAGES);
    if (!cpu || !stack)
        panic("out of memory for CPU %u", number);
    cpu->cpu = number;
    cpu->apic_id = apic_id;
    cpu->node = node;
    cpu->stack = stack;
    per_cpu[number] = cpu;
    apic_to_cpu[apic_id] = (u8)number;
    return cpu;
}

/* Logical APIC IDs: flat model (one bit per CPU) for up to 8 CPUs, the
 * cluster model (4 CPUs per cluster, clusters 0-14) for up to 60. */
static void set_logical_id(struct percpu *cpu)
{
    if (logical_model == LOGICAL_FLAT) {
        apic_write(APIC_DFR, APIC_DFR_FLAT);
        apic_write(APIC_LDR, APIC_LDR_ID(1U << cpu->cpu));
    } else if (logical_model == LOGICAL_CLUSTER) {
        apic_write(APIC_DFR, APIC_DFR_CLUSTER);
        apic_write(APIC_LDR, APIC_LDR_ID(((cpu->cpu / 4) << 4) | (1U << (cpu->cpu % 4))));
    }
}

void set_idle_hook(idle_hook_fn hook)
{
    idle_hook = hook;
}

/* Sleep until an interrupt; after a reschedule IPI, run the idle hook. */
static void cpu_idle(struct percpu *cpu)
{
    for (;;) {
        safe_halt();
        if (cpu->need_resched) {
            cpu->need_resched = 0;
            cpu->woken++;
            if (cpu->fault_requested)
                *(volatile u64 *)(TLB_WINDOW + 0x100000) = cpu->cpu; /* never mapped */
            if (idle_hook)
                idle_hook(cpu);
        }
    }
}

/* An AP arrives here in long mode on its own stack (boot.S ap_entry64). */
void start_secondary(void)
{
    struct percpu *cpu = per_cpu[booting_cpu];
    load_idt();
    setup_local_apic();
    set_logical_id(cpu);
    setup_apic_timer();
    cpu->online = 1;
    atomic_inc_return(&nr_cpus_online);
    cpu_idle(cpu);
}

/* ---------------------------------------------------------------- bring-up */
static bool wakeup_secondary_cpu(struct percpu *cpu)
{
    u8 apic = cpu->apic_id;
    apic_write(APIC_ESR, 0);
    apic_send_ipi(apic, APIC_DM_INIT | APIC_ICR_LEVEL | APIC_ICR_ASSERT);
    apic_send_ipi(apic, APIC_DM_INIT | APIC_ICR_LEVEL);
    mdelay(10);
    for (int attempt = 0; attempt < 2 && !cpu->online; attempt++) {
        if (!apic_send_ipi(apic, APIC_DM_STARTUP | (TRAMPOLINE_BASE >> 12)))
            pr_err("smpboot: STARTUP IPI to APIC %u was not delivered\n", apic);
        udelay(200);
    }
    for (u32 ms = 0; ms < AP_START_TIMEOUT_MS && !cpu->online; ms++)
        mdelay(1);
    return cpu->online;
}

void smp_init(void)
{
    u32 wanted = topology.nr_cpus;
    if (boot_options.nosmp)
        wanted = 1;
    if (boot_options.maxcpus && boot_options.maxcpus < wanted)
        wanted = boot_options.maxcpus;
    nr_cpus_possible = wanted;
    logical_model = wanted <= 8 ? LOGICAL_FLAT : wanted <= 60 ? LOGICAL_CLUSTER : LOGICAL_NONE;
    set_logical_id(per_cpu[0]);
    set_irq_handler(RESCHEDULE_VECTOR, reschedule_interrupt);
    set_irq_handler(CALL_FUNCTION_VECTOR, call_function_interrupt);
    set_irq_handler(INVALIDATE_TLB_VECTOR, invalidate_interrupt);
    if (wanted == 1) {
        printk("smp: %s; only the boot CPU runs\n", boot_options.nosmp ? "nosmp"
               : topology.nr_cpus == 1 ? "one processor" : "maxcpus=1");
        return;
    }
    memcpy((void *)TRAMPOLINE_BASE, trampoline_start, (size_t)(trampoline_end - trampoline_start));
    printk("smp: Bringing up secondary CPUs ...\n");
    printk("x86: Booting SMP configuration:\n");
    u32 number = 1, last_node = NO_CPU;
    char line[160];
    int length = 0;
    for (u32 i = 0; i < topology.nr_cpus && number < wanted; i++) {
        struct cpu_info *info = &topology.cpus[i];
        if (info->apic_id == per_cpu[0]->apic_id)
            continue;
        if (info->node != last_node) {
            if (length)
                printk("%s\n", line);
            length = snprintf(line, sizeof line, ".... node  #%u, CPUs:      ", info->node);
            last_node = info->node;
        }
        struct percpu *cpu = alloc_percpu(number, info->apic_id, info->node);
        booting_cpu = number;
        ap_boot_stack = (u64)cpu->stack + STACK_PAGES * PAGE_SIZE;
        if (wakeup_secondary_cpu(cpu)) {
            length += snprintf(line + length, sizeof line - (size_t)length, " #%u", number);
            if (length > 120) {
                printk("%s\n", line);
                length = snprintf(line, sizeof line, "                          ");
            }
            number++;
        } else {
            pr_err("smpboot: CPU %u (APIC ID %u) did not come up; skipped\n", number, info->apic_id);
            per_cpu[number] = NULL;
            apic_to_cpu[info->apic_id] = NO_CPU;
        }
    }
    if (length)
        printk("%s\n", line);
    u32 nodes = 0;
    bool seen[256] = { 0 };
    for (u32 i = 0; i < MAX_CPUS; i++)
        if (per_cpu[i] && per_cpu[i]->online && !seen[per_cpu[i]->node]) {
            seen[per_cpu[i]->node] = true;
            nodes++;
        }
    printk("smp: Brought up %u node%s, %u CPUs\n", nodes, nodes == 1 ? "" : "s", nr_cpus_online);
    printk("smpboot: Total of %u processors activated\n", nr_cpus_online);
}

/* ---------------------------------------------------------------- IPIs */
void send_ipi_cpu(u32 cpu, u8 vector)
{
    apic_send_ipi(per_cpu[cpu]->apic_id, APIC_DM_FIXED | vector);
}

static u32 logical_id(u32 cpu)
{
    return logical_model == LOGICAL_FLAT ? 1U << cpu : ((cpu / 4) << 4) | (1U << (cpu % 4));
}

int smp_call_function(void (*func)(void *), void *info, bool wait, enum ipi_mode mode)
{
    u32 self = smp_processor_id(), others = atomic_read(&nr_cpus_online) - 1;
    if (!others)
        return 0;
    if (mode == IPI_LOGICAL && logical_model == LOGICAL_NONE)
        return -1;
    static struct call_data data;
    spin_lock(&call_lock);
    data.func = func;
    data.info = info;
    atomic_set(&data.pending, others);
    call_data = &data;
    if (mode == IPI_SHORTHAND) {
        apic_send_ipi(0, APIC_ICR_ALL_EXCLUDING_SELF | CALL_FUNCTION_VECTOR);
    } else if (mode == IPI_PHYSICAL) {
        for (u32 cpu = 0; cpu < MAX_CPUS; cpu++)
            if (cpu != self && per_cpu[cpu] && per_cpu[cpu]->online)
                send_ipi_cpu(cpu, CALL_FUNCTION_VECTOR);
    } else if (logical_model == LOGICAL_FLAT) {
        u32 mask = 0;
        for (u32 cpu = 0; cpu < MAX_CPUS; cpu++)
            if (cpu != self && per_cpu[cpu] && per_cpu[cpu]->online)
                mask |= logical_id(cpu);
        apic_send_ipi(mask, APIC_ICR_LOGICAL | CALL_FUNCTION_VECTOR);
    } else {
        for (u32 cluster = 0; cluster < 15; cluster++) {
            u32 members = 0;
            for (u32 cpu = cluster * 4; cpu < cluster * 4 + 4 && cpu < MAX_CPUS; cpu++)
                if (cpu != self && per_cpu[cpu] && per_cpu[cpu]->online)
                    members |= 1U << (cpu % 4);
            if (members)
                apic_send_ipi((cluster << 4) | members, APIC_ICR_LOGICAL | CALL_FUNCTION_VECTOR);
        }
    }
    if (wait)
        while (atomic_read(&data.pending))
            cpu_relax();
    spin_unlock(&call_lock);
    return 0;
}

/* Wake a CPU sleeping in its idle loop, as Linux's reschedule IPI does. */
void smp_send_reschedule(u32 cpu)
{
    per_cpu[cpu]->need_resched = 1;
    send_ipi_cpu(cpu, RESCHEDULE_VECTOR);
}

/* After changing a mapping: INVLPG here and on every other online CPU. */
void flush_tlb_all_cpus(u64 address)
{
    invlpg(address);
    u32 others = atomic_read(&nr_cpus_online) - 1;
    if (!others)
        return;
    tlb_address = address;
    atomic_set(&tlb_pending, others);
    apic_send_ipi(0, APIC_ICR_ALL_EXCLUDING_SELF | INVALIDATE_TLB_VECTOR);
    while (atomic_read(&tlb_pending))
        cpu_relax();
}

/* Sleep until *flag reaches value (interrupts wake the CPU). */
void cpu_idle_wait(volatile u32 *flag, u32 value)
{
    while (atomic_read(flag) < value)
        safe_halt();
}

/* ---------------------------------------------------------------- page tables */
static u64 *table_for(u64 *table, u32 index)
{
    if (!(table[index] & 1)) {
        u64 *next = alloc_pages(1);
        if (!next)
            panic("out of memory for page tables");
        table[index] = (u64)next | 3;
    }
    return (u64 *)(table[index] & ~0xFFFUL);
}

void map_page_4k(u64 virt, u64 phys)
{
    u64 *pdpt = table_for(pml4, (virt >> 39) & 511);
    u64 *pd = table_for(pdpt, (virt >> 30) & 511);
    u64 *pt = table_for(pd, (virt >> 21) & 511);
    pt[(virt >> 12) & 511] = phys | 3;
}

/* ---------------------------------------------------------------- self test */
static volatile u32 call_hits[MAX_CPUS];
static volatile u64 seen_values[MAX_CPUS];

static void mark_called(void *info)
{
    (void)info;
    call_hits[smp_processor_id()]++;
}

static void read_window(void *info)
{
    (void)info;
    seen_values[smp_processor_id()] = *(volatile u64 *)TLB_WINDOW;
}

static u32 count_hits(u32 expected)
{
    u32 reached = 0;
    for (u32 cpu = 1; cpu < MAX_CPUS; cpu++)
        if (per_cpu[cpu] && per_cpu[cpu]->online && call_hits[cpu] == expected)
            reached++;
    return reached;
}

/* fault=N: CPU N touches an unmapped address from its idle loop, so the
 * exception path (report, halt that CPU, carry on without it) is exercised. */
static void fault_test(void)
{
    u32 victim = boot_options.fault_cpu;
    if (!victim || victim >= MAX_CPUS || !per_cpu[victim] || !per_cpu[victim]->online) {
        if (victim)
            pr_err("fault=%u: no such online CPU\n", victim);
        return;
    }
    per_cpu[victim]->fault_requested = 1;
    smp_send_reschedule(victim);
    for (u32 ms = 0; ms < 1000 && per_cpu[victim]->online; ms++)
        mdelay(1);
    printk("smp: CPU %u is %s after its fault; %u CPUs online\n", victim,
           per_cpu[victim]->online ? "still online" : "halted", nr_cpus_online);
}

void smp_selftest(void)
{
    u32 others = nr_cpus_online - 1;
    static const char *const names[] = { "shorthand", "physical", "logical" };
    for (u32 mode = IPI_SHORTHAND; mode <= IPI_LOGICAL; mode++) {
        if (smp_call_function(mark_called, NULL, true, (enum ipi_mode)mode) < 0) {
            printk("smp: call function (logical): not possible with %u CPUs; skipped\n", nr_cpus_online);
            continue;
        }
        u32 reached = count_hits(mode + 1);
        printk("smp: call function (%s) ran on %u of %u other CPUs\n", names[mode], reached, others);
        if (reached != others)
            pr_err("smp: call function (%s) missed %u CPUs\n", names[mode], others - reached);
    }
    u32 woken = 0;
    for (u32 cpu = 1; cpu < MAX_CPUS; cpu++) {
        if (!per_cpu[cpu] || !per_cpu[cpu]->online)
            continue;
        u32 before = per_cpu[cpu]->woken;
        smp_send_reschedule(cpu);
        for (u32 spin = 0; spin < 10000000 && per_cpu[cpu]->woken == before; spin++)
            cpu_relax();
        woken += per_cpu[cpu]->woken != before;
    }
    printk("smp: reschedule IPI woke %u of %u halted CPUs\n", woken, others);
    u64 *old_page = alloc_pages(1), *new_page = alloc_pages(1);
    *old_page = 0x1111111111111111UL;
    *new_page = 0x2222222222222222UL;
    map_page_4k(TLB_WINDOW, (u64)old_page);
    flush_tlb_all_cpus(TLB_WINDOW);
    smp_call_function(read_window, NULL, true, IPI_SHORTHAND);
    map_page_4k(TLB_WINDOW, (u64)new_page);
    flush_tlb_all_cpus(TLB_WINDOW);
    smp_call_function(read_window, NULL, true, IPI_SHORTHAND);
    read_window(NULL);
    u32 fresh = 0;
    for (u32 cpu = 0; cpu < MAX_CPUS; cpu++)
        if (per_cpu[cpu] && per_cpu[cpu]->online && seen_values[cpu] == *new_page)
            fresh++;
    printk("smp: TLB shootdown: %u of %u CPUs see the new mapping\n", fresh, nr_cpus_online);
    if (fresh != nr_cpus_online)
        pr_err("smp: TLB shootdown failed on %u CPUs\n", nr_cpus_online - fresh);
    fault_test();
}

void smp_prepare_boot_cpu(void)
{
    memset(apic_to_cpu, NO_CPU, sizeof apic_to_cpu);
    u8 apic = read_apic_id();
    u8 node = 0;
    for (u32 i = 0; i < topology.nr_cpus; i++)
        if (topology.cpus[i].apic_id == apic)
            node = topology.cpus[i].node;
    struct percpu *cpu = alloc_percpu(0, apic, node);
    cpu->online = 1;
    nr_cpus_online = 1;
    set_irq_handler(LOCAL_TIMER_VECTOR, timer_interrupt);
    set_irq_handler(ERROR_APIC_VECTOR, error_interrupt);
}
