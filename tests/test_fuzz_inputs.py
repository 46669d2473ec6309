"""Property-based fuzzing of what a user hands osvemu (hypothesis, a few
seconds in all): malformed configurations, mutated ELF headers and random
option lists.  Whatever the input, ``osvemu.cli.main`` returns (no
traceback): status 2 with exactly one line on standard error starting
``osvemu: ``, or another status (0, or 124 for --max-instructions) with
every standard-error line starting so.  Runs that could boot are bounded by
--max-instructions.  ``tools/fuzz_inputs.py`` runs thousands of such cases
outside CI."""

from __future__ import annotations

import contextlib
import io
import shutil
import struct
from pathlib import Path

import pytest
from conftest import ROOT
from fuzz_inputs import BOUNDED, GDB, Raw, prepare_work, toml_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osvemu.cli import main

IMAGE = ROOT / "guests" / "minilinux.elf"
FUZZ = settings(deadline=10_000, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A directory with minilinux.elf and the configurations the cases name."""
    path = tmp_path_factory.mktemp("fuzz")
    prepare_work(path)
    return path


def run(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as leaving:  # --help
            status = leaving.code
    return status, out.getvalue(), err.getvalue()


def assert_clear(status: int, err: str) -> None:
    lines = err.splitlines()
    if status == 2:
        assert len(lines) == 1, err
    assert status != 3 and all(line.startswith("osvemu: ") for line in lines), (status, err)


# ------------------------------------------------------------------ (a) configurations

SCALARS = st.one_of(
    st.integers(-2**70, 2**70), st.sampled_from([0, 1, 5, 255, 2**63 - 1]), st.floats(), st.booleans(),
    st.text(max_size=12), st.sampled_from(["0-7", "0-99999999999", "7-0", "16M", "1T", "4K", "never", "log", "k0",
                                           "\x1b[2J", "a\nb", "minilinux.elf", "../minilinux.elf"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
NESTED = st.integers(1, 6000).map(lambda depth: Raw("[" * depth + "]" * depth))
ODD = st.one_of(VALUES, NESTED, st.just(Raw("1979-05-27T07:32:00Z")), st.just(Raw("9" * 5000)))


def either(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a valid value, sometimes anything."""
    return st.sampled_from([True] * 7 + [False]).flatmap(lambda sane: valid if sane else ODD)


CORES = st.one_of(st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True), st.just(["0-1"]),
                  st.just([0, "1-2"]), st.just(["4-5"]))
MEMORY = st.sampled_from([{"node": 0}, {"node": 1}, {"size": "16M"}, {"size": "8M"}, {"size": "64G"},
                          {"ranges": [["0x100000", "0x2000000"]]}, {"node": 0, "size": "8M"}, {"x": 1}])
KERNEL = st.fixed_dictionaries({"cores": either(CORES), "image": either(st.just("minilinux.elf"))}, optional={
    "name": either(st.sampled_from(["k0", "k1", "A", ""])), "cmdline": either(st.sampled_from(["quiet", ""])),
    "memory": either(MEMORY), "on_violation": either(st.sampled_from(["log", "stop"])),
    "restart": either(st.sampled_from(["never", 0, 100, 101]))})
CHANNEL = st.fixed_dictionaries({"kernels": either(st.sampled_from([["k0", "k1"], ["k0", "k0"], ["k0"], ["z", "k0"]]))},
                                optional={"name": either(st.sampled_from(["results", "c"])),
                                          "size": either(st.sampled_from(["4K", "64K", "16M", "17M", 4096, "3K"])),
                                          "notify": either(st.sampled_from([[248], ["32-255"], [31], [248, 248]]))})
MACHINE = st.fixed_dictionaries({"sockets": either(st.integers(1, 3)), "cores_per_socket": either(st.integers(1, 4)),
                                 "memory": either(st.sampled_from(["64M", "256M", "15M", "2T"]))})
MONITOR = st.fixed_dictionaries({"violation_records": either(st.sampled_from([1, 64, 100000, 0]))})
CONFIG = st.fixed_dictionaries({"machine": either(MACHINE), "kernel": either(st.lists(KERNEL, min_size=1, max_size=3))},
                               optional={"channel": either(st.lists(CHANNEL, max_size=2)), "monitor": either(MONITOR)})
#: Now and then a key no configuration has, in a table or at the top.
CONFIGS = st.sampled_from([True] * 7 + [False]).flatmap(
    lambda sane: CONFIG if sane else st.tuples(CONFIG, st.text(max_size=6), VALUES).map(lambda c: {**c[0], c[1]: c[2]}))


@settings(FUZZ, max_examples=60)
@given(data=CONFIGS)
def test_any_configuration_gives_a_layout_or_one_line(work, data):
    (work / "case.toml").write_text(toml_text(data), errors="surrogateescape")
    status, out, err = run(["config", "check", "case.toml"], work)
    assert status in (0, 2), (status, err)
    assert_clear(status, err)
    if status == 0:
        assert out.startswith("case.toml: valid\n") and "offline cores: " in out


@settings(FUZZ, max_examples=40)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_as_a_configuration(work, text):
    (work / "case.toml").write_text(text, errors="surrogateescape")
    status, _, err = run(["config", "check", "case.toml"], work)
    assert status == 2, (status, err)
    assert_clear(status, err)


# ------------------------------------------------------------------ (b) ELF headers

RAW_IMAGE = IMAGE.read_bytes()
_PHOFF, _SHOFF = struct.unpack_from("<QQ", RAW_IMAGE, 32)
_PHNUM, _SHNUM = struct.unpack_from("<H", RAW_IMAGE, 56)[0], struct.unpack_from("<H", RAW_IMAGE, 60)[0]
#: Where the loader reads: the ELF header, the program headers, the section headers.
HEADER_BYTES = [*range(64), *range(_PHOFF, _PHOFF + 56 * _PHNUM), *range(_SHOFF, _SHOFF + 64 * _SHNUM)]
EDITS = st.lists(st.tuples(st.sampled_from(HEADER_BYTES), st.integers(0, 255)), min_size=1, max_size=8)


@settings(FUZZ, max_examples=30)
@given(edits=EDITS, cut=st.one_of(st.none(), st.integers(0, len(RAW_IMAGE))))
def test_any_mutated_image_is_loaded_or_refused_in_one_line(work, edits, cut):
    data = bytearray(RAW_IMAGE)
    for position, value in edits:
        data[position] = value
    (work / "case.elf").write_bytes(bytes(data[:cut]))
    status, _, err = run(["config", "check", "noimage.toml", "case.elf"], work)
    assert status in (0, 2), (status, err)
    assert_clear(status, err)


@settings(FUZZ, max_examples=6)
@given(edits=EDITS)
def test_a_mutated_image_that_loads_boots_or_is_refused(work, edits):
    data = bytearray(RAW_IMAGE)
    for position, value in edits:
        data[position] = value
    (work / "case.elf").write_bytes(bytes(data))
    status, _, err = run(["boot", "--native", "case.elf", "--sockets", "1", "--cores-per-socket", "1",
                          "--memory", "16M", "--max-instructions", "1000", "--quiet"], work)
    assert_clear(status, err)


# ------------------------------------------------------------------ (c) command lines

NUMBERS = st.sampled_from(["0", "1", "2", "-1", "99999999999999999999", "0x10", "nan", "inf", "1e3", "", "abc",
                           "10000001", "4611686018427387905", "\u0663"])
PATHS = st.sampled_from(["out.json", "", "/no/such/dir/x", ".", "sub/", "valid.toml", "a\x00b"])
OPTIONS = {
    "--sockets": st.sampled_from(["1", "2", "256"]) | NUMBERS, "--cores-per-socket": st.sampled_from(["1", "2", "300"]) | NUMBERS,
    "--memory": st.sampled_from(["16M", "64M", "8M", "2T", "9000001", "1.5G", "99999999999999999999999G"]),
    "--cmdline": st.text(max_size=8) | st.sampled_from(["\udcff", "x" * 6000, "a\x00b"]),
    "--quantum": NUMBERS, "--max-instructions": NUMBERS, "--timeout": NUMBERS, "--kernels": NUMBERS,
    "--report": PATHS, "--config": st.sampled_from(["valid.toml", "missing.toml", "broken.toml", "minilinux.elf", ""]),
    "--native": None, "--fast": None, "--gdb": st.sampled_from(GDB), "--gdb-wait": None,
    "--core": NUMBERS, "--from": st.text(max_size=8) | st.just("pvh_start"), "--until": st.text(max_size=8),
    "--range": st.text(max_size=8) | st.just("pvh_start-0x100010"), "--count": NUMBERS,
    "--watch": st.text(max_size=8) | st.sampled_from(["nope:zz", "pvh_start:4"]), "--events-only": None,
    "-o": st.sampled_from(["trace.txt", "", "/"]), "--kernel": st.sampled_from(["k0", "k9", ""]),
    "--raw": st.sampled_from(["raw", "", "minilinux.elf/x"]), "--no-such": None, "--": None,
}


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(["boot", "trace", "tables", "config"]))
    if command == "config":
        return ["config", *draw(st.lists(st.sampled_from(["check", "nope", "valid.toml", "broken.toml", "x"]),
                                         max_size=3))]
    argv = [command, *draw(st.lists(st.sampled_from(["minilinux.elf", "missing.elf", "valid.toml", ""]), max_size=1))]
    argv += ["--sockets", "1", "--cores-per-socket", "2", "--memory", "64M"]
    for option in draw(st.lists(st.sampled_from(sorted(OPTIONS)), max_size=4)):
        argv += [option] if OPTIONS[option] is None else [option, draw(OPTIONS[option])]
    if command == "tables" and draw(st.booleans()):
        argv += ["--kernel", "k0"]
    return argv + (BOUNDED if command in ("boot", "trace") else [])


@settings(FUZZ, max_examples=50)
@given(argv=command_lines())
def test_any_command_line_runs_bounded_or_is_refused_in_one_line(work, argv):
    status, _, err = run(argv, work)
    assert_clear(status, err)
    for leftover in ("raw", "sub"):
        shutil.rmtree(work / leftover, ignore_errors=True)
