#!/usr/bin/env python3
"""Seeded fuzzing of everything a user hands osvemu: partition
configurations, ELF images and command lines.

    python3 tools/fuzz_inputs.py --seed 1 --cases 2000 [--timeout 30] [--keep DIR]

Each case is an argument list for ``osvemu.cli.main`` (and the files it
names), generated from the seed: a configuration built from a valid one
with wrong types, huge numbers, deep nesting, unknown keys and broken text
mixed in (``config``); minilinux.elf with bit flips, truncations and extreme
values in its ELF header, program headers and section headers (``elf``);
random option lists for ``boot``, ``trace``, ``tables`` and ``config
check`` (``options``).  A run that could boot is bounded by
``--max-instructions``.  Each case runs in a child forked from this process
(no interpreter start-up per case), killed after ``--timeout`` seconds.

A case passes when osvemu ends without a traceback, within the timeout,
without an internal error (status 3), and says why in one line: status 2
with exactly one line on standard error starting ``osvemu: ``, or any other
status with every standard-error line starting so.  The counts are printed
by category; the exit status is 1 when any case failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from osvemu.cli import main as osvemu_main
from osvemu.cpu.ucinternals import locate as locate_unicorn_internals

IMAGE = ROOT / "guests" / "minilinux.elf"
#: Appended to every command that can run the guest: a few hundred
#: instructions, or (--fast does not count them) a few seconds.
#: Bounds for every run, and --quiet: a run cut short also says where each core was, in lines of its own.
BOUNDED = ["--max-instructions", "500", "--quantum", "500", "--timeout", "3", "--quiet"]
#: A small machine for the ELF cases (building 32 cores costs more than the case).
SMALL = ["--sockets", "1", "--cores-per-socket", "1", "--memory", "64M"]
CATEGORIES = ("config", "elf", "options")


# ------------------------------------------------------------------ TOML text

@dataclass(frozen=True)
class Raw:
    """Text placed in the TOML as it is (deep nesting, dates, broken values)."""

    text: str


def toml_value(value) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped
    (TOML 1.0 "String"), everything else as it is."""
    escaped = "".join(f"\\u{ord(c):04x}" if c < " " or c == "\x7f" else "\\" + c if c in '"\\' else c for c in text)
    return f'"{escaped}"'


def toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else toml_string(key)


def toml_text(data: dict) -> str:
    """``data`` as TOML: scalars first, then [tables] and [[arrays of tables]]."""
    lines, later = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            later.append(f"[{toml_key(key)}]")
            later += [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for table in value:
                later.append(f"[[{toml_key(key)}]]")
                later += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines + later) + "\n"


# ------------------------------------------------------------------ configurations

def valid_config(rng: random.Random, image: str = "minilinux.elf") -> dict:
    """A small layout that passes every check: 1..4 kernels, each on its own
    socket with its node's memory or a size, maybe a channel and a [monitor]."""
    sockets = rng.randint(1, 4)
    per = rng.randint(1, 4)
    bits = (per - 1).bit_length()
    kernels = []
    for socket in range(rng.randint(1, sockets)):
        apics = [(socket << bits) | core for core in range(rng.randint(1, per))]
        kernel = {"name": f"k{socket}", "image": image, "cores": [apics[0]] + ([f"{apics[1]}-{apics[-1]}"]
                                                                              if len(apics) > 1 else [])}
        if rng.random() < 0.5:
            kernel["memory"] = rng.choice([{"node": socket}, {"size": "16M"}])
        if rng.random() < 0.3:
            kernel["on_violation"] = rng.choice(["log", "stop"])
        if rng.random() < 0.3:
            kernel["restart"] = rng.choice(["never", 0, 3, 100])
        if rng.random() < 0.5:
            kernel["cmdline"] = rng.choice(["quiet", "quiet primes=100 rounds=2", ""])
        kernels.append(kernel)
    data: dict = {"machine": {"sockets": sockets, "cores_per_socket": per, "memory": rng.choice(["256M", "512M"])},
                  "kernel": kernels}
    if len(kernels) > 1 and rng.random() < 0.7:
        data["channel"] = [{"name": "results", "kernels": [k["name"] for k in kernels],
                            "size": rng.choice(["4K", "64K", 65536]), "notify": rng.choice([[], [248], ["32-40", 248]])}]
    if rng.random() < 0.3:
        data["monitor"] = {"violation_records": rng.choice([1, 64, 100000])}
    return data


def deep(rng: random.Random) -> Raw:
    depth = rng.choice([10, 100, 900, 3000, 20000])
    return Raw("[" * depth + "1" + "]" * depth)


NASTY = [5, 0, -1, 2**31, 2**63 - 1, -2**63, 1.5, float("nan"), float("inf"), -0.0, True, False, "4", "", "0-99999999999",
         "x" * 300, "\x1b[2J[k9] PASS", "a\nb", "\u202e", "0x100000", "-", "1-", "never", "1G", "99999999999999999999T",
         [], [1], [True], ["a", "a"], [[1, 2]], {"a": 1}, {}, Raw("1979-05-27T07:32:00Z"), Raw("0x7fffffffffffffff"),
         Raw("1e999"), Raw("9" * 5000)]


def nasty(rng: random.Random):
    roll = rng.random()
    if roll < 0.1:
        return deep(rng)
    if roll < 0.2:
        return [rng.choice(NASTY[:20]) for _ in range(rng.choice([2, 300, 3000]))]
    if roll < 0.3:
        return rng.randint(-2**70, 2**70)
    return rng.choice(NASTY)


def mutate_config(rng: random.Random, data: dict) -> None:
    """One change that is likely wrong: a value, a key, a section or a shape."""
    kinds = data["kernel"] if isinstance(data.get("kernel"), list) else []
    channels = data["channel"] if isinstance(data.get("channel"), list) else []
    tables = [data[k] for k in ("machine", "monitor") if isinstance(data.get(k), dict)]
    tables += [t for t in kinds + channels if isinstance(t, dict)]
    roll = rng.random()
    if roll < 0.45 and tables:
        table = rng.choice(tables)
        key = rng.choice(list(table) + ["name", "cores", "memory", "notify", "kernels", "size"])
        table[key] = nasty(rng)
    elif roll < 0.55 and tables:
        table = rng.choice(tables)
        if table:
            del table[rng.choice(list(table))]
    elif roll < 0.62 and tables:
        rng.choice(tables)[rng.choice(["colour", "", "a b", "kernel", "\u0000"])] = nasty(rng)
    elif roll < 0.70:
        data[rng.choice(["machine", "kernel", "channel", "monitor", "extra"])] = nasty(rng)
    elif roll < 0.76 and kinds and isinstance(kinds[0], dict):
        kinds.append(dict(kinds[0]))
    elif roll < 0.82 and kinds:
        data["channel"] = [{"name": f"c{i}", "kernels": [k.get("name", "k0") for k in kinds[:2] if isinstance(k, dict)],
                            "size": rng.choice(["16M", "4K"])} for i in range(rng.choice([1, 40, 70]))]
    elif roll < 0.88 and kinds and isinstance(kinds[0], dict):
        kinds[0]["memory"] = rng.choice([{"node": 99}, {"size": "1T"}, {"ranges": [["0x100000", "0x100000000000"]]},
                                         {"ranges": [[1, 2, 3]]}, {"ranges": [["0x100000", "0x1000000"]] * 20},
                                         {"size": "7M"}, {"node": 0, "size": "16M"}, {"bogus": 1}])
    elif roll < 0.94 and kinds and isinstance(kinds[0], dict):
        kinds[0]["cores"] = rng.choice([["0-254"], ["254-0"], [255], ["0x0-0x3"], ["a-b"], ["1-2-3"], [-1], list(range(300))])
    else:
        data["kernel"] = [dict(valid_config(rng)["kernel"][0], name=f"k{i}") for i in range(rng.choice([16, 17, 40]))]


def mutate_text(rng: random.Random, text: str) -> str:
    roll = rng.random()
    if roll < 0.3:
        return text[:rng.randrange(len(text) + 1)]
    if roll < 0.6:
        position = rng.randrange(len(text) + 1)
        return text[:position] + rng.choice(["=", "[", "]]", "\"", "\n[[kernel]]\n", "\x00", "\udcff", "\\u0000",
                                             "'''", "\n" * 3, "#"]) + text[position:]
    if roll < 0.8:
        return text + rng.choice(["[machine]\nsockets = 2\n", "x = " + deep(rng).text + "\n", "[[kernel]]\n",
                                  "a.b.c.d = 1\n", "kernel = 5\n"])
    data = bytearray(text.encode(errors="surrogateescape"))
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data.decode(errors="surrogateescape")


def config_case(rng: random.Random, work: Path, index: int) -> list[str]:
    data = valid_config(rng)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        mutate_config(rng, data)
    try:
        text = toml_text(data)
    except (TypeError, RecursionError):
        text = "[[kernel]]\ncores = [0]\n"
    if rng.random() < 0.25:
        text = mutate_text(rng, text)
    path = work / f"config-{index}.toml"
    path.write_bytes(text.encode(errors="surrogateescape"))
    if rng.random() < 0.15:
        return ["boot", "--config", path.name, *BOUNDED]
    return ["config", "check", path.name]


# ------------------------------------------------------------------ ELF images

ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
PROGRAM_HEADER_SIZE = 56
SECTION_HEADER_SIZE = 64


def mutate_elf(rng: random.Random, raw: bytes) -> bytes:
    """minilinux.elf with flips, truncations or extreme values where the
    loader reads: the ELF header, the program headers, the section headers."""
    _, _, _, _, _, phoff, shoff, _, _, _, phnum, _, shnum, _ = ELF_HEADER.unpack_from(raw)
    data = bytearray(raw)
    areas = [(0, ELF_HEADER.size), (phoff, phnum * PROGRAM_HEADER_SIZE), (shoff, shnum * SECTION_HEADER_SIZE)]
    roll = rng.random()
    if roll < 0.15:
        return bytes(data[:rng.choice([0, 3, 4, 5, 16, 63, 64, 100, phoff + PROGRAM_HEADER_SIZE, rng.randrange(len(raw))])])
    for _ in range(rng.randint(1, 6)):
        base, size = rng.choice(areas)
        position = base + rng.randrange(max(1, size))
        if roll < 0.55:
            data[position] ^= 1 << rng.randrange(8)
        else:
            width = rng.choice([1, 2, 4, 8])
            value = rng.choice([0, 1, 2**(8 * width) - 1, 2**(8 * width - 1), rng.randrange(2**(8 * width))])
            data[position:position + width] = value.to_bytes(width, "little")[:len(data[position:position + width])]
    if rng.random() < 0.2:
        data = data[:rng.randrange(len(data) + 1)]
    return bytes(data)


def elf_case(rng: random.Random, work: Path, index: int) -> list[str]:
    path = work / f"image-{index}.elf"
    path.write_bytes(mutate_elf(rng, IMAGE.read_bytes()))
    roll = rng.random()
    if roll < 0.5:
        return ["config", "check", "noimage.toml", path.name]
    if roll < 0.8:
        return ["boot", "--native", path.name, *SMALL, *BOUNDED]
    return ["boot", path.name, "--sockets", "2", "--cores-per-socket", "1", "--memory", "64M", *BOUNDED]


# ------------------------------------------------------------------ command lines

INTEGERS = ["0", "1", "2", "3", "4", "8", "-1", "99999999999999999999", "0x10", "1e3", "abc", "", " 4", "\u0663", "1_000",
            "nan", "10000000", "10000001", "4611686018427387904", "9" * 5000]
SECONDS = ["nan", "inf", "-inf", "0", "1e-9", "1e6", "1000001", "5", "-1", "abc", "1e309", "0x10", ""]
SIZES = ["16M", "64M", "256M", "2G", "1K", "0", "9000001", "1T", "2T", "99999999999999999999999G", "64m", "1.5G",
         "-64M", "64MiB", "", "15M"]
TEXTS = ["quiet", "quiet primes=100", "x" * 6000, "a\x00b", "\udcff", "\x1b[2J", "a\nb", ""]
PATHS = ["out.json", "", "/no/such/dir/r.json", ".", "a\x00b", "sub/", "noimage.toml"]
CONFIGS = ["valid.toml", "missing.toml", "broken.toml", "/dev/null", ".", "", "a\x00b", "minilinux.elf"]
LOCATIONS = ["pvh_start", "no_such", "0x100000", "", "-5", "0x10000000000000000", "1-2", "\x1b", "a" * 300]
WATCHES = ["0x100000", "0x100000:4", "nope:zz", ":", "pvh_start:0", "0x100000:99999999999", "-1",
           "0xffffffffffffffff:8", "pvh_start:-4", "pvh_start:"]
RANGES = ["0-10", "pvh_start-0x100010", "5", "-", "10-5", "0x-0x", "pvh_start-no_such", "0-0x10000000000000000"]
CORES = ["0", "1", "9", "-1", "255", "x", "254"]
NAMES = ["k0", "k1", "k9", "", "a\nb", "results"]
#: Only addresses --gdb refuses: a valid one would wait for a debugger.
GDB = ["x", "99999", "host:", ":70000", "bad host:1", "-1", "a:b:c", "", ":", "[::1]:1234", "1.2.3.4:-5", "\u00b2",
       "h:\u0663"]
IMAGES = ["minilinux.elf", "missing.elf", "", "valid.toml", "/dev/null", ".", "a\x00b", "\udcff.elf"]

MACHINE_OPTIONS = {"--sockets": ["1", "2", "4", "0", "256", "300"] + INTEGERS[:6],
                   "--cores-per-socket": ["1", "2", "4", "8", "0", "256"] + INTEGERS[:6],
                   "--memory": SIZES, "--cmdline": TEXTS, "--quantum": INTEGERS, "--fast": None,
                   "--max-instructions": INTEGERS, "--timeout": SECONDS, "--report": PATHS, "--config": CONFIGS,
                   "--kernels": ["1", "2", "3", "4", "5", "8", "16", "17", "0", "-2", "x"], "--native": None}
COMMAND_OPTIONS = {
    "boot": {"--gdb": GDB, "--gdb-wait": None},
    "trace": {"--core": CORES, "--from": LOCATIONS, "--until": LOCATIONS, "--range": RANGES, "--count": INTEGERS,
              "--events-only": None, "--regs": None, "--watch": WATCHES, "-o": ["trace.txt", "", "/", "a\x00b"]},
    "tables": {"--kernel": NAMES, "--raw": ["raw", "", "a\x00b", "minilinux.elf/x"]},
}
JUNK = ["--no-such-option", "-x", "--", "--sock", "--sockets=3", "--memory=", "-", "--native=1", "extra", "--help"]


def options_case(rng: random.Random, work: Path, index: int) -> list[str]:
    command = rng.choice(["boot", "trace", "tables", "config"])
    if command == "config":
        argv = ["config", rng.choice(["check", "check", "nope"])]
        argv += rng.sample(["valid.toml", "missing.toml", "broken.toml", "minilinux.elf", "", "a\x00b"], rng.randint(0, 2))
        return argv
    vocabulary = dict(MACHINE_OPTIONS, **COMMAND_OPTIONS[command])
    argv = [command]
    if rng.random() < 0.9:
        argv.append(rng.choice(IMAGES[:2]) if rng.random() < 0.6 else rng.choice(IMAGES))
    for _ in range(rng.randint(0, 5)):
        if rng.random() < 0.07:
            argv.append(rng.choice(JUNK))
            continue
        option = rng.choice(list(vocabulary))
        values = vocabulary[option]
        argv += [option] if values is None else [option, rng.choice(values)]
    if command == "tables" and rng.random() < 0.8:
        argv += ["--kernel", rng.choice(NAMES)]
    if command in ("boot", "trace") and rng.random() < 0.6:
        argv[1:1] = ["--sockets", "1", "--cores-per-socket", "2", "--memory", "64M"]
    return argv + (BOUNDED if command in ("boot", "trace") else [])


GENERATORS = {"config": config_case, "elf": elf_case, "options": options_case}


def prepare_work(work: Path) -> None:
    """The files the generated command lines name."""
    shutil.copy(IMAGE, work / "minilinux.elf")
    (work / "valid.toml").write_text(toml_text({
        "machine": {"sockets": 2, "cores_per_socket": 1, "memory": "64M"},
        "kernel": [{"name": "k0", "cores": [0], "image": "minilinux.elf"},
                   {"name": "k1", "cores": [1], "image": "minilinux.elf"}],
        "channel": [{"name": "results", "kernels": ["k0", "k1"], "notify": [248]}]}))
    (work / "noimage.toml").write_text(toml_text({
        "machine": {"sockets": 2, "cores_per_socket": 1, "memory": "64M"},
        "kernel": [{"name": "k0", "cores": [0]}, {"name": "k1", "cores": [1]}]}))
    (work / "broken.toml").write_text("[[kernel]\ncores = [0\n")


# ------------------------------------------------------------------ running a case

@dataclass
class Outcome:
    status: int | None  # None: killed after the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def verdict(self) -> str:
        """ok, hang, traceback, internal (status 3) or output (not one clear line)."""
        if self.status is None:
            return "hang"
        if "Traceback (most recent call last)" in self.stderr or self.status == UNCAUGHT:
            return "traceback"
        if self.status == 3:
            return "internal"
        lines = self.stderr.splitlines()
        if self.status == 2 and len(lines) != 1:
            return "output"
        if any(not line.startswith("osvemu: ") for line in lines):
            return "output"
        return "ok"


#: The child's status when main() let an exception out.
UNCAUGHT = 99


def run_case(argv: list[str], work: Path, timeout: float) -> Outcome:
    """``osvemu.cli.main(argv)`` in a forked child, in ``work``, with its
    output in files; killed after ``timeout`` seconds."""
    out_path, err_path = work / ".stdout", work / ".stderr"
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = UNCAUGHT
        try:
            os.setpgid(0, 0)
            os.chdir(work)
            for fd, path in ((1, out_path), (2, err_path)):
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(handle, fd)
                os.close(handle)
            try:
                status = osvemu_main(argv)
            except SystemExit as leaving:  # argparse's --help
                status = leaving.code if isinstance(leaving.code, int) else 0
            except BaseException:  # noqa: BLE001 - the point: any escape is a finding
                traceback.print_exc()
                status = UNCAUGHT
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status & 0xFF if isinstance(status, int) else UNCAUGHT)
    status = None
    while time.monotonic() - started < timeout:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(code)
            break
        time.sleep(0.002)
    if status is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return Outcome(status, _read(out_path), _read(err_path), time.monotonic() - started)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Tally:
    by_category: dict[str, Counter] = field(default_factory=lambda: {c: Counter() for c in CATEGORIES})
    statuses: dict[str, Counter] = field(default_factory=lambda: {c: Counter() for c in CATEGORIES})
    failures: list[tuple[str, list[str], Outcome]] = field(default_factory=list)


def fuzz(seed: int, cases: int, timeout: float, keep: Path | None, quiet: bool = False) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    # Unicorn's internal offsets are found once per process by probing fresh
    # instances; found here, before the first fork, every child shares them
    # (a probe inside a forked child can miss: its heap is the parent's copy).
    locate_unicorn_internals()
    with tempfile.TemporaryDirectory(prefix="osvemu-fuzz-") as scratch:
        work = Path(scratch)
        prepare_work(work)
        for index in range(cases):
            category = CATEGORIES[index % len(CATEGORIES)]
            argv = GENERATORS[category](rng, work, index)
            outcome = run_case(argv, work, timeout)
            verdict = outcome.verdict
            tally.by_category[category][verdict] += 1
            tally.statuses[category][outcome.status] += 1
            if verdict != "ok":
                tally.failures.append((category, argv, outcome))
                if keep:
                    _keep(keep, index, argv, work, outcome)
            for path in work.glob(f"*-{index}.*"):  # this case's own files
                path.unlink()
            if not quiet and (index + 1) % 250 == 0:
                print(f"  {index + 1} cases, {len(tally.failures)} failed", file=sys.stderr)
    return tally


def _keep(keep: Path, index: int, argv: list[str], work: Path, outcome: Outcome) -> None:
    """The case's command line, files and output, to reproduce it."""
    target = keep / f"case-{index}"
    target.mkdir(parents=True, exist_ok=True)
    for path in work.glob(f"*-{index}.*"):
        shutil.copy(path, target / path.name)
    (target / "argv.json").write_text(json.dumps(argv, ensure_ascii=True) + "\n")
    (target / "stderr.txt").write_text(outcome.stderr)


def report(tally: Tally, seed: int, elapsed: float) -> str:
    total = sum(sum(c.values()) for c in tally.by_category.values())
    lines = [f"seed {seed}: {total} cases in {elapsed:.0f} s"]
    lines.append(f"{'category':<10}{'cases':>7}{'ok':>7}{'traceback':>11}{'hang':>6}{'internal':>10}{'output':>8}"
                 "   exit statuses")
    for category in CATEGORIES:
        counts = tally.by_category[category]
        statuses = ", ".join(f"{'killed' if s is None else s}: {n}"
                             for s, n in sorted(tally.statuses[category].items(), key=lambda p: (p[0] is None, p[0] or 0)))
        lines.append(f"{category:<10}{sum(counts.values()):>7}{counts['ok']:>7}{counts['traceback']:>11}"
                     f"{counts['hang']:>6}{counts['internal']:>10}{counts['output']:>8}   {statuses}")
    for category, argv, outcome in tally.failures[:10]:
        tail = outcome.stderr.strip().splitlines()[-3:]
        lines.append(f"FAIL {category} {outcome.verdict}: {json.dumps(argv, ensure_ascii=True)[:300]}")
        lines += [f"    {line[:200]}" for line in tail]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="copy failing cases here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    tally = fuzz(args.seed, args.cases, args.timeout, args.keep)
    print(report(tally, args.seed, time.monotonic() - started))
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
