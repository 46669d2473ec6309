"""The JSON run report written by ``osvemu boot --report``.

Its format is docs/report.schema.json, numbered by ``schema_version``
(:data:`SCHEMA_VERSION`; the unnumbered format of earlier releases is 1).
Every count in it is of the whole run, every life of every kernel:

* ``violations_total`` is every violation OSV counted; it is the sum of the
  kernels' ``violations``, each the sum of its ``violations_by_kind``;
* ``violations`` (top level) are the records kept in full, the first and
  the last ``violation_records``: ``len(violations) + violations_dropped ==
  violations_total``;
* ``monitor_exits`` count the exits to OSV by kind: every ICR write, every
  VMMCALL, and every access outside a kernel's memory (``"violation"``).  A
  refused IPI or hypercall is one exit (an ``icr`` or ``hypercall``) and
  one violation, so the exits are not a violation count;
* a core's ``ipis_received_by_mode`` sums to its ``ipis_received``; the I/O
  APIC's messages that reached it are ``io_interrupts_received``;
* ``channels`` are the shared channels, each mapped at the same
  guest-physical range in every member;
* the kernels' ``instructions`` sum to ``total_instructions`` when no core
  is offline (an offline core retires none).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import unicorn

from osvemu.errors import ConfigError
from osvemu.platform.machine import Kernel, Machine
from osvemu.scheduler import RunResult, Scheduler

#: The report's format (docs/report.schema.json); 1 is the unnumbered one before it.
SCHEMA_VERSION = 2
#: Where --report writes to standard output.
STDOUT = "-"


def osvemu_version() -> str:
    """The installed osvemu's version (importlib.metadata, imported here: it
    costs start-up time that only a report needs)."""
    from importlib import metadata

    try:
        return metadata.version("osvemu")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_report(machine: Machine, scheduler: Scheduler, result: RunResult, argv: list[str] | None = None,
                 timeline=None) -> dict:
    """The report of a finished run; ``argv`` is the command line (without
    the program), ``timeline`` an :class:`osvemu.timeline.TimelineRecorder`
    that recorded the run, for the ``"timeline"`` section."""
    topology = machine.topology
    first = machine.kernels[0]
    cores = []
    for core in machine.cores:
        ipis = machine.bus.stats[core.apic_id]
        kernel = machine.kernel_of(core)
        cpu = topology.cpus[core.index]
        cores.append({
            "index": core.index,
            "apic_id": core.apic_id,
            "socket": cpu.socket,
            "node": cpu.node,
            "kernel": kernel.name if kernel is not None else None,
            "instructions": core.instructions,
            "interrupts_taken": core.interrupts_taken,
            "exceptions_taken": core.exceptions_taken,
            "ipis_sent": ipis.sent,
            "ipis_received": ipis.received,
            "ipis_sent_by_mode": dict(sorted(ipis.by_mode.items())),
            "ipis_received_by_mode": dict(sorted(ipis.received_by_mode.items())),
            "io_interrupts_received": ipis.io_received,
            "timer_fires": machine.lapics[core.index].timer_fires,
            "final_state": core.state.value,
            "emulated_instructions": dict(sorted(core.special_counts.items())),
            "msr_accesses": {f"{number:#x} {kind}": count for (number, kind), count in sorted(core.msr_counts.items())},
            "fault": core.fault.to_json() if core.fault else None,
        })
    report = {
        "schema_version": SCHEMA_VERSION,
        "osvemu_version": osvemu_version(),
        "unicorn_version": unicorn.__version__,
        "argv": list(argv) if argv is not None else None,
        "machine": {
            "sockets": topology.sockets,
            "cores_per_socket": topology.cores_per_socket,
            "cpus": topology.cpu_count,
            "memory_bytes": topology.memory_size,
            "nodes": [{"node": node, "ranges": [[f"{m.base:#x}", f"{m.end:#x}"] for m in topology.memory if m.node == node]}
                      for node in topology.nodes],
        },
        "image": str(first.image.path) if first.image else None,
        "cmdline": first.placement.cmdline,
        "scheduling": "fast" if scheduler.fast else "deterministic",
        "counting": "exact" if scheduler.exact else "blocks",
        "quantum": scheduler.quantum,
        "exit_status": result.status,
        "reason": result.reason,
        "host_seconds": round(result.host_seconds, 6),
        "virtual_ns": result.virtual_ns,
        "total_instructions": sum(c.instructions for c in machine.cores),
        "cores": cores,
        "console": "".join(line + "\n" for line in machine.transcript),
        "console_lines_dropped": machine.transcript_dropped,
        "offline_cores": [core.apic_id for core in machine.cores if machine.kernel_of(core) is None],
        **_osv_section(machine, scheduler),
    }
    if timeline is not None:
        report["timeline"] = timeline.to_json()
    return report


def kernel_console(machine: Machine, kernel: Kernel) -> str:
    """The lines of ``kernel``'s console in the transcript, without the
    "[name] " the machine prints before them when kernels share the console."""
    if not kernel.placement.labelled:
        return "".join(line + "\n" for line in machine.transcript)
    label = kernel.console_text("")
    return "".join(line[len(label):] + "\n" for line in machine.transcript if line.startswith(label))


def _osv_section(machine: Machine, scheduler: Scheduler) -> dict:
    """Per kernel and per violation detail when a monitor partitions the machine."""
    monitor = machine.monitor
    if monitor is None:
        end = machine.kernels[0].end
        return {"mode": "native", "end": end.to_json() if end else None}
    stats = machine.bus.stats
    kernels = []
    for kernel in machine.kernels:
        kernels.append({
            "name": kernel.name,
            "cores": list(kernel.placement.apic_ids),
            "exit_status": kernel.status,
            "end": kernel.end.to_json() if kernel.end else None,
            "lives": [end.to_json() for end in kernel.lives + ([kernel.end] if kernel.end else [])],
            "instructions": sum(c.instructions for c in kernel.cores),
            "ipis_sent": sum(stats[c.apic_id].sent for c in kernel.cores),
            "ipis_delivered_to": sum(stats[c.apic_id].received for c in kernel.cores),
            "ipis_refused": sum(stats[c.apic_id].refused for c in kernel.cores),
            "host_seconds": round(scheduler.kernel_host_seconds[kernel.index], 6),
            "virtual_ns": scheduler.kernel_ns[kernel.index],
            "console": kernel_console(machine, kernel),
            **monitor.report_kernel(kernel.index),
        })
    return {"mode": "osv", "kernels": kernels, "channels": _channels(machine), **monitor.report()}


def _channels(machine: Machine) -> list[dict]:
    """The shared channels: where each is in its members' guest-physical
    space, its members and the NOTIFY vectors it allows."""
    seen: dict[str, dict] = {}
    for partition in getattr(machine.monitor, "partitions", ()):
        for channel in partition.channels:
            seen.setdefault(channel.name, {
                "name": channel.name,
                "guest_physical": [f"{channel.gpa:#x}", f"{channel.gpa + channel.size:#x}"],
                "kernels": [machine.kernels[index].name for index in channel.kernels],
                "notify_vectors": list(channel.notify_vectors),
            })
    return list(seen.values())


def check_writable(path: str | Path, option: str = "--report") -> None:
    """Fail before the run, not after it, when the report cannot be written."""
    if str(path) == STDOUT:
        return
    try:
        parent = Path(path).resolve().parent
    except (OSError, RuntimeError) as error:  # a symlink loop is a RuntimeError in Python 3.11
        raise ConfigError(f"{option} {path}: {error}") from None
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: directory {parent} does not exist")


def write_report(path: str | Path, report: dict) -> None:
    """Write ``report`` as indented JSON to ``path``, or to standard output for "-"."""
    text = json.dumps(report, indent=2) + "\n"
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(path).write_text(text)
    except OSError as error:
        raise ConfigError(f"--report {path}: cannot write: {error.strerror}") from None


__all__ = ["SCHEMA_VERSION", "STDOUT", "build_report", "check_writable", "kernel_console", "osvemu_version",
           "write_report"]
