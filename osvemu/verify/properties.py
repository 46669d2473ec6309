"""The properties of OSV's interface, written down once (docs/verification.md
explains each, and how it is checked).  Every checker reports under one of
these names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Property:
    name: str
    statement: str


IPI_ISOLATION = Property(
    "ipi-isolation",
    "no ICR write or I/O APIC message delivers anything to a core of another partition or to no core; SMI and "
    "ExtINT are never delivered; within the partition the deliveries are the bare machine's restricted to it, "
    "and every physical target outside it is refused and recorded")
INDEPENDENCE = Property(
    "independence",
    "the decision for a sender never reads the state of a foreign core (its LDR, DFR, TPR/PPR; enable bits and "
    "run state are not inputs at all), so it cannot depend on it")
BOOT_PROTOCOL = Property(
    "boot-protocol",
    "INIT and STARTUP reach only the partition's own cores; a STARTUP vector starts a core only inside its "
    "kernel's private low memory; each kernel's boot CPU is its own, named as BSP only by its own tables")
HYPERCALLS = Property(
    "hypercalls",
    "no argument combination makes a hypercall write outside the caller's RAM, name a kernel or channel the "
    "caller may not use, notify against the channel rules, raise inside OSV or leave its accounts "
    "inconsistent; every failure returns its documented errno")
MEMORY = Property(
    "memory",
    "every kernel's guest-physical map is disjoint, in machine memory, from every other's except the channels "
    "that name both; each maps only machine RAM its plan owns")

PROPERTIES = (IPI_ISOLATION, INDEPENDENCE, BOOT_PROTOCOL, HYPERCALLS, MEMORY)

__all__ = ["BOOT_PROTOCOL", "HYPERCALLS", "INDEPENDENCE", "IPI_ISOLATION", "MEMORY", "PROPERTIES", "Property"]
