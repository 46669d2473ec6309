"""The SPIN model of OSV's interface (verify/osv.pml, osvemu/verify/spin.py).

The model is checked over its full state space for 3 kernels x 2 cores (one
malicious); then the Python policy is broken in several ways and the check
must fail, naming the property; the generated tables are compared with
``route_ipi`` and the monitor case by case.  SPIN is required: without it
these tests fail rather than skip.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from osvemu.errors import OsvemuError
from osvemu.osv import hypercalls, ipi_policy
from osvemu.platform.apicbus import RoutingDecision
from osvemu.platform.icr import DeliveryMode, Shorthand
from osvemu.verify import spin


def test_spin_and_gcc_are_installed():
    assert spin.spin_available(), "install spin and gcc (Debian: apt-get install spin gcc)"


@pytest.mark.slow
def test_the_interface_model_has_no_errors_over_its_full_state_space(tmp_path):
    result = spin.check_model(3, 2, workdir=tmp_path)
    assert result.ok, "\n".join(result.summary())
    assert (result.kernels, result.cores, result.malicious) == (3, 2, 2)
    assert [run.name for run in result.runs] == ["safety", "liveness"]
    for run in result.runs:
        assert run.errors == 0 and run.complete and not run.failures, run.output
        assert run.states_stored > 0 and run.transitions >= run.states_stored and run.depth > 0
        assert run.memory_mb > 0
    assert result.states_stored == sum(run.states_stored for run in result.runs)
    assert any("-a -f" in command for command in result.commands)  # liveness under weak fairness
    assert any("-DSAFETY" in command for command in result.commands)
    assert not any("BITSTATE" in command for command in result.commands)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["liveness", "safety"]


@pytest.mark.slow
def test_routing_against_every_apic_breaks_isolation(monkeypatch):
    def leaky(icr, sender, partition, layout, apics):  # resolves against the whole machine
        return RoutingDecision(tuple(ipi_policy.resolve_destinations(icr, sender, apics)))

    monkeypatch.setattr(ipi_policy, "_route_within", leaky)
    result = spin.check_model(3, 2, runs=("safety",))
    assert result.errors > 0 and not result.ok
    assert any("every delivery lands in the sender's kernel -- violated" in failure for failure in result.failures), \
        result.failures


@pytest.mark.slow
def test_an_smi_routed_like_an_nmi_is_caught(monkeypatch):
    monkeypatch.setattr(ipi_policy, "REFUSED_MODES", {})
    result = spin.check_model(3, 2, runs=("safety",))
    assert any(failure.startswith("safety: SMI and ExtINT/reserved-mode messages are never delivered")
               for failure in result.failures), result.failures


@pytest.mark.slow
def test_a_notify_ignoring_the_channel_routes_is_caught(monkeypatch):
    handle = hypercalls.handle

    def every_route(call, view):
        routes = frozenset((kernel, vector) for kernel in range(view.kernel_count) for vector in range(32, 256))
        return handle(call, dataclasses.replace(view, notify_routes=routes))

    monkeypatch.setattr(hypercalls, "handle", every_route)
    result = spin.check_model(3, 2, runs=("safety",))
    (safety,) = result.failures
    assert "notifies go only along channel routes -- violated" in safety
    assert "NOTIFY kernel" in safety and "(unrouted)" in safety  # the trail ends with the offending call


@pytest.mark.slow
def test_a_buffer_check_that_lets_writes_out_of_ram_is_caught(monkeypatch):
    monkeypatch.setattr(hypercalls, "_inside_ram", lambda view, address, length: True)
    result = spin.check_model(3, 2, runs=("safety",))
    assert any("hypercall writes land only in the caller's RAM -- violated" in failure
               for failure in result.failures), result.failures


@pytest.mark.slow
def test_an_honest_notify_that_never_succeeds_breaks_liveness_only(monkeypatch):
    handle = hypercalls.handle

    def refuse_notify(call, view):
        if call.number == hypercalls.Hypercall.NOTIFY:
            return hypercalls.Outcome(-hypercalls.Errno.EPERM, "refused")
        return handle(call, view)

    monkeypatch.setattr(hypercalls, "handle", refuse_notify)
    result = spin.check_model(3, 2)
    safety, liveness = result.runs
    assert safety.errors == 0 and safety.complete
    assert liveness.errors == 1 and not liveness.complete
    assert liveness.failures == (liveness.failures[0],)
    assert re.match(r"liveness: every honest kernel eventually finishes -- violated: acceptance cycle .*"
                    r"k0, k1 never finish", liveness.failures[0])


def test_the_tables_match_the_policy_case_by_case():
    model = spin.build_layout(3, 2)
    tables = spin.generate_tables(model)
    bad = set(model.plan.kernels[model.malicious].apic_ids)
    apic_ids = model.apic_ids
    modes, shorthands = set(), set()
    for core, cls, effect in tables.icr_cases:
        modes.add(cls.icr.delivery_mode)
        shorthands.add(cls.icr.shorthand)
        decision = ipi_policy.route_ipi(cls.icr, apic_ids[core], model.partitions, spin.apic_states(model, cls.ldr_model))
        assert effect.mask == sum(1 << apic_ids.index(apic) for apic in set(decision.deliveries)), cls.name
        assert {apic_ids[i] for i in range(len(apic_ids)) if effect.mask >> i & 1} <= bad, cls.name
        if effect.mask:  # a choice with the same mask and a kind the model treats alike
            kinds = spin.INERT_EFFECTS if effect.kind in spin.INERT_EFFECTS else (effect.kind,)
            assert any(f"cstate[{core}] == CORE_RUNNING -> h_mask = {effect.mask}; h_kind = E_{kind.name};"
                       in tables.text for kind in kinds), cls.name
    assert modes == set(DeliveryMode) and shorthands == set(Shorthand)
    assert len(tables.icr_cases) == len(bad) * len(spin.icr_classes(model))
    for kernel, writes in tables.boot.items():
        assert [effect.mask for _, effect in writes] == [1 << apic_ids.index(apic)
                                                         for apic in model.plan.kernels[kernel].apic_ids[1:]
                                                         for _ in range(4)]
        for step, (_, effect) in enumerate(writes):
            assert f"tab_boot_mask[{kernel * len(writes) + step}] = {effect.mask};" in tables.text
    for cls, effect in tables.hypercall_cases:
        assert effect == spin.hypercall_effect(model, model.malicious, cls), cls.name
        choice = (f"h_write = {effect.write}; h_target = {effect.target}; h_vclass = VC_{effect.vclass.name}; "
                  f"h_shutdown = {int(effect.shutdown)};")
        assert choice in tables.text, cls.name
        assert effect.write in (spin.NO_WRITE, model.malicious), cls.name
    assert tables.text == spin.generate_tables(spin.build_layout(3, 2)).text  # deterministic


def test_the_hypercall_classes_reach_every_outcome():
    model = spin.build_layout(3, 2)
    results = {cls.name: spin.hypercall_effect(model, 0, cls) for cls in spin.hypercall_classes(model, 0)}
    assert results["DESCRIBE_SELF buffer own RAM, length exact"].write == 0
    for where in ("straddling its RAM's end", "straddling its low memory's end", "the channel", "the VGA hole",
                  "unmapped", "wrapping past 2**64"):
        assert not results[f"DESCRIBE_SELF buffer {where}, length exact"].ok, where
    assert results["NOTIFY kernel 1 vector 0xf8 (agreed), first"].target == 1
    assert not results["NOTIFY kernel 1 vector 0xf8 (agreed), within the rate interval"].ok
    assert not results["NOTIFY kernel 1 vector 0xf0 (unrouted), first"].ok
    assert not results["NOTIFY kernel 0 (itself) vector 0xf8 (agreed), first"].ok
    assert results["SHUTDOWN status 0x1ff"].shutdown
    assert not results["unknown hypercall 0x5"].ok


def test_a_missing_tool_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(spin.shutil, "which", lambda name: None if name == "spin" else "/usr/bin/" + name)
    assert not spin.spin_available()
    with pytest.raises(OsvemuError, match=r"needs spin on the PATH"):
        spin.check_model(3, 2)


def test_a_truncated_search_is_not_a_pass():
    output = ("error: max search depth too small\nWarning: Search not completed\n"
              "State-vector 52 byte, depth reached 9, errors: 0\n       12 states, stored\n       20 transitions (= "
              "stored+matched)\n")
    assert not spin._complete(output)
    assert spin._pan_failures(output, "safety", 10) == ["search truncated: max search depth 10 too small (pan -m)"]


@pytest.mark.slow
def test_a_small_depth_bound_is_reported_as_truncation():
    result = spin.check_model(3, 2, max_depth=50)
    assert not result.complete and not result.ok
    assert any("search truncated: max search depth 50 too small" in failure for failure in result.failures)


@pytest.mark.slow
@pytest.mark.parametrize("kernels, cores", [(4, 2), (3, 3)])
def test_bigger_layouts_have_no_errors(kernels, cores):
    result = spin.check_model(kernels, cores)
    assert result.ok, "\n".join(result.summary())
    assert result.seconds < 60
