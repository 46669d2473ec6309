"""The JSON run report written by ``osvemu boot --report``."""

from __future__ import annotations

import json
from pathlib import Path

from osvemu.errors import ConfigError
from osvemu.platform.machine import Machine
from osvemu.scheduler import RunResult, Scheduler


def build_report(machine: Machine, scheduler: Scheduler, result: RunResult) -> dict:
    topology = machine.topology
    cores = []
    for core in machine.cores:
        ipis = machine.bus.stats[core.apic_id]
        cores.append({
            "index": core.index,
            "apic_id": core.apic_id,
            "socket": topology.cpus[core.index].socket,
            "instructions": None if scheduler.fast else core.instructions,
            "interrupts_taken": core.interrupts_taken,
            "exceptions_taken": core.exceptions_taken,
            "ipis_sent": ipis.sent,
            "ipis_received": ipis.received,
            "ipis_sent_by_mode": dict(sorted(ipis.by_mode.items())),
            "timer_fires": core.lapic.timer_fires,
            "final_state": core.state.value,
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
        "image": str(machine.image.path) if machine.image else None,
        "cmdline": machine.config.cmdline,
        "scheduling": "fast" if scheduler.fast else "deterministic",
        "quantum": None if scheduler.fast else scheduler.quantum,
        "exit_status": result.status,
        "reason": result.reason,
        "host_seconds": round(result.host_seconds, 6),
        "virtual_ns": result.virtual_ns,
        "total_instructions": None if scheduler.fast else sum(c.instructions for c in machine.cores),
        "cores": cores,
        "console": machine.console.text.decode("utf-8", "replace"),
        **_osv_section(machine),
    }


def _osv_section(machine: Machine) -> dict:
    """Per kernel and per violation detail when OSV partitions the machine."""
    partitions = getattr(machine, "partitions", None)
    if partitions is None:
        return {"mode": "native"}
    stats = machine.bus.stats
    kernels = []
    for p in partitions:
        kernels.append({
            "name": p.name,
            "image": p.plan.image,
            "cmdline": p.plan.cmdline,
            "cores": list(p.plan.apic_ids),
            "memory": [{"machine": [f"{r.base:#x}", f"{r.end:#x}"], "node": r.node} for r in p.plan.memory],
            "guest_ram": [[f"{base:#x}", f"{base + size:#x}"] for base, size, _ in p.ram],
            "on_violation": p.plan.on_violation,
            "exit_status": p.status,
            "instructions": sum(c.instructions for c in p.cores),
            "ipis_sent": sum(stats[c.apic_id].sent for c in p.cores),
            "ipis_delivered_to": sum(stats[c.apic_id].received for c in p.cores),
            "ipis_refused": p.ipis_refused,
            "hypercalls": p.hypercalls,
            "violations": p.violations,
        })
    return {
        "mode": "osv",
        "kernels": kernels,
        "violations": [{"kernel": v.kernel, "core": v.core, "kind": v.kind, "reason": v.reason,
                        "rip": f"{v.rip:#x}" if v.rip is not None else None} for v in machine.violations],
        "monitor_exits": dict(machine.monitor_exits),
    }


def check_writable(path: str | Path) -> None:
    """Fail before the run, not after it, when the report cannot be written."""
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"--report {path}: directory {parent} does not exist")


def write_report(path: str | Path, report: dict) -> None:
    try:
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
    except OSError as error:
        raise ConfigError(f"--report {path}: cannot write: {error.strerror}") from None
