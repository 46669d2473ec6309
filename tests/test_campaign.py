"""The attack campaign (osvemu.verify.attacks and osvemu.verify.campaign):
generated attacking kernels beside an honest kernel, which must finish as
beside an idle neighbour; the same aggregates whatever the worker count or
where the programs run; and a comparison that does catch a leaky policy."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import run_osvemu

from osvemu.osv import hypercalls, ipi_policy
from osvemu.platform.apicbus import RoutingDecision
from osvemu.platform.icr import resolve_destinations
from osvemu.verify import attacks, campaign

SEED = 7  # its first 40 programs: every kind of operation, every way an attacker ends
#: Programs of campaign SEED that send an IPI the honest kernel would take, were the policy to let it through.
IPI_TO_HONEST = 1


def leaky_route_within(icr, sender_apic_id, partition, layout, apics):
    """A broken OSV: resolve the destination among every APIC of the machine."""
    return RoutingDecision(tuple(resolve_destinations(icr, sender_apic_id, apics)))


@pytest.fixture(scope="module")
def in_process_40():
    return campaign.run_campaign(40, SEED, workers=1)


def test_generation_is_a_function_of_seed_and_index():
    first, again = attacks.generate(SEED, 3), attacks.generate(SEED, 3)
    assert first == again and first.source == again.source
    assert attacks.generate(SEED, 4).source != first.source
    assert attacks.generate(SEED + 1, 3).source != first.source
    assert first.reproducer == f"osvemu verify --replay {SEED}:3"
    assert first.on_violation in ("log", "stop")


def test_every_kind_appears_and_every_program_assembles():
    kinds: Counter[str] = Counter()
    policies: Counter[str] = Counter()
    for index in range(200):
        program = attacks.generate(11, index)
        code = program.assemble()
        assert attacks.MIN_OPERATIONS <= len(program.operations) <= attacks.MAX_OPERATIONS
        assert len(code) < attacks.OPS_LIMIT - attacks.CODE_BASE
        kinds.update(program.operations)
        policies[program.on_violation] += 1
    assert set(kinds) == set(attacks.OPERATION_KINDS)
    assert policies["stop"] and policies["log"]


def test_the_honest_baseline_is_a_full_run():
    state = campaign.baseline()
    assert state.end.startswith("exited") and "SHUTDOWN" in state.end
    assert state.console[-1] == "[honest] honest: done"
    assert "[honest] honest: ap up" in state.console
    assert all(instructions > 0 for instructions, *_ in state.cores)
    assert state.account == (2, ())  # DESCRIBE_SELF and SHUTDOWN, and nothing charged to it


@pytest.mark.slow
def test_forty_programs_breach_nothing_and_count_the_same_on_one_or_two_processes(in_process_40):
    local = campaign.run_campaign(40, SEED, workers=2)
    assert local.breaches == () and in_process_40.breaches == ()
    assert local == in_process_40  # every aggregate; timing and placement are not compared
    assert local.programs == 40 and local.workers == 2 and local.where == "2 local processes"
    assert 0 < local.operations <= local.planned_operations
    assert sum(local.operations_by_kind.values()) == local.operations
    assert local.refused["memory"] > 0 and local.refused["hypercall"] > 0 and local.refused["ipi"] > 0
    assert sum(local.attacker_ends.values()) == 40 and len(local.attacker_ends) >= 4
    text = campaign.format_summary(local)
    assert f"{local.operations} executed of {local.planned_operations} generated" in text
    assert "breaches     0" in text and "programs/s" in text


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_local_result():
    pytest.importorskip("dask.distributed")
    done: list[tuple[int, int]] = []
    on_dask = campaign.run_campaign(20, SEED, workers=2, scheduler="local", progress=lambda n, total: done.append((n, total)))
    assert on_dask == campaign.run_campaign(20, SEED, workers=1)
    assert on_dask.breaches == () and on_dask.where.startswith("Dask LocalCluster")
    assert done[-1] == (20, 20) and [n for n, _ in done] == sorted(n for n, _ in done)


def test_a_leaky_policy_is_a_breach_with_a_reproducer(monkeypatch):
    campaign.baseline()  # beside an idle neighbour, with OSV's own policy
    assert not campaign.run_program(SEED, IPI_TO_HONEST).breach
    monkeypatch.setattr(ipi_policy, "_route_within", leaky_route_within)
    result = campaign.replay(SEED, IPI_TO_HONEST)
    assert result.breach and result.reproducer == f"osvemu verify --replay {SEED}:{IPI_TO_HONEST}"
    assert any(line.startswith("honest ") for line in result.differences), result.differences
    assert "icr" in result.program.operations and "op_0:" in result.program.source
    summary = campaign.run_campaign(3, SEED, workers=1)
    assert [breach.index for breach in summary.breaches] == [IPI_TO_HONEST, 2]
    text = campaign.format_summary(summary)
    assert f"reproduce: osvemu verify --replay {SEED}:{IPI_TO_HONEST}" in text and "breaches     2" in text


def test_an_exception_inside_osvemu_is_a_breach_not_a_crash(monkeypatch):
    def broken(call, view):
        raise RuntimeError("hypercall decision failed")
    campaign.baseline()
    monkeypatch.setattr(hypercalls, "handle", broken)
    result = campaign.run_program(SEED, 0)
    assert result.breach and result.attacker_end == "osvemu raised"
    expected = "osvemu raised osvemu.errors.EmulatorError: core 0: error in a hook: RuntimeError('hypercall decision"
    assert result.differences == (expected + " failed')",)


@pytest.mark.parametrize("index, what", [(21, "CR4.SMEP over user code pages: an exception storm"),
                                         (5, "CR0 left with PG set and PE clear: a core that could not execute"),
                                         (716, "CR0.PG cleared in 64-bit mode: 0.6 ms per instruction after it")])
def test_programs_that_once_stalled_the_machine_now_take_their_gp(index, what):
    """Found by a 2,000-program campaign (seed 2026): Unicorn accepted these
    control-register writes, and the attacker then livelocked inside one
    slice, retired nothing slice after slice, or ran its own page's code one
    retranslation at a time, holding the honest kernel back for up to 20 s.
    Now the writes are #GP(0) as on the processor (osvemu/cpu/control.py):
    the attacker's handler skips them and both kernels end."""
    result = campaign.replay(2026, index)
    assert not result.breach and not result.timed_out, (what, result.differences)
    assert result.run_reason == "every kernel ended (2 of 2 cleanly)"


def test_a_core_that_retires_nothing_is_stopped(monkeypatch):
    """The guard behind them: 64 counted slices in a row that retire nothing
    stop the core as faulted instead of letting it be picked forever."""
    from osvemu.cpu.core import NO_PROGRESS_SLICES
    from osvemu.snippets import Snippet, run_snippet

    snippet = Snippet.parse("count", ";! mode = \"long\"\n;! max_instructions = 5000\nagain:\n    inc rax\n    jmp again\n")
    monkeypatch.setattr("osvemu.cpu.slices.SliceRunner.run", lambda self, count, now_ns, exact=False: (0, None))
    run = run_snippet(snippet)
    core = run.machine.cores[0]
    assert core.fault is not None and core.fault.kind == "no progress"
    assert core.slices_run == NO_PROGRESS_SLICES and core.instructions == 0


@pytest.mark.slow
def test_a_200_program_campaign_on_the_command_line_breaches_nothing(tmp_path):
    """What CI runs: 200 programs on the host's processes, through the CLI."""
    report = tmp_path / "campaign.json"
    result = run_osvemu("verify", "--campaign", "200", "--seed", "11", "--json", report, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  breaches     0" in result.stdout
    summary = json.loads(report.read_text())
    assert summary["programs"] == 200 and summary["breaches"] == [] and summary["operations"] > 0
