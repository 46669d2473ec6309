"""``osvemu debug``: a gdb-style console on the debug engine.

Commands take gdb's names where gdb has one (break, tbreak, delete, info
breakpoints, watch, continue, stepi, nexti, finish, info registers, x/FMT,
disassemble, backtrace, print/FMT, quit) plus ``core N``, ``kernel NAME``,
``info cores`` and ``info kernels``.  Every core is stopped while the
console waits for a command; Ctrl-C while the machine runs stops it again
and returns to the prompt.  Commands come from a terminal (with readline
history) or, one per line, from a script on standard input.

Under OSV a core is named with its kernel (``k2/c16``, Machine.core_label)
and symbolised with its own kernel's image: ``break ap_main`` means the
``ap_main`` of the current core's kernel, and stops the cores of every
kernel that runs that image.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import struct
from collections.abc import Callable, Iterator
from typing import IO

from unicorn import x86_const as r

from osvemu.cpu.core import Core, CoreState
from osvemu.cpu.delivery import Mode
from osvemu.cpu.paging import TranslationFault
from osvemu.debug import registers
from osvemu.debug.engine import Debugger, DebugMemoryError, Stop, StopKind, state_name
from osvemu.debug.expressions import (
    CommandError,
    ExpressionParser,
    Value,
    char_literal,
    format_value,
)
from osvemu.errors import ConfigError, GuestFault
from osvemu.image import KernelImage
from osvemu.platform.layout import number_runs
from osvemu.platform.machine import Kernel, Machine
from osvemu.scheduler import Scheduler
from osvemu.symbols import Symbol, SymbolTable

PROMPT = "(osvemu) "
_X_FORMAT = re.compile(r"^x(?:/(\d*)([xduotacsi]?)([bhwg]?))?$")
_PRINT_FORMAT = re.compile(r"^(\d*)([a-z]*)$")
_UNIT_BYTES = {"b": 1, "h": 2, "w": 4, "g": 8}
_CALL_MNEMONICS = ("call", "lcall")
#: print/FMT letters, with gdb's meanings (GDB manual, "Output Formats").
PRINT_FORMATS = "xduotacz"
_NO_SYMBOLS = SymbolTable([])


class DebugConsole:
    def __init__(self, machine: Machine, scheduler: Scheduler, image: KernelImage | None,
                 kernel: str | None = None) -> None:
        """``kernel``: ``osvemu debug --kernel NAME``, the kernel whose
        first core the session starts on and whose cores ``info cores``
        lists first."""
        self.machine, self.scheduler, self.image = machine, scheduler, image
        self.debugger = Debugger(machine, scheduler)
        self.focus: Kernel | None = None
        if kernel is not None:
            self.focus = self._kernel_named(kernel, f"--kernel {kernel}", ConfigError)
            self.debugger.selected = self.focus.cores[0].index
        self.out: IO[str] | None = None
        self.values: list[Value] = []
        self._x_defaults = ("x", "w")
        self._interrupted = False  # Ctrl-C paused the machine during this command
        self._running = False  # a command is running: Ctrl-C pauses the machine
        self.commands: dict[str, Callable[[list[str]], bool | None]] = {
            "break": self.cmd_break, "b": self.cmd_break, "tbreak": self.cmd_tbreak,
            "delete": self.cmd_delete, "d": self.cmd_delete, "info": self.cmd_info, "i": self.cmd_info,
            "watch": self.cmd_watch, "rwatch": self.cmd_rwatch, "awatch": self.cmd_awatch,
            "continue": self.cmd_continue, "c": self.cmd_continue,
            "stepi": self.cmd_stepi, "si": self.cmd_stepi, "nexti": self.cmd_nexti, "ni": self.cmd_nexti,
            "finish": self.cmd_finish, "disassemble": self.cmd_disassemble, "backtrace": self.cmd_backtrace,
            "bt": self.cmd_backtrace, "where": self.cmd_backtrace, "core": self.cmd_core, "thread": self.cmd_core,
            "kernel": self.cmd_kernel, "print": self.cmd_print, "p": self.cmd_print,
            "quit": self.cmd_quit, "q": self.cmd_quit, "help": self.cmd_help,
        }

    # ------------------------------------------------------------ loop
    def main(self, stdin: IO[str], stdout: IO[str]) -> int:
        self.out = stdout
        interactive = stdin.isatty()
        if interactive:
            import readline  # noqa: F401 - enables line editing and history for input()
        self.scheduler.start()
        self.say(f"osvemu debug: {self._machine_summary()}, all stopped; core {self._label(self.core)} at "
                 f"{self._where(self.core)}")
        try:
            with self._sigint_pauses():
                self._loop(stdin, interactive)
        finally:
            outcome = None
            if self.debugger.ended is not None:
                outcome = (self.debugger.ended.status, self.debugger.ended.reason)
            self.scheduler.finish(outcome)
        ended = self.debugger.ended
        return ended.status if ended is not None else 0

    def _loop(self, stdin: IO[str], interactive: bool) -> None:
        while True:
            try:
                line = self._read(stdin, interactive)
                if line is None:
                    return
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if self.execute(line):
                    return
            except KeyboardInterrupt:  # Ctrl-C while no machine runs: gdb's "Quit"
                self.say("Quit")

    def _machine_summary(self) -> str:
        count = len(self.machine.cores)
        cores = f"{count} core{'s' if count != 1 else ''}"
        kernels = self.machine.kernels
        if not kernels[0].placement.labelled:
            return cores
        return f"{cores} in {len(kernels)} kernels ({', '.join(kernel.name for kernel in kernels)})"

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
        base, slash, suffix = name.partition("/")
        if base == "x":
            handler, args = self.cmd_x, [name, *rest.split()]
        elif slash and base in ("print", "p"):
            handler, args = functools.partial(self.cmd_print, fmt=suffix), rest.split()
        else:
            handler = self.commands.get(name)
            args = rest.split()
            if handler is None:
                self.say(f'Undefined command: "{name}".  Try "help".')
                return False
        try:
            self._running, self._interrupted = True, False
            return bool(handler(args))
        except (CommandError, ConfigError, DebugMemoryError, GuestFault, ValueError) as error:
            self.say(str(error))
            return False
        finally:
            self._running = False
            if self._interrupted:
                self.debugger.clear_interrupt()  # a Ctrl-C no run took up is not kept for the next

    @contextlib.contextmanager
    def _sigint_pauses(self) -> Iterator[None]:
        """SIGINT (Ctrl-C) while a command runs the machine asks it to pause,
        as gdb's Ctrl-C does: the scheduler stops after the running slice,
        whose rest it resumes on the next ``continue``, so the run is the one
        it would have been.  (Python runs the handler between bytecodes,
        never inside Unicorn.)  At the prompt it is gdb's "Quit"."""

        def on_sigint(_signum, _frame) -> None:
            if not self._running:
                raise KeyboardInterrupt
            self._interrupted = True
            self.debugger.interrupt()

        try:
            previous = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main thread: there is no Ctrl-C to catch
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    @property
    def core(self) -> Core:
        return self.machine.cores[self.debugger.selected]

    def _label(self, core: Core) -> str:
        return self.machine.core_label(core.index)

    # ------------------------------------------------------------ kernels and their images
    def _kernel_named(self, name: str, what: str, error: type[Exception]) -> Kernel:
        for kernel in self.machine.kernels:
            if kernel.name == name:
                return kernel
        if not self.machine.kernels[0].placement.labelled:
            raise error(f"{what}: the bare machine (--native) runs no OSV kernels")
        raise error(f"{what}: the kernels are {', '.join(kernel.name for kernel in self.machine.kernels)}")

    def image_of(self, core: Core) -> KernelImage | None:
        """The image a core runs: its kernel's, or the console's own image
        (which carries --symbols) for kernels that run the file it came from."""
        kernel = self.machine.kernel_of(core)
        image = kernel.image if kernel is not None else None
        if image is None:
            return None
        if self.image is not None and _same_file(image.path, self.image.path):
            return self.image
        return image

    def symbols(self, core: Core | None = None) -> SymbolTable:
        image = self.image_of(core or self.core)
        return image.symbols if image is not None else _NO_SYMBOLS

    def _image_cores(self, core: Core) -> list[Core]:
        """The cores an address of ``core``'s image means the same code on:
        those of every kernel that runs that image."""
        image = self.image_of(core)
        if image is None:
            return list(self.machine.cores)
        return [other for kernel in self.machine.kernels
                if kernel.image is not None and _same_file(kernel.image.path, image.path)
                for other in kernel.cores]

    def _kernels_text(self, cores: tuple[int, ...]) -> str:
        """`` (kernel k1)`` when a breakpoint stops only some kernels' cores."""
        names = [kernel.name for kernel in self.machine.kernels if kernel.cores and kernel.cores[0].index in cores]
        if len(names) == len(self.machine.kernels):
            return ""
        return f" (kernel{'s' if len(names) > 1 else ''} {', '.join(names)})"

    # ------------------------------------------------------------ expressions
    def evaluate(self, expression: str, values: bool = False) -> int:
        return self.evaluate_value(expression, values).unsigned

    def evaluate_value(self, expression: str, values: bool = False) -> Value:
        return ExpressionParser(expression, self, values).parse()

    def symbol_address(self, name: str) -> int:
        address = self.symbols().address_of(name)
        if address is None:
            raise CommandError(f'No symbol "{name}" in current context.')
        return address

    def symbol_value(self, name: str, values: bool) -> Value:
        """A symbol in an expression: a data object's contents when the
        expression wants values, else (and for code) its address."""
        symbol = self.symbols().symbol(name)
        if symbol is None:
            raise CommandError(f'No symbol "{name}" in current context.')
        if values and self._is_data(symbol):
            return Value(int.from_bytes(self.read(symbol.address, symbol.size), "little"), symbol.size)
        return Value(symbol.address, pointer=True)

    def _is_data(self, symbol: Symbol) -> bool:
        """A 1-, 2-, 4- or 8-byte object outside the image's executable segments."""
        image = self.image_of(self.core)
        executable = image is not None and any(
            segment.executable and segment.vaddr <= symbol.address < segment.vaddr + segment.memsz
            for segment in image.segments)
        return symbol.size in (1, 2, 4, 8) and not executable

    def dollar(self, token: str) -> Value:
        """``$reg``, or gdb's value history: ``$N``, ``$`` (the last value),
        ``$$`` (the one before) and ``$$N`` (N before the last)."""
        history = re.fullmatch(r"\$(\$?)(\d*)", token)
        if history is not None:
            before_last, digits = history.groups()
            if before_last:
                back = int(digits) if digits else 1
            else:
                back = len(self.values) - int(digits) if digits else 0
            if not 0 <= back < len(self.values):
                raise CommandError(f"History has not yet reached {token}.")
            return self.values[len(self.values) - 1 - back]
        reg = registers.lookup(token)
        if reg is None:
            raise CommandError(f'No register or value "{token}"')
        pointer = reg.gdb_type in ("code_ptr", "data_ptr")
        return Value(registers.read(self.core, reg), reg.size, pointer)

    def read(self, address: int, length: int) -> bytes:
        return self.debugger.read_memory(address, length, self.core)

    def _describe(self, address: int, core: Core | None = None) -> str:
        name = self.symbols(core).lookup(address)
        return f"{address:#x} <{name}>" if name else f"{address:#x}"

    def _symbol_text(self, address: int, core: Core | None = None) -> str:
        name = self.symbols(core).lookup(address)
        return f"<{name}>" if name else ""

    def _where(self, core: Core) -> str:
        return f"{self._describe(core.rip, core)} ({state_name(core)})"

    # ------------------------------------------------------------ breakpoints
    def cmd_break(self, args: list[str], temporary: bool = False) -> None:
        if not args:
            raise CommandError("break needs a location: a symbol or an address")
        location = " ".join(args).strip()
        address = self.evaluate(location.removeprefix("*"))  # gdb's *ADDRESS
        point = self.debugger.add_breakpoint(address, temporary, self._image_cores(self.core))
        self.say(f"{'Temporary breakpoint' if temporary else 'Breakpoint'} {point.number} at "
                 f"{self._describe(address)}{self._kernels_text(point.cores)}")

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
            symbol = self.symbols().symbol(where.strip().lstrip("&"))
            size = symbol.size if symbol and symbol.size in (1, 2, 4, 8) else 8
        point = self.debugger.add_watchpoint(address, size, kind, self._image_cores(self.core))
        label = {"write": "Hardware watchpoint", "read": "Hardware read watchpoint",
                 "access": "Hardware access (read/write) watchpoint"}[kind]
        self.say(f"{label} {point.number}: {self._describe(address)} ({size} bytes){self._kernels_text(point.cores)}")

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
            if stop.kind is not StopKind.STEP or self._interrupted:
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
            if stop.kind not in (StopKind.STEP, StopKind.BREAKPOINT) or stop.core != core.index or self._interrupted:
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
        point = self.debugger.add_breakpoint(address, temporary=False, cores=[core])
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
        label = self._label(core)
        if self._interrupted and stop.kind in (StopKind.INTERRUPT, StopKind.STEP):
            self.say("Interrupted (Ctrl-C): every core stopped")
            self._info_cores()
        elif stop.kind is StopKind.BREAKPOINT:
            numbers = [b.number for b in self.debugger.breakpoints.values() if b.address == stop.address]
            which = f"breakpoint {numbers[0]}" if numbers else "temporary breakpoint"
            self.say(f"Core {label} hit {which} at {self._describe(stop.address)}")
        elif stop.kind is StopKind.WATCHPOINT:
            self.say(f"Core {label} hit {stop.watch} watchpoint on {self._describe(stop.address)}")
            if stop.old is not None:
                self.say(f"Old value = {stop.old:#x}")
                self.say(f"New value = {stop.new:#x}")
        elif stop.kind is StopKind.INTERRUPT:
            self.say(f"Core {label} interrupted")
        elif stop.reason:
            self.say(stop.reason)
        self._show_current(core)

    def _show_current(self, core: Core) -> None:
        rip = core.rip
        if core.state is CoreState.WAIT_FOR_SIPI:
            self.say(f"=> core {self._label(core)} waits for a STARTUP IPI")
            return
        try:
            text = self._format_instruction(self._instructions(core, rip, 1)[0], core)
        except (DebugMemoryError, IndexError):
            text = f"{self._describe(rip, core)}: <cannot read>"
        image = self.image_of(core)
        source = image.lines.lookup(rip) if image is not None and image.lines else None
        if source is not None:
            text += f"\t[{source[0]}:{source[1]}]"
        self.say(f"=> {text}")

    # ------------------------------------------------------------ inspecting
    def cmd_info(self, args: list[str]) -> None:
        if not args:
            raise CommandError('"info" must be followed by breakpoints, registers, cores or kernels')
        what, rest = args[0], args[1:]
        if "breakpoints".startswith(what) or "watchpoints".startswith(what):
            self._info_breakpoints()
        elif "registers".startswith(what) or what == "all-registers":
            self._info_registers(rest)
        elif "cores".startswith(what) or "threads".startswith(what):
            self._info_cores()
        elif "kernels".startswith(what) or "inferiors".startswith(what):
            self._info_kernels()
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
            core = self.machine.cores[point.cores[0]] if point.cores else self.core
            if hasattr(point, "temporary"):
                kind, disp = "breakpoint", "del " if point.temporary else "keep"
                what = self._symbol_text(point.address, core)
            else:
                kind, disp = f"{point.kind} watchpoint", "keep"
                what = f"{self._symbol_text(point.address, core)} ({point.length} bytes)"
            self.say(f"{point.number:<7} {kind:<15} {disp} {point.address:#018x} {what}"
                     f"{self._kernels_text(point.cores)}")
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
        """One line per core: the --kernel kernel's cores first, then the rest."""
        labelled = self.machine.kernels[0].placement.labelled
        width = max([len(kernel.name) for kernel in self.machine.kernels] + [6])
        kernel_head = f"{'Kernel':<{width}} " if labelled else ""
        self.say(f"  Id   {kernel_head}APIC ID  State           Mode                 RIP")
        cores = list(self.machine.cores)
        if self.focus is not None:
            first = {core.index for core in self.focus.cores}
            cores = self.focus.cores + [core for core in cores if core.index not in first]
        for core in cores:
            marker = "*" if core.index == self.debugger.selected else " "
            kernel = self.machine.kernel_of(core)
            name = f"{kernel.name if kernel is not None else '-':<{width}} " if labelled else ""
            self.say(f"{marker} {core.index:<4} {name}{core.apic_id:<8} {state_name(core):<15} "
                     f"{self._mode(core):<20} {self._describe(core.rip, core)}")

    def _info_kernels(self) -> None:
        """One line per kernel: its cores (machine indices), their APIC IDs,
        its image and how its current life has ended, or ``running``."""
        rows = []
        for kernel in self.machine.kernels:
            marker = "*" if any(core.index == self.debugger.selected for core in kernel.cores) else " "
            image = kernel.image.path if kernel.image is not None else "(no image)"
            end = kernel.end.describe() if kernel.end is not None else "running"
            if kernel.lives:
                end += f" (life {len(kernel.lives) + 1}, after {len(kernel.lives)} restarts)"
            rows.append((marker, kernel.name, number_runs(core.index for core in kernel.cores) or "none",
                         number_runs(kernel.placement.apic_ids) or "none", image, end))
        head = (" ", "Name", "Cores", "APIC IDs", "Image", "State")
        widths = [max(len(row[column]) for row in [head, *rows]) for column in range(1, 5)]
        for row in [head, *rows]:
            cells = "  ".join(f"{cell:<{width}}" for cell, width in zip(row[1:5], widths))
            self.say(f"{row[0]} {cells}  {row[5]}")

    def _mode(self, core: Core) -> str:
        """The core's operating mode (Intel SDM Vol. 3A 2.2, "Modes of
        Operation"): real-address mode while CR0.PE is clear; IA-32e (long)
        mode while EFER.LMA is set, in its 64-bit submode when CS.L is set and
        in compatibility mode otherwise; else protected mode.  The width is
        the code segment's default operand size, from CS.L and CS.D (3.4.5).
        A core waiting for its STARTUP IPI runs in no mode at all."""
        if core.state is CoreState.WAIT_FOR_SIPI:
            return "wait-for-SIPI"
        try:
            mode, width = core.mode(), core.code_width()
        except GuestFault:
            return "?"
        if mode is Mode.LONG:
            return "long 64-bit" if width == 64 else f"compatibility {width}-bit"
        return f"{mode.value} {width}-bit"

    def cmd_core(self, args: list[str]) -> None:
        if not args:
            self.say(f"[Current core is {self._label(self.core)}]")
            return
        index = self._core_index(args[0])
        self.debugger.selected = index
        self.say(f"[Switching to core {self._label(self.core)} (APIC ID {self.core.apic_id})]")
        self._show_current(self.core)

    def _core_index(self, text: str) -> int:
        """A core by machine index (``5``) or by label (``c5``, ``k2/c16``)."""
        labels = {self.machine.core_label(index): index for index in range(len(self.machine.cores))}
        if text in labels:
            return labels[text]
        last = len(self.machine.cores) - 1
        try:
            index = int(text, 0)
        except ValueError:
            raise CommandError(f"Invalid core {text}: give a number 0-{last} or a label such as "
                               f"{self.machine.core_label(last)}") from None
        if not 0 <= index <= last:
            raise CommandError(f"Invalid core {index}: the machine has cores 0-{last}")
        return index

    def cmd_kernel(self, args: list[str]) -> None:
        kernel = self.machine.kernel_of(self.core)
        if not args:
            name = kernel.name if kernel is not None else "none (an offline core)"
            self.say(f"[Current kernel is {name}]")
            return
        kernel = self._kernel_named(args[0], f"kernel {args[0]}", CommandError)
        self.debugger.selected = kernel.cores[0].index
        self.say(f"[Switching to kernel {kernel.name}, core {self._label(self.core)} "
                 f"(APIC ID {self.core.apic_id})]")
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
                self.say("   " + self._format_instruction(instruction, self.core))
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
        symbol = self.symbols().find(start)
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
            self.say(marker + self._format_instruction(found[0], core))
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

    def cmd_print(self, args: list[str], fmt: str | None = None) -> None:
        """``print[/F] EXPR``, F one of gdb's output format letters."""
        letter = _print_format(fmt) if fmt is not None else ""
        if not args:
            raise CommandError("print needs an expression")
        value = self.evaluate_value(" ".join(args), values=True)
        self.values.append(value)
        self.say(f"${len(self.values)} = {format_value(value, letter, self._describe)}")

    def cmd_quit(self, args: list[str]) -> bool:
        return True

    def cmd_help(self, args: list[str]) -> None:
        self.say("break/tbreak LOC, delete [N], info breakpoints, watch|rwatch|awatch ADDR[:LEN], continue, "
                 "stepi [N], nexti [N], finish, info registers [REG...], x/NFU ADDR, disassemble [LOC], "
                 f"backtrace, core N|LABEL, kernel NAME, info cores, info kernels, print[/{PRINT_FORMATS}] EXPR, "
                 "quit; Ctrl-C stops a running machine")

    # ------------------------------------------------------------ disassembly
    def _instructions(self, core: Core, address: int, count: int) -> list:
        try:
            return core.decode(address, count)
        except (TranslationFault, GuestFault) as error:
            raise DebugMemoryError(f"cannot access memory at {address:#x}: {error}") from None

    def _format_instruction(self, instruction, core: Core) -> str:
        """``0x100010 <kmain+0x10>:  call 0x1004b0 <ap_main>``: a direct
        branch's target is named, as gdb names it."""
        text = f"{self._describe(instruction.address, core)}:\t{instruction.mnemonic} {instruction.op_str}".rstrip()
        if _is_branch(instruction.mnemonic) and re.fullmatch(r"0x[0-9a-f]+", instruction.op_str):
            name = self.symbols(core).lookup(int(instruction.op_str, 16))
            if name:
                text += f" <{name}>"
        return text


def _is_branch(mnemonic: str) -> bool:
    return mnemonic in ("call", "jmp") or mnemonic.startswith(("j", "loop"))


def _print_format(fmt: str) -> str:
    """The letter of ``print/FMT``, refused as gdb refuses what print cannot use."""
    match = _PRINT_FORMAT.match(fmt)
    if not match or not fmt:
        raise CommandError(f'Invalid format "{fmt}": use print/F with F one of {PRINT_FORMATS}')
    count, letters = match.groups()
    if count and int(count) != 1:
        raise CommandError('Item count other than 1 is meaningless in "print" command.')
    sizes = [letter for letter in letters if letter in _UNIT_BYTES]
    if sizes:
        raise CommandError('Size letters are meaningless in "print" command.')
    if len(letters) != 1:
        raise CommandError(f'Invalid format "{fmt}": use print/F with F one of {PRINT_FORMATS}')
    if letters in "si":
        raise CommandError(f'Format letter "{letters}" is meaningless in "print" command.')
    if letters not in PRINT_FORMATS:
        raise CommandError(f'Undefined output format "{letters}".')
    return letters


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
        return char_literal(value - 256 if value & 0x80 else value)
    return f"{value:#x}"  # "a": an address


def _same_file(a: str, b: str) -> bool:
    return a == b or os.path.realpath(a) == os.path.realpath(b)


__all__ = ["PRINT_FORMATS", "CommandError", "DebugConsole"]
