"""Shared pieces of the command-line tools: consoles, the one-line error wrapper, progress bars, help without
Python types (:class:`App`), option aliases, ``--device`` checks and the atomic ``.npy`` writer.

The consoles interpret no markup, emoji codes or highlighting: item names, model names and messages are
printed exactly as they are (``car [red].png`` stays ``car [red].png``). Styled words go through
:func:`styled`, which builds ``rich.text.Text`` pieces instead of markup.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
import typer.core
from rich.console import Console
from rich.text import Text

from semzip.errors import InvalidInputError, SemzipError, describe_os_error

if TYPE_CHECKING:
    import numpy as np

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


# ------------------------------------------------------------------------------------------- help without types
#
# Recent typer versions print each option's Python annotation (``<bool>``, ``<int>``, ``<list[str]>``) in help.
# Commands built through :class:`App` show a metavar instead: the one an option names, else a plain word (flags
# show none, arguments show only their name).

_WORDS = {"int": "N", "float": "NUMBER", "str": "TEXT", "Path": "PATH", "path": "PATH"}


def _word(param) -> str | None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    bare = getattr(param, "bare_type", None)  # typer >= 0.2x; older typer (click types) prints click's own words
    if bare is None:
        return None
    if getattr(param.type_descriptor, "is_path", False):
        return "PATH"
    name = bare()
    name = name[5:-1] if name.startswith("list[") else name
    return _WORDS.get(name, "VALUE")


def _no_type(ctx) -> None:
    return None


def plain_help(params) -> None:
    """Give ``params`` metavars instead of Python type names in help (in place; idempotent)."""
    for p in params:
        if getattr(p, "param_type_name", "") == "argument":
            if hasattr(p, "display_type_rich"):
                p.display_type_rich = _no_type  # the argument's name says it
            continue
        if p.metavar is None:
            p.metavar = _word(p)


class _PlainHelp:
    """Mixed into click commands and groups: their options' help shows metavars, never Python types."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        plain_help(self.params)

    def get_help_option(self, ctx):
        opt = super().get_help_option(ctx)
        if opt is not None:
            plain_help([opt])
        return opt


class Command(_PlainHelp, typer.core.TyperCommand):
    """A command whose help shows metavars, never Python types."""


class Group(_PlainHelp, typer.core.TyperGroup):
    """A command group whose own options show metavars, never Python types."""


class App(typer.Typer):
    """``typer.Typer`` whose commands and groups are :class:`Command` and :class:`Group`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("cls", Group)
        super().__init__(*args, **kwargs)

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


def alias(value, legacy, new: str, old: str, default=None):
    """The value of an option given as ``new`` or under its older, hidden spelling ``old`` (kept so that
    scripts do not break); ``default`` when neither is given."""
    if value is not None and legacy is not None and value != legacy:
        raise InvalidInputError(f"{old} is the older spelling of {new}: give only one of them")
    got = value if value is not None else legacy
    return default if got is None else got


DEVICE_HELP = "cpu, cuda, cuda:N or mps (default: cuda when available)"


def check_device(device: str | None) -> str | None:
    """``--device`` checked before any work: cpu, cuda, cuda:N or mps."""
    import re

    if device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise InvalidInputError(f"--device must be cpu, cuda, cuda:N or mps, got {device!r}")
    return device


def save_npy(path: Path, x: np.ndarray) -> None:
    """Write a .npy atomically (temporary file, then rename; removed on any failure)."""
    import numpy as np

    from semzip.format import atomic_file

    with atomic_file(path) as fh:
        np.save(fh, x)
