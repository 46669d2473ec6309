"""The checks a partition configuration's values go through before anything
is built (the layout itself is in :mod:`osvemu.osv.config`).

A value is read by a *check*: a function of the value and where it came
from that returns the value in the form the plan uses, or raises one
ConfigError naming the file, the table and the key, e.g.
``config.toml: kernel "A": cores: expected a list of APIC IDs or "lo-hi"
ranges, got 5``.  Every number has bounds, every list a maximum length and
every string a maximum length, so no input makes a check allocate much or
recurse: a range such as ``"0-99999999999"`` is compared with its bounds
before it is expanded.  Values in messages are shown as TOML would write
them, escaped and shortened to one short line.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from osvemu.errors import ConfigError
from osvemu.platform import layout

#: Longest value text quoted in a message.
SHOWN_LENGTH = 40
#: Longest kernel or channel name.
MAX_NAME = 32
#: Longest list of numbers or ranges (cores, vectors, memory ranges).
MAX_ITEMS = 256


def shown(value: Any, depth: int = 0) -> str:
    """``value`` as TOML writes it (``5``, ``"4"``, ``[true]``, ``a table``),
    on one line, at most about SHOWN_LENGTH characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        text = json.dumps(value[:SHOWN_LENGTH] + ("..." if len(value) > SHOWN_LENGTH else ""))
    elif isinstance(value, list):
        if depth >= 2:
            return "[...]"
        items = [shown(item, depth + 1) for item in value[:4]]
        text = "[" + ", ".join(items + (["..."] if len(value) > 4 else [])) + "]"
    elif isinstance(value, Mapping):
        return "a table"
    elif isinstance(value, datetime.date | datetime.time):
        return "a date-time"
    else:
        return f"a {type(value).__name__}"
    return text if len(text) <= 2 * SHOWN_LENGTH else text[:2 * SHOWN_LENGTH] + "..."


def printable(text: str) -> str:
    """``text`` with control characters, and anything else a terminal would
    not print as itself, escaped: a file name in a message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Where:
    """Where in the input a value is: the parts a message names, in order
    (``config.toml``, ``kernel "A"``, ``cores``)."""

    parts: tuple[str, ...]

    @classmethod
    def file(cls, name: str) -> Where:
        return cls((printable(name),))

    def at(self, part: str) -> Where:
        return Where(self.parts + (part,))

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self}: {problem}")

    def __str__(self) -> str:
        return ": ".join(self.parts)


Check = Callable[[Any, Where], Any]


def _expected(where: Where, what: str, value: Any) -> ConfigError:
    return where.error(f"expected {what}, got {shown(value)}")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int, high: int) -> Check:
    """An integer in ``low..high``."""
    def check(value: Any, where: Where) -> int:
        if not _is_integer(value) or not low <= value <= high:
            raise _expected(where, f"an integer {low}..{high}", value)
        return value
    return check


def text(max_length: int, what: str = "a string", empty: bool = True, nul: bool = False) -> Check:
    """A string of at most ``max_length`` characters (and UTF-8 bytes)."""
    def check(value: Any, where: Where) -> str:
        if not isinstance(value, str):
            raise _expected(where, what, value)
        if not empty and not value:
            raise where.error(f"expected {what}, got an empty string")
        if len(value.encode()) > max_length:
            raise where.error(f"{len(value.encode())} bytes is more than the {max_length} that fit")
        if not nul and "\0" in value:
            raise where.error("contains a NUL character")
        return value
    return check


def name(value: Any, where: Where) -> str:
    """A kernel or channel name: 1..MAX_NAME printable characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or not value.isprintable():
        raise _expected(where, f"a name of 1..{MAX_NAME} printable characters", value)
    return value


def one_of(*choices: str) -> Check:
    def check(value: Any, where: Where) -> str:
        if value not in choices or not isinstance(value, str):
            raise where.error(f"must be {' or '.join(choices)}, not {shown(value)}")
        return value
    return check


def size(low: int, high: int, align: int) -> Check:
    """A size: ``"64K"``, ``"2G"`` or a number of bytes, a multiple of
    ``align`` in ``low..high``."""
    def check(value: Any, where: Where) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _expected(where, 'a size such as "64K" or a number of bytes', value)
        try:
            number = layout.parse_size(value)
        except ConfigError:
            raise _expected(where, 'a size such as "64K" or a number of bytes', value) from None
        if not low <= number <= high:
            raise where.error(f"{shown(value)} is outside {_bytes(low)}..{_bytes(high)}")
        if number % align:
            raise where.error(f"{shown(value)} is not a multiple of {_bytes(align)}")
        return number
    return check


def numbers(low: int, high: int, one: str, many: str) -> Check:
    """A list of numbers in ``low..high`` or ``"lo-hi"`` ranges of them (the
    form of ``cores`` and ``notify``), expanded in order, none twice."""
    def check(value: Any, where: Where) -> tuple[int, ...]:
        if not isinstance(value, list):
            raise _expected(where, f'a list of {many} or "lo-hi" ranges', value)
        if len(value) > MAX_ITEMS:
            raise where.error(f"{len(value)} items is more than {MAX_ITEMS}")
        chosen: dict[int, None] = {}  # ordered: the first core is the boot CPU
        for item in value:
            lo, hi = _number_or_range(item, where, one)
            if not (low <= lo <= high and low <= hi <= high):
                raise where.error(f"{shown(item)} is outside {low}..{high}")
            if hi < lo:
                raise where.error(f"range {shown(item)} ends below its start")
            for number in range(lo, hi + 1):
                if number in chosen:
                    raise where.error(f"{number} is listed twice")
                chosen[number] = None
        return tuple(chosen)
    return check


def _number_or_range(item: Any, where: Where, one: str) -> tuple[int, int]:
    if _is_integer(item):
        return item, item
    if isinstance(item, str) and len(item) <= SHOWN_LENGTH:
        low, sep, high = item.partition("-")
        try:
            return (int(low, 0), int(high, 0)) if sep else (int(low, 0), int(low, 0))
        except ValueError:
            pass
    article = "an" if one[0] in "AEIOU" else "a"
    raise where.error(f'{shown(item)} is neither {article} {one} nor a "lo-hi" range')


def address(value: Any, where: Where) -> int:
    """A machine-physical address: an integer or a string such as ``"0x100000"``."""
    number = None
    if _is_integer(value):
        number = value
    elif isinstance(value, str) and len(value) <= SHOWN_LENGTH:
        try:
            number = int(value, 0)
        except ValueError:
            pass
    if number is None or not 0 <= number < 1 << 64:
        raise _expected(where, 'an address such as "0x100000"', value)
    return number


def restart(value: Any, where: Where) -> int:
    """``"never"`` (0) or how many times a kernel may be booted again."""
    if value == "never" and isinstance(value, str):
        return 0
    if not _is_integer(value) or not 0 <= value <= MAX_RESTARTS:
        raise _expected(where, f'"never" or an integer 0..{MAX_RESTARTS}', value)
    return value


MAX_RESTARTS = 100
REQUIRED = object()


@dataclass(frozen=True)
class Key:
    check: Check
    default: Any = REQUIRED
    hint: str = ""  # what the key holds, for "required" messages


@dataclass(frozen=True)
class Table:
    """A TOML table's keys: each read by its check, in the order declared;
    a key not declared is an error."""

    keys: Mapping[str, Key]

    def read(self, value: Any, where: Where, what: str = "a table") -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _expected(where, what, value)
        unknown = sorted(set(value) - set(self.keys))
        if unknown:
            raise where.error(f"unknown key {printable(repr(unknown[0][:SHOWN_LENGTH]))} "
                              f"(known: {', '.join(self.keys)})")
        out = {}
        for key, spec in self.keys.items():
            if key in value:
                out[key] = spec.check(value[key], where.at(key))
            elif spec.default is REQUIRED:
                raise where.at(key).error(f"required{f' ({spec.hint})' if spec.hint else ''}")
            else:
                out[key] = spec.default
        return out


def tables(value: Any, where: Where, header: str, max_count: int) -> list[Mapping]:
    """An array of tables (``[[kernel]]``), at most ``max_count`` of them."""
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise _expected(where, f"{header} tables", value)
    if len(value) > max_count:
        raise where.error(f"{len(value)} {header} tables, at most {max_count}")
    return value


def _bytes(count: int) -> str:
    for unit, scale in (("T", 1 << 40), ("G", layout.GiB), ("M", layout.MiB), ("K", layout.KiB)):
        if count >= scale and count % scale == 0:
            return f"{count // scale}{unit}"
    return str(count)


__all__ = ["MAX_ITEMS", "MAX_NAME", "MAX_RESTARTS", "Key", "Table", "Where", "address", "integer", "name",
           "numbers", "one_of", "printable", "restart", "shown", "size", "tables", "text"]
