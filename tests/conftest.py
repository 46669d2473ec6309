"""Shared fixtures: test guests are built once per session from tests/guests/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))  # build_test_guests, build_guests

from build_test_guests import build


@pytest.fixture(scope="session")
def guest_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("guests")


@pytest.fixture(scope="session")
def smp_hello_elf(guest_dir) -> Path:
    return build("smp_hello", guest_dir)
