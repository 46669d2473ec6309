/*
 * The static /init run as PID 1 from the initramfs that tools/fetch_linux.py
 * builds for an unmodified Debian kernel.  Every line it prints starts with
 * "init: " and depends only on the machine, never on time or addresses, so
 * the emulator's end-to-end tests can compare it with what QEMU prints.
 */
#ifndef LINUXINIT_H
#define LINUXINIT_H

#include <stdbool.h>
#include <stddef.h>

/* Largest file read whole: /proc/cpuinfo is ~1.5 KiB per CPU. */
#define READ_BUFFER_SIZE (512 * 1024)

/* Upper bound on the CPUs this /init reports and runs threads on. */
#define MAX_CPUS 1024

/* Print one "init: ..." line on stdout (the console) and flush it. */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Read a whole file into buf (NUL-terminated); returns its length, or -1
 * with errno set.  A file larger than size - 1 bytes is cut, and says so.
 */
long read_file(const char *path, char *buf, size_t size);

/* sysinfo.c: what /proc and /sys say about the machine. */
void report_cpuinfo(void);
void report_meminfo(void);
void report_numa(void);
void report_kernel_view(void);

/* workload.c: one pinned thread per CPU; returns true if every result matched. */
bool run_workload(void);

#endif
