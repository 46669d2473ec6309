"""osvemu's compiled fast paths: one C library, loaded with ctypes.

Two sources make it -- the block counter (``blockcount.c``, used by
:mod:`osvemu.cpu.blockcounter`) and the common case of interrupt delivery
(``delivery.c``, :mod:`osvemu.cpu.fastdelivery`).  ``setup.py`` builds them
as one extension module when pip installs osvemu, only so that setuptools
compiles them with the host's C compiler; the library has no Python entry
point.  Each structure it shares with Python is declared once here as a
ctypes structure and checked against the C side's own offsets at load.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
from pathlib import Path

from unicorn.unicorn_py3 import unicorn as _binding

from osvemu.errors import EmulatorError


def _library_path() -> Path:
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_native{suffix}"
        if candidate.exists():
            return candidate
    raise EmulatorError("osvemu's compiled fast paths (osvemu/cpu/*.c) are not built: reinstall osvemu with pip, "
                        "which compiles them (gcc is required)")


LIBRARY = ctypes.CDLL(str(_library_path()))


def check_layout(structure: type[ctypes.Structure], layout_function: str, fields: list[str]) -> None:
    """``fields`` of ``structure`` and its size are where the C function
    ``layout_function`` says they are (the library was built from these sources)."""
    offsets = (ctypes.c_uint64 * (len(fields) + 1))()
    getattr(LIBRARY, layout_function)(offsets)
    expected = [getattr(structure, name).offset for name in fields] + [ctypes.sizeof(structure)]
    if list(offsets) != expected:
        raise EmulatorError(f"osvemu's {structure.__name__} was built with another layout ({list(offsets)} != "
                            f"{expected}): reinstall osvemu")


def function_address(name: str) -> int:
    """The address of one of the library's functions (a hook to register)."""
    return ctypes.cast(getattr(LIBRARY, name), ctypes.c_void_p).value


def unicorn_function(name: str) -> int:
    """The address of one of libunicorn's exported functions, for the C side to call."""
    return ctypes.cast(getattr(_binding.uclib, name), ctypes.c_void_p).value


__all__ = ["LIBRARY", "check_layout", "function_address", "unicorn_function"]
