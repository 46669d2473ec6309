"""The attack campaign (issue 11, part 5): generated attacking kernels run
beside an honest kernel, which must finish exactly as beside an idle
neighbour.

The machine (1 socket x 4 cores, 32 MiB) holds two kernels under OSV, each
with 8 MiB of its own RAM: "honest" on APIC IDs 0-1 and "attacker" on 2-3,
and one 4 KiB channel shared by both that allows no notification, so no
interrupt may ever reach the honest kernel from outside.  Code is placed
by hand, as for snippets (:func:`osvemu.snippets.run_snippet`): every core
starts in long mode at ``CODE_BASE`` on identity-mapped 2 MiB pages.

The honest kernel computes on both cores, exchanges fixed IPIs inside its
partition (physical, logical, broadcast and every shorthand), asks for
DESCRIBE_SELF, prints to its COM1, writes its results to its RAM and shuts
down.  It never reads the channel.  Its *baseline* is its run beside an
attacker kernel whose cores execute ``cli; hlt``; every program must leave
it with the same

* console lines, per-core instruction counts, registers, run states,
  interrupt and exception counts and local APIC state,
* end (how its life ended),
* memory (its private low MiB and its RAM, the channel excluded),
* IPI statistics of its APICs and monitor account,

and osvemu must neither raise nor hit the wall-clock limit.  Anything else
is a *breach*, reported with its reproducer (``osvemu verify --replay
SEED:INDEX``, :func:`replay`).

Programs run in chunks across local processes (``ProcessPoolExecutor``) or
on a Dask cluster; each worker computes its baseline once.  The aggregates
of a campaign depend only on ``(count, seed)``: each program is a pure
function of ``(seed, index)``, and the emulator is deterministic.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import multiprocessing
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from osvemu.errors import OsvemuError
from osvemu.events import ViolationKind
from osvemu.osv.config import ChannelPlan, KernelPlan, OsvConfig, validate
from osvemu.osv.plan import osv_plan
from osvemu.platform import layout
from osvemu.platform.machine import Kernel, Machine
from osvemu.platform.topology import MemoryRange, Topology
from osvemu.scheduler import RunLimits, RunResult, Scheduler
from osvemu.snippets import CODE_BASE, SET_GATE, Snippet, _long_mode_tables, _start_core, assemble
from osvemu.verify import attacks
from osvemu.verify.attacks import AttackProgram

#: Instructions per slice: small enough that the two kernels interleave
#: finely, large enough that a program costs a few milliseconds.
QUANTUM = 1000
#: All cores together; the honest kernel needs a small fraction of this
#: (HONEST_ROUNDS_LIMIT), the rest is the attacker's.
MAX_INSTRUCTIONS = 60_000
#: Host seconds one program may take before it counts as a breach: a hang
#: inside osvemu.  A program normally takes a few tens of milliseconds, but
#: an attacker can make itself slow to emulate (code that rewrites its own
#: page at every instruction is retranslated each time, about 0.6 ms per
#: instruction): that delays the honest kernel in host time only, since the
#: kernels share a host thread, never in its results, which are what
#: isolation promises.  Its budget is MAX_INSTRUCTIONS, so it ends.
WALL_LIMIT = 120.0
MACHINE_MEMORY = 32 * layout.MiB
#: Free pages of the attacker's low memory are filled with HLT, so that a
#: STARTUP IPI into one halts its AP at once instead of running zeros to the
#: limit (the IVT page, the boot data and the firmware tables stay as they are).
HLT_FILL = ((0x8000, 0x9000), (0xA000, 0x60000), (0x70000, layout.BOOT_INFO_BASE),
            (layout.VGA_BASE, layout.ACPI_TABLES_BASE))
OPCODE_HLT = 0xF4

# ---------------------------------------------------------------- the honest kernel
RESULTS = 0x200000  # in the honest kernel's RAM
SELF_RESULT = RESULTS + 0x00
BSP_SUM = RESULTS + 0x08
AP_SUM = RESULTS + 0x10
AP_DONE = RESULTS + 0x18
IPI_COUNTS = RESULTS + 0x40  # + APIC ID * 0x40 + (vector - 0x40) * 8
SELF_BUFFER = RESULTS + 0x100
SUM_ROUNDS = 300


def _print(text: str) -> str:
    """COM1 output of ``text``, one OUT per byte (the UART needs no set-up)."""
    return "\n".join(f"    mov al, {byte:#x}\n    out dx, al" for byte in text.encode()) + "\n"


def _counter(apic_id: int, vector: int) -> int:
    return IPI_COUNTS + apic_id * 0x40 + (vector - attacks.HONEST_VECTORS[0]) * 8


def _wait(address: int, at_least: int, label: str) -> str:
    return f"""    sti
{label}:
    pause
    cmp qword ptr [{address:#x}], {at_least}
    jb {label}
"""


def _ipi(high: int, low: int) -> str:
    return f"""    mov rax, {attacks.LAPIC + 0x310:#x}
    mov dword ptr [rax], {high:#x}
    mov dword ptr [rax - 0x10], {low:#x}
"""


def honest_source() -> str:
    """The honest kernel's program: both cores enter at CODE_BASE, RDI = core index (= APIC ID)."""
    v0, v1, v2, v3 = attacks.HONEST_VECTORS
    handlers = "".join(f"ipi_{v:#x}:\n    push rax\n    mov eax, {v - v0}\n    jmp ipi_common\n" for v in (v0, v1, v2, v3))
    gates = "".join(f"    mov eax, {v:#x}\n    lea rbx, [rip + ipi_{v:#x}]\n    call set_gate\n" for v in (v0, v1, v2, v3))
    rounds = ""
    for number, (high, mode) in enumerate(((1 << 24, 0), (2 << 24, 0x800), (0xFF << 24, 0)), start=1):
        rounds += _ipi(high, 0x4000 | mode | v0) + _wait(_counter(0, v1), number, f"bsp_round_{number}")
    ap_rounds = ""
    for number in range(1, 4):
        ap_rounds += _wait(_counter(1, v0), number, f"ap_round_{number}") + _ipi(0, 0xC4000 | v1)
        if number == 1:
            ap_rounds += "    mov dx, 0x3f8\n" + _print("honest: ap up\n")
    return f"""
    mov r15, rdi
{gates}    mov rax, {attacks.LAPIC:#x}
    mov dword ptr [rax + 0xf0], 0x1ff
    mov ecx, r15d
    inc ecx
    shl ecx, 24
    mov dword ptr [rax + 0xd0], ecx
    test r15, r15
    jnz ap
    mov eax, 1
    mov edi, {SELF_BUFFER:#x}
    mov esi, 96
    xor edx, edx
    vmmcall
    mov qword ptr [{SELF_RESULT:#x}], rax
    mov dx, 0x3f8
{_print("honest: bsp up, DESCRIBE_SELF ")}    mov rax, qword ptr [{SELF_RESULT:#x}]
    call print_hex
    mov rax, qword ptr [{SELF_BUFFER:#x}]
    call print_hex
{_print(chr(10))}    mov rax, 1
    mov ecx, {SUM_ROUNDS}
    mov rbx, 6364136223846793005
    mov rsi, 1442695040888963407
bsp_sum:
    imul rax, rbx
    add rax, rsi
    xor r8, rax
    dec ecx
    jnz bsp_sum
    mov qword ptr [{BSP_SUM:#x}], r8
{rounds}{_ipi(0, 0x44000 | v2)}{_wait(_counter(0, v2), 1, "bsp_self")}{_ipi(0, 0x84000 | v3)}{_wait(_counter(0, v3), 1, "bsp_all")}{_wait(AP_DONE, 1, "bsp_done")}    mov dx, 0x3f8
{_print("honest: sums ")}    mov rax, qword ptr [{BSP_SUM:#x}]
    call print_hex
    mov rax, qword ptr [{AP_SUM:#x}]
    call print_hex
{_print(chr(10))}{_print("honest: done" + chr(10))}    mov eax, 4
    xor edi, edi
    vmmcall
    hlt
ap:
    mov rax, 88172645463325252
    mov ecx, {SUM_ROUNDS}
ap_sum:
    mov rbx, rax
    shl rbx, 13
    xor rax, rbx
    mov rbx, rax
    shr rbx, 7
    xor rax, rbx
    mov rbx, rax
    shl rbx, 17
    xor rax, rbx
    dec ecx
    jnz ap_sum
    mov qword ptr [{AP_SUM:#x}], rax
{ap_rounds}{_wait(_counter(1, v3), 1, "ap_all")}    mov qword ptr [{AP_DONE:#x}], 1
    cli
ap_halt:
    hlt
    jmp ap_halt
{handlers}ipi_common:
    push rbx
    mov rbx, {attacks.LAPIC + 0x20:#x}
    mov ebx, dword ptr [rbx]
    shr ebx, 24
    shl ebx, 6
    lea rbx, [rbx + rax * 8 + {IPI_COUNTS:#x}]
    inc qword ptr [rbx]
    mov rbx, {attacks.LAPIC + 0xB0:#x}
    mov dword ptr [rbx], 0
    pop rbx
    pop rax
    iretq
print_hex:
    mov rbx, rax
    mov ecx, 16
print_hex_next:
    rol rbx, 4
    mov eax, ebx
    and eax, 0xf
    cmp eax, 10
    jb print_hex_digit
    add eax, 0x27
print_hex_digit:
    add eax, 0x30
    out dx, al
    dec ecx
    jnz print_hex_next
    mov al, 0x20
    out dx, al
    ret
"""


# ---------------------------------------------------------------- the machine
HONEST, ATTACKER = 0, 1  # kernel indexes


def campaign_config(on_violation: str = "log") -> OsvConfig:
    """The two kernels and their channel; ``on_violation`` is the attacker's policy."""
    topology = Topology(1, 4, MACHINE_MEMORY)
    ram = layout.LOW_MEMORY_END
    kernels = (
        KernelPlan(HONEST, "honest", "", "", attacks.HONEST_APIC_IDS, (MemoryRange(ram, attacks.KERNEL_RAM, 0),)),
        KernelPlan(ATTACKER, "attacker", "", "", attacks.ATTACKER_APIC_IDS,
                   (MemoryRange(ram + attacks.KERNEL_RAM, attacks.KERNEL_RAM, 0),), on_violation),
    )
    channel = ChannelPlan(0, "shared", attacks.CHANNEL_SIZE, (HONEST, ATTACKER), ())
    config = OsvConfig(topology, kernels, (channel,))
    validate(config)
    assert config.channel_addresses == (attacks.CHANNEL_BASE,)
    return config



@functools.cache
def _config(on_violation: str) -> OsvConfig:
    return campaign_config(on_violation)


@functools.cache
def honest_code() -> bytes:
    return assemble(honest_source() + SET_GATE, "long", CODE_BASE)


@functools.cache
def _idle_code() -> bytes:
    return assemble("idle:\n    cli\n    hlt\n    jmp idle\n", "long", CODE_BASE)


_START = Snippet("campaign", "")  # the long-mode start state of snippets


def build_machine(attacker_code: bytes, on_violation: str = "log") -> Machine:
    """The campaign machine with the honest kernel and ``attacker_code`` placed, every core started."""
    machine = Machine(osv_plan(_config(on_violation)), console=_discard)
    for kernel, code in zip(machine.kernels, (honest_code(), attacker_code), strict=True):
        machine.install_firmware(kernel)
        kernel.view.write(CODE_BASE, code)
        machine.watch_code(kernel, [(CODE_BASE, len(code), CODE_BASE)])
        _long_mode_tables(kernel.view)
        for core in kernel.cores:
            _start_core(core, _START)
    for start, end in HLT_FILL:
        machine.kernels[ATTACKER].view.write(start, bytes([OPCODE_HLT]) * (end - start))
    return machine


def _discard(line: str) -> None:
    """The console sink: lines are kept in the machine's transcript."""


def run_machine(machine: Machine) -> RunResult:
    return Scheduler(machine, QUANTUM, limits=RunLimits(max_instructions=MAX_INSTRUCTIONS, timeout=WALL_LIMIT)).run()


# ---------------------------------------------------------------- what must not change
@dataclass(frozen=True)
class HonestState:
    """Everything of the honest kernel an attack must not change."""

    console: tuple[str, ...]
    end: str
    cores: tuple[tuple, ...]  # per core: instructions, state, fault, interrupts and exceptions taken
    registers: tuple[tuple[tuple[str, int], ...], ...]  # per core
    lapics: tuple[tuple, ...]
    ipis: tuple[tuple, ...]  # the bus statistics of its APICs
    account: tuple  # its monitor account: hypercalls, violations
    digest: str  # SHA-256 of its memory
    memory: bytes = field(repr=False, compare=False)


def _memory(kernel: Kernel) -> bytes:
    """Its private low MiB and its RAM, in guest-physical order; the channels excluded."""
    shared = set(kernel.placement.shared_ranges)
    return b"".join(bytes(m.bank.view[m.offset:m.offset + m.size]) for m in kernel.view.mappings
                    if (m.gpa, m.size) not in shared)


def honest_state(machine: Machine) -> HonestState:
    kernel = machine.kernels[HONEST]
    prefix = f"[{kernel.name}] "
    cores = tuple((core.instructions, core.state.value, core.fault.one_line() if core.fault else None,
                   core.interrupts_taken, core.exceptions_taken) for core in kernel.cores)
    registers = tuple(tuple(sorted(core.registers().items())) for core in kernel.cores)
    lapics = []
    for core in kernel.cores:
        lapic = machine.lapics[core.index]
        lapics.append((lapic.tpr, lapic.ldr, lapic.dfr, lapic.svr, lapic.irr, lapic.isr, lapic.tmr, lapic.esr,
                       tuple(sorted(lapic.lvt.items())), lapic.timer_initial, core.nmi_pending))
    ipis = tuple((apic, stats.sent, stats.received, stats.refused, tuple(sorted(stats.by_mode.items())))
                 for apic, stats in sorted(machine.bus.stats.items()) if apic in kernel.placement.apic_ids)
    account = machine.monitor.accounts[HONEST]
    memory = _memory(kernel)
    end = kernel.end.describe() if kernel.end else "still running"
    return HonestState(tuple(line for line in machine.transcript if line.startswith(prefix)), end, cores, registers,
                       tuple(lapics), ipis, (account.hypercalls, tuple(sorted((k.value, n) for k, n in
                                                                             account.violations.items()))),
                       hashlib.sha256(memory).hexdigest(), memory)


_FIELDS = {"console": "console", "end": "end", "cores": "instruction counts, run states or interrupts taken",
           "registers": "registers", "lapics": "local APIC state", "ipis": "IPI statistics",
           "account": "monitor account"}


def differences(baseline: HonestState, state: HonestState) -> list[str]:
    """Each way ``state`` differs from the baseline, as a readable line."""
    found = []
    for name, what in _FIELDS.items():
        want, got = getattr(baseline, name), getattr(state, name)
        if want != got:
            found.append(f"honest {what}: {_first_difference(want, got)}")
    if baseline.memory != state.memory:
        found.append(f"honest memory: {_memory_difference(baseline.memory, state.memory)}")
    return found


def _first_difference(want, got) -> str:
    if isinstance(want, tuple) and isinstance(got, tuple):
        for position, (a, b) in enumerate(zip(want, got)):
            if a != b:
                return f"[{position}] {_first_difference(a, b)}"
        return f"{len(got)} entries, expected {len(want)}"
    return f"{got!r:.200}, expected {want!r:.200}"


def _memory_difference(want: bytes, got: bytes) -> str:
    """The first differing guest-physical address (low MiB first, then RAM from 1 MiB: offsets match)."""
    offset = next(i for i in range(0, len(want), layout.PAGE_SIZE)
                  if want[i:i + layout.PAGE_SIZE] != got[i:i + layout.PAGE_SIZE])
    offset += next(i for i in range(layout.PAGE_SIZE) if want[offset + i] != got[offset + i])
    return f"first difference at guest-physical {offset:#x}: {got[offset]:#04x}, expected {want[offset]:#04x}"


_baselines: dict[str | None, HonestState] = {}


def baseline(mutant: str | None = None) -> HonestState:
    """The honest kernel beside an idle neighbour (under ``mutant``'s policy), once per process."""
    if mutant not in _baselines:
        with _activated(mutant):
            machine = build_machine(_idle_code())
            run_machine(machine)
            state = honest_state(machine)
        if mutant is None and (not state.end.startswith("exited") or "[honest] honest: done" not in state.console):
            raise CampaignError(f"the honest kernel did not finish beside an idle neighbour: {state.end}")
        _baselines[mutant] = state
    return _baselines[mutant]


@contextlib.contextmanager
def _activated(mutant: str | None) -> Iterator[None]:
    """Inside ``mutants.activate(mutant)`` (a broken OSV policy), or as is."""
    if mutant is None:
        yield
        return
    from osvemu.verify import mutants
    with mutants.activate(mutant):
        yield


class CampaignError(OsvemuError):
    """A campaign that cannot run: no baseline, no Dask, a bad argument."""

    exit_status = 2


# ---------------------------------------------------------------- one program
@dataclass(frozen=True)
class ProgramResult:
    program: AttackProgram = field(repr=False)
    operations: int  # operations the attacker started
    executed: dict[str, int]  # the same by kind
    refused: dict[str, int]  # by kind: OSV's violations, architectural IPI refusals, MSR #GP
    exceptions: int  # exceptions and interrupts the attacker's BSP took
    instructions: int  # every core's
    attacker_end: str
    run_reason: str
    violations: tuple[str, ...]  # the first few the monitor recorded
    differences: tuple[str, ...]  # empty unless breached
    host_seconds: float = field(default=0.0, compare=False)
    timed_out: bool = False  # stopped by the wall-clock limit: the counts above depend on the host

    @property
    def seed(self) -> int:
        return self.program.seed

    @property
    def index(self) -> int:
        return self.program.index

    @property
    def breach(self) -> bool:
        return bool(self.differences)

    @property
    def reproducer(self) -> str:
        return self.program.reproducer

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


def run_program(seed: int, index: int, mutant: str | None = None) -> ProgramResult:
    """Program ``index`` of campaign ``seed`` beside the honest kernel, compared with the baseline."""
    with _activated(mutant):
        return _run(attacks.generate(seed, index), baseline(mutant))


def replay(seed: int, index: int, mutant: str | None = None) -> ProgramResult:
    """``osvemu verify --replay SEED:INDEX``: the same run, in this process, with its details
    (``.program.source``, ``.differences``, ``.violations``, ``.attacker_end``)."""
    return run_program(seed, index, mutant)


_SHOWN_VIOLATIONS = 5


def _run(program: AttackProgram, expected: HonestState) -> ProgramResult:
    code = program.assemble()
    started = time.monotonic()
    try:
        machine = build_machine(code, program.on_violation)
        result = run_machine(machine)
        state = honest_state(machine)
    except Exception as error:  # noqa: BLE001 -- an attack on osvemu itself: a breach, not the campaign's end
        last = traceback.format_exception_only(error)[-1].strip()
        return ProgramResult(program, 0, {}, {}, 0, 0, "osvemu raised", last, (), (f"osvemu raised {last}",),
                             time.monotonic() - started)
    found = differences(expected, state)
    timed_out = "(--timeout)" in result.reason
    if timed_out:
        found.append(f"the run hit the wall-clock limit of {WALL_LIMIT:g} s")
    kernel = machine.kernels[ATTACKER]
    started_ops = min(kernel.view.read_u64(attacks.COUNTER), len(program.operations))
    account = machine.monitor.accounts[ATTACKER]
    refused = Counter({kind.value: count for kind, count in account.violations.items()})
    bus_refusals = sum(machine.bus.stats[apic].refused for apic in attacks.ATTACKER_APIC_IDS)
    refused["ipi (architectural)"] = bus_refusals - account.violations[ViolationKind.IPI]
    refused["msr #GP"] = sum(count for core in kernel.cores for (_, what), count in core.msr_counts.items()
                             if what.endswith("#GP"))
    shown = tuple(v.reason for v in machine.monitor.violations if v.kernel == kernel.name)[:_SHOWN_VIOLATIONS]
    end = kernel.end.kind.value if kernel.end else "running"
    return ProgramResult(program, started_ops, dict(Counter(program.operations[:started_ops])),
                         {kind: count for kind, count in refused.items() if count},
                         kernel.view.read_u64(attacks.FAULTS), sum(core.instructions for core in machine.cores),
                         end, result.reason, shown, tuple(found), time.monotonic() - started, timed_out)


# ---------------------------------------------------------------- many programs
@dataclass(frozen=True)
class Breach:
    seed: int
    index: int
    differences: tuple[str, ...]
    source: str = field(repr=False)

    @property
    def reproducer(self) -> str:
        return f"osvemu verify --replay {self.seed}:{self.index}"


@dataclass
class _Totals:
    """What a chunk of programs adds to a campaign: sums, so any order of merging gives the same result."""

    programs: int = 0
    operations: int = 0
    planned: int = 0
    executed: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    exceptions: int = 0
    instructions: int = 0
    attacker_ends: Counter[str] = field(default_factory=Counter)
    breaches: list[Breach] = field(default_factory=list)
    timed_out: int = 0

    def add(self, result: ProgramResult) -> None:
        self.programs += 1
        self.planned += len(result.program.operations)
        if result.breach:
            self.breaches.append(Breach(result.seed, result.index, result.differences, result.program.source))
        if result.timed_out:
            self.timed_out += 1
            return  # where the wall-clock limit stopped it depends on the host: its counts would too
        self.operations += result.operations
        self.executed.update(result.executed)
        self.refused.update(result.refused)
        self.exceptions += result.exceptions
        self.instructions += result.instructions
        self.attacker_ends[result.attacker_end] += 1

    def merge(self, other: _Totals) -> None:
        self.programs += other.programs
        self.operations += other.operations
        self.planned += other.planned
        self.executed.update(other.executed)
        self.refused.update(other.refused)
        self.exceptions += other.exceptions
        self.instructions += other.instructions
        self.attacker_ends.update(other.attacker_ends)
        self.breaches += other.breaches
        self.timed_out += other.timed_out


def run_chunk(seed: int, indexes: Sequence[int], mutant: str | None = None) -> _Totals:
    """Programs ``indexes`` of campaign ``seed`` (a worker's task: module level, so it pickles)."""
    totals = _Totals()
    for index in indexes:
        totals.add(run_program(seed, index, mutant))
    return totals


@dataclass(frozen=True)
class CampaignSummary:
    seed: int
    programs: int
    operations: int  # attack operations started
    planned_operations: int  # in the programs as generated
    operations_by_kind: dict[str, int]
    refused: dict[str, int]  # by kind
    exceptions: int  # taken by the attackers' BSPs
    instructions: int
    attacker_ends: dict[str, int]
    breaches: tuple[Breach, ...]  # by index
    timed_out: int  # programs the wall-clock limit stopped (breaches; not in the counts above)
    wall_seconds: float = field(compare=False)
    workers: int = field(compare=False)
    where: str = field(compare=False)  # "local processes", "this process", "Dask ..."
    mutant: str | None = None

    @property
    def programs_per_second(self) -> float:
        return self.programs / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


#: Programs per task: enough to hide the cost of a task, few enough to balance the workers.
MAX_CHUNK = 25


def _chunks(count: int, workers: int) -> list[tuple[int, ...]]:
    size = max(1, min(MAX_CHUNK, count // (4 * workers) or 1))
    return [tuple(range(start, min(start + size, count))) for start in range(0, count, size)]


def run_campaign(count: int, seed: int, workers: int | None = None, scheduler: str | None = None,
                 mutant: str | None = None, progress: Callable[[int, int], None] | None = None) -> CampaignSummary:
    """Programs 0..count-1 of campaign ``seed``: on ``workers`` local processes (default: one per host
    core; 1 runs them in this process), or on the Dask cluster at ``scheduler`` ("local": a
    LocalCluster of ``workers`` processes started for the campaign).  ``progress(done, count)`` is
    called as chunks finish.  The result, but for timing and placement, depends only on (count, seed),
    unless a program hits the wall-clock limit (a breach whose counts are then left out)."""
    if count < 0:
        raise CampaignError(f"--campaign {count}: the number of programs cannot be negative")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise CampaignError(f"{workers} workers: at least one is needed")
    started = time.monotonic()
    if scheduler is not None:
        totals, where, workers = _on_dask(count, seed, workers, scheduler, mutant, progress)
    elif workers == 1:
        totals, where = _in_process(count, seed, mutant, progress), "this process"
    else:
        totals, where = _on_processes(count, seed, workers, mutant, progress), f"{workers} local processes"
    return CampaignSummary(seed, totals.programs, totals.operations, totals.planned, dict(sorted(totals.executed.items())),
                           dict(sorted(totals.refused.items())), totals.exceptions, totals.instructions,
                           dict(sorted(totals.attacker_ends.items())),
                           tuple(sorted(totals.breaches, key=lambda breach: breach.index)), totals.timed_out,
                           time.monotonic() - started, workers, where, mutant)


def _in_process(count: int, seed: int, mutant: str | None, progress: Callable[[int, int], None] | None) -> _Totals:
    totals = _Totals()
    for chunk in _chunks(count, 1):
        totals.merge(run_chunk(seed, chunk, mutant))
        if progress:
            progress(totals.programs, count)
    return totals


def _on_processes(count: int, seed: int, workers: int, mutant: str | None,
                  progress: Callable[[int, int], None] | None) -> _Totals:
    """Chunks on a pool of fresh (spawned) processes: nothing of this process's state is inherited."""
    totals = _Totals()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(run_chunk, seed, chunk, mutant) for chunk in _chunks(count, workers)]
        for future in concurrent.futures.as_completed(futures):
            totals.merge(future.result())
            if progress:
                progress(totals.programs, count)
    return totals


def _on_dask(count: int, seed: int, workers: int, scheduler: str, mutant: str | None,
             progress: Callable[[int, int], None] | None) -> tuple[_Totals, str, int]:
    """Chunks as tasks of a Dask cluster (``dask.distributed``, an optional dependency)."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise CampaignError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=None))
            client = stack.enter_context(Client(cluster))
            where = f"Dask LocalCluster of {workers} processes"
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=30))
            except (OSError, TimeoutError, ValueError) as error:
                raise CampaignError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
            workers = sum(info.get("nthreads", 1) for info in client.scheduler_info()["workers"].values()) or 1
            where = f"Dask scheduler {scheduler}"
        chunks = _chunks(count, workers)
        futures = client.map(run_chunk, [seed] * len(chunks), chunks, [mutant] * len(chunks), pure=False)
        totals = _Totals()
        for future in as_completed(futures):
            totals.merge(future.result())
            if progress:
                progress(totals.programs, count)
    return totals, where, workers


def format_summary(summary: CampaignSummary) -> str:
    """The campaign's summary as ``osvemu verify --campaign`` prints it."""
    def counts(values: dict[str, int]) -> str:
        return ", ".join(f"{kind} {count}" for kind, count in sorted(values.items(), key=lambda item: -item[1])) \
            or "none"

    mutant = f", mutant {summary.mutant}" if summary.mutant else ""
    lines = [f"attack campaign: seed {summary.seed}, {summary.programs} programs on {summary.where}{mutant}",
             f"  operations   {summary.operations} executed of {summary.planned_operations} generated",
             f"               {counts(summary.operations_by_kind)}",
             f"  refused      {summary.refused_total}: {counts(summary.refused)}",
             f"  exceptions   {summary.exceptions} taken by the attackers",
             f"  instructions {summary.instructions}",
             f"  attackers    {counts(summary.attacker_ends)}",
             (f"  wall time    {summary.wall_seconds:.1f} s, {summary.programs_per_second:.1f} programs/s "
              f"({summary.workers} workers)"),
             f"  breaches     {len(summary.breaches)}"
             + (f" ({summary.timed_out} stopped by the {WALL_LIMIT:g} s wall-clock limit, not counted above)"
                if summary.timed_out else "")]
    for breach in summary.breaches:
        lines.append(f"    {breach.seed}:{breach.index}: {breach.differences[0]}"
                     + (f" (+{len(breach.differences) - 1} more)" if len(breach.differences) > 1 else ""))
        lines.append(f"      reproduce: {breach.reproducer}")
    return "\n".join(lines)


def format_replay(result: ProgramResult) -> str:
    """One program again, as ``osvemu verify --replay SEED:INDEX`` prints it:
    its assembly, what it did and, for a breach, what differed."""
    program = result.program
    lines = [(f"attack program {program.reproducer}: {len(program.operations)} operations, "
             f"on_violation = {program.on_violation}"), program.source.rstrip(), "",
             f"operations started {result.operations}: "
             + (", ".join(f"{kind} {count}" for kind, count in sorted(result.executed.items())) or "none"),
             "refused: " + (", ".join(f"{kind} {count}" for kind, count in sorted(result.refused.items())) or "none"),
             (f"exceptions taken {result.exceptions}, instructions {result.instructions}, "
             f"attacker {result.attacker_end}; the run: {result.run_reason}")]
    lines += [f"  violation: {reason}" for reason in result.violations]
    if result.breach:
        lines.append("BREACH: the honest kernel differs from its run beside an idle neighbour:")
        lines += [f"  {difference}" for difference in result.differences]
    else:
        lines.append("no breach: the honest kernel ended exactly as beside an idle neighbour")
    return "\n".join(lines)


__all__ = ["MAX_INSTRUCTIONS", "QUANTUM", "WALL_LIMIT", "Breach", "CampaignError", "CampaignSummary", "HonestState",
           "ProgramResult", "baseline", "build_machine", "campaign_config", "differences", "format_replay",
           "format_summary", "honest_source", "honest_state", "replay", "run_campaign", "run_chunk", "run_program"]
