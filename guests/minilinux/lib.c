/* The few C library functions a freestanding kernel needs. */
#include "kernel.h"

void *memset(void *d, int c, size_t n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    u8 *dp = d;
    const u8 *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (u8)*a - (u8)*b;
        if (!*a)
            return 0;
    }
    return 0;
}

/* Decimal, or hexadecimal with 0x; stops at the first other character. */
u64 parse_u64(const char *s, const char **end)
{
    u64 value = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        for (;; s++) {
            char c = *s;
            u32 digit = c >= '0' && c <= '9' ? (u32)(c - '0') : c >= 'a' && c <= 'f' ? (u32)(c - 'a' + 10)
                      : c >= 'A' && c <= 'F' ? (u32)(c - 'A' + 10) : 16;
            if (digit == 16)
                break;
            value = value * 16 + digit;
        }
    } else {
        while (*s >= '0' && *s <= '9')
            value = value * 10 + (u64)(*s++ - '0');
    }
    if (end)
        *end = s;
    return value;
}
