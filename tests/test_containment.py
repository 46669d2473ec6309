"""Containment (issue 9): whatever one kernel does, the kernels beside it
finish with the same console, instruction counts and memory as beside an
honest neighbour, the monitor records the attack, and the run reports the
truth about every kernel.

The attackers are tests/guests/attacker, one attack per kernel picked by
its command line.  One machine holds a 2-core minilinux victim and up to 15
attackers at once; its honest twin has the same layout with ``attack=none``
everywhere (a kernel learns the kernel count from DESCRIBE_SELF, so the
layouts must match).  The 16-core victim beside each attack alone, under
both policies, is the slow test at the end.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import attacker_pair, run_osvemu

from osvemu.events import ViolationKind
from osvemu.osv.config import load_config
from osvemu.osv.plan import osv_plan
from osvemu.platform.ends import EXIT_HUNG, EXIT_VIOLATION, EndKind
from osvemu.platform.machine import Kernel, Machine
from osvemu.scheduler import Scheduler

ROOT = Path(__file__).resolve().parent.parent
MINILINUX = ROOT / "guests" / "minilinux.elf"
VICTIM_CMDLINE = "quiet primes=1000 rounds=5 collect_ms=300"
#: Attacks sharing one machine: each in its own 2-core kernel beside the victim.
ATTACKS = ("stack", "idt", "gdt", "tss", "cr3", "alias", "ptwalk", "init_all", "flood", "user_hypercall",
           "real_hypercall", "notify", "console", "triple", "spin")
MORE_ATTACKS = ("halt", "ipi", "exit", "init_all")

#: How each attack ends its own kernel under "log", and what the monitor records of it:
#: (end under log, violation kind or None, a substring of one of its recorded reasons).
EXPECTED = {
    "stack": (EndKind.IDLE, ViolationKind.MEMORY, "write to 0x400017d8 (40 bytes) outside the kernel's memory"),
    "idt": (EndKind.FAULT, ViolationKind.MEMORY, "read of 0x40001030 (16 bytes) outside the kernel's memory"),
    "gdt": (EndKind.FAULT, ViolationKind.MEMORY, "read of 0x40001018 (8 bytes) outside the kernel's memory"),
    "tss": (EndKind.IDLE, ViolationKind.MEMORY, "write to 0x400017d8 (40 bytes) outside the kernel's memory"),
    "cr3": (EndKind.FAULT, ViolationKind.MEMORY, "page-table walk reading 0x40001000 (8 bytes)"),
    "alias": (EndKind.IDLE, ViolationKind.MEMORY, "read of 0x40001000 (8 bytes) outside the kernel's memory"),
    "ptwalk": (EndKind.IDLE, ViolationKind.MEMORY, "page-table walk reading 0x40001000 (8 bytes)"),
    "init_all": (EndKind.HALTED, None, None),
    "flood": (EndKind.IDLE, ViolationKind.HYPERCALL, "hypercall 32767: no hypercall 32767"),
    "user_hypercall": (EndKind.IDLE, ViolationKind.HYPERCALL, "hypercall 1 from CPL 3: only CPL 0 may call OSV"),
    "real_hypercall": (EndKind.IDLE, ViolationKind.HYPERCALL, "hypercall 4 from real mode: only CPL 0 may call OSV"),
    "notify": (EndKind.IDLE, ViolationKind.HYPERCALL, "no channel lets this kernel notify kernel 0 with vector 0x20"),
    "console": (EndKind.IDLE, None, None),
    "triple": (EndKind.FAULT, None, None),
    "spin": (EndKind.HUNG, None, None),
    "halt": (EndKind.HALTED, None, None),
    "ipi": (EndKind.IDLE, ViolationKind.IPI, "belongs to another partition"),
    "exit": (EndKind.EXITED, None, None),
}
#: Attacks that end their kernel whatever the policy (they break no rule of OSV's, or die first).
NO_VIOLATION = {attack for attack, (_, kind, _) in EXPECTED.items() if kind is None}


def layout(attacks: tuple[str, ...], policy: str, victim_cores: int = 2, records: int = 20_000,
           attacker: Path | None = None) -> str:
    """A 4 x 8 machine: the victim on the first cores, then one 2-core kernel per attack."""
    image = attacker or ROOT / "tests" / "guests" / "build" / "attacker.elf"
    text = ('[machine]\nsockets = 4\ncores_per_socket = 8\nmemory = "2G"\n'
            f'[monitor]\nviolation_records = {records}\n'
            f'[[kernel]]\nname = "victim"\nimage = "{MINILINUX}"\ncmdline = "{VICTIM_CMDLINE}"\n'
            f'cores = ["0-{victim_cores - 1}"]\nmemory = {{ size = "256M" }}\n')
    for index, attack in enumerate(attacks):
        low = victim_cores + 2 * index
        text += (f'[[kernel]]\nname = "a{index}"\nimage = "{image}"\ncmdline = "attack={attack} count=2000"\n'
                 f'cores = ["{low}-{low + 1}"]\nmemory = {{ size = "64M" }}\non_violation = "{policy}"\n')
    return text


@dataclass
class Run:
    machine: Machine
    status: int
    lines: list[str]

    def kernel(self, name: str) -> Kernel:
        return next(kernel for kernel in self.machine.kernels if kernel.name == name)

    def console(self, name: str) -> list[str]:
        return [line for line in self.lines if line.startswith(f"[{name}] ")]

    def fingerprint(self, name: str) -> tuple:
        """What must not change: console, instruction counts, end and memory (RAM and low memory)."""
        kernel = self.kernel(name)
        shared = set(kernel.placement.shared_ranges)
        memory = hashlib.sha256()
        for mapping in kernel.view.mappings:
            if (mapping.gpa, mapping.size) not in shared:
                memory.update(mapping.bank.view[mapping.offset:mapping.offset + mapping.size])
        return (self.console(name), [core.instructions for core in kernel.cores], kernel.end, memory.hexdigest())


def run(tmp_path: Path, text: str, attacker: Path) -> Run:
    path = tmp_path / f"layout-{hashlib.sha1(text.encode()).hexdigest()[:12]}.toml"
    path.write_text(text)
    lines: list[str] = []
    machine = Machine(osv_plan(load_config(path)), console=lines.append)
    machine.boot()
    result = Scheduler(machine).run()
    return Run(machine, result.status, lines)


@pytest.fixture(scope="module")
def machines(tmp_path_factory, attacker_elf):
    """Runs by (attack group, policy), made once per module and worker."""
    cache: dict[tuple[tuple[str, ...], str], Run] = {}

    def get(attacks: tuple[str, ...], policy: str) -> Run:
        if (attacks, policy) not in cache:
            names = attacks if policy != "honest" else ("none",) * len(attacks)
            cache[attacks, policy] = run(tmp_path_factory.mktemp("containment"),
                                         layout(names, "log" if policy == "honest" else policy, attacker=attacker_elf),
                                         attacker_elf)
        return cache[attacks, policy]
    return get


@pytest.mark.parametrize("policy", ["log", "stop"])
@pytest.mark.parametrize("attacks", [ATTACKS, pytest.param(MORE_ATTACKS, marks=pytest.mark.slow)],
                         ids=["15-attacks", "4-more"])
def test_attacks_leave_the_victim_exactly_as_an_honest_neighbour_does(machines, attacks, policy):
    honest, hostile = machines(attacks, "honest"), machines(attacks, policy)
    assert honest.kernel("victim").end.clean and honest.status == 0
    assert hostile.fingerprint("victim") == honest.fingerprint("victim")
    monitor = hostile.machine.monitor
    assert monitor.accounts[0].violations == {}  # nothing is charged to the victim
    for index, attack in enumerate(attacks):
        kernel = hostile.kernel(f"a{index}")
        end, kind, reason = EXPECTED[attack]
        if policy == "stop" and kind is not None:
            assert kernel.end.kind is EndKind.VIOLATION and kernel.status == EXIT_VIOLATION, attack
            assert sum(monitor.accounts[kernel.index].violations.values()) == 1, attack  # stopped at the first
        else:
            assert kernel.end.kind is end, (attack, kernel.end)
        if kind is not None:
            assert monitor.accounts[kernel.index].violations[kind] >= 1, attack
            reasons = [v.reason for v in monitor.violations if v.kernel == kernel.name]
            assert any(reason in text for text in reasons), (attack, reasons[:3])


def test_the_run_reports_every_kernels_end(machines):
    hostile = machines(ATTACKS, "log")
    # The first kernel in order that did not end cleanly gives the status: a1's triple fault.
    assert hostile.status == 1
    assert hostile.kernel("a1").end.kind is EndKind.FAULT and "triple fault" in hostile.kernel("a1").end.detail
    spin = hostile.kernel(f"a{ATTACKS.index('spin')}")
    assert spin.end.kind is EndKind.HUNG and spin.status == EXIT_HUNG
    assert spin.end.detail == "no core can run again: spinning with interrupts off"
    killed = hostile.kernel(f"a{ATTACKS.index('init_all')}")
    assert killed.end.detail == "no core can run again: waiting for a STARTUP IPI"


def test_refused_accesses_read_all_ones_and_writes_vanish(machines):
    alias = machines(ATTACKS, "log").console(f"a{ATTACKS.index('alias')}")
    assert alias.count("[a5] attacker: alias: read 0xffffffffffffffff, read back 0xffffffffffffffff") == 2
    assert "[a5] attacker: alias: its own RAM at 0x201000 reads 0x0" in alias
    stack = machines(ATTACKS, "log").console("a0")
    assert "[a0] attacker: stack: resumed after an exception whose frame went outside its RAM" in stack


def test_hypercalls_from_user_mode_are_ud_and_change_nothing(machines):
    lines = machines(ATTACKS, "log").console(f"a{ATTACKS.index('user_hypercall')}")
    name = f"a{ATTACKS.index('user_hypercall')}"
    assert f"[{name}] attacker: user_hypercall: DESCRIBE_SELF returned 1 (#UD, not serviced), 0 bytes of the " \
           "page changed" in lines
    assert f"[{name}] attacker: user_hypercall: SHUTDOWN returned 4 (#UD, not serviced)" in lines
    assert machines(ATTACKS, "log").kernel(name).end.kind is EndKind.IDLE  # SHUTDOWN from CPL 3 ended nothing


def test_console_lines_cannot_be_forged(machines):
    hostile = machines(ATTACKS, "log")
    name = f"a{ATTACKS.index('console')}"
    assert hostile.console(name)[3:7] == [
        f"[{name}] \\x1b[2K[victim] all tests PASS",
        f"[{name}] attacker: console: backspaces" + "\\x08" * 28 + "[victim] OK",
        f"[{name}] \\x1b]0;pwned\\x07attacker: console: OSC window title set",
        f"[{name}] attacker: console: \\x1b[31mred from here on",
    ]
    assert all(line.isprintable() for line in hostile.lines)


def test_notify_refused_without_a_channel(machines):
    name = f"a{ATTACKS.index('notify')}"
    lines = machines(ATTACKS, "log").console(name)
    for vector in ("0x20", "0x40", "0xf8", "0xff"):
        assert f"[{name}] attacker: notify: vector {vector}: 0 ok, 0 EAGAIN, 2000 EPERM, 0 ENOENT, 0 EINVAL, 0 other" \
            in lines


@pytest.mark.parametrize("fast", [False, True], ids=["deterministic", "fast"])
def test_notify_follows_the_channel_rule_and_the_rate_limit_in_virtual_time(tmp_path, attacker_elf, fast):
    """A channel allowing vector 0x40 between two kernels: 0x40 is delivered,
    at most one per 10 us of the sender's virtual time (the rest EAGAIN),
    every other vector is EPERM -- the same rule under --fast."""
    config = tmp_path / "doorbell.toml"
    config.write_text(attacker_pair(attacker_elf, sender="attack=notify target=0 count=300"))
    done = run_osvemu("boot", "--config", config, *(["--fast"] if fast else []), "--report", tmp_path / "r.json")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("[sender] attacker: notify: vector")]
    counts = {line.split()[4].rstrip(":"): line.split(": ", 3)[3] for line in lines}
    for vector in ("0x20", "0xf8", "0xff"):
        assert counts[vector] == "0 ok, 0 EAGAIN, 300 EPERM, 0 ENOENT, 0 EINVAL, 0 other"
    ok, eagain = (int(counts["0x40"].split(", ")[i].split()[0]) for i in (0, 1))
    assert ok + eagain == 300 and ok >= 1
    if not fast:
        assert (ok, eagain) == (NOTIFY_DELIVERED, 300 - NOTIFY_DELIVERED)


#: 0x40 notifications that pass the rate limit in the deterministic run above.
NOTIFY_DELIVERED = 8


def test_a_violation_flood_costs_constant_memory(tmp_path, attacker_elf):
    """Violations are counted without limit but kept in full only at the two
    ends of the record; the report says how many were dropped."""
    text = layout(("flood",), "log", records=4, attacker=attacker_elf).replace("count=2000", "count=5000")
    hostile = run(tmp_path, text, attacker_elf)
    monitor = hostile.machine.monitor
    assert monitor.accounts[1].violations == {ViolationKind.HYPERCALL: 5000}
    assert len(monitor.violations) == 8 and monitor.dropped == 5000 - 8
    report = monitor.report()
    assert (report["violations_total"], report["violations_dropped"], len(report["violations"])) == (5000, 4992, 8)


def test_a_failing_kernel_is_not_masked_by_one_that_killed_itself(tmp_path, attacker_elf):
    """Finding: a kernel that INITs all its cores used to end the run with 0
    ("all cores idle"), hiding another kernel's status 51."""
    config = tmp_path / "mask.toml"
    config.write_text(layout(("init_all", "exit"), "log", attacker=attacker_elf).replace(
        "attack=exit count=2000", "attack=exit status=51"))
    done = run_osvemu("boot", "--quiet", "--config", config)
    assert done.returncode == 51
    assert done.stderr.splitlines() == ['osvemu: kernel "a1": exited with status 51 (wrote 51 to port 0xf4)']


def test_a_restarted_kernel_lives_again_while_the_others_run_on(tmp_path, attacker_elf, machines):
    """restart = 2: the triple-faulting kernel is booted twice more, each
    life exactly like the first; the victim is untouched."""
    text = layout(("triple",), "log", attacker=attacker_elf).replace('on_violation = "log"',
                                                                      'on_violation = "log"\nrestart = 2')
    hostile = run(tmp_path, text, attacker_elf)
    honest = run(tmp_path, layout(("none",), "log", attacker=attacker_elf), attacker_elf)
    assert hostile.fingerprint("victim") == honest.fingerprint("victim")
    kernel = hostile.kernel("a0")
    assert [end.kind for end in kernel.lives + [kernel.end]] == [EndKind.FAULT] * 3
    life = hostile.console("a0")
    assert len(life) % 3 == 0 and life == life[:len(life) // 3] * 3
    assert hostile.status == 1


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["log", "stop"])
@pytest.mark.parametrize("attack", sorted(EXPECTED))
def test_a_sixteen_core_victim_beside_each_attack(tmp_path_factory, attacker_elf, attack, policy, _honest_16):
    hostile = run(tmp_path_factory.mktemp("c16"), layout((attack,), policy, victim_cores=16,
                                                         attacker=attacker_elf), attacker_elf)
    assert hostile.fingerprint("victim") == _honest_16.fingerprint("victim")
    assert hostile.kernel("victim").end.clean


@pytest.fixture(scope="module")
def _honest_16(tmp_path_factory, attacker_elf):
    return run(tmp_path_factory.mktemp("c16"), layout(("none",), "log", victim_cores=16, attacker=attacker_elf),
               attacker_elf)



FLOOD_RSS = """
import sys
from osvemu.osv.config import load_config
from osvemu.osv.plan import osv_plan
from osvemu.platform.machine import Machine
from osvemu.scheduler import Scheduler
machine = Machine(osv_plan(load_config(sys.argv[1])), console=lambda line: None)
machine.boot()
Scheduler(machine).run()
monitor = machine.monitor
# VmHWM: this process's peak RSS since exec (ru_maxrss would carry the forking parent's over exec).
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(monitor.violation_count, len(monitor.violations), peak)
"""


@pytest.mark.slow
def test_a_long_hypercall_flood_stays_in_bounded_memory(tmp_path, attacker_elf):
    """200,000 bad hypercalls: every one counted, 128 kept, and the process
    stays far below 300 MB (the 10 M-call measurement is in the issue's note)."""
    config = tmp_path / "flood.toml"
    config.write_text(layout(("flood",), "log", records=64, attacker=attacker_elf).replace("count=2000", "count=200000"))
    done = subprocess.run([sys.executable, "-c", FLOOD_RSS, str(config)], capture_output=True, text=True, timeout=900,
                          check=True)
    total, kept, max_rss_kib = map(int, done.stdout.split())
    assert (total, kept) == (200_000, 128)
    assert max_rss_kib < 300 * 1024


@pytest.mark.parametrize("attack", ["alias", pytest.param("stack", marks=pytest.mark.slow),
                                    pytest.param("user_hypercall", marks=pytest.mark.slow)])
def test_an_attack_has_the_same_outcome_under_fast(tmp_path, attacker_elf, attack):
    """Fast mode's run-ahead slices refuse, record and contain exactly as
    deterministic ones do: same attacker console, same violations."""
    config = tmp_path / "pair.toml"
    config.write_text(attacker_pair(attacker_elf, sender=f"attack={attack}"))
    outcomes = []
    for mode in ([], ["--fast"]):
        report = tmp_path / f"report{len(outcomes)}.json"
        done = run_osvemu("boot", "--config", config, *mode, "--timeout", "60", "--report", report)
        assert done.returncode == 0, done.stderr
        data = json.loads(report.read_text())
        outcomes.append(([line for line in done.stdout.splitlines() if line.startswith("[sender]")],
                         [(v["kind"], v["reason"]) for v in data["violations"]]))
    assert outcomes[1] == outcomes[0]


def test_kernels_that_can_never_run_again_are_restarted_too(tmp_path, attacker_elf):
    """A kernel found halted or hung (not a fault it reported itself) is
    booted again by its restart policy, and the run still ends by itself."""
    config = tmp_path / "lives.toml"
    config.write_text(attacker_pair(attacker_elf, "attack=halt", "attack=spin", channel=False, restart=2))
    done = run_osvemu("boot", "--quiet", "--config", config, "--report", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert [[life["end"] for life in kernel["lives"]] for kernel in report["kernels"]] == [["halted"] * 3, ["hung"] * 3]
    assert done.returncode == EXIT_HUNG
    assert done.stderr.splitlines() == ['osvemu: kernel "sender": hung: no core can run again: spinning with interrupts off']
    assert done.stdout.count("[receiver] attacker: attack=halt") == 3
