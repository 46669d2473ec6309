/*
 * Workloads with known answers.
 *
 * primes: count the primes below a bound by trial division, in chunks that
 *   every online CPU takes from a shared counter; CPUs are woken with a
 *   reschedule IPI and the last one to finish wakes the boot CPU with an
 *   IPI (the barrier).  Checked against a sieve on the boot CPU.
 * pingpong: a token travels round the ring of online CPUs by fixed IPIs
 *   for N rounds; each hop folds the receiving CPU into a checksum that
 *   the boot CPU recomputes.
 */
#include "kernel.h"

#define CHUNK 1000

static volatile u32 next_chunk, workers_done;
static volatile u64 prime_count, prime_sum;
static spinlock_t result_lock = SPINLOCK_INIT;
static u64 primes_limit;

static bool is_prime(u64 n)
{
    if (n < 2)
        return false;
    if (n % 2 == 0)
        return n == 2;
    for (u64 d = 3; d * d <= n; d += 2)
        if (n % d == 0)
            return false;
    return true;
}

static void barrier_interrupt(struct pt_regs *regs)
{
    (void)regs;
    apic_eoi();
}

static void primes_worker(void)
{
    struct percpu *cpu = this_cpu();
    u64 count = 0, sum = 0;
    for (;;) {
        u64 start = (u64)atomic_fetch_add(&next_chunk, 1) * CHUNK;
        if (start >= primes_limit)
            break;
        u64 end = start + CHUNK < primes_limit ? start + CHUNK : primes_limit;
        for (u64 n = start; n < end; n++)
            if (is_prime(n)) {
                count++;
                sum += n;
            }
        cpu->work_items++;
        cpu->work_units += end - start;
    }
    spin_lock(&result_lock);
    prime_count += count;
    prime_sum += sum;
    spin_unlock(&result_lock);
    if (atomic_inc_return(&workers_done) == nr_cpus_online && cpu->cpu != 0)
        send_ipi_cpu(0, BARRIER_VECTOR);
}

/* The work an AP's idle loop runs after a reschedule IPI (the idle hook). */
static void (*volatile ap_work)(void);

static void workloads_idle(struct percpu *cpu)
{
    (void)cpu;
    if (ap_work)
        ap_work();
}

/* Before smp_init: an AP may run the idle hook as soon as it is up. */
void workloads_init(void)
{
    set_idle_hook(workloads_idle);
}

static bool sieve_check(u64 limit, u64 *count_out, u64 *sum_out)
{
    u32 pages = (u32)((limit / 8 + PAGE_SIZE) / PAGE_SIZE);
    u8 *composite = alloc_pages(pages);
    if (!composite)
        return false;
    u64 count = 0, sum = 0;
    for (u64 n = 2; n < limit; n++) {
        if (composite[n / 8] & (1 << (n % 8)))
            continue;
        count++;
        sum += n;
        for (u64 m = n * n; m < limit; m += n)
            composite[m / 8] |= (u8)(1 << (m % 8));
    }
    free_pages(composite, pages);
    *count_out = count;
    *sum_out = sum;
    return true;
}

static struct workload_result run_primes(void)
{
    primes_limit = boot_options.primes_limit;
    atomic_set(&next_chunk, 0);
    atomic_set(&workers_done, 0);
    prime_count = prime_sum = 0;
    u64 start = jiffies;
    ap_work = primes_worker;
    for (u32 cpu = 1; cpu < MAX_CPUS; cpu++)
        if (per_cpu[cpu] && per_cpu[cpu]->online)
            smp_send_reschedule(cpu);
    primes_worker();
    cpu_idle_wait(&workers_done, nr_cpus_online);
    ap_work = NULL;
    u64 expected_count = 0, expected_sum = 0;
    bool checked = sieve_check(primes_limit, &expected_count, &expected_sum);
    struct workload_result result = { "primes", prime_count, (u32)prime_sum ^ (u32)(prime_sum >> 32), false };
    result.ok = checked && prime_count == expected_count && prime_sum == expected_sum;
    printk("primes: %lu primes below %lu, checksum 0x%08x, %lu ms\n", prime_count, primes_limit, result.checksum,
           (jiffies - start) * 1000 / HZ);
    for (u32 cpu = 0; cpu < MAX_CPUS; cpu++)
        if (per_cpu[cpu] && per_cpu[cpu]->online)
            printk("primes: CPU %u tested %lu numbers in %lu chunks\n", cpu, per_cpu[cpu]->work_units,
                   per_cpu[cpu]->work_items);
    if (!result.ok)
        pr_err("primes: ERROR: the sieve finds %lu primes (sum %lu), the CPUs found %lu (sum %lu)\n",
               expected_count, expected_sum, prime_count, prime_sum);
    return result;
}

/* ---------------------------------------------------------------- pingpong */
static u32 ring[MAX_CPUS], ring_size;
static volatile u32 hops, hops_total, token_checksum, pingpong_done;

static u32 fold(u32 checksum, u32 cpu) { return checksum * 31 + cpu + 1; }

static void pingpong_interrupt(struct pt_regs *regs)
{
    (void)regs;
    struct percpu *cpu = this_cpu();
    apic_eoi();
    cpu->pingpong_received++;
    token_checksum = fold(token_checksum, cpu->cpu);
    u32 hop = atomic_inc_return(&hops);
    if (hop < hops_total) {
        u32 position = (hop + 1) % ring_size;
        send_ipi_cpu(ring[position], PINGPONG_VECTOR);
    } else {
        atomic_set(&pingpong_done, 1);
        if (cpu->cpu != 0)
            send_ipi_cpu(0, BARRIER_VECTOR);
    }
}

static struct workload_result run_pingpong(void)
{
    ring_size = 0;
    for (u32 cpu = 0; cpu < MAX_CPUS; cpu++)
        if (per_cpu[cpu] && per_cpu[cpu]->online)
            ring[ring_size++] = cpu;
    hops_total = boot_options.pingpong_rounds * ring_size;
    atomic_set(&hops, 0);
    atomic_set(&pingpong_done, 0);
    token_checksum = 0;
    u64 start = jiffies;
    /* The first hop goes to the ring's second CPU (or back to the only one). */
    send_ipi_cpu(ring[ring_size > 1 ? 1 : 0], PINGPONG_VECTOR);
    cpu_idle_wait(&pingpong_done, 1);
    u32 expected = 0;
    for (u32 hop = 0; hop < hops_total; hop++)
        expected = fold(expected, ring[(hop + 1) % ring_size]);
    struct workload_result result = { "pingpong", hops, token_checksum, hops == hops_total && token_checksum == expected };
    printk("pingpong: %u rounds over %u CPUs: %u IPIs, checksum 0x%08x, %lu ms\n", boot_options.pingpong_rounds,
           ring_size, hops, token_checksum, (jiffies - start) * 1000 / HZ);
    if (!result.ok)
        pr_err("pingpong: ERROR: %u hops with checksum 0x%08x, expected %u with 0x%08x\n", hops, token_checksum,
               hops_total, expected);
    return result;
}

void run_workloads(struct workload_result *results, u32 *count)
{
    set_irq_handler(BARRIER_VECTOR, barrier_interrupt);
    set_irq_handler(PINGPONG_VECTOR, pingpong_interrupt);
    const char *w = boot_options.workload;
    bool all = !strncmp(w, "all", 4);
    *count = 0;
    if (all || !strncmp(w, "primes", 7))
        results[(*count)++] = run_primes();
    if (all || !strncmp(w, "pingpong", 9))
        results[(*count)++] = run_pingpong();
    if (!*count)
        pr_err("workload=%s: unknown workload (use all, primes or pingpong)\n", w);
}
