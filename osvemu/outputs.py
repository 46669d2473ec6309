"""Where a run's output goes.

Two streams, never mixed: the guest console (COM1) on standard output, and
osvemu's own messages -- the end-of-run summary, progress, how kernels
ended, a kernel stopped for a violation -- on standard error.  QEMU's
spellings move them: ``-serial file:PATH`` or ``-serial null`` for the
console, ``-D LOGFILE`` for osvemu's messages; ``--report -`` takes
standard output for the JSON report, and the console then goes to standard
error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Self

from osvemu.errors import ConfigError


def _open(path: str, option: str) -> IO[str]:
    try:
        return open(path, "w", encoding="utf-8", errors="replace")  # closed by RunOutputs.close
    except OSError as error:
        raise ConfigError(f"{option} {path}: cannot write: {error.strerror}") from None


class RunOutputs:
    def __init__(self, serial: str | None = None, report: str | None = None, log_file: str | None = None) -> None:
        self._opened: list[IO[str]] = []
        #: osvemu's own messages.
        self.log: IO[str] = self._file(log_file, "-D") if log_file else sys.stderr
        #: The console's lines (None: standard output, the machine's default).
        self.console: Callable[[str], None] | None = None
        if serial == "null":
            self.console = _discard
        elif serial is not None and serial.startswith("file:"):
            self.console = _line_writer(self._file(serial.removeprefix("file:"), "-serial"))
        elif report == "-":
            self.console = _line_writer(sys.stderr)

    def _file(self, path: str, option: str) -> IO[str]:
        handle = _open(path, option)
        self._opened.append(handle)
        return handle

    @property
    def log_is_terminal(self) -> bool:
        return self.log is sys.stderr and sys.stderr.isatty()

    def say(self, line: str) -> None:
        """One line of osvemu's own, at once (a worker process says it too)."""
        self.log.write(line + "\n")
        self.log.flush()

    def close(self) -> None:
        for handle in self._opened:
            handle.close()
        self._opened.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _discard(line: str) -> None:
    """``-serial null``: the console goes nowhere (the report still keeps it)."""


def _line_writer(stream: IO[str]) -> Callable[[str], None]:
    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()
    return write


__all__ = ["RunOutputs"]
