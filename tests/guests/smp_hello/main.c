/*
 * smp_hello: a PVH test guest that finds every processor in the ACPI MADT,
 * starts each application processor with INIT-SIPI-SIPI (MP spec 1.4 B.4),
 * has every core print one line on COM1 and ends the run through the
 * isa-debug-exit port.  It talks only to the UART, the local APICs, the
 * firmware tables and the exit port, so it runs unchanged on QEMU.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define COM1 0x3F8
#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20
#define UART_LCR_DLAB 0x80
#define EXIT_PORT 0xF4

#define LAPIC_BASE 0xFEE00000UL
#define APIC_ID 0x20
#define APIC_SVR 0xF0
#define APIC_ICR_LOW 0x300
#define APIC_ICR_HIGH 0x310
#define APIC_SVR_ENABLE 0x100
#define ICR_DELIVERY_PENDING (1 << 12)
#define ICR_INIT_ASSERT 0x0000C500
#define ICR_INIT_DEASSERT 0x00008500
#define ICR_STARTUP 0x00000600
#define TRAMPOLINE_BASE 0x8000
#define MAX_CPUS 255 /* every xAPIC ID but the broadcast one */

#define XEN_HVM_START_MAGIC 0x336EC578

struct hvm_start_info {
    u32 magic, version, flags, nr_modules;
    u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    u32 memmap_entries, reserved;
};

struct __attribute__((packed)) rsdp {
    char signature[8];
    u8 checksum;
    char oem_id[6];
    u8 revision;
    u32 rsdt;
    u32 length;
    u64 xsdt;
    u8 extended_checksum;
    u8 reserved[3];
};

struct __attribute__((packed)) sdt_header {
    char signature[4];
    u32 length;
    u8 revision, checksum;
    char oem_id[6], oem_table_id[8];
    u32 oem_revision, creator_id, creator_revision;
};

extern char trampoline_start[], trampoline_end[];

static volatile u32 online_count;
/* The exit status of a successful run; a debugger may change it. */
volatile u8 success_status = 0;
static volatile u32 print_lock;
static u8 apic_ids[MAX_CPUS];
static int cpu_count;

static inline void outb(u16 port, u8 value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 lapic_read(u32 reg) { return *(volatile u32 *)(LAPIC_BASE + reg); }
static inline void lapic_write(u32 reg, u32 v) { *(volatile u32 *)(LAPIC_BASE + reg) = v; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

static void uart_init(void)
{
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, UART_LCR_DLAB);
    outb(COM1 + 0, 1); /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0);
    outb(COM1 + UART_LCR, 0x03); /* 8N1 */
    outb(COM1 + UART_FCR, 0xC7);
    outb(COM1 + UART_MCR, 0x0B);
}

static void putc(char c)
{
    while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
        cpu_relax();
    outb(COM1 + UART_THR, (u8)c);
}

static void puts(const char *s) { while (*s) putc(*s++); }

static void putu(u64 v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    puts(buf + i);
}

static void lock(volatile u32 *l) { while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) cpu_relax(); }
static void unlock(volatile u32 *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

static __attribute__((noreturn)) void exit_run(u8 status)
{
    outb(EXIT_PORT, status);
    for (;;) __asm__ volatile("cli; hlt");
}

static int same(const char *a, const char *b, int n)
{
    for (int i = 0; i < n; i++) if (a[i] != b[i]) return 0;
    return 1;
}

static int checksum_ok(const void *p, u32 len)
{
    const u8 *b = p;
    u8 sum = 0;
    for (u32 i = 0; i < len; i++) sum += b[i];
    return sum == 0;
}

/* ACPI 6.4 5.2.5.1: the RSDP is on a 16-byte boundary in 0xE0000-0xFFFFF. */
static struct rsdp *find_rsdp(const struct hvm_start_info *info)
{
    if (info->magic == XEN_HVM_START_MAGIC && info->rsdp_paddr)
        return (struct rsdp *)info->rsdp_paddr;
    for (u64 a = 0xE0000; a < 0x100000; a += 16)
        if (same((const char *)a, "RSD PTR ", 8) && checksum_ok((void *)a, 20))
            return (struct rsdp *)a;
    return 0;
}

static struct sdt_header *find_table(struct rsdp *rsdp, const char *signature)
{
    int xsdt = rsdp->revision >= 2 && rsdp->xsdt;
    struct sdt_header *root = xsdt ? (struct sdt_header *)rsdp->xsdt : (struct sdt_header *)(u64)rsdp->rsdt;
    int width = xsdt ? 8 : 4;
    int count = (root->length - sizeof *root) / width;
    for (int i = 0; i < count; i++) {
        const u8 *entry = (const u8 *)(root + 1) + i * width;
        u64 address = 0;
        for (int b = 0; b < width; b++) address |= (u64)entry[b] << (8 * b);
        struct sdt_header *table = (struct sdt_header *)address;
        if (same(table->signature, signature, 4) && checksum_ok(table, table->length))
            return table;
    }
    return 0;
}

/* ACPI 6.4 5.2.12.2: processor local APIC entries (type 0), enabled bit 0. */
static void read_madt(struct sdt_header *madt)
{
    const u8 *p = (const u8 *)madt + 44, *end = (const u8 *)madt + madt->length;
    while (p + 2 <= end && p[1] >= 2) {
        if (p[0] == 0 && (p[4] & 1) && cpu_count < MAX_CPUS)
            apic_ids[cpu_count++] = p[3];
        p += p[1];
    }
}

static void delay(u32 loops) { for (volatile u32 i = 0; i < loops; i++) cpu_relax(); }

static void send_ipi(u8 apic_id, u32 command)
{
    lapic_write(APIC_ICR_HIGH, (u32)apic_id << 24);
    lapic_write(APIC_ICR_LOW, command);
    while (lapic_read(APIC_ICR_LOW) & ICR_DELIVERY_PENDING)
        cpu_relax();
}

static void report_online(void)
{
    u32 me = lapic_read(APIC_ID) >> 24;
    lock(&print_lock);
    puts("core ");
    putu(online_count);
    puts(": APIC ID ");
    putu(me);
    puts(" online\n");
    __atomic_add_fetch(&online_count, 1, __ATOMIC_RELEASE);
    unlock(&print_lock);
}

void ap_main(void)
{
    lapic_write(APIC_SVR, APIC_SVR_ENABLE | 0xFF);
    report_online();
}

static int start_ap(u8 apic_id)
{
    u32 before = online_count;
    send_ipi(apic_id, ICR_INIT_ASSERT);
    send_ipi(apic_id, ICR_INIT_DEASSERT);
    delay(10000);
    for (int attempt = 0; attempt < 2 && online_count == before; attempt++) {
        send_ipi(apic_id, ICR_STARTUP | (TRAMPOLINE_BASE >> 12));
        delay(2000);
    }
    for (u32 spin = 0; spin < 50000000 && online_count == before; spin++)
        cpu_relax();
    return online_count != before;
}

void kmain(u32 start_info_paddr)
{
    const struct hvm_start_info *info = (const struct hvm_start_info *)(u64)start_info_paddr;
    uart_init();
    puts("smp_hello: PVH boot");
    if (info->magic != XEN_HVM_START_MAGIC) {
        puts(", bad start info magic\n");
        exit_run(3);
    }
    if (info->cmdline_paddr && *(const char *)info->cmdline_paddr) {
        puts(", cmdline \"");
        puts((const char *)info->cmdline_paddr);
        puts("\"");
    }
    puts("\n");
    struct rsdp *rsdp = find_rsdp(info);
    struct sdt_header *madt = rsdp ? find_table(rsdp, "APIC") : 0;
    if (!madt) {
        puts("smp_hello: no ACPI MADT\n");
        exit_run(4);
    }
    read_madt(madt);
    lapic_write(APIC_SVR, APIC_SVR_ENABLE | 0xFF);
    u8 me = (u8)(lapic_read(APIC_ID) >> 24);
    report_online();
    for (char *s = trampoline_start, *d = (char *)TRAMPOLINE_BASE; s < trampoline_end; )
        *d++ = *s++;
    for (int i = 0; i < cpu_count; i++) {
        if (apic_ids[i] == me)
            continue;
        if (!start_ap(apic_ids[i])) {
            puts("smp_hello: APIC ID ");
            putu(apic_ids[i]);
            puts(" did not start\n");
            exit_run(5);
        }
    }
    puts("smp_hello: ");
    putu(online_count);
    puts(" of ");
    putu(cpu_count);
    puts(" cores online\n");
    exit_run(success_status);
}
