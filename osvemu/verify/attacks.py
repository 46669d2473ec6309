"""Attacking kernels: seeded programs of privileged operations, generated
from a grammar and assembled with keystone (issue 11, part 5).

Each program is the kernel "attacker" of the campaign machine
(:mod:`osvemu.verify.campaign`): two cores beside an honest kernel under
OSV.  Its BSP runs a fixed runtime, then the operations one after another;
its AP sets up and waits for interrupts.  :func:`generate` is a pure
function of ``(seed, index)``: the same pair gives the same source on any
host, in any worker, in any order.

The attacker's guest-physical layout (all in its own 8 MiB of RAM from
1 MiB, or in its private low MiB):

* ``CODE_BASE`` the runtime, then ``op_0`` .. ``op_N-1``, then ``done``;
* ``DATA`` the counter cells: every operation starts by incrementing
  ``COUNTER`` and storing the address of the next operation in ``RECOVER``;
* every vector of the BSP's IDT enters ``bsp_trap``, which takes a fresh
  stack, counts the exception in ``FAULTS`` and jumps to ``[RECOVER]``: one
  fault skips the rest of its operation, not the program;
* the AP's own IDT (``AP_IDT``) enters ``ap_trap``: EOI, count, halt again.

Operations never write the code, the counter page or the paging and
descriptor tables by accident (random addresses are drawn outside them);
the operations that attack those tables (``page_table``,
``descriptor_table``, ``smc``) do so on purpose.  A program may still end
early: a triple fault, INIT to itself, SHUTDOWN, the exit port, a stop for
a violation under ``on_violation = "stop"``.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

from keystone import KS_ARCH_X86, KS_MODE_64, Ks, KsError

from osvemu.errors import ConfigError
from osvemu.osv.hypercalls import Hypercall
from osvemu.platform import layout
from osvemu.platform.icr import ICR_DEST_MODE_LOGICAL, ICR_LEVEL_ASSERT, ICR_SHORTHAND_SHIFT, ICR_TRIGGER_LEVEL
from osvemu.snippets import CODE_BASE, SNIPPET_GDT, SNIPPET_IDT, SNIPPET_PD, SNIPPET_PDPT, SNIPPET_PML4, SNIPPET_TSS

# ---------------------------------------------------------------- the machine the programs are written for
#: 1 socket x 4 cores: the honest kernel on APIC IDs 0-1, the attacker on 2-3.
HONEST_APIC_IDS = (0, 1)
ATTACKER_APIC_IDS = (2, 3)
ATTACKER_AP_CORE = 3  # machine core index (the snippet start state puts it in RDI)
KERNEL_RAM = 8 * layout.MiB
RAM_END = layout.LOW_MEMORY_END + KERNEL_RAM  # every kernel's guest RAM is [1 MiB, RAM_END)
CHANNEL_BASE = 0xE000_0000
CHANNEL_SIZE = 4 * layout.KiB
#: Vectors the honest kernel takes (its IPI handlers): favourite targets.
HONEST_VECTORS = (0x40, 0x41, 0x42, 0x43)

# ---------------------------------------------------------------- the attacker's own memory
OPS_LIMIT = 0x1E0000  # the code (runtime and operations) must end below this
AP_IDT = 0x1E0000
PAGE_TABLE = 0x1E1000  # a 4 KiB page table for 4 KiB mappings
USER_STACK = 0x1EC000
AP_STACK = 0x1ED000
RECOVERY_STACK = 0x1EF000
DATA = 0x1F0000
COUNTER = DATA + 0x00  # operations started
RECOVER = DATA + 0x08  # where bsp_trap resumes: the next operation
FAULTS = DATA + 0x10  # exceptions and interrupts the BSP took
AP_WAKES = DATA + 0x18  # interrupts the AP took
PSEUDO = DATA + 0x40  # a pseudo-descriptor for lgdt / lidt
AP_PSEUDO = DATA + 0x50
GDT = 0x1F1000  # the snippet GDT plus user segments
GDT_LIMIT = 7 * 8 - 1
USER_CS = 0x28 | 3
USER_DS = 0x30 | 3
BUFFER = 0x1F2000  # hypercall buffers, two pages
#: Guest-physical ranges random writes avoid: the snippet tables, the stacks, the code and the cells above.
PROTECTED = ((0, 0xA000), (0x60000, 0x70000), (CODE_BASE, 0x200000))
#: The snippet's identity map: 2 MiB pages, present, writable, user.
LARGE_LEAF = 0x87
TABLE_ENTRY = 0x7
#: Linear windows page-table edits remap: 2 GiB up, where nothing the program uses lives.
WINDOW_BASE = 0x8000_0000
WINDOWS = 256
LAPIC = layout.LAPIC_BASE
IOAPIC = layout.IOAPIC_BASE
APIC_BASE_MSR_VALUE = LAPIC | 0x900  # enabled, BSP of its kernel


@dataclass(frozen=True)
class AttackProgram:
    seed: int
    index: int
    source: str  # keystone assembly, loaded at CODE_BASE
    operations: tuple[str, ...]  # the kind of each operation, in program order
    on_violation: str  # the attacker's policy: "log" or "stop"

    @property
    def reproducer(self) -> str:
        return f"osvemu verify --replay {self.seed}:{self.index}"

    def assemble(self) -> bytes:
        return assemble(self.source)


def assemble(source: str, base: int = CODE_BASE) -> bytes:
    try:
        encoding, _ = _keystone().asm(source, base)
    except KsError as error:
        raise ConfigError(f"cannot assemble attack program: {error}") from None
    code = bytes(encoding or b"")
    if base + len(code) > OPS_LIMIT:
        raise ConfigError(f"attack program of {len(code)} bytes does not fit below {OPS_LIMIT:#x}")
    return code


@functools.cache
def _keystone() -> Ks:
    return Ks(KS_ARCH_X86, KS_MODE_64)


# ---------------------------------------------------------------- the runtime
RUNTIME = f"""
start:
    cmp edi, {ATTACKER_AP_CORE}
    je ap_start
    mov rsp, {RECOVERY_STACK:#x}
    mov rdi, {GDT:#x}
    mov rsi, {SNIPPET_GDT:#x}
    mov ecx, 40
    rep movsb
    mov rax, 0x00affa000000ffff
    mov qword ptr [rdi], rax
    mov rax, 0x00cff2000000ffff
    mov qword ptr [rdi + 8], rax
    mov rbx, {PSEUDO:#x}
    mov word ptr [rbx], {GDT_LIMIT}
    mov qword ptr [rbx + 2], {GDT:#x}
    lgdt [rbx]
    mov rax, {RECOVERY_STACK:#x}
    mov qword ptr [{SNIPPET_TSS + 4:#x}], rax
    mov rdi, {SNIPPET_IDT:#x}
    lea rbx, [rip + bsp_trap]
    call fill_idt
    mov rax, {LAPIC + 0xF0:#x}
    mov dword ptr [rax], 0x1ff
    jmp op_0
bsp_trap:
    mov rsp, {RECOVERY_STACK:#x}
    inc qword ptr [{FAULTS:#x}]
    jmp qword ptr [{RECOVER:#x}]
ap_start:
    mov rsp, {AP_STACK:#x}
    mov rdi, {AP_IDT:#x}
    lea rbx, [rip + ap_trap]
    call fill_idt
    mov rbx, {AP_PSEUDO:#x}
    mov word ptr [rbx], 0xfff
    mov qword ptr [rbx + 2], {AP_IDT:#x}
    lidt [rbx]
    mov rax, {LAPIC + 0xF0:#x}
    mov dword ptr [rax], 0x1ff
    jmp ap_idle
ap_trap:
    mov rsp, {AP_STACK:#x}
    inc qword ptr [{AP_WAKES:#x}]
    mov rax, {LAPIC + 0xB0:#x}
    mov dword ptr [rax], 0
ap_idle:
    sti
    hlt
    jmp ap_idle
fill_idt:
    mov rax, rbx
    and eax, 0xffff
    mov rdx, 0x8e0000080000
    or rax, rdx
    mov rdx, rbx
    shr rdx, 16
    shl rdx, 48
    or rax, rdx
    mov rdx, rbx
    shr rdx, 32
    mov ecx, 256
fill_idt_next:
    mov qword ptr [rdi], rax
    mov qword ptr [rdi + 8], rdx
    add rdi, 16
    dec ecx
    jnz fill_idt_next
    ret
"""
"""The attacker's fixed start (both cores enter at CODE_BASE, EDI = machine
core index): the BSP installs a GDT with user segments, TSS.RSP0 and an IDT
of interrupt gates (Intel SDM Vol. 3A 6.14.1) all entering ``bsp_trap``;
the AP its own IDT entering ``ap_trap``."""

END = """
done:
    cli
    hlt
    jmp done
"""


# ---------------------------------------------------------------- value pools
def _pick(rng: random.Random, *choices):
    return rng.choice(choices)


def _u64(rng: random.Random) -> int:
    return rng.getrandbits(64)


def _boundary(rng: random.Random) -> int:
    return _pick(rng, 0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32,
                 (1 << 63) - 1, 1 << 63, (1 << 64) - 1, (1 << 64) - 16, _u64(rng), rng.getrandbits(32))


def _apic_id(rng: random.Random) -> int:
    """A destination: mostly the honest cores, else own, broadcast, absent or random."""
    return _pick(rng, *HONEST_APIC_IDS, *HONEST_APIC_IDS, *ATTACKER_APIC_IDS, 0xFF, 4, 0xFE, rng.randrange(256))


def _vector(rng: random.Random) -> int:
    return _pick(rng, *HONEST_VECTORS, 0x20, 0xFF, 0, 2, 15, 16, 31, 32, rng.randrange(256))


def _outside(address: int, size: int) -> bool:
    return all(address + size <= lo or address >= hi for lo, hi in PROTECTED)


def _physical(rng: random.Random, size: int = 8) -> int:
    """A guest-physical address below 4 GiB (the identity map), never a protected range of the attacker's own."""
    while True:
        address = _pick(
            rng,
            rng.randrange(0x200000, RAM_END - size),  # own RAM
            RAM_END - rng.randrange(1, 9),  # straddling the end of RAM
            rng.randrange(RAM_END, CHANNEL_BASE),  # nobody's (the honest kernel's machine RAM is not here)
            CHANNEL_BASE + rng.randrange(CHANNEL_SIZE),  # the shared channel
            CHANNEL_BASE + CHANNEL_SIZE - rng.randrange(1, 9),  # straddling its end
            rng.randrange(CHANNEL_BASE + CHANNEL_SIZE, IOAPIC),
            IOAPIC + rng.randrange(0x1000), LAPIC + rng.randrange(0x1000),
            rng.randrange(IOAPIC + 0x1000, LAPIC), rng.randrange(LAPIC + 0x1000, 1 << 32),
            (1 << 32) - rng.randrange(1, 9),  # straddling 4 GiB
            rng.randrange(0xA0000, 0x100000),  # own low memory: VGA window, firmware tables
            rng.randrange(0x70000, 0xA0000),
        )
        if _outside(address, size):
            return address


def _buffer(rng: random.Random) -> int:
    """A hypercall buffer address, good or bad."""
    return _pick(rng, BUFFER, BUFFER + 0x1000 - 8, RAM_END - 8, RAM_END - 96, RAM_END, 0x9F000 - 16, 0xA0000,
                 0x70000, CHANNEL_BASE, CHANNEL_BASE + CHANNEL_SIZE - 8, 0x4000_0000, 1 << 32, 1 << 63,
                 (1 << 64) - 8, (1 << 64) - 0x1000, LAPIC, _u64(rng))


def _length(rng: random.Random) -> int:
    return _pick(rng, 0, 1, 23, 24, 25, 95, 96, 97, 4096, 4097, 1 << 32, (1 << 64) - 1, rng.randrange(200))


def _window(rng: random.Random) -> int:
    return WINDOW_BASE + rng.randrange(WINDOWS) * 0x200000


def _pd_entry(linear: int) -> int:
    """The snippet page directory entry mapping ``linear`` (below 4 GiB)."""
    return SNIPPET_PD + (linear >> 21) * 8


def _load_registers(values: dict[str, int]) -> list[str]:
    return [f"mov {register}, {value & 0xFFFF_FFFF_FFFF_FFFF:#x}" for register, value in values.items()]


def _access(rng: random.Random, register: str, write: bool | None = None) -> list[str]:
    """A load or store of 1, 2, 4 or 8 bytes through ``register``."""
    size, reg = _pick(rng, ("byte", "cl"), ("word", "cx"), ("dword", "ecx"), ("qword", "rcx"))
    write = rng.random() < 0.5 if write is None else write
    if write:
        return [f"mov rcx, {_u64(rng):#x}", f"mov {size} ptr [{register}], {reg}"]
    return [f"mov {reg}, {size} ptr [{register}]"]


# ---------------------------------------------------------------- the operations
Operation = Callable[[random.Random, str], list[str]]


def _icr(rng: random.Random, label: str) -> list[str]:
    """One ICR write (Intel SDM Vol. 3A 10.6.1): any delivery mode, shorthand and destination."""
    low = _vector(rng) | rng.randrange(8) << 8
    low |= ICR_DEST_MODE_LOGICAL if rng.random() < 0.25 else 0
    low |= ICR_LEVEL_ASSERT if rng.random() < 0.9 else 0
    low |= ICR_TRIGGER_LEVEL if rng.random() < 0.15 else 0
    low |= _pick(rng, 0, 0, 0, 1, 2, 3) << ICR_SHORTHAND_SHIFT
    if rng.random() < 0.1:
        low |= rng.getrandbits(32)  # reserved bits too
    high = _apic_id(rng) << 24 | (rng.getrandbits(24) if rng.random() < 0.1 else 0)
    lines = [f"mov rax, {LAPIC + 0x310:#x}", f"mov dword ptr [rax], {high:#x}", f"mov dword ptr [rax - 0x10], {low:#x}"]
    if rng.random() < 0.3:
        lines.append("mov ecx, dword ptr [rax - 0x10]")  # the delivery status
    return lines


_APIC_REGISTERS = (0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0, 0x100, 0x180, 0x200, 0x280, 0x2F0,
                   0x300, 0x310, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370, 0x380, 0x390, 0x3E0, 0x3F0)


def _apic_register(rng: random.Random, label: str) -> list[str]:
    """Reads and writes of the local APIC page: named registers, random and unaligned offsets, any width;
    the LDR/DFR (logical names), SVR, TPR, LVTs and the timer."""
    style = rng.randrange(4)
    if style == 0:  # the timer: a vector, periodic or not, a small count
        lvt = _vector(rng) | (1 << 17 if rng.random() < 0.5 else 0) | (1 << 16 if rng.random() < 0.2 else 0)
        return [f"mov rax, {LAPIC:#x}", f"mov dword ptr [rax + 0x3e0], {rng.randrange(16):#x}",
                f"mov dword ptr [rax + 0x320], {lvt:#x}",
                f"mov dword ptr [rax + 0x380], {_pick(rng, 1, 50, 500, 5000, rng.getrandbits(32)):#x}"]
    if style == 1:  # logical addressing: make the attacker answer to the honest kernel's logical IDs
        return [f"mov rax, {LAPIC:#x}", f"mov dword ptr [rax + 0xd0], {rng.getrandbits(8) << 24:#x}",
                f"mov dword ptr [rax + 0xe0], {_pick(rng, 0xFFFFFFFF, 0x0FFFFFFF, rng.getrandbits(32)):#x}"]
    offset = rng.choice(_APIC_REGISTERS) if style == 2 else rng.randrange(0x1000)
    register = _pick(rng, "rax", "rbx")
    lines = [f"mov {register}, {LAPIC + offset:#x}"]
    for _ in range(rng.randrange(1, 4)):
        lines += _access(rng, register)
    return lines


_MSRS = (0x1B, 0xC000_0080, 0x10, 0x277, 0x174, 0x175, 0x176, 0xC000_0081, 0xC000_0082, 0xC000_0084,
         0xC000_0100, 0xC000_0101, 0xC000_0102, 0xC000_0103, 0xC001_0015, 0xC001_001F, 0x8B, 0x802, 0x830,
         0x40000000, 0xC001_0114, 0xC001_0117)


def _msr(rng: random.Random, label: str) -> list[str]:
    """RDMSR / WRMSR: APIC_BASE (moved, disabled, x2APIC, restored), EFER, known and random MSRs."""
    number = _pick(rng, *_MSRS, 0x1B, 0x1B, 0xC000_0080, rng.getrandbits(32), 0xC001_0000 + rng.randrange(0x2000))
    if number == 0x1B:
        value = _pick(rng, APIC_BASE_MSR_VALUE, LAPIC, 0xFED0_0900, LAPIC | 0xD00, APIC_BASE_MSR_VALUE | 1 << 40,
                      _u64(rng))
    elif number == 0xC000_0080:
        value = _pick(rng, 0xD00, 0xD01, 0x500, 0x900, 0x1D00, 0x4D00, 0, _u64(rng))
    else:
        value = _boundary(rng)
    if rng.random() < 0.3:
        return [f"mov ecx, {number:#x}", "rdmsr"]
    return [f"mov ecx, {number:#x}", f"mov eax, {value & 0xFFFF_FFFF:#x}", f"mov edx, {value >> 32:#x}", "wrmsr"]


def _large_frame(rng: random.Random) -> int:
    """A 2 MiB frame for a large page: own memory, nobody's, the channel, the APICs, high or reserved bits."""
    return _pick(rng, 0x200000, 0x400000, 0x600000, 0x800000, 0xA00000, 0x1000000, 0x4000_0000, CHANNEL_BASE,
                 IOAPIC, LAPIC, 1 << 32, 1 << 39, (1 << 40) - 0x200000, 1 << 51,
                 rng.randrange(1 << 19) << 21)


def _frame(rng: random.Random) -> int:
    """A 4 KiB frame."""
    return _pick(rng, BUFFER, RAM_END - 0x1000, RAM_END, 0x4000_0000, CHANNEL_BASE, CHANNEL_BASE + CHANNEL_SIZE,
                 LAPIC, IOAPIC, 0xA0000, SNIPPET_PML4, SNIPPET_PD, 1 << 32, 1 << 40, rng.randrange(1 << 28) << 12)


def _page_table(rng: random.Random, label: str) -> list[str]:
    """Page-table edits: a large page, or a 4 KiB table, or a higher-level entry, onto any frame; then
    loads and stores through it; or a new CR3."""
    style = rng.randrange(7)
    if style == 6:  # CR3: a flush, cache bits, or (fatal) a table elsewhere
        value = _pick(rng, SNIPPET_PML4, SNIPPET_PML4, SNIPPET_PML4 | 0x18, BUFFER, 0x4000_0000, CHANNEL_BASE,
                      LAPIC, 1 << 40, _u64(rng))
        return [f"mov rax, {value:#x}", "mov cr3, rax"]
    linear = _window(rng)
    flags = _pick(rng, LARGE_LEAF, LARGE_LEAF, LARGE_LEAF, 0x86, 0x83, LARGE_LEAF | 1 << 63, LARGE_LEAF | 1 << 52)
    if style <= 2:  # a large page
        entry, offset = _large_frame(rng) | flags, rng.randrange(0x200000 - 8)
        if entry & ~0x1FFFFF & ((1 << 52) - 1) == 0:
            offset = max(offset, 0x200000 - 0x1000)  # the alias of [0, 2 MiB) keeps off the code and tables
        lines = [f"mov rax, {entry:#x}", f"mov rbx, {_pd_entry(linear):#x}", "mov qword ptr [rbx], rax"]
    elif style <= 4:  # a 4 KiB page table of its own, or one elsewhere
        table = PAGE_TABLE if style == 3 else _frame(rng)
        slot = rng.randrange(512)
        offset = slot * 0x1000 + rng.randrange(0x1000 - 8)
        lines = [f"mov rax, {_frame(rng) | _pick(rng, TABLE_ENTRY, TABLE_ENTRY, 0x6, 0x5):#x}",
                 f"mov rbx, {PAGE_TABLE + slot * 8:#x}", "mov qword ptr [rbx], rax",
                 f"mov rax, {table | TABLE_ENTRY:#x}", f"mov rbx, {_pd_entry(linear):#x}", "mov qword ptr [rbx], rax"]
    else:  # a PML4 or PDPT entry above the identity map: linear 512 GiB up, or 4 GiB up
        if rng.random() < 0.5:
            slot = rng.randrange(1, 256)
            level, linear = SNIPPET_PML4 + 8 * slot, slot << 39
        else:
            slot = rng.randrange(4, 512)
            level, linear = SNIPPET_PDPT + 8 * slot, slot << 30
        offset = rng.randrange(0x1000)
        lines = [f"mov rax, {_frame(rng) | _pick(rng, TABLE_ENTRY, TABLE_ENTRY | 0x80, 0x6):#x}",
                 f"mov rbx, {level:#x}", "mov qword ptr [rbx], rax"]
    lines += [f"mov rdx, {linear:#x}", "invlpg [rdx]", f"mov rdx, {linear + offset:#x}"]
    for _ in range(rng.randrange(1, 3)):
        lines += _access(rng, "rdx")
    if style <= 4 and rng.random() < 0.5:  # put the identity entry back
        lines += [f"mov rax, {linear | LARGE_LEAF:#x}", f"mov rbx, {_pd_entry(linear):#x}", "mov qword ptr [rbx], rax",
                  f"mov rdx, {linear:#x}", "invlpg [rdx]"]
    return lines


def _control_register(rng: random.Random, label: str) -> list[str]:
    """CR0 / CR4 with one bit flipped, CR8 (the TPR) and CR2 with any value."""
    register = _pick(rng, "cr0", "cr4", "cr4", "cr8", "cr2")
    if register in ("cr8", "cr2"):
        return [f"mov rax, {_pick(rng, rng.randrange(16), _boundary(rng)):#x}", f"mov {register}, rax"]
    bits = (0, 1, 2, 3, 5, 16, 18, 29, 30, 31) if register == "cr0" else (4, 7, 8, 9, 10, 12, 13, 16, 17, 20, 21, 22)
    mask = 1 << rng.choice(bits) if rng.random() < 0.85 else rng.getrandbits(64)
    return [f"mov rax, {register}", f"mov rbx, {mask:#x}", "xor rax, rbx", f"mov {register}, rax"]


def _descriptor_table(rng: random.Random, label: str) -> list[str]:
    """LGDT / LIDT with a random base and limit, LTR / LLDT with any selector, a segment load;
    then maybe the good table back, then maybe an exception through whatever is loaded."""
    table = _pick(rng, "lidt", "lgdt", "lidt", "ltr", "lldt", "segment")
    if table in ("ltr", "lldt", "segment"):
        selector = _pick(rng, 0x18, 0x10, 0x28, 0x30, 0x33, 0x1234, 0xFFF8, rng.getrandbits(16))
        instruction = f"{table} ax" if table != "segment" else _pick(rng, "mov ds, ax", "mov es, ax", "mov ss, ax",
                                                                     "mov fs, ax", "mov gs, ax")
        return [f"mov eax, {selector:#x}", instruction]
    base = _pick(rng, 0, BUFFER, RAM_END - 8, 0x4000_0000, CHANNEL_BASE, LAPIC, 1 << 32, 1 << 63, _u64(rng))
    limit = _pick(rng, 0, 7, 0xF, 0xFF, 0xFFF, 0xFFFF, rng.getrandbits(16))
    lines = [f"mov rbx, {PSEUDO:#x}", f"mov word ptr [rbx], {limit:#x}", f"mov rax, {base:#x}",
             "mov qword ptr [rbx + 2], rax", f"{table} [rbx]"]
    if table == "lgdt" and rng.random() < 0.5:
        lines += ["mov eax, 0x10", "mov ds, ax"]
    if rng.random() < 0.6:
        good, good_limit = (SNIPPET_IDT, 0xFFF) if table == "lidt" else (GDT, GDT_LIMIT)
        lines += [f"mov word ptr [rbx], {good_limit:#x}", f"mov rax, {good:#x}", "mov qword ptr [rbx + 2], rax",
                  f"{table} [rbx]"]
    if rng.random() < 0.5:
        lines.append(_pick(rng, "int3", "ud2", f"int {rng.randrange(256):#x}"))
    return lines


def _hypercall_registers(rng: random.Random, number: int) -> dict[str, int]:
    if number == Hypercall.DESCRIBE_SELF:
        rdi, rsi, rdx = _buffer(rng), _length(rng), _boundary(rng)
    elif number == Hypercall.DESCRIBE_CHANNEL:
        rdi, rsi, rdx = _pick(rng, 0, 0, 1, 2, _boundary(rng)), _buffer(rng), _length(rng)
    else:
        rdi, rsi, rdx = _boundary(rng), _boundary(rng), _boundary(rng)
    return {"rax": number, "rdi": rdi, "rsi": rsi, "rdx": rdx}


def _hypercall(rng: random.Random, label: str) -> list[str]:
    """VMMCALL with every number and boundary arguments: buffers in own RAM, straddling it, foreign, near 2**64."""
    number = _pick(rng, 1, 1, 2, 2, 0, 5, 6, 0x7FFF, 1 << 32 | 1, 1 << 63, (1 << 64) - 1, _u64(rng))
    return [*_load_registers(_hypercall_registers(rng, number)), "vmmcall"]


def _notify(rng: random.Random, label: str) -> list[str]:
    """NOTIFY: the honest kernel (and others) with any vector; no channel allows any."""
    kernel = _pick(rng, 0, 0, 0, 1, 2, 16, (1 << 64) - 1, _u64(rng))
    vector = _pick(rng, *HONEST_VECTORS, 32, 31, 0, 2, 255, 256, _u64(rng))
    lines = [*_load_registers({"rax": Hypercall.NOTIFY, "rdi": kernel, "rsi": vector, "rdx": _boundary(rng)}),
             "vmmcall"]
    return lines * rng.randrange(1, 3)


_SVM = {"vmrun": "0x0f, 0x01, 0xd8", "vmload": "0x0f, 0x01, 0xda", "vmsave": "0x0f, 0x01, 0xdb",
        "skinit": "0x0f, 0x01, 0xde", "invlpga": "0x0f, 0x01, 0xdf"}


def _exception(rng: random.Random, label: str) -> list[str]:
    """An exception, maybe on a hostile stack: int3, ud2, #DE, INT n, #GP, #PF, a bad IRETQ frame."""
    lines = []
    if rng.random() < 0.25:
        lines.append(f"mov rsp, {_pick(rng, 0x4000_0000, CHANNEL_BASE + CHANNEL_SIZE, RAM_END + 16, 0, 1 << 63, LAPIC + 0x400, 0x1000):#x}")
    lines += rng.choice((
        ["int3"], ["ud2"], [f"int {rng.randrange(256):#x}"], ["xor edx, edx", "xor ecx, ecx", "div rcx"],
        ["mov rax, 0x8000000000000000", "cqo", "mov rcx, -1", "idiv rcx"], ["int1"], ["into"],
        ["mov rax, 0x8000000000000000", "mov rax, qword ptr [rax]"],  # non-canonical: #GP
        ["mov rax, 0x100000000", "mov rax, qword ptr [rax]"],  # above the identity map: #PF
        ["push 0x1234", "push 0", "push 0x2", "push 0x77", "push 0", "iretq"],
        ["syscall"], ["sysret"], ["rsm"], ["mov rax, 0x10000000000", "ljmp [rax]"],
    ))
    return lines


def _instruction(rng: random.Random, label: str) -> list[str]:
    """Other privileged or odd instructions: CPUID, RDPMC, XSETBV, SVM, debug registers, cache control,
    SGDT / SIDT / FXSAVE into foreign memory, MONITOR / MWAIT, SWAPGS."""
    foreign = _physical(rng, 512)
    return rng.choice((
        [f"mov eax, {_pick(rng, 0, 1, 0xB, 0x4000_0000, 0x4000_0001, 0x8000_0001, 0x8000_0008, _u64(rng) & 0xFFFFFFFF):#x}",
         f"mov ecx, {rng.getrandbits(32):#x}", "cpuid"],
        [f"mov ecx, {rng.getrandbits(32):#x}", "rdpmc"], ["rdtsc"], ["rdtscp"],
        ["xor ecx, ecx", f"mov eax, {rng.getrandbits(32):#x}", "xor edx, edx", "xsetbv"],
        [f".byte {rng.choice(list(_SVM.values()))}"], ["stgi"], ["clgi"],
        [f"mov rax, {_boundary(rng):#x}", f"mov dr{_pick(rng, 0, 3, 6, 7)}, rax"], ["mov rax, dr6"],
        ["wbinvd"], ["invd"], ["clts"], [f"mov eax, {rng.getrandbits(16):#x}", "lmsw ax"], ["smsw rax"],
        [f"mov rax, {foreign:#x}", _pick(rng, "sgdt [rax]", "sidt [rax]", "fxsave [rax]", "clflush [rax]",
                                         "str word ptr [rax]")],
        [f"mov rax, {foreign:#x}", "xor ecx, ecx", "xor edx, edx", "monitor", "mwait"], ["swapgs"],
        ["pushfq", f"or qword ptr [rsp], {_pick(rng, 0x3000, 0x40000, 0x100, 0x4000):#x}", "popfq", "nop"],
    ))


def _init_sipi(rng: random.Random, label: str) -> list[str]:
    """INIT, INIT de-assert and STARTUP to anything: its own AP, the honest cores, itself, everyone."""
    destination = _pick(rng, 3, 3, 3, 0, 1, 0, 1, 2, 0xFF, rng.randrange(256))  # 2 and 0xFF: itself too, rarely
    shorthand = _pick(rng, 0, 0, 0, 0, 0, 3, 3, 2) << ICR_SHORTHAND_SHIFT
    logical = ICR_DEST_MODE_LOGICAL if rng.random() < 0.15 else 0
    lines = [f"mov rax, {LAPIC + 0x310:#x}", f"mov dword ptr [rax], {destination << 24:#x}",
             f"mov dword ptr [rax - 0x10], {0xC500 | shorthand | logical:#x}"]
    if rng.random() < 0.6:
        lines.append(f"mov dword ptr [rax - 0x10], {0x8500 | shorthand | logical:#x}")
    for _ in range(rng.randrange(3)):
        vector = _pick(rng, 0x08, 0x10, 0x00, 0x9F, 0xFF, rng.randrange(256))
        lines.append(f"mov dword ptr [rax - 0x10], {0x4600 | vector | shorthand | logical:#x}")
    return lines


#: Self-modifying code payloads: position-independent, at most SMC_PAD bytes.
SMC_PAD = 16
_SMC_PAYLOADS = ("int3", "ud2", "nop", "cli", "mov eax, 1\nvmmcall", "mov eax, 3\nxor edi, edi\nmov esi, 0x40\nvmmcall",
                 "mov rsp, 0x40000000\nint3", "mov rax, 0xfee00300\nmov dword ptr [rax], 0x4440",
                 "mov ecx, 0x1b\nrdmsr", "xor ecx, ecx\ndiv ecx", ".byte 0xeb, 0x00", "mov rax, cr3\nmov cr3, rax")


@functools.cache
def _payload(text: str) -> bytes:
    encoding, _ = _keystone().asm(text, 0)
    return bytes(encoding)


def _smc(rng: random.Random, label: str) -> list[str]:
    """Self-modifying code: write new instruction bytes over the pad right after, then run them."""
    if rng.random() < 0.15:
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, SMC_PAD + 1)))
    else:
        payload = _payload(rng.choice(_SMC_PAYLOADS))
    assert len(payload) <= SMC_PAD
    lines = [f"lea rdi, [rip + {label}_pad]"]
    lines += [f"mov byte ptr [rdi + {offset}], {byte:#x}" for offset, byte in enumerate(payload)]
    lines.append(f"{label}_pad:")
    lines += ["nop"] * SMC_PAD
    return lines


def _phys_memory(rng: random.Random, label: str) -> list[str]:
    """Loads, stores and string copies at arbitrary guest-physical addresses through the identity map."""
    style = rng.randrange(4)
    if style == 3:  # a string store or copy of up to two pages
        length = _pick(rng, 1, 8, 0x40, 0x100, 0x1000)
        target = _physical(rng, length)
        if not 0x200000 <= target < RAM_END - length:
            length = min(length, 0x40)  # each refused byte is a violation: a few dozen make the point
        if rng.random() < 0.5:
            return [f"mov rdi, {target:#x}", f"mov ecx, {length:#x}", f"mov al, {rng.getrandbits(8):#x}", "rep stosb"]
        return [f"mov rsi, {target:#x}", f"mov rdi, {BUFFER:#x}", f"mov ecx, {length:#x}", "rep movsb"]
    lines = [f"mov rax, {_physical(rng):#x}"]
    for _ in range(rng.randrange(1, 4)):
        lines += _access(rng, "rax")
    return lines


def _ioapic(rng: random.Random, label: str) -> list[str]:
    """Its own I/O APIC: a redirection entry aimed at the honest cores (or anyone), then COM1 raising IRQ 4."""
    pin = _pick(rng, 4, 4, 4, rng.randrange(24), rng.randrange(256))
    low = _vector(rng) | rng.randrange(8) << 8 | (1 << 11 if rng.random() < 0.2 else 0) | \
        (1 << 15 if rng.random() < 0.3 else 0) | (1 << 16 if rng.random() < 0.1 else 0)
    lines = [f"mov rax, {IOAPIC:#x}", f"mov dword ptr [rax], {(0x10 + 2 * pin) & 0xFF:#x}",
             f"mov dword ptr [rax + 0x10], {low:#x}", f"mov dword ptr [rax], {(0x11 + 2 * pin) & 0xFF:#x}",
             f"mov dword ptr [rax + 0x10], {_apic_id(rng) << 24:#x}"]
    if rng.random() < 0.8:  # COM1: interrupts on "transmitter empty", then a byte
        lines += ["mov dx, 0x3f9", f"mov al, {_pick(rng, 2, 2, 0xF, rng.getrandbits(8)):#x}", "out dx, al",
                  "mov dx, 0x3f8", "mov al, 0x41", "out dx, al", "mov dx, 0x3fa", "in al, dx"]
    if rng.random() < 0.3:
        lines += ["mov dword ptr [rax + 0x40], 0x40"]  # the EOI register of a version 0x20 I/O APIC
    return lines


def _port_io(rng: random.Random, label: str) -> list[str]:
    """IN / OUT of any width to its COM1, the RTC, PIC and PCI ports, random ports; string I/O with a
    foreign buffer; rarely the exit port or an ACPI sleep request."""
    port = _pick(rng, *range(0x3F8, 0x400), 0x70, 0x71, 0x20, 0x21, 0xA0, 0xA1, 0xCF8, 0xCFC, 0x80, 0x601,
                 0x402, 0x3FD, rng.getrandbits(16))
    if rng.random() < 0.04:
        port = _pick(rng, 0xF4, 0xF5, 0x600)
    width = _pick(rng, ("al", "b"), ("ax", "w"), ("eax", "d"))
    if rng.random() < 0.2:
        return [f"mov dx, {port:#x}", f"mov rsi, {_physical(rng, 64):#x}", f"mov rdi, {BUFFER:#x}",
                f"mov ecx, {rng.randrange(1, 64)}", _pick(rng, f"rep outs{width[1]}", f"rep ins{width[1]}")]
    value = _pick(rng, 0x41, 0x0A, 0x1B, 0, 0x2000 | 5 << 10, rng.getrandbits(32))
    if rng.random() < 0.4:
        return [f"mov dx, {port:#x}", f"in {width[0]}, dx"]
    return [f"mov dx, {port:#x}", f"mov eax, {value:#x}", f"out dx, {width[0]}"]


def _user_mode(rng: random.Random, label: str) -> list[str]:
    """IRETQ to CPL 3 (maybe with IOPL 3) and a privileged step there: VMMCALL, an ICR write, CR3, MSRs."""
    rflags = _pick(rng, 0x2, 0x202, 0x3002, 0x3202)
    step = rng.choice((
        [*_load_registers(_hypercall_registers(rng, _pick(rng, 1, 2, 3, 4))), "vmmcall"],
        [f"mov rax, {LAPIC + 0x310:#x}", "mov dword ptr [rax], 0", "mov dword ptr [rax - 0x10], 0x4040"],
        ["mov rax, cr3", "mov cr3, rax"], ["mov ecx, 0x1b", "rdmsr"], ["cli"], ["hlt"],
        ["mov dx, 0x3f8", "mov al, 0x55", "out dx, al"], [f"int {rng.randrange(256):#x}"], ["int3"],
        [f"mov rbx, {PSEUDO:#x}", "lidt [rbx]"], ["swapgs"], ["syscall"],
    ))
    return [f"push {USER_DS:#x}", f"push {USER_STACK:#x}", f"push {rflags:#x}", f"push {USER_CS:#x}",
            f"lea rax, [rip + {label}_user]", "push rax", "iretq", f"{label}_user:", *step, "ud2"]


def _cli_hlt(rng: random.Random, label: str) -> list[str]:
    """HLT with interrupts off (the end of the BSP), on (a wait for an interrupt), or a spin."""
    return rng.choice((["cli", "hlt"], ["sti", "hlt"], ["hlt"], ["cli", f"{label}_spin:", f"jmp {label}_spin"]))


def _shutdown(rng: random.Random, label: str) -> list[str]:
    """SHUTDOWN with any status."""
    return [*_load_registers({"rax": Hypercall.SHUTDOWN, "rdi": _boundary(rng)}), "vmmcall"]


#: The grammar: operation kind -> (weight, generator).  Kinds that end the program are rare.
GRAMMAR: dict[str, tuple[int, Operation]] = {
    "icr": (12, _icr),
    "apic_register": (8, _apic_register),
    "msr": (7, _msr),
    "page_table": (8, _page_table),
    "control_register": (3, _control_register),
    "descriptor_table": (4, _descriptor_table),
    "hypercall": (8, _hypercall),
    "notify": (5, _notify),
    "exception": (6, _exception),
    "instruction": (5, _instruction),
    "init_sipi": (4, _init_sipi),
    "smc": (3, _smc),
    "phys_memory": (8, _phys_memory),
    "ioapic": (4, _ioapic),
    "port_io": (5, _port_io),
    "user_mode": (3, _user_mode),
    "cli_hlt": (1, _cli_hlt),
    "shutdown": (1, _shutdown),
}
OPERATION_KINDS = tuple(GRAMMAR)
MIN_OPERATIONS = 8
MAX_OPERATIONS = 40
#: Programs whose attacker is stopped at its first violation.
STOP_FRACTION = 0.2


def _rng(seed: int, index: int) -> random.Random:
    """The program's generator: a string seed is hashed (SHA-512) the same on every host and Python run."""
    return random.Random(f"osvemu-attack:{seed}:{index}")


def generate(seed: int, index: int) -> AttackProgram:
    """Program ``index`` of the campaign with ``seed``."""
    rng = _rng(seed, index)
    count = rng.randint(MIN_OPERATIONS, MAX_OPERATIONS)
    kinds = rng.choices(OPERATION_KINDS, weights=[weight for weight, _ in GRAMMAR.values()], k=count)
    on_violation = "stop" if rng.random() < STOP_FRACTION else "log"
    parts = [f"# attack program {seed}:{index} ({count} operations, on_violation = {on_violation})", RUNTIME]
    for number, kind in enumerate(kinds):
        label = f"op_{number}"
        body = GRAMMAR[kind][1](rng, label)
        following = f"op_{number + 1}" if number + 1 < count else "done"
        parts.append(f"{label}:  # {kind}\n    inc qword ptr [{COUNTER:#x}]\n"
                     f"    mov qword ptr [{RECOVER:#x}], {following}\n"
                     + "\n".join(line if line.endswith(":") else f"    {line}" for line in body))
    parts.append(END)
    return AttackProgram(seed, index, "\n".join(parts), tuple(kinds), on_violation)


__all__ = ["ATTACKER_APIC_IDS", "CHANNEL_BASE", "CHANNEL_SIZE", "COUNTER", "FAULTS", "GRAMMAR", "HONEST_APIC_IDS",
           "KERNEL_RAM", "OPERATION_KINDS", "AttackProgram", "assemble", "generate"]
