/*
 * Running under OSV (docs/hypercalls.md): detect the monitor by its CPUID
 * leaf, describe this kernel and the shared channel with hypercalls, publish
 * this kernel's results in the channel and notify kernel 0, which prints the
 * combined result of every kernel (the paper's distributed protocol).
 * With attack=all the kernel first tries every way out of its partition.
 */
#include "kernel.h"
#include "apic.h"

#define HC_DESCRIBE_SELF 1
#define HC_DESCRIBE_CHANNEL 2
#define HC_NOTIFY 3
#define HC_SHUTDOWN 4
#define OSV_NOTIFY_VECTOR 0xF8
#define SLOT_MAGIC 0x4F535631 /* "OSV1" */

struct __attribute__((packed)) osv_self {
    u32 id, count, cores, channels;
    u64 ram_bytes, ram_base;
    u8 apic_ids[64];
};
struct __attribute__((packed)) osv_channel { u64 gpa, size, members; };

struct slot {
    volatile u32 magic, cpus, ok, primes_checksum, pingpong_checksum, reserved;
    volatile u64 primes, pingpong;
};

static struct osv_self self;
static struct osv_channel channel;

static s64 hypercall(u64 number, u64 a0, u64 a1, u64 a2)
{
    s64 result;
    __asm__ volatile("vmmcall" : "=a"(result) : "a"(number), "D"(a0), "S"(a1), "d"(a2) : "memory");
    return result;
}

bool osv_present(void)
{
    u32 a, b, c, d;
    cpuid(1, &a, &b, &c, &d);
    if (!(c & (1U << 31)))
        return false;
    cpuid(0x40000000, &a, &b, &c, &d);
    return b == 0x4F56534F && c == 0x534F5653 && d == 0x56534F56; /* "OSVOSVOSVOSV" in EBX, ECX, EDX */
}

static void notify_interrupt(struct pt_regs *regs)
{
    (void)regs;
    apic_eoi();
}

void osv_init(void)
{
    if (hypercall(HC_DESCRIBE_SELF, (u64)&self, sizeof self, 0) < 0)
        panic("OSV: DESCRIBE_SELF failed");
    printk("OSV: kernel %u of %u, %u cores, %lu MB at 0x%lx\n", self.id, self.count, self.cores,
           self.ram_bytes >> 20, self.ram_base);
    if (self.channels && hypercall(HC_DESCRIBE_CHANNEL, 0, (u64)&channel, sizeof channel) >= 0)
        printk("OSV: channel 0 at 0x%lx, %lu KB, kernels 0x%lx\n", channel.gpa, channel.size >> 10, channel.members);
    set_irq_handler(OSV_NOTIFY_VECTOR, notify_interrupt);
}

/* ---------------------------------------------------------------- attacks */
static u8 foreign_apic(void)
{
    for (u32 id = 0; id < 64; id++) {
        bool own = false;
        for (u32 i = 0; i < self.cores; i++)
            own = own || self.apic_ids[i] == id;
        if (!own)
            return (u8)id;
    }
    return 0xFE;
}

static void attack_ipi(const char *what, u32 dest, u32 command)
{
    bool sent = apic_send_ipi(dest, command);
    pr_always("attack: %s (ICR 0x%05x dest 0x%02x): %s\n", what, command, dest, sent ? "sent" : "not sent");
}

static void attack_memory(const char *what, u64 address)
{
    volatile u64 *p = (volatile u64 *)address;
    u64 before = *p;
    *p = 0x5A5A5A5A5A5A5A5AUL;
    u64 after = *p;
    pr_always("attack: %s at 0x%lx: read 0x%lx, read back 0x%lx after a write\n", what, address, before, after);
}

static void attack_hypercall(const char *what, u64 number, u64 a0, u64 a1, u64 a2)
{
    pr_always("attack: hypercall %s: result %ld\n", what, hypercall(number, a0, a1, a2));
}

static void run_attacks(void)
{
    u8 target = foreign_apic();
    pr_always("attack: kernel %u attacks from its %u cores; a foreign APIC is %u\n", self.id, self.cores, target);
    attack_ipi("fixed IPI to a foreign core", target, APIC_DM_FIXED | RESCHEDULE_VECTOR);
    attack_ipi("lowest-priority IPI to a foreign core", target, APIC_DM_LOWEST | RESCHEDULE_VECTOR);
    attack_ipi("NMI to a foreign core", target, APIC_DM_NMI);
    attack_ipi("INIT to a foreign core", target, APIC_DM_INIT | APIC_ICR_LEVEL | APIC_ICR_ASSERT);
    attack_ipi("STARTUP to a foreign core", target, APIC_DM_STARTUP | 0x08); /* start page 0x8000 */
    attack_ipi("logical flat IPI to every logical ID", 0xFE, APIC_ICR_LOGICAL | APIC_DM_FIXED | RESCHEDULE_VECTOR);
    attack_ipi("logical flat NMI to every logical ID", 0xFE, APIC_ICR_LOGICAL | APIC_DM_NMI);
    attack_ipi("logical cluster IPI to clusters 0-14", 0x1F, APIC_ICR_LOGICAL | APIC_DM_FIXED | RESCHEDULE_VECTOR);
    attack_ipi("physical broadcast", 0xFF, APIC_DM_FIXED | RESCHEDULE_VECTOR);
    attack_ipi("all-including-self shorthand", 0, APIC_ICR_ALL_INCLUDING_SELF | RESCHEDULE_VECTOR);
    attack_ipi("all-excluding-self shorthand", 0, APIC_ICR_ALL_EXCLUDING_SELF | RESCHEDULE_VECTOR);
    attack_ipi("SMI", target, APIC_DM_SMI);
    attack_ipi("ExtINT", target, APIC_DM_EXTINT);
    attack_memory("memory past the kernel's RAM", self.ram_base + self.ram_bytes + 0x10000);
    attack_memory("memory at 1 GiB", 0x40000000UL);
    attack_memory("memory above 4 GiB", 0x100000000UL);
    attack_memory("the IOAPIC page", 0xFEC00000UL);
    attack_hypercall("DESCRIBE_SELF into foreign memory", HC_DESCRIBE_SELF, 0x40000000UL, 128, 0);
    attack_hypercall("DESCRIBE_SELF with an absurd length", HC_DESCRIBE_SELF, (u64)&self, 1UL << 40, 0);
    attack_hypercall("DESCRIBE_CHANNEL of a channel that does not exist", HC_DESCRIBE_CHANNEL, 99, (u64)&channel, 24);
    attack_hypercall("NOTIFY a kernel that does not exist", HC_NOTIFY, 999, OSV_NOTIFY_VECTOR, 0);
    attack_hypercall("NOTIFY with an exception vector", HC_NOTIFY, self.id ? 0 : 1, 2, 0);
    attack_hypercall("an unknown hypercall", 77, 0, 0, 0);
}

void osv_attack_if_asked(void)
{
    if (boot_options.attack)
        run_attacks();
}

/* ---------------------------------------------------------------- results */
__attribute__((noreturn)) void osv_finish(const struct workload_result *results, u32 count, bool ok)
{
    struct slot *slots = (struct slot *)channel.gpa;
    if (!channel.gpa || self.count < 2) {
        hypercall(HC_SHUTDOWN, ok ? EXIT_SUCCESS : EXIT_FAILURE, 0, 0);
        machine_exit(ok ? EXIT_SUCCESS : EXIT_FAILURE);
    }
    struct slot *mine = &slots[self.id];
    mine->cpus = nr_cpus_online;
    mine->ok = ok;
    for (u32 i = 0; i < count; i++) {
        if (!strncmp(results[i].name, "primes", 7)) {
            mine->primes = results[i].result;
            mine->primes_checksum = results[i].checksum;
        } else {
            mine->pingpong = results[i].result;
            mine->pingpong_checksum = results[i].checksum;
        }
    }
    __atomic_store_n(&mine->magic, SLOT_MAGIC, __ATOMIC_RELEASE);
    if (self.id != 0) {
        while (hypercall(HC_NOTIFY, 0, OSV_NOTIFY_VECTOR, 0) == -11) /* -EAGAIN: rate limited */
            mdelay(1);
        hypercall(HC_SHUTDOWN, ok ? EXIT_SUCCESS : EXIT_FAILURE, 0, 0);
        machine_exit(ok ? EXIT_SUCCESS : EXIT_FAILURE);
    }
    u32 ready = 0;
    for (u32 waited = 0; waited < boot_options.collect_ms; waited++) {
        ready = 0;
        for (u32 k = 0; k < self.count; k++)
            ready += __atomic_load_n(&slots[k].magic, __ATOMIC_ACQUIRE) == SLOT_MAGIC;
        if (ready == self.count)
            break;
        mdelay(1);
    }
    u64 cpus = 0, primes = 0, pingpong = 0;
    bool all_ok = ready == self.count;
    for (u32 k = 0; k < self.count; k++) {
        struct slot *s = &slots[k];
        if (s->magic != SLOT_MAGIC) {
            pr_always("OSV: kernel %u sent no result\n", k);
            continue;
        }
        pr_always("OSV: kernel %u: %u CPUs, primes=%lu checksum=0x%08x, pingpong=%lu checksum=0x%08x, %s\n", k,
                  s->cpus, s->primes, s->primes_checksum, s->pingpong, s->pingpong_checksum, s->ok ? "OK" : "FAILED");
        cpus += s->cpus;
        primes += s->primes;
        pingpong += s->pingpong;
        all_ok = all_ok && s->ok;
    }
    pr_always("OSV: combined result of %u kernels: %lu CPUs, primes=%lu, pingpong=%lu: %s\n", ready, cpus, primes,
              pingpong, all_ok ? "OK" : "FAILED");
    hypercall(HC_SHUTDOWN, all_ok ? EXIT_SUCCESS : EXIT_FAILURE, 0, 0);
    machine_exit(all_ok ? EXIT_SUCCESS : EXIT_FAILURE);
}
