/*
 * attacker: a PVH test guest that runs as one kernel of an OSV partitioned
 * machine and tries one way out of its partition, chosen on its command
 * line (attack=NAME, see attacks.c).  Everything it tries and observes is
 * printed on COM1 as "attacker: ..." lines.
 */
#ifndef ATTACKER_H
#define ATTACKER_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;

#define KiB 1024UL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define PAGE_SIZE 4096UL
#define LARGE_PAGE_SIZE (2 * MiB)

/* Selectors of the GDT in boot.S. */
#define KERNEL_CS 0x18
#define KERNEL_DS 0x10
#define USER_DS (0x20 | 3) /* boot.S: enter_user */
#define USER_CS (0x28 | 3)
#define TSS_SELECTOR 0x30

/* Page-table entry bits (AMD APM Vol. 2 5.3). */
#define PTE_PRESENT 0x1UL
#define PTE_WRITABLE 0x2UL
#define PTE_USER 0x4UL
#define PTE_LARGE 0x80UL
#define PTE_ADDRESS 0x000FFFFFFFFFF000UL

/* Exception vectors (AMD APM Vol. 2 8.2). */
#define VECTOR_NMI 2
#define VECTOR_BP 3
#define VECTOR_UD 6
#define VECTOR_PF 14
#define FIRST_INTERRUPT 32
#define SYSCALL_VECTOR 0x80 /* CPL 3 code returns to the kernel with int $0x80 */
#define OFF_STACK 256       /* resume_script: the frame went outside the kernel's stacks */

/* Local APIC (AMD APM Vol. 2 16.3; Intel SDM Vol. 3A 10.6.1). */
#define LAPIC_BASE 0xFEE00000UL
#define APIC_ID 0x20
#define APIC_EOI 0xB0
#define APIC_SVR 0xF0
#define APIC_ESR 0x280
#define APIC_ICR_LOW 0x300
#define APIC_ICR_HIGH 0x310
#define APIC_SVR_ENABLE 0x100
#define SPURIOUS_VECTOR 0xFF
#define ICR_FIXED (0 << 8)
#define ICR_SMI (2 << 8)
#define ICR_NMI (4 << 8)
#define ICR_INIT (5 << 8)
#define ICR_STARTUP (6 << 8)
#define ICR_LOGICAL (1 << 11)
#define ICR_PENDING (1 << 12)
#define ICR_ASSERT (1 << 14)
#define ICR_LEVEL (1 << 15)
#define ICR_ALL_INCLUDING_SELF (2 << 18)
#define ICR_ALL_EXCLUDING_SELF (3 << 18)

/* Ports: COM1 and QEMU's isa-debug-exit. */
#define COM1 0x3F8
#define EXIT_PORT 0xF4

/* Low-memory pages the trampolines are copied to (STARTUP vectors 0x08, 0x09). */
#define TRAMPOLINE_BASE 0x8000UL
#define REAL_MODE_BASE 0x9000UL

/* OSV hypercalls (docs/hypercalls.md). */
#define HC_DESCRIBE_SELF 1
#define HC_NOTIFY 3
#define HC_SHUTDOWN 4
#define HC_BOGUS 0x7FFF
#define EPERM 1
#define EAGAIN 11
#define ENOENT 2
#define EINVAL 22

struct __attribute__((packed)) osv_self {
    u32 id, count, cores, channels;
    u64 ram_bytes, ram_base;
    u8 apic_ids[64];
};

/* Saved by the stubs in boot.S, lowest address first (AMD APM Vol. 2 8.9.3). */
struct frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error, rip, cs, rflags, rsp, ss;
};

typedef u64 jump_buffer[8];

/* The operand of LGDT and LIDT in long mode. */
struct __attribute__((packed)) table_pointer { u16 limit; u64 base; };

/* What the command line asks for (attacks.c). */
struct options {
    char attack[32];
    u64 count, target, status, foreign;
    int has_count, has_target, has_status, has_foreign;
};

/* The kernel as it found itself (main.c). */
struct self {
    struct osv_self osv;
    int osv_present;
    u64 ram_base, ram_end;
    u64 foreign; /* a guest-physical page outside RAM, channels and the APIC hole */
    u8 apic_id;  /* of the boot CPU */
};

extern struct self self;
extern struct options options;

/* lib.c */
static inline void outb(u16 port, u8 value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 lapic_read(u32 reg) { return *(volatile u32 *)(LAPIC_BASE + reg); }
static inline void lapic_write(u32 reg, u32 v) { *(volatile u32 *)(LAPIC_BASE + reg) = v; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline u64 read_cr2(void) { u64 v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline u64 read_cr3(void) { u64 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
void uart_init(void);
void put_bytes(const char *s, u64 n);
void say(const char *format, ...) __attribute__((format(printf, 1, 2)));
void *copy(void *dst, const void *src, u64 n);
void fill(void *dst, u8 value, u64 n);
int same(const char *a, const char *b, u64 n);
u64 length(const char *s);
void parse_cmdline(const char *line, struct options *out);
s64 hypercall(u64 number, u64 a0, u64 a1, u64 a2);
void delay(u32 loops);
__attribute__((noreturn)) void idle(void);
__attribute__((noreturn)) void halt_forever(void);

/* cpu.c */
void cpu_init(void);
void cpu_init_ap(void);
void load_idt(void);
void set_rsp0(u64 rsp0);
void map_user_pages(void);
u64 *pd_entry(u64 linear);
void flush_tlb(void);
extern jump_buffer recover;
extern volatile int recover_armed;
extern volatile u32 ud_skips;

/* smp.c */
enum ap_task { AP_IDLE, AP_SPIN, AP_HALT };
void copy_trampolines(void);
void send_ipi(u8 apic_id, u32 command);
int start_aps(enum ap_task task);
extern volatile u32 aps_online;
extern volatile int bsp_back_from_real_mode;

/* attacks.c */
void run_attack(void);
__attribute__((noreturn)) void real_hypercall_report(void);

/* boot.S and user.S */
int attack_setjmp(jump_buffer buffer) __attribute__((returns_twice));
__attribute__((noreturn)) void attack_longjmp(jump_buffer buffer, int value);
__attribute__((noreturn)) void enter_user(u64 rip, u64 rsp);
__attribute__((noreturn)) void drop_to_real_mode(void);
extern char trampoline_start[], trampoline_end[];
extern char real_mode_start[], real_mode_end[], real_mode_ud[], real_mode_flag[], real_mode_result[],
    real_mode_return[];
extern char interrupt_stubs[];
extern char user_start[], user_end[], user_stack_top[];
extern char user_describe_self[], user_shutdown[], user_int3[];
extern volatile u64 user_argument, user_result;
extern u64 pml4[], pdpt[], pd[];
extern struct table_pointer gdt64_pointer;
extern u64 trap_stack_top[];

#endif
