/* start_kernel: the boot CPU's path from the PVH entry to the workloads. */
#include "kernel.h"

#define XEN_HVM_START_MAGIC 0x336EC578
#define PIC_MASTER_DATA 0x21
#define PIC_SLAVE_DATA 0xA1

struct hvm_start_info {
    u32 magic, version, flags, nr_modules;
    u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    u32 memmap_entries, reserved;
};

static void print_cpu(void)
{
    u32 regs[12];
    u32 a, b, c, d;
    cpuid(0x80000000, &a, &b, &c, &d);
    if (a >= 0x80000004) {
        for (u32 i = 0; i < 3; i++)
            cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
        char brand[49];
        memcpy(brand, regs, 48);
        brand[48] = 0;
        printk("CPU: %s\n", brand);
    }
}

static void numa_init(void)
{
    if (!topology.srat_found || !topology.nr_nodes) {
        printk("No NUMA configuration found\n");
        topology.nr_nodes = 1;
        return;
    }
    printk("NUMA: %u node%s\n", topology.nr_nodes, topology.nr_nodes == 1 ? "" : "s");
    for (u32 node = 0; node < topology.nr_nodes; node++) {
        u64 bytes = 0;
        u32 cpus = 0;
        for (u32 i = 0; i < topology.nr_memory; i++)
            if (topology.memory[i].node == node)
                bytes += topology.memory[i].size;
        for (u32 i = 0; i < topology.nr_cpus; i++)
            if (topology.cpus[i].node == node)
                cpus++;
        printk("NUMA: Node %u: %u CPUs, %lu MB\n", node, cpus, bytes >> 20);
    }
}

void start_kernel(u32 start_info_paddr)
{
    const struct hvm_start_info *info = (const struct hvm_start_info *)(u64)start_info_paddr;
    console_init();
    if (info->magic != XEN_HVM_START_MAGIC) {
        pr_always("minilinux: bad hvm_start_info magic 0x%x\n", info->magic);
        machine_exit(EXIT_FAILURE);
    }
    parse_cmdline(info->cmdline_paddr ? (const char *)info->cmdline_paddr : "");
    if (boot_options.bad_options) {
        pr_always("minilinux: %u malformed command-line option%s: FAILED\n", boot_options.bad_options,
                  boot_options.bad_options > 1 ? "s" : "");
        machine_exit(EXIT_FAILURE);
    }
    tsc_khz = boot_options.tsc_khz;
    printk("Linux version %s (osvemu) #1 SMP PVH\n", KERNEL_VERSION);
    printk("Command line: %s\n", boot_command_line);
    print_cpu();
    if (!info->memmap_entries)
        panic("no memory map in the PVH start info");
    e820_setup((const struct e820_entry *)info->memmap_paddr, info->memmap_entries);
    bool found = false;
    if (boot_options.acpi_off)
        printk("ACPI: disabled by acpi=off; using the MP table\n");
    else
        found = acpi_boot_init(info->version >= 1 ? info->rsdp_paddr : 0);
    if (!found) {
        topology.nr_cpus = 0;
        found = mptable_init();
    }
    if (!found) {
        pr_err("smpboot: no processor table; running on the boot CPU only\n");
        topology.nr_cpus = 1;
        topology.cpus[0] = (struct cpu_info){ read_apic_id(), 0, 0, true };
    }
    numa_init();
    printk("smpboot: Allowing %u CPUs, 0 hotplug CPUs\n", topology.nr_cpus);
    /* Mask both 8259A PICs, as Linux does before using the local APICs:
     * firmware leaves the PIT ticking through the PIC into LINT0 (virtual
     * wire), and such an ExtINT would arrive on an exception vector. */
    outb(PIC_MASTER_DATA, 0xFF);
    outb(PIC_SLAVE_DATA, 0xFF);
    trap_init();
    setup_local_apic();
    smp_prepare_boot_cpu();
    calibrate_apic_timer();
    setup_apic_timer();
    local_irq_enable();
    bool under_osv = osv_present();
    if (under_osv)
        osv_init();
    workloads_init();
    smp_init();
    if (under_osv)
        osv_attack_if_asked();
    smp_selftest();
    struct workload_result results[4];
    u32 count = 0;
    run_workloads(results, &count);
    bool ok = count > 0;
    char summary[200];
    int length = snprintf(summary, sizeof summary, "minilinux: %u CPUs online", nr_cpus_online);
    for (u32 i = 0; i < count; i++) {
        length += snprintf(summary + length, sizeof summary - (size_t)length, ", %s=%lu checksum=0x%08x",
                           results[i].name, results[i].result, results[i].checksum);
        ok = ok && results[i].ok;
    }
    pr_always("%s: %s\n", summary, ok ? "OK" : "FAILED");
    if (under_osv)
        osv_finish(results, count, ok);
    machine_exit(ok ? EXIT_SUCCESS : EXIT_FAILURE);
}
