/*
 * The console (a 16550 at COM1), a printf subset that prints whole lines
 * under a lock, the command line, the hypercall instruction and idling.
 */
#include "attacker.h"

#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20
#define UART_LCR_DLAB 0x80
#define LINE_MAX 256

static volatile u32 console_lock;

void uart_init(void)
{
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, UART_LCR_DLAB);
    outb(COM1 + 0, 1); /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0);
    outb(COM1 + UART_LCR, 0x03); /* 8N1 */
    outb(COM1 + UART_FCR, 0xC7);
    outb(COM1 + UART_MCR, 0x0B);
}

/* Every byte as it is, NUL and escape characters included. */
void put_bytes(const char *s, u64 n)
{
    while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))
        cpu_relax();
    for (u64 i = 0; i < n; i++) {
        while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
            cpu_relax();
        outb(COM1 + UART_THR, (u8)s[i]);
    }
    __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

struct sink { char *buf; u64 used; };

static void emit(struct sink *out, char c)
{
    if (out->used < LINE_MAX)
        out->buf[out->used++] = c;
}

static void emit_number(struct sink *out, u64 v, unsigned base, int negative, int prefix)
{
    char digits[24];
    int n = 0;
    if (negative)
        emit(out, '-');
    if (prefix)
        emit(out, '0'), emit(out, 'x');
    do { digits[n++] = "0123456789abcdef"[v % base]; v /= base; } while (v);
    while (n)
        emit(out, digits[--n]);
}

/* %s %c %d %u %x with the l modifier and the # flag, as printf. */
void say(const char *format, ...)
{
    char line[LINE_MAX];
    struct sink out = { line, 0 };
    __builtin_va_list args;
    __builtin_va_start(args, format);
    for (const char *p = format; *p; p++) {
        if (*p != '%') {
            emit(&out, *p);
            continue;
        }
        int prefix = 0, wide = 0;
        if (p[1] == '#')
            prefix = 1, p++;
        if (p[1] == 'l')
            wide = 1, p++;
        char conversion = *++p;
        if (conversion == 's') {
            for (const char *s = __builtin_va_arg(args, const char *); *s; s++)
                emit(&out, *s);
        } else if (conversion == 'c') {
            emit(&out, (char)__builtin_va_arg(args, int));
        } else if (conversion == 'd') {
            s64 v = wide ? __builtin_va_arg(args, long) : __builtin_va_arg(args, int);
            emit_number(&out, v < 0 ? -(u64)v : (u64)v, 10, v < 0, 0);
        } else if (conversion == 'u' || conversion == 'x') {
            u64 v = wide ? __builtin_va_arg(args, unsigned long) : __builtin_va_arg(args, unsigned);
            emit_number(&out, v, conversion == 'x' ? 16 : 10, 0, prefix);
        } else if (conversion == '%') {
            emit(&out, '%');
        } else {
            break;
        }
    }
    __builtin_va_end(args);
    if (out.used == LINE_MAX)
        line[LINE_MAX - 1] = '\n'; /* a cut line still ends its line */
    put_bytes(line, out.used);
}

void *copy(void *dst, const void *src, u64 n)
{
    for (u64 i = 0; i < n; i++)
        ((volatile u8 *)dst)[i] = ((const u8 *)src)[i];
    return dst;
}

void fill(void *dst, u8 value, u64 n)
{
    for (u64 i = 0; i < n; i++)
        ((volatile u8 *)dst)[i] = value;
}

int same(const char *a, const char *b, u64 n)
{
    for (u64 i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

u64 length(const char *s)
{
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

/* Decimal, or hexadecimal after 0x. */
static u64 parse_number(const char *s, u64 n)
{
    u64 v = 0;
    unsigned base = n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') ? 16 : 10;
    for (u64 i = base == 16 ? 2 : 0; i < n; i++) {
        char c = s[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : base;
        if (d >= base)
            break;
        v = v * base + d;
    }
    return v;
}

static int option(const char *word, u64 n, const char *key, const char **value, u64 *value_length)
{
    u64 k = length(key);
    if (n <= k || !same(word, key, k) || word[k] != '=')
        return 0;
    *value = word + k + 1;
    *value_length = n - k - 1;
    return 1;
}

/* attack=NAME count=N target=K status=S foreign=ADDR, separated by spaces; other words are ignored. */
void parse_cmdline(const char *line, struct options *out)
{
    copy(out->attack, "none", 5);
    while (line && *line) {
        while (*line == ' ')
            line++;
        u64 n = 0;
        while (line[n] && line[n] != ' ')
            n++;
        const char *value;
        u64 size;
        if (option(line, n, "attack", &value, &size)) {
            if (size >= sizeof out->attack)
                size = sizeof out->attack - 1;
            copy(out->attack, value, size);
            out->attack[size] = 0;
        } else if (option(line, n, "count", &value, &size)) {
            out->count = parse_number(value, size), out->has_count = 1;
        } else if (option(line, n, "target", &value, &size)) {
            out->target = parse_number(value, size), out->has_target = 1;
        } else if (option(line, n, "status", &value, &size)) {
            out->status = parse_number(value, size), out->has_status = 1;
        } else if (option(line, n, "foreign", &value, &size)) {
            out->foreign = parse_number(value, size) & ~(PAGE_SIZE - 1), out->has_foreign = 1;
        }
        line += n;
    }
}

s64 hypercall(u64 number, u64 a0, u64 a1, u64 a2)
{
    s64 result;
    __asm__ volatile("vmmcall" : "=a"(result) : "a"(number), "D"(a0), "S"(a1), "d"(a2) : "memory");
    return result;
}

/* Counted in instructions, so the same on every run. */
void delay(u32 loops)
{
    for (volatile u32 i = 0; i < loops; i++)
        cpu_relax();
}

/* Alive but idle: interrupts enabled, halted between them. */
void idle(void)
{
    for (;;)
        __asm__ volatile("sti; hlt" ::: "memory");
}
