"""What one check of a property found: how much it covered, how long it
took, and either PROVED or the first counterexample, in a form that can be
replayed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Counterexample:
    """The first input that breaks the property, and what went wrong."""

    detail: str
    #: ``osvemu verify`` arguments that replay it on the emulator, when it can be replayed.
    replay: str | None = None


@dataclass
class PropertyOutcome:
    name: str  # one of properties.PROPERTIES
    layout: str
    cases: int = 0  # concrete inputs covered (every ICR value x sender x state class, ...)
    classes: int = 0  # runs of the real function that covered them
    seconds: float = 0.0
    counterexample: Counterexample | None = None
    method: str = ""  # how: "exhaustive by lazy case splitting", "boundary classes", ...
    notes: list[str] = field(default_factory=list)

    @property
    def proved(self) -> bool:
        return self.counterexample is None

    def fail(self, detail: str, replay: str | None = None) -> None:
        """Record the first counterexample (later ones are not kept)."""
        if self.counterexample is None:
            self.counterexample = Counterexample(detail, replay)


__all__ = ["Counterexample", "PropertyOutcome"]
