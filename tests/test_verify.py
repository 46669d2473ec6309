"""``osvemu verify``'s proofs (docs/verification.md): the explorer is exact,
the proofs hold on the real code with exact coverage, each seeded bug is
caught with a counterexample that replays on the emulator, the reductions
agree with random full states, and the command line behaves."""

from __future__ import annotations

import argparse
import random
import subprocess
import sys

import pytest
from conftest import run_osvemu
from hypothesis import given, settings
from hypothesis import strategies as st

from osvemu.osv import ipi_policy
from osvemu.platform.icr import ApicState, DeliveryMode, Icr, Shorthand
from osvemu.verify import command, hypercall_check, memory_check, mutants, routing, spec
from osvemu.verify.explore import IntRange, NeedsValue, Unfixed, class_size, explore
from osvemu.verify.layouts import DEFAULT_LAYOUTS, KNOWN_LAYOUTS, named

ICR_VALUES = 8 * 2 * 4 * 2 * 2 * 256 * 256  # per sender: every field of the ICR (SDM Vol. 3A Figure 10-12)


# ---------------------------------------------------------------- the explorer
def test_explorer_splits_only_what_is_read_and_covers_the_domain():
    def policy(a):
        if a["mode"] == 2:  # reads mode; x only for mode 2, and only against 10
            return "low" if a["x"] < 10 else "high"
        return "other"

    initial = {"mode": Unfixed("mode", range(4)), "x": IntRange("x", 0, 255), "unused": Unfixed("unused", (0, 1))}
    leaves = list(explore(policy, initial))
    assert sorted(leaf.result for leaf in leaves) == ["high", "low", "other", "other", "other"]
    assert sum(class_size(leaf.assignment) for leaf in leaves) == 4 * 256 * 2
    assert all(isinstance(leaf.assignment["unused"], Unfixed) for leaf in leaves)


def test_a_swallowing_except_cannot_hide_a_read():
    def sneaky(a):
        try:
            return a["x"] == 3
        except Exception:  # noqa: BLE001 - what the explorer must survive
            return None

    results = sorted((leaf.assignment["x"], leaf.result) for leaf in explore(sneaky, {"x": Unfixed("x", (3, 4))}))
    assert results == [(3, True), (4, False)]
    with pytest.raises(NeedsValue):
        hash(Unfixed("y", (1,)))


# ---------------------------------------------------------------- routing
def test_routing_is_proved_on_a_small_layout_over_its_whole_space():
    layout = named("sparse")
    report = routing.prove_routing(layout.name, layout.config)
    assert report.isolation.proved and report.independence.proved and report.boot.proved
    senders, partitions, classes = 12, 2, len(routing.STATE_CLASSES)
    io_messages = ICR_VALUES // 4  # an I/O APIC's message has no shorthand
    assert report.isolation.cases == (senders * ICR_VALUES + partitions * io_messages) * classes
    assert report.isolation.classes == 59_889


def test_logical_acceptance_equals_the_sdm_everywhere():
    outcome = routing.prove_acceptance()
    assert outcome.proved and outcome.cases == 256 * 256 * 16


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 0xFF), st.sampled_from(list(DeliveryMode)),
       st.booleans(), st.sampled_from(list(Shorthand)), st.integers(0, 0xFF), st.sampled_from(list(range(32))))
def test_random_full_states_agree_with_the_reference(generator: random.Random, vector, mode, logical, shorthand,
                                                     destination, sender):
    """The state classes are a reduction: random states of every core (own
    and foreign) must give what the reference gives."""
    config = named("4x8").config
    owner = {apic: plan.index for plan in config.kernels for apic in plan.apic_ids}
    apics = [ApicState(apic, generator.randrange(256) << 24, generator.randrange(16) << 28 | 0x0FFFFFFF,
                       generator.randrange(256)) for apic in range(32)]
    icr = Icr(vector, mode, logical, generator.random() < 0.5, generator.random() < 0.5, shorthand, destination)
    decision = ipi_policy.route_ipi(icr, sender, ipi_policy.PartitionLayout(owner), apics)
    own = [apic for apic in apics if owner[apic.apic_id] == owner[sender]]
    assert decision.deliveries == spec.osv_deliveries(icr, sender, own)


# ---------------------------------------------------------------- hypercalls, memory, boot
@pytest.mark.parametrize("name", [pytest.param(name, marks=() if name in ("sparse", "interleaved") else pytest.mark.slow)
                                  for name in DEFAULT_LAYOUTS])
def test_hypercalls_memory_and_boot_are_proved_on_every_default_layout(name):
    layout = named(name)
    for outcome in (hypercall_check.prove_hypercalls(layout), memory_check.prove_memory(layout),
                    memory_check.prove_boot(layout)):
        assert outcome.proved, outcome.counterexample
        assert outcome.cases > 0


def test_every_layout_loads():
    assert [len(named(name).config.kernels) for name in KNOWN_LAYOUTS] == [4, 8, 4, 3, 2, 16]


# ---------------------------------------------------------------- mutants
FAST_MUTANTS = {
    "physical-foreign-delivered": ("ipi-isolation", ("sender APIC 3, ICR 0x00000000:0x00000010 (fixed vector 0x10 to "
                                   "physical 0x00), own state reset: delivers to APIC 0, of an offline core")),
    "logical-all-cores": ("independence", "the decision reads APIC 0's LDR"),
    "lowest-priority-global": ("independence", "the decision reads APIC 0's PPR"),
    "startup-unfiltered": ("boot-protocol", "startup vector 0x00 to physical 0x00"),
    "smi-delivered": ("ipi-isolation", "delivers SMI to [3]"),
    "excluding-self-includes-self": ("ipi-isolation", ("to all-excluding-self), own state reset: delivers to [3], "
                                     "the bare machine of the partition to []")),
}


#: The ones the core suite runs (the rest are slow): one per property.
CORE_MUTANTS = ("physical-foreign-delivered", "logical-all-cores", "startup-unfiltered")


@pytest.mark.parametrize("mutant", [pytest.param(name, marks=() if name in CORE_MUTANTS else pytest.mark.slow)
                                    for name in sorted(FAST_MUTANTS)])
def test_a_routing_mutant_is_caught_with_its_counterexample(mutant):
    prop, detail = FAST_MUTANTS[mutant]
    layout = named("sparse")
    with mutants.activate(mutant):
        report = routing.prove_routing(layout.name, layout.config)
    outcome = {o.name: o for o in (report.isolation, report.independence, report.boot)}[prop]
    assert not outcome.proved and detail in outcome.counterexample.detail
    assert report.isolation.proved is (prop != "ipi-isolation")


@pytest.mark.parametrize("mutant, detail", [
    ("ram-end-off-by-one", ("hypercall 1 (0x9ffa1, 0x60, 0x0) with paging off: writes 96 bytes at guest-physical "
                           "0x9ffa1, outside the caller's RAM")),
    ("unsigned-wrap", "hypercall 1 (0xffffffffffffffa0, 0x60, 0x0) with paging off: writes 96 bytes"),
    ("channel-index-off-by-one", "raises IndexError"),
    ("rate-limit-dropped", "returns 0, not -EAGAIN"),
])
def test_a_hypercall_mutant_is_caught(mutant, detail):
    with mutants.activate(mutant):
        outcome = hypercall_check.prove_hypercalls(named("uneven"))
    assert not outcome.proved and detail in outcome.counterexample.detail


def test_plan_mutants_are_caught():
    layout = named("uneven")
    with mutants.activate("channels-everywhere"):
        assert "maps channel big, which does not name it" in memory_check.prove_memory(layout).counterexample.detail
    with mutants.activate("sipi-vector-unchecked"):
        assert "STARTUP vector 0x10 starts a core at 0x100000" in memory_check.prove_boot(layout).counterexample.detail
    assert memory_check.prove_boot(layout).proved  # restored


def test_a_mutant_is_restored_even_when_its_check_raises():
    original = ipi_policy._route_within
    with pytest.raises(RuntimeError), mutants.activate("broadcast-unfiltered"):
        assert ipi_policy._route_within is not original
        raise RuntimeError
    assert ipi_policy._route_within is original
    assert len(mutants.MUTANTS) >= 15 and len(mutants.BY_NAME) == len(mutants.MUTANTS)


def test_a_counterexample_replays_on_the_emulator():
    """The physical-foreign-delivered counterexample of the 4x8 layout,
    through a real local APIC: a fixed IPI from APIC 3 to APIC 9 (kernel 1)."""
    lines: list[str] = []
    args = argparse.Namespace(layout=["4x8"], config=None, replay_ipi=(3, 0x4031, 9 << 24, "reset"))
    assert command.replay_ipi(args, lines.append) == 0  # the real policy refuses it
    assert lines[1:] == ["  reached no core",
                         ("  refused: fixed vector 0x31 to physical 0x09: physical destination APIC 9 belongs to "
                         "another partition")]
    lines.clear()
    with mutants.activate("physical-foreign-delivered"):
        assert command.replay_ipi(args, lines.append) == 1
    assert lines[1] == "  reached APIC 9 (kernel 1, now wait-for-sipi)  <-- outside the sender's partition"


# ---------------------------------------------------------------- the command line
@pytest.mark.slow
def test_verify_on_one_layout_prints_every_property():
    result = run_osvemu("verify", "--layout", "sparse", "--no-spin", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines if line.startswith("  ")] == [
        "ipi-isolation", "independence", "boot-protocol", "hypercalls", "memory", "ipi-isolation"]
    assert all(" PROVED " in line for line in lines if line.startswith("  "))
    assert lines[-1].startswith("PROVED: 1 layout in ")


@pytest.mark.parametrize("arguments, message", [
    (("--layout", "nope"), "argument --layout: invalid choice: 'nope'"),
    (("--spin", "9x2"), "--spin KERNELS must be 2..8, not 9"),
    (("--spin", "3"), "--spin must be KERNELSxCORES, not '3'"),
    (("--replay-ipi", "3:zz:0"), "--replay-ipi LOW must be an integer, not 'zz'"),
    (("--replay-ipi", "3:0:0:nosuch", "--layout", "4x8"), "--replay-ipi: no own state 'nosuch'"),
    (("--mutants", "--mutant", "nosuch"), "--mutant nosuch: no such mutant"),
    (("--config", "/nonexistent.toml"), "/nonexistent.toml: no such configuration file"),
    (("--json", "/nonexistent/x.json", "--layout", "sparse"), ("--json /nonexistent/x.json: directory /nonexistent does "
                                                              "not exist")),
])
def test_bad_verify_options_are_one_line_and_status_2(arguments, message):
    result = run_osvemu("verify", *arguments)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


# ---------------------------------------------------------------- the whole thing
@pytest.mark.slow
@pytest.mark.parametrize("layouts", [(), ("--layout", "8x4")])
def test_verify_proves_every_property(layouts):
    """The default five layouts with the SPIN model, and the 8-kernel layout alone (CI runs both)."""
    result = run_osvemu("verify", *layouts, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout and "0 errors" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("PROVED: 1 layout" if layouts else "PROVED: 5 layouts")


@pytest.mark.slow
def test_every_mutant_is_caught():
    result = run_osvemu("verify", "--mutants", timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(mutants.MUTANTS)} of {len(mutants.MUTANTS)} mutants caught" in result.stdout
    assert "SURVIVED" not in result.stdout


@pytest.mark.parametrize("arguments", [("--layout", "sparse"), ("--mutants", "--mutant", "smi-delivered")])
def test_without_spin_the_model_check_is_status_3_before_any_work(arguments):
    result = subprocess.run([sys.executable, "-m", "osvemu", "verify", *arguments], capture_output=True, text=True,
                            env={"PATH": "/nonexistent"}, timeout=120, check=False)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "needs spin and gcc on the PATH" in result.stderr
