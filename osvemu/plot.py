"""``osvemu plot FILE.json...``: pictures of runs, evaluations and benchmarks.

Each input is recognised by its content and gives these pictures:

* an evaluation (``"schema": "osvemu-eval/1"``, from ``osvemu eval``): the
  paper's figure -- host time and guest instructions per kernel, natively,
  under OSV and under the trap-all monitor, with error bars over the
  repeated runs, the run time with the modeled cost of the exits, and the
  exits by kind (``NAME-eval``);
* a run report (docs/report.schema.json) with a ``"timeline"``: one row per
  core, grouped by kernel, its running / halted / wait-for-SIPI / stopped
  spans and its interrupts, IPIs and OSV's refusals as marks
  (``NAME-timeline``);
* a run report of an OSV run: the partitions on the machine -- each socket's
  cores coloured by kernel, each kernel's memory on the machine's memory,
  the shared channels (``NAME-topology``);
* a benchmark (``"schema": "osvemu-bench/1"``, from tools/bench.py --json):
  each guest's wall time in each osvemu mode and on QEMU (``NAME-bench``).

matplotlib is imported only here, when the pictures are drawn (backend Agg).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

from osvemu.errors import ConfigError
from osvemu.platform.layout import number_runs

EVAL_SCHEMA = "osvemu-eval/1"
BENCH_SCHEMA = "osvemu-bench/1"
EVAL_MODES = ("native", "osv", "trap-all")
FORMATS = {"png": ("png",), "svg": ("svg",), "both": ("png", "svg")}
DPI = 150
#: Colours of the modes, the core states and the runners (colour-blind safe: Okabe and Ito).
MODE_COLOURS = {"native": "#0072B2", "osv": "#009E73", "trap-all": "#D55E00"}
STATE_COLOURS = {"running": "#009E73", "halted": "#BBCCEE", "wait-for-sipi": "#F0E442", "stopped": "#555555"}
KERNEL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
#: How each kind of timeline mark is drawn: (marker, colour, size, label).
MARK_STYLES = {
    "interrupt": ("|", "#0072B2", 20, "interrupt taken"),
    "nmi": ("|", "#CC79A7", 30, "NMI"),
    "exception": ("|", "#E69F00", 30, "exception"),
    "int": ("|", "#999999", 20, "int n"),
    "ipi-sent": (">", "#7B3294", 14, "IPI sent"),
    "ipi-received": ("<", "#008837", 14, "IPI received"),
    "refused": ("x", "#D7191C", 40, "refused by OSV"),
    "end": ("D", "#000000", 25, "kernel ended"),
    "restart": ("*", "#000000", 40, "kernel restarted"),
}


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE.json",
                        help="a run report (--report), an evaluation (osvemu eval) or a benchmark (tools/bench.py)")
    parser.add_argument("-o", "--output", metavar="DIR", default=".", help="where to write the pictures (default .)")
    parser.add_argument("--format", choices=tuple(FORMATS), default="png", help="png (default), svg or both")


def run(args: argparse.Namespace) -> int:
    inputs = [(Path(name), _load(Path(name))) for name in args.files]
    jobs = [(path, kind, draw) for path, document in inputs for kind, draw in pictures(path, document)]
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"-o {output}: not a directory")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"-o {output}: cannot create it: {error.strerror}") from None
    plt = _pyplot()
    for path, kind, draw in jobs:
        try:
            figure = draw(plt)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            raise ConfigError(f"{path}: not a well-formed {kind} input: {_what(error)}") from None
        for extension in FORMATS[args.format]:
            target = output / f"{path.stem}-{kind}.{extension}"
            try:
                figure.savefig(target, dpi=DPI)
            except OSError as error:
                raise ConfigError(f"{target}: cannot write: {error.strerror}") from None
            print(target)
        plt.close(figure)
    return 0


def _what(error: Exception) -> str:
    return f"missing field {error}" if isinstance(error, KeyError) else str(error) or type(error).__name__


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("osvemu plot draws with matplotlib: install osvemu's plot extra "
                          "(pip install 'osvemu[plot]', or pip install matplotlib)") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------- recognising the inputs
def _load(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not JSON (not even text)") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: not an osvemu report, evaluation or benchmark (a JSON {type(document).__name__})")
    return document


Draw = Callable[[object], object]


def pictures(path: Path, document: dict) -> list[tuple[str, Draw]]:
    """The pictures ``document`` gives: (kind, a function drawing it with pyplot)."""
    schema = document.get("schema")
    if schema == EVAL_SCHEMA:
        _require(path, document, "evaluation", ("modes", "machine", "repeats"))
        return [("eval", lambda plt: draw_eval(plt, document))]
    if schema == BENCH_SCHEMA:
        _require(path, document, "benchmark", ("guests",))
        return [("bench", lambda plt: draw_bench(plt, document))]
    if schema is not None:
        raise ConfigError(f"{path}: unknown schema {schema!r} (osvemu plot draws {EVAL_SCHEMA} and {BENCH_SCHEMA})")
    if "schema_version" not in document or "cores" not in document:
        raise ConfigError(f"{path}: not an osvemu report, evaluation or benchmark")
    found = []
    if "timeline" in document:
        _require(path, document["timeline"], "timeline", ("cores", "end_ns"))
        found.append(("timeline", lambda plt: draw_timeline(plt, document)))
    if document.get("mode") == "osv":
        _require(path, document, "report", ("kernels", "machine"))
        found.append(("topology", lambda plt: draw_topology(plt, document)))
    if not found:
        raise ConfigError(f"{path}: nothing to draw: a report of a native run without a timeline "
                          "(record one with osvemu boot --timeline)")
    return found


def _require(path: Path, document, kind: str, keys: tuple[str, ...]) -> None:
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: not a well-formed {kind}: an object expected")
    missing = [key for key in keys if key not in document]
    if missing:
        raise ConfigError(f"{path}: not a well-formed {kind}: missing field {', '.join(map(repr, missing))}")


# ---------------------------------------------------------------- the evaluation
def _mean_error(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one run)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def draw_eval(plt, document: dict):
    """The paper's figure: per kernel, host time and guest instructions in
    each mode (mean and standard deviation over the repeats), the whole
    run's host time with the modeled exit cost, and the exits by kind."""
    modes = [mode for mode in EVAL_MODES if mode in document["modes"]]
    if not modes:
        raise ValueError(f"no runs of any mode ({', '.join(EVAL_MODES)})")
    runs = {mode: document["modes"][mode]["runs"] for mode in modes}
    for mode, mode_runs in runs.items():
        if not mode_runs:
            raise ValueError(f"mode {mode!r} has no runs")
    figure, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    machine = document["machine"]
    figure.suptitle(f"{Path(str(document.get('image', '?'))).name}  {document.get('cmdline', '')}\n"
                    f"{machine['sockets']} x {machine['cores_per_socket']} cores, {machine['kernels']} kernels "
                    f"under OSV, {document['repeats']} runs each (mean, error bars one standard deviation)",
                    fontsize=11)
    _eval_per_kernel(axes[0][0], runs, "host_seconds", 1.0, "host seconds per kernel")
    _eval_per_kernel(axes[0][1], runs, "instructions", 1e-6, "guest instructions per kernel (millions)")
    _eval_totals(axes[1][0], runs, document.get("exit_costs", {}))
    _eval_exits(axes[1][1], runs)
    figure.tight_layout()
    return figure


def _eval_per_kernel(axis, runs: dict[str, list[dict]], field: str, scale: float, title: str) -> None:
    """Bars per kernel name, one per mode that has the kernel, centred on it."""
    names: list[str] = []
    for mode_runs in runs.values():
        for kernel in mode_runs[0]["kernels"]:
            if kernel["name"] not in names:
                names.append(kernel["name"])
    width = 0.8 / len(runs)
    bars: dict[str, tuple[list[float], list[float], list[float]]] = {mode: ([], [], []) for mode in runs}
    for position, name in enumerate(names):
        present = {mode: [kernel[field] * scale for run in mode_runs for kernel in run["kernels"]
                          if kernel["name"] == name] for mode, mode_runs in runs.items()}
        present = {mode: values for mode, values in present.items() if values}
        for offset, (mode, values) in enumerate(present.items()):
            mean, error = _mean_error(values)
            xs, means, errors = bars[mode]
            xs.append(position + (offset - (len(present) - 1) / 2) * width)
            means.append(mean)
            errors.append(error)
    for mode, (xs, means, errors) in bars.items():
        axis.bar(xs, means, width, yerr=errors, capsize=3, label=mode, color=MODE_COLOURS[mode])
    axis.set_xticks(range(len(names)), names)
    axis.set_title(title)
    axis.legend()
    axis.grid(axis="y", alpha=0.3)


def _eval_totals(axis, runs: dict[str, list[dict]], costs: dict) -> None:
    """The whole run: host seconds (left), and the modeled cost of its exits
    on real hardware (right, hatched: exits x cycles per exit / clock)."""
    modeled_axis = axis.twinx()
    for position, (mode, mode_runs) in enumerate(runs.items()):
        host, host_error = _mean_error([run["host_seconds"] for run in mode_runs])
        modeled, modeled_error = _mean_error([run["modeled_exit_seconds"] * 1e3 for run in mode_runs])
        axis.bar(position - 0.2, host, 0.4, yerr=host_error, capsize=3, color=MODE_COLOURS[mode])
        modeled_axis.bar(position + 0.2, modeled, 0.4, yerr=modeled_error, capsize=3, facecolor="white",
                         edgecolor=MODE_COLOURS[mode], hatch="///")
        axis.annotate(f"{host:.2f} s", (position - 0.2, 0), xytext=(0, 4), textcoords="offset points", ha="center",
                      va="bottom", fontsize=8, color="white", fontweight="bold")
        modeled_axis.annotate(f"{modeled:.2f} ms", (position + 0.2, modeled), xytext=(0, 2), textcoords="offset points",
                              ha="center", va="bottom", fontsize=8)
    axis.set_xticks(range(len(runs)), list(runs))
    axis.set_ylabel("host seconds (solid)")
    modeled_axis.set_ylabel("modeled exit cost, ms (hatched)")
    axis.set_title("the whole run: host time, and what its exits cost on AMD SVM")
    source = costs.get("source", "")
    if source:
        cycles = sorted(set(costs.get("cycles_per_exit", {}).values()))
        at = f"{cycles[0]} cycles per exit at {costs.get('cpu_hz', 0) / 1e9:g} GHz; " if len(cycles) == 1 else ""
        axis.set_xlabel(at + source, fontsize=6.5, wrap=True)
    axis.grid(axis="y", alpha=0.3)


def _eval_exits(axis, runs: dict[str, list[dict]]) -> None:
    kinds: list[str] = []
    for mode_runs in runs.values():
        for kind in mode_runs[0]["exits"]:
            if kind not in kinds:
                kinds.append(kind)
    if not kinds:
        axis.text(0.5, 0.5, "no monitor exits", ha="center", va="center", transform=axis.transAxes)
        axis.set_axis_off()
        return
    width = 0.8 / len(runs)
    for offset, (mode, mode_runs) in enumerate(runs.items()):
        means = [statistics.fmean(run["exits"].get(kind, 0) for run in mode_runs) for kind in kinds]
        xs = [position + (offset - (len(runs) - 1) / 2) * width for position in range(len(kinds))]
        axis.bar(xs, [max(mean, 0.5) if mean else 0 for mean in means], width, label=mode, color=MODE_COLOURS[mode])
    axis.set_yscale("log")
    axis.set_xticks(range(len(kinds)), kinds, rotation=30, ha="right")
    axis.set_title("monitor exits per run, by kind")
    axis.legend()
    axis.grid(axis="y", alpha=0.3)


# ---------------------------------------------------------------- the timeline
def draw_timeline(plt, report: dict):
    """One row per core, grouped by kernel, over virtual time in ms."""
    from matplotlib.patches import Patch

    cores = [core for core in report["timeline"]["cores"] if core["kernel"] is not None]
    if not cores:
        raise ValueError("the timeline has no online core")
    figure, axis = plt.subplots(figsize=(14, max(3.0, 0.32 * len(cores) + 1.8)))
    rows: list[str] = []
    groups: list[tuple[str, int, int]] = []  # (kernel, first row, last row)
    for core in cores:
        row = len(rows)
        rows.append(f"c{core['index']} (APIC {core['apic_id']})")
        if groups and groups[-1][0] == core["kernel"]:
            groups[-1] = (groups[-1][0], groups[-1][1], row)
        else:
            groups.append((core["kernel"], row, row))
        for state, colour in STATE_COLOURS.items():
            spans = [(start / 1e6, (end - start) / 1e6) for start, end, kind in core["intervals"] if kind == state]
            if spans:
                axis.broken_barh(spans, (row - 0.4, 0.8), facecolors=colour, edgecolor="none")
    used = set()
    for kind, (marker, colour, size, label) in MARK_STYLES.items():
        xs = [mark[0] / 1e6 for core in cores for mark in core["marks"] if mark[1] == kind]
        ys = [row for row, core in enumerate(cores) for mark in core["marks"] if mark[1] == kind]
        if xs:
            used.add(kind)
            axis.scatter(xs, ys, marker=marker, s=size, c=colour, linewidths=1.2 if marker in "|x" else 0.5,
                         zorder=3 if kind != "refused" else 4, label=label)
    for kernel, first, last in groups:
        if first:
            axis.axhline(first - 0.5, color="black", linewidth=0.8)
        axis.annotate(kernel, xy=(1.005, (first + last) / 2), xycoords=("axes fraction", "data"), va="center",
                      fontsize=10, fontweight="bold")
    axis.set_yticks(range(len(rows)), rows, fontsize=7 if len(rows) > 16 else 8)
    axis.set_ylim(len(rows) - 0.5, -0.5)
    axis.set_xlim(0, max(report["timeline"]["end_ns"], 1) / 1e6)
    axis.set_xlabel("virtual time of each core's kernel (ms)")
    dropped = sum(core["intervals_dropped"] + core["marks_dropped"] for core in cores)
    title = f"{report.get('mode', '?')} run of {len(cores)} cores: " + ", ".join(_kernel_titles(report))
    if dropped:
        title += f" ({dropped} timeline entries beyond the cap of {report['timeline'].get('cap')} not shown)"
    axis.set_title(title)
    handles = [Patch(color=colour, label=state) for state, colour in STATE_COLOURS.items()]
    marks, labels = axis.get_legend_handles_labels()
    figure.legend(handles + marks, [h.get_label() for h in handles] + labels, loc="lower center", ncol=12,
                  fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.45 / figure.get_figheight(), 1, 1))
    return figure


def _kernel_titles(report: dict) -> list[str]:
    """Each kernel by name and image (the whole machine's image when native)."""
    kernels = report.get("kernels") or [{"name": "machine", "image": report.get("image")}]
    return [f"{kernel['name']} ({Path(str(kernel.get('image') or '-')).name})" for kernel in kernels]


# ---------------------------------------------------------------- the topology
def draw_topology(plt, report: dict):
    """Sockets and their cores coloured by kernel; each kernel's memory on
    the machine's memory; the shared channels and their members."""
    from matplotlib.patches import Patch, Rectangle

    machine, kernels, cores = report["machine"], report["kernels"], report["cores"]
    colours = {kernel["name"]: KERNEL_COLOURS[index % len(KERNEL_COLOURS)] for index, kernel in enumerate(kernels)}
    channels = report.get("channels", [])
    per_socket = machine["cores_per_socket"]
    columns = min(per_socket, 8)
    rows_per_socket = -(-per_socket // columns)
    socket_columns = min(machine["sockets"], 2)
    socket_rows = -(-machine["sockets"] // socket_columns)
    # Inches: the sockets drawn to scale in the 10 inches left of the legend.
    sockets_height = min(7.0, 10.0 * socket_rows * (rows_per_socket + 1.2) / (socket_columns * (columns + 1)))
    channels_height = 0.5 + 0.35 * max(1, len(channels))
    figure = plt.figure(figsize=(13, sockets_height + 1.6 + channels_height + 1.0))
    grid = figure.add_gridspec(3, 1, height_ratios=[sockets_height, 1.6, channels_height])
    sockets_axis, memory_axis, channel_axis = (figure.add_subplot(grid[i]) for i in range(3))

    for core in cores:
        socket, slot = core["socket"], core["index"] % per_socket
        x0 = (socket % socket_columns) * (columns + 1) + slot % columns
        y0 = -(socket // socket_columns) * (rows_per_socket + 1.2) - slot // columns
        colour = colours.get(core["kernel"], "white")
        sockets_axis.add_patch(Rectangle((x0 + 0.05, y0 - 0.95), 0.9, 0.9, facecolor=colour, edgecolor="black",
                                         hatch=None if core["kernel"] else "xx"))
        sockets_axis.text(x0 + 0.5, y0 - 0.5, str(core["apic_id"]), ha="center", va="center", fontsize=8,
                          color="white" if core["kernel"] else "black")
    for socket in range(machine["sockets"]):
        x0 = (socket % socket_columns) * (columns + 1)
        y0 = -(socket // socket_columns) * (rows_per_socket + 1.2)
        sockets_axis.add_patch(Rectangle((x0 - 0.1, y0 - rows_per_socket - 0.1), columns + 0.2, rows_per_socket + 0.6,
                                         fill=False, edgecolor="#333333", linewidth=1.5))
        sockets_axis.text(x0, y0 + 0.15, f"socket {socket} (node {socket})", fontsize=9, va="bottom")
    sockets_axis.set_xlim(-0.5, socket_columns * (columns + 1))
    sockets_axis.set_ylim(-socket_rows * (rows_per_socket + 1.2) + 0.8, 1.0)
    sockets_axis.set_aspect("equal")
    sockets_axis.set_axis_off()
    offline = len(report.get("offline_cores", []))
    sockets_axis.set_title(f"{machine['sockets']} sockets x {per_socket} cores, {len(kernels)} kernels"
                           + (f", {offline} cores offline (hatched)" if offline else "")
                           + "  (numbers: APIC IDs)")
    legend = [Patch(color=colours[k["name"]], label=f"{k['name']}: {len(k['cores'])} cores, "
                    f"{_kernel_memory(k) >> 20} MiB, {k['end']['end'] if k.get('end') else '?'}") for k in kernels]
    sockets_axis.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)

    total = machine["memory_bytes"]
    for node in machine["nodes"]:
        ranges = [(int(low, 16), int(high, 16)) for low, high in node["ranges"]]
        for low, high in ranges:
            memory_axis.add_patch(Rectangle((low, 0.6), high - low, 0.3, facecolor="#DDDDDD", edgecolor="#888888"))
        low, high = max(ranges, key=lambda pair: pair[1] - pair[0])
        memory_axis.text((low + high) / 2, 0.95, f"node {node['node']}", ha="center", va="bottom", fontsize=8)
    for kernel in kernels:
        for piece in kernel["memory"]:
            low, high = (int(value, 16) for value in piece["machine"])
            memory_axis.add_patch(Rectangle((low, 0.1), high - low, 0.4, facecolor=colours[kernel["name"]],
                                            edgecolor="black", linewidth=0.5))
            memory_axis.text((low + high) / 2, 0.3, kernel["name"], ha="center", va="center", fontsize=8,
                             color="white")
    memory_axis.set_xlim(0, total)
    memory_axis.set_ylim(0, 1.25)
    ticks = [total * i // 8 for i in range(9)]
    memory_axis.set_xticks(ticks, [_size(tick) for tick in ticks], fontsize=8)
    memory_axis.set_yticks([])
    memory_axis.set_title("machine memory: the nodes (grey) and each kernel's RAM", fontsize=10)

    channel_axis.set_axis_off()
    channel_axis.set_title("shared channels (the same guest-physical range in each member)", fontsize=10)
    if not channels:
        channel_axis.text(0.5, 0.5, "none", ha="center", va="center", transform=channel_axis.transAxes)
    for row, channel in enumerate(channels):
        y = 1 - (row + 0.5) / max(1, len(channels))
        low, high = (int(value, 16) for value in channel["guest_physical"])
        vectors = number_runs(sorted(channel["notify_vectors"]))
        channel_axis.text(0.0, y, f"{channel['name']}: {_size(high - low)} at {low:#x}, NOTIFY "
                          f"{vectors or 'none'}", transform=channel_axis.transAxes, va="center", fontsize=9)
        for slot, member in enumerate(channel["kernels"]):
            channel_axis.text(0.5 + slot * 0.06, y, member, transform=channel_axis.transAxes, va="center",
                              ha="center", fontsize=8, color="white",
                              bbox={"boxstyle": "round", "facecolor": colours.get(member, "grey"), "edgecolor": "none"})
    figure.tight_layout()
    return figure


def _kernel_memory(kernel: dict) -> int:
    return sum(int(piece["machine"][1], 16) - int(piece["machine"][0], 16) for piece in kernel["memory"])


def _size(value: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift and value % (1 << shift) == 0 or value >= 1 << (shift + 4):
            return f"{value / (1 << shift):g} {unit}"
    return f"{value} B"


# ---------------------------------------------------------------- the benchmark
def draw_bench(plt, document: dict):
    """Wall time of each guest on each runner: median bars, the fastest and
    slowest sample as error bars."""
    rows = document["guests"]
    if not rows:
        raise ValueError("no guests in the benchmark")
    guests: list[str] = []
    runners: list[str] = []
    for row in rows:
        if row["guest"] not in guests:
            guests.append(row["guest"])
        if row["runner"] not in runners:
            runners.append(row["runner"])
    colours = {runner: ("#555555" if runner == "qemu" else KERNEL_COLOURS[index % len(KERNEL_COLOURS)])
               for index, runner in enumerate(runners)}
    figure, axis = plt.subplots(figsize=(13, 5.5))
    width = 0.8 / len(runners)
    for offset, runner in enumerate(runners):
        xs, heights, low, high = [], [], [], []
        for position, guest in enumerate(guests):
            row = next((row for row in rows if row["guest"] == guest and row["runner"] == runner), None)
            if row is None:
                continue
            walls = [sample["wall"] for sample in row.get("samples", [])] or [row["wall"]]
            xs.append(position + (offset - (len(runners) - 1) / 2) * width)
            heights.append(row["wall"])
            low.append(row["wall"] - min(walls))
            high.append(max(walls) - row["wall"])
        axis.bar(xs, heights, width, yerr=[low, high], capsize=2, label=runner, color=colours[runner])
        for x, height, above in zip(xs, heights, high, strict=True):
            axis.annotate(f"{height:.2f}", (x, height + above), ha="center", va="bottom", fontsize=6.5,
                          xytext=(0, 2), textcoords="offset points")
    axis.set_xticks(range(len(guests)), guests)
    axis.set_ylabel("wall seconds (median; bars: fastest to slowest run)")
    host = document.get("host", {})
    axis.set_title(f"osvemu modes and QEMU TCG, {document.get('repeats', '?')} runs each, on a "
                   f"{host.get('cores', '?')}-core {host.get('machine', '')} host"
                   + (f" ({host['qemu']})" if host.get("qemu") else ""), fontsize=10)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


__all__ = ["BENCH_SCHEMA", "EVAL_SCHEMA", "add_options", "draw_bench", "draw_eval", "draw_timeline", "draw_topology",
           "pictures", "run"]
