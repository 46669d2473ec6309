/*
 * What the kernel says about the machine: /proc/cpuinfo (one block per
 * online CPU, fs/proc/cpuinfo.c + arch/x86/kernel/cpu/proc.c), /proc/meminfo
 * (fs/proc/meminfo.c), the NUMA nodes under /sys/devices/system/node
 * (drivers/base/node.c: nodeN/cpulist, nodeN/meminfo, nodeN/distance), the
 * affinity mask and sysconf.  A missing file is reported, never fatal.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "linuxinit.h"

#define NODE_DIR "/sys/devices/system/node"
#define NODE_PREFIX "node"
#define MAX_NODES 1024
#define FIELD_ABSENT (-1L)

static char text[READ_BUFFER_SIZE];

struct cpu_entry {
    long processor, apicid, physical_id, core_id;
};

static struct cpu_entry cpus[MAX_CPUS];

/* A line of the file, split at its first ':' with blanks trimmed round both halves. */
static bool split_field(char *line, char **key, char **value)
{
    char *colon = strchr(line, ':');
    if (colon == NULL)
        return false;
    char *end = colon;
    while (end > line && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';
    char *start = colon + 1;
    while (isspace((unsigned char)*start))
        start++;
    *key = line;
    *value = start;
    return true;
}

static long parse_long(const char *value)
{
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    return (errno != 0 || end == value) ? FIELD_ABSENT : n;
}

/* The number after key (e.g. "MemTotal:") in text, or FIELD_ABSENT. */
static long number_after(const char *haystack, const char *key)
{
    const char *at = strstr(haystack, key);
    return at == NULL ? FIELD_ABSENT : parse_long(at + strlen(key));
}

static void strip_newline(char *s)
{
    s[strcspn(s, "\n")] = '\0';
}

static void record_field(struct cpu_entry *cpu, const char *key, const char *value)
{
    if (strcmp(key, "apicid") == 0)
        cpu->apicid = parse_long(value);
    else if (strcmp(key, "physical id") == 0)
        cpu->physical_id = parse_long(value);
    else if (strcmp(key, "core id") == 0)
        cpu->core_id = parse_long(value);
}

/* Fill cpus[] from /proc/cpuinfo text; returns how many "processor" blocks it has. */
static int parse_cpuinfo(char *info)
{
    int count = 0;
    struct cpu_entry *current = NULL;
    for (char *save = NULL, *line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *key, *value;
        if (!split_field(line, &key, &value))
            continue;
        if (strcmp(key, "processor") == 0) {
            current = NULL;
            if (count < MAX_CPUS) {
                current = &cpus[count];
                *current = (struct cpu_entry){parse_long(value), FIELD_ABSENT, FIELD_ABSENT, FIELD_ABSENT};
            }
            count++;
        } else if (current != NULL) {
            record_field(current, key, value);
        }
    }
    return count;
}

/* Append " name N" to line when the field was present. */
static void append_field(char *line, size_t size, const char *name, long value)
{
    size_t used = strlen(line);
    if (value != FIELD_ABSENT && used < size)
        snprintf(line + used, size - used, " %s %ld", name, value);
}

void report_cpuinfo(void)
{
    if (read_file("/proc/cpuinfo", text, sizeof(text)) < 0) {
        say("no /proc/cpuinfo: %s", strerror(errno));
        return;
    }
    int count = parse_cpuinfo(text);
    say("cpus online %d", count);
    for (int i = 0; i < count && i < MAX_CPUS; i++) {
        char line[128];
        snprintf(line, sizeof(line), "cpu %ld", cpus[i].processor);
        append_field(line, sizeof(line), "apicid", cpus[i].apicid);
        append_field(line, sizeof(line), "physical_id", cpus[i].physical_id);
        append_field(line, sizeof(line), "core_id", cpus[i].core_id);
        say("%s", line);
    }
}

void report_meminfo(void)
{
    if (read_file("/proc/meminfo", text, sizeof(text)) < 0) {
        say("no /proc/meminfo: %s", strerror(errno));
        return;
    }
    long kb = number_after(text, "MemTotal:");
    if (kb == FIELD_ABSENT)
        say("no MemTotal in /proc/meminfo");
    else
        say("memtotal_kb %ld", kb);
}

/* The N of a directory entry named "nodeN", or -1. */
static int node_number(const char *name)
{
    size_t prefix = strlen(NODE_PREFIX);
    if (strncmp(name, NODE_PREFIX, prefix) != 0 || !isdigit((unsigned char)name[prefix]))
        return -1;
    char *end;
    long n = strtol(name + prefix, &end, 10);
    return (*end != '\0' || n < 0 || n > INT_MAX) ? -1 : (int)n;
}

static int compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The node numbers under NODE_DIR in increasing order, or -1 if it cannot be read. */
static int list_nodes(int *nodes, int capacity)
{
    DIR *dir = opendir(NODE_DIR);
    if (dir == NULL)
        return -1;
    int count = 0;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        int n = node_number(entry->d_name);
        if (n >= 0 && count < capacity)
            nodes[count++] = n;
    }
    closedir(dir);
    qsort(nodes, (size_t)count, sizeof(nodes[0]), compare_ints);
    return count;
}

/* The first line of NODE_DIR/nodeN/file into out, or "(unreadable)". */
static void node_line(int node, const char *file, char *out, size_t size)
{
    char path[128];
    snprintf(path, sizeof(path), NODE_DIR "/" NODE_PREFIX "%d/%s", node, file);
    if (read_file(path, out, size) < 0) {
        snprintf(out, size, "(unreadable)");
        return;
    }
    strip_newline(out);
    if (out[0] == '\0')
        snprintf(out, size, "(none)");
}

static long node_memtotal_kb(int node)
{
    char path[128];
    snprintf(path, sizeof(path), NODE_DIR "/" NODE_PREFIX "%d/meminfo", node);
    if (read_file(path, text, sizeof(text)) < 0)
        return FIELD_ABSENT;
    return number_after(text, "MemTotal:");
}

void report_numa(void)
{
    static int nodes[MAX_NODES];
    int count = list_nodes(nodes, MAX_NODES);
    if (count < 0) {
        say("no " NODE_DIR ": %s", strerror(errno));
        return;
    }
    say("numa nodes %d", count);
    for (int i = 0; i < count; i++) {
        char cpulist[256], distance[256];
        node_line(nodes[i], "cpulist", cpulist, sizeof(cpulist));
        node_line(nodes[i], "distance", distance, sizeof(distance));
        say("node %d cpulist %s memtotal_kb %ld distance %s", nodes[i], cpulist, node_memtotal_kb(nodes[i]),
            distance);
    }
}

void report_kernel_view(void)
{
    struct utsname uts;
    if (uname(&uts) == 0)
        say("kernel %s %s", uts.release, uts.machine);
    else
        say("uname failed: %s", strerror(errno));
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof(mask), &mask) == 0)
        say("sched_getaffinity cpus %d", CPU_COUNT(&mask));
    else
        say("sched_getaffinity failed: %s", strerror(errno));
    say("sysconf nprocessors_onln %ld nprocessors_conf %ld", sysconf(_SC_NPROCESSORS_ONLN),
        sysconf(_SC_NPROCESSORS_CONF));
}
