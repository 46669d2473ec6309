/* Kernel command line options (a subset of Linux's, plus the workloads'). */
#include "kernel.h"

struct boot_options boot_options = {
    .workload = "all",
    .primes_limit = 100000,
    .pingpong_rounds = 50,
    .tsc_khz = 2000000,
    .collect_ms = 3000,
};
char boot_command_line[512];

static bool option(const char *word, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (strncmp(word, name, n) != 0)
        return false;
    if (word[n] == '=') {
        *value = word + n + 1;
        return true;
    }
    if (word[n] == 0 || word[n] == ' ') {
        *value = NULL;
        return true;
    }
    return false;
}

/*
 * A numeric option's value: the whole word, decimal or 0x hex, within
 * [low, high].  Anything else -- no digits, trailing characters, too many
 * digits for 64 bits, out of range -- is reported on the console and counted
 * in boot_options.bad_options (the boot then fails), never read as 0.
 */
static bool number(const char *name, const char *value, u64 low, u64 high, u64 *out)
{
    const char *s = value;
    u64 base = 10, parsed = 0;
    bool digits = false, overflow = false;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    for (;; s++) {
        char c = *s;
        u64 digit = c >= '0' && c <= '9' ? (u64)(c - '0')
                  : base == 16 && c >= 'a' && c <= 'f' ? (u64)(c - 'a' + 10)
                  : base == 16 && c >= 'A' && c <= 'F' ? (u64)(c - 'A' + 10) : 16;
        if (digit >= base)
            break;
        overflow = overflow || parsed > (~0ULL - digit) / base;
        parsed = parsed * base + digit;
        digits = true;
    }
    if (digits && !overflow && (*s == 0 || *s == ' ') && parsed >= low && parsed <= high) {
        *out = parsed;
        return true;
    }
    char shown[41];
    size_t n = 0;
    for (; value[n] && value[n] != ' ' && n + 1 < sizeof shown; n++)
        shown[n] = value[n];
    shown[n] = 0;
    pr_always("minilinux: bad value for %s=%s: expected an integer %lu..%lu\n", name, shown, low, high);
    boot_options.bad_options++;
    return false;
}

void parse_cmdline(const char *cmdline)
{
    size_t i = 0;
    for (; cmdline && cmdline[i] && i + 1 < sizeof boot_command_line; i++)
        boot_command_line[i] = cmdline[i];
    boot_command_line[i] = 0;
    for (const char *p = boot_command_line; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *value;
        u64 n;
        if (option(p, "acpi", &value) && value && !strncmp(value, "off", 3))
            boot_options.acpi_off = true;
        else if (option(p, "nosmp", &value))
            boot_options.nosmp = true;
        else if (option(p, "quiet", &value))
            boot_options.quiet = true;
        else if (option(p, "maxcpus", &value) && value) {
            if (number("maxcpus", value, 1, MAX_CPUS, &n))  /* one CPU is nosmp's */
                boot_options.maxcpus = (u32)n;
        } else if (option(p, "tsc_khz", &value) && value) {
            if (number("tsc_khz", value, 1, 100000000, &n))
                boot_options.tsc_khz = n;
        } else if (option(p, "attack", &value) && value && !strncmp(value, "all", 3))
            boot_options.attack = true;
        else if (option(p, "fault", &value) && value) {
            if (number("fault", value, 0, MAX_CPUS - 1, &n))
                boot_options.fault_cpu = (u32)n;
        } else if (option(p, "primes", &value) && value) {
            if (number("primes", value, 2, 1000000000, &n))
                boot_options.primes_limit = n;
        } else if (option(p, "collect_ms", &value) && value) {
            if (number("collect_ms", value, 1, 3600000, &n))
                boot_options.collect_ms = (u32)n;
        } else if (option(p, "rounds", &value) && value) {
            if (number("rounds", value, 1, 1000000, &n))
                boot_options.pingpong_rounds = (u32)n;
        }
        else if (option(p, "workload", &value) && value) {
            size_t n = 0;
            while (value[n] && value[n] != ' ' && n + 1 < sizeof boot_options.workload) {
                boot_options.workload[n] = value[n];
                n++;
            }
            boot_options.workload[n] = 0;
        }
        while (*p && *p != ' ')
            p++;
    }
    if (boot_options.quiet)
        console_loglevel = LOGLEVEL_ERR + 1;
}
