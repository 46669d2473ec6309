"""The JSON run report written by ``osvemu boot --report``."""

from __future__ import annotations

import json
from pathlib import Path

from osvemu.errors import ConfigError
from osvemu.platform.machine import Machine
from osvemu.scheduler import RunResult, Scheduler


def build_report(machine: Machine, scheduler: Scheduler, result: RunResult) -> dict:
    topology = machine.topology
    first = machine.kernels[0]
    cores = []
    for core in machine.cores:
        ipis = machine.bus.stats[core.apic_id]
        cores.append({
            "index": core.index,
            "apic_id": core.apic_id,
            "socket": topology.cpus[core.index].socket,
            "instructions": core.instructions,
            "interrupts_taken": core.interrupts_taken,
            "exceptions_taken": core.exceptions_taken,
            "ipis_sent": ipis.sent,
            "ipis_received": ipis.received,
            "ipis_sent_by_mode": dict(sorted(ipis.by_mode.items())),
            "timer_fires": machine.lapics[core.index].timer_fires,
            "final_state": core.state.value,
            "emulated_instructions": dict(sorted(core.special_counts.items())),
            "msr_accesses": {f"{number:#x} {kind}": count for (number, kind), count in sorted(core.msr_counts.items())},
            "fault": core.fault.to_json() if core.fault else None,
        })
    return {
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
        **_osv_section(machine),
    }


def _osv_section(machine: Machine) -> dict:
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
            **monitor.report_kernel(kernel.index),
        })
    return {"mode": "osv", "kernels": kernels, **monitor.report()}


def check_writable(path: str | Path, option: str = "--report") -> None:
    """Fail before the run, not after it, when the report cannot be written."""
    try:
        parent = Path(path).resolve().parent
    except (OSError, RuntimeError) as error:  # a symlink loop is a RuntimeError in Python 3.11
        raise ConfigError(f"{option} {path}: {error}") from None
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: directory {parent} does not exist")


def write_report(path: str | Path, report: dict) -> None:
    try:
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
    except OSError as error:
        raise ConfigError(f"--report {path}: cannot write: {error.strerror}") from None
