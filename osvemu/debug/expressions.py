"""Expressions of ``osvemu debug``'s print, x and break: C's operators and
precedence over numbers, symbols (``&name``, ``name``), memory (``*address``),
registers (``$rax``) and the value history (``$``, ``$$``, ``$N``), as
gdb reads them (GDB manual, "Expressions" and "Value History"); and
print/FMT's output formats (GDB manual, "Output Formats").  A malformed
expression is a :class:`CommandError` that says where it stops making sense.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

_MASK64 = (1 << 64) - 1


class CommandError(Exception):
    """A command the console cannot carry out; printed, never fatal."""


@dataclass(frozen=True)
class Value:
    """A value an expression computes: its bits, its size in bytes, and
    whether it is an address (printed with its symbol, as gdb prints a
    pointer)."""

    number: int
    size: int = 8
    pointer: bool = False

    @property
    def unsigned(self) -> int:
        return self.number & ((1 << (8 * self.size)) - 1)

    @property
    def signed(self) -> int:
        bits = 8 * self.size
        value = self.unsigned
        return value - (1 << bits) if value >> (bits - 1) else value


class ExpressionContext(Protocol):
    """What an expression's names mean: the console answers for the current core."""

    def symbol_address(self, name: str) -> int: ...
    def symbol_value(self, name: str, values: bool) -> Value: ...
    def dollar(self, token: str) -> Value: ...
    def read(self, address: int, length: int) -> bytes: ...


_TOKEN = re.compile(r"\s*(?:(?P<number>\d[\w]*)|(?P<dollar>\$\$?\w*)|(?P<name>[A-Za-z_.][\w.]*)"
                    r"|(?P<op><<|>>|[-+*/%&|^~!()]))")
#: Binary operators by precedence, loosest first (C's order).
_BINARY_LEVELS = (("|",), ("^",), ("&",), ("<<", ">>"), ("+", "-"), ("*", "/", "%"))


class ExpressionParser:
    """gdb's integer expressions (GDB manual, "Expressions"), parsed by
    recursive descent: numbers (0x hex, 0 octal, decimal), symbols, &symbol,
    *address (a quadword read), $register, $N / $ / $$ / $$N (the value
    history), parentheses, unary - ~ !, and C's binary operators
    | ^ & << >> + - * / % with C's precedence.  Anything else is an error
    that says where the expression went wrong.

    ``values``: a data symbol stands for its contents (print), not its
    address (break, x, disassemble)."""

    def __init__(self, text: str, context: ExpressionContext, values: bool) -> None:
        self.text, self.context, self.values = text, context, values
        self.tokens = self._tokenize(text)
        self.position = 0

    def parse(self) -> Value:
        if not self.tokens:
            raise CommandError("expression expected")
        try:
            value = self._binary(0)
        except RecursionError:
            raise self._malformed("nested too deeply") from None
        if self.position < len(self.tokens):
            token = self.tokens[self.position][1]
            raise self._malformed(f'unexpected "{token}" after a complete value')
        return value

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, index = [], 0
        while index < len(text):
            if text[index:].strip() == "":
                break
            match = _TOKEN.match(text, index)
            if match is None:
                raise self._malformed(f'invalid character "{text[index:].lstrip()[0]}"')
            kind = match.lastgroup
            tokens.append((kind, match.group(kind)))
            index = match.end()
        return tokens

    def _malformed(self, why: str) -> CommandError:
        text = self.text.strip()
        shown = text if len(text) <= 60 else text[:57] + "..."
        return CommandError(f'Malformed expression "{shown}": {why}')

    def _peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise self._malformed("it ends where a value is expected")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def _binary(self, level: int) -> Value:
        if level == len(_BINARY_LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while self._peek() in _BINARY_LEVELS[level]:
            operator = self._take()[1]
            right = self._binary(level + 1)
            left = _apply(operator, left, right)
        return left

    def _unary(self) -> Value:
        kind, token = self._take()
        if kind == "op" and token in "-~!+":
            operand = self._unary()
            number = {"-": -operand.number, "~": ~operand.number, "!": int(not operand.number),
                      "+": operand.number}[token]
            return Value(number, operand.size)
        if kind == "op" and token == "&":
            kind, name = self._take()
            if kind != "name":
                raise CommandError(f'Attempt to take address of value not located in memory: "&{name}"')
            return Value(self.context.symbol_address(name), pointer=True)
        if kind == "op" and token == "*":
            address = self._unary().unsigned
            return Value(int.from_bytes(self.context.read(address, 8), "little"))
        if kind == "op" and token == "(":
            value = self._binary(0)
            if self._peek() != ")":
                raise self._malformed('")" expected ' + ("at the end" if self._peek() is None else f'before "{self._peek()}"'))
            self._take()
            return value
        if kind == "number":
            return Value(_number(token))
        if kind == "dollar":
            return self.context.dollar(token)
        if kind == "name":
            return self.context.symbol_value(token, self.values)
        raise self._malformed(f'unexpected "{token}" where a value is expected')


def _number(token: str) -> int:
    """C's integer literals: 0x hexadecimal, a leading 0 octal, else decimal."""
    try:
        if token[:2].lower() == "0x":
            return int(token, 16)
        if len(token) > 1 and token[0] == "0":
            return int(token[1:], 8)
        return int(token, 10)
    except ValueError:
        raise CommandError(f'Invalid number "{token}".') from None


def _apply(operator: str, left: Value, right: Value) -> Value:
    a, b = left.number, right.number
    if operator in "/%" and b == 0:
        raise CommandError("Division by zero")
    if operator in ("<<", ">>") and not 0 <= b < 64:
        raise CommandError(f"shift count {b} is outside 0-63")
    number = {"|": lambda: a | b, "^": lambda: a ^ b, "&": lambda: a & b, "<<": lambda: a << b,
              ">>": lambda: a >> b, "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
              "/": lambda: _c_division(a, b)[0], "%": lambda: _c_division(a, b)[1]}[operator]()
    # An address plus or minus a number is still an address (C pointer arithmetic).
    pointer = operator in "+-" and left.pointer != right.pointer and (left.pointer or operator == "+")
    return Value(number & _MASK64, max(left.size, right.size), pointer)


def _c_division(a: int, b: int) -> tuple[int, int]:
    """C99 6.5.5: the quotient is truncated toward zero."""
    quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
    return quotient, a - quotient * b


def format_value(value: Value, fmt: str, describe: Callable[[int], str]) -> str:
    """A value in one of gdb's print formats (GDB manual, "Output Formats")."""
    if fmt == "x":
        return f"{value.unsigned:#x}"
    if fmt == "z":
        return f"0x{value.unsigned:0{2 * value.size}x}"
    if fmt == "d":
        return str(value.signed)
    if fmt == "u":
        return str(value.unsigned)
    if fmt == "o":
        return f"0{value.unsigned:o}" if value.unsigned else "0"
    if fmt == "t":
        return f"{value.unsigned:b}"
    if fmt == "c":
        return char_literal(Value(value.number, 1).signed)
    if fmt == "a":
        return describe(value.unsigned)
    if value.pointer:
        return describe(value.unsigned)
    return f"{value.signed} ({value.unsigned:#x})"


_CHAR_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\033",
                 ord("\\"): "\\\\", ord("'"): "\\'"}


def char_literal(value: int) -> str:
    """``65 'A'``: a char as gdb prints one, its value then a C literal."""
    byte = value & 0xFF
    if byte in _CHAR_ESCAPES:
        text = _CHAR_ESCAPES[byte]
    elif 0x20 <= byte < 0x7F:
        text = chr(byte)
    else:
        text = f"\\{byte:03o}"
    return f"{value} '{text}'"


# ---------------------------------------------------------------- the console


__all__ = ["CommandError", "ExpressionContext", "ExpressionParser", "Value", "char_literal", "format_value"]
