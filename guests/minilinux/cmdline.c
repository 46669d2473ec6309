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
        if (option(p, "acpi", &value) && value && !strncmp(value, "off", 3))
            boot_options.acpi_off = true;
        else if (option(p, "nosmp", &value))
            boot_options.nosmp = true;
        else if (option(p, "quiet", &value))
            boot_options.quiet = true;
        else if (option(p, "maxcpus", &value) && value)
            boot_options.maxcpus = (u32)parse_u64(value, NULL) ? (u32)parse_u64(value, NULL) : 1; /* maxcpus=0: no SMP, as in Linux */
        else if (option(p, "tsc_khz", &value) && value)
            boot_options.tsc_khz = parse_u64(value, NULL);
        else if (option(p, "attack", &value) && value && !strncmp(value, "all", 3))
            boot_options.attack = true;
        else if (option(p, "fault", &value) && value)
            boot_options.fault_cpu = (u32)parse_u64(value, NULL);
        else if (option(p, "primes", &value) && value)
            boot_options.primes_limit = parse_u64(value, NULL);
        else if (option(p, "collect_ms", &value) && value)
            boot_options.collect_ms = (u32)parse_u64(value, NULL);
        else if (option(p, "rounds", &value) && value)
            boot_options.pingpong_rounds = (u32)parse_u64(value, NULL);
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
