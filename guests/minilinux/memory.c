/*
 * The e820 memory map from the PVH start info, and a page allocator that
 * hands out only usable RAM: everything starts reserved, the usable ranges
 * are freed, then the kernel image and the first MiB (real-mode trampoline,
 * BIOS data, firmware tables) are taken back, as Linux's memblock does.
 */
#include "kernel.h"

#define MAX_E820 64
/* The kernel identity-maps 16 GiB (boot.S); RAM above is left alone. */
#define MAPPED_LIMIT (16UL << 30)
#define MAX_PAGES (MAPPED_LIMIT / PAGE_SIZE)
#define LOW_RESERVE (1UL << 20)

extern char _kernel_start[], _kernel_end[];

static struct e820_entry e820[MAX_E820];
static u32 e820_count;
static u64 page_bitmap[MAX_PAGES / 64]; /* 1 = used or not RAM */
static u64 total_pages, free_page_count, highest_page;
static spinlock_t page_lock = SPINLOCK_INIT;
u64 max_mapped_address = MAPPED_LIMIT;

static const char *e820_type_name(u32 type)
{
    switch (type) {
    case E820_RAM: return "usable";
    case E820_RESERVED: return "reserved";
    case E820_ACPI: return "ACPI data";
    case E820_NVS: return "ACPI NVS";
    case E820_UNUSABLE: return "unusable";
    default: return "type ?";
    }
}

static void mark(u64 first, u64 last, bool used)
{
    for (u64 page = first; page < last && page < MAX_PAGES; page++) {
        u64 bit = 1UL << (page % 64);
        bool is_used = page_bitmap[page / 64] & bit;
        if (used && !is_used) {
            page_bitmap[page / 64] |= bit;
            free_page_count--;
        } else if (!used && is_used) {
            page_bitmap[page / 64] &= ~bit;
            free_page_count++;
        }
    }
}

bool e820_is_ram(u64 start, u64 end)
{
    for (u32 i = 0; i < e820_count; i++)
        if (e820[i].type == E820_RAM && e820[i].addr <= start && end <= e820[i].addr + e820[i].size)
            return true;
    return false;
}

void e820_setup(const struct e820_entry *map, u32 count)
{
    if (count > MAX_E820) {
        pr_err("e820: %u entries, only the first %u are used\n", count, MAX_E820);
        count = MAX_E820;
    }
    memcpy(e820, map, count * sizeof *map);
    e820_count = count;
    printk("BIOS-provided physical RAM map:\n");
    for (u32 i = 0; i < count; i++)
        printk("BIOS-e820: [mem 0x%016lx-0x%016lx] %s\n", e820[i].addr, e820[i].addr + e820[i].size - 1,
               e820_type_name(e820[i].type));
    memset(page_bitmap, 0xFF, sizeof page_bitmap);
    free_page_count = 0;
    for (u32 i = 0; i < count; i++) {
        if (e820[i].type != E820_RAM)
            continue;
        u64 first = ALIGN_UP(e820[i].addr, PAGE_SIZE) / PAGE_SIZE;
        u64 last = (e820[i].addr + e820[i].size) / PAGE_SIZE;
        if (e820[i].addr + e820[i].size > MAPPED_LIMIT)
            pr_err("e820: RAM above %lu GiB is not mapped and left unused\n", MAPPED_LIMIT >> 30);
        if (last > MAX_PAGES)
            last = MAX_PAGES;
        if (last > first) {
            total_pages += last - first;
            if (last > highest_page)
                highest_page = last;
        }
        mark(first, last, false);
    }
    mark(0, LOW_RESERVE / PAGE_SIZE, true);
    mark((u64)_kernel_start / PAGE_SIZE, ALIGN_UP((u64)_kernel_end, PAGE_SIZE) / PAGE_SIZE, true);
    printk("Memory: %luK/%luK available (%luK kernel code and data, %luK reserved low memory)\n",
           free_page_count * 4, total_pages * 4, ((u64)_kernel_end - (u64)_kernel_start) / 1024,
           LOW_RESERVE / 1024);
}

/* ``count`` contiguous zeroed pages, or NULL. */
void *alloc_pages(u32 count)
{
    spin_lock(&page_lock);
    u64 run = 0;
    for (u64 page = LOW_RESERVE / PAGE_SIZE; page < highest_page; page++) {
        if (page_bitmap[page / 64] & (1UL << (page % 64))) {
            run = 0;
            continue;
        }
        if (++run == count) {
            u64 first = page + 1 - count;
            mark(first, page + 1, true);
            spin_unlock(&page_lock);
            void *p = (void *)(first * PAGE_SIZE);
            memset(p, 0, count * PAGE_SIZE);
            return p;
        }
    }
    spin_unlock(&page_lock);
    return NULL;
}

void free_pages(void *p, u32 count)
{
    u64 first = (u64)p / PAGE_SIZE;
    spin_lock(&page_lock);
    mark(first, first + count, false);
    spin_unlock(&page_lock);
}

u64 memory_total_kib(void) { return total_pages * 4; }
u64 memory_free_kib(void) { return free_page_count * 4; }
