"""What OSV did in a run, at a glance: the end-of-run summary.

``osvemu boot`` prints it on standard error (or the ``-D`` log file) after
every OSV run, ``--quiet`` aside, so the guest console on standard output
stays the guest's: one row per kernel -- its cores (APIC IDs), memory, how
it ended, instructions, virtual and host time, IPIs sent and refused,
hypercalls, violations by kind -- and the monitor's exits by kind.  It is
drawn from the run's report (:func:`osvemu.report.build_report`), so the
summary and the ``--report`` file never disagree.  A run cut short
(``--timeout``, ``--max-instructions``, Ctrl-C) also says where each core
was.
"""

from __future__ import annotations

from collections.abc import Iterable

from osvemu.platform.layout import format_size, number_runs
from osvemu.platform.machine import Machine

_COLUMNS = ("kernel", "cores (APIC)", "memory", "ended", "instructions", "virtual", "host", "IPIs sent/refused",
            "hypercalls", "violations")
#: Right-aligned columns (numbers).
_NUMERIC = frozenset({"instructions", "virtual", "host", "IPIs sent/refused", "hypercalls"})


def id_ranges(ids: Iterable[int]) -> str:
    """``0-7,9,12-13``: sorted IDs with runs joined ('-' for none)."""
    return number_runs(sorted(set(ids)), ",") or "-"


def _memory(ranges: list[dict]) -> str:
    total = sum(int(r["machine"][1], 16) - int(r["machine"][0], 16) for r in ranges)
    nodes = sorted({r["node"] for r in ranges})
    return f"{format_size(total)} (node {id_ranges(nodes)})" if nodes else format_size(total)


def _ended(kernel: dict) -> str:
    end = kernel.get("end")
    if end is None:
        return "running"
    kind, status = end["end"], end["exit_status"]
    text = {"exited": f"exit {status}", "stopped for a violation": f"stopped ({status})"}.get(kind, f"{kind} ({status})")
    lives = len(kernel.get("lives", []))
    return f"{text}, {lives} lives" if lives > 1 else text


def _violations(kernel: dict) -> str:
    by_kind = kernel.get("violations_by_kind") or {}
    return ", ".join(f"{kind} {count}" for kind, count in by_kind.items() if count) or "-"


def kernel_rows(report: dict) -> list[dict[str, str]]:
    """One row per kernel of an OSV run's report, by column."""
    rows = []
    for kernel in report["kernels"]:
        rows.append({
            "kernel": kernel["name"],
            "cores (APIC)": id_ranges(kernel["cores"]),
            "memory": _memory(kernel["memory"]),
            "ended": _ended(kernel),
            "instructions": f"{kernel['instructions']:,}",
            "virtual": f"{kernel['virtual_ns'] / 1e9:.3f} s",
            "host": f"{kernel['host_seconds']:.2f} s",
            "IPIs sent/refused": f"{kernel['ipis_sent']}/{kernel['ipis_refused']}",
            "hypercalls": str(kernel["hypercalls"]),
            "violations": _violations(kernel),
        })
    return rows


def table(rows: list[dict[str, str]], columns: tuple[str, ...] = _COLUMNS) -> list[str]:
    """Plain text columns (the same in a terminal and in a log)."""
    widths = {column: max([len(column)] + [len(row[column]) for row in rows]) for column in columns}

    def line(cells: dict[str, str]) -> str:
        return "  ".join(cells[c].rjust(widths[c]) if c in _NUMERIC else cells[c].ljust(widths[c])
                         for c in columns).rstrip()

    return [line({c: c for c in columns})] + [line(row) for row in rows]


def summary_lines(report: dict) -> list[str]:
    """The summary of an OSV run's report: a heading, the kernels' table and the monitor's exits."""
    heading = (f"osv: {len(report['kernels'])} kernels, {report['scheduling']} scheduling, "
               f"{report['virtual_ns'] / 1e9:.3f} s virtual, {report['host_seconds']:.2f} s host: {report['reason']}")
    exits = report.get("monitor_exits") or {}
    exit_text = ", ".join(f"{kind} {count:,}" for kind, count in sorted(exits.items())) or "none"
    total = report.get("violations_total", 0)
    return [heading, *table(kernel_rows(report)),
            f"monitor exits: {exit_text}; violations: {total}" + (f" ({report['violations_dropped']} not kept)"
                                                                  if report.get("violations_dropped") else "")]


def where_cores_were(machine: Machine) -> list[str]:
    """For a run cut short: each core's state and place, by its label (cores
    that never started are counted, not listed)."""
    lines, unstarted = [], 0
    for core in machine.cores:
        rip = core.final_rip if core.final_rip is not None else core.rip if core.built else None
        if rip is None:
            unstarted += 1
            continue
        kernel = machine.kernel_of(core)
        symbol = machine.symbolize(core, rip) if kernel is not None else None
        place = f"rip {rip:#x}" + (f" <{symbol}>" if symbol else "")
        lines.append(f"  {machine.core_label(core.index)}: {core.state.value}, {place}, "
                     f"{core.instructions:,} instructions")
    if unstarted:
        lines.append(f"  ({unstarted} cores never started)")
    return ["where each core was:", *lines]


__all__ = ["id_ranges", "kernel_rows", "summary_lines", "table", "where_cores_were"]
