#!/usr/bin/env python3
"""Build the test guests in tests/guests/ (``tests/guests/NAME/`` ->
``tests/guests/build/NAME.elf``) the way tools/build_guests.py builds the
guest kernels: PVH ELF images that boot on osvemu and on
``qemu-system-x86_64 -M pc -kernel``.

    python3 tools/build_test_guests.py [--out DIR] [NAME ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_guests
from build_guests import compile_guest

GUESTS_DIR = Path(__file__).resolve().parent.parent / "tests" / "guests"
DEFAULT_OUT = GUESTS_DIR / "build"


def build(name: str, out: Path = DEFAULT_OUT) -> Path:
    """Compile and link one test guest; return the ELF path (BuildError on failure)."""
    return compile_guest(GUESTS_DIR / name, out / f"{name}.elf")


def main(argv: list[str] | None = None) -> int:
    return build_guests.main(argv, GUESTS_DIR, DEFAULT_OUT)


if __name__ == "__main__":
    sys.exit(main())
