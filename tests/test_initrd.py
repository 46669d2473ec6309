"""The initrd's placement (osvemu.platform.initrd) and bad initrd input."""

from __future__ import annotations

import pytest
from conftest import run_osvemu

from osvemu.errors import ConfigError, ImageError
from osvemu.platform.initrd import INITRD_LIMIT, load_initrd, place_initrd
from osvemu.platform.pvh import MODULE_ENTRY, StartInfo

MiB = 1 << 20
RAM = [(0, 0x9F000), (MiB, 511 * MiB)]


def test_placed_as_high_as_it_fits_page_aligned():
    assert place_initrd(RAM, [], 0x53001) == 512 * MiB - 0x54000


def test_placed_clear_of_what_is_occupied():
    occupied = [(400 * MiB, 112 * MiB), (16 * MiB, 60 * MiB)]  # the top of RAM and an image
    assert place_initrd(RAM, occupied, 10 * MiB) == 390 * MiB
    assert place_initrd(RAM, [(MiB, 511 * MiB)], 0x1000) == 0x9E000  # only low memory is left


def test_overlapping_occupied_ranges_are_merged():
    occupied = [(100 * MiB, 400 * MiB), (200 * MiB, 10 * MiB)]
    assert place_initrd([(MiB, 511 * MiB)], occupied, MiB) == 511 * MiB
    assert place_initrd([(MiB, 450 * MiB)], occupied, MiB) == 99 * MiB  # the nested range hides no gap


def test_never_above_4_gib():
    ram = [(MiB, 3000 * MiB), (4096 * MiB, 4096 * MiB)]
    address = place_initrd(ram, [], 64 * MiB)
    assert address + 64 * MiB <= INITRD_LIMIT and address == 3001 * MiB - 64 * MiB


def test_no_room_is_a_config_error():
    with pytest.raises(ConfigError, match="does not fit"):
        place_initrd(RAM, [(0, 512 * MiB)], 4096)
    with pytest.raises(ConfigError, match="does not fit"):
        place_initrd(RAM, [], 600 * MiB)


def test_load_refuses_what_is_not_a_regular_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_initrd(str(tmp_path / "missing"))
    with pytest.raises(ImageError, match="not a regular file"):
        load_initrd(str(tmp_path))
    with pytest.raises(ImageError, match="not a regular file"):
        load_initrd("/dev/zero")  # would never end
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_initrd(str(empty))


def test_module_zero_in_the_start_info(tmp_path, smp_hello_elf):
    """The kernel's start info names one module: the initrd's bytes, in its memory."""
    from osvemu.image import load_image
    from osvemu.platform.machine import Machine
    from osvemu.platform.plan import bare_plan
    from osvemu.platform.topology import Topology

    data = bytes(range(256)) * 40
    machine = Machine(bare_plan(Topology(1, 1, 64 * MiB), "", load_image(str(smp_hello_elf)), data))
    kernel = machine.kernels[0]
    firmware = machine.install_firmware(kernel)
    info = StartInfo.unpack(kernel.view.read(firmware.start_info_address, 56))
    assert info.nr_modules == 1
    address, size, cmdline, _ = MODULE_ENTRY.unpack(kernel.view.read(info.modlist_paddr, MODULE_ENTRY.size))
    assert (size, cmdline) == (len(data), 0)
    assert address == 64 * MiB - 0x3000  # 10,240 bytes, page aligned at the top of RAM
    assert kernel.view.read(address, size) == data


@pytest.mark.parametrize("make, words", [
    (lambda tmp: str(tmp / "missing.cpio"), ["initrd", "no such file"]),
    (lambda tmp: str(tmp), ["initrd", "not a regular file"]),
    (lambda tmp: "/dev/zero", ["initrd", "not a regular file"]),
])
def test_bad_initrd_is_one_line_and_status_2(tmp_path, smp_hello_elf, make, words):
    run = run_osvemu("boot", "--native", str(smp_hello_elf), "--initrd", make(tmp_path), timeout=60)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert all(word in run.stderr for word in words), run.stderr


def test_initrd_larger_than_ram_is_refused(tmp_path, smp_hello_elf):
    big = tmp_path / "big.cpio"
    big.write_bytes(b"\0" * (20 * MiB))
    run = run_osvemu("boot", "--native", str(smp_hello_elf), "--initrd", str(big), "--memory", "16M", timeout=60)
    assert run.returncode == 2 and "does not fit" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_bad_symbols_file_is_one_line(tmp_path, smp_hello_elf):
    junk = tmp_path / "junk.map"
    junk.write_text("not a symbol table\n")
    for path, words in ((junk, "no symbols found"), (tmp_path / "missing.map", "symbols")):
        run = run_osvemu("trace", "--native", str(smp_hello_elf), "--symbols", str(path), "--count", "5",
                         "-o", str(tmp_path / "t.txt"), timeout=60)
        assert run.returncode == 2 and words in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_system_map_names_a_stripped_image(tmp_path, smp_hello_elf):
    """--symbols replaces the image's own names for the trace."""
    from osvemu.image import load_image

    image = load_image(str(smp_hello_elf))
    entry = image.entry32
    symbols = tmp_path / "System.map"
    symbols.write_text(f"{entry:016x} T osvemu_test_entry\n")
    out = tmp_path / "trace.txt"
    run = run_osvemu("trace", "--native", str(smp_hello_elf), "--symbols", str(symbols), "--count", "3",
                     "--sockets", "1", "--cores-per-socket", "1", "-o", str(out), timeout=60)
    assert run.returncode in (0, 124), run.stderr
    assert "osvemu_test_entry" in out.read_text()
