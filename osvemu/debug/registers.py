"""The x86-64 register file as debuggers see it: names, widths, Unicorn
register ids, and the GDB target description that numbers them.

The order is the one GDB's ``i386:x86-64`` descriptions use (and QEMU's
64-bit target description): general registers, rip, eflags, the segment
selectors, the x87 stack and control words, the SSE registers, then
fs_base/gs_base and the system registers cr0, cr2, cr3, cr4, cr8 and efer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from unicorn import x86_const as r

from osvemu.cpu.x86 import MSR_EFER

if TYPE_CHECKING:
    from osvemu.cpu.core import Core

EFER = -1  # pseudo-id: read and written through the MSR interface


@dataclass(frozen=True)
class Register:
    name: str
    bits: int
    uc_id: int
    gdb_type: str
    feature: str

    @property
    def size(self) -> int:
        return self.bits // 8


CORE, SSE, SEGMENTS, SYSTEM = ("org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse", "org.gnu.gdb.i386.segments",
                               "org.gnu.gdb.i386.sys")

_GENERAL = [("rax", r.UC_X86_REG_RAX), ("rbx", r.UC_X86_REG_RBX), ("rcx", r.UC_X86_REG_RCX),
            ("rdx", r.UC_X86_REG_RDX), ("rsi", r.UC_X86_REG_RSI), ("rdi", r.UC_X86_REG_RDI),
            ("rbp", r.UC_X86_REG_RBP), ("rsp", r.UC_X86_REG_RSP)] + \
           [(f"r{n}", getattr(r, f"UC_X86_REG_R{n}")) for n in range(8, 16)]
_SEGMENT = [("cs", r.UC_X86_REG_CS), ("ss", r.UC_X86_REG_SS), ("ds", r.UC_X86_REG_DS),
            ("es", r.UC_X86_REG_ES), ("fs", r.UC_X86_REG_FS), ("gs", r.UC_X86_REG_GS)]
_X87_CONTROL = [("fctrl", r.UC_X86_REG_FPCW), ("fstat", r.UC_X86_REG_FPSW), ("ftag", r.UC_X86_REG_FPTAG),
                ("fiseg", None), ("fioff", None), ("foseg", None), ("fooff", None), ("fop", None)]

REGISTERS: tuple[Register, ...] = tuple(
    [Register(name, 64, uc_id, "data_ptr" if name in ("rbp", "rsp") else "int64", CORE) for name, uc_id in _GENERAL]
    + [Register("rip", 64, r.UC_X86_REG_RIP, "code_ptr", CORE),
       Register("eflags", 32, r.UC_X86_REG_EFLAGS, "i386_eflags", CORE)]
    + [Register(name, 32, uc_id, "int32", CORE) for name, uc_id in _SEGMENT]
    + [Register(f"st{n}", 80, getattr(r, f"UC_X86_REG_ST{n}"), "i387_ext", CORE) for n in range(8)]
    + [Register(name, 32, uc_id if uc_id is not None else 0, "int", CORE) for name, uc_id in _X87_CONTROL]
    + [Register(f"xmm{n}", 128, getattr(r, f"UC_X86_REG_XMM{n}"), "vec128", SSE) for n in range(16)]
    + [Register("mxcsr", 32, r.UC_X86_REG_MXCSR, "i386_mxcsr", SSE)]
    + [Register("fs_base", 64, r.UC_X86_REG_FS_BASE, "int", SEGMENTS),
       Register("gs_base", 64, r.UC_X86_REG_GS_BASE, "int", SEGMENTS)]
    + [Register(name, 64, uc_id, "int", SYSTEM) for name, uc_id in
       (("cr0", r.UC_X86_REG_CR0), ("cr2", r.UC_X86_REG_CR2), ("cr3", r.UC_X86_REG_CR3),
        ("cr4", r.UC_X86_REG_CR4), ("cr8", r.UC_X86_REG_CR8), ("efer", EFER))]
)
BY_NAME = {reg.name: reg for reg in REGISTERS}
#: 32-bit names the console accepts as aliases of the 64-bit registers.
ALIASES = {"pc": "rip", "sp": "rsp", "fp": "rbp", "rflags": "eflags", **{f"e{n}": f"r{n}" for n in
           ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip")}}
#: x87 registers osvemu does not model (the last-instruction pointers): read as 0.
UNMODELLED = {"fiseg", "fioff", "foseg", "fooff", "fop"}


def lookup(name: str) -> Register | None:
    name = name.lower().lstrip("$")
    return BY_NAME.get(ALIASES.get(name, name))


def read(core: Core, reg: Register) -> int:
    if reg.name in UNMODELLED:
        return 0
    if reg.uc_id == EFER:
        return core.efer()
    if reg.bits == 80:  # raw bytes: the binding drops the exponent of an x87 register
        return int.from_bytes(core.read_register_bytes(reg.uc_id, reg.size), "little")
    return core.read_register(reg.uc_id) & ((1 << reg.bits) - 1)


def write(core: Core, reg: Register, value: int) -> None:
    value &= (1 << reg.bits) - 1
    if reg.name in UNMODELLED:
        return
    if reg.uc_id == EFER:
        core.write_register(r.UC_X86_REG_MSR, (MSR_EFER, value))
    elif reg.bits == 80:
        core.write_register_bytes(reg.uc_id, value.to_bytes(reg.size, "little"))
    else:
        core.write_register(reg.uc_id, value)


def encode(reg: Register, value: int) -> str:
    """GDB wire format: target byte order (little-endian), hex."""
    return value.to_bytes(reg.size, "little").hex()


def decode(reg: Register, text: str) -> int:
    return int.from_bytes(bytes.fromhex(text[:2 * reg.size]), "little")


_EFLAGS_BITS = ((0, "CF"), (1, ""), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"), (10, "DF"),
                (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"), (18, "AC"), (19, "VIF"), (20, "VIP"), (21, "ID"))
_MXCSR_BITS = ((0, "IE"), (1, "DE"), (2, "ZE"), (3, "OE"), (4, "UE"), (5, "PE"), (6, "DAZ"), (7, "IM"), (8, "DM"),
               (9, "ZM"), (10, "OM"), (11, "UM"), (12, "PM"), (15, "FZ"))


def target_xml() -> str:
    """A GDB target description (GDB manual, "Target Descriptions")."""
    lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', "<target>",
             "  <architecture>i386:x86-64</architecture>"]
    number = 0
    for feature in (CORE, SSE, SEGMENTS, SYSTEM):
        lines.append(f'  <feature name="{feature}">')
        if feature == CORE:
            lines.append('    <flags id="i386_eflags" size="4">')
            lines += [f'      <field name="{name}" start="{bit}" end="{bit}"/>' for bit, name in _EFLAGS_BITS]
            lines.append("    </flags>")
        if feature == SSE:
            for vector, element, count in (("v4f", "ieee_single", 4), ("v2d", "ieee_double", 2),
                                           ("v16i8", "int8", 16), ("v8i16", "int16", 8), ("v4i32", "int32", 4),
                                           ("v2i64", "int64", 2)):
                lines.append(f'    <vector id="{vector}" type="{element}" count="{count}"/>')
            lines.append('    <union id="vec128">')
            lines += [f'      <field name="{name}" type="{kind}"/>' for name, kind in
                      (("v4_float", "v4f"), ("v2_double", "v2d"), ("v16_int8", "v16i8"), ("v8_int16", "v8i16"),
                       ("v4_int32", "v4i32"), ("v2_int64", "v2i64"), ("uint128", "uint128"))]
            lines.append("    </union>")
            lines.append('    <flags id="i386_mxcsr" size="4">')
            lines += [f'      <field name="{name}" start="{bit}" end="{bit}"/>' for bit, name in _MXCSR_BITS]
            lines.append("    </flags>")
        for reg in REGISTERS:
            if reg.feature == feature:
                group = ' group="float"' if reg.name.startswith("st") or reg.name in ("fctrl", "fstat", "ftag") \
                    else ' group="vector"' if reg.feature == SSE else ""
                lines.append(f'    <reg name="{reg.name}" bitsize="{reg.bits}" type="{reg.gdb_type}" '
                             f'regnum="{number}"{group}/>')
                number += 1
        lines.append("  </feature>")
    lines.append("</target>")
    return "\n".join(lines) + "\n"


__all__ = ["BY_NAME", "REGISTERS", "Register", "decode", "encode", "lookup", "read", "target_xml", "write"]
