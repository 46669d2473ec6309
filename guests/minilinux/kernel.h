/*
 * minilinux: a small SMP kernel that boots like Linux on the modeled
 * Opteron (and on QEMU's pc machine): PVH entry, e820 memory map, ACPI or
 * MP-table topology, local APIC timer and IPIs, INIT-SIPI-SIPI bring-up.
 */
#ifndef MINILINUX_KERNEL_H
#define MINILINUX_KERNEL_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef signed long s64;
typedef unsigned long size_t;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

#define PAGE_SIZE 4096UL
#define MAX_CPUS 255 /* every xAPIC ID but the broadcast one, 0xFF (Intel SDM Vol. 3A 10.6.2.1) */
#define MAX_NODES 8
#define HZ 1000
#define KERNEL_VERSION "6.1.0-minilinux"

/* Exit codes written to the isa-debug-exit port 0xf4. */
#define EXIT_SUCCESS 0
#define EXIT_FAILURE 42
#define EXIT_PORT 0xF4

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((u64)(a) - 1))

/* --- port and CPU instructions --- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void local_irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void local_irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void safe_halt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void halt(void) { __asm__ volatile("hlt" ::: "memory"); }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }
static inline u64 read_cr2(void) { u64 v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline u64 read_cr3(void) { u64 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void invlpg(u64 address) { __asm__ volatile("invlpg (%0)" : : "r"(address) : "memory"); }
static inline u64 read_flags(void) { u64 f; __asm__ volatile("pushfq; popq %0" : "=r"(f)); return f; }
static inline void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}
static inline u64 rdmsr(u32 msr) { u32 lo, hi; __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr)); return ((u64)hi << 32) | lo; }

/* --- atomics and spinlocks (lock-prefixed instructions) --- */
typedef struct { volatile u32 locked; } spinlock_t;
#define SPINLOCK_INIT { 0 }
static inline void spin_lock(spinlock_t *l) { while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE)) while (l->locked) cpu_relax(); }
static inline void spin_unlock(spinlock_t *l) { __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE); }
static inline u32 atomic_inc_return(volatile u32 *v) { return __atomic_add_fetch(v, 1, __ATOMIC_SEQ_CST); }
static inline u32 atomic_dec_return(volatile u32 *v) { return __atomic_sub_fetch(v, 1, __ATOMIC_SEQ_CST); }
static inline u32 atomic_fetch_add(volatile u32 *v, u32 n) { return __atomic_fetch_add(v, n, __ATOMIC_SEQ_CST); }
static inline u32 atomic_read(volatile u32 *v) { return __atomic_load_n(v, __ATOMIC_ACQUIRE); }
static inline void atomic_set(volatile u32 *v, u32 n) { __atomic_store_n(v, n, __ATOMIC_RELEASE); }

/* --- lib.c --- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
u64 parse_u64(const char *s, const char **end);

/* --- printk.c --- */
enum { LOGLEVEL_ERR = 3, LOGLEVEL_INFO = 6 };
extern int console_loglevel;
void console_init(void);
int vsnprintf(char *buf, size_t size, const char *fmt, __builtin_va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_always(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void machine_exit(u8 status);
__attribute__((noreturn)) void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- cmdline.c --- */
struct boot_options {
    bool acpi_off, nosmp, quiet;
    u32 maxcpus;          /* 0: no limit */
    char workload[32];    /* "all", "primes", "pingpong" */
    u64 primes_limit;
    u32 pingpong_rounds;
    u64 tsc_khz;
    u32 fault_cpu;        /* fault=N: make CPU N take a page fault (tests) */
    bool attack;          /* attack=all: try every way out of the partition (under OSV) */
    u32 collect_ms;       /* collect_ms=N: how long kernel 0 waits for the others' results (under OSV) */
    u32 bad_options;      /* malformed values, each reported: the boot fails */
};
extern struct boot_options boot_options;
extern char boot_command_line[512];
void parse_cmdline(const char *cmdline);

/* --- memory.c --- */
#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3
#define E820_NVS 4
#define E820_UNUSABLE 5
struct e820_entry { u64 addr, size; u32 type, reserved; };
void e820_setup(const struct e820_entry *map, u32 count);
void *alloc_pages(u32 count);
void free_pages(void *p, u32 count);
u64 memory_total_kib(void), memory_free_kib(void);
bool e820_is_ram(u64 start, u64 end);
extern u64 max_mapped_address;

/* --- topology (acpi.c, mptable.c) --- */
struct cpu_info { u8 apic_id; u8 acpi_id; u8 node; bool present; };
struct node_memory { u64 base, size; u32 node; };
struct topology {
    struct cpu_info cpus[MAX_CPUS];
    u32 nr_cpus;
    u8 bsp_apic_id;
    u32 nr_nodes;
    struct node_memory memory[16];
    u32 nr_memory;
    u64 lapic_address;
    u8 ioapic_id; u64 ioapic_address;
    bool from_acpi, srat_found;
};
extern struct topology topology;
bool acpi_boot_init(u64 rsdp_hint);
bool mptable_init(void);
bool checksum_ok(const void *p, u32 len);

/* --- apic.c --- */
#define LOCAL_TIMER_VECTOR 0xEC
#define RESCHEDULE_VECTOR 0xFD
#define CALL_FUNCTION_VECTOR 0xFC
#define INVALIDATE_TLB_VECTOR 0xFB
#define BARRIER_VECTOR 0xFA
#define PINGPONG_VECTOR 0xF9
#define ERROR_APIC_VECTOR 0xFE
#define SPURIOUS_APIC_VECTOR 0xFF
/* Register offsets and ICR fields: apic.h. */
u32 apic_read(u32 reg);
void apic_write(u32 reg, u32 value);
u8 read_apic_id(void);
void setup_local_apic(void);
void apic_eoi(void);
bool apic_send_ipi(u32 dest, u32 command);
void calibrate_apic_timer(void);
void setup_apic_timer(void);
extern u64 apic_timer_khz;
extern u64 tsc_khz;
void udelay(u64 us);
void mdelay(u64 ms);

/* --- traps.c --- */
struct pt_regs {
    u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error_code, rip, cs, rflags, rsp, ss;
};
void trap_init(void);
void load_idt(void);
typedef void (*irq_handler_t)(struct pt_regs *regs);
void set_irq_handler(u8 vector, irq_handler_t handler);

/* --- smp.c --- */
struct percpu {
    u32 cpu;              /* logical CPU number */
    u8 apic_id, node;
    volatile u32 online;
    volatile u64 jiffies;
    void *stack;
    volatile u32 need_resched, woken;
    volatile u64 work_items, work_units;
    volatile u32 pingpong_received;
    u64 tlb_flushes;
    volatile u32 fault_requested;
};
extern struct percpu *per_cpu[MAX_CPUS];
extern u32 nr_cpus_online, nr_cpus_possible;
struct percpu *this_cpu(void);
u32 smp_processor_id(void);
void smp_prepare_boot_cpu(void);
void smp_init(void);
enum ipi_mode { IPI_SHORTHAND, IPI_PHYSICAL, IPI_LOGICAL };
int smp_call_function(void (*func)(void *), void *info, bool wait, enum ipi_mode mode);
void smp_send_reschedule(u32 cpu);
void flush_tlb_all_cpus(u64 address);
void smp_selftest(void);
void send_ipi_cpu(u32 cpu, u8 vector);
void cpu_idle_wait(volatile u32 *flag, u32 value);
extern u64 jiffies;
/* What an AP's idle loop runs after a reschedule IPI; register it before
 * the APs are started (smp_init). */
typedef void (*idle_hook_fn)(struct percpu *cpu);
void set_idle_hook(idle_hook_fn hook);

/* --- workloads.c --- */
struct workload_result { const char *name; u64 result; u32 checksum; bool ok; };
void workloads_init(void);
void run_workloads(struct workload_result *results, u32 *count);

/* --- osv.c --- */
bool osv_present(void);
void osv_init(void);
void osv_attack_if_asked(void);
__attribute__((noreturn)) void osv_finish(const struct workload_result *results, u32 count, bool ok);

/* --- paging --- */
extern u64 pml4[512];
void map_page_4k(u64 virt, u64 phys);

#endif
