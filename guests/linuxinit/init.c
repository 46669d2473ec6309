/*
 * PID 1: set up the console and the pseudo file systems, report what the
 * kernel sees, run the threaded workload, then power off.
 *
 * The kernel runs /init from the initramfs with /dev/console already opened
 * as fds 0-2 (init/main.c, console_on_rootfs()); the cpio carries the node
 * so that works before devtmpfs.  PID 1 must never exit (the kernel would
 * panic), so the last resort is an endless pause().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "linuxinit.h"

/*
 * isa-debug-exit: a write of v to this port ends QEMU (with
 * "-device isa-debug-exit,iobase=0xf4,iosize=0x04") with status (v << 1) | 1,
 * and ends the kernel under osvemu with status v.
 */
#define DEBUG_EXIT_PORT 0xf4
#define DEBUG_EXIT_PORT_COUNT 4
#define EXIT_SUCCESS_VALUE 0
#define EXIT_FAILURE_VALUE 1

#define CONSOLE_PATH "/dev/console"
#define CONSOLE_NODE_MODE (S_IFCHR | 0600)
#define TTYAUX_MAJOR 5 /* Documentation/admin-guide/devices.txt: 5,1 = /dev/console */
#define CONSOLE_MINOR 1

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* nowhere left to report to */
        buf += n;
        len -= (size_t)n;
    }
}

void say(const char *fmt, ...)
{
    char line[512];
    size_t prefix = (size_t)snprintf(line, sizeof(line), "init: ");
    size_t room = sizeof(line) - prefix - 1; /* one byte kept for the newline */
    va_list ap;
    va_start(ap, fmt);
    int body = vsnprintf(line + prefix, room, fmt, ap);
    va_end(ap);
    size_t len = prefix + (body < 0 ? 0 : (size_t)body < room ? (size_t)body : room - 1);
    line[len++] = '\n';
    write_all(STDOUT_FILENO, line, len);
}

long read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t used = 0;
    while (used < size - 1) {
        ssize_t n = read(fd, buf + used, size - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    buf[used] = '\0';
    if (used == size - 1)
        say("%s cut at %zu bytes", path, used);
    close(fd);
    return (long)used;
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* Make fds 0-2 the console if the kernel did not (no node when it tried). */
static void open_console(void)
{
    if (fd_is_open(STDIN_FILENO) && fd_is_open(STDOUT_FILENO) && fd_is_open(STDERR_FILENO))
        return;
    int fd = open(CONSOLE_PATH, O_RDWR | O_NOCTTY);
    if (fd < 0 && errno == ENOENT
        && mknod(CONSOLE_PATH, CONSOLE_NODE_MODE, makedev(TTYAUX_MAJOR, CONSOLE_MINOR)) == 0)
        fd = open(CONSOLE_PATH, O_RDWR | O_NOCTTY);
    if (fd < 0)
        return; /* no console: the lines below go nowhere, the exit port still works */
    for (int target = STDIN_FILENO; target <= STDERR_FILENO; target++)
        if (!fd_is_open(target) && dup2(fd, target) < 0)
            return;
    if (fd > STDERR_FILENO)
        close(fd);
}

static void mount_pseudo(const char *type, const char *dir)
{
    if (mkdir(dir, 0555) < 0 && errno != EEXIST) {
        say("mkdir %s failed: %s", dir, strerror(errno));
        return;
    }
    if (mount(type, dir, type, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 && errno != EBUSY)
        say("mount %s on %s failed: %s", type, dir, strerror(errno));
}

/*
 * Exit port first (QEMU, osvemu), then the kernel's power off, then wait.
 * write() to the console returns once the tty holds the bytes and the UART
 * sends them on interrupts, so the console is drained first (tcdrain(3):
 * the serial core waits for the transmitter to empty) or the exit would cut
 * the last lines.
 */
static void power_off(bool ok)
{
    if (tcdrain(STDOUT_FILENO) < 0 && errno != ENOTTY)
        say("tcdrain failed: %s", strerror(errno));
    if (ioperm(DEBUG_EXIT_PORT, DEBUG_EXIT_PORT_COUNT, 1) == 0)
        outb(ok ? EXIT_SUCCESS_VALUE : EXIT_FAILURE_VALUE, DEBUG_EXIT_PORT);
    else
        say("ioperm 0x%x failed: %s", DEBUG_EXIT_PORT, strerror(errno));
    sync();
    if (reboot(RB_POWER_OFF) < 0)
        say("reboot(RB_POWER_OFF) failed: %s", strerror(errno));
    for (;;)
        pause();
}

/*
 * Run as anything but PID 1 (say by hand on a build host) it only reports:
 * no mounts, no port I/O and above all no power off.
 */
int main(void)
{
    bool is_init = getpid() == 1;
    if (is_init) {
        open_console();
        mount_pseudo("proc", "/proc");
        mount_pseudo("sysfs", "/sys");
    }
    say("started%s", is_init ? "" : " (not pid 1: report only)");
    report_kernel_view();
    report_cpuinfo();
    report_meminfo();
    report_numa();
    bool ok = run_workload();
    say("done");
    if (is_init)
        power_off(ok);
    return ok ? 0 : 1;
}
