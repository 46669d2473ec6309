"""Fault reports: what a user needs to see when a core stops on a fault."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from osvemu.cpu.core import Core


@dataclass
class FaultReport:
    core: int
    apic_id: int
    kind: str  # "triple fault", "unmapped memory", "unsupported", ...
    description: str
    rip: int
    instruction: str  # capstone disassembly, or "<unreadable>"
    symbol: str | None
    registers: dict[str, int] = field(default_factory=dict)
    chain: list[str] = field(default_factory=list)  # exceptions that led here

    def one_line(self) -> str:
        where = f" in {self.symbol}" if self.symbol else ""
        return (f"core {self.core} (APIC {self.apic_id}) {self.kind}: {self.description} "
                f"at {self.rip:#x}{where}: {self.instruction}")

    def to_json(self) -> dict:
        data = asdict(self)
        data["registers"] = {name: f"{value:#x}" for name, value in self.registers.items()}
        data["rip"] = f"{self.rip:#x}"
        return data


def fault_report(core: Core, kind: str, description: str, chain: list[str]) -> FaultReport:
    """What a core looked like when it stopped on a fault; never fails."""
    registers = core.registers()
    rip = registers["rip"]
    try:
        instruction = core.disassemble(rip)
    except Exception:  # noqa: BLE001 - a report must never fail
        instruction = "<unreadable>"
    return FaultReport(core.index, core.apic_id, kind, description, rip, instruction,
                       core.platform.symbolize(core, rip), registers, chain)
