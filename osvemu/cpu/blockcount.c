/*
 * osvemu's block counter: instructions counted per translation block, in C.
 *
 * Unicorn counts the instructions of a counted emu_start with a code hook
 * called before every instruction (hook_count_cb and helper_uc_tracecode in
 * Unicorn's uc.c), which makes counted execution many times slower than
 * uncounted.  This counter is instead Unicorn's only UC_HOOK_BLOCK hook,
 * which Unicorn compiles into every translation block as a direct call
 * (gen_uc_tracecode in qemu/include/tcg/tcg-op.h) placed before the block's
 * exit check (translator_loop in qemu/accel/tcg/translator.c).  At each
 * block start it asks Unicorn for the block's instruction count
 * (UC_CTL_TB_REQUEST_CACHE, answered from QEMU's own TranslationBlock by
 * uc_gen_tb in qemu/accel/tcg/translate-all.c) and either adds it to the
 * slice's count or, when the block would take the slice past its budget or
 * a stop was requested, calls uc_emu_stop: the exit check that follows then
 * leaves with RIP at the block's first instruction, none of it executed.
 * Counts already asked for in the slice are kept in a small table, by the
 * block's address and length (the size argument, which Unicorn patches in
 * after translation); the table is forgotten at every slice start
 * (``generation``), so the count of code rewritten under a core is asked for
 * again by the next slice at the latest.
 *
 * So a slice ends only where a block starts, after exactly the instructions
 * of the blocks it ran, and a run is as reproducible as Unicorn's
 * per-instruction count makes it: block boundaries follow from the guest's
 * code and control flow alone.  The Python side (osvemu/cpu/blockcounter.py)
 * reads and writes the structure below in place; its layout is checked
 * against osvemu_block_counter_layout() when the library is loaded.
 *
 * The library has no Python entry point: it is built by setup.py as an
 * extension module only so that pip builds it at install, and is loaded
 * with ctypes.
 */

#include <stddef.h>
#include <stdint.h>

/* uc_tb, include/unicorn/unicorn.h (Unicorn 2.1.4). */
struct uc_tb {
    uint64_t pc;
    uint16_t icount;
    uint16_t size;
};

typedef int (*uc_ctl_function)(void *uc, int control, ...);

#define KNOWN_BLOCKS 1024 /* a power of two */
#define KNOWN_PLACES 512  /* a power of two */
#define UC_X86_REG_RIP 41 /* include/unicorn/x86.h */

typedef int (*uc_reg_read_function)(void *uc, int regid, void *value);
typedef int (*instruction_callback)(void *uc, void *data);

/* Where an RDTSC is in its block: its offset, in instructions (64-bit code only). */
struct known_place {
    uint64_t block_pc;
    uint64_t rip;
    uint64_t offset;
    uint64_t generation;
};

struct known_block {
    uint64_t pc;
    uint32_t size;
    uint32_t generation;
    uint64_t instructions;
};
typedef int (*uc_emu_stop_function)(void *uc);

struct osvemu_block_counter {
    uint64_t retired;            /* instructions of the blocks entered in this slice */
    uint64_t budget;             /* 0: none; else no block may take retired past it (the first always runs) */
    volatile uint64_t stop;      /* nonzero: stop where the next block starts (set from any thread) */
    uint64_t block_pc;           /* the block entered last */
    uint64_t block_instructions; /* ... its instruction count */
    uint64_t block_size;         /* ... and its length in bytes */
    uint64_t blocks;             /* blocks entered in this slice */
    uint64_t unknown_blocks;     /* blocks Unicorn could not describe (counted as one instruction) */
    void *uc_ctl;                /* libunicorn's uc_ctl */
    void *uc_emu_stop;           /* libunicorn's uc_emu_stop */
    int64_t request_cache;       /* UC_CTL_READ_WRITE(UC_CTL_TB_REQUEST_CACHE, 2) */
    uint64_t generation;         /* the table's entries of other generations are forgotten */
    /* RDTSC, answered here when its place is known (else by the Python hook, ``fallback``):
     * the TSC is tsc_base + tsc_per_instruction x (instructions of the slice up to and with it). */
    uint64_t tsc_base;
    uint64_t tsc_per_instruction;
    uint64_t tsc_native;         /* 0: always the fallback (an unbounded slice, whose time stands) */
    uint64_t exact_counter;      /* the address of Unicorn's emu_counter when counting exactly, else 0 */
    uint64_t rax;                /* the addresses of env->regs[R_EAX] and [R_EDX] */
    uint64_t rdx;
    void *uc_reg_read;
    void *fallback;
    uint64_t rdtsc_answered;
    uint64_t place_generation;
    struct known_block known[KNOWN_BLOCKS];
    struct known_place places[KNOWN_PLACES];
};

static uint64_t block_instructions(struct osvemu_block_counter *counter, void *uc, uint64_t address,
                                   uint32_t size, uint64_t *bytes)
{
    struct known_block *known = &counter->known[(address ^ (address >> 10)) & (KNOWN_BLOCKS - 1)];
    struct uc_tb block = {0, 0, 0};

    if (known->pc == address && known->size == size && known->generation == (uint32_t)counter->generation) {
        *bytes = size;
        return known->instructions;
    }
    if (((uc_ctl_function)counter->uc_ctl)(uc, (int)counter->request_cache, address, &block) != 0 ||
        block.icount == 0) {
        counter->unknown_blocks++;
        *bytes = size;
        return 1;
    }
    known->pc = address;
    known->size = size;
    known->generation = (uint32_t)counter->generation;
    known->instructions = block.icount;
    *bytes = block.size;
    return block.icount;
}

void osvemu_count_block(void *uc, uint64_t address, uint32_t size, void *data)
{
    struct osvemu_block_counter *counter = data;
    uint64_t instructions, bytes;

    if (counter->stop) {
        ((uc_emu_stop_function)counter->uc_emu_stop)(uc);
        return;
    }
    instructions = block_instructions(counter, uc, address, size, &bytes);
    if (counter->budget && counter->retired && counter->retired + instructions > counter->budget) {
        ((uc_emu_stop_function)counter->uc_emu_stop)(uc);
        return;
    }
    counter->retired += instructions;
    counter->block_pc = address;
    counter->block_instructions = instructions;
    counter->block_size = bytes;
    counter->blocks++;
}

/* UC_HOOK_INSN for RDTSC (helper_rdtsc in qemu/target/i386/misc_helper.c; Unicorn
 * has checked CR4.TSD against CPL): EDX:EAX = the virtual TSC, returning 1 to skip
 * QEMU's read of the host's counter. */
int osvemu_rdtsc(void *uc, void *data)
{
    struct osvemu_block_counter *counter = data;
    uint64_t instructions, tsc;

    if (!counter->tsc_native)
        return ((instruction_callback)counter->fallback)(uc, data);
    if (counter->exact_counter) {
        instructions = *(uint64_t *)(uintptr_t)counter->exact_counter;
    } else {
        uint64_t rip = 0;
        struct known_place *place;
        ((uc_reg_read_function)counter->uc_reg_read)(uc, UC_X86_REG_RIP, &rip);
        place = &counter->places[(rip ^ (rip >> 9)) & (KNOWN_PLACES - 1)];
        if (place->rip != rip || place->block_pc != counter->block_pc ||
            place->generation != counter->place_generation)
            return ((instruction_callback)counter->fallback)(uc, data);
        instructions = counter->retired - counter->block_instructions + place->offset + 1;
    }
    tsc = counter->tsc_base + counter->tsc_per_instruction * instructions;
    *(uint64_t *)(uintptr_t)counter->rax = tsc & 0xFFFFFFFFu;
    *(uint64_t *)(uintptr_t)counter->rdx = tsc >> 32;
    counter->rdtsc_answered++;
    return 1;
}

/* The offsets of the structure's fields, in declaration order, and its size. */
void osvemu_block_counter_layout(uint64_t *offsets)
{
    offsets[0] = offsetof(struct osvemu_block_counter, retired);
    offsets[1] = offsetof(struct osvemu_block_counter, budget);
    offsets[2] = offsetof(struct osvemu_block_counter, stop);
    offsets[3] = offsetof(struct osvemu_block_counter, block_pc);
    offsets[4] = offsetof(struct osvemu_block_counter, block_instructions);
    offsets[5] = offsetof(struct osvemu_block_counter, block_size);
    offsets[6] = offsetof(struct osvemu_block_counter, blocks);
    offsets[7] = offsetof(struct osvemu_block_counter, unknown_blocks);
    offsets[8] = offsetof(struct osvemu_block_counter, uc_ctl);
    offsets[9] = offsetof(struct osvemu_block_counter, uc_emu_stop);
    offsets[10] = offsetof(struct osvemu_block_counter, request_cache);
    offsets[11] = offsetof(struct osvemu_block_counter, generation);
    offsets[12] = offsetof(struct osvemu_block_counter, tsc_base);
    offsets[13] = offsetof(struct osvemu_block_counter, tsc_per_instruction);
    offsets[14] = offsetof(struct osvemu_block_counter, tsc_native);
    offsets[15] = offsetof(struct osvemu_block_counter, exact_counter);
    offsets[16] = offsetof(struct osvemu_block_counter, rax);
    offsets[17] = offsetof(struct osvemu_block_counter, rdx);
    offsets[18] = offsetof(struct osvemu_block_counter, uc_reg_read);
    offsets[19] = offsetof(struct osvemu_block_counter, fallback);
    offsets[20] = offsetof(struct osvemu_block_counter, rdtsc_answered);
    offsets[21] = offsetof(struct osvemu_block_counter, place_generation);
    offsets[22] = sizeof(struct osvemu_block_counter);
}
