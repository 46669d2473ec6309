"""Exhaustive exploration of a pure function by lazy case splitting.

The function under proof runs on *abstract* inputs: a field whose value it
has not looked at yet is an object that stands for its whole domain.  The
first time the function uses such a field (compares it, hashes it, tests
its truth, computes with it), the object raises :class:`NeedsValue`; the
explorer then splits that field's domain and runs the function again on
each part.  An integer range answers a comparison with a constant without
splitting when the whole range agrees, and splits at the constant
otherwise.  When a run completes, its result holds for *every* value of the
fields still abstract and every value of each range: the function provably
did not distinguish them.  The leaves together cover the whole input space.

This is sound for functions that reach their inputs only through Python's
operators (no ``id()``, ``type()`` inspection or ``object.__getattribute__``
tricks), which the policy functions of :mod:`osvemu.osv` are.  The signals
derive from ``BaseException`` so that an ``except Exception`` in the code
under proof cannot swallow them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class NeedsValue(BaseException):
    """The function used an abstract field: split it and run again."""

    def __init__(self, field: str, parts: Sequence[Any]) -> None:
        super().__init__(field)
        self.field = field
        self.parts = tuple(parts)


class Unfixed:
    """Any one of ``values``; every use asks for the value."""

    __slots__ = ("field", "values")

    def __init__(self, field: str, values: Sequence[Any]) -> None:
        self.field, self.values = field, tuple(values)

    def _need(self, *_: Any) -> Any:
        raise NeedsValue(self.field, self.values)

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _need  # type: ignore[assignment]
    __hash__ = __bool__ = __int__ = __index__ = __float__ = __format__ = _need  # type: ignore[assignment]
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = __invert__ = _need
    __lshift__ = __rlshift__ = __rshift__ = __rrshift__ = _need
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __mod__ = __rmod__ = _need
    __floordiv__ = __rfloordiv__ = __neg__ = __pos__ = __abs__ = _need

    def __repr__(self) -> str:
        return f"<any {self.field}>"


_COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "__lt__": operator.lt, "__le__": operator.le, "__gt__": operator.gt, "__ge__": operator.ge,
    "__eq__": operator.eq, "__ne__": operator.ne,
}


#: Where each comparison with a constant c can change its answer: parts start there.
_CUTS: dict[str, Callable[[int], tuple[int, ...]]] = {
    "__lt__": lambda c: (c,), "__ge__": lambda c: (c,), "__le__": lambda c: (c + 1,), "__gt__": lambda c: (c + 1,),
    "__eq__": lambda c: (c, c + 1), "__ne__": lambda c: (c, c + 1),
}


class IntRange(Unfixed):
    """Any integer in ``lo..hi``.  A comparison with an integer constant is
    answered when every value of the range agrees, and otherwise splits the
    range at the constant; any other use enumerates the range."""

    __slots__ = ("hi", "lo")

    def __init__(self, field: str, lo: int, hi: int) -> None:
        super().__init__(field, range(lo, hi + 1))
        self.lo, self.hi = lo, hi

    def _compare(self, name: str, other: Any) -> bool:
        if type(other) is not int:
            if not isinstance(other, int):
                self._need()
            other = int(other)
        compare = _COMPARISONS[name]
        if name in ("__eq__", "__ne__"):
            agrees = self.lo == self.hi or not self.lo <= other <= self.hi
        else:  # monotone in the value: the ends agree exactly when every value does
            agrees = compare(self.lo, other) == compare(self.hi, other)
        if agrees:
            return compare(self.lo, other)
        # Where the answer changes: before the constant (<, >=), after it (<=, >), or both (==, !=).
        bounds = [self.lo] + [cut for cut in _CUTS[name](other) if self.lo < cut <= self.hi] + [self.hi + 1]
        raise NeedsValue(self.field, [IntRange(self.field, bounds[i], bounds[i + 1] - 1)
                                      for i in range(len(bounds) - 1)])

    def __lt__(self, other: Any) -> bool: return self._compare("__lt__", other)
    def __le__(self, other: Any) -> bool: return self._compare("__le__", other)
    def __gt__(self, other: Any) -> bool: return self._compare("__gt__", other)
    def __ge__(self, other: Any) -> bool: return self._compare("__ge__", other)
    def __eq__(self, other: object) -> bool: return self._compare("__eq__", other)  # type: ignore[override]
    def __ne__(self, other: object) -> bool: return self._compare("__ne__", other)  # type: ignore[override]
    __hash__ = Unfixed._need  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{self.field} {self.lo}..{self.hi}>"


def concrete(value: Any) -> Any:
    """A one-value range stands for that value."""
    if isinstance(value, IntRange) and value.lo == value.hi:
        return value.lo
    return value


@dataclass(frozen=True)
class Leaf:
    """One class of inputs and the function's result, the same for all of them."""

    assignment: Mapping[str, Any]
    result: Any


def explore(run: Callable[[Mapping[str, Any]], Any], initial: Mapping[str, Any]) -> Iterator[Leaf]:
    """Every leaf of ``run`` over the abstract ``initial`` assignment, in a
    deterministic order.  A one-value part replaces its field by the value."""
    pending = [dict(initial)]
    while pending:
        assignment = pending.pop()
        try:
            result = run(assignment)
        except NeedsValue as need:
            if need.field not in assignment:
                raise
            if len(need.parts) == 1 and class_key(need.parts[0]) == class_key(assignment[need.field]):
                raise RuntimeError(f"splitting {need.field} made no progress") from None
            pending.extend({**assignment, need.field: concrete(part)} for part in reversed(need.parts))
            continue
        yield Leaf(assignment, result)


def class_key(value: Any) -> Any:
    """A hashable stand-in for one field of an assignment: the range, the
    field still open, or the value itself."""
    if isinstance(value, IntRange):
        return ("range", value.lo, value.hi)
    if isinstance(value, Unfixed):
        return ("any", value.field)
    return value


def class_size(assignment: Mapping[str, Any]) -> int:
    """How many concrete inputs a leaf's assignment stands for."""
    size = 1
    for value in assignment.values():
        if isinstance(value, Unfixed):
            size *= len(value.values)
    return size


__all__ = ["IntRange", "Leaf", "NeedsValue", "Unfixed", "class_key", "class_size", "concrete", "explore"]
