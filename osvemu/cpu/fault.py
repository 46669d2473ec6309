"""Fault reports: what a user needs to see when a core stops on a fault."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
