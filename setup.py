"""Builds osvemu's compiled fast paths (osvemu/cpu/native.py: the block
counter, osvemu/cpu/blockcount.c, and the common case of interrupt
delivery, osvemu/cpu/delivery.c) when pip installs the package.  Everything
else is in pyproject.toml.

The library has no Python entry point: it is an extension module only so
that setuptools compiles it with the host's C compiler; osvemu loads it with
ctypes.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("osvemu.cpu._native", sources=["osvemu/cpu/blockcount.c", "osvemu/cpu/delivery.c"],
                             extra_compile_args=["-O2"])])
