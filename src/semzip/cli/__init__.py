"""The `semzip` command line, one module per area:

- :mod:`semzip.cli.collection`: ``compress``, ``embed``, ``add``, ``decompress``, ``demo`` (make, extend and
  decode archives, for every codec: the image-text codec's options sit in their own help panels there);
- :mod:`semzip.cli.archive`: ``info``, ``verify``, ``search``, ``atoms``, ``blend`` (read an existing archive);
- :mod:`semzip.cli.text`: the ``text`` sub-app (caption coding and adapter training);
- :mod:`semzip.cli.eval`: ``eval``;  :mod:`semzip.cli.train`: ``train-lic``;
- :mod:`semzip.cli.console`: consoles, one-line errors, progress, help without Python types.

This module holds the root options (``--version``, ``--models``, ``--allow-download``) and builds ``app`` on
first use, registering the areas' commands in help order; ``main`` is the console-script entry point. Building
lazily keeps one area light on its own (``semzip.cli.text``, ``python -m semzip.cli.train``).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from semzip import __version__
from semzip.cli.console import App, err, out
from semzip.cli.console import friendly as _friendly


def _version(value: bool) -> None:
    if value:
        out.print(f"semzip {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    models: Annotated[list[Path] | None, typer.Option(
        "--models", help="Folder holding model folders/files named in specs or archives (repeatable; also "
        "$SEMZIP_MODEL_PATH). Archives record model names and fingerprints, never paths.")] = None,
    allow_download: Annotated[bool, typer.Option(
        "--allow-download", help="Let model loaders download missing weights from their hub (off by default; "
        "also $SEMZIP_ALLOW_DOWNLOAD=1).")] = False,
) -> None:
    from semzip.models.registry import allow_downloads, set_model_dirs

    _friendly(set_model_dirs)(models or [])  # per command: nothing carries over between invocations
    allow_downloads(True if allow_download else None)


@functools.cache
def _app() -> App:
    """The ``semzip`` app with every area's commands, in the order its help lists them."""
    from semzip.cli import archive, collection
    from semzip.cli.eval import eval_command
    from semzip.cli.text import text_app
    from semzip.cli.train import train_lic_command

    app = App(
        name="semzip",
        help=(
            "Semantic image compression: keep what images mean at 1e-5 to 1e-2 bits per pixel.\n\n"
            "Start with `semzip demo`, which makes a small collection, compresses it and decodes it again."
        ),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    for command in (collection.compress, collection.embed, collection.add, collection.decompress, archive.blend,
                    archive.atoms, archive.search, archive.info, archive.verify, collection.demo):
        app.command()(command)
    app.command(name="eval")(eval_command)
    app.command(name="train-lic")(train_lic_command)
    app.add_typer(text_app, name="text")
    return app


def __getattr__(name: str):
    if name == "app":  # `from semzip.cli import app`
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point."""
    try:
        _app()()
    except KeyboardInterrupt:
        err.print("semzip: interrupted; no partial output was written")
        sys.exit(130)
