/*
 * The threaded workload: one thread per CPU of PID 1's affinity mask, each
 * pinned to its CPU (pthread_setaffinity_np(3)), each folding a 64-bit LCG
 * (Knuth's MMIX constants, TAOCP Vol. 2 3.3.4) seeded by its index.  The
 * main thread then recomputes every checksum serially and compares.
 *
 * Budget: about 8 instructions per step, so a thread costs ~1 M guest
 * instructions and the check as much again; at the emulator's 10-50 MIPS a
 * 2-CPU run adds well under a second.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

#include "linuxinit.h"

#define WORK_STEPS (1u << 17)
#define LCG_MULTIPLIER UINT64_C(6364136223846793005)
#define LCG_INCREMENT UINT64_C(1442695040888963407)
#define SEED_BASE UINT64_C(0x9e3779b97f4a7c15)
#define FOLD_ROTATE 7
#define WORKER_STACK_SIZE (64 * 1024)
#define CPU_UNKNOWN (-1)

struct worker {
    int index;
    int cpu;        /* the CPU it is pinned to */
    int ran_on;     /* sched_getcpu() after the work */
    int pin_error;  /* pthread_setaffinity_np's error number, 0 if pinned */
    uint64_t result;
    pthread_t thread;
    bool started;
};

static struct worker workers[MAX_CPUS];

static uint64_t checksum(uint64_t seed, unsigned steps)
{
    uint64_t x = seed, acc = 0;
    for (unsigned i = 0; i < steps; i++) {
        x = x * LCG_MULTIPLIER + LCG_INCREMENT;
        uint64_t folded = acc ^ (x >> 33); /* the high bits of an LCG are the random ones */
        acc = folded << FOLD_ROTATE | folded >> (64 - FOLD_ROTATE);
    }
    return acc;
}

static uint64_t seed_of(int index)
{
    return SEED_BASE + (uint64_t)index;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(w->cpu, &one);
    w->pin_error = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    w->result = checksum(seed_of(w->index), WORK_STEPS);
    w->ran_on = sched_getcpu();
    return NULL;
}

/* One worker per CPU in mask; returns how many. */
static int plan_workers(const cpu_set_t *mask)
{
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < MAX_CPUS; cpu++) {
        if (CPU_ISSET(cpu, mask)) {
            workers[count] = (struct worker){.index = count, .cpu = cpu, .ran_on = CPU_UNKNOWN};
            count++;
        }
    }
    return count;
}

static bool start_workers(int count)
{
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err == 0)
        err = pthread_attr_setstacksize(&attr, WORKER_STACK_SIZE);
    if (err != 0) {
        say("pthread_attr failed: %s", strerror(err));
        return false;
    }
    bool ok = true;
    for (int i = 0; i < count; i++) {
        err = pthread_create(&workers[i].thread, &attr, work, &workers[i]);
        workers[i].started = err == 0;
        if (err != 0) {
            say("thread %d: pthread_create failed: %s", i, strerror(err));
            ok = false;
        }
    }
    pthread_attr_destroy(&attr);
    return ok;
}

static bool join_workers(int count)
{
    bool ok = true;
    for (int i = 0; i < count; i++) {
        if (!workers[i].started)
            continue;
        int err = pthread_join(workers[i].thread, NULL);
        if (err != 0) {
            say("thread %d: pthread_join failed: %s", i, strerror(err));
            ok = false;
        }
    }
    return ok;
}

/* Report one worker; true if it was pinned, stayed on its CPU and matched the serial result. */
static bool check_worker(const struct worker *w)
{
    if (!w->started)
        return false;
    if (w->pin_error != 0) {
        say("thread %d: pinning to cpu %d failed: %s FAILED", w->index, w->cpu, strerror(w->pin_error));
        return false;
    }
    say("thread %d ran on cpu %d", w->index, w->ran_on);
    bool ok = true;
    if (w->ran_on != w->cpu) {
        say("thread %d: pinned to cpu %d but ran on cpu %d FAILED", w->index, w->cpu, w->ran_on);
        ok = false;
    }
    uint64_t expected = checksum(seed_of(w->index), WORK_STEPS);
    if (w->result != expected) {
        say("thread %d: result 0x%016llx expected 0x%016llx FAILED", w->index, (unsigned long long)w->result,
            (unsigned long long)expected);
        ok = false;
    }
    return ok;
}

bool run_workload(void)
{
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof(mask), &mask) < 0) {
        say("workload: sched_getaffinity failed: %s FAILED", strerror(errno));
        return false;
    }
    int count = plan_workers(&mask);
    bool ok = start_workers(count);
    ok = join_workers(count) && ok;
    uint64_t combined = 0;
    for (int i = 0; i < count; i++) {
        ok = check_worker(&workers[i]) && ok;
        combined ^= workers[i].result;
    }
    say("workload threads %d result 0x%016llx %s", count, (unsigned long long)combined, ok ? "ok" : "FAILED");
    return ok;
}
