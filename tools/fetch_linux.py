#!/usr/bin/env python3
"""Fetch an unmodified Debian kernel and build the initramfs that boots it.

    python3 tools/fetch_linux.py [--out build/linux] [--package PACKAGE] [--force]

1. ``apt-get download PACKAGE`` into a scratch directory and ``dpkg-deb -x`` it.
2. ``vmlinux`` is the xz payload of ``boot/vmlinuz-*`` (a bzImage: Linux
   ``Documentation/arch/x86/boot.rst``; the payload begins with the xz stream
   header magic, xz file format 1.0.4 2.1.1.1), checked to be an x86-64 ELF64
   with the PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, Xen ``public/elfnote.h``)
   that a PVH loader such as osvemu's starts it by.
3. ``init`` is ``guests/linuxinit/*.c`` built with ``gcc -static`` (glibc).
4. ``initramfs.cpio.gz`` is a newc cpio (Linux
   ``Documentation/driver-api/early-userspace/buffer-format.rst``) of /dev,
   /proc, /sys, /tmp, /init and the /dev/console node, written here and
   byte-for-byte reproducible: mtime 0, owner 0, inodes in order, gzip mtime 0.

Outputs in OUT: vmlinux, System.map, VERSION (package, kernel release, PVH
entry), init, initramfs.cpio.gz; one line is printed for each.  When VERSION
names the same package the kernel is kept (no download) unless ``--force``;
/init and the initramfs are rebuilt every time, since that costs a second.

Exit status: 0 done; 2 bad usage; 3 download impossible (no apt-get or
dpkg-deb, unknown package, no network); 4 the package's kernel is not what
osvemu boots; 5 /init could not be built or an output not written.  Each
failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import lzma
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BuildError", "CpioEntry", "DownloadError", "FetchError", "ImageError", "build_init", "build_initramfs",
    "decompress_payload", "find_xz_offsets", "initramfs_entries", "main", "newc_archive", "pvh_entry",
]

ROOT = Path(__file__).resolve().parent.parent
INIT_SOURCE = ROOT / "guests" / "linuxinit"
DEFAULT_OUT = ROOT / "build" / "linux"
DEFAULT_PACKAGE = "linux-image-6.1.0-57-amd64-unsigned"

VMLINUX_NAME = "vmlinux"
SYSTEM_MAP_NAME = "System.map"
VERSION_NAME = "VERSION"
INIT_NAME = "init"
INITRAMFS_NAME = "initramfs.cpio.gz"

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DOWNLOAD = 3
EXIT_IMAGE = 4
EXIT_BUILD = 5


class FetchError(Exception):
    """A failure the CLI reports as one line; ``status`` is the exit status."""

    status = EXIT_DOWNLOAD


class DownloadError(FetchError):
    status = EXIT_DOWNLOAD


class ImageError(FetchError):
    status = EXIT_IMAGE


class BuildError(FetchError):
    status = EXIT_BUILD


# --- the bzImage payload and the ELF inside it -------------------------------

#: xz file format 1.0.4, 2.1.1.1: the stream header magic.
XZ_MAGIC = b"\xfd7zXZ\x00"

ELF_MAGIC = b"\x7fELF"
EI_CLASS = 4
ELFCLASS64 = 2
EI_DATA = 5
ELFDATA2LSB = 1
EM_X86_64 = 62
PT_NOTE = 4
#: Xen public/elfnote.h: the 32-bit physical entry point a PVH loader jumps to.
XEN_ELFNOTE_PHYS32_ENTRY = 18
XEN_NOTE_NAME = b"Xen"

#: System V gABI: Elf64_Ehdr, Elf64_Phdr and Elf64_Nhdr, little-endian.
ELF64_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
ELF64_PHDR = struct.Struct("<IIQQQQQQ")
ELF_NOTE_HEADER = struct.Struct("<III")
assert ELF64_HEADER.size == 64 and ELF64_PHDR.size == 56 and ELF_NOTE_HEADER.size == 12
NOTE_ALIGN = 4


def find_xz_offsets(image: bytes) -> Iterator[int]:
    """Every offset in ``image`` where the xz stream magic starts, in order."""
    offset = image.find(XZ_MAGIC)
    while offset >= 0:
        yield offset
        offset = image.find(XZ_MAGIC, offset + 1)


def decompress_payload(image: bytes) -> bytes:
    """The first complete xz stream in ``image``, decompressed.

    A bzImage keeps the compressed kernel after the real-mode setup code,
    inside its decompressor, whose code and data, then the image's CRC32,
    follow the stream: so decompression stops at the end of the stream.  The
    setup header's payload_offset would also find it; searching the magic
    needs no header parsing and skips chance matches that do not decompress."""
    for offset in find_xz_offsets(image):
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            data = decompressor.decompress(image[offset:])
        except lzma.LZMAError:
            continue  # the magic bytes occurred by chance
        if decompressor.eof:
            return data
    raise ImageError("no complete xz stream in the kernel image (is it a bzImage built with CONFIG_KERNEL_XZ?)")


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) & -alignment


def _elf_notes(elf: bytes, start: int, size: int) -> Iterator[tuple[bytes, int, bytes]]:
    """(name, type, desc) of each note in elf[start:start+size] (gABI 5, "Note Section")."""
    offset, end = start, min(start + size, len(elf))
    while offset + ELF_NOTE_HEADER.size <= end:
        namesz, descsz, note_type = ELF_NOTE_HEADER.unpack_from(elf, offset)
        name_at = offset + ELF_NOTE_HEADER.size
        desc_at = name_at + _align(namesz, NOTE_ALIGN)
        if desc_at + descsz > end:
            return
        yield elf[name_at:name_at + namesz].rstrip(b"\0"), note_type, elf[desc_at:desc_at + descsz]
        offset = desc_at + _align(descsz, NOTE_ALIGN)


def _check_elf_header(elf: bytes) -> tuple[int, int, int]:
    """(e_phoff, e_phentsize, e_phnum) of an ELF64 little-endian x86-64 image, else ImageError."""
    if len(elf) < ELF64_HEADER.size or not elf.startswith(ELF_MAGIC):
        raise ImageError("the kernel payload is not an ELF file")
    if elf[EI_CLASS] != ELFCLASS64 or elf[EI_DATA] != ELFDATA2LSB:
        raise ImageError("the kernel payload is not a little-endian ELF64 file")
    fields = ELF64_HEADER.unpack_from(elf)
    machine, phoff, phentsize, phnum = fields[2], fields[5], fields[9], fields[10]
    if machine != EM_X86_64:
        raise ImageError(f"the kernel payload is an ELF for machine {machine}, not x86-64 ({EM_X86_64})")
    if phentsize != ELF64_PHDR.size or phoff + phnum * phentsize > len(elf):
        raise ImageError("the kernel payload's program headers are malformed")
    return phoff, phentsize, phnum


def pvh_entry(elf: bytes) -> int:
    """The PVH entry address of a vmlinux: it must be an x86-64 ELF64 with a
    PT_NOTE holding a "Xen" note of type XEN_ELFNOTE_PHYS32_ENTRY (Linux
    arch/x86/platform/pvh/head.S).  Raises ImageError saying what is wrong."""
    phoff, phentsize, phnum = _check_elf_header(elf)
    for index in range(phnum):
        phdr = ELF64_PHDR.unpack_from(elf, phoff + index * phentsize)
        p_type, p_offset, p_filesz = phdr[0], phdr[2], phdr[5]
        if p_type != PT_NOTE:
            continue
        for name, note_type, desc in _elf_notes(elf, p_offset, p_filesz):
            if name == XEN_NOTE_NAME and note_type == XEN_ELFNOTE_PHYS32_ENTRY and desc:
                return int.from_bytes(desc, "little")
    raise ImageError("the kernel has no PVH entry note (Xen note XEN_ELFNOTE_PHYS32_ENTRY; needs CONFIG_PVH=y)")


# --- the newc cpio archive ---------------------------------------------------

NEWC_MAGIC = b"070701"
NEWC_FIELDS = 13  # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
NEWC_HEADER_SIZE = len(NEWC_MAGIC) + NEWC_FIELDS * 8
NEWC_ALIGN = 4
NEWC_TRAILER = "TRAILER!!!"

S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFCHR = 0o020000
DIR_MODE = S_IFDIR | 0o755
INIT_MODE = S_IFREG | 0o755
#: Documentation/admin-guide/devices.txt: character 5,1 is /dev/console.
CONSOLE_MODE = S_IFCHR | 0o600
CONSOLE_MAJOR, CONSOLE_MINOR = 5, 1


@dataclass(frozen=True)
class CpioEntry:
    """One member: its path without the leading '/', st_mode, contents and, for a device, its number."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def _pad(length: int) -> bytes:
    return b"\0" * (_align(length, NEWC_ALIGN) - length)


def _newc_member(entry: CpioEntry, ino: int) -> bytes:
    """Header, NUL-terminated name padded so header + name is a multiple of 4, data padded to 4."""
    name = entry.name.encode() + b"\0"
    nlink = 2 if entry.mode & S_IFDIR == S_IFDIR else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, entry.rdev_major, entry.rdev_minor,
              len(name), 0)
    header = NEWC_MAGIC + b"".join(b"%08X" % field for field in fields)
    assert len(header) == NEWC_HEADER_SIZE
    return header + name + _pad(NEWC_HEADER_SIZE + len(name)) + entry.data + _pad(len(entry.data))


def newc_archive(entries: Sequence[CpioEntry]) -> bytes:
    """A newc ("070701") cpio of ``entries`` in order, inodes numbered from 1,
    owner 0 and mtime 0, closed by the TRAILER!!! member."""
    members = [_newc_member(entry, ino) for ino, entry in enumerate(entries, start=1)]
    members.append(_newc_member(CpioEntry(NEWC_TRAILER, 0), 0))
    return b"".join(members)


def initramfs_entries(init_binary: bytes) -> list[CpioEntry]:
    """The initramfs: the mount points /init uses, /init itself, and /dev/console,
    which the kernel opens for init before any devtmpfs exists (init/main.c)."""
    return [
        CpioEntry("dev", DIR_MODE),
        CpioEntry("dev/console", CONSOLE_MODE, rdev_major=CONSOLE_MAJOR, rdev_minor=CONSOLE_MINOR),
        CpioEntry("proc", DIR_MODE),
        CpioEntry("sys", DIR_MODE),
        CpioEntry("tmp", DIR_MODE),
        CpioEntry("init", INIT_MODE, init_binary),
    ]


def build_initramfs(init_binary: bytes) -> bytes:
    """The gzip-compressed initramfs, the same bytes for the same /init."""
    return gzip.compress(newc_archive(initramfs_entries(init_binary)), compresslevel=9, mtime=0)


# --- /init ---------------------------------------------------------------------

INIT_CFLAGS = ["-static", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-pthread", "-s",
               "-Wl,--build-id=none", "-fno-ident"]


def _require_tool(name: str, error: type[FetchError], why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise error(f"{name} not found: {why}")
    return path


def _check_static_libc(gcc: str) -> None:
    """gcc answers a bare name when it has no such file on its search path."""
    done = subprocess.run([gcc, "-print-file-name=libc.a"], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not Path(done.stdout.strip()).is_absolute():
        raise BuildError("no static C library (libc.a) for gcc -static: install libc6-dev")


def build_init(source: Path, output: Path) -> Path:
    """Compile every ``*.c`` in ``source`` into the static ELF ``output``."""
    gcc = _require_tool("gcc", BuildError, "it builds /init (install gcc)")
    _check_static_libc(gcc)
    units = sorted(unit.name for unit in source.glob("*.c"))
    if not units:
        raise BuildError(f"no C sources in {source}")
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [gcc, *INIT_CFLAGS, f"-ffile-prefix-map={source.resolve()}={source.name}", "-o",
            str(output.resolve()), *units]
    done = subprocess.run(argv, cwd=source, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        first = (done.stderr or done.stdout).strip().splitlines()[:1]
        raise BuildError(f"gcc failed on {source.name}: {first[0] if first else 'no message'}")
    if not output.read_bytes()[:len(ELF_MAGIC)] == ELF_MAGIC:
        raise BuildError(f"gcc did not produce an ELF file: {output}")
    return output


# --- the Debian package --------------------------------------------------------


def download_package(package: str, directory: Path) -> Path:
    """``apt-get download`` (no root needed) the package into ``directory``; its .deb."""
    apt_get = _require_tool("apt-get", DownloadError, "the kernel comes from a Debian package")
    done = subprocess.run([apt_get, "download", package], cwd=directory, capture_output=True, text=True,
                          check=False)
    debs = sorted(directory.glob("*.deb"))
    if done.returncode != 0 or len(debs) != 1:
        errors = [line for line in done.stderr.splitlines() if line.startswith("E:")] or ["no .deb written"]
        raise DownloadError(f"apt-get download {package} failed: {errors[-1]} (try apt-get update)")
    return debs[0]


def unpack_package(deb: Path, directory: Path) -> Path:
    """``dpkg-deb -x`` the package into ``directory``."""
    dpkg_deb = _require_tool("dpkg-deb", DownloadError, "it unpacks the Debian package")
    done = subprocess.run([dpkg_deb, "-x", str(deb), str(directory)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DownloadError(f"dpkg-deb -x {deb.name} failed: {done.stderr.strip() or done.returncode}")
    return directory


def _single(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise ImageError(f"expected one {pattern} in the package, found {len(found)}")
    return found[0]


#: What Debian's unsigned image ships as System.map: one line pointing at the
#: -dbg package (~860 MB), which has the real one.
SYSTEM_MAP_PLACEHOLDER = b"The real System.map is in"


@dataclass(frozen=True)
class KernelFiles:
    vmlinux: bytes
    system_map: Path
    release: str
    entry: int

    @property
    def system_map_is_placeholder(self) -> bool:
        return SYSTEM_MAP_PLACEHOLDER in self.system_map.read_bytes()[:256]


def kernel_files(unpacked: Path) -> KernelFiles:
    """The vmlinux, System.map and release of an unpacked linux-image package."""
    boot = unpacked / "boot"
    vmlinuz = _single(boot, "vmlinuz-*")
    release = vmlinuz.name.removeprefix("vmlinuz-")
    vmlinux = decompress_payload(vmlinuz.read_bytes())
    return KernelFiles(vmlinux, _single(boot, f"System.map-{release}"), release, pvh_entry(vmlinux))


# --- outputs -------------------------------------------------------------------


def read_version(out: Path) -> dict[str, str]:
    """VERSION's ``key=value`` lines, empty if there is none."""
    path = out / VERSION_NAME
    if not path.is_file():
        return {}
    pairs = (line.partition("=") for line in path.read_text().splitlines())
    return {key: value for key, sep, value in pairs if sep}


def kernel_is_current(out: Path, package: str) -> bool:
    """True when OUT already holds the kernel of ``package`` (VERSION is written last)."""
    complete = all((out / name).is_file() for name in (VMLINUX_NAME, SYSTEM_MAP_NAME))
    return complete and read_version(out).get("package") == package


def _described(path: Path, verb: str) -> str:
    return f"{verb} {path} ({path.stat().st_size} bytes)"


def fetch_kernel(out: Path, package: str) -> list[str]:
    """Download and unpack ``package`` and write vmlinux, System.map and VERSION."""
    with tempfile.TemporaryDirectory(prefix="fetch_linux.") as scratch:
        scratch_dir = Path(scratch)
        deb = download_package(package, scratch_dir)
        files = kernel_files(unpack_package(deb, scratch_dir / "root"))
        (out / VERSION_NAME).unlink(missing_ok=True)  # until the new kernel is all written
        write_atomically(out / VMLINUX_NAME, files.vmlinux)
        if files.system_map_is_placeholder:  # the symbols the kernel carries for /proc/kallsyms
            decoder = kallsyms()
            try:
                decoder.write_system_map(out / VMLINUX_NAME, out / SYSTEM_MAP_NAME)
            except decoder.KallsymsError as error:
                raise ImageError(f"System.map: {error}") from None
            source = "kallsyms"
        else:
            shutil.copyfile(files.system_map, out / SYSTEM_MAP_NAME)
            source = "package"
        (out / VERSION_NAME).write_text(
            f"package={package}\ndeb={deb.name}\nrelease={files.release}\npvh_entry={files.entry:#x}\n"
            f"system_map={source}\n")
    return _kernel_lines(out, package, "wrote")


def _kernel_lines(out: Path, package: str, verb: str) -> list[str]:
    lines = [_described(out / name, verb) for name in (VMLINUX_NAME, SYSTEM_MAP_NAME, VERSION_NAME)]
    if read_version(out).get("system_map") == "kallsyms":
        lines[1] += " [decoded from the kernel's own kallsyms tables: Debian ships a placeholder]"
    return lines


def kallsyms():
    """tools/kallsyms.py, beside this file."""
    spec = importlib.util.spec_from_file_location("kallsyms", Path(__file__).with_name("kallsyms.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kallsyms", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_atomically(path: Path, data: bytes) -> None:
    """Write beside ``path`` and rename over it: a concurrent reader (a boot
    reading the initramfs) sees the old file or the new one, never half."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def fetch(out: Path, package: str, force: bool = False) -> list[str]:
    """Make every output in ``out``; one line per file saying what was done."""
    out.mkdir(parents=True, exist_ok=True)
    if force or not kernel_is_current(out, package):
        lines = fetch_kernel(out, package)
    else:
        lines = _kernel_lines(out, package, "kept")
    init = build_init(INIT_SOURCE, out / INIT_NAME)
    initramfs = out / INITRAMFS_NAME
    write_atomically(initramfs, build_initramfs(init.read_bytes()))
    return [*lines, _described(init, "wrote"), _described(initramfs, "wrote")]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default build/linux)")
    parser.add_argument("--package", default=DEFAULT_PACKAGE, help=f"Debian package (default {DEFAULT_PACKAGE})")
    parser.add_argument("--force", action="store_true", help="download the kernel even if OUT has it")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)  # exits with EXIT_USAGE on bad usage
    try:
        lines = fetch(args.out, args.package, args.force)
    except FetchError as error:
        print(f"fetch_linux: {error}", file=sys.stderr)
        return error.status
    except OSError as error:
        print(f"fetch_linux: {error}", file=sys.stderr)
        return EXIT_BUILD
    print("\n".join(lines))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
