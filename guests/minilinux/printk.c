/* printk to the 16550 UART at COM1, with Linux-style timestamps. */
#include "kernel.h"

#define COM1 0x3F8
#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20
#define UART_LCR_DLAB 0x80
#define UART_LCR_8N1 0x03

int console_loglevel = LOGLEVEL_INFO + 1;
static spinlock_t console_lock = SPINLOCK_INIT;
static u64 boot_tsc;

void console_init(void)
{
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, UART_LCR_DLAB);
    outb(COM1 + 0, 1); /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0);
    outb(COM1 + UART_LCR, UART_LCR_8N1);
    outb(COM1 + UART_FCR, 0xC7);
    outb(COM1 + UART_MCR, 0x0B);
    boot_tsc = rdtsc();
}

static void uart_putc(char c)
{
    while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
        cpu_relax();
    outb(COM1 + UART_THR, (u8)c);
}

struct out { char *buf; size_t size, len; };

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_number(struct out *o, u64 value, u32 base, int width, char pad, bool negative, bool upper)
{
    char digits[24];
    int n = 0;
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        digits[n++] = set[value % base];
        value /= base;
    } while (value);
    if (negative)
        digits[n++] = '-';
    for (int i = n; i < width; i++)
        put(o, pad);
    while (n)
        put(o, digits[--n]);
}

/* %d %i %u %x %X %p %s %c %% with optional 0, width and l/ll. */
int vsnprintf(char *buf, size_t size, const char *fmt, __builtin_va_list ap)
{
    struct out o = { buf, size, 0 };
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        bool left = false;
        if (*fmt == '-') { left = true; fmt++; }
        if (*fmt == '0') { pad = '0'; fmt++; }
        int width = 0;
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        int longs = 0;
        while (*fmt == 'l') { longs++; fmt++; }
        switch (*fmt) {
        case 'd': case 'i': {
            s64 v = longs ? __builtin_va_arg(ap, s64) : __builtin_va_arg(ap, int);
            put_number(&o, v < 0 ? (u64)-v : (u64)v, 10, width, pad, v < 0, false);
            break;
        }
        case 'u':
            put_number(&o, longs ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 10, width, pad, false, false);
            break;
        case 'x': case 'X':
            put_number(&o, longs ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 16, width, pad, false, *fmt == 'X');
            break;
        case 'p':
            put(&o, '0'); put(&o, 'x');
            put_number(&o, (u64)__builtin_va_arg(ap, void *), 16, 16, '0', false, false);
            break;
        case 's': {
            const char *s = __builtin_va_arg(ap, const char *);
            int n = (int)strlen(s);
            if (!left)
                for (int i = n; i < width; i++)
                    put(&o, ' ');
            while (*s)
                put(&o, *s++);
            if (left)
                for (int i = n; i < width; i++)
                    put(&o, ' ');
            break;
        }
        case 'c':
            put(&o, (char)__builtin_va_arg(ap, int));
            break;
        case '%':
            put(&o, '%');
            break;
        default:
            put(&o, '%');
            put(&o, *fmt);
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = 0;
    return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    __builtin_va_end(ap);
    return n;
}

/* "[    1.234567] " from the TSC, as Linux prefixes its messages. */
static void emit(int level, const char *fmt, __builtin_va_list ap)
{
    char line[256];
    if (level > console_loglevel)
        return;
    u64 us = tsc_khz ? (rdtsc() - boot_tsc) * 1000 / tsc_khz : 0;
    int n = snprintf(line, sizeof line, "[%5lu.%06lu] ", us / 1000000, us % 1000000);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    u64 flags = read_flags();
    local_irq_disable();
    spin_lock(&console_lock);
    for (const char *p = line; *p; p++) {
        if (*p == '\n')
            uart_putc('\r');
        uart_putc(*p);
    }
    spin_unlock(&console_lock);
    if (flags & 0x200)
        local_irq_enable();
}

void printk(const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    emit(LOGLEVEL_INFO, fmt, ap);
    __builtin_va_end(ap);
}

void pr_err(const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    emit(LOGLEVEL_ERR, fmt, ap);
    __builtin_va_end(ap);
}

/* Printed even with "quiet": the results a run exists for. */
void pr_always(const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    emit(0, fmt, ap);
    __builtin_va_end(ap);
}

void machine_exit(u8 status)
{
    outb(EXIT_PORT, status);
    for (;;) {
        local_irq_disable();
        halt();
    }
}

void panic(const char *fmt, ...)
{
    char message[200];
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    __builtin_va_end(ap);
    pr_always("Kernel panic - not syncing: %s\n", message);
    machine_exit(EXIT_FAILURE);
}
