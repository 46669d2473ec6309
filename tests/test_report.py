"""The run report as a stable format (osvemu/report.py, docs/report.schema.json)
and the timeline recorder (osvemu/timeline.py), on real runs of minilinux
and the attacker guest: every report validates against the schema, and its
per-kernel counts add up to the machine's."""

from __future__ import annotations

import itertools
import json
from importlib import metadata
from pathlib import Path

import pytest
import unicorn
from conftest import attacker_pair

from osvemu.cli import build_parser, prepare
from osvemu.clock import NS_PER_INSTRUCTION
from osvemu.parallel import run_partitioned
from osvemu.report import SCHEMA_VERSION, build_report, check_writable, kernel_console, write_report
from osvemu.scheduler import DEFAULT_QUANTUM
from osvemu.timeline import TimelineRecorder

ROOT = Path(__file__).resolve().parent.parent
MINILINUX = ROOT / "guests" / "minilinux.elf"
SCHEMA = ROOT / "docs" / "report.schema.json"
SMALL = "quiet primes=1000 rounds=5"
VICTIM = "quiet primes=1000 rounds=5 collect_ms=300"
QUANTUM_NS = DEFAULT_QUANTUM * NS_PER_INSTRUCTION


def run_report(argv: list[str], timeline: bool = False, jobs: int = 1, cap: int | None = None) -> dict:
    """Boot as ``osvemu boot ARGV`` does, in this process (``jobs`` workers),
    optionally recording the timeline; the report as it reads back from JSON."""
    args = build_parser().parse_args(["boot", *argv])
    lines: list[str] = []
    session = prepare(args, console=lines.append)
    recorder = None
    if timeline:
        recorder = TimelineRecorder(session.machine, session.scheduler, **({"cap": cap} if cap else {}))
        assert session.machine.events and session.scheduler.slice_observers == [recorder]  # recording already
    if jobs > 1:
        result = run_partitioned(session.machine, session.scheduler, jobs)
    else:
        result = session.scheduler.run()
    if recorder is not None:
        recorder.stop()
        assert not session.machine.events  # nothing left subscribed
    report = build_report(session.machine, session.scheduler, result, argv, recorder)
    assert report["console"] == "".join(line + "\n" for line in lines)
    return json.loads(json.dumps(report))


def attacker_layout(attacker: Path, records: int = 4) -> str:
    """A 1 x 6 machine: a 2-core minilinux victim, an IPI attacker stopped
    at its first violation, and a hypercall flood logged in full."""
    text = ('[machine]\nsockets = 1\ncores_per_socket = 6\nmemory = "512M"\n'
            f'[monitor]\nviolation_records = {records}\n'
            f'[[kernel]]\nname = "victim"\nimage = "{MINILINUX}"\ncmdline = "{VICTIM}"\ncores = ["0-1"]\n'
            'memory = { size = "256M" }\n')
    for name, cmdline, cores, policy in (("ipi", "attack=ipi", "2-3", "stop"),
                                         ("flood", "attack=flood count=50", "4-5", "log")):
        text += (f'[[kernel]]\nname = "{name}"\nimage = "{attacker}"\ncmdline = "{cmdline}"\ncores = ["{cores}"]\n'
                 f'memory = {{ size = "64M" }}\non_violation = "{policy}"\n')
    return text


@pytest.fixture(scope="module")
def validator():
    import jsonschema
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid(validator, report: dict) -> None:
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(report)]
    assert errors == []


def assert_totals_agree(report: dict) -> None:
    """The sums the report promises (docs in osvemu/report.py)."""
    cores = report["cores"]
    assert report["total_instructions"] == sum(core["instructions"] for core in cores)
    for core in cores:
        assert sum(core["ipis_received_by_mode"].values()) == core["ipis_received"]
        assert sum(core["ipis_sent_by_mode"].values()) == core["ipis_sent"]
    if report["mode"] == "native":
        return
    kernels = report["kernels"]
    online = [core for core in cores if core["kernel"] is not None]
    assert sum(kernel["instructions"] for kernel in kernels) == sum(core["instructions"] for core in online)
    assert sum(kernel["ipis_sent"] for kernel in kernels) == sum(core["ipis_sent"] for core in online)
    assert sum(kernel["ipis_delivered_to"] for kernel in kernels) == sum(core["ipis_received"] for core in online)
    for kernel in kernels:
        assert kernel["violations"] == sum(kernel["violations_by_kind"].values())
        mine = [core for core in cores if core["kernel"] == kernel["name"]]
        assert [core["apic_id"] for core in mine] == kernel["cores"]
        assert kernel["instructions"] == sum(core["instructions"] for core in mine)
        assert set(kernel["monitor_exits"]) == set(report["monitor_exits"])
    for kind, count in report["monitor_exits"].items():
        assert count == sum(kernel["monitor_exits"][kind] for kernel in kernels)
    assert report["violations_total"] == sum(kernel["violations"] for kernel in kernels)
    assert len(report["violations"]) + report["violations_dropped"] == report["violations_total"]
    assert sum(kernel["host_seconds"] for kernel in kernels) <= report["host_seconds"]
    assert report["virtual_ns"] == max(kernel["virtual_ns"] for kernel in kernels)


def assert_timeline_consistent(report: dict) -> None:
    """Each core's intervals follow one another, from time 0 (or the first
    change) to its kernel's end, and every mark lies inside them."""
    timeline = report["timeline"]
    ends = {kernel["name"]: kernel["virtual_ns"] for kernel in report.get("kernels", [])}
    for core in timeline["cores"]:
        intervals = core["intervals"]
        if core["kernel"] is None:
            assert intervals == [] and core["marks"] == []
            continue
        assert intervals[0][0] == 0
        assert all(a[1] == b[0] and a[2] != b[2] for a, b in itertools.pairwise(intervals))
        if core["intervals_dropped"]:
            continue
        # The last one ends with the run (a core stopped inside the last slice is a little ahead of its kernel).
        assert intervals[-1][1] == max(ends.get(core["kernel"], report["virtual_ns"]), intervals[-1][0])
        assert all(0 <= mark[0] <= intervals[-1][1] for mark in core["marks"])


# ---------------------------------------------------------------- the schema itself
def test_the_schema_is_draft_2020_12_and_closed(validator):
    schema = validator.schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION,
                                                      "description": schema["properties"]["schema_version"]["description"]}
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["core"]["additionalProperties"] is False
    assert schema["$defs"]["kernel"]["additionalProperties"] is False


# ---------------------------------------------------------------- real reports
@pytest.fixture(scope="module")
def native_report() -> dict:
    return run_report(["--native", str(MINILINUX), "--cmdline", SMALL])


def test_a_native_report_validates_and_names_versions_and_arguments(validator, native_report):
    report = native_report
    assert_valid(validator, report)
    assert_totals_agree(report)
    assert (report["schema_version"], report["osvemu_version"], report["unicorn_version"]) == (
        2, metadata.version("osvemu"), unicorn.__version__)
    assert report["argv"] == ["--native", str(MINILINUX), "--cmdline", SMALL]
    assert (report["mode"], report["exit_status"], report["end"]["end"]) == ("native", 0, "exited")
    assert [(core["node"], core["kernel"]) for core in report["cores"]] == [(i // 8, "machine") for i in range(32)]
    bsp, aps = report["cores"][0], report["cores"][1:]
    # The BSP starts every AP with INIT, INIT de-assert and STARTUP; the ring and barriers are fixed IPIs.
    assert bsp["ipis_sent_by_mode"] == {"fixed": 111, "init": 31, "init-deassert": 31, "startup": 31}
    assert bsp["ipis_received_by_mode"] == {"fixed": 5}
    assert all(core["ipis_received_by_mode"] == {"fixed": 14, "init": 1, "init-deassert": 1, "startup": 1}
               for core in aps)
    assert all(core["io_interrupts_received"] == 0 for core in report["cores"])


@pytest.fixture(scope="module")
def osv_report() -> dict:
    return run_report([str(MINILINUX), "--cmdline", SMALL], timeline=True)


def test_an_osv_report_gives_each_kernel_its_console_time_and_cores(validator, osv_report):
    report = osv_report
    assert_valid(validator, report)
    assert_totals_agree(report)
    kernels = report["kernels"]
    assert [kernel["name"] for kernel in kernels] == ["k0", "k1", "k2", "k3"]
    assert [core["kernel"] for core in report["cores"]] == [f"k{i // 8}" for i in range(32)]
    assert [core["node"] for core in report["cores"]] == [i // 8 for i in range(32)]
    for kernel in kernels:
        lines = [line[len(kernel["name"]) + 3:] for line in report["console"].splitlines()
                 if line.startswith(f"[{kernel['name']}] ")]
        assert kernel["console"] == "".join(line + "\n" for line in lines)
        assert kernel["console"].splitlines()[0].endswith(
            "minilinux: 8 CPUs online, primes=168 checksum=0x0001295f, pingpong=40 checksum=0x6a2544ec: OK")
        assert kernel["host_seconds"] > 0 and kernel["virtual_ns"] > 0
    assert report["kernels"][0]["console"].splitlines()[-1].endswith(
        "] OSV: combined result of 4 kernels: 32 CPUs, primes=672, pingpong=160: OK")
    assert report["violations_total"] == 0 and report["monitor_exits"]["violation"] == 0
    assert report["channels"] == [{"name": "results", "guest_physical": ["0xe0000000", "0xe0010000"],
                                   "kernels": ["k0", "k1", "k2", "k3"], "notify_vectors": list(range(32, 256))}]


def test_the_osv_timeline_shows_each_ap_waiting_for_its_startup_ipi(validator, osv_report):
    assert_timeline_consistent(osv_report)
    cores = osv_report["timeline"]["cores"]
    assert [core["kernel"] for core in cores] == [f"k{i // 8}" for i in range(32)]
    for core in cores:
        first = core["intervals"][0]
        if core["index"] % 8 == 0:
            assert first[2] == "running"  # each kernel's boot CPU
            continue
        assert first[2] == "wait-for-sipi"
        startup = next(mark for mark in core["marks"] if mark[1] == "ipi-received" and mark[2].startswith("startup"))
        assert core["intervals"][1][:1] == [first[1]] and core["intervals"][1][2] == "running"
        # It runs in the round its STARTUP arrived in: each slice of a round starts at the kernel's round time.
        assert abs(first[1] - startup[0]) < QUANTUM_NS
        assert any(mark[1] == "interrupt" for mark in core["marks"])
    sent = sum(1 for core in cores for mark in core["marks"] if mark[1] == "ipi-sent" and "NOTIFY" not in mark[2])
    assert sent == sum(core["ipis_sent"] for core in osv_report["cores"]) - 3  # the three NOTIFYs of k1-k3
    notifies = [(core["index"], mark[2]) for core in cores for mark in core["marks"] if "NOTIFY" in mark[2]]
    assert notifies == [(8, "NOTIFY kernel 0 vector 0xf8"), (16, "NOTIFY kernel 0 vector 0xf8"),
                        (24, "NOTIFY kernel 0 vector 0xf8")]
    received = sum(1 for core in cores for mark in core["marks"] if mark[1] == "ipi-received")
    assert received == sum(core["ipis_received"] for core in osv_report["cores"])


@pytest.fixture(scope="module")
def attacker_report(tmp_path_factory, attacker_elf) -> dict:
    config = tmp_path_factory.mktemp("report") / "attackers.toml"
    config.write_text(attacker_layout(attacker_elf))
    return run_report(["--config", str(config)], timeline=True)


def test_a_stopped_attacker_and_a_logged_flood_count_their_violations_once(validator, attacker_report):
    report = attacker_report
    assert_valid(validator, report)
    assert_totals_agree(report)
    victim, ipi, flood = report["kernels"]
    assert victim["end"]["end"] == "exited" and victim["violations"] == 0
    assert (ipi["end"]["end"], ipi["exit_status"], ipi["violations_by_kind"]) == (
        "stopped for a violation", 255, {"ipi": 1})
    assert flood["end"]["end"] == "idle" and flood["violations_by_kind"] == {"hypercall": 50}
    assert report["violations_total"] == 51
    assert (len(report["violations"]), report["violations_dropped"], report["violation_records"]) == (8, 43, 4)
    assert report["exit_status"] == 255
    assert "OK" in victim["console"] and ipi["console"] != "" and not ipi["console"].startswith("[")


def test_the_attackers_timeline_marks_the_refusal_and_the_stop(attacker_report):
    assert_timeline_consistent(attacker_report)
    cores = attacker_report["timeline"]["cores"]
    ends = {kernel["name"]: kernel["virtual_ns"] for kernel in attacker_report["kernels"]}
    refusals = {core["index"]: [mark for mark in core["marks"] if mark[1] == "refused"] for core in cores}
    assert [len(refusals[index]) for index in range(6)] == [0, 0, 1, 0, 50, 0]
    refusal = refusals[2][0]
    assert refusal[2] == ("ipi: fixed vector 0x40 to physical 0x00: physical destination APIC 0 belongs to another "
                          "partition")
    # OSV stops the kernel at the violation: both its cores, one of them never started.
    assert [core["intervals"] for core in cores[2:4]] == [
        [[0, refusal[0], "running"], [refusal[0], ends["ipi"], "stopped"]],
        [[0, refusal[0], "wait-for-sipi"], [refusal[0], ends["ipi"], "stopped"]]]
    # The victim runs on to its own end, long after.
    victim_end = next(mark for mark in cores[0]["marks"] if mark[1] == "end")
    assert victim_end[2] == "kernel victim ended with status 0: exited with status 0 (SHUTDOWN hypercall)"
    assert victim_end[0] > 100 * refusal[0]
    assert cores[1]["intervals"][-1] == [victim_end[0], ends["victim"], "stopped"]  # it was halted
    last_slice = cores[0]["intervals"][-2]  # the BSP ends its slice after the SHUTDOWN it made
    assert last_slice[2] == "running" and last_slice[0] <= victim_end[0] < last_slice[1]
    assert cores[0]["intervals"][-1] == [last_slice[1], ends["victim"], "stopped"]
    # The flood's AP is never started; its kernel ends idle with the run.
    assert cores[5]["intervals"] == [[0, ends["flood"], "wait-for-sipi"], [ends["flood"], ends["flood"], "stopped"]]


def test_a_fast_run_reports_in_the_same_format(validator):
    report = run_report(["--fast", str(MINILINUX), "--cmdline", SMALL, "--kernels", "2"])
    assert_valid(validator, report)
    assert_totals_agree(report)
    assert report["scheduling"] == "fast" and report["exit_status"] == 0 and "timeline" not in report


def test_a_run_ended_by_max_instructions_reports_every_kernel_unfinished(validator):
    report = run_report([str(MINILINUX), "--cmdline", SMALL, "--max-instructions", "2000000"], timeline=True)
    assert_valid(validator, report)
    assert_totals_agree(report)
    assert_timeline_consistent(report)
    assert report["exit_status"] == 124 and {kernel["end"]["end"] for kernel in report["kernels"]} == {"unfinished"}
    assert report["reason"] == f"stopped after {report['total_instructions']} instructions (--max-instructions)"


def test_two_worker_processes_give_the_report_and_timeline_of_one(validator, tmp_path, attacker_elf):
    """NOTIFYs across processes included: counts by mode and the timeline
    come back from the workers as one process has them."""
    config = tmp_path / "pair.toml"
    config.write_text(attacker_pair(attacker_elf, sender="attack=notify target=0 count=20"))
    one, two = (run_report(["--config", str(config)], timeline=True, jobs=jobs) for jobs in (1, 2))
    for report in (one, two):
        assert_valid(validator, report)
        assert_totals_agree(report)
        assert_timeline_consistent(report)
        report.pop("host_seconds")
        for kernel in report["kernels"]:
            kernel.pop("host_seconds")
    assert one == two
    # One NOTIFY on the doorbell's vector 0x40 goes through; the 79 on 0x20 are refused.
    sender = one["timeline"]["cores"][2]["marks"]
    assert [mark[2] for mark in sender if mark[1] == "ipi-sent"] == ["NOTIFY kernel 0 vector 0x40"]
    assert sum(1 for mark in sender if mark[1] == "refused") == 79 == one["kernels"][1]["violations"]
    assert one["cores"][2]["ipis_sent_by_mode"] == {"fixed": 1}
    # ... received at the end of its epoch (16 rounds of 200 us), on the receiver's boot CPU.
    received = [mark for mark in one["timeline"]["cores"][0]["marks"] if mark[1] == "ipi-received"]
    assert received == [[3_200_000, "ipi-received", "fixed vector 0x40 to physical 0x00 from APIC 2"]]
    assert one["cores"][0]["ipis_received_by_mode"] == {"fixed": 1}


def test_a_recorder_keeps_at_most_its_cap_and_counts_the_rest(validator):
    report = run_report(["--native", str(MINILINUX), "--cmdline", SMALL, "--sockets", "1", "--cores-per-socket", "2"],
                        timeline=True, cap=8)
    assert_valid(validator, report)
    assert_timeline_consistent(report)
    for core in report["timeline"]["cores"]:
        assert len(core["intervals"]) <= 8 and len(core["marks"]) == 8
        assert core["intervals_dropped"] > 0 and core["marks_dropped"] > 0
    full = run_report(["--native", str(MINILINUX), "--cmdline", SMALL, "--sockets", "1", "--cores-per-socket", "2"],
                      timeline=True)
    for capped, whole in zip(report["timeline"]["cores"], full["timeline"]["cores"]):
        assert capped["marks"] == whole["marks"][:8]
        assert len(whole["marks"]) == 8 + capped["marks_dropped"]
        assert whole["intervals"][:len(capped["intervals"]) - 1] == capped["intervals"][:-1]


# ---------------------------------------------------------------- writing it
def test_the_report_goes_to_standard_output_for_a_dash(capsys, tmp_path, native_report):
    check_writable("-")
    write_report("-", native_report)
    assert json.loads(capsys.readouterr().out) == native_report
    write_report(tmp_path / "r.json", native_report)
    assert json.loads((tmp_path / "r.json").read_text()) == native_report


def test_a_kernels_console_is_its_own_lines(tmp_path, attacker_elf):
    config = tmp_path / "pair.toml"
    config.write_text(attacker_pair(attacker_elf))
    session = prepare(build_parser().parse_args(["boot", "--config", str(config)]), console=lambda line: None)
    session.machine.transcript[:] = ["[receiver] one", "[sender] two", "[receiver] [sender] three"]
    receiver, sender = session.machine.kernels
    assert kernel_console(session.machine, receiver) == "one\n[sender] three\n"
    assert kernel_console(session.machine, sender) == "two\n"
