"""Command line: ``osvemu boot|trace|debug|tables IMAGE [options]`` and
``osvemu config check FILE``.

Every option is parsed by a converter that checks its bounds, and every
error, from an option, a configuration or an image, is one line on standard
error and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from dataclasses import dataclass

from osvemu.errors import ConfigError, ImageError, OsvemuError
from osvemu.image import KernelImage, load_image, load_symbols
from osvemu.osv.config import MAX_KERNELS
from osvemu.osv.schema import printable
from osvemu.platform import layout
from osvemu.platform.firmware import CMDLINE_MAX
from osvemu.platform.initrd import load_initrd
from osvemu.platform.layout import parse_size
from osvemu.platform.machine import Machine
from osvemu.platform.plan import bare_plan
from osvemu.platform.topology import MAX_APIC_ID, MAX_CORES_PER_SOCKET, MAX_MEMORY, MAX_SOCKETS, MIN_MEMORY, Topology
from osvemu.report import build_report, check_writable, write_report
from osvemu.scheduler import DEFAULT_QUANTUM, RunLimits, RunResult, Scheduler


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit status 2
        raise ConfigError(f"{self.prog}: {printable(message)}")


#: Bounds of the options (each checked where it is parsed, in one line).
MAX_QUANTUM = 10_000_000
MAX_INSTRUCTIONS = 1 << 62
MAX_TIMEOUT = 1e6  # seconds: about 11.5 days
MAX_PORT = 65535
#: Machine defaults, resolved after parsing so that an option given
#: alongside --config can be told apart from one left at its default.
DEFAULT_SOCKETS = 4
DEFAULT_CORES_PER_SOCKET = 8
DEFAULT_MEMORY = 2 * layout.GiB
#: The options --config replaces (it describes the machine and each kernel), and where it says it instead.
CONFIG_REPLACES = {"sockets": "[machine] sockets", "cores_per_socket": "[machine] cores_per_socket",
                   "memory": "[machine] memory", "cmdline": "each [[kernel]]'s cmdline",
                   "kernels": "one [[kernel]] table per kernel", "initrd": "each [[kernel]]'s initrd"}


def _shown(text: str) -> str:
    return printable(repr(text[:40] + ("..." if len(text) > 40 else "")))


def _integer(name: str, low: int = 1, high: int = MAX_INSTRUCTIONS):
    """An integer option in ``low..high`` (any base Python reads)."""
    def convert(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise ConfigError(f"--{name} must be an integer, not {_shown(text)}") from None
        if not low <= value <= high:
            raise ConfigError(f"--{name} must be {low}..{high}, not {value if value.bit_length() < 80 else _shown(text)}")
        return value
    return convert


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--timeout must be a number of seconds, not {_shown(text)}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise ConfigError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds, not {_shown(text)}")
    return value


def _memory_size(text: str) -> int:
    size = parse_size(text, "--memory")
    if size % layout.PAGE_SIZE:
        raise ConfigError(f"--memory {_shown(text)}: the memory size must be a multiple of 4 KiB")
    if not MIN_MEMORY <= size <= MAX_MEMORY:
        raise ConfigError(f"--memory {_shown(text)}: the memory size must be {MIN_MEMORY >> 20} MiB..{MAX_MEMORY >> 40} TiB")
    return size


def _cmdline(text: str) -> str:
    try:
        encoded = text.encode()
    except UnicodeEncodeError:
        raise ConfigError("--cmdline: the command line is not valid UTF-8") from None
    if len(encoded) > CMDLINE_MAX:
        raise ConfigError(f"--cmdline: the command line is {len(encoded)} bytes, at most {CMDLINE_MAX} fit")
    if "\0" in text:
        raise ConfigError("--cmdline: the command line contains a NUL character")
    return text


def _path(name: str):
    """A file name option: not empty and without NUL (which no file name holds)."""
    def convert(text: str) -> str:
        if not text or "\0" in text:
            raise ConfigError(f"--{name} {_shown(text)}: not a file name")
        return text
    return convert


def _output_file(name: str):
    """A file to write: a file name that is not a directory ("-" is standard output)."""
    def convert(text: str) -> str:
        _path(name)(text)
        if text != "-" and os.path.isdir(text):
            raise ConfigError(f"--{name} {_shown(text)}: is a directory, not a file to write")
        return text
    return convert


_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _gdb_address(text: str) -> str:
    """``[HOST:]PORT``: a host name or IPv4 address, and a port 0..65535 (0: any free port)."""
    host, _, port = text.rpartition(":")
    if not (port.isascii() and port.isdigit()) or len(port) > 5 or int(port) > MAX_PORT:
        raise ConfigError(f"--gdb {_shown(text)}: expected [HOST:]PORT with a port 0..{MAX_PORT}")
    if host and not _HOST.fullmatch(host):
        raise ConfigError(f"--gdb {_shown(text)}: {_shown(host)} is not a host name or IPv4 address")
    return text


def add_machine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", type=_path("image"), help="x86-64 ELF image with a PVH entry note")
    parser.add_argument("--sockets", type=_integer("sockets", 1, MAX_SOCKETS), default=None,
                        help=f"processor sockets (default {DEFAULT_SOCKETS})")
    parser.add_argument("--cores-per-socket", type=_integer("cores-per-socket", 1, MAX_CORES_PER_SOCKET), default=None,
                        help=f"cores per socket (default {DEFAULT_CORES_PER_SOCKET})")
    parser.add_argument("--memory", type=_memory_size, default=None, help="RAM size, e.g. 2G (default)")
    parser.add_argument("--cmdline", "--append", dest="cmdline", type=_cmdline, default=None,
                        help="kernel command line (--append, as QEMU calls it)")
    parser.add_argument("--initrd", type=_path("initrd"), default=None, metavar="FILE",
                        help="initial RAM disk, handed to the kernel as PVH module 0")
    parser.add_argument("--quantum", type=_integer("quantum", 1, MAX_QUANTUM), default=None,
                        help=f"instructions per core per round in deterministic mode (default {DEFAULT_QUANTUM})")
    parser.add_argument("--fast", action="store_true", help="host-timer preemption: faster, not deterministic")
    parser.add_argument("--jobs", type=_integer("jobs", 1, 256), default=None, metavar="N",
                        help="OSV: run the kernels in N host processes (default: one per host core, at most one "
                             "per kernel); the results are the same for every N")
    parser.add_argument("--exact", action="store_true",
                        help="deterministic slices of exactly --quantum instructions, counted one by one "
                             "(the default counts whole translation blocks; trace, debug and --gdb always count exactly)")
    parser.add_argument("--max-instructions", type=_integer("max-instructions"), default=None,
                        help="stop after this many instructions in total")
    parser.add_argument("--timeout", type=_seconds, default=None, help="stop after this many host seconds")
    parser.add_argument("--report", type=_output_file("report"), default=None, help="write a JSON report to this file")
    parser.add_argument("--config", type=_path("config"), default=None, metavar="FILE",
                        help="OSV partition configuration (TOML)")
    parser.add_argument("--kernels", type=_integer("kernels", 1, MAX_KERNELS), default=None,
                        help="OSV: split the machine evenly among N kernels (default: one per socket)")
    parser.add_argument("--native", action="store_true", help="no OSV: the whole machine runs one kernel")


def add_gdb_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gdb", metavar="[HOST:]PORT", type=_gdb_address, default=None,
                        help="serve the GDB remote protocol (localhost unless HOST is given; port 0: any free one)")
    parser.add_argument("--gdb-wait", action="store_true", help="wait for the debugger before the first instruction")


def add_symbol_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", type=_path("symbols"), default=None, metavar="FILE",
                        help="symbols for a stripped image: its System.map, or an ELF with a symbol table")


def add_trace_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--core", type=_integer("core", 0, MAX_APIC_ID), action="append", default=None, metavar="N",
                        help="trace only this core (repeatable; default all)")
    parser.add_argument("--from", dest="start", metavar="SYMBOL|ADDR", help="start tracing when a core reaches it")
    parser.add_argument("--until", metavar="SYMBOL|ADDR", help="stop tracing (and the run) when a core reaches it")
    parser.add_argument("--range", metavar="LO-HI", help="trace instructions only in this address range")
    parser.add_argument("--count", type=_integer("count"), help="stop after this many traced instructions")
    parser.add_argument("--events-only", action="store_true", help="trace events, not instructions")
    parser.add_argument("--regs", action="store_true", help="show the registers each instruction changed")
    parser.add_argument("--watch", action="append", default=[], metavar="ADDR[:LEN]",
                        help="report every write to this memory (repeatable)")
    parser.add_argument("-o", "--output", type=_output_file("output"), default="-", metavar="FILE",
                        help="trace file (default standard output)")
    parser.add_argument("--kernel", action="append", default=None, metavar="NAME",
                        help="OSV: trace only this kernel's cores (repeatable; default all)")
    parser.add_argument("--format", choices=("text", "perfetto"), default="text",
                        help="text lines (default), or Chrome trace-event JSON for Perfetto and chrome://tracing")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="osvemu", description="Emulated many-core AMD Opteron machine.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    boot = commands.add_parser("boot", help="boot an ELF image on the machine")
    add_machine_options(boot)
    add_gdb_options(boot)
    trace = commands.add_parser("trace", help="boot an image and trace instructions and events")
    add_machine_options(trace)
    add_trace_options(trace)
    add_symbol_options(trace)
    debug = commands.add_parser("debug", help="boot an image under a gdb-style debugger console")
    add_machine_options(debug)
    add_symbol_options(debug)
    debug.add_argument("--kernel", default=None, metavar="NAME",
                       help="OSV: start on this kernel's first core and list its cores first")
    tables = commands.add_parser("tables", help="print an OSV kernel's rewritten firmware tables and memory map")
    add_machine_options(tables)
    tables.add_argument("--kernel", required=True, metavar="NAME", help="the kernel whose tables to show")
    tables.add_argument("--raw", type=_path("raw"), metavar="DIR", help="also write the binary tables to DIR")
    config = commands.add_parser("config", help="OSV partition configurations")
    actions = config.add_subparsers(dest="action", required=True, parser_class=_Parser)
    check = actions.add_parser("check", help="validate a configuration and print the layout it describes")
    check.add_argument("file", type=_path("config"), metavar="FILE", help="OSV partition configuration (TOML)")
    check.add_argument("image", nargs="?", type=_path("image"), help="the image of kernels that name none")
    verify = commands.add_parser("verify", help="prove, model-check and attack OSV's interface (docs/verification.md)")
    add_verify_options(verify)
    return parser


def _pair(name: str, separator: str, parts: tuple[tuple[str, int, int], ...]):
    """An option made of integers joined by ``separator``: each (meaning, low, high)."""
    def convert(text: str) -> tuple[int, ...]:
        fields = text.split(separator)
        if len(fields) != len(parts):
            raise ConfigError(f"--{name} must be {separator.join(meaning for meaning, _, _ in parts)}, "
                              f"not {_shown(text)}")
        return tuple(_integer(f"{name} {meaning}", low, high)(field) for field, (meaning, low, high) in zip(fields, parts))
    return convert


def _replay_ipi(text: str) -> tuple[int, int, int, str]:
    """SENDER:LOW:HIGH[:STATE], as a counterexample prints it."""
    fields = text.split(":")
    state = fields.pop() if len(fields) == 4 else "reset"
    sender, low, high = _pair("replay-ipi", ":", (("SENDER", 0, MAX_APIC_ID), ("LOW", 0, 0xFFFFFFFF),
                                                  ("HIGH", 0, 0xFFFFFFFF)))(":".join(fields))
    return sender, low, high, state


def add_verify_options(parser: argparse.ArgumentParser) -> None:
    from osvemu.verify.layouts import KNOWN_LAYOUTS

    parser.add_argument("--layout", action="append", choices=KNOWN_LAYOUTS + ("all",), metavar="NAME",
                        help=f"a layout to prove (repeatable; default the five of {', '.join(KNOWN_LAYOUTS[:5])}; "
                             "'all' adds the 255-core one)")
    parser.add_argument("--config", action="append", type=_path("config"), metavar="FILE",
                        help="also prove an OSV partition configuration (TOML; repeatable)")
    parser.add_argument("--jobs", type=_integer("jobs", 1, 256), metavar="N",
                        help="host processes (default one per host core)")
    parser.add_argument("--no-spin", action="store_true", help="skip the SPIN model")
    parser.add_argument("--spin", type=_pair("spin", "x", (("KERNELS", 2, 8), ("CORES", 1, 4))), default=(3, 2),
                        metavar="KxC", help="the SPIN model's kernels x cores (default 3x2; the last kernel is malicious)")
    parser.add_argument("--mutants", action="store_true", help="apply each seeded bug and show which checks catch it")
    parser.add_argument("--mutant", action="append", metavar="NAME", help="with --mutants: only this one (repeatable)")
    parser.add_argument("--campaign", type=_integer("campaign", 1, 10_000_000), metavar="N",
                        help="run N generated attack programs beside an honest kernel")
    parser.add_argument("--seed", type=_integer("seed", 0, (1 << 63) - 1), default=0, metavar="S",
                        help="the campaign's seed (default 0)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the campaign on this Dask scheduler ('local': a local Dask cluster)")
    parser.add_argument("--replay", type=_pair("replay", ":", (("SEED", 0, (1 << 63) - 1), ("INDEX", 0, 1 << 62))),
                        metavar="SEED:INDEX", help="run one campaign program again and show what it did")
    parser.add_argument("--replay-ipi", type=_replay_ipi, metavar="SENDER:LOW:HIGH[:STATE]",
                        help="write one ICR value on a layout's machine and show where it goes")
    parser.add_argument("--json", type=_output_file("json"), metavar="FILE", help="also write the results as JSON")


@dataclass
class Session:
    machine: Machine
    scheduler: Scheduler
    image: KernelImage


def prepare(args: argparse.Namespace, console=None, exact: bool = False) -> Session:
    """Build, load and boot the machine the options describe (``exact``:
    count instructions one by one, as the tracer and debugger need)."""
    if args.report:
        check_writable(args.report)
    if args.fast and args.max_instructions:
        raise ConfigError("--max-instructions needs counted slices, which --fast does not run: use --timeout")
    if args.fast and args.exact:
        raise ConfigError("--exact counts deterministic slices, which --fast does not run")
    if args.native:
        if args.config or args.kernels:
            raise ConfigError("--native runs one kernel on the whole machine: no --config or --kernels")
        if args.image is None:
            raise ConfigError("boot needs an IMAGE")
        image = load_image(args.image)
        initrd = load_initrd(args.initrd) if args.initrd else None
        plan = bare_plan(_topology(args), _given(args.cmdline, ""), image, initrd)
    else:
        from osvemu.osv.config import default_config, load_config
        from osvemu.osv.plan import osv_plan

        if args.config:
            _refuse_beside_config(args)
            config = load_config(args.config, default_image=args.image)
        else:
            if args.image is None:
                raise ConfigError("boot needs an IMAGE (or --config FILE)")
            load_image(args.image)  # a bad image is reported before anything else
            config = default_config(_topology(args), args.image, _given(args.cmdline, ""), args.kernels,
                                    args.initrd or "")
        plan = osv_plan(config)
    machine = Machine(plan, console=console)
    machine.boot()
    image = machine.kernels[0].image
    scheduler = Scheduler(machine, args.quantum or DEFAULT_QUANTUM, args.fast,
                          RunLimits(args.max_instructions, args.timeout), exact=exact or args.exact)
    return Session(machine, scheduler, image)


def _given(value, default):
    return default if value is None else value


def _topology(args: argparse.Namespace) -> Topology:
    """The machine the options describe, with the defaults for those not given."""
    return Topology(_given(args.sockets, DEFAULT_SOCKETS), _given(args.cores_per_socket, DEFAULT_CORES_PER_SOCKET),
                    _given(args.memory, DEFAULT_MEMORY))


def _refuse_beside_config(args: argparse.Namespace) -> None:
    """--config describes the machine and every kernel: an option that would
    also describe them is refused, not silently ignored."""
    for name, instead in CONFIG_REPLACES.items():
        if getattr(args, name) is not None:
            raise ConfigError(f"--{name.replace('_', '-')} cannot be used with --config: "
                              f"give {instead} in {printable(args.config)} instead")


def conclude(args: argparse.Namespace, session: Session, result: RunResult) -> int:
    """Write the report and say why the run ended; return the exit status.

    Under OSV, stderr has one line for each kernel that did not end
    cleanly, naming it; on the bare machine, each core's fault and the
    reason the run ended, when it is not a clean end."""
    if args.report:
        write_report(args.report, build_report(session.machine, session.scheduler, result))
    kernels = session.machine.kernels
    if kernels[0].placement.labelled:
        for kernel in kernels:
            if kernel.end is not None and not kernel.end.clean:
                print(f'osvemu: kernel "{kernel.name}": {kernel.end.describe()}', file=sys.stderr)
        return result.status
    fault_lines = [fault.one_line() for fault in result.faults]
    for line in fault_lines:
        print(f"osvemu: {line}", file=sys.stderr)
    if (result.status != 0 or result.faults) and not any(line in result.reason for line in fault_lines):
        print(f"osvemu: {result.reason}", file=sys.stderr)
    return result.status


def boot(args: argparse.Namespace) -> int:
    session = prepare(args, exact=args.gdb is not None)
    if args.gdb is None:
        if args.gdb_wait:
            raise ConfigError("--gdb-wait needs --gdb [HOST:]PORT")
        jobs = min(args.jobs or os.cpu_count() or 1, len(session.machine.kernels))
        if jobs > 1:
            from osvemu.parallel import run_partitioned

            return conclude(args, session, run_partitioned(session.machine, session.scheduler, jobs))
        return conclude(args, session, session.scheduler.run())
    if args.jobs and args.jobs > 1:
        raise ConfigError("--gdb debugs the machine in one process: no --jobs")
    from osvemu.debug.engine import Debugger
    from osvemu.debug.gdbstub import GdbStub, parse_address

    host, port = parse_address(args.gdb)
    stub = GdbStub(Debugger(session.machine, session.scheduler), host, port, wait=args.gdb_wait)
    session.scheduler.start()
    outcome = None
    try:
        outcome = stub.serve()
    finally:
        result = session.scheduler.finish(outcome)
    return conclude(args, session, result)


def trace(args: argparse.Namespace) -> int:
    from osvemu.debug.tracer import TraceOptions, run_trace

    _one_process(args, "trace")
    options = TraceOptions.from_args(args)
    with options.open_output() as output:
        session = prepare(args, console=options.console_sink(output), exact=True)
        _use_symbols(args, session)
        result = run_trace(session.machine, session.scheduler, session.image, options, output)
    return conclude(args, session, result)


def debug(args: argparse.Namespace) -> int:
    from osvemu.debug.console import DebugConsole

    _one_process(args, "debug")
    session = prepare(args, exact=True)
    _use_symbols(args, session)
    console = DebugConsole(session.machine, session.scheduler, session.image)
    return console.main(sys.stdin, sys.stdout)


def _one_process(args: argparse.Namespace, command: str) -> None:
    if args.jobs and args.jobs > 1:
        raise ConfigError(f"{command} follows the machine in one process: no --jobs")


def _use_symbols(args: argparse.Namespace, session: Session) -> None:
    """--symbols: names for a stripped image, from its System.map or an unstripped ELF."""
    if args.symbols:
        session.image = dataclasses.replace(session.image, symbols=load_symbols(args.symbols, session.image))


def tables(args: argparse.Namespace) -> int:
    from osvemu.osv.tables import describe, write_raw

    if args.native:
        raise ConfigError("tables shows what OSV gives each kernel: drop --native")
    session = prepare(args)
    by_name = {kernel.name: kernel for kernel in session.machine.kernels}
    if args.kernel not in by_name:
        raise ConfigError(f"--kernel {args.kernel}: the kernels are {', '.join(by_name)}")
    sys.stdout.write(describe(by_name[args.kernel]))
    if args.raw:
        for path in write_raw(by_name[args.kernel], args.raw):
            print(f"wrote {path}")
    return 0


def config_check(args: argparse.Namespace) -> int:
    """``osvemu config check FILE [IMAGE]``: the checks a boot makes before
    the first instruction (the file, each image and where it lands), and the
    layout, without building the machine."""
    from osvemu.image import check_placement
    from osvemu.osv.config import describe_layout, load_config
    from osvemu.platform.memmap import FIRMWARE_AREAS

    config = load_config(args.file, default_image=args.image)
    images: dict[str, KernelImage] = {}
    for plan in config.kernels:
        try:
            image = images.get(plan.image) or images.setdefault(plan.image, load_image(plan.image))
            ram, cursor = [(0, layout.CONVENTIONAL_END)], layout.LOW_MEMORY_END
            for rng in plan.memory:  # guest-physical, as osv_plan maps them
                ram.append((cursor, rng.size))
                cursor += rng.size
            check_placement(image, ram, FIRMWARE_AREAS)
        except ImageError as error:
            raise ImageError(f"{printable(args.file)}: kernel {json.dumps(plan.name)}: {error}") from None
    print(f"{printable(args.file)}: valid")
    for line in describe_layout(config):
        print(line)
    return 0


def verify(args: argparse.Namespace) -> int:
    from osvemu.verify import command

    return command.run(args)


COMMANDS = {"boot": boot, "trace": trace, "debug": debug, "tables": tables, "config": config_check, "verify": verify}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except OsvemuError as error:
        print(f"osvemu: {printable(str(error))}", file=sys.stderr)  # one line, whatever the input held
        return error.exit_status
    except KeyboardInterrupt:
        print("osvemu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (osvemu trace ... | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def run() -> None:
    """The ``osvemu`` command: :func:`main`, then its output flushed and the
    process ended at once.  What is left to do at exit then is only freeing
    memory the process gives back anyway -- every core's Unicorn instance,
    with its translated code, which takes 0.1-0.2 s for 32 cores."""
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away after the last line
        status = status or 141
    os._exit(status)


if __name__ == "__main__":
    run()
