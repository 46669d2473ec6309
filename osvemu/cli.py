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
from pathlib import Path

from osvemu.errors import ConfigError, ImageError, OsvemuError
from osvemu.image import KernelImage, load_image, load_symbols
from osvemu.osv.config import MAX_KERNELS
from osvemu.osv.schema import printable
from osvemu.outputs import RunOutputs
from osvemu.platform import layout
from osvemu.platform.ends import EndKind
from osvemu.platform.firmware import CMDLINE_MAX
from osvemu.platform.initrd import load_initrd
from osvemu.platform.layout import parse_size
from osvemu.platform.machine import Machine
from osvemu.platform.plan import bare_plan
from osvemu.platform.topology import MAX_APIC_ID, MAX_CORES_PER_SOCKET, MAX_MEMORY, MAX_SOCKETS, MIN_MEMORY, Topology
from osvemu.report import build_report, check_writable, write_report
from osvemu.scheduler import DEFAULT_QUANTUM, RunLimits, RunResult, Scheduler


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        """One line, exit status 2, with one ``osvemu:`` prefix (main adds
        it): the subcommand's name, then argparse's complaint."""
        command = self.prog.removeprefix("osvemu").strip()
        raise ConfigError(f"{command + ': ' if command else ''}{printable(message)}")


#: Bounds of the options (each checked where it is parsed, in one line).
MAX_QUANTUM = 10_000_000
MAX_INSTRUCTIONS = 1 << 62
MAX_TIMEOUT = 1e6  # seconds: about 11.5 days
MAX_PORT = 65535
#: ``-s``: QEMU's gdb port.
QEMU_GDB_PORT = 1234
#: Machine defaults, resolved after parsing so that an option given
#: alongside --config can be told apart from one left at its default.
DEFAULT_SOCKETS = 4
DEFAULT_CORES_PER_SOCKET = 8
DEFAULT_MEMORY = 2 * layout.GiB
#: The options --config replaces (it describes the machine and each kernel), and where it says it instead.
CONFIG_REPLACES = {"sockets": "[machine] sockets", "cores_per_socket": "[machine] cores_per_socket",
                   "smp": "[machine] sockets and cores_per_socket",
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


#: The exit statuses of a run (README, "Exit status"), in every subcommand's help.
EXIT_STATUSES = """exit status:
  0        every kernel ended cleanly: exit 0, halted for good, or idle
  1-254    the value the first kernel that did not end cleanly wrote to port 0xF4 or gave SHUTDOWN
  1        a core faulted: a triple fault, memory nothing backs, an emulation error
  2        bad input: an option, a configuration or an image (nothing ran)
  3        an error inside osvemu
  4        hung: no core can run again and one spins with interrupts off
  124      unfinished: --timeout or --max-instructions ended the run first
  130      interrupted (Ctrl-C)
  141      the reader of standard output went away
  255      OSV stopped a kernel for a violation (on_violation = "stop")"""


def _epilog(*examples: str) -> str:
    return "examples:\n" + "\n".join(f"  {example}" for example in examples) + "\n\n" + EXIT_STATUSES


def _smp(text: str) -> tuple[int, int]:
    """QEMU's ``-smp N[,sockets=S][,cores=C]``: (sockets, cores per socket)
    with S x C = N; N alone is one socket of N cores, as QEMU counts it."""
    count_text, *properties = text.split(",")
    count = _integer("smp", 1, MAX_SOCKETS * MAX_CORES_PER_SOCKET)(count_text)
    given: dict[str, int] = {}
    for item in properties:
        key, _, value = item.partition("=")
        if key not in ("sockets", "cores") or key in given:
            raise ConfigError(f"-smp {_shown(text)}: expected N[,sockets=S][,cores=C], not {_shown(item)}")
        high = MAX_SOCKETS if key == "sockets" else MAX_CORES_PER_SOCKET
        given[key] = _integer(f"smp {key}", 1, high)(value)
    sockets = given.get("sockets") or (count // given["cores"] if "cores" in given else 1)
    cores = given.get("cores") or count // sockets
    if sockets * cores != count or sockets > MAX_SOCKETS or cores > MAX_CORES_PER_SOCKET:
        raise ConfigError(f"-smp {_shown(text)}: {sockets} sockets x {cores} cores is not {count} CPUs "
                          f"(at most {MAX_SOCKETS} sockets of {MAX_CORES_PER_SOCKET} cores)")
    return sockets, cores


def _qemu_memory(text: str) -> int:
    """QEMU's ``-m SIZE``: a number without a suffix is MiB."""
    return _memory_size(text + "M" if text.isascii() and text.isdigit() else text)


def _qemu_gdb(text: str) -> str:
    """QEMU's ``-gdb tcp:[HOST]:PORT`` as --gdb's [HOST:]PORT."""
    kind, _, address = text.partition(":")
    if kind != "tcp" or not address:
        raise ConfigError(f"-gdb {_shown(text)}: expected tcp:[HOST]:PORT (the TCP transport is the one served)")
    return _gdb_address(address.lstrip(":") if address.startswith(":") else address)


def _serial(text: str) -> str | None:
    """QEMU's ``-serial stdio|null|file:PATH``: where COM1 (the guest console) goes."""
    if text in ("stdio", "null"):
        return text
    if text.startswith("file:") and len(text) > len("file:"):
        _output_file("serial")(text.removeprefix("file:"))
        return text
    raise ConfigError(f"-serial {_shown(text)}: expected stdio, null or file:PATH")


#: The run options' values for the commands that do not offer them (tables: a machine that never runs).
RUN_DEFAULTS = {"quantum": None, "fast": False, "exact": False, "jobs": None, "max_instructions": None,
                "timeout": None, "report": None, "quiet": False, "progress": False, "serial": None, "log_file": None,
                "monitor": "osv", "timeline": False, "gdb": None, "gdb_wait": False}


def add_machine_options(parser: argparse.ArgumentParser) -> None:
    """The machine and the kernels on it (every command that builds one)."""
    parser.set_defaults(**RUN_DEFAULTS)  # what a command without add_run_options runs with
    machine = parser.add_argument_group("machine and kernels")
    machine.add_argument("image", nargs="?", type=_path("image"), help="x86-64 ELF image with a PVH entry note")
    machine.add_argument("--sockets", type=_integer("sockets", 1, MAX_SOCKETS), default=None,
                         help=f"processor sockets (default {DEFAULT_SOCKETS})")
    machine.add_argument("--cores-per-socket", type=_integer("cores-per-socket", 1, MAX_CORES_PER_SOCKET),
                         default=None, help=f"cores per socket (default {DEFAULT_CORES_PER_SOCKET})")
    machine.add_argument("-smp", dest="smp", type=_smp, default=None, metavar="N[,sockets=S,cores=C]",
                         help="QEMU's spelling of --sockets and --cores-per-socket (N alone: one socket)")
    machine.add_argument("--memory", type=_memory_size, default=None, metavar="SIZE", help="RAM size, e.g. 2G (default)")
    machine.add_argument("-m", dest="memory", type=_qemu_memory, metavar="SIZE",
                         help="QEMU's spelling of --memory: a number without a unit is MiB")
    machine.add_argument("--cmdline", "--append", "-append", dest="cmdline", type=_cmdline, default=None,
                         help="kernel command line (-append/--append, as QEMU calls it)")
    machine.add_argument("--initrd", "-initrd", type=_path("initrd"), default=None, metavar="FILE",
                         help="initial RAM disk, handed to the kernel as PVH module 0")
    machine.add_argument("--config", type=_path("config"), default=None, metavar="FILE",
                         help="OSV partition configuration (TOML)")
    machine.add_argument("--kernels", type=_integer("kernels", 1, MAX_KERNELS), default=None,
                         help="OSV: split the machine evenly among N kernels (default: one per socket)")
    machine.add_argument("--native", action="store_true", help="no OSV: the whole machine runs one kernel")


def add_run_options(parser: argparse.ArgumentParser, one_process: bool = False) -> None:
    """How a run goes and what it leaves (``one_process``: trace and debug,
    which follow the machine instruction by instruction in one process)."""
    run = parser.add_argument_group("running")
    run.add_argument("--quantum", type=_integer("quantum", 1, MAX_QUANTUM), default=None,
                     help=f"instructions per core per round (default {DEFAULT_QUANTUM})")
    if not one_process:
        run.add_argument("--fast", action="store_true",
                         help="run a lone runnable core ahead of the others: faster, the same guest results")
        run.add_argument("--exact", action="store_true",
                         help="count instructions one by one (the default counts whole translation blocks; "
                              "trace, debug and --gdb always count exactly)")
        run.add_argument("--jobs", type=_integer("jobs", 1, 256), default=None, metavar="N",
                         help="OSV: run the kernels in N host processes (default: one per host core, at most "
                              "one per kernel); the results are the same for every N")
    run.add_argument("--max-instructions", type=_integer("max-instructions"), default=None,
                     help="stop after this many instructions in total")
    run.add_argument("--timeout", type=_seconds, default=None, help="stop after this many host seconds")
    run.add_argument("--report", type=_output_file("report"), default=None, metavar="FILE",
                     help="write a JSON report (docs/report.schema.json) to FILE ('-': standard output, "
                          "and the guest console goes to standard error)")
    run.add_argument("--quiet", action="store_true",
                     help="no end-of-run summary, progress line or announcement of a stopped kernel: only how "
                          "kernels that did not end cleanly ended")
    run.add_argument("--progress", action="store_true",
                     help="progress lines on standard error even when it is not a terminal (for logs)")
    run.add_argument("-serial", dest="serial", type=_serial, default=None, metavar="stdio|null|file:PATH",
                     help="where the guest console goes (QEMU's spelling; default stdio)")
    run.add_argument("-D", dest="log_file", type=_output_file("D"), default=None, metavar="LOGFILE",
                     help="osvemu's own messages (summary, progress, how kernels ended) to LOGFILE")


def add_gdb_options(parser: argparse.ArgumentParser) -> None:
    gdb = parser.add_argument_group("debugging with gdb")
    gdb.add_argument("--gdb", metavar="[HOST:]PORT", type=_gdb_address, default=None,
                     help="serve the GDB remote protocol (localhost unless HOST is given; port 0: any free one)")
    gdb.add_argument("-gdb", dest="gdb", type=_qemu_gdb, metavar="tcp:[HOST]:PORT", help="QEMU's spelling of --gdb")
    gdb.add_argument("-s", dest="gdb", action="store_const", const=str(QEMU_GDB_PORT),
                     help=f"QEMU's shorthand for --gdb {QEMU_GDB_PORT}")
    gdb.add_argument("--gdb-wait", "-S", dest="gdb_wait", action="store_true",
                     help="wait for the debugger before the first instruction (-S, as QEMU freezes the CPU)")


def add_symbol_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", type=_path("symbols"), default=None, metavar="FILE",
                        help="symbols for a stripped image: its System.map, or an ELF with a symbol table")


def add_trace_options(parser: argparse.ArgumentParser) -> None:
    trace = parser.add_argument_group("tracing")
    trace.add_argument("--core", type=_integer("core", 0, MAX_APIC_ID), action="append", default=None, metavar="N",
                       help="trace only this core (repeatable; default all)")
    trace.add_argument("--kernel", action="append", default=None, metavar="NAME",
                       help="OSV: trace only this kernel's cores (repeatable; default all)")
    trace.add_argument("--from", dest="start", metavar="SYMBOL|ADDR", help="start tracing when a core reaches it")
    trace.add_argument("--until", metavar="SYMBOL|ADDR", help="stop tracing (and the run) when a core reaches it")
    trace.add_argument("--range", metavar="LO-HI", help="trace instructions only in this address range")
    trace.add_argument("--count", type=_integer("count"), help="stop after this many traced instructions")
    trace.add_argument("--events-only", action="store_true", help="trace events, not instructions")
    trace.add_argument("--regs", action="store_true", help="show the registers each instruction changed")
    trace.add_argument("--watch", action="append", default=[], metavar="ADDR[:LEN]",
                       help="report every write to this memory (repeatable)")
    trace.add_argument("--format", choices=("text", "perfetto"), default="text",
                       help="text lines (default), or Chrome trace-event JSON for Perfetto and chrome://tracing")
    trace.add_argument("-o", "--output", type=_output_file("output"), default="-", metavar="FILE",
                       help="trace file (default standard output)")


def _command(commands, name: str, help_text: str, *examples: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                               epilog=_epilog(*examples), formatter_class=argparse.RawDescriptionHelpFormatter,
                               allow_abbrev=False)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="osvemu", description="An emulated many-core AMD Opteron server, partitioned among "
                     "kernels by the OSV monitor.", epilog=EXIT_STATUSES,
                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action=_Version, nargs=0, help="print osvemu's, Unicorn's and Python's versions")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    boot = _command(commands, "boot", "boot an ELF image on the machine",
                    "osvemu boot guests/minilinux.elf                      # OSV: 4 kernels x 8 cores",
                    "osvemu boot guests/minilinux.elf --native -smp 8 -m 512",
                    "osvemu boot --config partitions.toml --report run.json")
    add_machine_options(boot)
    add_run_options(boot)
    boot.add_argument("--monitor", choices=("osv", "trap-all"), default="osv",
                      help="OSV's own exits only (default), or every LAPIC access, port I/O, CPUID, MSR, HLT and "
                           "delivery as a trapping VMM's exit (for osvemu eval)")
    boot.add_argument("--timeline", action="store_true",
                      help="record each core's timeline into the --report (osvemu plot draws it)")
    add_gdb_options(boot)
    trace = _command(commands, "trace", "boot an image and trace instructions and events",
                     "osvemu trace guests/minilinux.elf --native --count 20",
                     "osvemu trace guests/minilinux.elf --events-only --kernel k1",
                     "osvemu trace guests/minilinux.elf --format perfetto -o run.json")
    add_machine_options(trace)
    add_run_options(trace, one_process=True)
    add_trace_options(trace)
    add_symbol_options(trace)
    debug = _command(commands, "debug", "boot an image under a gdb-style debugger console",
                     "osvemu debug guests/minilinux.elf --native",
                     "echo 'break ap_main\ncontinue\ninfo cores' | osvemu debug guests/minilinux.elf --kernel k1")
    add_machine_options(debug)
    add_run_options(debug, one_process=True)
    add_symbol_options(debug)
    debug.add_argument("--kernel", default=None, metavar="NAME",
                       help="OSV: start on this kernel's first core and list its cores first")
    tables = _command(commands, "tables", "print the firmware tables and memory map a kernel is given",
                      "osvemu tables guests/minilinux.elf --kernel k1",
                      "osvemu tables guests/minilinux.elf --kernel all --raw tables/",
                      "osvemu tables guests/minilinux.elf --native")
    add_machine_options(tables)
    tables.add_argument("--kernel", default=None, metavar="NAME|all",
                        help="the kernel whose tables to show ('all': every kernel; needed under OSV)")
    tables.add_argument("--raw", type=_path("raw"), metavar="DIR",
                        help="also write the binary tables (RSDP, RSDT, XSDT, MADT, SRAT, ..., MP table) to DIR")
    config = _command(commands, "config", "check OSV partition configurations",
                      "osvemu config check partitions.toml guests/minilinux.elf")
    actions = config.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    check = actions.add_parser("check", help="validate a configuration and print the layout it describes")
    check.add_argument("file", type=_path("config"), metavar="FILE", help="OSV partition configuration (TOML)")
    check.add_argument("image", nargs="?", type=_path("image"), help="the image of kernels that name none")
    verify = _command(commands, "verify", "prove, model-check and attack OSV's interface (docs/verification.md)",
                      "osvemu verify", "osvemu verify --campaign 200 --seed 7")
    add_verify_options(verify)
    evaluation = _command(commands, "eval", "run a workload natively, under OSV and under trap-all, and compare them",
                          "osvemu eval guests/minilinux.elf --repeats 3 --json eval.json",
                          "osvemu eval guests/minilinux.elf -smp 4 --kernels 2 --cmdline primes=1000")
    from osvemu import evaluation as evaluation_command

    evaluation_command.add_options(evaluation)
    plot = _command(commands, "plot", "draw reports, evaluations and benchmarks as pictures (PNG, SVG)",
                    "osvemu plot eval.json run.json -o pictures/", "osvemu plot bench.json --format svg")
    from osvemu import plot as plot_command

    plot_command.add_options(plot)
    snippet = _command(commands, "snippet", "run snippet files (tests/snippets/*.s) and check their expectations",
                       "osvemu snippet tests/snippets/apic_self_ipi.s", "osvemu snippet tests/snippets/*.s")
    snippet.add_argument("files", nargs="+", type=_path("snippet"), metavar="FILE.s", help="snippet files")
    snippet.add_argument("--mode", choices=("blocks", "exact", "fast"), default="blocks",
                         help="how slices are counted (default blocks, as osvemu boot)")
    return parser


def version_text() -> str:
    """``osvemu X (unicorn Y, Python Z)``."""
    import unicorn

    from osvemu.report import osvemu_version

    return f"osvemu {osvemu_version()} (unicorn {unicorn.__version__}, Python {sys.version.split()[0]})"


class _Version(argparse.Action):
    """--version, its text found only when asked for (importlib.metadata costs start-up time)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())
        parser.exit()


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
        if args.monitor != "osv":
            raise ConfigError(f"--monitor {args.monitor} is a mode of OSV's monitor: drop --native")
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
        plan = osv_plan(config, monitor_mode=args.monitor)
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
    if args.smp is not None:
        if args.sockets is not None or args.cores_per_socket is not None:
            raise ConfigError("-smp gives the sockets and cores: no --sockets or --cores-per-socket beside it")
        args.sockets, args.cores_per_socket = args.smp
    return Topology(_given(args.sockets, DEFAULT_SOCKETS), _given(args.cores_per_socket, DEFAULT_CORES_PER_SOCKET),
                    _given(args.memory, DEFAULT_MEMORY))


def _refuse_beside_config(args: argparse.Namespace) -> None:
    """--config describes the machine and every kernel: an option that would
    also describe them is refused, not silently ignored."""
    for name, instead in CONFIG_REPLACES.items():
        if getattr(args, name, None) is not None:
            raise ConfigError(f"--{name.replace('_', '-')} cannot be used with --config: "
                              f"give {instead} in {printable(args.config)} instead")


def conclude(args: argparse.Namespace, session: Session, result: RunResult, outputs: RunOutputs | None = None,
             timeline=None, summary: bool = True) -> int:
    """Write the report and say how the run ended; return the exit status.

    Under OSV, one line for each kernel that did not end cleanly, naming it,
    then (``summary``, unless --quiet) the end-of-run summary; on the bare
    machine, each core's fault and the reason the run ended, when it is not
    a clean end.  A run cut short (a limit, Ctrl-C) also says where each
    core was.  All on standard error, or the -D file."""
    from osvemu.summary import summary_lines, where_cores_were

    outputs = outputs or RunOutputs()
    machine = session.machine
    report = build_report(machine, session.scheduler, result, argv=sys.argv[1:], timeline=timeline)
    if args.report:
        write_report(args.report, report)
    cut_short = any(kernel.end is not None and kernel.end.kind is EndKind.UNFINISHED for kernel in machine.kernels)
    if machine.kernels[0].placement.labelled:
        for kernel in machine.kernels:
            if kernel.end is not None and not kernel.end.clean:
                outputs.say(f'osvemu: kernel "{kernel.name}": {kernel.end.describe()}')
    else:
        fault_lines = [fault.one_line() for fault in result.faults]
        for line in fault_lines:
            outputs.say(f"osvemu: {line}")
        if (result.status != 0 or result.faults) and not any(line in result.reason for line in fault_lines):
            outputs.say(f"osvemu: {result.reason}")
    if not args.quiet:
        if cut_short:
            for line in where_cores_were(machine):
                outputs.say(line)
        if summary and report.get("mode") == "osv":
            for line in summary_lines(report):
                outputs.say(line)
    return result.status


def _progress(args: argparse.Namespace, session: Session, outputs: RunOutputs):
    """The run's progress line (osvemu.progress): live on a terminal, lines with --progress."""
    from osvemu.progress import Progress, Sample

    machine, scheduler = session.machine, session.scheduler
    monitor = machine.monitor

    def sample() -> Sample:
        virtual_ns, instructions = scheduler.progress()
        return Sample(virtual_ns, instructions, sum(k.ended_for_good for k in machine.kernels), len(machine.kernels),
                      monitor.violation_count if monitor is not None else 0)

    quiet = args.quiet or args.gdb is not None
    return Progress(sample, outputs.log, live=not quiet and not args.progress and outputs.log_is_terminal,
                    lines=not quiet and args.progress)


def boot(args: argparse.Namespace) -> int:
    with RunOutputs(args.serial, args.report, args.log_file) as outputs:
        session = prepare(args, console=outputs.console, exact=args.gdb is not None)
        session.machine.announce = None if args.quiet else outputs.say
        timeline = None
        if args.timeline:
            from osvemu.timeline import TimelineRecorder

            timeline = TimelineRecorder(session.machine, session.scheduler)
        if args.gdb is not None:
            return _serve_gdb(args, session, outputs, timeline)
        if args.gdb_wait:
            raise ConfigError("--gdb-wait needs --gdb [HOST:]PORT")
        jobs = min(args.jobs or os.cpu_count() or 1, len(session.machine.kernels))
        with _progress(args, session, outputs):
            if jobs > 1:
                from osvemu.parallel import run_partitioned

                result = run_partitioned(session.machine, session.scheduler, jobs)
            else:
                result = session.scheduler.run()
        return conclude(args, session, result, outputs, timeline)


def _serve_gdb(args: argparse.Namespace, session: Session, outputs: RunOutputs, timeline) -> int:
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
    return conclude(args, session, result, outputs, timeline)


def trace(args: argparse.Namespace) -> int:
    from osvemu.debug.tracer import TraceOptions, run_trace

    options = TraceOptions.from_args(args)
    with options.open_output() as output:
        session = prepare(args, console=options.console_sink(output), exact=True)
        _use_symbols(args, session)
        result = run_trace(session.machine, session.scheduler, session.image, options, output)
    return conclude(args, session, result)


def debug(args: argparse.Namespace) -> int:
    from osvemu.debug.console import DebugConsole

    session = prepare(args, exact=True)
    _use_symbols(args, session)
    console = DebugConsole(session.machine, session.scheduler, session.image, kernel=args.kernel)
    return console.main(sys.stdin, sys.stdout)


def _use_symbols(args: argparse.Namespace, session: Session) -> None:
    """--symbols: names for a stripped image, from its System.map or an unstripped ELF."""
    if args.symbols:
        session.image = dataclasses.replace(session.image, symbols=load_symbols(args.symbols, session.image))


def tables(args: argparse.Namespace) -> int:
    from osvemu.osv.tables import describe, write_raw

    session = prepare(args)
    kernels = session.machine.kernels
    if args.native:
        if args.kernel is not None:
            raise ConfigError("--native runs one kernel: no --kernel")
        chosen = kernels
    else:
        by_name = {kernel.name: kernel for kernel in kernels}
        if args.kernel is None or (args.kernel != "all" and args.kernel not in by_name):
            given = f"--kernel {args.kernel}: " if args.kernel is not None else "--kernel NAME is needed: "
            raise ConfigError(f"{given}the kernels are {', '.join(by_name)} (or all)")
        chosen = kernels if args.kernel == "all" else [by_name[args.kernel]]
    for number, kernel in enumerate(chosen):
        sys.stdout.write(("\n" if number else "") + describe(kernel))
        if args.raw:
            directory = Path(args.raw) / kernel.name if len(chosen) > 1 else Path(args.raw)
            for path in write_raw(kernel, directory):
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


def snippet(args: argparse.Namespace) -> int:
    """``osvemu snippet FILE.s...``: each snippet run and checked as the test
    suite does (osvemu.snippets); a line per snippet, and per unmet
    expectation what was found against what was expected.  Status 0 when
    every one holds, 1 when one does not, 2 for a file that is not a snippet."""
    from osvemu.snippets import Snippet, check_expectations, run_snippet

    snippets = []
    for name in args.files:
        path = Path(name)
        try:
            snippets.append(Snippet.load(path))
        except OSError as error:
            raise ConfigError(f"{printable(name)}: cannot read: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{printable(name)}: not a text file") from None
    failed = 0
    for item in snippets:
        run = run_snippet(item, fast=args.mode == "fast", exact=args.mode == "exact")
        problems = check_expectations(run)
        failed += bool(problems)
        retired = sum(run.machine.cores[index].instructions for index in run.started)
        print(f"{'FAIL' if problems else 'ok  '} {item.name}: {run.result.reason}, {retired} instructions"
              + (f" -- {item.description}" if item.description else ""))
        for problem in problems:
            print(f"     {problem}")
    print(f"{len(snippets) - failed} of {len(snippets)} snippets hold")
    return 1 if failed else 0


def evaluate(args: argparse.Namespace) -> int:
    from osvemu import evaluation

    return evaluation.run(args)


def plot(args: argparse.Namespace) -> int:
    from osvemu import plot as plot_command

    return plot_command.run(args)


COMMANDS = {"boot": boot, "trace": trace, "debug": debug, "tables": tables, "config": config_check, "verify": verify,
            "eval": evaluate, "plot": plot, "snippet": snippet}


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
