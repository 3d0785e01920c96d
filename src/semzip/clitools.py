"""Shared pieces of the command-line tools: consoles, the one-line error wrapper, progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from semzip.errors import SemzipError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def friendly(fn: Callable) -> Callable:
    """Turn semzip's own errors into one clear line on stderr and the error's exit code (2)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SemzipError as exc:
            err.print(f"[bold red]semzip: error:[/] {escape(str(exc))}", highlight=False, markup=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print(
                "[bold red]semzip: interrupted[/]: no partial output was written (outputs are renamed into place "
                "only when complete); with --engine stream or ray, re-run the same command to resume",
                highlight=False, markup=True,
            )
            raise typer.Exit(130) from None

    return wrapper


@contextmanager
def progress(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (terminals only); yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
