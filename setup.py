"""Builds osvemu's one compiled piece, the block counter
(osvemu/cpu/blockcount.c), when pip installs the package.  Everything else
is in pyproject.toml.

The library has no Python entry point: it is an extension module only so
that setuptools compiles it with the host's C compiler; osvemu loads it with
ctypes (osvemu/cpu/blockcounter.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("osvemu.cpu._blockcount", sources=["osvemu/cpu/blockcount.c"],
                             extra_compile_args=["-O2"])])
