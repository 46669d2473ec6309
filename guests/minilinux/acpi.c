/*
 * ACPI table discovery (ACPI 6.4 5.2): the RSDP from the PVH start info or
 * by scanning 0xE0000-0xFFFFF, the XSDT (or RSDT), then the MADT for the
 * processors and APICs (5.2.12) and the SRAT for NUMA affinity (5.2.16).
 * A table whose checksum is wrong is rejected, as Linux does.
 */
#include "kernel.h"

struct topology topology;

struct __attribute__((packed)) rsdp {
    char signature[8];
    u8 checksum;
    char oem_id[6];
    u8 revision;
    u32 rsdt;
    u32 length;
    u64 xsdt;
    u8 extended_checksum;
    u8 reserved[3];
};

struct __attribute__((packed)) sdt_header {
    char signature[4];
    u32 length;
    u8 revision, checksum;
    char oem_id[6], oem_table_id[8];
    u32 oem_revision, creator_id, creator_revision;
};

enum { MADT_LOCAL_APIC = 0, MADT_IO_APIC = 1, MADT_OVERRIDE = 2, MADT_LAPIC_NMI = 4 };
enum { SRAT_PROCESSOR = 0, SRAT_MEMORY = 1 };

bool checksum_ok(const void *p, u32 len)
{
    const u8 *b = p;
    u8 sum = 0;
    for (u32 i = 0; i < len; i++)
        sum += b[i];
    return sum == 0;
}

static struct rsdp *find_rsdp(u64 hint)
{
    if (hint && !memcmp((void *)hint, "RSD PTR ", 8) && checksum_ok((void *)hint, 20))
        return (struct rsdp *)hint;
    for (u64 a = 0xE0000; a < 0x100000; a += 16)
        if (!memcmp((void *)a, "RSD PTR ", 8) && checksum_ok((void *)a, 20))
            return (struct rsdp *)a;
    return NULL;
}

static void print_table(const struct sdt_header *t, u64 address)
{
    char signature[5], oem[7], table_id[9];
    memcpy(signature, t->signature, 4); signature[4] = 0;
    memcpy(oem, t->oem_id, 6); oem[6] = 0;
    memcpy(table_id, t->oem_table_id, 8); table_id[8] = 0;
    printk("ACPI: %s 0x%016lx %06x (v%02u %s %s %08x)\n", signature, address, t->length, t->revision, oem,
           table_id, t->oem_revision);
}

/* Every table the root table lists; those with a bad checksum are rejected. */
static struct sdt_header *find_table(struct rsdp *rsdp, const char *signature)
{
    bool xsdt = rsdp->revision >= 2 && rsdp->xsdt;
    struct sdt_header *root = xsdt ? (struct sdt_header *)rsdp->xsdt : (struct sdt_header *)(u64)rsdp->rsdt;
    u32 width = xsdt ? 8 : 4;
    u32 count = (root->length - sizeof *root) / width;
    for (u32 i = 0; i < count; i++) {
        const u8 *entry = (const u8 *)(root + 1) + i * width;
        u64 address = 0;
        for (u32 b = 0; b < width; b++)
            address |= (u64)entry[b] << (8 * b);
        struct sdt_header *table = (struct sdt_header *)address;
        if (memcmp(table->signature, signature, 4))
            continue;
        if (!checksum_ok(table, table->length)) {
            u8 sum = 0;
            for (u32 j = 0; j < table->length; j++)
                sum += ((u8 *)table)[j];
            pr_err("ACPI BIOS Error (bug): Invalid checksum in table [%s] at 0x%lx (sum 0x%02x); table rejected\n",
                   signature, address, sum);
            return NULL;
        }
        return table;
    }
    return NULL;
}

static void parse_madt(struct sdt_header *madt)
{
    const u8 *p = (const u8 *)madt + 44, *end = (const u8 *)madt + madt->length;
    topology.lapic_address = *(const u32 *)((const u8 *)madt + 36);
    printk("ACPI: Local APIC address 0x%08lx\n", topology.lapic_address);
    while (p + 2 <= end && p[1] >= 2) {
        switch (p[0]) {
        case MADT_LOCAL_APIC:
            if (*(const u32 *)(p + 4) & 1) {
                if (topology.nr_cpus < MAX_CPUS) {
                    struct cpu_info *cpu = &topology.cpus[topology.nr_cpus++];
                    cpu->acpi_id = p[2];
                    cpu->apic_id = p[3];
                    cpu->present = true;
                } else {
                    pr_err("ACPI: NR_CPUS/possible_cpus limit of %u reached; processor %u ignored\n",
                           MAX_CPUS, p[3]);
                }
            }
            break;
        case MADT_IO_APIC:
            topology.ioapic_id = p[2];
            topology.ioapic_address = *(const u32 *)(p + 4);
            printk("IOAPIC[0]: apic_id %u, address 0x%lx, GSI 0-23\n", p[2], topology.ioapic_address);
            break;
        case MADT_OVERRIDE:
            printk("ACPI: INT_SRC_OVR (bus %u bus_irq %u global_irq %u %s %s)\n", p[2], p[3],
                   *(const u32 *)(p + 4), (*(const u16 *)(p + 8) & 3) == 1 ? "high" : "dfl",
                   (*(const u16 *)(p + 8) >> 2 & 3) == 3 ? "level" : "dfl");
            break;
        case MADT_LAPIC_NMI:
            printk("ACPI: LAPIC_NMI (acpi_id[0x%02x] lint[0x%x])\n", p[2], p[5]);
            break;
        }
        p += p[1];
    }
}

static void parse_srat(struct sdt_header *srat)
{
    const u8 *p = (const u8 *)srat + 48, *end = (const u8 *)srat + srat->length;
    while (p + 2 <= end && p[1] >= 2) {
        if (p[0] == SRAT_PROCESSOR && (*(const u32 *)(p + 4) & 1)) {
            u32 domain = p[2] | (u32)p[9] << 8 | (u32)p[10] << 16 | (u32)p[11] << 24;
            for (u32 i = 0; i < topology.nr_cpus; i++)
                if (topology.cpus[i].apic_id == p[3])
                    topology.cpus[i].node = (u8)domain;
            printk("SRAT: PXM %u -> APIC 0x%02x -> Node %u\n", domain, p[3], domain);
            if (domain + 1 > topology.nr_nodes)
                topology.nr_nodes = domain + 1;
        } else if (p[0] == SRAT_MEMORY && (*(const u32 *)(p + 28) & 1)) {
            u32 domain = *(const u32 *)(p + 2);
            u64 base = *(const u64 *)(p + 8), size = *(const u64 *)(p + 16);
            printk("ACPI: SRAT: Node %u PXM %u [mem 0x%08lx-0x%08lx]\n", domain, domain, base, base + size - 1);
            if (topology.nr_memory < ARRAY_SIZE(topology.memory))
                topology.memory[topology.nr_memory++] = (struct node_memory){ base, size, domain };
            if (domain + 1 > topology.nr_nodes)
                topology.nr_nodes = domain + 1;
        }
        p += p[1];
    }
    topology.srat_found = true;
}

bool acpi_boot_init(u64 rsdp_hint)
{
    struct rsdp *rsdp = find_rsdp(rsdp_hint);
    if (!rsdp) {
        pr_err("ACPI: no RSDP found\n");
        return false;
    }
    char oem[7];
    memcpy(oem, rsdp->oem_id, 6);
    oem[6] = 0;
    printk("ACPI: RSDP 0x%016lx %06x (v%02u %s)\n", (u64)rsdp, rsdp->revision >= 2 ? rsdp->length : 20,
           rsdp->revision, oem);
    if (rsdp->revision >= 2 && !checksum_ok(rsdp, rsdp->length)) {
        pr_err("ACPI BIOS Error (bug): Invalid RSDP extended checksum; using the RSDT\n");
        rsdp->xsdt = 0;
    }
    struct sdt_header *root = rsdp->revision >= 2 && rsdp->xsdt ? (struct sdt_header *)rsdp->xsdt
                                                                : (struct sdt_header *)(u64)rsdp->rsdt;
    if (!checksum_ok(root, root->length)) {
        pr_err("ACPI BIOS Error (bug): Invalid checksum in the root table; ACPI disabled\n");
        return false;
    }
    print_table(root, (u64)root);
    struct sdt_header *madt = find_table(rsdp, "APIC");
    struct sdt_header *srat = find_table(rsdp, "SRAT");
    if (madt)
        print_table(madt, (u64)madt);
    if (srat)
        print_table(srat, (u64)srat);
    if (!madt) {
        pr_err("ACPI: no valid MADT; falling back to the MP table\n");
        return false;
    }
    parse_madt(madt);
    if (srat)
        parse_srat(srat);
    topology.from_acpi = true;
    return topology.nr_cpus > 0;
}
