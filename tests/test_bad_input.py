"""Bad input gives one clear line on stderr, exit status 2 and no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import run_osvemu
from elf_builder import LoadSegment, build_elf, note, pvh_note

HALT = b"\xf4"


def osvemu(*args: str) -> subprocess.CompletedProcess:
    return run_osvemu("boot", *args, timeout=60)


def assert_one_line_error(run: subprocess.CompletedProcess, *words: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    for word in words:
        assert word in lines[0], lines[0]


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_missing_file(tmp_path):
    assert_one_line_error(osvemu(str(tmp_path / "nope.elf")), "no such file")


def test_directory(tmp_path):
    assert_one_line_error(osvemu(str(tmp_path)), "directory")


def test_not_elf(tmp_path):
    assert_one_line_error(osvemu(write(tmp_path, "text.elf", b"just some text\n")), "not an ELF")


def test_empty_file(tmp_path):
    assert_one_line_error(osvemu(write(tmp_path, "empty.elf", b"")), "not an ELF")


def test_32_bit_elf(tmp_path):
    image = bytearray(build_elf([LoadSegment(0x100000, HALT)], pvh_note(0x100000)))
    image[4] = 1  # EI_CLASS = ELFCLASS32
    assert_one_line_error(osvemu(write(tmp_path, "elf32.elf", bytes(image))), "32-bit")


def test_non_x86_elf(tmp_path):
    image = build_elf([LoadSegment(0x100000, HALT)], pvh_note(0x100000), machine=183)  # EM_AARCH64
    assert_one_line_error(osvemu(write(tmp_path, "arm.elf", image)), "not x86-64")


def test_no_pvh_note(tmp_path):
    image = build_elf([LoadSegment(0x100000, HALT)], note(b"GNU", 3, b"\0" * 8))
    assert_one_line_error(osvemu(write(tmp_path, "nonote.elf", image)), "PVH")


def test_bad_pvh_descriptor(tmp_path):
    image = build_elf([LoadSegment(0x100000, HALT)], note(b"Xen", 18, b"\0\0"))
    assert_one_line_error(osvemu(write(tmp_path, "badnote.elf", image)), "2-byte descriptor")


def test_segment_outside_ram(tmp_path):
    image = build_elf([LoadSegment(0x8000000, HALT)], pvh_note(0x8000000))
    assert_one_line_error(osvemu(write(tmp_path, "high.elf", image), "--memory", "64M"), "outside RAM")


def test_segment_in_640k_hole(tmp_path):
    image = build_elf([LoadSegment(0xB8000, HALT)], pvh_note(0xB8000))
    assert_one_line_error(osvemu(write(tmp_path, "vga.elf", image)), "outside RAM")


@pytest.mark.parametrize("address, area", [(0xE0000, "ACPI"), (0xF0000, "BIOS"), (0x9F000, "EBDA")])
def test_segment_over_firmware(tmp_path, address, area):
    image = build_elf([LoadSegment(address, HALT)], pvh_note(address))
    assert_one_line_error(osvemu(write(tmp_path, "fw.elf", image)), "overlaps", area)


def test_truncated_segment(tmp_path, smp_hello_elf):
    data = smp_hello_elf.read_bytes()
    assert_one_line_error(osvemu(write(tmp_path, "cut.elf", data[:0x1200])), "truncated")


def test_truncated_header(tmp_path, smp_hello_elf):
    data = smp_hello_elf.read_bytes()
    assert_one_line_error(osvemu(write(tmp_path, "cut.elf", data[:40])), "truncated")


def test_filesz_above_memsz(tmp_path):
    image = build_elf([LoadSegment(0x100000, HALT * 16, memsz=4)], pvh_note(0x100000))
    assert_one_line_error(osvemu(write(tmp_path, "sizes.elf", image)), "file size")


@pytest.mark.parametrize("options, words", [
    (["--memory", "12Q"], ["memory size", "12Q"]),
    (["--memory", "1K"], ["memory size"]),
    (["--memory", "9000001"], ["4 KiB"]),
    (["--sockets", "0"], ["--sockets"]),
    (["--cores-per-socket", "-3"], ["--cores-per-socket"]),
    (["--sockets", "40", "--cores-per-socket", "8"], ["APIC ID"]),
    (["--quantum", "abc"], ["--quantum"]),
    (["--timeout", "-1"], ["--timeout"]),
    (["--cmdline", "x" * 8000], ["command line"]),
    (["--no-such-option"], ["no-such-option"]),
    (["--report", "/no/such/dir/report.json"], ["--report", "does not exist"]),
])
def test_bad_options(smp_hello_elf, options, words):
    assert_one_line_error(osvemu(str(smp_hello_elf), *options), *words)
