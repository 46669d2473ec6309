"""Preemption (the --timeout watchdog, a device access that ends the slice)
never leaves an instruction half done.

Unicorn 2.1.4 honours ``emu_stop`` after any guest load or store as well as
where a block starts, and after a store it rewinds the guest to the start of
the storing instruction: on resume the instruction runs again.  A test cannot
time a host thread's stop to land inside an ``xchg``, so these tests make
the "timer tick" happen exactly there -- from a memory hook on the lock --
and check that the slice ends where the next block starts, the ``xchg``
done once.  The last test runs a two-kernel configuration that used to
deadlock in fast mode (its console spinlock taken twice) a number of times.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import attacker_pair
from keystone import KS_ARCH_X86, KS_MODE_32, KS_MODE_64, Ks
from unicorn import UC_ARCH_X86, UC_HOOK_MEM_WRITE, UC_MODE_64, Uc
from unicorn import x86_const as r

from osvemu.osv.config import load_config
from osvemu.osv.plan import osv_plan
from osvemu.platform import layout
from osvemu.platform.machine import Machine
from osvemu.platform.plan import bare_plan
from osvemu.platform.pvh import pvh_entry_context
from osvemu.platform.topology import Topology
from osvemu.scheduler import RunLimits, Scheduler

# ---------------------------------------------------------------- Unicorn itself
CODE = 0x1000
LOCK = 0x8000
COUNTER = 0x8008
#: xchg acquires the lock, inc counts the acquisition; the second block
#: starts at ``next``.
TAKE_ONCE = f"""
    mov eax, 1
    xchg dword ptr [{LOCK:#x}], eax
    inc qword ptr [{COUNTER:#x}]
    jmp next
next:
    hlt
"""


def _instance(source: str) -> tuple[Uc, dict[str, int]]:
    code, _ = Ks(KS_ARCH_X86, KS_MODE_64).asm(source, CODE)
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 0x10000)
    uc.mem_write(CODE, bytes(code))
    xchg = CODE + 5  # after the 5-byte mov eax, 1
    return uc, {"xchg": xchg, "next": CODE + len(code) - 1}


def _lock_and_counter(uc: Uc) -> tuple[int, int]:
    return (int.from_bytes(uc.mem_read(LOCK, 4), "little"), int.from_bytes(uc.mem_read(COUNTER, 8), "little"))


def _on_lock_store(uc: Uc, tick) -> None:
    """Call ``tick`` while an instruction stores to the lock (before Unicorn's
    check that follows the store)."""
    uc.hook_add(UC_HOOK_MEM_WRITE, lambda *_: tick(), None, LOCK, LOCK + 3)


def test_emu_stop_during_a_store_rewinds_the_instruction():
    """The hazard the block counter's stop exists for (Unicorn 2.1.4,
    ``check_exit_request`` after each store in ``qemu/tcg/tcg-op.c``): the
    lock is written, yet RIP is back at the xchg, which would take it again
    on resume.  If this fails, a newer Unicorn stops cleanly."""
    uc, at = _instance(TAKE_ONCE)
    _on_lock_store(uc, uc.emu_stop)
    uc.emu_start(CODE, 0xFFFF)
    assert uc.reg_read(r.UC_X86_REG_RIP) == at["xchg"]
    assert _lock_and_counter(uc) == (1, 0)
    assert uc.reg_read(r.UC_X86_REG_RAX) == 1  # xchg's load into EAX was abandoned


def test_a_requested_stop_lands_where_the_next_block_starts():
    from osvemu.cpu.blockcounter import BlockCounter

    uc, at = _instance(TAKE_ONCE)
    counter = BlockCounter(uc)
    counter.start(0)
    _on_lock_store(uc, counter.request_stop)
    uc.emu_start(CODE, 0xFFFF)
    assert uc.reg_read(r.UC_X86_REG_RIP) == at["next"]  # hlt not executed
    assert _lock_and_counter(uc) == (1, 1)
    assert uc.reg_read(r.UC_X86_REG_RAX) == 0  # the lock was free: taken once
    first = counter.retired
    counter.start(0)
    uc.emu_start(uc.reg_read(r.UC_X86_REG_RIP), 0xFFFF)
    assert uc.reg_read(r.UC_X86_REG_RIP) == at["next"] + 1  # past the hlt
    assert _lock_and_counter(uc) == (1, 1)
    assert (first, counter.retired) == (4, 1)  # mov, xchg, inc, jmp; then hlt


def test_a_slice_start_drops_a_stop_requested_after_the_last_one():
    from osvemu.cpu.blockcounter import BlockCounter

    uc, at = _instance(TAKE_ONCE)
    counter = BlockCounter(uc)
    counter.request_stop()
    counter.start(0)
    assert not counter.stop_requested
    uc.emu_start(CODE, 0xFFFF)
    assert uc.reg_read(r.UC_X86_REG_RIP) == at["next"] + 1
    assert _lock_and_counter(uc) == (1, 1)


#: 1 + 3 x 100 + 1 instructions: a first block of 4, then blocks of 3, then hlt.
COUNTED_LOOP = """
    mov ecx, 100
again:
    add rax, rcx
    dec ecx
    jnz again
    hlt
"""


@pytest.mark.parametrize("budget", [1, 2, 3, 5, 8, 13, 10_000])
def test_a_budget_ends_slices_at_block_starts_and_counts_every_instruction(budget: int):
    """Slices of whole blocks, none past its budget but a first block
    bigger than it, and every instruction counted once."""
    from osvemu.cpu.blockcounter import BlockCounter

    uc, at = _instance(COUNTED_LOOP)
    counter = BlockCounter(uc)
    total, rip, slices = 0, CODE, 0
    while rip != at["next"] + 1 and slices < 1000:
        counter.start(budget)
        uc.emu_start(rip, 0xFFFF)
        assert counter.retired <= budget or counter.blocks == 1
        total += counter.retired
        slices += 1
        rip = uc.reg_read(r.UC_X86_REG_RIP)
    assert (total, uc.reg_read(r.UC_X86_REG_RAX)) == (302, 5050)
    assert slices == {1: 101, 2: 101, 3: 101, 5: 100, 8: 50, 13: 25, 10_000: 1}[budget]


# ---------------------------------------------------------------- a core
GUEST_CODE = 0x100000
GUEST_LOCK = 0x200000
GUEST_COUNT = 0x200004
ROUNDS = 100
#: A 32-bit spinlock loop: exit status 0 after ROUNDS acquisitions, 1 as soon
#: as the lock is found held (only one core runs: someone took it twice).
SPINLOCK_LOOP = f"""
    mov ecx, {ROUNDS}
again:
    mov eax, 1
    xchg dword ptr [{GUEST_LOCK:#x}], eax
    test eax, eax
    jnz taken_twice
    inc dword ptr [{GUEST_COUNT:#x}]
    mov dword ptr [{GUEST_LOCK:#x}], 0
    dec ecx
    jnz again
    mov al, 0
    out {layout.EXIT_PORT:#x}, al
    hlt
taken_twice:
    mov al, 1
    out {layout.EXIT_PORT:#x}, al
    hlt
"""
#: mov ecx; mov eax; xchg; test; jnz: the first block.
FIRST_BLOCK_INSTRUCTIONS = 5


def _spinlock_machine() -> Machine:
    machine = Machine(bare_plan(Topology(1, 1, 64 * layout.MiB)), console=lambda line: None)
    kernel = machine.kernels[0]
    machine.install_firmware(kernel)
    code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(SPINLOCK_LOOP, GUEST_CODE)
    kernel.view.write(GUEST_CODE, bytes(code))
    machine.cores[0].start(pvh_entry_context(), {r.UC_X86_REG_RIP: GUEST_CODE})
    return machine


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "blocks"])
def test_preempt_during_the_xchg_store_ends_a_counted_slice_after_the_block(exact: bool):
    """The --timeout watchdog's stop in a counted slice: exact count, RIP at
    the next block, the xchg done once."""
    machine = _spinlock_machine()
    core = machine.cores[0]
    core.add_memory_hook("write", lambda *_: core.preempt(), GUEST_LOCK, GUEST_LOCK + 3)
    retired = core.run(1_000_000, 0, exact)
    assert retired == FIRST_BLOCK_INSTRUCTIONS
    assert core.read_linear(core.rip, 2) == bytes.fromhex("ff05")  # inc dword ptr [...]
    assert core.read_physical(GUEST_LOCK, 8) == bytes.fromhex("01000000 00000000")
    assert core.read_register(r.UC_X86_REG_RAX) == 0


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "deterministic"])
def test_preempt_at_every_lock_store_never_takes_the_lock_twice(fast: bool):
    """Every store to the lock (the acquiring xchg and the release) ends the
    slice; the guest must still count ROUNDS acquisitions and exit 0."""
    machine = _spinlock_machine()
    core = machine.cores[0]
    core.add_memory_hook("write", lambda *_: core.preempt(), GUEST_LOCK, GUEST_LOCK + 3)
    result = Scheduler(machine, fast=fast, limits=RunLimits(timeout=10)).run()
    assert (result.status, int.from_bytes(core.read_physical(GUEST_COUNT, 4), "little")) == (0, ROUNDS)
    assert core.slices_run >= 2 * ROUNDS


# ---------------------------------------------------------------- two kernels, end to end
RUNS = 12
RECEIVER_CONSOLE = [
    "attacker: attack=none",
    "attacker: kernel 0 of 2, 2 cores (APIC 0 1), RAM 0x100000-0x4100000, foreign 0x40001000",
    "attacker: none: honest work, 100000 iterations",
    "attacker: none: checksum 0x847c2350",
    "attacker: done",
]
SENDER_CONSOLE = [
    "attacker: attack=spin",
    "attacker: kernel 1 of 2, 2 cores (APIC 2 3), RAM 0x100000-0x4100000, foreign 0x40001000",
    "attacker: AP APIC 3 online, spinning with interrupts off",
    "attacker: spin: cli; jmp . on the boot CPU and 1 APs",
]


def _two_kernel_config(tmp_path: Path, image: Path) -> Path:
    config = tmp_path / "two.toml"
    config.write_text(attacker_pair(image, sender="attack=spin"))
    return config


def test_two_kernels_in_fast_mode_end_as_they_should_every_time(tmp_path, attacker_elf):
    """Both kernels print while the timer preempts them every 2 ms; the
    console spinlock used to be found held by the core that had just taken it."""
    config = load_config(_two_kernel_config(tmp_path, attacker_elf))
    for run in range(RUNS):
        machine = Machine(osv_plan(config), console=lambda line: None)
        machine.boot()
        result = Scheduler(machine, fast=True, limits=RunLimits(timeout=3)).run()
        receiver, sender = machine.kernels
        outcome = (result.status, result.reason,
                   receiver.end.kind.value, receiver.end.detail, receiver.uart.console.text.decode().splitlines(),
                   sender.end.kind.value, sender.end.detail, sender.uart.console.text.decode().splitlines())
        assert outcome == (4, "every kernel ended (1 of 2 cleanly)",
                           "idle", "every core halted, nothing pending", RECEIVER_CONSOLE,
                           "hung", "no core can run again: spinning with interrupts off", SENDER_CONSOLE), \
            f"run {run}"
