/*
 * osvemu's interrupt delivery in C, for the common case only.
 *
 * osvemu/cpu/delivery.py delivers every interrupt and exception as the
 * processor would, in Python, at some 80 us a delivery, most of it page
 * walks and register calls.  This is the same delivery for the case a
 * running 64-bit kernel meets almost always -- IA-32e mode with paging, a
 * present 64-bit interrupt or trap gate, a present 64-bit code segment at the
 * current privilege level (no stack switch, or an IST stack), and every byte
 * it reads or writes (paging entries, the IDT and GDT entries, the TSS's IST
 * slot, the frame) in RAM of the core's view -- in one call.
 *
 * Anything else is left to Python: the function then returns 0 having read
 * only, so the Python path starts from the same state and decides, raises or
 * records exactly as it always has.  In particular every fault (a #GP, #NP or
 * #PF of delivery itself), every access outside the view (which the platform
 * must see) and every privilege change go to Python.  The checks and the
 * frame are those of delivery.py, which cites the manual for each: Intel SDM
 * Vol. 3A 6.12.1.1 and 6.14.1 (the gate and its code segment), 6.14.2-6.14.5
 * (the IA-32e frame, its 16-byte alignment and the IST), 4.5 (4-level
 * paging, with the rights of 4.6.1 as osvemu/cpu/paging.py checks them: no
 * accessed or dirty bits are written there, so none here).
 *
 * The structure below is read and written in place by the Python side
 * (osvemu/cpu/fastdelivery.py), which checks its layout against
 * osvemu_delivery_layout() when the library is loaded.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_SPANS 64
#define PAGE_SIZE 4096ULL
#define ADDRESS_MASK 0x000FFFFFFFFFF000ULL

/* Intel SDM Vol. 3A: CR0 (2.5), EFER (2.2.1), RFLAGS (2.3), paging entries
 * (Table 4-15 to 4-20), gate types (Table 3-2), descriptors (3.4.5). */
#define CR0_PE (1ULL << 0)
#define CR0_WP (1ULL << 16)
#define CR0_PG (1ULL << 31)
#define EFER_LMA (1ULL << 10)
#define RFLAGS_TF (1ULL << 8)
#define RFLAGS_IF (1ULL << 9)
#define RFLAGS_NT (1ULL << 14)
#define RFLAGS_RF (1ULL << 16)
#define RFLAGS_VM (1ULL << 17)
#define PTE_PRESENT (1ULL << 0)
#define PTE_WRITE (1ULL << 1)
#define PTE_LARGE (1ULL << 7)
#define GATE_INTERRUPT 0xE
#define GATE_TRAP 0xF
#define DESCRIPTOR_CODE (1ULL << 43)
#define DESCRIPTOR_S (1ULL << 44)
#define DESCRIPTOR_DPL_SHIFT 45
#define DESCRIPTOR_PRESENT (1ULL << 47)
#define DESCRIPTOR_L (1ULL << 53)
#define DESCRIPTOR_DB (1ULL << 54)
#define DESCRIPTOR_CONFORMING (1ULL << 42)
#define TSS64_IST1 0x24

/* uc_x86_mmr and uc_x86_msr, include/unicorn/x86.h (Unicorn 2.1.4). */
struct uc_x86_mmr {
    uint16_t selector;
    uint64_t base;
    uint32_t limit;
    uint32_t flags;
};
struct uc_x86_msr {
    uint32_t rid;
    uint64_t value;
};

typedef int (*uc_reg_function)(void *uc, int regid, void *value);
typedef int (*uc_reg_batch_function)(void *uc, int *regids, void **values, int count);

/* Guest-physical [start, end) backed by host memory at host. */
struct osvemu_span {
    uint64_t start;
    uint64_t end;
    uint8_t *host;
};

enum context_register { CONTEXT_CR0, CONTEXT_CR3, CONTEXT_CR4, CONTEXT_CS, CONTEXT_RFLAGS, CONTEXT_RIP,
                        CONTEXT_RSP, CONTEXT_SS, CONTEXT_REGISTERS };

struct osvemu_delivery {
    void *uc;
    void *uc_reg_read;
    void *uc_reg_write;
    void *uc_reg_read_batch;
    uint32_t *hflags;            /* QEMU's hidden flags, to read EFER without an SVM intercept */
    uint64_t hf_guest;           /* ... and their HF_GUEST bit */
    int64_t context_ids[CONTEXT_REGISTERS];
    int64_t idtr_id, gdtr_id, tr_id, msr_id, msr_efer;
    uint64_t span_count;         /* 0: no fast path (more mappings than spans) */
    struct osvemu_span spans[MAX_SPANS];
    /* the last delivery done here */
    uint64_t interrupted_at;     /* RIP before */
    uint64_t handler;            /* RIP after */
    uint64_t stack;              /* RSP after */
};

/* The host address of [gpa, gpa+size) when one span holds it all, else NULL. */
static uint8_t *host_of(const struct osvemu_delivery *d, uint64_t gpa, uint64_t size)
{
    for (uint64_t i = 0; i < d->span_count; i++) {
        const struct osvemu_span *span = &d->spans[i];
        if (span->start <= gpa && gpa + size <= span->end && gpa + size > gpa)
            return span->host + (gpa - span->start);
    }
    return NULL;
}

/* The 4-level walk of osvemu/cpu/paging.py translate(), supervisor access:
 * 0 when it would fault or read an entry outside the view (Python decides). */
static int translate(const struct osvemu_delivery *d, uint64_t linear, uint64_t cr0, uint64_t cr3, int write,
                     uint64_t *physical)
{
    uint64_t required = PTE_PRESENT | ((write && (cr0 & CR0_WP)) ? PTE_WRITE : 0);
    uint64_t table = cr3 & ADDRESS_MASK;
    static const int shifts[4] = {39, 30, 21, 12};
    for (int level = 0; level < 4; level++) {
        int shift = shifts[level];
        uint8_t *place = host_of(d, table + ((linear >> shift) & 0x1FF) * 8, 8);
        uint64_t entry;
        if (place == NULL)
            return 0;
        memcpy(&entry, place, 8);
        if ((entry & required) != required)
            return 0;
        if ((shift == 30 || shift == 21) && (entry & PTE_LARGE)) {
            uint64_t page_mask = (1ULL << shift) - 1;
            *physical = (entry & ADDRESS_MASK & ~page_mask) | (linear & page_mask);
            return 1;
        }
        table = entry & ADDRESS_MASK;
    }
    *physical = table | (linear & 0xFFF);
    return 1;
}

/* Up to two host pieces of a linear access (osvemu/cpu/linear.py page_pieces), all in the view's RAM. */
struct pieces {
    int count;
    uint8_t *host[2];
    uint64_t size[2];
};

static int locate(const struct osvemu_delivery *d, uint64_t linear, uint64_t size, uint64_t cr0, uint64_t cr3,
                  int write, struct pieces *out)
{
    out->count = 0;
    while (size > 0) {
        uint64_t step = PAGE_SIZE - (linear & (PAGE_SIZE - 1));
        uint64_t physical;
        if (step > size)
            step = size;
        if (out->count == 2 || !translate(d, linear, cr0, cr3, write, &physical))
            return 0;
        out->host[out->count] = host_of(d, physical, step);
        if (out->host[out->count] == NULL)
            return 0;
        out->size[out->count++] = step;
        linear += step;
        size -= step;
    }
    return 1;
}

static int read_linear(const struct osvemu_delivery *d, uint64_t linear, uint64_t size, uint64_t cr0, uint64_t cr3,
                       void *buffer)
{
    struct pieces pieces;
    uint8_t *out = buffer;
    if (!locate(d, linear, size, cr0, cr3, 0, &pieces))
        return 0;
    for (int i = 0; i < pieces.count; i++) {
        memcpy(out, pieces.host[i], pieces.size[i]);
        out += pieces.size[i];
    }
    return 1;
}

static uint64_t u64_at(const uint8_t *bytes)
{
    uint64_t value;
    memcpy(&value, bytes, 8);
    return value;
}

/* Deliver ``vector`` (with ``error_code`` when ``has_error``; ``software``:
 * an INT n) and return 1, or return 0 having changed nothing. */
int osvemu_deliver(struct osvemu_delivery *d, uint64_t vector, uint64_t error_code, int has_error, int software)
{
    uc_reg_function reg_read = (uc_reg_function)d->uc_reg_read;
    uc_reg_function reg_write = (uc_reg_function)d->uc_reg_write;
    uint64_t context[CONTEXT_REGISTERS] = {0};
    int ids[CONTEXT_REGISTERS];
    void *values[CONTEXT_REGISTERS];
    struct uc_x86_mmr idtr = {0}, gdtr = {0}, tr = {0};
    struct uc_x86_msr efer = {(uint32_t)d->msr_efer, 0};
    uint8_t gate[16], frame[48];
    int status;

    if (d->span_count == 0 || vector > 255)
        return 0;
    for (int i = 0; i < CONTEXT_REGISTERS; i++) {
        ids[i] = (int)d->context_ids[i];
        values[i] = &context[i];
    }
    if (((uc_reg_batch_function)d->uc_reg_read_batch)(d->uc, ids, values, CONTEXT_REGISTERS))
        return 0;
    uint64_t cr0 = context[CONTEXT_CR0], cr3 = context[CONTEXT_CR3];
    uint64_t cs = context[CONTEXT_CS], rflags = context[CONTEXT_RFLAGS];
    uint64_t rip = context[CONTEXT_RIP], rsp = context[CONTEXT_RSP], ss = context[CONTEXT_SS];
    if (!(cr0 & CR0_PE) || !(cr0 & CR0_PG))
        return 0;
    *d->hflags &= ~(uint32_t)d->hf_guest;  /* no SVM intercept of osvemu's own read */
    status = reg_read(d->uc, (int)d->msr_id, &efer);
    *d->hflags |= (uint32_t)d->hf_guest;
    if (status || !(efer.value & EFER_LMA))
        return 0;
    if (reg_read(d->uc, (int)d->idtr_id, &idtr) || reg_read(d->uc, (int)d->gdtr_id, &gdtr))
        return 0;

    /* The gate (SDM Vol. 3A 6.14.1). */
    if (vector * 16 + 15 > idtr.limit || !read_linear(d, idtr.base + vector * 16, 16, cr0, cr3, gate))
        return 0;
    uint64_t gate_low = u64_at(gate), gate_high = u64_at(gate + 8);
    uint64_t selector = (gate_low >> 16) & 0xFFFF;
    uint64_t ist = (gate_low >> 32) & 7;
    uint64_t type = (gate_low >> 40) & 0xF;
    uint64_t gate_dpl = (gate_low >> 45) & 3;
    uint64_t offset = (gate_low & 0xFFFF) | ((gate_low >> 32) & 0xFFFF0000ULL) | ((gate_high & 0xFFFFFFFFULL) << 32);
    uint64_t cpl = cs & 3;
    if (!(gate_low & (1ULL << 47)) || (type != GATE_INTERRUPT && type != GATE_TRAP))
        return 0;
    if (software && gate_dpl < cpl)
        return 0;

    /* Its code segment, at the current privilege level (6.12.1.1). */
    uint64_t index = selector & ~7ULL;
    uint8_t raw[8];
    if ((selector & 4) || index == 0 || index + 7 > gdtr.limit || !read_linear(d, gdtr.base + index, 8, cr0, cr3, raw))
        return 0;
    uint64_t descriptor = u64_at(raw);
    uint64_t dpl = (descriptor >> DESCRIPTOR_DPL_SHIFT) & 3;
    if (!(descriptor & DESCRIPTOR_S) || !(descriptor & DESCRIPTOR_CODE) || !(descriptor & DESCRIPTOR_L)
        || (descriptor & DESCRIPTOR_DB) || dpl > cpl || !(descriptor & DESCRIPTOR_PRESENT))
        return 0;
    if (!(descriptor & DESCRIPTOR_CONFORMING) && dpl != cpl)
        return 0;  /* a privilege change: its stack switch and CPL are Python's */

    /* The stack (6.14.2-6.14.5) and the frame: SS, RSP, RFLAGS, CS, RIP [, error code]. */
    uint64_t stack = rsp;
    if (ist) {
        if (reg_read(d->uc, (int)d->tr_id, &tr) || !read_linear(d, tr.base + TSS64_IST1 + 8 * (ist - 1), 8, cr0, cr3, raw))
            return 0;
        stack = u64_at(raw);
    }
    stack &= ~0xFULL;
    uint64_t saved[6] = {ss, rsp, rflags, cs, rip, error_code};
    int words = has_error ? 6 : 5;
    for (int i = 0; i < words; i++)  /* the last pushed lowest */
        memcpy(frame + 8 * (words - 1 - i), &saved[i], 8);
    stack -= 8 * (uint64_t)words;
    struct pieces pieces;
    if (!locate(d, stack, 8 * (uint64_t)words, cr0, cr3, 1, &pieces))
        return 0;

    uint64_t cleared = RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM | (type == GATE_INTERRUPT ? RFLAGS_IF : 0);
    uint64_t new_rflags = rflags & ~cleared;
    /* Everything checked: write the frame, then the registers, as delivery.py does. */
    const uint8_t *from = frame;
    for (int i = 0; i < pieces.count; i++) {
        memcpy(pieces.host[i], from, pieces.size[i]);
        from += pieces.size[i];
    }
    if ((selector != cs && reg_write(d->uc, (int)d->context_ids[CONTEXT_CS], &selector))
        || reg_write(d->uc, (int)d->context_ids[CONTEXT_RSP], &stack)
        || reg_write(d->uc, (int)d->context_ids[CONTEXT_RFLAGS], &new_rflags)
        || reg_write(d->uc, (int)d->context_ids[CONTEXT_RIP], &offset))
        return -1;  /* Unicorn refused a register: the caller raises, as delivery.py's write would */
    d->interrupted_at = rip;
    d->handler = offset;
    d->stack = stack;
    return 1;
}

/* The offsets of struct osvemu_delivery's fields, and its size, for the Python side to check. */
void osvemu_delivery_layout(uint64_t *out)
{
    size_t offsets[] = {
        offsetof(struct osvemu_delivery, uc), offsetof(struct osvemu_delivery, uc_reg_read),
        offsetof(struct osvemu_delivery, uc_reg_write), offsetof(struct osvemu_delivery, uc_reg_read_batch),
        offsetof(struct osvemu_delivery, hflags), offsetof(struct osvemu_delivery, hf_guest),
        offsetof(struct osvemu_delivery, context_ids), offsetof(struct osvemu_delivery, idtr_id),
        offsetof(struct osvemu_delivery, gdtr_id), offsetof(struct osvemu_delivery, tr_id),
        offsetof(struct osvemu_delivery, msr_id), offsetof(struct osvemu_delivery, msr_efer),
        offsetof(struct osvemu_delivery, span_count), offsetof(struct osvemu_delivery, spans),
        offsetof(struct osvemu_delivery, interrupted_at), offsetof(struct osvemu_delivery, handler),
        offsetof(struct osvemu_delivery, stack), sizeof(struct osvemu_delivery),
    };
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++)
        out[i] = offsets[i];
}
