"""The trap-all monitor and ``osvemu eval``: trap-all is OSV with more exits
(same console, same instructions), each exit kind equals what the machine
saw, counted independently; eval runs the three modes, checks the guests,
and its table and JSON agree."""

from __future__ import annotations

import io
import json
import re
import statistics
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from osvemu import cli, evaluation
from osvemu.errors import ConfigError, OsvemuError
from osvemu.events import Halted
from osvemu.osv.config import default_config
from osvemu.osv.plan import osv_plan
from osvemu.platform import layout
from osvemu.platform.icr import Icr
from osvemu.platform.machine import Machine
from osvemu.platform.monitor import OWN_KINDS, TRAP_ALL_KINDS
from osvemu.platform.topology import Topology
from osvemu.scheduler import Scheduler

#: A small minilinux run: 2 kernels x 2 cores, short workloads.
CMDLINE = "primes=1000 rounds=5"
EVAL_CMDLINE = "workload=primes primes=100"
OPCODE_CPUID = b"\x0f\xa2"


class Seen:
    """What the machine's devices and cores saw, counted beside the monitor
    (only while the core's kernel is alive, as exits are)."""

    def __init__(self, machine: Machine) -> None:
        self.counts: list[Counter[str]] = [Counter() for _ in machine.kernels]
        self.machine = machine
        for lapic, core in zip(machine.lapics, machine.cores):
            lapic.read = self._counting(core, "lapic access", lapic.read)
            lapic.write = self._counting(core, "lapic access", lapic.write)
        machine.port_in = self._counting_core("port", machine.port_in)
        machine.port_out = self._counting_core("port", machine.port_out)
        machine.cpuid = self._counting_cpuid(machine.cpuid)
        machine.events.subscribe(self._event)

    def _alive(self, core):
        kernel = self.machine.kernel_of(core)
        return kernel if kernel is not None and not kernel.ended else None

    def _counting(self, core, kind, method):
        def wrapper(*args):
            kernel = self._alive(core)
            result = method(*args)
            if kernel is not None:
                self.counts[kernel.index][kind] += 1
                self.counts[kernel.index]["ipi sent"] += isinstance(result, Icr)
            return result
        return wrapper

    def _counting_core(self, kind, method):
        def wrapper(core, *args):
            kernel = self._alive(core)
            if kernel is not None:
                self.counts[kernel.index][kind] += 1
            return method(core, *args)
        return wrapper

    def _counting_cpuid(self, method):
        def wrapper(core, leaf, subleaf):
            kernel = self._alive(core)
            if kernel is not None and core.linear.read_code(core.rip, 2) == OPCODE_CPUID:
                self.counts[kernel.index]["cpuid instruction"] += 1
            return method(core, leaf, subleaf)
        return wrapper

    def _event(self, event) -> None:
        core = self.machine.cores[event.core]
        kernel = self._alive(core)
        if kernel is not None and isinstance(event.record, Halted):
            self.counts[kernel.index]["halt"] += 1


def _run(minilinux: Path, mode: str, jobs: int = 1) -> tuple[Machine, Seen | None]:
    config = default_config(Topology(2, 2, 2 * layout.GiB), str(minilinux), CMDLINE, 2)
    machine = Machine(osv_plan(config, monitor_mode=mode), console=lambda line: None)
    machine.boot()
    seen = Seen(machine) if jobs == 1 else None
    scheduler = Scheduler(machine, 10_000, False)
    if jobs > 1:
        from osvemu.parallel import run_partitioned

        result = run_partitioned(machine, scheduler, jobs)
    else:
        result = scheduler.run()
    assert result.status == 0, result.reason
    return machine, seen


@pytest.fixture(scope="module")
def osv_run(minilinux):
    return _run(minilinux, "osv")


@pytest.fixture(scope="module")
def trap_all_run(minilinux):
    return _run(minilinux, "trap-all")


def test_trap_all_runs_exactly_what_osv_runs(osv_run, trap_all_run):
    (osv, _), (trapped, _) = osv_run, trap_all_run
    assert trapped.transcript == osv.transcript
    assert any(line.endswith("combined result of 2 kernels: 4 CPUs, primes=336, pingpong=20: OK")
               for line in osv.transcript)
    assert [core.instructions for core in trapped.cores] == [core.instructions for core in osv.cores]
    assert [core.interrupts_taken for core in trapped.cores] == [core.interrupts_taken for core in osv.cores]


def test_osv_counts_only_its_own_exits(osv_run, trap_all_run):
    (osv, seen), (trapped, _) = osv_run, trap_all_run
    assert set(osv.monitor.exits) == set(OWN_KINDS)
    assert osv.monitor.report()["monitor"] == "osv"
    assert {kind: trapped.monitor.exits[kind] for kind in OWN_KINDS} == dict(osv.monitor.exits)
    assert osv.monitor.exits["icr"] == sum(saw["ipi sent"] for saw in seen.counts) > 0
    assert osv.monitor.exits["hypercall"] == sum(account.hypercalls for account in osv.monitor.accounts)
    assert osv.monitor.exits["violation"] == 0


def test_trap_all_exits_are_what_the_machine_saw(trap_all_run):
    machine, seen = trap_all_run
    monitor = machine.monitor
    assert set(monitor.exits) == set(TRAP_ALL_KINDS)
    assert monitor.report()["monitor"] == "trap-all"
    for kernel in machine.kernels:
        exits, saw = monitor.accounts[kernel.index].exits, seen.counts[kernel.index]
        assert exits["lapic"] + exits["icr"] == saw["lapic access"] > 0
        assert exits["icr"] == saw["ipi sent"] > 0
        assert exits["io"] == saw["port"] > 0
        assert exits["cpuid"] == saw["cpuid instruction"] > 0
        assert exits["hlt"] == saw["halt"] > 0
        assert exits["msr"] == sum(sum(core.msr_counts.values()) for core in kernel.cores) > 0
        assert exits["interrupt"] == sum(core.interrupts_taken for core in kernel.cores) > 0
        assert exits["ioapic"] == 0  # minilinux drives no IOAPIC
    # The core counts its CPUID instructions, not the CPUID checks of the CR writes it emulates.
    assert sum(saw["cpuid instruction"] for saw in seen.counts) == sum(core.special_counts["cpuid"]
                                                                        for core in machine.cores)


def test_per_kernel_exits_add_up_and_are_reported(osv_run, trap_all_run):
    for machine, _ in (osv_run, trap_all_run):
        monitor = machine.monitor
        per_kernel = [monitor.report_kernel(kernel.index)["monitor_exits"] for kernel in machine.kernels]
        assert sum((Counter(exits) for exits in per_kernel), Counter()) == +monitor.exits
        assert set(per_kernel[0]) == set(monitor.exits)
        assert monitor.report()["monitor_exits"] == dict(monitor.exits)


def test_per_kernel_exits_survive_worker_processes(minilinux, trap_all_run):
    parallel, _ = _run(minilinux, "trap-all", jobs=2)
    machine, _ = trap_all_run
    assert [dict(account.exits) for account in parallel.monitor.accounts] == \
        [dict(account.exits) for account in machine.monitor.accounts]
    assert dict(parallel.monitor.exits) == dict(machine.monitor.exits)


def test_unknown_monitor_mode_is_one_line(minilinux):
    config = default_config(Topology(1, 2, 256 * layout.MiB), str(minilinux), "", 1)
    with pytest.raises(ConfigError, match="^--monitor 'xen': the monitors are osv, trap-all$"):
        osv_plan(config, monitor_mode="xen")


# ---------------------------------------------------------------- osvemu eval
def _eval(*argv: str) -> tuple[int, str, str]:
    """``osvemu eval ARGV`` in this process (the parser eval's options make):
    the exit status, standard output and standard error."""
    parser = cli._Parser(prog="osvemu eval")
    evaluation.add_options(parser)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = evaluation.run(parser.parse_args(list(argv)))
        except OsvemuError as error:
            print(f"osvemu: {error}", file=err)
            status = error.exit_status
    return status, out.getvalue(), err.getvalue()


def _row(table: str, label: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(label + "  "))
    return line[len(label):].split()


def test_eval_end_to_end(minilinux, tmp_path):
    out_json = tmp_path / "eval.json"
    status, table, err = _eval(str(minilinux), "--sockets", "2", "--cores-per-socket", "2", "--kernels", "2",
                               "--repeats", "2", "--cmdline", EVAL_CMDLINE, "--json", str(out_json))
    assert status == 0, err
    data = json.loads(out_json.read_text())
    assert data["schema"] == "osvemu-eval/1"
    assert (data["image"], data["cmdline"], data["repeats"]) == (str(minilinux), EVAL_CMDLINE, 2)
    assert data["machine"] == {"sockets": 2, "cores_per_socket": 2, "kernels": 2}
    costs = data["exit_costs"]
    assert costs["cpu_hz"] == 2_000_000_000 and "lkml.iu.edu" in costs["source"]
    assert costs["cycles_per_exit"] == dict.fromkeys(TRAP_ALL_KINDS, 1376)
    assert set(data["modes"]) == {"native", "osv", "trap-all"}
    for entry in data["modes"].values():
        assert len(entry["runs"]) == 2
        for run in entry["runs"]:
            assert set(run) == {"host_seconds", "instructions", "virtual_ns", "exits", "modeled_exit_seconds",
                                "kernels"}
            assert isinstance(run["host_seconds"], float) and run["host_seconds"] > 0
            assert run["instructions"] == sum(kernel["instructions"] for kernel in run["kernels"])
            assert run["modeled_exit_seconds"] == sum(run["exits"].values()) * 1376 / 2e9
            for kind in run["exits"]:
                assert run["exits"][kind] == sum(kernel["exits"][kind] for kernel in run["kernels"])
            for kernel in run["kernels"]:
                assert set(kernel) == {"name", "instructions", "host_seconds", "virtual_ns", "exits"}
        assert entry["runs"][0]["instructions"] == entry["runs"][1]["instructions"]  # deterministic
        assert entry["runs"][0]["exits"] == entry["runs"][1]["exits"]
    native, osv, trapped = (data["modes"][mode]["runs"][0] for mode in ("native", "osv", "trap-all"))
    assert [kernel["name"] for kernel in native["kernels"]] == ["machine"] and native["exits"] == {}
    assert [kernel["name"] for kernel in osv["kernels"]] == ["k0", "k1"]
    assert set(osv["exits"]) == set(OWN_KINDS) and set(trapped["exits"]) == set(TRAP_ALL_KINDS)
    assert trapped["instructions"] == osv["instructions"]
    assert trapped["modeled_exit_seconds"] > osv["modeled_exit_seconds"] > 0
    # The table: the JSON's medians, and its ratios computed from them.
    def median(mode, key):
        return statistics.median(run[key] for run in data["modes"][mode]["runs"])
    host = [median(mode, "host_seconds") for mode in evaluation.MODES]
    assert _row(table, "host seconds (median)") == [f"{value:.3f}" for value in host]
    assert _row(table, "host time / native") == [f"{value / host[0]:.3f}" for value in host]
    instructions = [int(median(mode, "instructions")) for mode in evaluation.MODES]
    assert _row(table, "guest instructions") == [f"{value:,}" for value in instructions]
    assert _row(table, "instructions / native") == [f"{value / instructions[0]:.4f}" for value in instructions]
    assert _row(table, "exits: io") == ["-", "-", f"{trapped['exits']['io']:,}"]
    assert _row(table, "exits: total") == ["0", f"{sum(osv['exits'].values()):,}",
                                           f"{sum(trapped['exits'].values()):,}"]
    exit_ms = [median(mode, "modeled_exit_seconds") * 1e3 for mode in evaluation.MODES]
    assert _row(table, "modeled exit cost (ms)") == [f"{value:.3f}" for value in exit_ms]
    assert "1376 cycles" in table and "https://lkml.iu.edu/hypermail/linux/kernel/2012.2/00527.html" in table
    assert err.count("osvemu eval: ") == 6


def test_eval_fails_when_a_guest_fails(minilinux):
    status, table, err = _eval(str(minilinux), "--sockets", "1", "--cores-per-socket", "2", "--kernels", "1",
                               "--repeats", "1", "--max-instructions", "100000")
    assert status == 1 and table == ""
    assert re.fullmatch(r"osvemu: eval: native run: the guest failed: unfinished: stopped after \d+ instructions "
                        r"\(--max-instructions\)\n", err.splitlines(keepends=True)[-1]), err


@pytest.mark.parametrize("argv, message", [
    (("--native",), "eval runs the workload natively, under OSV and under trap-all itself: drop --native"),
    (("--repeats", "0"), "--repeats must be 1..1000, not 0"),
    (("--jobs", "x"), "--jobs must be an integer, not 'x'"),
])
def test_eval_bad_options_are_one_line(minilinux, argv, message):
    status, table, err = _eval(str(minilinux), *argv)
    assert (status, table, err) == (2, "", f"osvemu: {message}\n")


def test_eval_needs_an_image():
    assert _eval() == (2, "", "osvemu: eval needs an IMAGE (or --config FILE)\n")
