"""Command line: ``osvemu boot|trace|debug IMAGE [options]``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from osvemu.errors import ConfigError, OsvemuError
from osvemu.image import KernelImage, load_image
from osvemu.platform import layout
from osvemu.platform.layout import parse_size
from osvemu.platform.machine import Machine
from osvemu.platform.plan import bare_plan
from osvemu.platform.topology import Topology
from osvemu.report import build_report, check_writable, write_report
from osvemu.scheduler import DEFAULT_QUANTUM, RunLimits, RunResult, Scheduler


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit status 2
        raise ConfigError(f"{self.prog}: {message}")


def _positive(name: str):
    def convert(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise ConfigError(f"--{name} must be an integer, not {text!r}") from None
        if value < 1:
            raise ConfigError(f"--{name} must be at least 1, not {value}")
        return value
    return convert


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--timeout must be a number of seconds, not {text!r}") from None
    if value <= 0:
        raise ConfigError(f"--timeout must be positive, not {text}")
    return value


def add_machine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", help="x86-64 ELF image with a PVH entry note")
    parser.add_argument("--sockets", type=_positive("sockets"), default=4, help="processor sockets (default 4)")
    parser.add_argument("--cores-per-socket", type=_positive("cores-per-socket"), default=8, help="cores per socket (default 8)")
    parser.add_argument("--memory", type=parse_size, default=2 * layout.GiB, help="RAM size, e.g. 2G (default)")
    parser.add_argument("--cmdline", default="", help="kernel command line")
    parser.add_argument("--quantum", type=_positive("quantum"), default=None,
                        help="instructions per core per round in deterministic mode (default 20000)")
    parser.add_argument("--fast", action="store_true", help="host-timer preemption: faster, not deterministic")
    parser.add_argument("--max-instructions", type=_positive("max-instructions"), default=None,
                        help="stop after this many instructions in total")
    parser.add_argument("--timeout", type=_seconds, default=None, help="stop after this many host seconds")
    parser.add_argument("--report", default=None, help="write a JSON report to this file")
    parser.add_argument("--config", default=None, metavar="FILE", help="OSV partition configuration (TOML)")
    parser.add_argument("--kernels", type=_positive("kernels"), default=None,
                        help="OSV: split the machine evenly among N kernels (default: one per socket)")
    parser.add_argument("--native", action="store_true", help="no OSV: the whole machine runs one kernel")


def add_gdb_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gdb", metavar="[HOST:]PORT", default=None,
                        help="serve the GDB remote protocol (localhost unless HOST is given)")
    parser.add_argument("--gdb-wait", action="store_true", help="wait for the debugger before the first instruction")


def add_trace_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--core", type=int, action="append", default=None, metavar="N",
                        help="trace only this core (repeatable; default all)")
    parser.add_argument("--from", dest="start", metavar="SYMBOL|ADDR", help="start tracing when a core reaches it")
    parser.add_argument("--until", metavar="SYMBOL|ADDR", help="stop tracing (and the run) when a core reaches it")
    parser.add_argument("--range", metavar="LO-HI", help="trace instructions only in this address range")
    parser.add_argument("--count", type=_positive("count"), help="stop after this many traced instructions")
    parser.add_argument("--events-only", action="store_true", help="trace events, not instructions")
    parser.add_argument("--regs", action="store_true", help="show the registers each instruction changed")
    parser.add_argument("--watch", action="append", default=[], metavar="ADDR[:LEN]",
                        help="report every write to this memory (repeatable)")
    parser.add_argument("-o", "--output", default="-", metavar="FILE", help="trace file (default standard output)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="osvemu", description="Emulated many-core AMD Opteron machine.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    boot = commands.add_parser("boot", help="boot an ELF image on the machine")
    add_machine_options(boot)
    add_gdb_options(boot)
    trace = commands.add_parser("trace", help="boot an image and trace instructions and events")
    add_machine_options(trace)
    add_trace_options(trace)
    debug = commands.add_parser("debug", help="boot an image under a gdb-style debugger console")
    add_machine_options(debug)
    tables = commands.add_parser("tables", help="print an OSV kernel's rewritten firmware tables and memory map")
    add_machine_options(tables)
    tables.add_argument("--kernel", required=True, metavar="NAME", help="the kernel whose tables to show")
    tables.add_argument("--raw", metavar="DIR", help="also write the binary tables to DIR")
    return parser


@dataclass
class Session:
    machine: Machine
    scheduler: Scheduler
    image: KernelImage


def prepare(args: argparse.Namespace, console=None) -> Session:
    """Build, load and boot the machine the options describe."""
    if args.report:
        check_writable(args.report)
    if args.native:
        if args.config or args.kernels:
            raise ConfigError("--native runs one kernel on the whole machine: no --config or --kernels")
        if args.image is None:
            raise ConfigError("boot needs an IMAGE")
        image = load_image(args.image)
        plan = bare_plan(Topology(args.sockets, args.cores_per_socket, args.memory), args.cmdline, image)
    else:
        from osvemu.osv.config import default_config, load_config
        from osvemu.osv.plan import osv_plan

        if args.config:
            if args.kernels:
                raise ConfigError("--kernels and --config both describe the partitions: use one")
            config = load_config(args.config, default_image=args.image)
        else:
            if args.image is None:
                raise ConfigError("boot needs an IMAGE (or --config FILE)")
            load_image(args.image)  # a bad image is reported before anything else
            config = default_config(Topology(args.sockets, args.cores_per_socket, args.memory), args.image,
                                    args.cmdline, args.kernels)
        plan = osv_plan(config)
    machine = Machine(plan, console=console)
    machine.boot()
    image = machine.kernels[0].image
    scheduler = Scheduler(machine, args.quantum or DEFAULT_QUANTUM, args.fast,
                          RunLimits(args.max_instructions, args.timeout))
    return Session(machine, scheduler, image)


def conclude(args: argparse.Namespace, session: Session, result: RunResult) -> int:
    """Write the report and the one-line reason; return the exit status."""
    if args.report:
        write_report(args.report, build_report(session.machine, session.scheduler, result))
    fault_lines = [fault.one_line() for fault in result.faults]
    for line in fault_lines:
        print(f"osvemu: {line}", file=sys.stderr)
    if (result.status != 0 or result.faults) and result.reason not in fault_lines:
        print(f"osvemu: {result.reason}", file=sys.stderr)
    return result.status


def boot(args: argparse.Namespace) -> int:
    session = prepare(args)
    if args.gdb is None:
        if args.gdb_wait:
            raise ConfigError("--gdb-wait needs --gdb [HOST:]PORT")
        return conclude(args, session, session.scheduler.run())
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

    options = TraceOptions.from_args(args)
    with options.open_output() as output:
        session = prepare(args, console=options.console_sink(output))
        result = run_trace(session.machine, session.scheduler, session.image, options, output)
    return conclude(args, session, result)


def debug(args: argparse.Namespace) -> int:
    from osvemu.debug.console import DebugConsole

    session = prepare(args)
    console = DebugConsole(session.machine, session.scheduler, session.image)
    return console.main(sys.stdin, sys.stdout)


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


COMMANDS = {"boot": boot, "trace": trace, "debug": debug, "tables": tables}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except OsvemuError as error:
        print(f"osvemu: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print("osvemu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (osvemu trace ... | head): stop quietly
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
