/*
 * The attacks, one per name on the command line:
 *
 *     attack=NAME [count=N] [target=K] [status=S] [foreign=ADDR]
 *
 * (default attack=none; numbers are decimal or 0x hex; foreign= overrides
 * the foreign guest-physical page, below 4 GiB).  An unknown name prints
 * "attacker: unknown attack NAME" and writes 99 to the exit port.
 *
 *   none            honest: count=N (100000) iterations of a checksum
 *   stack           RSP on the foreign page, then int3
 *   idt             lidt with its base on the foreign page, then int3
 *   gdt             lgdt with its base on the foreign page, then int3; again, then load DS
 *   tss             TSS.RSP0 on the foreign page, iretq to CPL 3, int3 there
 *   cr3             CR3 <- the foreign page
 *   alias           linear pages (4 KiB and 2 MiB) onto the foreign page: read, write, read back
 *   ptwalk          a page-directory entry naming a page table on the foreign page
 *   init_all        start the APs, then INIT to all including self
 *   flood           count=N (100000) calls of hypercall 0x7fff
 *   user_hypercall  DESCRIBE_SELF into a supervisor-only page and SHUTDOWN(0x55), from CPL 3
 *   real_hypercall  vmmcall SHUTDOWN(0x56) in real mode: on an AP, or on the BSP gone down to real mode
 *   notify          count=N (1000) NOTIFYs of kernel target=K (0) with each of 32, 0x40, 0xF8, 0xFF
 *   console         lines with CR, ANSI erase, backspaces, OSC title, colour and NUL
 *   triple          lidt limit 0, then int3
 *   spin            cli; jmp . on every core
 *   halt            cli; hlt on every core
 *   ipi             fixed, NMI, INIT, STARTUP, SMI to a foreign APIC ID, and broadcasts
 *   exit            status=S (51) to port 0xF4
 *
 * Each prints what it tries and what it observed.  A step that may fault
 * runs armed: the trap handler reports the exception and longjmps back here
 * (cpu.c: resume_script), so the script goes on where that is possible.
 */
#include "attacker.h"

#define ALIAS_LINEAR 0x10000000UL  /* remapped onto the foreign page (linear != physical) */
#define DECOY_PHYSICAL 0x200000UL /* a 2 MiB page of its own RAM (the image ends below it) */
#define ALIAS_LARGE_LINEAR 0x10400000UL /* a 2 MiB page onto the foreign page's 2 MiB */
#define PTWALK_LINEAR 0x10200000UL /* its page table is the foreign page */
#define PATTERN 0x5A5A5A5A5A5A5A5AUL
#define DEFAULT_FLOOD 100000
#define DEFAULT_NOTIFIES 1000
#define DEFAULT_EXIT_STATUS 51
#define UNKNOWN_ATTACK_STATUS 99
#define USER_STATUS 0x55
#define FIXED_VECTOR 0x40
#define IVT_UD (VECTOR_UD * 4)
#define REAL_MODE_SEGMENT (REAL_MODE_BASE >> 4)
#define REAL_MODE_WAIT 20000000
#define PROTECTED_BEGIN(caught) (((caught) = attack_setjmp(recover)) == 0 && (recover_armed = 1))
#define PROTECTED_END() (recover_armed = 0)

static u64 alias_table[512] __attribute__((aligned(4096)));
static u8 supervisor_page[4096] __attribute__((aligned(4096)));

static u64 option_or(int given, u64 value, u64 fallback) { return given ? value : fallback; }

static void report_resumed(const char *attack, int caught)
{
    if (caught - 1 == OFF_STACK)
        say("attacker: %s: resumed after an exception whose frame went outside its RAM\n", attack);
    else
        say("attacker: %s: resumed after exception %d\n", attack, caught - 1);
}

/* ---------------------------------------------------------------- baseline */
static void attack_none(void)
{
    u64 iterations = option_or(options.has_count, options.count, 100000);
    say("attacker: none: honest work, %lu iterations\n", iterations);
    u32 sum = 0;
    for (volatile u64 i = 0; i < iterations; i++)
        sum = sum * 31 + (u32)i;
    say("attacker: none: checksum %#x\n", sum);
}

/* ---------------------------------------------------------------- exception delivery */
static void attack_stack(void)
{
    u64 rsp = self.foreign + 0x800;
    int caught;
    say("attacker: stack: RSP <- %#lx, then int3\n", rsp);
    if (PROTECTED_BEGIN(caught)) {
        __asm__ volatile("mov %%rsp, %%rbx\n\tmov %0, %%rsp\n\tint3\n\tmov %%rbx, %%rsp" : : "r"(rsp) : "rbx", "memory");
        PROTECTED_END();
        say("attacker: stack: int3 returned\n");
        return;
    }
    report_resumed("stack", caught);
}

static void attack_idt(void)
{
    struct table_pointer foreign = { 0xFFF, self.foreign };
    int caught;
    say("attacker: idt: lidt base %#lx limit 0xfff, then int3\n", self.foreign);
    if (PROTECTED_BEGIN(caught)) {
        __asm__ volatile("lidt %0\n\tint3" : : "m"(foreign) : "memory");
        PROTECTED_END();
        load_idt(); /* this kernel's own again */
        say("attacker: idt: int3 returned\n");
        return;
    }
    report_resumed("idt", caught);
}

static void attack_gdt(void)
{
    struct table_pointer foreign = { gdt64_pointer.limit, self.foreign };
    int caught;
    say("attacker: gdt: lgdt base %#lx limit %#x, then int3\n", self.foreign, foreign.limit);
    if (PROTECTED_BEGIN(caught)) {
        __asm__ volatile("lgdt %0\n\tint3" : : "m"(foreign) : "memory");
        PROTECTED_END();
        say("attacker: gdt: int3 returned\n");
    } else {
        report_resumed("gdt", caught);
    }
    say("attacker: gdt: lgdt base %#lx again, then load DS from it\n", self.foreign);
    if (PROTECTED_BEGIN(caught)) {
        __asm__ volatile("lgdt %0\n\tmov %1, %%ds\n\tlgdt %2\n\tmov %1, %%ds"
                         : : "m"(foreign), "r"((u16)KERNEL_DS), "m"(gdt64_pointer) : "memory");
        PROTECTED_END();
        say("attacker: gdt: DS loaded; GDT restored\n");
    } else {
        report_resumed("gdt", caught);
    }
}

static void attack_tss(void)
{
    u64 rsp0 = self.foreign + 0x800;
    int caught;
    say("attacker: tss: TSS.RSP0 <- %#lx, to CPL 3, then int3\n", rsp0);
    set_rsp0(rsp0);
    if (PROTECTED_BEGIN(caught))
        enter_user((u64)user_int3, (u64)user_stack_top);
    set_rsp0((u64)trap_stack_top);
    report_resumed("tss", caught);
}

static void attack_triple(void)
{
    struct table_pointer empty = { 0, 0 };
    say("attacker: triple: lidt limit 0, then int3\n");
    __asm__ volatile("lidt %0\n\tint3" : : "m"(empty) : "memory");
    load_idt();
    say("attacker: triple: still running\n");
}

/* ---------------------------------------------------------------- paging */
static void attack_cr3(void)
{
    u64 mine = read_cr3();
    int caught;
    say("attacker: cr3: CR3 <- %#lx\n", self.foreign);
    if (PROTECTED_BEGIN(caught)) {
        __asm__ volatile("mov %0, %%cr3\n\tnop\n\tnop\n\tmov %1, %%cr3" : : "r"(self.foreign), "r"(mine) : "memory");
        PROTECTED_END();
        say("attacker: cr3: still running with it; CR3 restored\n");
        return;
    }
    report_resumed("cr3", caught);
}

/* Read, write and read back `linear`, which maps onto the foreign page,
 * back to back. */
static void alias_access(const char *how, u64 linear)
{
    u64 before, after;
    int caught;
    say("attacker: alias: linear %#lx -> guest-physical %#lx (%s): read, write %#lx, read back\n", linear,
        self.foreign, how, PATTERN);
    if (PROTECTED_BEGIN(caught)) {
        __asm__ volatile("mov (%2), %0\n\tmov %3, (%2)\n\tmov (%2), %1"
                         : "=&r"(before), "=&r"(after) : "r"(linear), "r"(PATTERN) : "memory");
        PROTECTED_END();
        say("attacker: alias: read %#lx, read back %#lx\n", before, after);
    } else {
        report_resumed("alias", caught);
    }
}

/* The foreign page through a 4 KiB and through a 2 MiB mapping; meanwhile
 * linear addresses equal to its physical address reach a decoy in this
 * kernel's own RAM, so only its physical address names the access rightly. */
static void attack_alias(void)
{
    u64 *small_pde = pd_entry(ALIAS_LINEAR), small_identity = *small_pde;
    u64 *large_pde = pd_entry(ALIAS_LARGE_LINEAR), large_identity = *large_pde;
    u64 *decoy_pde = pd_entry(self.foreign), decoy_identity = *decoy_pde;
    u64 offset = self.foreign & (LARGE_PAGE_SIZE - 1), decoy = DECOY_PHYSICAL + offset;
    for (u64 i = 0; i < 512; i++)
        alias_table[i] = (ALIAS_LINEAR + i * PAGE_SIZE) | PTE_PRESENT | PTE_WRITABLE;
    alias_table[0] = self.foreign | PTE_PRESENT | PTE_WRITABLE;
    *(volatile u64 *)decoy = 0;
    *small_pde = (u64)alias_table | PTE_PRESENT | PTE_WRITABLE;
    *large_pde = (self.foreign - offset) | PTE_PRESENT | PTE_WRITABLE | PTE_LARGE;
    *decoy_pde = DECOY_PHYSICAL | PTE_PRESENT | PTE_WRITABLE | PTE_LARGE;
    flush_tlb();
    say("attacker: alias: decoy: linear %#lx -> guest-physical %#lx (its own RAM)\n", self.foreign, decoy);
    alias_access("4 KiB page", ALIAS_LINEAR);
    alias_access("2 MiB page", ALIAS_LARGE_LINEAR + offset);
    *small_pde = small_identity;
    *large_pde = large_identity;
    *decoy_pde = decoy_identity;
    flush_tlb();
    say("attacker: alias: its own RAM at %#lx reads %#lx\n", decoy, *(volatile u64 *)decoy);
}

static void attack_ptwalk(void)
{
    u64 *pde = pd_entry(PTWALK_LINEAR), identity = *pde;
    volatile u64 *p = (volatile u64 *)PTWALK_LINEAR;
    int caught;
    *pde = self.foreign | PTE_PRESENT | PTE_WRITABLE; /* no PS: the entry names a page table */
    flush_tlb();
    say("attacker: ptwalk: PDE of linear %#lx -> page table at guest-physical %#lx\n", PTWALK_LINEAR, self.foreign);
    if (PROTECTED_BEGIN(caught)) {
        u64 value = *p;
        PROTECTED_END();
        say("attacker: ptwalk: read %#lx\n", value);
    } else {
        report_resumed("ptwalk", caught);
    }
    *pde = identity;
    flush_tlb();
}

/* ---------------------------------------------------------------- cores */
static void attack_init_all(void)
{
    u32 command = ICR_ALL_INCLUDING_SELF | ICR_INIT | ICR_ASSERT | ICR_LEVEL;
    int started = self.osv.cores > 1 ? start_aps(AP_IDLE) : 0;
    say("attacker: init_all: %d APs started; INIT to all including self (ICR %#x)\n", started, command);
    lapic_write(APIC_ICR_HIGH, 0);
    lapic_write(APIC_ICR_LOW, command);
    delay(1000);
    say("attacker: init_all: still running after INIT\n");
}

static void attack_spin(void)
{
    int started = self.osv.cores > 1 ? start_aps(AP_SPIN) : 0;
    say("attacker: spin: cli; jmp . on the boot CPU and %d APs\n", started);
    for (;;)
        __asm__ volatile("cli; jmp ." ::: "memory");
}

static void attack_halt(void)
{
    int started = self.osv.cores > 1 ? start_aps(AP_HALT) : 0;
    say("attacker: halt: cli; hlt on the boot CPU and %d APs\n", started);
    halt_forever();
}

/* ---------------------------------------------------------------- IPIs */
static int own_apic(u32 id)
{
    for (u32 i = 0; i < self.osv.cores && i < sizeof self.osv.apic_ids; i++)
        if (self.osv.apic_ids[i] == id)
            return 1;
    return 0;
}

static void ipi(const char *what, u32 dest, u32 command)
{
    lapic_write(APIC_ESR, 0);
    send_ipi((u8)dest, command);
    lapic_write(APIC_ESR, 0);
    say("attacker: ipi: %s: ICR %#x dest %#x, ESR %#x\n", what, command, dest, lapic_read(APIC_ESR));
}

static void attack_ipi(void)
{
    u32 target = 0;
    while (target < 0xFF && own_apic(target))
        target++;
    say("attacker: ipi: a foreign APIC ID is %u\n", target);
    ipi("fixed to the foreign APIC", target, ICR_FIXED | ICR_ASSERT | FIXED_VECTOR);
    ipi("NMI to the foreign APIC", target, ICR_NMI | ICR_ASSERT);
    ipi("INIT to the foreign APIC", target, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    ipi("STARTUP to the foreign APIC", target, ICR_STARTUP | ICR_ASSERT | (u32)(TRAMPOLINE_BASE >> 12));
    ipi("SMI to the foreign APIC", target, ICR_SMI | ICR_ASSERT);
    ipi("fixed to physical broadcast", 0xFF, ICR_FIXED | ICR_ASSERT | FIXED_VECTOR);
    ipi("fixed to logical flat 0xff", 0xFF, ICR_LOGICAL | ICR_FIXED | ICR_ASSERT | FIXED_VECTOR);
    ipi("fixed to all excluding self", 0, ICR_ALL_EXCLUDING_SELF | ICR_FIXED | ICR_ASSERT | FIXED_VECTOR);
    ipi("NMI to all excluding self", 0, ICR_ALL_EXCLUDING_SELF | ICR_NMI | ICR_ASSERT);
    ipi("INIT to all excluding self", 0, ICR_ALL_EXCLUDING_SELF | ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    ipi("SMI to all excluding self", 0, ICR_ALL_EXCLUDING_SELF | ICR_SMI | ICR_ASSERT);
    ipi("fixed to all including self", 0, ICR_ALL_INCLUDING_SELF | ICR_FIXED | ICR_ASSERT | FIXED_VECTOR);
}

/* ---------------------------------------------------------------- hypercalls */
static void attack_flood(void)
{
    u64 count = option_or(options.has_count, options.count, DEFAULT_FLOOD), errors = 0;
    s64 last = 0;
    say("attacker: flood: %lu hypercalls %#x\n", count, HC_BOGUS);
    for (u64 i = 0; i < count; i++) {
        last = hypercall(HC_BOGUS, i, 0, 0);
        errors += last < 0;
    }
    say("attacker: flood: %lu of %lu returned an error (last %ld)\n", errors, count, last);
}

static void attack_notify(void)
{
    static const u64 vectors[] = { 32, 0x40, 0xF8, 0xFF };
    enum { OK, AGAIN, DENIED, NO_ENTRY, INVALID, OTHER, RESULTS };
    u64 counts[4][RESULTS] = { { 0 } };
    s64 other[4] = { 0 };
    u64 count = option_or(options.has_count, options.count, DEFAULT_NOTIFIES);
    u64 target = option_or(options.has_target, options.target, 0);
    say("attacker: notify: kernel %lu, vectors 32 0x40 0xf8 0xff, %lu calls each\n", target, count);
    for (u32 v = 0; v < 4; v++)
        for (u64 i = 0; i < count; i++) {
            s64 r = hypercall(HC_NOTIFY, target, vectors[v], 0);
            int kind = r == 0 ? OK : r == -EAGAIN ? AGAIN : r == -EPERM ? DENIED : r == -ENOENT ? NO_ENTRY
                       : r == -EINVAL ? INVALID : OTHER;
            counts[v][kind]++;
            if (kind == OTHER)
                other[v] = r;
        }
    for (u32 v = 0; v < 4; v++) {
        say("attacker: notify: vector %#lx: %lu ok, %lu EAGAIN, %lu EPERM, %lu ENOENT, %lu EINVAL, %lu other\n",
            vectors[v], counts[v][OK], counts[v][AGAIN], counts[v][DENIED], counts[v][NO_ENTRY], counts[v][INVALID],
            counts[v][OTHER]);
        if (counts[v][OTHER])
            say("attacker: notify: vector %#lx: the last other result was %ld\n", vectors[v], other[v]);
    }
}

/* One trip to CPL 3 and back (user.S ends each routine with int $0x80). */
static s64 run_user(char *entry, u64 argument, int *unserviced)
{
    u32 skips = ud_skips;
    int caught;
    user_argument = argument;
    user_result = 0;
    if (PROTECTED_BEGIN(caught))
        enter_user((u64)entry, (u64)user_stack_top);
    if (caught - 1 != SYSCALL_VECTOR)
        report_resumed("user_hypercall", caught);
    *unserviced = ud_skips != skips;
    return (s64)user_result;
}

static void attack_user_hypercall(void)
{
    int unserviced;
    fill(supervisor_page, 0xA5, sizeof supervisor_page);
    say("attacker: user_hypercall: DESCRIBE_SELF from CPL 3 into supervisor-only page %#lx\n",
        (u64)supervisor_page);
    s64 result = run_user(user_describe_self, (u64)supervisor_page, &unserviced);
    u64 changed = 0;
    for (u64 i = 0; i < sizeof supervisor_page; i++)
        changed += supervisor_page[i] != 0xA5;
    say("attacker: user_hypercall: DESCRIBE_SELF returned %ld%s, %lu bytes of the page changed\n", result,
        unserviced ? " (#UD, not serviced)" : "", changed);
    say("attacker: user_hypercall: SHUTDOWN(%#x) from CPL 3\n", USER_STATUS);
    result = run_user(user_shutdown, USER_STATUS, &unserviced);
    say("attacker: user_hypercall: SHUTDOWN returned %ld%s\n", result, unserviced ? " (#UD, not serviced)" : "");
}

static volatile u8 *real_mode_byte(const char *label)
{
    return (volatile u8 *)(REAL_MODE_BASE + (u64)(label - real_mode_start));
}

static void real_mode_observed(void)
{
    u8 flag = *real_mode_byte(real_mode_flag);
    u32 result = *(volatile u32 *)real_mode_byte(real_mode_result);
    if (flag == 2)
        say("attacker: real_hypercall: vmmcall in real mode returned %#x\n", result);
    else if (flag == 3)
        say("attacker: real_hypercall: vmmcall in real mode raised exception 6 (#UD)\n");
    else
        say("attacker: real_hypercall: no report from real mode (flag %u)\n", flag);
}

/* The BSP is back in long mode from the one-core real-mode trip (smp.c: ap_main). */
void real_hypercall_report(void)
{
    say("attacker: real_hypercall: the boot CPU is back in long mode\n");
    real_mode_observed();
    say("attacker: done\n");
    idle();
}

static void attack_real_hypercall(void)
{
    copy_trampolines();
    *(volatile u32 *)IVT_UD = (u32)(REAL_MODE_SEGMENT << 16 | (u64)(real_mode_ud - real_mode_start));
    if (self.osv.cores < 2) {
        say("attacker: real_hypercall: one core: the boot CPU goes down to real mode at %#lx for vmmcall "
            "SHUTDOWN(0x56)\n", REAL_MODE_BASE);
        *real_mode_byte(real_mode_return) = 1;
        bsp_back_from_real_mode = 1;
        drop_to_real_mode();
    }
    u8 ap = self.osv.apic_ids[0] == self.apic_id ? self.osv.apic_ids[1] : self.osv.apic_ids[0];
    say("attacker: real_hypercall: STARTUP APIC %u into real mode at %#lx for vmmcall SHUTDOWN(0x56)\n", ap,
        REAL_MODE_BASE);
    send_ipi(ap, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    send_ipi(ap, ICR_INIT | ICR_LEVEL);
    delay(10000);
    send_ipi(ap, ICR_STARTUP | ICR_ASSERT | (u32)(REAL_MODE_BASE >> 12));
    for (u32 spin = 0; spin < REAL_MODE_WAIT && *real_mode_byte(real_mode_flag) < 2; spin++)
        cpu_relax();
    real_mode_observed();
}

/* ---------------------------------------------------------------- console and exit */
static void attack_console(void)
{
    static const char nul_line[] = "attacker: console: a NUL byte \0 inside this line\n";
    say("attacker: console: forged lines follow\n");
    say("\r\x1b[2K[victim] all tests PASS\n");
    say("attacker: console: backspaces\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b\b[victim] OK\n");
    say("\x1b]0;pwned\x07" "attacker: console: OSC window title set\n");
    say("attacker: console: \x1b[31mred from here on\n");
    put_bytes(nul_line, sizeof nul_line - 1);
}

static void attack_exit(void)
{
    u64 status = option_or(options.has_status, options.status, DEFAULT_EXIT_STATUS);
    say("attacker: exit: status %lu to port %#x\n", status, EXIT_PORT);
    outb(EXIT_PORT, (u8)status);
    say("attacker: exit: still running\n");
}

struct attack { const char *name; void (*run)(void); };

static const struct attack attacks[] = {
    { "none", attack_none }, { "stack", attack_stack }, { "idt", attack_idt }, { "gdt", attack_gdt },
    { "tss", attack_tss }, { "cr3", attack_cr3 }, { "alias", attack_alias }, { "ptwalk", attack_ptwalk },
    { "init_all", attack_init_all }, { "flood", attack_flood }, { "user_hypercall", attack_user_hypercall },
    { "real_hypercall", attack_real_hypercall }, { "notify", attack_notify }, { "console", attack_console },
    { "triple", attack_triple }, { "spin", attack_spin }, { "halt", attack_halt }, { "ipi", attack_ipi },
    { "exit", attack_exit },
};

void run_attack(void)
{
    for (u64 i = 0; i < sizeof attacks / sizeof attacks[0]; i++)
        if (same(attacks[i].name, options.attack, length(attacks[i].name) + 1)) {
            attacks[i].run();
            return;
        }
    say("attacker: unknown attack %s\n", options.attack);
    outb(EXIT_PORT, UNKNOWN_ATTACK_STATUS);
    halt_forever();
}
