"""osvemu plot (osvemu/plot.py): each picture from real runs -- a timeline
and a topology map from the reports of an OSV run with attackers and of
the default 4 x 8 layout, the evaluation figure from an evaluation JSON (a
hand-made one in the agreed format, and osvemu eval's own), the benchmark
figure -- and a one-line error for every bad input."""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import pytest
from conftest import ROOT
from test_report import MINILINUX, SMALL, attacker_layout, run_report

from osvemu import plot
from osvemu.errors import ConfigError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A picture worth looking at is larger than this.
MIN_PNG_BYTES = 10_000


def plot_files(*arguments: str | Path) -> tuple[int, list[str]]:
    parser = argparse.ArgumentParser()
    plot.add_options(parser)
    args = parser.parse_args([str(argument) for argument in arguments])
    return plot.run(args)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (PNG spec 11.2.2)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_picture(path: Path, width: int, height: int) -> None:
    assert path.stat().st_size > MIN_PNG_BYTES
    assert png_size(path) == (width, height)


def write(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(scope="module")
def attack_report(tmp_path_factory, attacker_elf) -> Path:
    """A recorded OSV run: the minilinux victim, a stopped IPI attacker, a hypercall flood."""
    directory = tmp_path_factory.mktemp("plot")
    config = directory / "attackers.toml"
    config.write_text(attacker_layout(attacker_elf))
    return write(directory / "attack.json", run_report(["--config", str(config)], timeline=True))


def test_an_osv_report_with_a_timeline_gives_a_timeline_and_a_topology(tmp_path, attack_report, capsys):
    assert plot_files(attack_report, "-o", tmp_path) == 0
    timeline, topology = tmp_path / "attack-timeline.png", tmp_path / "attack-topology.png"
    assert capsys.readouterr().out.splitlines() == [str(timeline), str(topology)]
    assert_picture(timeline, 2100, 558)  # 14 inches wide at 150 dpi, 0.32 inches a row
    assert_picture(topology, 1950, 988)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["attack-timeline.png", "attack-topology.png"]


def test_the_default_layout_gives_its_topology_and_svg_too(tmp_path):
    report = write(tmp_path / "default.json", run_report([str(MINILINUX), "--cmdline", SMALL]))
    assert plot_files(report, "-o", tmp_path / "out", "--format", "both") == 0
    assert_picture(tmp_path / "out" / "default-topology.png", 1950, 884)
    svg = (tmp_path / "out" / "default-topology.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and len(svg) > 50_000
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["default-topology.png",
                                                                           "default-topology.svg"]


def evaluation(repeats: int = 3) -> dict:
    """An evaluation in the agreed format (osvemu-eval/1), values varying by run."""
    def run(mode: str, index: int) -> dict:
        names = ["machine"] if mode == "native" else ["k0", "k1"]
        exits = {} if mode == "native" else {"icr": 40, "hypercall": 6, "violation": 0} | (
            {"lapic": 900, "io": 300, "cpuid": 20, "msr": 8, "hlt": 150, "interrupt": 140} if mode == "trap-all" else {})
        kernels = [{"name": name, "instructions": 5_000_000 // len(names), "host_seconds": 0.4 + 0.01 * index,
                    "virtual_ns": 60_000_000, "exits": {kind: count // len(names) for kind, count in exits.items()}}
                   for name in names]
        return {"host_seconds": 1.0 + 0.05 * index + (0.2 if mode == "trap-all" else 0), "instructions": 5_000_000,
                "virtual_ns": 60_000_000, "exits": exits,
                "modeled_exit_seconds": sum(exits.values()) * 1376 / 2e9, "kernels": kernels}

    return {"schema": "osvemu-eval/1", "image": "guests/minilinux.elf", "cmdline": "quiet",
            "machine": {"sockets": 2, "cores_per_socket": 2, "kernels": 2}, "repeats": repeats,
            "exit_costs": {"source": "a published round-trip cost", "cycles_per_exit": {"icr": 1376},
                           "cpu_hz": 2_000_000_000},
            "modes": {mode: {"runs": [run(mode, index) for index in range(repeats)]}
                      for mode in ("native", "osv", "trap-all")}}


def test_an_evaluation_gives_the_papers_figure(tmp_path):
    path = write(tmp_path / "eval.json", evaluation())
    assert plot_files(path, "-o", tmp_path) == 0
    assert_picture(tmp_path / "eval-eval.png", 1950, 1275)


@pytest.mark.slow
def test_the_evaluation_of_osvemu_eval_is_drawn_too(tmp_path):
    from osvemu import evaluation as evaluator

    parser = argparse.ArgumentParser()
    evaluator.add_options(parser)
    args = parser.parse_args([str(MINILINUX), "--sockets", "1", "--cores-per-socket", "2", "--kernels", "2",
                              "--memory", "256M", "--repeats", "2", "--cmdline", SMALL])
    path = write(tmp_path / "real.json", evaluator.evaluate(args))
    assert plot_files(path, "-o", tmp_path) == 0
    assert_picture(tmp_path / "real-eval.png", 1950, 1275)


def bench() -> dict:
    """A benchmark in tools/bench.py's format (osvemu-bench/1)."""
    guests = []
    for guest, base in (("minilinux native 8", 0.9), ("minilinux OSV 4x8", 1.9), ("primes, 1 CPU", 4.0)):
        for runner, factor in (("osvemu deterministic", 1.0), ("osvemu exact", 1.4), ("osvemu fast", 0.9),
                               ("qemu", 0.35)):
            samples = [{"wall": base * factor * (1 + 0.05 * i), "cpu": base * factor} for i in range(3)]
            guests.append({"guest": guest, "runner": runner, "wall": samples[1]["wall"], "cpu": base * factor,
                           "samples": samples})
    return {"schema": "osvemu-bench/1", "host": {"cores": 2, "machine": "x86_64", "python": "3.11", "qemu": None},
            "repeats": 3, "guests": guests, "mips": [], "tools": []}


def test_a_benchmark_gives_wall_times_per_guest(tmp_path):
    path = write(tmp_path / "bench.json", bench())
    assert plot_files(path, "-o", tmp_path) == 0
    assert_picture(tmp_path / "bench-bench.png", 1950, 825)


# ---------------------------------------------------------------- bad input
def _error(tmp_path: Path, *arguments) -> str:
    with pytest.raises(ConfigError) as caught:
        plot_files(*arguments, "-o", tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    return message


def test_bad_inputs_are_one_line_errors(tmp_path):
    text = tmp_path / "text.json"
    text.write_text("minilinux: OK\n")
    assert _error(tmp_path, text) == f"{text}: not JSON: Expecting value at line 1 column 1"
    assert _error(tmp_path, write(tmp_path / "list.json", [1, 2])) == (
        f"{tmp_path / 'list.json'}: not an osvemu report, evaluation or benchmark (a JSON list)")
    assert _error(tmp_path, write(tmp_path / "other.json", {"schema": "other/1"})) == (
        f"{tmp_path / 'other.json'}: unknown schema 'other/1' (osvemu plot draws osvemu-eval/1 and osvemu-bench/1)")
    assert _error(tmp_path, write(tmp_path / "empty.json", {})) == (
        f"{tmp_path / 'empty.json'}: not an osvemu report, evaluation or benchmark")
    assert _error(tmp_path, tmp_path / "absent.json") == f"{tmp_path / 'absent.json'}: cannot read: No such file or directory"
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    assert _error(tmp_path, binary) == f"{binary}: not JSON (not even text)"


def test_a_document_missing_fields_is_refused_whole(tmp_path, attack_report):
    document = evaluation()
    del document["modes"]
    path = write(tmp_path / "eval.json", document)
    assert _error(tmp_path, path) == f"{path}: not a well-formed evaluation: missing field 'modes'"
    document = evaluation()
    del document["modes"]["osv"]["runs"][1]["kernels"][0]["host_seconds"]
    path = write(tmp_path / "eval.json", document)
    assert _error(tmp_path, path) == f"{path}: not a well-formed eval input: missing field 'host_seconds'"
    document = bench()
    document["guests"][2]["samples"][0] = {"cpu": 1.0}
    path = write(tmp_path / "bench.json", document)
    assert _error(tmp_path, path) == f"{path}: not a well-formed bench input: missing field 'wall'"
    report = json.loads(attack_report.read_text())
    del report["timeline"]["end_ns"]
    path = write(tmp_path / "report.json", report)
    assert _error(tmp_path, path) == f"{path}: not a well-formed timeline: missing field 'end_ns'"


def test_a_native_report_without_a_timeline_has_nothing_to_draw(tmp_path):
    report = run_report(["--native", str(MINILINUX), "--cmdline", SMALL, "--sockets", "1", "--cores-per-socket", "1"])
    path = write(tmp_path / "native.json", report)
    assert _error(tmp_path, path) == (f"{path}: nothing to draw: a report of a native run without a timeline "
                                      "(record one with osvemu boot --timeline)")


def test_the_output_must_be_a_directory(tmp_path):
    path = write(tmp_path / "bench.json", bench())
    (tmp_path / "file").write_text("")
    parser = argparse.ArgumentParser()
    plot.add_options(parser)
    with pytest.raises(ConfigError, match="^-o .*file: not a directory$"):
        plot.run(parser.parse_args([str(path), "-o", str(tmp_path / "file")]))


def test_the_docs_pictures_exist():
    """The pictures the README shows (docs/img), as osvemu plot made them."""
    for name, width in (("timeline.png", 2100), ("topology.png", 1950), ("eval.png", 1950), ("bench.png", 1950)):
        path = ROOT / "docs" / "img" / name
        assert path.stat().st_size > MIN_PNG_BYTES and png_size(path)[0] == width
