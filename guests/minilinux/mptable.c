/*
 * The MultiProcessor Specification 1.4 tables, used with acpi=off: the
 * floating pointer is searched for in the first KiB of the EBDA, the last KiB
 * of base memory and 0xF0000-0xFFFFF (section 4), then the configuration
 * table's processor entries (4.3.1) give the CPUs.
 */
#include "kernel.h"

struct __attribute__((packed)) mpf {
    char signature[4];
    u32 physptr;
    u8 length, specification, checksum, feature1;
    u8 feature2[4];
};

struct __attribute__((packed)) mpc_header {
    char signature[4];
    u16 length;
    u8 spec, checksum;
    char oem[8], product[12];
    u32 oem_pointer;
    u16 oem_size, count;
    u32 lapic;
    u16 ext_length;
    u8 ext_checksum, reserved;
};

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
#define CPU_ENABLED 1
#define CPU_BOOTPROCESSOR 2

static struct mpf *scan(u64 base, u64 length)
{
    for (u64 a = base; a + 16 <= base + length; a += 16) {
        struct mpf *mpf = (struct mpf *)a;
        if (!memcmp(mpf->signature, "_MP_", 4) && mpf->length == 1 && checksum_ok(mpf, 16))
            return mpf;
    }
    return NULL;
}

bool mptable_init(void)
{
    u64 ebda = (u64)*(volatile u16 *)0x40E << 4;
    u64 base_kib = *(volatile u16 *)0x413;
    struct mpf *mpf = NULL;
    if (ebda)
        mpf = scan(ebda, 1024);
    if (!mpf && base_kib)
        mpf = scan((base_kib - 1) * 1024, 1024);
    if (!mpf)
        mpf = scan(0xF0000, 0x10000);
    if (!mpf) {
        pr_err("MPTABLE: no MP floating pointer found\n");
        return false;
    }
    printk("found SMP MP-table at [mem 0x%08lx-0x%08lx]\n", (u64)mpf, (u64)mpf + 15);
    struct mpc_header *mpc = (struct mpc_header *)(u64)mpf->physptr;
    if (!mpf->physptr || memcmp(mpc->signature, "PCMP", 4) || !checksum_ok(mpc, mpc->length)) {
        pr_err("MPTABLE: bad configuration table; default configurations are not supported\n");
        return false;
    }
    char oem[9], product[13];
    memcpy(oem, mpc->oem, 8); oem[8] = 0;
    memcpy(product, mpc->product, 12); product[12] = 0;
    printk("MPTABLE: OEM ID: %s Product ID: %s APIC at: 0x%X\n", oem, product, mpc->lapic);
    topology.lapic_address = mpc->lapic;
    const u8 *p = (const u8 *)(mpc + 1);
    for (u32 i = 0; i < mpc->count; i++) {
        switch (p[0]) {
        case MP_PROCESSOR:
            if (p[3] & CPU_ENABLED) {
                if (topology.nr_cpus < MAX_CPUS) {
                    struct cpu_info *cpu = &topology.cpus[topology.nr_cpus++];
                    cpu->apic_id = p[1];
                    cpu->acpi_id = (u8)(topology.nr_cpus - 1);
                    cpu->present = true;
                }
                if (p[3] & CPU_BOOTPROCESSOR)
                    topology.bsp_apic_id = p[1];
                printk("MPTABLE: processor APIC ID %u%s\n", p[1], p[3] & CPU_BOOTPROCESSOR ? " (boot processor)" : "");
            }
            p += 20;
            break;
        case MP_IOAPIC:
            topology.ioapic_id = p[1];
            topology.ioapic_address = *(const u32 *)(p + 4);
            printk("MPTABLE: IOAPIC ID %u at 0x%lx\n", p[1], topology.ioapic_address);
            p += 8;
            break;
        case MP_BUS: case MP_INTSRC: case MP_LINTSRC:
            p += 8;
            break;
        default:
            pr_err("MPTABLE: unknown entry type %u; stopping\n", p[0]);
            return topology.nr_cpus > 0;
        }
    }
    return topology.nr_cpus > 0;
}
