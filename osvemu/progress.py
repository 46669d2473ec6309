"""A run's progress while it runs: virtual time, MIPS, kernels finished,
violations so far.

On a terminal, a live status line on standard error (drawn by ``rich``) once
the run has lasted a second, gone when the run ends, with the guest console
printed above it; on a log (``--progress``, or standard error not being a
terminal with ``--progress``), one line every few seconds.  Without either
nothing is shown, and nothing is paid: the line is drawn by a thread that
samples counters the run keeps anyway, never by the run itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Self

#: A run shorter than this shows no status line.
SHOW_AFTER_SECONDS = 1.0
#: How often the terminal's line is redrawn, and a log line written.
TERMINAL_REFRESH_SECONDS = 0.25
LOG_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class Sample:
    """What the run has done so far."""

    virtual_ns: int
    instructions: int
    kernels_ended: int
    kernels: int
    violations: int


class Progress:
    """Shows ``sample()`` while a run goes on (a context manager around the run)."""

    def __init__(self, sample: Callable[[], Sample], stream: IO[str], live: bool, lines: bool) -> None:
        self._sample = sample
        self._stream = stream
        self._live_wanted = live
        self._lines = lines
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = None
        self._start = 0.0
        self._last = (0.0, 0)  # (host seconds, instructions) of the last redraw, for MIPS

    def __enter__(self) -> Self:
        if self._live_wanted or self._lines:
            self._start = time.monotonic()
            self._thread = threading.Thread(target=self._loop, name="osvemu-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._live is not None:
            self._live.stop()

    def text(self) -> str:
        """The status line now."""
        sample = self._sample()
        now = time.monotonic() - self._start
        then, before = self._last
        mips = (sample.instructions - before) / (now - then) / 1e6 if now > then else 0.0
        self._last = (now, sample.instructions)
        text = (f"osvemu: {sample.virtual_ns / 1e9:.3f} s virtual, {now:.1f} s host, {mips:.0f} MIPS, "
                f"{sample.instructions:,} instructions")
        if sample.kernels > 1:
            text += f", kernels finished {sample.kernels_ended}/{sample.kernels}, violations {sample.violations}"
        return text

    def _loop(self) -> None:
        if self._stop.wait(SHOW_AFTER_SECONDS):
            return
        if self._live_wanted:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            console = Console(file=self._stream)
            self._live = Live(console=console, transient=True, auto_refresh=False, redirect_stdout=True,
                              redirect_stderr=False)
            self._live.start()
            while not self._stop.is_set():
                self._live.update(Text(self.text()), refresh=True)
                self._stop.wait(TERMINAL_REFRESH_SECONDS)
            return
        while True:
            self._stream.write(self.text() + "\n")
            self._stream.flush()
            if self._stop.wait(LOG_INTERVAL_SECONDS):
                return


__all__ = ["Progress", "Sample"]
