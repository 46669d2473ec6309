/*
 * attacker: boot, find this kernel's cores and RAM (DESCRIBE_SELF, or the
 * PVH e820 map without OSV), pick a foreign guest-physical address and run
 * the attack the command line names (attacks.c).
 */
#include "attacker.h"

#define XEN_HVM_START_MAGIC 0x336EC578
#define E820_RAM 1
#define PIC1_DATA 0x21
#define PIC2_DATA 0xA1
#define APIC_HOLE 0xE0000000UL /* channels from here up, then the IOAPIC and local APIC pages */

struct hvm_start_info {
    u32 magic, version, flags, nr_modules;
    u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    u32 memmap_entries, reserved;
};

struct hvm_memmap_entry { u64 addr, size; u32 type, reserved; };

struct self self;
struct options options;

/* The usable e820 range that holds the image (it is loaded at 1 MiB). */
static void ram_from_e820(const struct hvm_start_info *info)
{
    const struct hvm_memmap_entry *map = (const struct hvm_memmap_entry *)info->memmap_paddr;
    for (u32 i = 0; info->memmap_paddr && i < info->memmap_entries; i++)
        if (map[i].type == E820_RAM && map[i].addr <= MiB && MiB < map[i].addr + map[i].size) {
            self.ram_base = map[i].addr;
            self.ram_end = map[i].addr + map[i].size;
        }
}

static void describe_self(const struct hvm_start_info *info)
{
    u32 skips = ud_skips;
    s64 result = hypercall(HC_DESCRIBE_SELF, (u64)&self.osv, sizeof self.osv, 0);
    self.osv_present = ud_skips == skips && result >= (s64)sizeof self.osv;
    if (self.osv_present) {
        self.ram_base = self.osv.ram_base;
        self.ram_end = self.osv.ram_base + self.osv.ram_bytes;
    } else {
        say("attacker: DESCRIBE_SELF failed (%ld): no OSV, RAM from e820\n", result);
        fill(&self.osv, 0, sizeof self.osv);
        self.osv.count = self.osv.cores = 1;
        self.osv.apic_ids[0] = self.apic_id;
        ram_from_e820(info);
    }
    /* The first page past RAM rounded up to 1 GiB: nobody's memory in this kernel's space. */
    self.foreign = ((self.ram_end + GiB - 1) & ~(GiB - 1)) + 0x1000;
    if (options.has_foreign && options.foreign < 4 * GiB)
        self.foreign = options.foreign; /* the identity map, and so this guest, ends at 4 GiB */
    else if (self.foreign >= APIC_HOLE)
        say("attacker: RAM reaches %#lx: no foreign address below the APIC hole\n", self.ram_end);
}

static void print_self(void)
{
    char ids[64 * 4 + 1];
    u64 n = 0;
    for (u32 i = 0; i < self.osv.cores && i < sizeof self.osv.apic_ids; i++) {
        u8 id = self.osv.apic_ids[i];
        if (i)
            ids[n++] = ' ';
        if (id >= 100)
            ids[n++] = (char)('0' + id / 100);
        if (id >= 10)
            ids[n++] = (char)('0' + id / 10 % 10);
        ids[n++] = (char)('0' + id % 10);
    }
    ids[n] = 0;
    say("attacker: kernel %u of %u, %u cores (APIC %s), RAM %#lx-%#lx, foreign %#lx\n", self.osv.id,
        self.osv.count, self.osv.cores, ids, self.ram_base, self.ram_end, self.foreign);
}

void kmain(u32 start_info_paddr)
{
    const struct hvm_start_info *info = (const struct hvm_start_info *)(u64)start_info_paddr;
    uart_init();
    outb(PIC1_DATA, 0xFF); /* mask every 8259 input: a PC's timer would otherwise arrive as vector 8 */
    outb(PIC2_DATA, 0xFF);
    cpu_init();
    map_user_pages();
    self.apic_id = (u8)(lapic_read(APIC_ID) >> 24);
    if (info->magic != XEN_HVM_START_MAGIC) {
        say("attacker: bad start info magic %#x\n", info->magic);
        halt_forever();
    }
    parse_cmdline((const char *)info->cmdline_paddr, &options);
    say("attacker: attack=%s\n", options.attack);
    describe_self(info);
    print_self();
    run_attack();
    say("attacker: done\n");
    idle();
}
