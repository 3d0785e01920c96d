"""Shared pieces of the command-line tools: consoles, the one-line error wrapper, progress bars.

The consoles interpret no markup, emoji codes or highlighting: item names, model names and messages are
printed exactly as they are (``car [red].png`` stays ``car [red].png``). Styled words go through
:func:`styled`, which builds ``rich.text.Text`` pieces instead of markup.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

from semzip.errors import SemzipError, describe_os_error

out = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Literal text with styled pieces: ``styled(("skipped", "yellow"), " ", name)``."""
    return Text.assemble(*parts)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``semzip: error: MESSAGE`` as one line on stderr; returns the Exit to raise."""
    err.print(styled(("semzip: error:", "bold red"), " ", " ".join(message.split("\n"))))
    return typer.Exit(code)


def friendly(fn: Callable) -> Callable:
    """Turn semzip's own errors and every failed file operation (read-only folder, full disk, name too long,
    permission) into one clear line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SemzipError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except OSError as exc:
            raise fail(describe_os_error(exc)) from None
        except KeyboardInterrupt:
            err.print(styled(
                ("semzip: interrupted", "bold red"),
                ": no partial output was written (outputs are renamed into place only when complete); with "
                "--engine stream or ray, re-run the same command to resume",
            ))
            raise typer.Exit(130) from None

    return wrapper


@contextmanager
def progress(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """Progress on stderr: a bar on a terminal, plain periodic lines with counts and rates in logs (see
    :mod:`semzip.progress`); yields ``advance(n)``."""
    from semzip.progress import progress_bar

    with progress_bar(total, description, console=err) as advance:
        yield advance
