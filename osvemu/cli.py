"""Command line: ``osvemu boot IMAGE [options]``."""

from __future__ import annotations

import argparse
import re
import sys

from osvemu.errors import ConfigError, OsvemuError
from osvemu.platform import layout

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": layout.KiB, "M": layout.MiB, "G": layout.GiB, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'2G', '512M', '65536K' or a byte count."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"invalid memory size {text!r} (use a number with K, M or G, e.g. 2G)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


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
    parser.add_argument("image", help="x86-64 ELF image with a PVH entry note")
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="osvemu", description="Emulated many-core AMD Opteron machine.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    boot = commands.add_parser("boot", help="boot an ELF image on the machine")
    add_machine_options(boot)
    return parser


def boot(args: argparse.Namespace) -> int:
    from osvemu.image import load_image
    from osvemu.platform.machine import Machine, MachineConfig
    from osvemu.platform.topology import Topology
    from osvemu.report import build_report, check_writable, write_report
    from osvemu.scheduler import DEFAULT_QUANTUM, RunLimits, Scheduler

    topology = Topology(args.sockets, args.cores_per_socket, args.memory)
    if args.report:
        check_writable(args.report)
    image = load_image(args.image)
    machine = Machine(MachineConfig(topology, args.cmdline))
    machine.boot(image)
    scheduler = Scheduler(machine, args.quantum or DEFAULT_QUANTUM, args.fast,
                          RunLimits(args.max_instructions, args.timeout))
    result = scheduler.run()
    if args.report:
        write_report(args.report, build_report(machine, scheduler, result))
    for fault in result.faults:
        print(f"osvemu: {fault.one_line()}", file=sys.stderr)
    if result.status != 0 or result.faults:
        print(f"osvemu: {result.reason}", file=sys.stderr)
    return result.status


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "boot":
            return boot(args)
        return 2
    except OsvemuError as error:
        print(f"osvemu: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print("osvemu: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
