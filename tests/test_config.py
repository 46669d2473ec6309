"""The partition configuration: its schema (one line naming the file and
the key for each problem, never a traceback), the new keys, generated
layouts for every even --kernels split, paths relative to the file,
unassigned cores left offline, and ``osvemu config check`` on the shipped
examples."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_osvemu

from osvemu.cli import main
from osvemu.errors import ConfigError
from osvemu.osv import config as config_module
from osvemu.osv.config import (
    CHANNEL_BASE,
    CHANNEL_LIMIT,
    MAX_GUEST_RAM,
    MAX_KERNELS,
    ChannelPlan,
    KernelPlan,
    OsvConfig,
    allocatable,
    default_config,
    load_config,
    validate,
)
from osvemu.platform import layout
from osvemu.platform.topology import Topology

IMAGE = ROOT / "guests" / "minilinux.elf"
EXAMPLES = ROOT / "examples"
ATTACKER = ROOT / "tests" / "guests" / "build" / "attacker.elf"
ONE = f'[[kernel]]\nimage = "{IMAGE}"\ncores = [0]\n'
TWO = f'[[kernel]]\nname = "A"\nimage = "{IMAGE}"\ncores = ["0-7"]\n[[kernel]]\nname = "B"\nimage = "{IMAGE}"\ncores = ["8-15"]\n'


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def check(path: Path, capsys, *extra: str) -> tuple[int, str, str]:
    """``osvemu config check PATH`` in this process: status, stdout, stderr."""
    status = main(["config", "check", str(path), *extra])
    out, err = capsys.readouterr()
    return status, out, err


def refused(path: Path, capsys) -> str:
    """The one line ``config check`` refuses ``path`` with (status 2)."""
    status, out, err = check(path, capsys)
    lines = err.splitlines()
    assert status == 2 and out == "" and len(lines) == 1 and lines[0].startswith("osvemu: "), (status, err)
    return lines[0]


# ------------------------------------------------------------------ the findings

#: Each raised a Python exception before the schema (TypeError, AttributeError,
#: MemoryError, RecursionError) or was accepted; now one line naming the key.
WRONG = [
    ('[[kernel]]\nname = "A"\ncores = 5\n', 'kernel "A": cores: expected a list of APIC IDs or "lo-hi" ranges, got 5'),
    ("kernel = [1]\n", "kernel: expected [[kernel]] tables, got [1]"),
    ('[machine]\nsockets = "4"\n[[kernel]]\ncores = [0]\n', '[machine]: sockets: expected an integer 1..255, got "4"'),
    ("[machine]\nmemory = 1.5e9\n[[kernel]]\ncores = [0]\n", "[machine]: memory: expected a size"),
    ('[[kernel]]\nname = "A"\ncores = [0]\nmemory = { size = 1.5 }\n', 'kernel "A": memory: size: expected a size'),
    (TWO + '[[channel]]\nkernels = ["A", "B"]\nsize = 4096.0\n', "channel 0: size: expected a size"),
    ('[[kernel]]\nname = "A"\ncores = [0]\nimage = 5\n', 'kernel "A": image: expected a file name, got 5'),
    ("[[kernel]]\ncores = [true]\n", 'kernel 0: cores: true is neither an APIC ID nor a "lo-hi" range'),
    ('[[kernel]]\ncores = ["0-99999999999"]\n', 'kernel 0: cores: "0-99999999999" is outside 0..254'),
    ("[[kernel]]\ncores = [0]\nx = " + "[" * 5000 + "]" * 5000 + "\n", "not valid TOML: nested too deeply"),
    (TWO + '[[channel]]\nkernels = ["A", "A"]\n', 'channel 0: kernels: kernel "A" is listed twice'),
    ('[[kernel]]\ncores = [0]\nname = "\\u001b[2J"\n', "kernel 0: name: expected a name of 1..32 printable"),
    ("[[kernel]]\ncores = [0]\nmemory = { node = 0, size = '8M' }\n", "memory: expected exactly one of node"),
    ("[[kernel]]\ncores = [0]\nmemory = { ranges = [[1, 2, 3]] }\n", "memory range [1, 2, 3] is not [base, end]"),
    ("[machine]\nsockets = 40\n[[kernel]]\ncores = [0]\n", "[machine]: 40 sockets x 8 cores needs APIC ID"),
    (ONE + "[monitor]\nviolation_records = 0\n", "[monitor]: violation_records: expected an integer 1..100000, got 0"),
    (ONE + "[monitor]\nviolations = 5\n", "[monitor]: unknown key 'violations' (known: violation_records)"),
    (ONE + "[extra]\n", "unknown section 'extra'"),
    ("monitor = 5\n" + ONE, "[monitor]: expected a [monitor] table, got 5"),
    ("".join(f'[[kernel]]\ncores = [{i}]\nmemory = {{ size = "8M" }}\n' for i in range(17)),
     "kernel: 17 [[kernel]] tables, at most 16"),
]


@pytest.mark.parametrize("text, words", WRONG, ids=[words.split(": ")[-1][:40] for _, words in WRONG])
def test_each_problem_is_one_line_naming_the_file_and_the_key(tmp_path, capsys, text, words):
    path = write(tmp_path, text)
    line = refused(path, capsys)
    assert line.startswith(f"osvemu: {path}: ") and words in line, line


def test_forty_channels_of_16_mib_would_overlap_the_apic_pages(tmp_path, capsys):
    """Channels sit one after another from 0xE0000000 and must end below the
    IOAPIC page (0xFEC00000): 40 x 16 MiB would run over it (a Unicorn map
    error at boot, before)."""
    channels = "".join(f'[[channel]]\nname = "c{i}"\nkernels = ["A", "B"]\nsize = "16M"\n' for i in range(40))
    text = TWO.replace('cores = ["0-7"]', 'cores = ["0-7"]\nmemory = { size = "64M" }') + channels
    line = refused(write(tmp_path, text), capsys)
    assert 'channel "c30": size: the channels up to this one take 496 MiB, more than the 492 MiB' in line
    assert (CHANNEL_LIMIT - CHANNEL_BASE) >> 20 == 492 and CHANNEL_LIMIT == layout.IOAPIC_BASE
    fitting = text.replace("".join(channels.splitlines(keepends=True)[4 * 30:]), "")
    assert len(load_config(write(tmp_path, fitting, "fits.toml")).channels) == 30


def test_the_channel_window_is_the_one_the_plan_places_channels_in():
    from osvemu.osv.plan import osv_plan

    topology = Topology(2, 1, 64 * layout.MiB)
    kernels = tuple(KernelPlan(i, f"k{i}", "", "", (i,), tuple(m)) for i, m in
                    enumerate([[r] for r in allocatable(topology)]))
    channels = tuple(ChannelPlan(i, f"c{i}", size, (0, 1)) for i, size in enumerate((0x3000, 0x1000, 0x10000)))
    config = OsvConfig(topology, kernels, channels)
    validate(config)
    placed = osv_plan(config).monitor.partitions[0].channels
    assert config.channel_addresses == tuple(c.gpa for c in placed) == (CHANNEL_BASE, CHANNEL_BASE + 0x3000,
                                                                        CHANNEL_BASE + 0x4000)


def test_names_and_numbers_in_messages_stay_short_and_on_one_line(tmp_path, capsys):
    line = refused(write(tmp_path, '[[kernel]]\ncores = ["\\n' + "x" * 500 + '"]\n'), capsys)
    assert len(line) < 250 and "\\n" in line
    line = refused(write(tmp_path, ONE + "[machine]\nsockets = " + "9" * 4000 + "\n"), capsys)
    assert line.endswith("[machine]: sockets: expected an integer 1..255, got an integer of 13288 bits")
    line = refused(write(tmp_path, ONE + "[machine]\nsockets = " + "9" * 5000 + "\n"), capsys)
    assert "not valid TOML" in line and len(line) < 400
    weird = tmp_path / "a\nb.toml"
    weird.write_text("[[kernel]]\ncores = 5\n")
    assert "a\\nb.toml: kernel 0: cores" in refused(weird, capsys)


def test_files_that_are_not_configurations(tmp_path, capsys):
    assert "no such configuration file" in refused(tmp_path / "missing.toml", capsys)
    assert "is a directory" in refused(tmp_path, capsys)
    big = write(tmp_path, "# " + "x" * (config_module.MAX_CONFIG_BYTES + 10) + "\n", "big.toml")
    assert "larger than 1 MiB" in refused(big, capsys)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[[kernel]]")
    assert "not UTF-8 text" in refused(binary, capsys)


# ------------------------------------------------------------------ unassigned cores

def test_unassigned_cores_are_offline(tmp_path, capsys):
    path = write(tmp_path, f'[machine]\nsockets = 2\ncores_per_socket = 4\nmemory = "256M"\n'
                           f'[[kernel]]\nname = "a"\nimage = "{IMAGE}"\ncores = [1, 0]\n'
                           f'[[kernel]]\nname = "b"\nimage = "{IMAGE}"\ncores = ["5-6"]\n')
    config = load_config(path)
    assert config.offline_apic_ids == (2, 3, 4, 7)
    assert default_config(Topology(), str(IMAGE)).offline_apic_ids == ()
    status, out, _ = check(path, capsys)
    assert status == 0 and "offline cores: 2-4, 7 (APIC IDs)" in out
    assert 'kernel "a": cores 1, 0 (APIC IDs; boot CPU 1)' in out


def test_a_config_leaving_cores_unassigned_boots_minilinux(tmp_path):
    """Half the cores of a 2 x 2 machine belong to no kernel: they stay
    offline (wait-for-SIPI) and the kernel on the others finishes."""
    path = write(tmp_path, f'[machine]\nsockets = 2\ncores_per_socket = 2\nmemory = "64M"\n'
                           f'[[kernel]]\nname = "only"\nimage = "{IMAGE}"\ncmdline = "quiet primes=100 rounds=2"\n'
                           f'cores = [2, 3]\n')
    run = run_osvemu("boot", "--config", path, "--max-instructions", "200000000", "--report", tmp_path / "r.json",
                     timeout=120)
    assert run.returncode == 0, run.stderr
    assert re.search(r"^\[only\] .*minilinux: 2 CPUs online, .*: OK$", run.stdout, re.MULTILINE), run.stdout
    cores = json.loads((tmp_path / "r.json").read_text())["cores"]
    assert [(c["apic_id"], c["instructions"]) for c in cores[:2]] == [(0, 0), (1, 0)]
    assert all(c["instructions"] > 0 for c in cores[2:])


# ------------------------------------------------------------------ paths

def test_image_paths_are_relative_to_the_config_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "conf" / "images").mkdir(parents=True)
    shutil.copy(IMAGE, tmp_path / "conf" / "images" / "kernel.elf")
    path = write(tmp_path / "conf", '[[kernel]]\nimage = "images/kernel.elf"\ncores = [0]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert Path(config.kernels[0].image).resolve() == (tmp_path / "conf" / "images" / "kernel.elf").resolve()
    status, out, _ = check(path, capsys)
    assert status == 0 and "images/kernel.elf" in out
    # The command line's IMAGE, for kernels that name none, is relative to the working directory.
    shutil.copy(IMAGE, elsewhere / "cwd.elf")
    bare = write(tmp_path / "conf", "[[kernel]]\ncores = [0]\n", "bare.toml")
    assert load_config(bare, default_image="cwd.elf").kernels[0].image == "cwd.elf"
    assert "image: required" in str(pytest.raises(ConfigError, load_config, bare).value)
    line = refused(write(tmp_path / "conf", '[[kernel]]\nimage = "kernel.elf"\ncores = [0]\n', "wrong.toml"), capsys)
    assert "image: image" in line and "conf/kernel.elf is not a readable file" in line


def test_config_check_reports_a_bad_image_under_its_kernel(tmp_path, capsys):
    (tmp_path / "notelf.bin").write_bytes(b"hello")
    line = refused(write(tmp_path, '[[kernel]]\nname = "A"\nimage = "notelf.bin"\ncores = [0]\n'), capsys)
    assert line.endswith('config.toml: kernel "A": ' + f"{tmp_path}/notelf.bin: not an ELF file")


# ------------------------------------------------------------------ the new keys

def test_restart_notify_and_violation_records(tmp_path):
    text = (TWO.replace('cores = ["0-7"]', 'cores = ["0-7"]\nrestart = 3')
            + '[[channel]]\nname = "bell"\nkernels = ["B", "A"]\nnotify = [248, "32-34", 0x40]\n'
            + "[monitor]\nviolation_records = 100000\n")
    config = load_config(write(tmp_path, text))
    assert [k.restarts for k in config.kernels] == [3, 0]
    assert config.channels[0].notify_vectors == (32, 33, 34, 64, 248) and config.channels[0].kernels == (1, 0)
    assert config.violation_records == 100000
    plain = load_config(write(tmp_path, TWO + f'[[channel]]\nkernels = ["A", "B"]\n[[kernel]]\nimage = "{IMAGE}"\n'
                              'cores = [16]\nrestart = "never"\n', "plain.toml"))
    assert plain.channels[0].notify_vectors == () and plain.violation_records == 64
    assert [k.restarts for k in plain.kernels] == [0, 0, 0]


@pytest.mark.parametrize("text, words", [
    ("restart = 101", 'restart: expected "never" or an integer 0..100, got 101'),
    ("restart = -1", "restart: expected"),
    ('restart = "always"', 'got "always"'),
    ("restart = true", "got true"),
])
def test_restart_bounds(tmp_path, capsys, text, words):
    assert words in refused(write(tmp_path, f"[[kernel]]\ncores = [0]\n{text}\n"), capsys)


@pytest.mark.parametrize("notify, words", [
    ("[31]", "31 is outside 32..255"), ("[256]", "256 is outside 32..255"), ('["200-300"]', "outside 32..255"),
    ("[248, 248]", "248 is listed twice"), ("248", "expected a list of vectors"), ('["x"]', "neither a vector"),
])
def test_notify_bounds(tmp_path, capsys, notify, words):
    line = refused(write(tmp_path, TWO + f'[[channel]]\nkernels = ["A", "B"]\nnotify = {notify}\n'), capsys)
    assert "channel 0: notify: " in line and words in line, line


def test_the_generated_results_channel_allows_every_vector():
    config = default_config(Topology(), str(IMAGE))
    assert config.channels[0].notify_vectors == tuple(range(32, 256))
    assert config.violation_records == 64 and all(k.restarts == 0 for k in config.kernels)


# ------------------------------------------------------------------ --kernels N

@pytest.mark.parametrize("sockets, cores, kernels", [(2, 3, 3), (3, 4, 2), (3, 4, 4), (3, 4, 6), (3, 4, 12), (4, 8, 8),
                                                      (4, 8, 16), (1, 8, 2), (2, 2, 4)])
def test_every_even_split_of_the_cores_gets_its_own_memory(sockets, cores, kernels):
    """Each kernel gets RAM only on the nodes of its cores, in proportion to
    its cores there: equal kernels, equal RAM (to the MiB), no overlap.
    (--kernels 3 on 2 x 3 and --kernels 2 on 3 x 4 overlapped before.)"""
    topology = Topology(sockets, cores, 2 * layout.GiB)
    config = default_config(topology, str(IMAGE), "", kernels)
    assert len(config.kernels) == kernels and config.offline_apic_ids == ()
    for plan in config.kernels:
        nodes = {topology.cpu_by_apic_id(apic).node for apic in plan.apic_ids}
        assert {rng.node for rng in plan.memory} <= nodes
    sizes = [plan.ram_bytes for plan in config.kernels]
    assert max(sizes) - min(sizes) <= (1 + kernels // sockets) * layout.MiB, sizes
    ranges = sorted((r.base, r.end) for plan in config.kernels for r in plan.memory)
    assert all(end <= base for (_, end), (base, _) in itertools.pairwise(ranges))


def test_the_default_layout_is_unchanged():
    """One kernel per socket with its node's memory, as the paper (and the
    OSV tests) expect: 511 MiB on node 0, 512 on the others."""
    config = default_config(Topology(), str(IMAGE))
    assert [p.apic_ids for p in config.kernels] == [tuple(range(8 * i, 8 * i + 8)) for i in range(4)]
    assert [p.ram_bytes >> 20 for p in config.kernels] == [511, 512, 512, 512]


def test_a_kernel_never_gets_more_than_a_partition_holds():
    config = default_config(Topology(1, 2, 16 * layout.GiB), str(IMAGE), "", 2)
    assert [p.ram_bytes for p in config.kernels] == [MAX_GUEST_RAM, MAX_GUEST_RAM]


@pytest.mark.parametrize("kernels, words", [(5, "do not split evenly"), (12, "do not split evenly"),
                                            (MAX_KERNELS + 16, "at most 16 kernels")])
def test_uneven_or_too_many_kernels(kernels, words):
    with pytest.raises(ConfigError, match=words):
        default_config(Topology(4, 8, 2 * layout.GiB), str(IMAGE), "", kernels)


def test_three_kernels_on_two_sockets_of_three_boot(tmp_path):
    run = run_osvemu("boot", IMAGE, "--sockets", "2", "--cores-per-socket", "3", "--memory", "256M", "--kernels", "3",
                     "--cmdline", "quiet primes=100 rounds=2", "--max-instructions", "400000000", timeout=180)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].endswith("OSV: combined result of 3 kernels: 6 CPUs, primes=75, pingpong=12: OK")


# ------------------------------------------------------------------ the examples

def attacker_image() -> Path:
    """The attacker test guest the example names, built if it is not yet."""
    if not ATTACKER.exists():
        sys.path.insert(0, str(ROOT / "tools"))
        from build_test_guests import build
        try:
            build("attacker")
        except Exception as error:  # noqa: BLE001 - no compiler, or the guest's sources not there yet
            pytest.skip(f"tests/guests/build/attacker.elf is not built and cannot be: {error}")
    return ATTACKER


@pytest.mark.parametrize("name", ["two-unequal", "four-with-channel", "attacker-victim"])
def test_the_examples_are_valid(name, capsys, monkeypatch, tmp_path):
    if name == "attacker-victim":
        attacker_image()
    monkeypatch.chdir(tmp_path)  # image paths are relative to the example, wherever it is checked from
    status, out, err = check(EXAMPLES / f"{name}.toml", capsys)
    assert status == 0 and err == "", err
    assert out.splitlines()[0] == f"{EXAMPLES / name}.toml: valid"
    config = load_config(EXAMPLES / f"{name}.toml")
    if name == "two-unequal":
        assert [len(k.apic_ids) for k in config.kernels] == [24, 8]
        assert [k.ram_bytes >> 20 for k in config.kernels] == [1535, 512]
        assert config.channels[0].notify_vectors == (248,)
    elif name == "four-with-channel":
        assert len(config.kernels) == 4 and config.channels[0].kernels == (0, 1, 2, 3)
        assert config.channels[0].notify_vectors == (248,)
        assert "notify vectors 248" in out
    else:
        victim, attacker = config.kernels
        assert len(victim.apic_ids) == 16 and victim.image.endswith("guests/minilinux.elf")
        assert len(attacker.apic_ids) == 2 and attacker.image.endswith("tests/guests/build/attacker.elf")
        assert config.channels == () and config.offline_apic_ids == tuple(range(18, 32))
        assert "offline cores: 18-31 (APIC IDs)" in out


def test_config_check_prints_the_layout(capsys):
    status, out, _ = check(EXAMPLES / "two-unequal.toml", capsys)
    assert status == 0
    assert out.splitlines()[1:] == [
        "machine: 4 sockets x 8 cores (APIC IDs 0-31), 2 GiB of RAM on 4 NUMA nodes",
        'kernel "big": cores 0-23 (APIC IDs; boot CPU 0), 1535 MiB of guest RAM at 0x100000-0x5fffffff',
        "  machine memory 0x100000-0x1fffffff (511 MiB, node 0)",
        "  machine memory 0x20000000-0x3fffffff (512 MiB, node 1)",
        "  machine memory 0x40000000-0x5fffffff (512 MiB, node 2)",
        f"  image {EXAMPLES}/../guests/minilinux.elf",
        '  cmdline "quiet"',
        "  on_violation log, restart never",
        'kernel "small": cores 24-31 (APIC IDs; boot CPU 24), 512 MiB of guest RAM at 0x100000-0x200fffff',
        "  machine memory 0x60000000-0x7fffffff (512 MiB, node 3)",
        f"  image {EXAMPLES}/../guests/minilinux.elf",
        '  cmdline "quiet"',
        "  on_violation log, restart never",
        'channel "results": kernels "big", "small"; 64 KiB at guest-physical 0xe0000000-0xe000ffff; notify vectors 248',
        "offline cores: none",
        "monitor: violation_records 64",
    ]


def test_initrd_paths_are_relative_to_the_config_file_and_checked(tmp_path, capsys):
    (tmp_path / "conf").mkdir()
    shutil.copy(IMAGE, tmp_path / "conf" / "kernel.elf")
    (tmp_path / "conf" / "initrd.cpio").write_bytes(b"070701")
    path = write(tmp_path / "conf", '[[kernel]]\nimage = "kernel.elf"\ninitrd = "initrd.cpio"\ncores = [0]\n')
    assert Path(load_config(path).kernels[0].initrd).resolve() == (tmp_path / "conf" / "initrd.cpio").resolve()
    status, out, _ = check(path, capsys)
    assert status == 0 and "initrd" in out and "initrd.cpio" in out
    line = refused(write(tmp_path / "conf", '[[kernel]]\nimage = "kernel.elf"\ninitrd = "missing.cpio"\ncores = [0]\n',
                         "missing.toml"), capsys)
    assert "initrd: initrd" in line and "missing.cpio is not a readable file" in line
    line = refused(write(tmp_path / "conf", '[[kernel]]\nimage = "kernel.elf"\ninitrd = 7\ncores = [0]\n',
                         "number.toml"), capsys)
    assert "initrd" in line
