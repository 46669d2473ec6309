"""Shared fixtures: the osvemu command, the committed minilinux image, and
test guests built once per session from tests/guests/."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))  # build_test_guests, build_guests

from build_test_guests import build
from elf_builder import LoadSegment, build_elf, pvh_note
from keystone import KS_ARCH_X86, KS_MODE_32, Ks

Osvemu = Callable[..., subprocess.CompletedProcess]


def run_osvemu(*args: str, timeout: float = 120, input: str | None = None, cwd: Path = ROOT
               ) -> subprocess.CompletedProcess:
    """``python -m osvemu ARGS`` with its output captured as text."""
    return subprocess.run([sys.executable, "-m", "osvemu", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, input=input, check=False, cwd=cwd)


@pytest.fixture(scope="session")
def osvemu() -> Osvemu:
    return run_osvemu


@pytest.fixture(scope="session")
def minilinux() -> Path:
    return ROOT / "guests" / "minilinux.elf"


@pytest.fixture(scope="session")
def guest_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("guests")


@pytest.fixture(scope="session")
def smp_hello_elf(guest_dir) -> Path:
    return build("smp_hello", guest_dir)


@pytest.fixture(scope="session")
def attacker_elf(guest_dir) -> Path:
    return build("attacker", guest_dir)


@pytest.fixture
def spinning_image(tmp_path) -> Path:
    """A 32-bit PVH image whose boot CPU spins for ever (``inc eax; jmp``):
    a machine that runs until something stops it."""
    base = 0x200000
    code = bytes(Ks(KS_ARCH_X86, KS_MODE_32).asm("spin: inc eax\n jmp spin", base)[0])
    path = tmp_path / "spin.elf"
    path.write_bytes(build_elf([LoadSegment(base, code)], pvh_note(base)))
    return path


def attacker_pair(image: Path, receiver: str = "attack=none", sender: str = "attack=none", channel: bool = True,
                  restart: int | None = None) -> str:
    """A 1 x 4 machine with two 2-core kernels of the attacker guest,
    "receiver" (APIC IDs 0-1) and "sender" (2-3), with these command lines;
    optionally a "doorbell" channel between them allowing NOTIFY vector 0x40,
    and a restart policy on both."""
    policy = f"restart = {restart}\n" if restart is not None else ""
    text = '[machine]\nsockets = 1\ncores_per_socket = 4\nmemory = "256M"\n'
    for name, cmdline, cores in (("receiver", receiver, "[0, 1]"), ("sender", sender, "[2, 3]")):
        text += (f'[[kernel]]\nname = "{name}"\nimage = "{image}"\ncmdline = "{cmdline}"\ncores = {cores}\n'
                 f'memory = {{ size = "64M" }}\n{policy}')
    if channel:
        text += '[[channel]]\nname = "doorbell"\nkernels = ["receiver", "sender"]\nnotify = [0x40]\n'
    return text
