"""``osvemu trace``: an instruction and event trace researchers can read and diff.

Instruction lines::

    c0        1234 0x0000000000100010 <pvh_start+0x10>        89 1d 00 10 10 00   mov dword ptr [0x101000], ebx

(core, instructions that core retired before this one, address, symbol,
bytes, disassembly; with ``--regs`` an indented line of the registers the
instruction changed).  Event lines carry ``**`` in place of the address and
appear in execution order among the instructions.  Under OSV a core is
named with its kernel (``k2/c16``, :meth:`Machine.core_label`), ``--kernel``
keeps only some kernels' cores, and OSV's own work shows as ``osv`` events:
every hypercall it served, every violation, and every refusal of an IPI,
each with its reason.  ``--format perfetto`` writes the events as Chrome
trace-event JSON instead (:mod:`osvemu.debug.perfetto`).

Hooks exist only where tracing is on: instruction hooks on the traced cores
and range, a code hook on the ``--from``/``--until`` address, memory hooks on
``--watch`` ranges.  A run in the default deterministic mode produces a
byte-identical trace every time.
"""

from __future__ import annotations

import contextlib
import functools
import re
import reprlib
import sys
from dataclasses import dataclass, field
from typing import IO, ClassVar

import capstone
from unicorn import x86_const as r

from osvemu.cpu import x86
from osvemu.cpu.core import GENERAL_REGISTERS, Core, CoreState
from osvemu.cpu.paging import TranslationFault
from osvemu.errors import ConfigError, GuestFault
from osvemu.events import (
    Event,
    InitReceived,
    IpiRefused,
    IpiSent,
    Locate,
    OsvRefused,
    Record,
    StartupReceived,
    ViolationKind,
)
from osvemu.image import KernelImage
from osvemu.platform.machine import Machine
from osvemu.scheduler import RunResult, Scheduler

#: Registers --regs compares (rip is left out: the next line shows it).
_DIFF_NAMES = tuple(name for name in GENERAL_REGISTERS if name != "rip")
_DIFF_IDS = tuple(GENERAL_REGISTERS[name] for name in _DIFF_NAMES)
_CAPSTONE_MODES = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
_MODE_REGISTERS = (r.UC_X86_REG_CR0, r.UC_X86_REG_CS)


@dataclass(frozen=True)
class ModeChanged(Record):
    """The core's operating mode changed (real, protected, paging, long)."""

    name: ClassVar[str] = "mode"
    before: str
    after: str

    def describe(self, located: Locate) -> str:
        return f"{self.before} -> {self.after}"


@dataclass(frozen=True)
class MemoryWritten(Record):
    """A write to a ``--watch`` range."""

    name: ClassVar[str] = "write"
    address: int
    size: int
    value: int
    rip: int

    def describe(self, located: Locate) -> str:
        return f"[{self.address:#x}] {self.size} bytes = {self.value:#x} by {located(self.rip)}"


@dataclass(frozen=True)
class UntilReached(Record):
    name: ClassVar[str] = "until"
    address: int

    def describe(self, located: Locate) -> str:
        return f"reached {located(self.address)}"


@dataclass
class TraceOptions:
    cores: list[int] | None = None
    start: str | None = None
    until: str | None = None
    range: str | None = None
    count: int | None = None
    events_only: bool = False
    regs: bool = False
    watches: list[str] = field(default_factory=list)
    output: str = "-"
    kernels: list[str] | None = None
    format: str = "text"

    @classmethod
    def from_args(cls, args) -> TraceOptions:
        """The trace options of the command line, each checked here except
        what needs the image or the machine (symbol and kernel names are
        looked up once they are built)."""
        if args.fast:
            raise ConfigError("osvemu trace runs in the deterministic mode; --fast is not supported")
        if args.format == "perfetto":
            for option, given in (("--regs", args.regs), ("--range", args.range), ("--count", args.count)):
                if given:
                    raise ConfigError(f"--format perfetto exports events, not instructions: {option} does not apply")
        for what, text in (("--from", args.start), ("--until", args.until)):
            if text is not None:
                check_location(text, what)
        if args.range is not None:
            split_range(args.range)
        for watch in args.watch:
            split_watch(watch)
        return cls(args.core, args.start, args.until, args.range, args.count,
                   args.events_only or args.format == "perfetto", args.regs, args.watch, args.output, args.kernel,
                   args.format)

    @contextlib.contextmanager
    def open_output(self):
        if self.output == "-":
            yield sys.stdout
            sys.stdout.flush()
            return
        try:
            handle = open(self.output, "w")  # noqa: SIM115 - closed below
        except OSError as error:
            raise ConfigError(f"-o {self.output}: cannot write: {error.strerror}") from None
        with handle:
            yield handle

    def console_sink(self, output: IO[str]):
        """Where guest console lines go besides the trace's ``uart`` events:
        nowhere when the trace itself is on standard output."""
        if output is sys.stdout:
            return lambda line: None
        return None  # the machine's default: standard output


#: Addresses are 64-bit; a watched range is at most this long.
ADDRESS_LIMIT = 1 << 64
MAX_WATCH_LENGTH = 1 << 30
#: What a symbol name may look like (C, assembler and linker names).
_SYMBOL = re.compile(r"[A-Za-z_.$][\w.$@]{0,255}", re.ASCII)


def _number(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def check_location(text: str, what: str) -> None:
    """``text`` is an address 0..2**64-1 or looks like a symbol name."""
    number = _number(text)
    if number is None and not _SYMBOL.fullmatch(text):
        raise ConfigError(f"{what} {reprlib.repr(text)}: expected an address or a symbol name")
    if number is not None and not 0 <= number < ADDRESS_LIMIT:
        raise ConfigError(f"{what} {reprlib.repr(text)}: an address is 0..{ADDRESS_LIMIT - 1:#x}")


def split_range(text: str) -> tuple[str, str]:
    """``LO-HI`` as its two locations, each checked."""
    low, sep, high = text.partition("-")
    if not sep:
        raise ConfigError(f"--range {reprlib.repr(text)}: expected LO-HI")
    check_location(low, "--range")
    check_location(high, "--range")
    return low, high


def split_watch(text: str) -> tuple[str, int]:
    """``ADDR[:LEN]`` as its location and length (default 8), each checked."""
    where, sep, length = text.partition(":")
    check_location(where, "--watch")
    size = _number(length) if sep else 8
    if size is None or not 1 <= size <= MAX_WATCH_LENGTH:
        raise ConfigError(f"--watch {reprlib.repr(text)}: the length must be an integer 1..{MAX_WATCH_LENGTH:#x}")
    return where, size


def resolve(text: str, image: KernelImage, what: str) -> int:
    """A number (any base Python reads) or a symbol of the image."""
    check_location(text, what)
    number = _number(text)
    if number is not None:
        return number
    address = image.symbols.address_of(text)
    if address is None:
        raise ConfigError(f"{what} {text}: no such symbol in {image.path}")
    return address


def parse_range(text: str, image: KernelImage) -> tuple[int, int]:
    low, high = split_range(text)
    lo, hi = resolve(low, image, "--range"), resolve(high, image, "--range")
    if hi < lo:
        raise ConfigError(f"--range {text}: the end is below the start")
    return lo, hi


def parse_watch(text: str, image: KernelImage) -> tuple[int, int]:
    where, size = split_watch(text)
    address = resolve(where, image, "--watch")
    if address + size > ADDRESS_LIMIT:
        raise ConfigError(f"--watch {text}: the range passes the end of the address space")
    return address, size


def traced_cores(machine: Machine, cores: list[int] | None, kernels: list[str] | None) -> list[int]:
    """The indices of the cores ``--core`` and ``--kernel`` keep (each
    option, when given, keeps only what it names), checked against the machine."""
    count = len(machine.cores)
    for index in cores or []:
        if not 0 <= index < count:
            raise ConfigError(f"--core {index}: the machine has cores 0-{count - 1}")
    kept = set(cores) if cores else set(range(count))
    if kernels:
        named = {kernel.name: kernel for kernel in machine.kernels if kernel.placement.labelled}
        if not named:
            raise ConfigError("--kernel: the bare machine runs no OSV kernels (it names cores only: use --core)")
        for name in kernels:
            if name not in named:
                raise ConfigError(f"--kernel {reprlib.repr(name)}: no such kernel; the kernels are "
                                  f"{', '.join(named)}")
        kept &= {core.index for name in kernels for core in named[name].cores}
        if not kept:
            raise ConfigError(f"--core and --kernel together leave no core to trace (kernel "
                              f"{', '.join(kernels)} has none of cores {', '.join(map(str, sorted(set(cores))))})")
    return sorted(kept)


class Tracer:
    def __init__(self, machine: Machine, scheduler: Scheduler, image: KernelImage, options: TraceOptions,
                 output: IO[str]) -> None:
        self.machine, self.scheduler, self.image, self.options, self.out = machine, scheduler, image, options, output
        self.cores = [machine.cores[i] for i in traced_cores(machine, options.cores, options.kernels)]
        self.traced = {core.index for core in self.cores}
        self.labels = {core.index: machine.core_label(core.index) for core in self.cores}
        width = max(4, *(len(label) for label in self.labels.values()))  # "c31 " on the bare machine, as always
        self.labels = {index: f"{label:<{width}}" for index, label in self.labels.items()}
        # Each core is symbolised with its own kernel's image (kernels may run
        # different ones), and locations are names in the image the traced
        # cores run, when they run one: the traced image (with --symbols, if
        # given) stands for the kernels that run it.
        self._images = {core.index: self._image_of(core) for core in self.cores}
        own = {id(each): each for each in self._images.values()}
        image = next(iter(own.values())) if len(own) == 1 else image
        #: The cores whose reaching --from or --until counts: those that run the image it names.
        self._location_cores = [core for core in machine.cores if self._image_of(core) is image]
        self.range = parse_range(options.range, image) if options.range else None
        self.watches = [parse_watch(w, image) for w in options.watches]
        self.start = resolve(options.start, image, "--from") if options.start else None
        self.until = resolve(options.until, image, "--until") if options.until else None
        self.active = False
        self.traced_count = 0
        self._end_reason: str | None = None
        self._activate = False
        self._hooks: list[tuple[Core, int]] = []  # (core, hook handle)
        self._start_hooks: list[tuple[Core, int]] = []
        self._pending: dict[int, tuple[str, tuple[int, ...]]] = {}  # per core: line waiting for its register diff
        self._mode: dict[int, tuple[int, int, int]] = {}
        self._disassemblers = {width: capstone.Cs(capstone.CS_ARCH_X86, mode) for width, mode in _CAPSTONE_MODES.items()}
        self._text_cache: dict[tuple[int, int, bytes], str] = {}
        self._symbol_cache: dict[tuple[int, int], str] = {}  # (image, address) -> "<name+off>"
        self._locate = {core.index: functools.partial(self._located, core.index) for core in self.cores}
        self._width: dict[int, tuple[tuple[int, int, int], int]] = {}
        #: Per core: the IPI refusals just shown as ``osv`` events, whose
        #: violation records (OsvRefused, which follow) are not shown again.
        self._refusals_shown: dict[int, list[str]] = {}
        #: --format perfetto: where the events go instead of text lines.
        self.exporter = None
        if options.format == "perfetto":
            from osvemu.debug.perfetto import PerfettoExporter

            self.exporter = PerfettoExporter(machine, scheduler, self.cores, output, self._locate)

    # ------------------------------------------------------------ the run
    def run(self) -> tuple[int, str]:
        self.machine.events.subscribe(self._on_event)
        self.scheduler.slice_observers.append(self._on_slice_end)
        if self.start is None:
            self._start_tracing()
        else:
            for core in self._location_cores:
                self._start_hooks.append((core, core.add_code_hook(functools.partial(self._on_start, core),
                                                                   self.start, self.start)))
        if self.until is not None:
            for core in self._location_cores:
                self._hooks.append((core, core.add_code_hook(functools.partial(self._on_until, core),
                                                             self.until, self.until)))
        while True:
            outcome = self.scheduler.advance()
            self.scheduler.pause_requested = False
            if outcome is not None:
                self._flush_all()
                return outcome
            if self._activate:
                self._activate = False
                for core, handle in self._start_hooks:
                    core.remove_hook(handle)
                self._start_hooks.clear()
                self._start_tracing()
            if self._end_reason is not None:
                self._flush_all()
                return 0, self._end_reason

    def close(self) -> None:
        """Unhook everything; a Perfetto trace gets its closing bracket (called
        in a ``finally``: the file is valid JSON however the run ended)."""
        with contextlib.suppress(ValueError):  # not subscribed yet: the run never started
            self.machine.events.unsubscribe(self._on_event)
        with contextlib.suppress(ValueError):  # not observing yet
            self.scheduler.slice_observers.remove(self._on_slice_end)
        for core, handle in self._hooks + self._start_hooks:
            core.remove_hook(handle)
        if self.exporter is not None:
            self.exporter.close()

    def _start_tracing(self) -> None:
        self.active = True
        if self.exporter is not None:
            self.exporter.start()
        for core in self.cores:
            if not self.options.events_only:
                low, high = self.range if self.range else (1, 0)
                self._hooks.append((core, core.add_code_hook(functools.partial(self._on_instruction, core), low, high)))
            for address, length in self.watches:
                self._hooks.append((core, core.add_memory_hook("write", functools.partial(self._on_write, core),
                                                               address, address + length - 1)))
        for core in self.cores:
            self._check_mode(core)

    # ------------------------------------------------------------ hooks
    def _on_start(self, core: Core, address: int, size: int) -> None:
        self._activate = True
        core.pause_before_instruction()
        self.scheduler.pause_requested = True

    def _on_until(self, core: Core, address: int, size: int) -> None:
        if not self.active:
            return
        self._end_reason = f"core {core.index} reached --until {self.options.until} ({address:#x})"
        self._write_event(core.index, core.retired_now(), UntilReached(address))
        core.pause_before_instruction()
        self.scheduler.pause_requested = True

    def _on_instruction(self, core: Core, address: int, size: int) -> None:
        if self._end_reason is not None:
            return
        if self.options.count is not None and self.traced_count >= self.options.count:
            self._end_reason = f"traced {self.traced_count} instructions (--count)"
            core.pause_before_instruction()
            self.scheduler.pause_requested = True
            return
        self.traced_count += 1
        index = core.retired_now()
        self._flush(core)
        width = self._check_mode(core)
        code = self._code(core, address, size)
        line = (f"{self.labels[core.index]} {index:>10} {address:#018x} {self._symbol(core.index, address):<28} "
                f"{code.hex(' '):<30} {self._text(width, address, code)}\n")
        if self.options.regs:
            self._pending[core.index] = (line, tuple(core.read_registers(_DIFF_IDS)))
        else:
            self.out.write(line)

    @staticmethod
    def _code(core: Core, address: int, size: int) -> bytes:
        """The instruction's bytes at its linear address (none where the
        walk fails: the core is about to fault on it anyway)."""
        try:
            return core.read_linear(address, size)
        except (TranslationFault, GuestFault):
            return b""

    def _on_write(self, core: Core, is_write: bool, address: int, size: int, value: int) -> None:
        self._write_event(core.index, core.retired_now(),
                          MemoryWritten(address, size, value & ((1 << (8 * size)) - 1), core.rip))

    def _on_slice_end(self, core: Core, _start_ns: int, _retired: int) -> None:
        if self.active and core.index in self.traced:
            self._flush(core)
            self._check_mode(core)
            if self.exporter is not None:
                self.exporter.slice_ended(core)

    def _on_event(self, event: Event) -> None:
        if not self.active or event.core not in self.traced:
            return
        core = self.machine.cores[event.core]
        self._flush(core)
        record = event.record
        if isinstance(record, OsvRefused) and record.kind is ViolationKind.IPI:
            shown = self._refusals_shown.get(event.core, [])
            if record.reason in shown:
                shown.remove(record.reason)
                return  # shown with its IPI, below
        self._write_event(event.core, event.instruction, record)
        if isinstance(record, IpiSent):
            self._show_refusals(event, record)
        if isinstance(event.record, (InitReceived, StartupReceived)):  # a new start: the mode before it is gone
            self._mode.pop(core.index, None)
            self._width.pop(core.index, None)
        self._check_mode(core)

    # ------------------------------------------------------------ output
    def _flush(self, core: Core) -> None:
        pending = self._pending.pop(core.index, None)
        if pending is None:
            return
        line, before = pending
        after = core.read_registers(_DIFF_IDS)
        changes = [f"{name} {old:#x} -> {new:#x}" for name, old, new in zip(_DIFF_NAMES, before, after) if old != new]
        self.out.write(line)
        if changes:
            self.out.write(f"{'':>16}{', '.join(changes)}\n")

    def _flush_all(self) -> None:
        for core in self.cores:
            self._flush(core)

    def _show_refusals(self, event: Event, record: IpiSent) -> None:
        """Under OSV, each refusal of the ICR write as an ``osv`` event with its
        reason (the machine records the isolation refusals as violations too)."""
        kernel = self.machine.kernel_of(self.machine.cores[event.core])
        if kernel is None or not kernel.placement.labelled:
            return
        shown = self._refusals_shown[event.core] = []
        for apic_id, reason in record.refused:
            self._write_event(event.core, event.instruction, IpiRefused(kernel.name, record.icr, apic_id, reason))
            shown.append(f"{record.icr}: {reason}")

    def _write_event(self, core: int, index: int, record: Record) -> None:
        if self.exporter is not None:
            self.exporter.event(Event(core, index, record))
            return
        self.out.write(f"{self.labels[core]} {index:>10} {'**':<18} {record.name} "
                       f"{record.describe(self._locate[core])}\n")

    def _image_of(self, core: Core) -> KernelImage:
        kernel = self.machine.kernel_of(core)
        image = kernel.image if kernel is not None else None
        return self.image if image is None or image.path == self.image.path else image

    def _located(self, core: int, address: int) -> str:
        symbol = self._symbol(core, address)
        return f"{address:#x} {symbol}" if symbol else f"{address:#x}"

    def _symbol(self, core: int, address: int) -> str:
        image = self._images[core]
        key = (id(image), address)
        text = self._symbol_cache.get(key)
        if text is None:
            name = image.symbols.lookup(address)
            text = f"<{name}>" if name else ""
            self._symbol_cache[key] = text
        return text

    def _text(self, width: int, address: int, code: bytes) -> str:
        key = (width, address, code)
        text = self._text_cache.get(key)
        if text is None:
            found = list(self._disassemblers[width].disasm(code, address, 1))
            text = f"{found[0].mnemonic} {found[0].op_str}".strip() if found else "(bad)"
            self._text_cache[key] = text
        return text

    # ------------------------------------------------------------ modes
    def _check_mode(self, core: Core) -> int:
        """Emit a ``mode`` event when the core's operating mode changed;
        return the code width (16, 32 or 64)."""
        if core.state is CoreState.WAIT_FOR_SIPI:
            return 16
        cr0, cs = core.read_registers(_MODE_REGISTERS)
        key = (cr0 & (x86.CR0_PE | x86.CR0_PG), core.efer() & x86.EFER_LMA, cs)
        cached = self._width.get(core.index)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            width = core.code_width()
        except GuestFault:
            width = 64
        self._width[core.index] = (key, width)
        name = _mode_name(key, width)
        previous = self._mode.get(core.index)
        self._mode[core.index] = name
        if previous is not None and previous != name:
            self._write_event(core.index, core.retired_now(), ModeChanged(previous, name))
        return width


def _mode_name(key: tuple[int, int, int], width: int) -> str:
    cr0, lma, _ = key
    if not cr0 & x86.CR0_PE:
        return "real"
    paging = "paging on" if cr0 & x86.CR0_PG else "paging off"
    if lma:
        return "long 64-bit" if width == 64 else f"long compatibility {width}-bit"
    return f"protected {width}-bit, {paging}"


def run_trace(machine: Machine, scheduler: Scheduler, image: KernelImage, options: TraceOptions,
              output: IO[str]) -> RunResult:
    tracer = Tracer(machine, scheduler, image, options, output)
    scheduler.start()
    outcome = None
    try:
        outcome = tracer.run()
    finally:
        tracer.close()
        result = scheduler.finish(outcome)
    return result


__all__ = ["TraceOptions", "Tracer", "run_trace"]
