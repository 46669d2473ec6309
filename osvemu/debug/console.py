"""``osvemu debug``: a gdb-style console on the debug engine.

Commands take gdb's names where gdb has one (break, tbreak, delete, info
breakpoints, watch, continue, stepi, nexti, finish, info registers, x/FMT,
disassemble, backtrace, print, quit) plus ``core N`` and ``info cores``.
Every core is stopped while the console waits for a command.  Commands come
from a terminal (with readline history) or, one per line, from a script on
standard input.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import IO

from unicorn import x86_const as r

from osvemu.cpu.core import Core
from osvemu.cpu.paging import TranslationFault
from osvemu.debug import registers
from osvemu.debug.engine import Debugger, DebugMemoryError, Stop, StopKind
from osvemu.errors import ConfigError, GuestFault
from osvemu.image import KernelImage
from osvemu.platform.machine import Machine
from osvemu.scheduler import Scheduler

PROMPT = "(osvemu) "
_X_FORMAT = re.compile(r"^x(?:/(\d*)([xduotacsi]?)([bhwg]?))?$")
_UNIT_BYTES = {"b": 1, "h": 2, "w": 4, "g": 8}
_CALL_MNEMONICS = ("call", "lcall")


class CommandError(Exception):
    """A command the console cannot carry out; printed, never fatal."""


class DebugConsole:
    def __init__(self, machine: Machine, scheduler: Scheduler, image: KernelImage) -> None:
        self.machine, self.scheduler, self.image = machine, scheduler, image
        self.debugger = Debugger(machine, scheduler)
        self.out: IO[str] | None = None
        self.values: list[int] = []
        self._x_defaults = ("x", "w")
        self.commands: dict[str, Callable[[list[str]], bool | None]] = {
            "break": self.cmd_break, "b": self.cmd_break, "tbreak": self.cmd_tbreak,
            "delete": self.cmd_delete, "d": self.cmd_delete, "info": self.cmd_info, "i": self.cmd_info,
            "watch": self.cmd_watch, "rwatch": self.cmd_rwatch, "awatch": self.cmd_awatch,
            "continue": self.cmd_continue, "c": self.cmd_continue,
            "stepi": self.cmd_stepi, "si": self.cmd_stepi, "nexti": self.cmd_nexti, "ni": self.cmd_nexti,
            "finish": self.cmd_finish, "disassemble": self.cmd_disassemble, "backtrace": self.cmd_backtrace,
            "bt": self.cmd_backtrace, "where": self.cmd_backtrace, "core": self.cmd_core, "thread": self.cmd_core,
            "print": self.cmd_print, "p": self.cmd_print, "quit": self.cmd_quit, "q": self.cmd_quit,
            "help": self.cmd_help,
        }

    # ------------------------------------------------------------ loop
    def main(self, stdin: IO[str], stdout: IO[str]) -> int:
        self.out = stdout
        interactive = stdin.isatty()
        if interactive:
            import readline  # noqa: F401 - enables line editing and history for input()
        self.scheduler.start()
        core = self.core
        self.say(f"osvemu debug: {len(self.machine.cores)} cores, all stopped; core 0 at "
                 f"{self._where(core)}")
        try:
            while True:
                line = self._read(stdin, interactive)
                if line is None:
                    break
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if self.execute(line):
                    break
        finally:
            outcome = None
            if self.debugger.ended is not None:
                outcome = (self.debugger.ended.status, self.debugger.ended.reason)
            self.scheduler.finish(outcome)
        ended = self.debugger.ended
        return ended.status if ended is not None else 0

    def _read(self, stdin: IO[str], interactive: bool) -> str | None:
        if interactive:
            try:
                return input(PROMPT)
            except EOFError:
                return None
        line = stdin.readline()
        if not line:
            return None
        self.say(PROMPT + line.rstrip("\n"))
        return line

    def execute(self, line: str) -> bool:
        """Run one command; True when the console should quit."""
        name, _, rest = line.strip().partition(" ")
        if name.startswith("x/") or name == "x":
            handler, args = self.cmd_x, [name, *rest.split()]
        else:
            handler = self.commands.get(name)
            args = rest.split()
            if handler is None:
                self.say(f'Undefined command: "{name}".  Try "help".')
                return False
        try:
            return bool(handler(args))
        except (CommandError, ConfigError, DebugMemoryError, GuestFault, ValueError) as error:
            self.say(str(error))
            return False

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    @property
    def core(self) -> Core:
        return self.machine.cores[self.debugger.selected]

    # ------------------------------------------------------------ expressions
    def evaluate(self, expression: str) -> int:
        """Numbers, symbols, &symbol, $register, and + / - between them."""
        tokens = re.findall(r"[+-]|[^\s+-]+", expression.replace(" ", ""))
        if not tokens:
            raise CommandError("expression expected")
        total, sign = 0, 1
        for token in tokens:
            if token in "+-":
                sign = 1 if token == "+" else -1
                continue
            total += sign * self._term(token)
            sign = 1
        return total & 0xFFFFFFFFFFFFFFFF

    def _term(self, token: str) -> int:
        if token.startswith("$"):
            reg = registers.lookup(token)
            if reg is None:
                raise CommandError(f"unknown register {token}")
            return registers.read(self.core, reg)
        token = token.lstrip("&*")
        try:
            return int(token, 0)
        except ValueError:
            address = self.image.symbols.address_of(token)
            if address is None:
                raise CommandError(f'No symbol "{token}" in current context.') from None
            return address

    def _describe(self, address: int) -> str:
        name = self.image.symbols.lookup(address)
        return f"{address:#x} <{name}>" if name else f"{address:#x}"

    def _symbol_text(self, address: int) -> str:
        name = self.image.symbols.lookup(address)
        return f"<{name}>" if name else ""

    def _where(self, core: Core) -> str:
        rip = core.rip
        return f"{self._describe(rip)} ({core.state.value})"

    # ------------------------------------------------------------ breakpoints
    def cmd_break(self, args: list[str], temporary: bool = False) -> None:
        if not args:
            raise CommandError("break needs a location: a symbol or an address")
        address = self.evaluate(" ".join(args))
        point = self.debugger.add_breakpoint(address, temporary)
        self.say(f"{'Temporary breakpoint' if temporary else 'Breakpoint'} {point.number} at "
                 f"{self._describe(address)}")

    def cmd_tbreak(self, args: list[str]) -> None:
        self.cmd_break(args, temporary=True)

    def cmd_delete(self, args: list[str]) -> None:
        if not args:
            self.debugger.delete_all()
            return
        for number in args:
            if not self.debugger.delete(int(number)):
                self.say(f"No breakpoint number {number}.")

    def cmd_watch(self, args: list[str], kind: str = "write") -> None:
        if not args:
            raise CommandError("watch needs ADDR[:LEN] or a symbol")
        where, _, length = " ".join(args).partition(":")
        address = self.evaluate(where)
        if length:
            size = int(length, 0)
        else:
            symbol = self.image.symbols.symbol(where.strip().lstrip("&"))
            size = symbol.size if symbol and symbol.size in (1, 2, 4, 8) else 8
        point = self.debugger.add_watchpoint(address, size, kind)
        label = {"write": "Hardware watchpoint", "read": "Hardware read watchpoint",
                 "access": "Hardware access (read/write) watchpoint"}[kind]
        self.say(f"{label} {point.number}: {self._describe(address)} ({size} bytes)")

    def cmd_rwatch(self, args: list[str]) -> None:
        self.cmd_watch(args, "read")

    def cmd_awatch(self, args: list[str]) -> None:
        self.cmd_watch(args, "access")

    # ------------------------------------------------------------ running
    def cmd_continue(self, args: list[str]) -> None:
        self._report(self.debugger.cont())

    def cmd_stepi(self, args: list[str]) -> None:
        count = int(args[0], 0) if args else 1
        stop = None
        for _ in range(count):
            stop = self.debugger.step()
            if stop.kind is not StopKind.STEP:
                break
        self._report(stop)

    def cmd_nexti(self, args: list[str]) -> None:
        count = int(args[0], 0) if args else 1
        stop = None
        for _ in range(count):
            core = self.core
            rip = core.rip
            instruction = self._instructions(core, rip, 1)[0]
            if instruction.mnemonic in _CALL_MNEMONICS:
                stop = self._run_to(core, rip + instruction.size)
            else:
                stop = self.debugger.step()
            if stop.kind not in (StopKind.STEP, StopKind.BREAKPOINT) or stop.core != core.index:
                break
        self._report(stop)

    def cmd_finish(self, args: list[str]) -> None:
        """Run until the current function returns, found through the frame
        pointer: the return address sits just above the saved RBP."""
        core = self.core
        rbp = core.read_register(r.UC_X86_REG_RBP)
        return_address = struct.unpack("<Q", self.debugger.read_memory(rbp + 8, 8, core))[0]
        self.say(f"Run till exit to {self._describe(return_address)}")
        self._report(self._run_to(core, return_address, above_stack=rbp))

    def _run_to(self, core: Core, address: int, above_stack: int | None = None) -> Stop:
        """Continue until ``core`` reaches ``address`` (with its stack above
        ``above_stack``, so a recursive call does not count)."""
        point = self.debugger.add_breakpoint(address, temporary=False)
        try:
            while True:
                stop = self.debugger.cont()
                if stop.kind is not StopKind.BREAKPOINT or stop.address != address:
                    return stop
                if stop.core == core.index and (above_stack is None or
                                                core.read_register(r.UC_X86_REG_RSP) > above_stack):
                    return Stop(StopKind.STEP, core.index)
        finally:
            self.debugger.delete(point.number)

    def _report(self, stop: Stop) -> None:
        if stop.kind is StopKind.EXITED:
            self.say(f"[machine stopped: {stop.reason}; exit status {stop.status}]")
            return
        core = self.machine.cores[stop.core]
        if stop.kind is StopKind.BREAKPOINT:
            numbers = [b.number for b in self.debugger.breakpoints.values() if b.address == stop.address]
            label = f"breakpoint {numbers[0]}" if numbers else "temporary breakpoint"
            self.say(f"Core {stop.core} hit {label} at {self._describe(stop.address)}")
        elif stop.kind is StopKind.WATCHPOINT:
            self.say(f"Core {stop.core} hit {stop.watch} watchpoint on {self._describe(stop.address)}")
            if stop.old is not None:
                self.say(f"Old value = {stop.old:#x}")
                self.say(f"New value = {stop.new:#x}")
        elif stop.kind is StopKind.INTERRUPT:
            self.say(f"Core {stop.core} interrupted")
        elif stop.reason:
            self.say(stop.reason)
        self._show_current(core)

    def _show_current(self, core: Core) -> None:
        rip = core.rip
        try:
            text = self._format_instruction(self._instructions(core, rip, 1)[0])
        except (DebugMemoryError, IndexError):
            text = f"{self._describe(rip)}: <cannot read>"
        source = self.image.lines.lookup(rip) if self.image.lines else None
        if source is not None:
            text += f"\t[{source[0]}:{source[1]}]"
        self.say(f"=> {text}")

    # ------------------------------------------------------------ inspecting
    def cmd_info(self, args: list[str]) -> None:
        if not args:
            raise CommandError('"info" must be followed by breakpoints, registers or cores')
        what, rest = args[0], args[1:]
        if "breakpoints".startswith(what) or "watchpoints".startswith(what):
            self._info_breakpoints()
        elif "registers".startswith(what) or what == "all-registers":
            self._info_registers(rest)
        elif "cores".startswith(what) or "threads".startswith(what):
            self._info_cores()
        else:
            raise CommandError(f'Undefined info command: "{what}".')

    def _info_breakpoints(self) -> None:
        points = sorted([*self.debugger.breakpoints.values(), *self.debugger.watchpoints.values()],
                        key=lambda p: p.number)
        if not points:
            self.say("No breakpoints or watchpoints.")
            return
        self.say("Num     Type            Disp Address            What")
        for point in points:
            if hasattr(point, "temporary"):
                kind, disp = "breakpoint", "del " if point.temporary else "keep"
                what = self._symbol_text(point.address)
            else:
                kind, disp = f"{point.kind} watchpoint", "keep"
                what = f"{self._symbol_text(point.address)} ({point.length} bytes)"
            self.say(f"{point.number:<7} {kind:<15} {disp} {point.address:#018x} {what}")
            if point.hits:
                self.say(f"        hit {point.hits} time{'s' if point.hits != 1 else ''}")

    def _info_registers(self, names: list[str]) -> None:
        if names:
            selected = []
            for name in names:
                reg = registers.lookup(name)
                if reg is None:
                    raise CommandError(f"Invalid register `{name.lstrip('$')}'")
                selected.append(reg)
        else:
            selected = [reg for reg in registers.REGISTERS if reg.feature != registers.SSE
                        and not reg.name.startswith("st") and reg.name not in registers.UNMODELLED
                        and reg.name not in ("fctrl", "fstat", "ftag")]
        for reg in selected:
            value = registers.read(self.core, reg)
            natural = self._describe(value) if reg.name == "rip" else str(value)
            self.say(f"{reg.name:<15}{hex(value):<19}{natural}")

    def _info_cores(self) -> None:
        self.say("  Id   APIC ID  State           Mode                 RIP")
        for core in self.machine.cores:
            marker = "*" if core.index == self.debugger.selected else " "
            rip = core.rip
            self.say(f"{marker} {core.index:<4} {core.apic_id:<8} {core.state.value:<15} "
                     f"{self._mode(core):<20} {self._describe(rip)}")

    def _mode(self, core: Core) -> str:
        try:
            width = core.code_width()
        except GuestFault:
            return "?"
        return core.mode().name.lower() + f" {width}-bit"

    def cmd_core(self, args: list[str]) -> None:
        if not args:
            self.say(f"[Current core is {self.debugger.selected}]")
            return
        index = int(args[0], 0)
        if not 0 <= index < len(self.machine.cores):
            raise CommandError(f"Invalid core {index}: the machine has cores 0-{len(self.machine.cores) - 1}")
        self.debugger.selected = index
        self.say(f"[Switching to core {index} (APIC ID {self.core.apic_id})]")
        self._show_current(self.core)

    def cmd_x(self, args: list[str]) -> None:
        match = _X_FORMAT.match(args[0])
        if not match:
            raise CommandError(f"Invalid format {args[0]!r}: use x/NFU with F in xduotacsi and U in bhwg")
        if len(args) < 2:
            raise CommandError("x needs an address")
        count = int(match.group(1) or 1)
        fmt = match.group(2) or self._x_defaults[0]
        unit = match.group(3) or self._x_defaults[1]
        self._x_defaults = (fmt, unit)
        address = self.evaluate(" ".join(args[1:]))
        if fmt == "i":
            for instruction in self._instructions(self.core, address, count):
                self.say("   " + self._format_instruction(instruction))
            return
        if fmt == "s":
            for _ in range(count):
                data = self.debugger.read_memory(address, 256, self.core)
                text = data.split(b"\0", 1)[0]
                self.say(f"{self._describe(address)}:\t{text.decode('latin-1')!r}")
                address += len(text) + 1
            return
        size = 1 if fmt == "c" else _UNIT_BYTES[unit]
        per_line = {1: 8, 2: 8, 4: 4, 8: 2}[size]
        data = self.debugger.read_memory(address, count * size, self.core)
        for line_start in range(0, count, per_line):
            values = [int.from_bytes(data[i * size:(i + 1) * size], "little")
                      for i in range(line_start, min(count, line_start + per_line))]
            cells = [_format_value(value, fmt, size) for value in values]
            self.say(f"{self._describe(address + line_start * size)}:\t" + "\t".join(cells))

    def cmd_disassemble(self, args: list[str]) -> None:
        core = self.core
        if args:
            start = self.evaluate(" ".join(args))
        else:
            start = core.rip
        symbol = self.image.symbols.find(start)
        if symbol is not None and symbol.size:
            start, end, title = symbol.address, symbol.address + symbol.size, symbol.name
        else:
            end, title = start + 64, self._describe(start)
        rip = core.rip
        self.say(f"Dump of assembler code for {title}:")
        address = start
        while address < end:
            found = self._instructions(core, address, 1)
            if not found:
                break
            marker = "=> " if found[0].address == rip else "   "
            self.say(marker + self._format_instruction(found[0]))
            address += found[0].size
        self.say("End of assembler dump.")

    def cmd_backtrace(self, args: list[str]) -> None:
        """Walk the frame-pointer chain: [rbp] is the caller's rbp and
        [rbp + 8] the return address (System V AMD64 ABI 3.2.2)."""
        core = self.core
        limit = int(args[0], 0) if args else 64
        self.say(f"#0  {self._describe(core.rip)}")
        rbp = core.read_register(r.UC_X86_REG_RBP)
        for depth in range(1, limit):
            if rbp == 0 or rbp & 7:
                break
            try:
                saved_rbp, return_address = struct.unpack("<QQ", self.debugger.read_memory(rbp, 16, core))
            except DebugMemoryError:
                break
            if return_address == 0:
                break
            self.say(f"#{depth}  {self._describe(return_address)}")
            if saved_rbp <= rbp:
                break
            rbp = saved_rbp

    def cmd_print(self, args: list[str]) -> None:
        if not args:
            raise CommandError("print needs an expression")
        expression = " ".join(args)
        name = expression.strip()
        symbol = self.image.symbols.symbol(name) if not name.startswith(("&", "$")) else None
        if symbol is not None and symbol.size in (1, 2, 4, 8):
            value = int.from_bytes(self.debugger.read_memory(symbol.address, symbol.size, self.core), "little")
            text = f"{value} ({value:#x})"
        else:
            value = self.evaluate(expression)
            text = self._describe(value) if name.startswith(("&", "$rip", "$pc")) or symbol else str(value)
            if not text.startswith("0x") and value > 9:
                text += f" ({value:#x})"
        self.values.append(value)
        self.say(f"${len(self.values)} = {text}")

    def cmd_quit(self, args: list[str]) -> bool:
        return True

    def cmd_help(self, args: list[str]) -> None:
        self.say("break/tbreak LOC, delete [N], info breakpoints, watch|rwatch|awatch ADDR[:LEN], continue, "
                 "stepi [N], nexti [N], finish, info registers [REG...], x/NFU ADDR, disassemble [LOC], "
                 "backtrace, core N, info cores, print EXPR, quit")

    # ------------------------------------------------------------ disassembly
    def _instructions(self, core: Core, address: int, count: int) -> list:
        try:
            return core.decode(address, count)
        except (TranslationFault, GuestFault) as error:
            raise DebugMemoryError(f"cannot access memory at {address:#x}: {error}") from None

    def _format_instruction(self, instruction) -> str:
        return f"{self._describe(instruction.address)}:\t{instruction.mnemonic} {instruction.op_str}".rstrip()


def _format_value(value: int, fmt: str, size: int) -> str:
    if fmt == "x":
        return f"{value:#0{2 + 2 * size}x}"
    if fmt == "d":
        return str(value - (1 << (8 * size)) if value >> (8 * size - 1) else value)
    if fmt == "u":
        return str(value)
    if fmt == "o":
        return f"{value:#o}"
    if fmt == "t":
        return f"{value:0{8 * size}b}"
    if fmt == "c":
        return f"{value} {chr(value)!r}"
    return f"{value:#x}"  # "a": an address


__all__ = ["DebugConsole"]


