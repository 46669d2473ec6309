#!/usr/bin/env python3
"""Build the guest kernels in guests/ (``guests/NAME/`` -> ``guests/NAME.elf``).

The build is reproducible: fixed flags, sources compiled in sorted order
from inside their directory with the directory mapped to its name in the
debug information, no build ID, so the same compiler produces a
byte-identical image (tests/test_minilinux.py checks the committed one).

    python3 tools/build_guests.py [--out DIR] [NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUESTS_DIR = ROOT / "guests"
CFLAGS = [
    "-m64", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-fno-pic", "-fno-pie",
    "-mno-red-zone", "-fno-stack-protector", "-mgeneral-regs-only", "-fno-asynchronous-unwind-tables",
    "-fno-omit-frame-pointer", "-fno-builtin", "-g", "-fno-ident",
    "--param=min-pagesize=0",  # firmware structures live at low fixed addresses (as in Linux)
]


class BuildError(Exception):
    pass


def compile_guest(source: Path, elf: Path) -> Path:
    """Compile every ``*.c`` and ``*.S`` in ``source`` and link them with its
    ``link.ld`` into ``elf``.  Raises BuildError with the tool's output."""
    source = source.resolve()
    prefix_map = f"-ffile-prefix-map={source}={source.name}"
    with tempfile.TemporaryDirectory() as scratch:
        objects = []
        for unit in sorted(source.glob("*.c")) + sorted(source.glob("*.S")):
            obj = Path(scratch) / f"{unit.name}.o"
            _run(["gcc", *CFLAGS, prefix_map, "-c", unit.name, "-o", str(obj)], source)
            objects.append(str(obj))
        elf.parent.mkdir(parents=True, exist_ok=True)
        _run(["ld", "-nostdlib", "-static", "-no-pie", "-z", "noexecstack", "--build-id=none",
              "-T", str(source / "link.ld"), "-o", str(elf.resolve()), *objects], source)
    return elf


def _run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(argv)}\n{done.stdout}{done.stderr}")


def guest_names(directory: Path = GUESTS_DIR) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if (p / "link.ld").exists())


def main(argv: list[str] | None = None, guests_dir: Path = GUESTS_DIR, default_out: Path | None = None) -> int:
    """Build the guests named on the command line (default: all) from
    ``guests_dir``; NAME.elf goes to --out (default ``default_out`` or ``guests_dir``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="guests to build (default: all)")
    parser.add_argument("--out", type=Path, default=default_out or guests_dir, help="where NAME.elf goes")
    args = parser.parse_args(argv)
    for name in args.names or guest_names(guests_dir):
        try:
            print(compile_guest(guests_dir / name, args.out / f"{name}.elf"))
        except BuildError as error:
            sys.stderr.write(f"build of {name} failed: {error}\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
