#!/usr/bin/env python3
"""Build the test guests in tests/guests/ with gcc and ld.

Each guest is a directory with C and assembly sources and a linker script
``link.ld``; the result is ``tests/guests/build/NAME.elf``, a PVH ELF that
boots on osvemu and on ``qemu-system-x86_64 -M pc -kernel``.

    python3 tools/build_test_guests.py [--out DIR] [NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

GUESTS_DIR = Path(__file__).resolve().parent.parent / "tests" / "guests"
DEFAULT_OUT = GUESTS_DIR / "build"
CFLAGS = [
    "-m64", "-O2", "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-fno-pic", "-fno-pie", "-mno-red-zone",
    "-fno-stack-protector", "-mgeneral-regs-only", "-fno-asynchronous-unwind-tables", "-fno-omit-frame-pointer",
    "-g",
]


def guest_names() -> list[str]:
    return sorted(p.name for p in GUESTS_DIR.iterdir() if (p / "link.ld").exists())


def build(name: str, out: Path = DEFAULT_OUT) -> Path:
    """Compile and link one guest; return the ELF path.  Raises
    subprocess.CalledProcessError with the compiler's output on failure."""
    source = GUESTS_DIR / name
    objects_dir = out / f"{name}.obj"
    objects_dir.mkdir(parents=True, exist_ok=True)
    objects = []
    for unit in sorted(source.glob("*.c")) + sorted(source.glob("*.S")):
        obj = objects_dir / (unit.stem + unit.suffix.replace(".", "_") + ".o")
        subprocess.run(["gcc", *CFLAGS, "-c", str(unit), "-o", str(obj)], check=True, capture_output=True, text=True)
        objects.append(str(obj))
    elf = out / f"{name}.elf"
    subprocess.run(["ld", "-nostdlib", "-static", "-no-pie", "-z", "noexecstack", "-T", str(source / "link.ld"),
                    "-o", str(elf), *objects], check=True, capture_output=True, text=True)
    return elf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="guests to build (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for name in args.names or guest_names():
        try:
            print(build(name, args.out))
        except subprocess.CalledProcessError as error:
            sys.stderr.write(f"build of {name} failed: {' '.join(error.cmd)}\n{error.stderr}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
