"""tools/fetch_linux.py without the network: the newc cpio writer parsed back
(Linux Documentation/driver-api/early-userspace/buffer-format.rst), the xz
payload search on a synthetic bzImage, the vmlinux checks, the CLI's error
statuses, and /init compiled from guests/linuxinit with gcc."""

from __future__ import annotations

import gzip
import importlib.util
import lzma
import random
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from elf_builder import LoadSegment, build_elf, note, pvh_note
from elftools.elf.elffile import ELFFile

ROOT = Path(__file__).resolve().parent.parent


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_linux", ROOT / "tools" / "fetch_linux.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


fl = _load_tool()

NEWC_HEADER = struct.Struct("6s" + "8s" * 13)
assert NEWC_HEADER.size == 110
EM_AARCH64 = 183
PVH_ENTRY = 0x1000850


@dataclass
class Member:
    header_at: int
    data_at: int
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    rdev: tuple[int, int]
    name: str
    data: bytes


def parse_newc(archive: bytes) -> list[Member]:
    """Every member up to and including TRAILER!!!; asserts the format's alignment rules."""
    members, offset = [], 0
    while True:
        assert offset % 4 == 0, "each header starts on a 4-byte boundary"
        magic, *hex_fields = NEWC_HEADER.unpack_from(archive, offset)
        assert magic == b"070701"
        (ino, mode, uid, gid, nlink, mtime, filesize, _devmajor, _devminor, rdevmajor, rdevminor, namesize,
         check) = (int(field, 16) for field in hex_fields)
        assert check == 0
        name_at = offset + NEWC_HEADER.size
        name = archive[name_at:name_at + namesize]
        assert name.endswith(b"\0") and b"\0" not in name[:-1]
        data_at = name_at + namesize + (-(NEWC_HEADER.size + namesize) % 4)
        assert data_at % 4 == 0 and not any(archive[name_at + namesize:data_at])
        data = archive[data_at:data_at + filesize]
        members.append(Member(offset, data_at, ino, mode, uid, gid, nlink, mtime, (rdevmajor, rdevminor),
                              name[:-1].decode(), data))
        offset = data_at + filesize + (-filesize % 4)
        assert not any(archive[data_at + filesize:offset])
        if members[-1].name == "TRAILER!!!":
            assert offset == len(archive)
            return members


def fake_bzimage(payload: bytes, seed: int = 1) -> bytes:
    """Setup-like bytes, a decoy magic that is no stream, the xz stream, then trailing padding."""
    rng = random.Random(seed)
    head = b"MZ" + bytes(rng.randrange(256) for _ in range(0x1f0)) + b"HdrS"
    decoy = fl.XZ_MAGIC + b"not a stream"
    return head + decoy + bytes(7) + lzma.compress(payload, format=lzma.FORMAT_XZ) + b"\xaa" * 4096


def fake_vmlinux(notes: bytes = pvh_note(PVH_ENTRY), machine: int = 62) -> bytes:
    return build_elf([LoadSegment(0x1000000, b"\x90" * 64)], notes, machine=machine, entry=0x1000000)


# --- cpio ------------------------------------------------------------------------


def test_initramfs_members_modes_and_trailer():
    init = b"\x7fELF" + bytes(range(251))  # odd length: data padding is exercised
    members = parse_newc(fl.newc_archive(fl.initramfs_entries(init)))
    names = [m.name for m in members]
    assert names == ["dev", "dev/console", "proc", "sys", "tmp", "init", "TRAILER!!!"]
    by_name = {m.name: m for m in members}
    for directory in ("dev", "proc", "sys", "tmp"):
        assert by_name[directory].mode == 0o040755 and by_name[directory].nlink == 2
    console = by_name["dev/console"]
    assert console.mode == 0o020600 and console.rdev == (5, 1) and console.data == b""
    assert by_name["init"].mode == 0o100755 and by_name["init"].data == init
    assert [m.ino for m in members[:-1]] == list(range(1, len(members)))
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members)
    assert members[-1].ino == 0 and members[-1].mode == 0 and members[-1].data == b""


@pytest.mark.parametrize("name_length", range(1, 6))
@pytest.mark.parametrize("data_length", range(6))
def test_newc_alignment_for_every_remainder(name_length, data_length):
    entry = fl.CpioEntry("n" * name_length, 0o100644, b"d" * data_length)
    first, trailer = parse_newc(fl.newc_archive([entry]))
    assert first.name == entry.name and first.data == entry.data
    assert (first.data_at - first.header_at) % 4 == 0 and trailer.header_at % 4 == 0


def test_initramfs_is_deterministic():
    init = b"\x7fELF-init"
    first, second = fl.build_initramfs(init), fl.build_initramfs(init)
    assert first == second
    assert struct.unpack_from("<I", first, 4)[0] == 0, "gzip header mtime is 0"
    assert gzip.decompress(first) == fl.newc_archive(fl.initramfs_entries(init))
    assert fl.build_initramfs(b"\x7fELF-other") != first


# --- the bzImage payload -----------------------------------------------------


def test_payload_found_past_a_decoy_magic():
    vmlinux = fake_vmlinux()
    image = fake_bzimage(vmlinux)
    offsets = list(fl.find_xz_offsets(image))
    assert len(offsets) >= 2, "the decoy and the real stream"
    assert fl.decompress_payload(image) == vmlinux


def test_image_without_xz_stream_is_refused():
    with pytest.raises(fl.ImageError, match="no complete xz stream"):
        fl.decompress_payload(b"MZ" + bytes(4096))


def test_truncated_stream_is_refused():
    image = fake_bzimage(fake_vmlinux())
    with pytest.raises(fl.ImageError, match="no complete xz stream"):
        fl.decompress_payload(image[:len(image) - 4096 - 40])


# --- the vmlinux -----------------------------------------------------------------


@pytest.mark.parametrize("width", [4, 8])
def test_pvh_entry_read_from_the_note(width):
    other = note(b"GNU", 3, bytes(20))  # a build-ID-like note before it
    assert fl.pvh_entry(fake_vmlinux(other + pvh_note(PVH_ENTRY, width))) == PVH_ENTRY


def test_pvh_entry_through_the_bzimage():
    assert fl.pvh_entry(fl.decompress_payload(fake_bzimage(fake_vmlinux()))) == PVH_ENTRY


@pytest.mark.parametrize(("payload", "message"), [
    (b"just some decompressed bytes" * 4, "not an ELF"),
    (fake_vmlinux()[:4] + b"\x01" + fake_vmlinux()[5:], "not a little-endian ELF64"),
    (fake_vmlinux(machine=EM_AARCH64), "not x86-64"),
    (fake_vmlinux(notes=note(b"Xen", 17, bytes(8))), "no PVH entry note"),
    (fake_vmlinux(notes=b""), "no PVH entry note"),
])
def test_payload_that_is_not_a_pvh_x86_64_elf_is_refused(payload, message):
    with pytest.raises(fl.ImageError, match=message):
        fl.pvh_entry(fl.decompress_payload(fake_bzimage(payload)))


# --- the CLI ---------------------------------------------------------------------


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as stop:
        fl.main(["--no-such-option"])
    assert stop.value.code == fl.EXIT_USAGE == 2


def test_no_apt_get_is_one_line_and_status_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run
    assert fl.main(["--out", str(tmp_path / "out")]) == fl.EXIT_DOWNLOAD == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get not found" in err


def test_kernel_kept_only_for_the_same_package(tmp_path):
    for name in (fl.VMLINUX_NAME, fl.SYSTEM_MAP_NAME):
        (tmp_path / name).write_bytes(b"x")
    assert not fl.kernel_is_current(tmp_path, "pkg")
    (tmp_path / fl.VERSION_NAME).write_text("package=pkg\nrelease=6.1.0\n")
    assert fl.kernel_is_current(tmp_path, "pkg")
    assert not fl.kernel_is_current(tmp_path, "other-pkg")


# --- /init -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed: /init cannot be compiled")
def test_init_compiles_to_a_static_x86_64_elf(tmp_path):
    init = fl.build_init(fl.INIT_SOURCE, tmp_path / "init")
    with init.open("rb") as stream:
        elf = ELFFile(stream)
        assert elf.elfclass == 64 and elf["e_machine"] == "EM_X86_64"
        assert "PT_INTERP" not in {segment["p_type"] for segment in elf.iter_segments()}, "statically linked"
    again = fl.build_init(fl.INIT_SOURCE, tmp_path / "again")
    assert again.read_bytes() == init.read_bytes(), "reproducible build"
