"""Symbols of a guest image, for fault reports, traces and the debugger."""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Symbol:
    address: int
    name: str
    size: int = 0


class SymbolTable:
    """Address -> ``name+0xoff`` and name -> address.

    ``aliases`` are (physical base, virtual base, size) ranges: a kernel
    linked high runs at its load address before it enables paging, so a
    physical code address is also looked up at its virtual alias.
    """

    def __init__(self, symbols: list[Symbol], aliases: list[tuple[int, int, int]] | None = None) -> None:
        # By address; at one address a sized symbol (a function or object)
        # last, so that it names the address rather than a label beside it.
        self._symbols = sorted((s for s in symbols if s.name), key=lambda s: (s.address, s.size > 0, s.name))
        self._addresses = [s.address for s in self._symbols]
        self._by_name: dict[str, Symbol] = {}
        for symbol in self._symbols:
            self._by_name.setdefault(symbol.name, symbol)
        self._aliases = [a for a in (aliases or []) if a[0] != a[1]]

    def __len__(self) -> int:
        return len(self._symbols)

    def find(self, address: int) -> Symbol | None:
        """The symbol covering ``address`` (or its virtual alias)."""
        for candidate in self._candidates(address):
            symbol = self._covering(candidate)
            if symbol is not None:
                return symbol
        return None

    def lookup(self, address: int) -> str | None:
        for candidate in self._candidates(address):
            symbol = self._covering(candidate)
            if symbol is not None:
                offset = candidate - symbol.address
                return symbol.name if offset == 0 else f"{symbol.name}+{offset:#x}"
        return None

    def address_of(self, name: str) -> int | None:
        symbol = self._by_name.get(name)
        return symbol.address if symbol else None

    def symbol(self, name: str) -> Symbol | None:
        return self._by_name.get(name)

    def _covering(self, candidate: int) -> Symbol | None:
        index = bisect.bisect_right(self._addresses, candidate) - 1
        if index < 0:
            return None
        symbol = self._symbols[index]
        if symbol.size == 0 or candidate < symbol.address + symbol.size:
            return symbol
        return None

    def _candidates(self, address: int) -> list[int]:
        out = [address]
        for physical, virtual, size in self._aliases:
            if physical <= address < physical + size:
                out.append(virtual + (address - physical))
        return out


__all__ = ["Symbol", "SymbolTable"]
