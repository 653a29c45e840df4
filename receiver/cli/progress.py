"""Progress of long CLI work (backfill, DLQ replay), on stderr so stdout stays the result.

On a terminal: one live line (count / total, rate, elapsed, time left) rewritten in place with
``\\r`` a few times a second. Elsewhere (CI logs, ``| tee``, cron mail): a plain line every
``every`` items or ``every_s`` seconds, whichever comes first, so a log shows the work moving
without a flood. Both end with a final line.

Small on purpose: a progress bar library (rich, tqdm) would be a dependency for 60 lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]

TTY_REDRAW_S = 0.1
DEFAULT_EVERY = 1000
DEFAULT_EVERY_S = 10.0


def _clock_text(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Counts work done; shows it on ``stream`` (stderr by default)."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        every: int = DEFAULT_EVERY,
        every_s: float = DEFAULT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.count = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._every = max(1, every)
        self._every_s = every_s
        self._clock = clock
        self._started = clock()
        self._shown_at = self._started
        self._shown_count = 0
        self._width = 0
        self._closed = False

    def line(self) -> str:
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = self.count / elapsed
        done = f"{self.count}/{self.total}" if self.total is not None else str(self.count)
        parts = [f"{self.label}: {done}"]
        if self.total:
            parts[0] += f" ({100 * self.count / self.total:.0f}%)"
        parts += [f"{rate:.1f}/s", f"{_clock_text(elapsed)} elapsed"]
        if self.total and rate > 0 and self.count < self.total:
            parts.append(f"~{_clock_text((self.total - self.count) / rate)} left")
        return ", ".join(parts)

    def advance(self, n: int = 1) -> None:
        self.count += n
        now = self._clock()
        if self._tty:
            if now - self._shown_at >= TTY_REDRAW_S:
                self._redraw(now)
        elif self.count - self._shown_count >= self._every or now - self._shown_at >= self._every_s:
            self._stream.write(self.line() + "\n")
            self._stream.flush()
            self._shown_at, self._shown_count = now, self.count

    def _redraw(self, now: float) -> None:
        text = self.line()
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)
        self._shown_at, self._shown_count = now, self.count

    def close(self, outcome: str = "done") -> None:
        """The final line (once), ending with ``(outcome)``."""
        if self._closed:
            return
        self._closed = True
        text = f"{self.line()} ({outcome})"
        if self._tty:
            self._stream.write("\r" + text.ljust(self._width) + "\n")
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close("done" if error is None else "stopped")
