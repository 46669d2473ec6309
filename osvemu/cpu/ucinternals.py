"""CPU state that Unicorn 2.1 keeps but its API does not expose.

osvemu needs these pieces of QEMU's and Unicorn's internal state, which
Unicorn 2.1.4's public API (``include/unicorn/unicorn.h``) leaves out:

* ``uc_struct.emu_counter``: how many instructions a counted ``emu_start``
  really retired.  A slice that ends early (HLT, exit port, fault) would
  otherwise have an unknown length, and per-core instruction counts -- the
  basis of virtual time -- would not be exact.
* ``CPUX86State.error_code``: the error code QEMU computed for the exception
  it is raising (Intel SDM Vol. 3A 6.13).  UC_HOOK_INTR passes only the vector.
* ``CPUX86State.hflags`` (its CPL bits): QEMU takes the current privilege
  level from the hidden flags, which only its own interrupt delivery, far
  transfers and IRET update.  Register writes cannot lower CPL 3 to 0, so a
  privilege-changing delivery (SDM Vol. 3A 6.12.1) sets it here.
* ``CPUX86State.old_exception``: QEMU's record of the exception being
  delivered, used to escalate a second contributory fault to #DF (SDM Vol. 3A
  6.15, Table 6-5).  QEMU clears it once delivery succeeds, but Unicorn hands
  delivery to the hook and never clears it, so without a reset every second
  #GP/#DE/#PF of a run would arrive as a double fault.
* ``uc_struct.emu_count``: the limit of the running counted slice.  Lowering
  it to the current count from inside a hook ends the slice after the current
  instruction.  ``emu_stop`` from an MMIO callback instead abandons the
  instruction after its access took effect, so the store runs again on resume.
* ``CPUState.halted``: set when the last slice ended at HLT.  ``emu_start``
  returns after HLT as after any stop, so without it a slice that ends at
  HLT could not be told from one that ran out or was stopped.
* ``CPUX86State.segs``: the segment caches.  In a 64-bit Unicorn instance a
  segment register write sets only the selector, so a real-mode segment load
  (interrupt delivery through the IVT, a STARTUP IPI) sets the hidden base
  ``selector << 4`` here (Intel SDM Vol. 3A 20.1.1).
* ``CPUX86State.vm_vmcb`` and ``.intercept``, with the ``HF_GUEST`` bit of
  ``hflags``: QEMU's model of AMD SVM's intercepts (AMD APM Vol. 2 15.9-15.11).
  Unicorn 2.1.4 cannot hook RDMSR or WRMSR (``uc_hook_add`` in ``uc.c``
  accepts neither), and a hook at each site misses code written at run time.
  With these set, every RDMSR/WRMSR (through an MSR permission map whose bits
  are all set) ends in an intercept: QEMU's
  ``cpu_vmexit`` (``qemu/target/i386/svm_helper.c``) rewinds to the
  instruction and raises ``EXCP_VMEXIT + exit code``, which Unicorn hands to
  the UC_HOOK_INTR hook like any exception (:class:`Intercepts`).
* ``CPUX86State.exception_is_int``: set by an ``int n`` and never cleared by
  Unicorn, which then moves RIP to the stale ``exception_next_eip`` at the
  next exception it reports (``cpu_handle_exception``, ``qemu/accel/tcg/
  cpu-exec.c``) -- an intercept included.

Fields next to each other in ``CPUX86State`` (``qemu/target/i386/cpu.h``:
``error_code``, ``exception_is_int``, ..., ``old_exception``, ``vm_vmcb``,
``tsc_offset``, ``intercept``) are reached from the two located ones, and a
probe checks the result.  The state is read and written in place, through
the CPU's ``env`` (``uc_context_save`` copies ``env`` from its start, so
offsets in a saved context are offsets in ``env``).

The offsets are not hard-coded: :func:`locate` finds them once per process by
running small probes whose outcome is known, and fails loudly if the installed
Unicorn does not behave as expected.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from unicorn import (
    UC_ARCH_X86,
    UC_ERR_OK,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_MODE_16,
    UC_MODE_64,
    Uc,
    UcError,
)
from unicorn.unicorn_py3 import unicorn as _binding
from unicorn.x86_const import (
    UC_X86_REG_ES,
    UC_X86_REG_GDTR,
    UC_X86_REG_RAX,
    UC_X86_REG_RBX,
    UC_X86_REG_RCX,
    UC_X86_REG_RDX,
    UC_X86_REG_RIP,
)

from osvemu.cpu import x86
from osvemu.cpu.blockcounter import check_block_counting
from osvemu.cpu.registers import RegisterAccess
from osvemu.errors import EmulatorError

_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_PROBE_BASE = 0x1000
_PROBE_COUNT = 0x7654321  # an unlikely value to find beside the counter
_PROBE_SELECTOR = 0x1238  # a GDT selector beyond the probe GDT's limit
_PROBE_SEGMENT = 0x1357  # a real-mode segment: base 0x13570
#: QEMU's SegmentCache: selector u32, (pad), base u64, limit u32, flags u32.
SEGMENT_CACHE = struct.Struct("<IxxxxQII")
#: QEMU's segment register order in CPUX86State.segs.
SEGMENT_INDEX = {"es": 0, "cs": 1, "ss": 2, "ds": 3, "fs": 4, "gs": 5}
REAL_MODE_LIMIT = 0xFFFF
_PROBE_INTERCEPT_PAGES = 0x8000


@dataclass(frozen=True)
class UnicornInternals:
    counter_offset: int  # of uc_struct.emu_counter, from the handle
    error_code_offset: int  # of CPUX86State.error_code, in a saved context
    old_exception_offset: int  # of CPUX86State.old_exception, in a saved context
    hflags_offset: int  # of CPUX86State.hflags (CPL in bits 1:0), in a saved context
    segments_offset: int  # of CPUX86State.segs[R_ES], in a saved context
    cpu_pointer_offset: int  # of uc_struct.cpu (the CPUState), from the handle
    halted_offset: int  # of CPUState.halted, from the CPUState
    env_offset: int  # of X86CPU.env (CPUX86State), from the CPUState
    context_header: int  # bytes before the saved env in a saved context (struct uc_context)


#: CPUX86State, from qemu/target/i386/cpu.h of Unicorn 2.1.4: after ``int
#: error_code`` comes ``int exception_is_int``; after ``int old_exception``
#: (and 4 bytes of padding) ``uint64_t vm_vmcb``, ``tsc_offset``, ``intercept``.
EXCEPTION_IS_INT_AFTER_ERROR_CODE = 4
OLD_EXCEPTION_AFTER_ERROR_CODE = 112
VM_VMCB_AFTER_OLD_EXCEPTION = 8
INTERCEPT_AFTER_OLD_EXCEPTION = 24
#: ``uint16_t intercept_cr_write``, after ``intercept`` and ``intercept_cr_read``.
INTERCEPT_CR_WRITE_AFTER_OLD_EXCEPTION = INTERCEPT_AFTER_OLD_EXCEPTION + 8 + 2
#: hflags bits (qemu/target/i386/cpu.h): HF_CPL 1:0, HF_CS32 4, HF_SS32 5,
#: HF_CS64 15, HF_GUEST 21 (SVM intercepts are active).
HF_CPL_MASK = 3
HF_CS32 = 1 << 4
HF_SS32 = 1 << 5
HF_CS64 = 1 << 15
HF_GUEST = 1 << 21
#: QEMU raises an intercept as exception EXCP_VMEXIT + exit code.
EXCP_VMEXIT = 0x100
#: SVM exit codes (AMD APM Vol. 2 Appendix C); intercept bit = code - 0x60.
SVM_EXIT_INTR = 0x60
SVM_EXIT_RDTSC = 0x6E
SVM_EXIT_MSR = 0x7C
SVM_EXIT_SHUTDOWN = 0x7F
#: Writes of CR0..CR15 exit with codes 0x10..0x1F (AMD APM Vol. 2 Appendix C).
SVM_EXIT_WRITE_CR0 = 0x10
#: The control registers whose writes are checked (:mod:`osvemu.cpu.control`): CR0 and CR4.
INTERCEPTED_CR_WRITES = (1 << 0) | (1 << 4)
#: The VMCB control area's MSRPM_BASE_PA field (AMD APM Vol. 2 Table B-1).
VMCB_MSRPM_BASE_PA = 0x48
VMCB_SIZE = 0x1000
#: The MSR permission map: 2 bits per MSR for three ranges, 6 KiB used of
#: 8 KiB (AMD APM Vol. 2 15.11).
MSRPM_SIZE = 0x2000


def _probe_instance(code: bytes) -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_tcg_buffer_size(4 << 20)
    uc.mem_map(0, 0x10000)
    uc.mem_write(_PROBE_BASE, code)
    return uc


def _locate_counter() -> int:
    # mov ecx, 3; dec ecx; jnz -4; hlt  -> 1 + 3*2 + 1 = 8 instructions retired
    uc = _probe_instance(bytes.fromhex("b903000000" "ffc9" "75fc" "f4"))
    uc.emu_start(_PROBE_BASE, 0xFFFF, count=_PROBE_COUNT)
    raw = ctypes.string_at(uc._uch.value, 0x4000)
    for offset in range(0, len(raw) - 16, 8):
        if _U64.unpack_from(raw, offset + 8)[0] == _PROBE_COUNT and _U64.unpack_from(raw, offset)[0] == 8:
            return offset
    raise EmulatorError("cannot locate Unicorn's instruction counter: unsupported Unicorn version")


def _context_bytes(uc: Uc) -> bytes:
    return bytes(uc.context_save())


def _locate_cpu_fields() -> tuple[int, int]:
    # div rbx (rbx = 0) raises #DE, which sets old_exception 0; then
    # mov ds, ax with a selector past the GDT limit raises #GP(selector).
    uc = _probe_instance(bytes.fromhex("48f7f3" "8ed8" "f4"))
    uc.reg_write(UC_X86_REG_GDTR, (0, 0x8000, 0xF, 0))
    uc.reg_write(UC_X86_REG_RBX, 0)
    uc.reg_write(UC_X86_REG_RAX, _PROBE_SELECTOR)
    snapshots: list[bytes] = [_context_bytes(uc)]
    vectors: list[int] = []

    def on_interrupt(uc: Uc, vector: int, _data: object) -> None:
        vectors.append(vector)
        snapshots.append(_context_bytes(uc))
        uc.reg_write(UC_X86_REG_RIP, _PROBE_BASE + 3 if len(vectors) == 1 else _PROBE_BASE + 5)
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_interrupt)
    uc.emu_start(_PROBE_BASE, 0xFFFF, count=10)
    uc.emu_start(_PROBE_BASE + 3, 0xFFFF, count=10)
    if vectors != [0, 8]:
        raise EmulatorError(f"Unicorn probe raised vectors {vectors}, expected [0, 8]: unsupported Unicorn version")
    before, after_de = snapshots[0], snapshots[1]
    old = [o for o in range(0, len(before) - 4, 4)
           if _I32.unpack_from(before, o)[0] == -1 and _I32.unpack_from(after_de, o)[0] == 0]
    # The second fault escalated to #DF (error code 0) precisely because
    # old_exception was left set; repeat it with old_exception cleared.
    if len(old) != 1:
        raise EmulatorError("cannot locate Unicorn's pending-exception field: unsupported Unicorn version")
    old_exception_offset = old[0]
    uc2 = _probe_instance(bytes.fromhex("8ed8" "f4"))
    uc2.reg_write(UC_X86_REG_GDTR, (0, 0x8000, 0xF, 0))
    uc2.reg_write(UC_X86_REG_RAX, _PROBE_SELECTOR)
    base = _context_bytes(uc2)
    seen: list[bytes] = []

    def on_gp(uc: Uc, vector: int, _data: object) -> None:
        seen.append(_context_bytes(uc))
        uc.emu_stop()

    uc2.hook_add(UC_HOOK_INTR, on_gp)
    try:
        uc2.emu_start(_PROBE_BASE, 0xFFFF, count=5)
    except UcError:
        pass
    err = [o for o in range(0, len(base) - 4, 4)
           if seen and _I32.unpack_from(seen[0], o)[0] == _PROBE_SELECTOR and _I32.unpack_from(base, o)[0] == 0]
    if not err:
        raise EmulatorError("cannot locate Unicorn's exception error code: unsupported Unicorn version")
    return err[0], old_exception_offset


def _locate_hflags() -> int:
    """Drop from CPL 0 to CPL 3 with IRETQ and find the field whose low two
    bits changed from 0 to 3 and nothing else."""
    # GDT: null, 64-bit code DPL 0 (0x08), data (0x10), 64-bit code DPL 3 (0x18), data DPL 3 (0x20)
    gdt = struct.pack("<5Q", 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF, 0x00AFFA000000FFFF, 0x00CFF2000000FFFF)
    # mov rsp, 0x8000; push 0x23; push 0x7000; push 2; push 0x1b; push 0x1030; iretq
    code = bytes.fromhex("48c7c400800000" "6a23" "6800700000" "6a02" "6a1b" "6830100000" "48cf")
    uc = _probe_instance(code.ljust(0x30, b"\x90") + b"\x90\xf4")
    uc.mem_write(0x8000 - 0x1000, gdt)
    uc.reg_write(UC_X86_REG_GDTR, (0, 0x7000, len(gdt) - 1, 0))
    before = _context_bytes(uc)
    uc.emu_start(_PROBE_BASE, 0xFFFF, count=7)
    after = _context_bytes(uc)
    hits = [o for o in range(0, len(before) - 4, 4)
            if _I32.unpack_from(before, o)[0] & 3 == 0 and _I32.unpack_from(before, o)[0] ^ _I32.unpack_from(after, o)[0] == 3]
    if len(hits) != 1:
        raise EmulatorError("cannot locate Unicorn's hidden CPU flags: unsupported Unicorn version")
    return hits[0]


def _locate_segments() -> int:
    """A 16-bit instance loads ES in real mode (base = selector << 4); find
    that selector/base pair in the saved context."""
    uc = Uc(UC_ARCH_X86, UC_MODE_16)
    uc.reg_write(UC_X86_REG_ES, _PROBE_SEGMENT)
    raw = _context_bytes(uc)
    for offset in range(0, len(raw) - SEGMENT_CACHE.size, 4):
        selector, base, _, _ = SEGMENT_CACHE.unpack_from(raw, offset)
        if selector == _PROBE_SEGMENT and base == _PROBE_SEGMENT << 4:
            return offset
    raise EmulatorError("cannot locate Unicorn's segment caches: unsupported Unicorn version")


def _readable_ranges() -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            addresses, permissions = line.split()[:2]
            if permissions.startswith("r"):
                low, high = (int(x, 16) for x in addresses.split("-"))
                ranges.append((low, high))
    return ranges


def _halted_candidates() -> set[tuple[int, int]]:
    """(uc_struct offset of a pointer, offset of a word in the object it
    points to) pairs where the word follows HLT exactly: 1 after a slice that
    ended at HLT, 0 after slices that ended by count or with emu_stop."""
    # nop; hlt; nop; nop; nop; hlt
    uc = _probe_instance(bytes.fromhex("90" "f4" "90" "90" "90" "f4"))
    markers = [0x5A5A000000000000 + i * 0x1111 for i in range(4)]
    for register, value in zip((UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX), markers):
        uc.reg_write(register, value)
    pattern = b"".join(_U64.pack(value) for value in markers)
    ranges = _readable_ranges()
    window = 0x20000
    handle = ctypes.string_at(uc._uch.value, 0x800)
    objects = []
    for pointer_offset in range(0, len(handle), 8):
        pointer = _U64.unpack_from(handle, pointer_offset)[0]
        if not any(low <= pointer and pointer + window <= high for low, high in ranges):
            continue
        env = ctypes.string_at(pointer, window).find(pattern)
        if env > 0:
            objects.append((pointer_offset, pointer, env))
    steps = [(_PROBE_BASE, 5, 1), (_PROBE_BASE + 2, 1, 0), (_PROBE_BASE + 3, 5, 1), (_PROBE_BASE + 3, 1, 0)]
    expected = [expect for _, _, expect in steps]
    seen: dict[tuple[int, int], list[int]] = {}
    for begin, count, _ in steps:
        uc.emu_start(begin, 0xFFFF, 0, count)
        for pointer_offset, pointer, env in objects:
            raw = ctypes.string_at(pointer, env)
            for offset in range(0, env, 4):
                seen.setdefault((pointer_offset, offset), []).append(_I32.unpack_from(raw, offset)[0])
    return {key for key, values in seen.items() if values == expected}


def _locate_halted() -> tuple[int, int]:
    """Find uc_struct's CPUState pointer and CPUState.halted: the candidates
    two independent probe instances agree on (a structure offset is the same
    in every instance; a coincidence in one heap layout is not).

    The search reads the heap around every pointer in the handle and takes
    40 ms to most of a second, depending on the heap's layout, so its result
    is kept per libunicorn file (:func:`_halted_cache`) and, when found
    there, only confirmed: the flag must follow HLT in a fresh probe."""
    cache_file = _halted_cache()
    try:
        cached = tuple(json.loads(cache_file.read_text())) if cache_file else None
    except (OSError, ValueError, TypeError):
        cached = None
    if cached is not None and len(cached) == 2 and all(isinstance(x, int) and 0 <= x < 1 << 20 for x in cached) \
            and _halted_flag_follows_hlt(*cached):
        return cached
    common = _halted_candidates() & _halted_candidates()
    if not common:
        raise EmulatorError("cannot locate Unicorn's halted flag: unsupported Unicorn version")
    found = min(common)
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(found))
        except OSError:
            pass  # no cache: the next start searches again
    return found


def _halted_cache() -> Path | None:
    """Where the halted flag's place is kept for this libunicorn file (its
    path, size and modification time name it), in the user's cache directory."""
    try:
        library = Path(_binding.uclib._name).resolve()
        status = library.stat()
    except OSError:
        return None
    key = f"{zlib.crc32(str(library).encode()):08x}-{status.st_size}-{status.st_mtime_ns}"
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "osvemu" / f"unicorn-halted-{key}.json"


def _halted_flag_follows_hlt(cpu_pointer_offset: int, halted_offset: int) -> bool:
    """Whether the word at this place reads 1 after a slice that ended at
    HLT and 0 after slices that ended by count (the probe of
    :func:`_halted_candidates`, on that one word)."""
    uc = _probe_instance(bytes.fromhex("90" "f4" "90" "90" "90" "f4"))
    uc.context_save()  # Unicorn creates the CPU lazily
    cpu = ctypes.c_uint64.from_address(uc._uch.value + cpu_pointer_offset).value
    if not cpu or not any(low <= cpu + halted_offset and cpu + halted_offset + 4 <= high
                          for low, high in _readable_ranges()):
        return False
    flag = ctypes.c_int32.from_address(cpu + halted_offset)
    seen = []
    for begin, count in ((_PROBE_BASE, 5), (_PROBE_BASE + 2, 1), (_PROBE_BASE + 3, 5), (_PROBE_BASE + 3, 1)):
        uc.emu_start(begin, 0xFFFF, 0, count)
        seen.append(flag.value)
    return seen == [1, 0, 1, 0]


def _locate_env(cpu_pointer_offset: int) -> tuple[int, int]:
    """Find CPUX86State from the CPUState: it starts with the general
    registers, so the four marker values written to RAX, RCX, RDX and RBX
    appear there in that order.  Also where a saved context's copy of it
    starts (``struct uc_context`` has a header before its data)."""
    uc = _probe_instance(b"\xf4")
    uc.context_save()  # Unicorn creates the CPU lazily
    cpu = ctypes.c_uint64.from_address(uc._uch.value + cpu_pointer_offset).value
    markers = [0x5A5A000000000000 + i * 0x1111 for i in range(4)]
    for register, value in zip((UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX), markers):
        uc.reg_write(register, value)
    offset = ctypes.string_at(cpu, 0x20000).find(b"".join(_U64.pack(value) for value in markers))
    if offset <= 0 or offset % 8:
        raise EmulatorError("cannot locate Unicorn's CPU state: unsupported Unicorn version")
    header = _context_bytes(uc).find(ctypes.string_at(cpu + offset, 256))
    if header < 0:
        raise EmulatorError("cannot locate the CPU state in a saved context: unsupported Unicorn version")
    return offset, header


@cache
def locate() -> UnicornInternals:
    """Find the offsets once per process (a few milliseconds, once the
    halted flag's place is known for this libunicorn)."""
    error_code, old_exception = _locate_cpu_fields()
    if old_exception - error_code != OLD_EXCEPTION_AFTER_ERROR_CODE:
        raise EmulatorError("Unicorn's exception fields are not laid out as in 2.1.4: unsupported Unicorn version")
    cpu_pointer, halted = _locate_halted()
    internals = UnicornInternals(_locate_counter(), error_code, old_exception, _locate_hflags(), _locate_segments(),
                                 cpu_pointer, halted, *_locate_env(cpu_pointer))
    _check_intercepts(internals)
    check_block_counting()
    return internals


def _check_intercepts(internals: UnicornInternals) -> None:
    """RDMSR and WRMSR, intercepted, raise the exits expected, with RIP at
    each instruction; and an ``int3`` sets exception_is_int."""
    # int3; rdmsr; wrmsr; hlt
    code = bytes.fromhex("cc" "0f32" "0f30" "f4")
    uc = _probe_instance(code)
    core = CoreInternals(uc, internals)
    core.arm_intercepts(_PROBE_INTERCEPT_PAGES)
    seen: list[tuple[int, int, int, int]] = []

    def on_interrupt(uc: Uc, vector: int, _data: object) -> None:
        rip = uc.reg_read(UC_X86_REG_RIP)
        seen.append((vector, core.error_code(), rip, core.exception_is_int()))
        core.clear_exception_record()
        if vector >= EXCP_VMEXIT:
            uc.reg_write(UC_X86_REG_RIP, rip + 2)

    uc.hook_add(UC_HOOK_INTR, on_interrupt)
    uc.emu_start(_PROBE_BASE, 0xFFFF, count=20)
    msr = EXCP_VMEXIT + SVM_EXIT_MSR
    expected = [(3, 0, _PROBE_BASE + 1, 1), (msr, 0, _PROBE_BASE + 1, 0), (msr, 1, _PROBE_BASE + 3, 0)]
    if seen != expected:
        raise EmulatorError(f"Unicorn's SVM intercepts do not behave as expected ({seen}): unsupported Unicorn version")


class CoreInternals:
    """Accessors for one Unicorn instance's hidden state, read and written
    in place in its CPU's ``env``."""

    def __init__(self, uc: Uc, internals: UnicornInternals | None = None) -> None:
        self._internals = internals or locate()
        self._counter = ctypes.c_uint64.from_address(uc._uch.value + self._internals.counter_offset)
        self._limit = ctypes.c_uint64.from_address(uc._uch.value + self._internals.counter_offset + 8)
        self._uc = uc
        self._register_access = RegisterAccess(uc)
        # Unicorn creates the CPU lazily, on the first call that needs it
        # (context_save is one): read the CPUState pointer only after that.
        uc.context_save()
        cpu = ctypes.c_uint64.from_address(uc._uch.value + self._internals.cpu_pointer_offset).value
        if not cpu:
            raise EmulatorError("Unicorn has no CPU after context_save: unsupported Unicorn version")
        self._halted = ctypes.c_uint32.from_address(cpu + self._internals.halted_offset)
        env = cpu + self._internals.env_offset - self._internals.context_header  # context offsets -> env
        self._hflags = ctypes.c_uint32.from_address(env + self._internals.hflags_offset)
        self._segments = env + self._internals.segments_offset
        self._error_code = ctypes.c_int32.from_address(env + self._internals.error_code_offset)
        self._exception_is_int = ctypes.c_int32.from_address(
            env + self._internals.error_code_offset + EXCEPTION_IS_INT_AFTER_ERROR_CODE)
        old_exception = env + self._internals.old_exception_offset
        self._old_exception = ctypes.c_int32.from_address(old_exception)
        self._vm_vmcb = ctypes.c_uint64.from_address(old_exception + VM_VMCB_AFTER_OLD_EXCEPTION)
        self._intercept = ctypes.c_uint64.from_address(old_exception + INTERCEPT_AFTER_OLD_EXCEPTION)
        self._intercept_cr_write = ctypes.c_uint16.from_address(old_exception + INTERCEPT_CR_WRITE_AFTER_OLD_EXCEPTION)
        self._vmcb: int | None = None
        # CPUX86State starts with regs[CPU_NB_REGS] in QEMU's order: RAX, RCX, RDX, RBX, ...
        registers = self._registers = env + self._internals.context_header
        self._rax = ctypes.c_uint64.from_address(registers)
        self._rcx = ctypes.c_uint64.from_address(registers + 8)
        self._rdx = ctypes.c_uint64.from_address(registers + 16)

    def retired(self) -> int:
        """Instructions retired by the last counted ``emu_start``.

        Unicorn increments the counter before each instruction and stops once
        it exceeds the limit, so a slice that ran out reads ``limit + 1``.
        """
        return min(self._counter.value, self._limit.value)

    def halted(self) -> bool:
        """Whether the last slice ended at HLT."""
        return bool(self._halted.value)

    def end_slice_here(self) -> None:
        """From inside a hook of a counted slice: stop before the next
        instruction, with this one complete and counted."""
        self._limit.value = self._counter.value

    @property
    def counter_address(self) -> int:
        """Where ``uc_struct.emu_counter`` is (read by osvemu's native RDTSC)."""
        return ctypes.addressof(self._counter)

    @property
    def hflags_address(self) -> int:
        """Where QEMU's hidden flags are (osvemu's native delivery clears
        HF_GUEST around its EFER read, as :meth:`msr_read` does)."""
        return ctypes.addressof(self._hflags)

    @property
    def edx_eax_addresses(self) -> tuple[int, int]:
        """Where env->regs[R_EAX] and [R_EDX] are."""
        return ctypes.addressof(self._rax), ctypes.addressof(self._rdx)

    def retired_so_far(self) -> int:
        """Instructions retired in the current slice, read from inside a hook
        (the instruction being executed is included)."""
        return self._counter.value

    def set_edx_eax(self, value: int) -> None:
        """EDX:EAX = ``value``, upper halves cleared, as RDTSC and RDMSR
        leave them -- written where QEMU's own helpers write them (env->regs),
        from inside an instruction hook, at a tenth of ``reg_write``'s cost."""
        self._rax.value = value & 0xFFFFFFFF
        self._rdx.value = (value >> 32) & 0xFFFFFFFF

    def set_ecx(self, value: int) -> None:
        self._rcx.value = value & 0xFFFFFFFF

    # ------------------------------------------------------------ privilege and segments
    def set_cpl(self, cpl: int) -> None:
        """Set the current privilege level (see module docstring)."""
        self._hflags.value = (self._hflags.value & ~HF_CPL_MASK) | cpl

    def hflags(self) -> int:
        """QEMU's hidden flags: CPL in bits 1:0, HF_CS32 bit 4 and HF_CS64
        bit 15 -- the code width its decoder uses (QEMU target/i386/cpu.h)."""
        return self._hflags.value

    def segment(self, name: str) -> tuple[int, int, int, int]:
        """The hidden segment cache: (selector, base, limit, flags), where
        flags holds the descriptor's high dword bits (D/B is bit 22, L bit 21)."""
        return SEGMENT_CACHE.unpack(ctypes.string_at(self._segment_address(name), SEGMENT_CACHE.size))

    def load_real_mode_segment(self, name: str, selector: int) -> None:
        """Load a segment register as real mode does: base = selector << 4,
        limit 64 KiB, access rights kept (Intel SDM Vol. 3A 20.1.1)."""
        _, _, _, flags = self.segment(name)
        self._write_segment(name, selector & 0xFFFF, (selector & 0xFFFF) << 4, REAL_MODE_LIMIT, flags)

    def load_flat_segments(self, code_selector: int, code_flags: int, stack_selector: int, stack_flags: int) -> None:
        """Load CS and SS with base 0 and limit 4 GiB from fixed attributes,
        not from a descriptor table, as SYSCALL does (AMD APM Vol. 3
        SYSCALL), and CPL 0; the code and stack width flags follow CS.L,
        CS.D and SS.B as QEMU's ``cpu_x86_load_seg_cache`` sets them."""
        self._write_segment("cs", code_selector, 0, 0xFFFFFFFF, code_flags)
        self._write_segment("ss", stack_selector, 0, 0xFFFFFFFF, stack_flags)
        flags = self._hflags.value & ~(HF_CPL_MASK | HF_CS32 | HF_SS32 | HF_CS64)
        if code_flags & x86.DESC_L:
            flags |= HF_CS32 | HF_SS32 | HF_CS64
        else:
            flags |= (HF_CS32 if code_flags & x86.DESC_DB else 0) | (HF_SS32 if stack_flags & x86.DESC_DB else 0)
        self._hflags.value = flags

    def _segment_address(self, name: str) -> int:
        return self._segments + SEGMENT_INDEX[name] * SEGMENT_CACHE.size

    def _write_segment(self, name: str, selector: int, base: int, limit: int, flags: int) -> None:
        ctypes.memmove(self._segment_address(name), SEGMENT_CACHE.pack(selector, base, limit, flags),
                       SEGMENT_CACHE.size)

    # ------------------------------------------------------------ exceptions
    def error_code(self) -> int:
        """The error code of the exception being raised (for an intercept,
        its EXITINFO1: 1 for a WRMSR, 0 for an RDMSR)."""
        return self._error_code.value & 0xFFFFFFFF

    def exception_is_int(self) -> int:
        return self._exception_is_int.value

    def take_exception_error_code(self) -> int:
        """Read the error code of the exception being raised and clear QEMU's
        exception records (see module docstring)."""
        error_code = self.error_code()
        self.clear_exception_record()
        return error_code

    def clear_exception_record(self) -> None:
        """No exception in flight, none from ``int n``: after each exception
        the hook handled, and at each slice start, where nothing is being
        delivered -- a failed walk Unicorn made for itself (the ``until``
        address) may have left a record that would turn the guest's next
        fault into a #DF."""
        self._old_exception.value = -1
        self._exception_is_int.value = 0

    # ------------------------------------------------------------ intercepts
    def install_intercepts(self, vmcb: int) -> None:
        """Fill the VMCB page at guest-physical ``vmcb`` (mapped by the caller,
        with two more pages after it) so that its MSR permission map, the
        next 8 KiB, intercepts every MSR (AMD APM Vol. 2 15.11)."""
        msrpm = vmcb + VMCB_SIZE
        self._uc.mem_write(vmcb, bytes(VMCB_SIZE))
        self._uc.mem_write(vmcb + VMCB_MSRPM_BASE_PA, _U64.pack(msrpm))
        self._uc.mem_write(msrpm, b"\xff" * MSRPM_SIZE)
        self._vmcb = vmcb

    def arm_intercepts(self, vmcb: int | None = None) -> None:
        """Make RDMSR, WRMSR, RDTSC and RDTSCP (and a shutdown) exit to the
        UC_HOOK_INTR hook.  Cheap: called at every slice start, because a
        context restored from elsewhere (a SIPI's real-mode template)
        carries no intercepts."""
        if vmcb is not None:
            self.install_intercepts(vmcb)
        self._vm_vmcb.value = self._vmcb
        self._intercept.value = INTERCEPTED_EXITS
        self._intercept_cr_write.value = INTERCEPTED_CR_WRITES
        self._hflags.value |= HF_GUEST

    def msr_read(self, number: int) -> int:
        """An MSR as Unicorn's CPU holds it (EFER, STAR, ...), read without an
        intercept (:meth:`intercepts_suspended`, inline: EFER is read at
        every interrupt delivery)."""
        flags = self._hflags
        flags.value &= ~HF_GUEST
        try:
            return self._register_access.read_msr(number)
        finally:
            flags.value |= HF_GUEST

    def msr_write(self, number: int, value: int) -> None:
        with self.intercepts_suspended():
            self._register_access.write_msr(number, value)

    def general_register(self, number: int) -> int:
        """A general register by its encoding number (0 RAX, 1 RCX, ... 15 R15:
        QEMU's regs[] order, Intel SDM Vol. 2A Table 3-1), read in place."""
        return ctypes.c_uint64.from_address(self._registers + 8 * number).value

    @contextmanager
    def intercepts_suspended(self) -> Iterator[None]:
        """Around a call into Unicorn that runs QEMU's own RDMSR/WRMSR helper
        (``reg_read``/``reg_write`` of UC_X86_REG_MSR): intercepted, it would
        leave through ``cpu_loop_exit`` with no emulation to return to."""
        self._hflags.value &= ~HF_GUEST
        try:
            yield
        finally:
            self._hflags.value |= HF_GUEST


#: The intercept vector bits: MSR accesses and shutdown.  (RDTSC and RDTSCP
#: have cheaper hooks of their own: :func:`add_instruction_hook`.)
INTERCEPTED_EXITS = (1 << (SVM_EXIT_MSR - SVM_EXIT_INTR)) | (1 << (SVM_EXIT_SHUTDOWN - SVM_EXIT_INTR))
#: A UC_HOOK_INSN callback for RDTSC/RDTSCP (``uc_cb_insn_cpuid_t``): return 1
#: to skip the instruction's own read.
INSTRUCTION_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def add_native_instruction_hook(uc: Uc, instruction: int, function: int, data: int) -> None:
    """Hook RDTSC or RDTSCP by kind (as :func:`add_instruction_hook`) with a
    C function of osvemu's own and its user data."""
    handle = _binding.uc_hook_h()
    status = _binding.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INSN, ctypes.c_void_p(function),
                                        ctypes.c_void_p(data), ctypes.c_uint64(1), ctypes.c_uint64(0),
                                        ctypes.c_int(instruction))
    if status != UC_ERR_OK:
        raise EmulatorError(f"cannot hook instruction {instruction} in Unicorn (error {status}): "
                            "unsupported Unicorn version")


def add_instruction_hook(uc: Uc, instruction: int, callback: Callable[[int, int], int]) -> object:
    """Hook RDTSC or RDTSCP by kind through the C API: Unicorn 2.1.4 fires
    UC_HOOK_INSN for them (``helper_rdtsc``, ``qemu/target/i386/
    misc_helper.c``) but the Python binding refuses the two instruction
    IDs.  ``callback(engine, user_data)`` is called as is (a hot path: no
    wrapper); it returns the ctypes callback, which must be kept alive."""
    native = INSTRUCTION_CALLBACK(callback)
    handle = _binding.uc_hook_h()
    status = _binding.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INSN, ctypes.cast(native, ctypes.c_void_p),
                                        None, ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(instruction))
    if status != UC_ERR_OK:
        raise EmulatorError(f"cannot hook instruction {instruction} in Unicorn (error {status}): "
                            "unsupported Unicorn version")
    return native
