"""tools/kallsyms.py: System.map recovered from a vmlinux's kallsyms tables.

The synthetic images carry tables laid out as Linux 6.1 ``scripts/kallsyms.c``
writes them (``--base-relative --absolute-percpu``), produced by the small
encoder below, inside ELF files from ``elf_builder``.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import kallsyms
import pytest
from elf_builder import LoadSegment, build_elf, pvh_note
from kallsyms import KallsymsError, KernelSymbol, parse_kallsyms

from osvemu.image import load_image

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "kallsyms.py"
REAL_VMLINUX = ROOT / "build" / "linux" / "vmlinux"

#: The x86-64 kernel image mapping (arch/x86/include/asm/page_64_types.h).
START_KERNEL_MAP = 0xFFFFFFFF80000000
TEXT_VADDR, TEXT_PADDR, TEXT_SIZE = 0xFFFFFFFF81000000, 0x1000000, 0x4000
RODATA_VADDR, RODATA_PADDR = 0xFFFFFFFF81200000, 0x1200000
ALIGN = 8
#: Multi-character tokens; every other unused code is an empty token, as when
#: scripts/kallsyms.c runs out of profitable pairs.
EXTRA_TOKENS = (b"Tstart", b"_text", b"pvh_", b"kernel", b"native_", b"msr", b"helper_", b"per", b"cpu")
#: A string array ahead of the tables that starts like the token table's digits (24 bytes).
DECOY = b"".join(bytes((c, 0)) for c in b"0123456789") + b"x\0y\0"
#: Looks like relative_base, num_syms, padding; must be rejected.
FAKE_HEADER = struct.pack("<QII", TEXT_VADDR, 1, 0)
#: Compresses to more than 127 bytes: a two-byte ULEB128 length.
LONG_SYMBOL = KernelSymbol(TEXT_VADDR + 0x3100, "W", "a_very_long_symbol_" + "x" * 150)

SYMBOLS = [
    KernelSymbol(0x0, "A", "fixed_percpu_data"),
    KernelSymbol(0x0, "A", "__per_cpu_start"),
    KernelSymbol(0x40, "A", "cpu_number"),
    KernelSymbol(TEXT_VADDR, "T", "startup_64"),
    KernelSymbol(TEXT_VADDR, "T", "_stext"),
    KernelSymbol(TEXT_VADDR, "T", "_text"),
    KernelSymbol(TEXT_VADDR + 0x100, "t", "native_read_msr"),
    KernelSymbol(TEXT_VADDR + 0x180, "t", "native_write_msr"),
    KernelSymbol(TEXT_VADDR + 0x850, "t", "pvh_start_xen"),
    *(KernelSymbol(TEXT_VADDR + 0x1000 + 8 * n, "t", f"helper_{n}") for n in range(600)),
    KernelSymbol(TEXT_VADDR + 0x3000, "T", "start_kernel"),
    LONG_SYMBOL,
    KernelSymbol(TEXT_VADDR + 0x3200, "d", "__func__.0"),
    KernelSymbol(TEXT_VADDR + TEXT_SIZE, "B", "_end"),
]


@dataclass
class Tables:
    blob: bytes
    labels: dict[str, int]  # kallsyms_* label -> offset in blob


# --- a small kallsyms encoder ---------------------------------------------------------------------------------------

def token_table(names: list[bytes]) -> list[bytes]:
    """Each used character is its own token; EXTRA_TOKENS take the highest free codes (optimize_result)."""
    tokens = [b""] * 256
    for char in set(b"".join(names)):
        tokens[char] = bytes((char,))
    free = [code for code in range(255, -1, -1) if not tokens[code]]
    for code, token in zip(free, EXTRA_TOKENS):
        tokens[code] = token
    return tokens


def compress(name: bytes, tokens: list[bytes]) -> bytes:
    """Greedy longest-token encoding (any encoding the table expands back is valid)."""
    by_length = sorted((t for t in tokens if t), key=len, reverse=True)
    out, pos = bytearray(), 0
    while pos < len(name):
        token = next(t for t in by_length if name.startswith(t, pos))
        out.append(tokens.index(token))
        pos += len(token)
    return bytes(out)


def uleb_length(length: int) -> bytes:
    return bytes((length,)) if length < 0x80 else bytes(((length & 0x7F) | 0x80, length >> 7))


def pad(blob: bytearray) -> None:
    blob.extend(bytes(-len(blob) % ALIGN))


def encode(symbols: list[KernelSymbol], *, seq_width: int = 3) -> Tables:
    """scripts/kallsyms.c write_src(): offsets, relative_base, num_syms, names, markers, [seqs], tokens, index."""
    names = [(s.kind + s.name).encode() for s in symbols]
    tokens = token_table(names)
    base = next(s.address for s in symbols if s.kind != "A")
    blob, labels = bytearray(), {}

    def label(name: str) -> None:
        pad(blob)
        labels[name] = len(blob)

    label("kallsyms_offsets")
    for s in symbols:
        blob += struct.pack("<i", s.address if s.kind == "A" else base - s.address - 1)
    label("kallsyms_relative_base")
    blob += struct.pack("<Q", base)
    label("kallsyms_num_syms")
    blob += struct.pack("<I", len(symbols))
    label("kallsyms_names")
    markers = []
    for number, name in enumerate(names):
        if number % 256 == 0:
            markers.append(len(blob) - labels["kallsyms_names"])
        packed = compress(name, tokens)
        blob += uleb_length(len(packed)) + packed
    label("kallsyms_markers")
    blob += struct.pack(f"<{len(markers)}I", *markers)
    if seq_width:
        label("kallsyms_seqs_of_names")
        order = sorted(range(len(symbols)), key=lambda n: (symbols[n].name, symbols[n].address))
        for number in order:
            blob += number.to_bytes(3, "big") if seq_width == 3 else struct.pack("<I", number)
    label("kallsyms_token_table")
    index = []
    for token in tokens:
        index.append(len(blob) - labels["kallsyms_token_table"])
        blob += token + b"\0"
    label("kallsyms_token_index")
    blob += struct.pack("<256H", *index)
    return Tables(bytes(blob), labels)


# --- images ---------------------------------------------------------------------------------------------------------

RODATA_LEAD = DECOY + FAKE_HEADER  # 40 bytes: the tables start 8-aligned


def rodata(tables: Tables, *, copies: int = 1) -> bytes:
    return RODATA_LEAD + tables.blob * copies + b"trailing rodata\0"


def image(tables: Tables, *, pvh_entry: int | None = None, copies: int = 1, text_pad: int = 4) -> bytes:
    """Text, then .rodata holding the tables; ``text_pad`` makes file offsets disagree with addresses mod 8."""
    entry = TEXT_PADDR + 0x850 if pvh_entry is None else pvh_entry
    contents = bytes(text_pad) + rodata(tables, copies=copies)
    segments = [LoadSegment(TEXT_PADDR, bytes(TEXT_SIZE), vaddr=TEXT_VADDR),
                LoadSegment(RODATA_PADDR, contents, vaddr=RODATA_VADDR - text_pad)]
    return build_elf(segments, pvh_note(entry))


def tables_offset(elf: bytes, tables: Tables, label: str) -> int:
    """File offset of a table in an image() with one copy."""
    return elf.index(RODATA_LEAD) + len(RODATA_LEAD) + tables.labels[label]


SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")
SHT_PROGBITS, SHT_STRTAB, SHF_ALLOC = 1, 3, 2
E_SHOFF_AT, E_SHENTSIZE_AT = 0x28, 0x3A


def with_rodata_section(elf: bytes, offset: int, vaddr: int, size: int) -> bytes:
    """Append section headers (null, .rodata, .shstrtab) to an elf_builder image (gABI ch. 4 "Sections")."""
    names = b"\0.rodata\0.shstrtab\0"
    strtab_at = len(elf)
    headers_at = strtab_at + len(names) + (-(strtab_at + len(names)) % 8)
    headers = (bytes(SECTION_HEADER.size)
               + SECTION_HEADER.pack(1, SHT_PROGBITS, SHF_ALLOC, vaddr, offset, size, 0, 0, 64, 0)
               + SECTION_HEADER.pack(9, SHT_STRTAB, 0, 0, strtab_at, len(names), 0, 0, 1, 0))
    out = bytearray(elf + names + bytes(headers_at - strtab_at - len(names)) + headers)
    struct.pack_into("<Q", out, E_SHOFF_AT, headers_at)
    struct.pack_into("<HHH", out, E_SHENTSIZE_AT, SECTION_HEADER.size, 3, 2)
    return bytes(out)


@pytest.fixture(scope="module")
def tables() -> Tables:
    return encode(SYMBOLS)


@pytest.fixture(scope="module")
def elf(tables) -> bytes:
    return image(tables)


# --- decoding -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seq_width", [0, 3, 4], ids=["6.1", "seqs-u8x3", "seqs-u32"])
def test_recovers_every_symbol(seq_width):
    result = parse_kallsyms(image(encode(SYMBOLS, seq_width=seq_width)))
    assert list(result.symbols) == SYMBOLS
    assert result.relative_base == TEXT_VADDR
    assert ("kallsyms_seqs_of_names" in result.tables) == bool(seq_width)


def test_big_symbol_uses_two_byte_length(tables):
    names = [(s.kind + s.name).encode() for s in SYMBOLS]
    assert len(compress((LONG_SYMBOL.kind + LONG_SYMBOL.name).encode(), token_table(names))) > 0x7F
    assert LONG_SYMBOL in parse_kallsyms(image(tables)).symbols


def test_table_addresses(tables, elf):
    found = parse_kallsyms(elf).tables
    rodata_tables = RODATA_VADDR + len(RODATA_LEAD)
    assert found == {label: rodata_tables + offset for label, offset in tables.labels.items()}


def test_aligned_by_address_not_file_offset(tables):
    for text_pad in (0, 4):
        assert len(parse_kallsyms(image(tables, text_pad=text_pad))) == len(SYMBOLS)


def test_system_map_format(elf):
    text = kallsyms.format_system_map(parse_kallsyms(elf).symbols)
    lines = text.splitlines()
    assert lines[0] == "0000000000000000 A fixed_percpu_data"
    assert "ffffffff81000850 t pvh_start_xen" in lines
    assert "ffffffff81003000 T start_kernel" in lines
    addresses = [int(line.split()[0], 16) for line in lines]
    assert addresses == sorted(addresses) and len(lines) == len(SYMBOLS) and text.endswith("\n")


def test_rodata_section_restricts_the_search(tables, elf):
    lead = elf.index(RODATA_LEAD)
    size = len(rodata(tables))
    assert len(parse_kallsyms(with_rodata_section(elf, lead, RODATA_VADDR, size))) == len(SYMBOLS)
    with pytest.raises(KallsymsError, match=r"no kallsyms token table in \.rodata"):
        parse_kallsyms(with_rodata_section(elf, 0x1000, TEXT_VADDR + 0x1000, 0x100))


# --- refusing bad tables --------------------------------------------------------------------------------------------

def corrupt(elf: bytes, at: int, value: bytes) -> bytes:
    return elf[:at] + value + elf[at + len(value):]


def test_not_elf():
    with pytest.raises(KallsymsError, match="not an ELF file"):
        parse_kallsyms(b"MZ" + bytes(100))


def test_truncated_elf(elf):
    with pytest.raises(KallsymsError, match="malformed ELF"):
        parse_kallsyms(elf[:200])


def test_no_kallsyms():
    plain = build_elf([LoadSegment(TEXT_PADDR, bytes(TEXT_SIZE), vaddr=TEXT_VADDR)])
    with pytest.raises(KallsymsError, match="no kallsyms token table in the PT_LOAD segments"):
        parse_kallsyms(plain)


def test_token_index_out_of_step(tables, elf):
    at = tables_offset(elf, tables, "kallsyms_token_index") + 2 * 0x41
    with pytest.raises(KallsymsError, match="no kallsyms token table"):
        parse_kallsyms(corrupt(elf, at, b"\xff\x00"))


@pytest.mark.parametrize(("label", "delta", "value", "reason"), [
    ("kallsyms_num_syms", 0, struct.pack("<I", len(SYMBOLS) + 1), "no consistent"),
    ("kallsyms_num_syms", 0, struct.pack("<I", len(SYMBOLS) - 1), "no consistent"),
    ("kallsyms_names", 0, b"\x7f", "no consistent"),
    ("kallsyms_names", 0, b"\x01", "symbol 2 has compressed length"),
    ("kallsyms_markers", 4, struct.pack("<I", 0x1234), "kallsyms_markers"),
    ("kallsyms_markers", 0, struct.pack("<I", 8), r"kallsyms_markers\[0\]"),
    ("kallsyms_names", 2, b"x", "kallsyms_seqs_of_names order"),
    ("kallsyms_seqs_of_names", 0, b"\x00\x00\x00", "permutation"),
    ("kallsyms_offsets", 4 * 4, struct.pack("<i", -0x20000), "ascending"),
    ("kallsyms_offsets", 4 * 3, struct.pack("<i", -2), "-1"),
    ("kallsyms_relative_base", 0, struct.pack("<Q", 0xFFFFFFFFC0000000), "no consistent"),
], ids=["num_syms+1", "num_syms-1", "name-length", "name-shift", "marker", "marker0", "name-token", "seqs", "order",
        "base-offset", "base"])
def test_inconsistent_tables(tables, elf, label, delta, value, reason):
    at = tables_offset(elf, tables, label) + delta
    with pytest.raises(KallsymsError, match=reason):
        parse_kallsyms(corrupt(elf, at, value))


def test_pvh_entry_must_match(tables):
    with pytest.raises(KallsymsError, match="pvh_start_xen at 0xffffffff81000850 is not at the PVH entry 0x1000860"):
        parse_kallsyms(image(tables, pvh_entry=TEXT_PADDR + 0x860))


def test_two_tables_are_ambiguous(tables):
    with pytest.raises(KallsymsError, match="refusing to guess"):
        parse_kallsyms(image(tables, copies=2))


# --- entry points ---------------------------------------------------------------------------------------------------

def test_write_system_map(tmp_path, elf):
    vmlinux, out = tmp_path / "vmlinux", tmp_path / "System.map"
    vmlinux.write_bytes(elf)
    assert kallsyms.write_system_map(vmlinux, out) == len(SYMBOLS)
    assert out.read_text() == kallsyms.format_system_map(SYMBOLS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["System.map", "vmlinux"]


def test_write_system_map_leaves_nothing_on_error(tmp_path):
    vmlinux, out = tmp_path / "vmlinux", tmp_path / "System.map"
    vmlinux.write_bytes(b"not a kernel")
    with pytest.raises(KallsymsError):
        kallsyms.write_system_map(vmlinux, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vmlinux"]


def test_cli_prints_map_and_count(tmp_path, elf, capsys):
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(elf)
    assert kallsyms.main([str(vmlinux)]) == 0
    captured = capsys.readouterr()
    assert captured.out == kallsyms.format_system_map(SYMBOLS)
    assert f"{len(SYMBOLS)} symbols" in captured.err


def test_cli_output_file_and_tables(tmp_path, tables, elf, capsys):
    vmlinux, out = tmp_path / "vmlinux", tmp_path / "System.map"
    vmlinux.write_bytes(elf)
    assert kallsyms.main([str(vmlinux), "-o", str(out), "-v"]) == 0
    assert out.read_text() == kallsyms.format_system_map(SYMBOLS)
    token_table_at = RODATA_VADDR + len(RODATA_LEAD) + tables.labels["kallsyms_token_table"]
    assert f"kallsyms_token_table at {token_table_at:#x}" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "words"), [
    (None, "cannot read"),
    (b"\x7fELF" + bytes(8), "malformed ELF"),
    (b"plain text", "not an ELF file"),
])
def test_cli_one_line_error(tmp_path, content, words):
    path = tmp_path / "vmlinux"
    if content is not None:
        path.write_bytes(content)
    run = subprocess.run([sys.executable, str(TOOL), str(path)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 2, run.stderr
    assert run.stdout == "" and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], run.stderr


# --- the real Debian kernel, when tools/fetch_linux.py has fetched it -----------------------------------------------

@pytest.fixture(scope="module")
def real_symbols() -> dict[str, KernelSymbol]:
    if not REAL_VMLINUX.exists():
        pytest.skip(f"{REAL_VMLINUX.relative_to(ROOT)} not present (run tools/fetch_linux.py)")
    return {s.name: s for s in reversed(kallsyms.load_kallsyms(REAL_VMLINUX).symbols)}


def test_real_kernel_symbols(real_symbols):
    kernel = load_image(REAL_VMLINUX)
    text = real_symbols["_text"].address
    assert text == min(segment.vaddr for segment in kernel.segments if segment.vaddr)
    assert real_symbols["startup_64"].address == real_symbols["_stext"].address == text
    assert real_symbols["fixed_percpu_data"] == KernelSymbol(0, "A", "fixed_percpu_data")
    assert real_symbols["start_kernel"].kind == "T"
    assert real_symbols["native_read_msr"].address < real_symbols["native_write_msr"].address
    assert real_symbols["pvh_start_xen"].address == kernel.entry32 + START_KERNEL_MAP
    assert len(real_symbols) > 50_000
