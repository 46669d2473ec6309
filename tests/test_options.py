"""Command-line options: every one range-checked where it is parsed, each
refusal one line on standard error with exit status 2; options that
--config replaces refused beside it; --kernels N for every even split."""

from __future__ import annotations

import pytest
from conftest import ROOT

from osvemu.cli import MAX_INSTRUCTIONS, MAX_QUANTUM, build_parser, main

IMAGE = str(ROOT / "guests" / "minilinux.elf")
SMALL = ["--sockets", "1", "--cores-per-socket", "2", "--memory", "64M"]


def fails(capsys, argv: list[str], *words: str) -> str:
    """``osvemu ARGV`` in this process refuses with one line holding ``words``."""
    status = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("osvemu: "), (status, err)
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def parses(argv: list[str]):
    return build_parser().parse_args(argv)


# ------------------------------------------------------------------ the findings

def test_a_quantum_so_large_the_first_slice_never_ends_is_refused(capsys):
    fails(capsys, ["boot", IMAGE, "--quantum", "99999999999999999999"], "--quantum must be 1..10000000")
    fails(capsys, ["boot", IMAGE, "--quantum", str(MAX_QUANTUM + 1)], "--quantum")
    fails(capsys, ["boot", IMAGE, "--quantum", "0"], "--quantum")
    assert parses(["boot", IMAGE, "--quantum", str(MAX_QUANTUM)]).quantum == MAX_QUANTUM


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1000001", "1e309", "abc", ""])
def test_a_timeout_that_could_never_fire_is_refused(capsys, value):
    fails(capsys, ["boot", IMAGE, "--timeout", value], "--timeout")


def test_timeouts_in_range(capsys):
    assert parses(["boot", IMAGE, "--timeout", "1e6"]).timeout == 1e6
    assert parses(["boot", IMAGE, "--timeout", "0.001"]).timeout == 0.001


def test_watch_with_a_bad_length_is_one_line(capsys):
    """trace --watch nope:zz was a ValueError traceback."""
    fails(capsys, ["trace", IMAGE, "--watch", "nope:zz"], "--watch 'nope:zz'", "length must be an integer")
    fails(capsys, ["trace", IMAGE, "--watch", "0x100000:0"], "length")
    fails(capsys, ["trace", IMAGE, "--watch", "0x100000:0x40000001"], "length")
    fails(capsys, ["trace", IMAGE, "--watch", "a b:4"], "expected an address or a symbol name")
    fails(capsys, ["trace", IMAGE, "--watch", "0x10000000000000000"], "an address is 0..0xffffffffffffffff")


@pytest.mark.parametrize("option, value, words", [
    ("--range", "5", "expected LO-HI"), ("--range", "-", "expected an address or a symbol"),
    ("--range", "0-0x10000000000000000", "an address is"), ("--from", "-5", "--from '-5'"),
    ("--until", "\x1b[2J", "expected an address or a symbol"), ("--core", "-1", "--core must be 0..254"),
    ("--core", "x", "--core must be an integer"), ("--count", "0", "--count must be 1.."),
    ("--count", str(MAX_INSTRUCTIONS + 1), "--count"),
])
def test_trace_options_are_checked_before_the_machine_is_built(capsys, option, value, words):
    fails(capsys, ["trace", IMAGE, *SMALL, option, value], words)


def test_a_core_must_exist(capsys):
    fails(capsys, ["trace", "--native", IMAGE, *SMALL, "--core", "2", "--max-instructions", "1000"],
          "--core 2: the machine has cores 0-1")


# ------------------------------------------------------------------ bounds of every option

@pytest.mark.parametrize("argv, words", [
    (["--max-instructions", str(MAX_INSTRUCTIONS + 1)], ["--max-instructions must be 1..4611686018427387904"]),
    (["--max-instructions", "0"], ["--max-instructions"]),
    (["--memory", "8M"], ["--memory '8M'", "16 MiB..1 TiB"]),
    (["--memory", "2T"], ["16 MiB..1 TiB"]),
    (["--memory", "99999999999999999999999G"], ["invalid memory size"]),
    (["--memory", "1.5G"], ["invalid memory size"]),
    (["--memory", "9000001"], ["4 KiB"]),
    (["--sockets", "256"], ["--sockets must be 1..255"]),
    (["--cores-per-socket", "300"], ["--cores-per-socket must be 1..255"]),
    (["--sockets", "16", "--cores-per-socket", "32"], ["needs APIC ID 511, above the xAPIC limit 254"]),
    (["--kernels", "17"], ["--kernels must be 1..16"]),
    (["--kernels", "7"], ["do not split evenly"]),
    (["--cmdline", "\udcff"], ["not valid UTF-8"]),
    (["--cmdline", "x" * 6000], ["command line is 6000 bytes"]),
    (["--cmdline", "a\0b"], ["NUL"]),
    (["--report", ""], ["--report '': not a file name"]),
    (["--gdb", "x"], ["--gdb 'x': expected [HOST:]PORT"]),
    (["--gdb", "70000"], ["port 0..65535"]),
    (["--gdb", "bad host:1"], ["'bad host' is not a host name"]),
    (["--gdb", "a:b:1"], ["not a host name"]),
])
def test_boot_options_out_of_range(capsys, argv, words):
    fails(capsys, ["boot", IMAGE, *argv], *words)


def test_gdb_addresses_in_range():
    for text in ("1234", "127.0.0.1:0", "localhost:65535", ":4000"):
        assert parses(["boot", IMAGE, "--gdb", text]).gdb == text


def test_bad_file_names(capsys, tmp_path):
    fails(capsys, ["boot", IMAGE, "--report", str(tmp_path)], "is a directory, not a file to write")
    fails(capsys, ["trace", IMAGE, "-o", "/"], "--output '/': is a directory")
    fails(capsys, ["boot", "a\0b"], "not a file name")
    fails(capsys, ["boot", "\udcff.elf"], "\\udcff.elf: no such file")
    fails(capsys, ["trace", IMAGE, "-o", ""], "--output '': not a file name")
    fails(capsys, ["tables", IMAGE, "--kernel", "k0", "--raw", "a\0b"], "--raw")


# ------------------------------------------------------------------ --config replaces these

CONFIG = f'[machine]\nsockets = 2\ncores_per_socket = 1\nmemory = "64M"\n[[kernel]]\nname = "A"\nimage = "{IMAGE}"\ncores = [0]\n'


@pytest.mark.parametrize("option, value, instead", [
    ("--sockets", "2", "[machine] sockets"), ("--cores-per-socket", "4", "[machine] cores_per_socket"),
    ("--memory", "2G", "[machine] memory"), ("--cmdline", "", "each [[kernel]]'s cmdline"),
    ("--kernels", "2", "one [[kernel]] table per kernel"),
])
def test_options_that_config_replaces_are_refused(tmp_path, capsys, option, value, instead):
    """They were silently ignored (even an explicit --cmdline '')."""
    path = tmp_path / "layout.toml"
    path.write_text(CONFIG)
    for command in (["tables", "--kernel", "A"], ["boot"], ["trace"]):
        fails(capsys, [*command, "--config", str(path), option, value], f"{option} cannot be used with --config",
              f"give {instead} in {path} instead")


def test_config_alone_and_the_defaults_still_work(tmp_path, capsys):
    path = tmp_path / "layout.toml"
    path.write_text(CONFIG)
    assert main(["tables", "--config", str(path), "--kernel", "A"]) == 0
    assert "Kernel A: cores [0]" in capsys.readouterr().out
    args = parses(["boot", IMAGE])
    assert (args.sockets, args.cores_per_socket, args.memory, args.cmdline) == (None, None, None, None)
    assert main(["tables", IMAGE, "--kernel", "k3"]) == 0  # the defaults: 4 x 8, 2 GiB
    assert "Kernel k3: cores [24, 25, 26, 27, 28, 29, 30, 31], 512 MiB of RAM" in capsys.readouterr().out


# ------------------------------------------------------------------ --kernels N

@pytest.mark.parametrize("sockets, cores, kernels, name, apics", [
    (2, 3, 3, "k1", "[2, 4]"),  # "kernels overlap in memory" before (the APIC IDs of 2 x 3: 0-2, 4-6)
    (3, 4, 2, "k1", "[6, 7, 8, 9, 10, 11]"),  # likewise
    (3, 4, 4, "k3", "[9, 10, 11]"),
    (3, 4, 6, "k5", "[10, 11]"),
    (3, 4, 12, "k11", "[11]"),
])
def test_kernels_n_for_every_even_split(capsys, sockets, cores, kernels, name, apics):
    status = main(["tables", IMAGE, "--sockets", str(sockets), "--cores-per-socket", str(cores), "--memory", "2G",
                   "--kernels", str(kernels), "--kernel", name])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.startswith(f"Kernel {name}: cores ") and apics[1:-1] in out.splitlines()[0], out.splitlines()[0]


# ------------------------------------------------------------------ config check

def test_config_check_usage(tmp_path, capsys):
    fails(capsys, ["config"], "the following arguments are required")
    fails(capsys, ["config", "nope"], "invalid choice")
    fails(capsys, ["config", "check"], "the following arguments are required: FILE")
    fails(capsys, ["config", "check", str(tmp_path / "none.toml")], "none.toml: no such configuration file")
    fails(capsys, ["config", "check", IMAGE], "not UTF-8 text")
