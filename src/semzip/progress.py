"""Progress for long runs: a rich bar on a terminal, plain periodic lines (counts, rate, time left) in logs.

A bar redrawn in place is noise in a log file or a CI job, and nothing at all is worse: a run of minutes looks
hung. When the stream is not a terminal, :func:`progress_bar` prints one line every ``interval`` seconds
(``$SEMZIP_PROGRESS_INTERVAL``, default 10) and a closing line, and stays silent for runs shorter than that.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

INTERVAL_ENV = "SEMZIP_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _rate(per_second: float) -> str:
    if per_second <= 0:
        return "-"
    if per_second < 1:
        return f"{_duration(1 / per_second)} each"
    return f"{per_second:.3g}/s"


class Advance:
    """What a progress context yields: call it with the number of items just finished; ``describe`` names the
    current step (shown in the bar, or appended to the next plain line)."""

    def __init__(self, advance: Callable[[int], None], describe: Callable[[str], None]) -> None:
        self._advance, self._describe = advance, describe

    def __call__(self, n: int = 1) -> None:
        self._advance(n)

    def describe(self, text: str) -> None:
        self._describe(text)


class PlainProgress:
    """Periodic one-line reports on a text stream: ``label: 12/40 (30%), 0.21/s, 57 s elapsed, about 2 min
    13 s left``. A line is printed when an update arrives at least ``interval`` seconds after the last one;
    ``close`` prints a final line if any line was printed (short runs stay silent)."""

    def __init__(self, total: int | None, label: str, stream: IO[str], interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.label, self.stream, self.interval, self.clock = total, label, stream, interval, clock
        self.done, self.step = 0, ""
        self.start = self.last = clock()
        self.lines = 0

    def _line(self, now: float, final: bool = False) -> str:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        if self.total:
            count += f" ({100 * self.done / self.total:.0f}%)"
        if final:
            return f"{self.label}: {count} done in {_duration(elapsed)} ({_rate(rate)})"
        parts = [f"{self.label}: {count}", _rate(rate), f"{_duration(elapsed)} elapsed"]
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"about {_duration((self.total - self.done) / rate)} left")
        line = ", ".join(parts)
        return f"{line} [{self.step}]" if self.step else line

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
        self.lines += 1

    def advance(self, n: int = 1) -> None:
        self.done += int(n)
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._print(self._line(now))

    def describe(self, text: str) -> None:
        self.step = text

    def close(self) -> None:
        if self.lines:
            self._print(self._line(self.clock(), final=True))


@contextmanager
def progress_bar(total: int | None, description: str, *, console: Any = None, enabled: bool = True,
                 interval: float | None = None, stream: IO[str] | None = None) -> Iterator[Advance]:
    """Progress of ``total`` items: a transient rich bar when ``console`` (default: a stderr console) is a
    terminal, else plain periodic lines on ``stream`` (default: the console's file). ``enabled=False``: none."""
    if not enabled:
        yield Advance(lambda n=1: None, lambda text: None)
        return
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    if console.is_terminal and stream is None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield Advance(lambda n=1: bar.advance(task, n),
                          lambda text: bar.update(task, description=f"{description} {text}"))
        return
    plain = PlainProgress(total, description, stream or getattr(console, "file", None) or sys.stderr,
                          _interval() if interval is None else interval)
    yield Advance(plain.advance, plain.describe)
    plain.close()
