"""`osvemu trace --format perfetto`: Chrome trace-event JSON (Google's "Trace
Event Format") of real runs -- one process per kernel, one thread per core,
running slices, instants, and a flow arrow for every delivered IPI.

The structure is checked directly on the JSON, including a model of how
Perfetto's trace processor binds version-1 flow events (``ph`` "s" and "f")
to the slice open on their thread.  The trace processor itself needs its
``trace_processor_shell`` binary, which the ``perfetto`` package downloads
from Google's storage at first use (no PyPI or Debian package ships it): its
test runs where that binary is at hand (cached by an earlier download, or
named by OSVEMU_TRACE_PROCESSOR) and is skipped elsewhere.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import attacker_pair, run_osvemu

from osvemu import cli
from osvemu.debug.perfetto import microseconds
from osvemu.debug.tracer import TraceOptions, run_trace
from osvemu.errors import EmulatorError
from osvemu.events import ConsoleLine

#: Two kernels of two cores each, minilinux with short workloads.
OSV_MACHINE = ["--sockets", "2", "--cores-per-socket", "2", "--memory", "512M",
               "--cmdline", "quiet primes=1000 rounds=5"]


@dataclass
class Summary:
    """What a trace holds, after its structure has been checked."""

    processes: dict[int, str]  # pid -> name
    threads: dict[int, tuple[int, str]]  # tid -> (pid, name)
    flows: int = 0
    instructions: Counter = field(default_factory=Counter)  # tid -> instructions in its running slices
    instants: Counter = field(default_factory=Counter)  # (tid, name) -> count
    refusals: list[tuple[int, dict]] = field(default_factory=list)  # (tid, args)


def ns(event: dict, key: str = "ts") -> int:
    """Microseconds back to nanoseconds, as the trace processor reads them."""
    return int(event[key] * 1000.0)


def check(events: list[dict]) -> Summary:
    """Every rule the export promises, asserted; what it holds, returned."""
    metadata = [e for e in events if e["ph"] == "M"]
    assert events[:len(metadata)] == metadata  # the names come first
    processes = {e["pid"]: e["args"]["name"] for e in metadata if e["name"] == "process_name"}
    threads = {e["tid"]: (e["pid"], e["args"]["name"]) for e in metadata if e["name"] == "thread_name"}
    summary = Summary(processes, threads)
    assert 0 not in processes and 0 not in threads and {p for p, _ in threads.values()} == set(processes)
    starts: dict[int, dict] = {}
    ends: dict[int, dict] = {}
    last = defaultdict(int)  # tid -> time of its latest instant, marker or flow event
    running = defaultdict(list)
    for event in events[len(metadata):]:
        tid = event["tid"]
        assert threads[tid][0] == event["pid"], event
        if event["ph"] == "X" and event["name"] == "running":
            running[tid].append((ns(event), ns(event) + ns(event, "dur")))
            summary.instructions[tid] += event["args"]["instructions"]
            continue
        assert ns(event) >= last[tid], event  # each thread's events in the order they happened
        last[tid] = ns(event)
        if event["ph"] == "X":
            assert event["name"] in ("ipi", "ipi-received") and event["dur"] < 0.001, event
        elif event["ph"] == "i":
            assert event["s"] == "t"
            summary.instants[tid, event["name"]] += 1
            if event["name"] == "refused":
                summary.refusals.append((tid, event["args"]))
        elif event["ph"] == "s":
            assert event["id"] not in starts and (event["name"], event["cat"]) == ("ipi", "ipi")
            starts[event["id"]] = event
        else:
            assert event["ph"] == "f" and event["bp"] == "e" and (event["name"], event["cat"]) == ("ipi", "ipi")
            assert event["id"] not in ends
            ends[event["id"]] = event
    assert set(starts) == set(ends)  # every arrow has its two ends
    for flow, start in starts.items():
        if start["pid"] == ends[flow]["pid"]:  # inside a kernel an IPI arrives no earlier than it was sent
            assert ns(ends[flow]) >= ns(start)
    for slices in running.values():
        slices.sort()
        assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(slices))
    check_flow_binding(events)
    summary.flows = len(starts)
    return summary


def check_flow_binding(events: list[dict]) -> None:
    """A model of the trace processor's JSON import (its sort by time, stable
    for equal times; a flow event binds to the slice open on its thread):
    each flow start binds to its "ipi" slice, each flow end to its
    "ipi-received" slice, both at the flow event's own time."""
    order = sorted(((ns(e), index, e) for index, e in enumerate(events) if e["ph"] != "M"), key=lambda t: t[:2])
    open_slice: dict[int, dict] = {}
    for _, _, event in order:
        if event["ph"] in "Xi":
            open_slice[event["tid"]] = event
        elif event["ph"] in "sf":
            bound = open_slice.get(event["tid"])
            assert bound is not None and ns(bound) == ns(event), event
            assert bound["name"] == ("ipi" if event["ph"] == "s" else "ipi-received"), (event, bound)


def perfetto(tmp_path: Path, *args: str) -> tuple[list[dict], dict, str]:
    """Trace to a JSON file, with its report; return its events, the report and stderr."""
    out, report = tmp_path / "run.json", tmp_path / "report.json"
    run = run_osvemu("trace", *args, "--format", "perfetto", "-o", out, "--report", report)
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text())["traceEvents"], json.loads(report.read_text()), run.stderr


def test_microseconds_read_back_exactly():
    for value in (0, 10, 289_990, 5_714_460, 10**12 + 7):
        assert int(float(microseconds(value)) * 1000.0) == value
    assert microseconds(5_714_460) == "5714.46025"


def test_osv_run_one_process_per_kernel_one_thread_per_core(minilinux, tmp_path):
    events, report, _ = perfetto(tmp_path, minilinux, *OSV_MACHINE)
    summary = check(events)
    assert summary.processes == {1: "k0", 2: "k1"}
    assert summary.threads == {1: (1, "k0/c0"), 2: (1, "k0/c1"), 3: (2, "k1/c2"), 4: (2, "k1/c3")}
    assert summary.flows == sum(core["ipis_received"] for core in report["cores"])
    assert summary.flows == 45
    # the running slices are every instruction each core retired
    assert {tid: summary.instructions[tid] for tid in summary.threads} == \
        {core["index"] + 1: core["instructions"] for core in report["cores"]}
    hypercalls = Counter()
    for (tid, name), count in summary.instants.items():
        if name == "hypercall":
            hypercalls[summary.threads[tid][0]] += count
    assert hypercalls == {pid: kernel["hypercalls"] for pid, kernel in enumerate(report["kernels"], 1)} == {1: 3, 2: 4}
    for core in report["cores"]:
        tid = core["index"] + 1
        assert summary.instants[tid, "interrupt"] == core["interrupts_taken"]
    uart = sum(count for (_, name), count in summary.instants.items() if name == "uart")
    assert uart == len(report["console"].splitlines())
    assert summary.refusals == []
    assert {name for _, name in summary.instants} >= {"interrupt", "timer", "hlt", "uart", "init", "sipi", "exit"}


def test_refused_ipis_are_instants_with_reasons(attacker_elf, tmp_path):
    config = tmp_path / "pair.toml"
    config.write_text(attacker_pair(attacker_elf, sender="attack=ipi count=3"))
    events, report, _ = perfetto(tmp_path, "--config", config)
    summary = check(events)
    assert summary.processes == {1: "receiver", 2: "sender"}
    sender = next(kernel for kernel in report["kernels"] if kernel["name"] == "sender")
    assert len(summary.refusals) == sender["ipis_refused"] == 6
    assert {tid for tid, _ in summary.refusals} == {3}  # sender/c2
    assert summary.refusals[0][1] == {"kernel": "sender", "kind": "ipi", "icr": "fixed vector 0x40 to physical 0x00",
                                      "apic_id": 0,
                                      "reason": "physical destination APIC 0 belongs to another partition"}
    assert [args["reason"] for _, args in summary.refusals].count(
        "SMI IPIs are refused: System Management Mode belongs to no partition") == 2
    # the broadcasts it may send stay in its partition: 2 + 2 + 1 + 1 + 1 + 2 arrows, all to its own cores
    assert summary.flows == sum(core["ipis_received"] for core in report["cores"]) == 9
    receivers = {event["tid"] for event in events if event["ph"] == "f"}
    assert receivers == {3, 4}


def test_bare_machine_is_one_process(smp_hello_elf, tmp_path):
    events, report, _ = perfetto(tmp_path, "--native", smp_hello_elf, "--sockets", "1", "--cores-per-socket", "2",
                                 "--memory", "64M")
    summary = check(events)
    assert summary.processes == {1: "machine"}
    assert summary.threads == {1: (1, "c0"), 2: (1, "c1")}
    assert summary.flows == sum(core["ipis_received"] for core in report["cores"]) > 0


def test_kernel_filter_and_instruction_options(minilinux, tmp_path):
    events, _, _ = perfetto(tmp_path, minilinux, *OSV_MACHINE, "--kernel", "k1")
    summary = check(events)
    assert summary.processes == {2: "k1"} and set(summary.threads) == {3, 4}
    for option in (["--regs"], ["--count", "5"], ["--range", "0x100000-0x200000"]):
        run = run_osvemu("trace", minilinux, *OSV_MACHINE, "--format", "perfetto", *option, "-o", tmp_path / "x")
        assert run.returncode == 2 and len(run.stderr.splitlines()) == 1
        assert f"--format perfetto exports events, not instructions: {option[0]} does not apply" in run.stderr


def test_valid_json_when_the_run_times_out(minilinux, tmp_path):
    out = tmp_path / "run.json"
    run = run_osvemu("trace", minilinux, *OSV_MACHINE[:-1], "quiet primes=100000000", "--format", "perfetto",
                     "-o", out, "--timeout", "0.3")
    assert run.returncode == 124 and "--timeout" in run.stderr
    events = json.loads(out.read_text())["traceEvents"]
    summary = check(events)
    assert len(summary.threads) == 4 and summary.instants[1, "exit"] == 1


def test_valid_json_when_the_run_fails(minilinux, tmp_path):
    """A failure inside the run (here a listener that raises at the first
    console line, which the machine turns into an error of its hook): the
    error propagates, and the file is still a complete trace."""
    out = tmp_path / "run.json"
    args = cli.build_parser().parse_args(["trace", str(minilinux), *OSV_MACHINE, "--format", "perfetto", "-o",
                                          str(out)])
    options = TraceOptions.from_args(args)

    class ListenerFailed(Exception):
        pass

    def fail(event):
        if isinstance(event.record, ConsoleLine):
            raise ListenerFailed("listener failed")

    with options.open_output() as output:
        session = cli.prepare(args, console=lambda line: None, exact=True)
        session.machine.events.subscribe(fail)
        with pytest.raises(EmulatorError, match="listener failed"):
            run_trace(session.machine, session.scheduler, session.image, options, output)
    summary = check(json.loads(out.read_text())["traceEvents"])
    assert len(summary.threads) == 4 and sum(summary.instructions.values()) > 0


# ---------------------------------------------------------------- the 32-core OSV boot
@pytest.fixture(scope="module")
def osv_boot(minilinux, tmp_path_factory):
    """The default trace: minilinux under OSV, 4 kernels x 8 cores."""
    folder = tmp_path_factory.mktemp("perfetto")
    events, report, _ = perfetto(folder, minilinux)
    return folder / "run.json", events, report


def core_number(label: str) -> int:
    return int(re.fullmatch(r"k\d+/c(\d+)", label).group(1))


def labels() -> set[str]:
    return {f"k{index // 8}/c{index}" for index in range(32)}


@pytest.mark.slow
def test_32_core_boot_structure(osv_boot):
    _, events, report = osv_boot
    summary = check(events)
    assert summary.processes == {1: "k0", 2: "k1", 3: "k2", 4: "k3"}
    assert {name for _, name in summary.threads.values()} == labels()
    assert Counter(pid for pid, _ in summary.threads.values()) == {1: 8, 2: 8, 3: 8, 4: 8}
    assert summary.flows == sum(core["ipis_received"] for core in report["cores"]) == 1943


def trace_processor_binary() -> str | None:
    """trace_processor_shell, where it is here without a download: named by
    OSVEMU_TRACE_PROCESSOR, or the perfetto package's own pinned build, once
    an earlier run downloaded it into its cache (~/.local/share/perfetto)."""
    named = os.environ.get("OSVEMU_TRACE_PROCESSOR")
    if named:
        return named
    from perfetto.prebuilts.manifests.trace_processor_shell import TRACE_PROCESSOR_SHELL_MANIFEST

    for entry in TRACE_PROCESSOR_SHELL_MANIFEST:
        if entry.get("platform") == sys.platform and platform.machine().lower() in entry.get("machine", []):
            root, ext = os.path.splitext(entry["file_name"])
            cached = Path.home() / ".local" / "share" / "perfetto" / "prebuilts" / f"{root}-{entry['sha256'][:16]}{ext}"
            return str(cached) if cached.exists() else None
    return None


@pytest.mark.slow
def test_32_core_boot_loads_in_the_trace_processor(osv_boot):
    pytest.importorskip("perfetto.trace_processor")
    from perfetto.trace_processor import TraceProcessor, TraceProcessorConfig

    binary = trace_processor_binary()
    if binary is None:
        pytest.skip("trace_processor_shell is not here: the perfetto package downloads it from Google's storage "
                    "at first use (set OSVEMU_TRACE_PROCESSOR to a copy)")
    path, _, report = osv_boot
    processor = TraceProcessor(trace=str(path), config=TraceProcessorConfig(bin_path=binary))
    try:
        def rows(sql: str) -> list:
            return list(processor.query(sql))

        tracks = rows("SELECT t.name AS thread, p.name AS process FROM thread_track tt JOIN thread t USING (utid) "
                      "JOIN process p USING (upid)")
        assert len(tracks) == 32 and {row.thread for row in tracks} == labels()
        assert Counter(row.process for row in tracks) == {"k0": 8, "k1": 8, "k2": 8, "k3": 8}
        assert all(row.process == f"k{core_number(row.thread) // 8}" for row in tracks)
        flows = rows("SELECT o.name AS source, i.name AS target FROM flow f JOIN slice o ON f.slice_out = o.id "
                     "JOIN slice i ON f.slice_in = i.id")
        assert len(flows) == sum(core["ipis_received"] for core in report["cores"]) == 1943
        assert all({row.source, row.target} == {"ipi", "ipi-received"} for row in flows)
        lost = rows("SELECT name, value FROM stats WHERE value > 0 AND name IN ('flow_no_enclosing_slice', "
                    "'flow_end_without_start', 'flow_duplicate_id', 'flow_invalid_id', 'json_parser_failure')")
        assert [(row.name, row.value) for row in lost] == []
    finally:
        processor.close()
