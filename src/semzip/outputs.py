"""Where commands may write: no existing file or non-empty folder is replaced without ``force``, no input is
ever overwritten, and nothing is written inside a folder the run reads its inputs from without ``force``.

A new output folder is built as a temporary folder beside the target and renamed into place when complete,
so an error or an interrupt leaves no half-written folder (and no temporary file) behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from semzip.errors import InvalidInputError
from semzip.format.container import as_new_output, temp_prefix


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_apart(target: Path, inputs: Iterable[Path | None], force: bool, kind: str = "file") -> None:
    """Refuse ``target`` (a ``kind`` "file" or "folder") if it is an input, or, unless ``force``, if it lies
    inside an input folder or (a folder) holds an input."""
    resolved = target.resolve()
    for raw in inputs:
        if raw is None:
            continue
        src = Path(raw).resolve()
        if resolved == src:
            raise InvalidInputError(f"refusing to overwrite the input {raw}")
        if force:
            continue
        if src.is_dir() and _inside(resolved, src):
            raise InvalidInputError(
                f"{target} is inside {raw}, which this run reads its inputs from; pass --force to write there")
        if kind == "folder" and _inside(src, resolved):
            raise InvalidInputError(f"{target} holds the input {raw}; pass --force to write into it")


def check_output_file(path: str | os.PathLike, force: bool = False, inputs: Iterable[Path | None] = ()) -> Path:
    """Refuse to write ``path`` if it exists (unless ``force``), is one of ``inputs``, lies inside an input
    folder (unless ``force``) or its folder does not exist."""
    target = Path(path)
    check_apart(target, inputs, force, "file")
    if target.is_dir():
        raise InvalidInputError(f"{target} is a folder; give a file name")
    if target.exists() and not force:
        raise InvalidInputError(f"{target} exists; pass --force to replace it")
    if not target.parent.exists():
        raise InvalidInputError(f"output folder does not exist: {target.parent}")
    return target


def check_output_folder(path: str | os.PathLike, force: bool = False, inputs: Iterable[Path | None] = (),
                        will_write: Iterable[str] = ()) -> Path:
    """Refuse to write into ``path`` if it is a file, holds anything (unless ``force``), holds or lies inside
    an input (unless ``force``), or if one of the files to write (``will_write``) is an input."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"{target} exists and is not a folder")
    check_apart(target, inputs, force, "folder")
    if target.is_dir() and not force and any(target.iterdir()):
        raise InvalidInputError(
            f"{target} is not empty; pass --force to write into it (files of the same names are replaced)")
    protected = {Path(i).resolve() for i in inputs if i is not None}
    for name in will_write:
        if (target / name).resolve() in protected:
            raise InvalidInputError(f"refusing to overwrite the input {target / name}")
    return target


@contextlib.contextmanager
def output_folder(path: str | os.PathLike, force: bool = False, inputs: Iterable[Path | None] = (),
                  will_write: Iterable[str] = ()) -> Iterator[Path]:
    """Yield the folder to write into (checked by :func:`check_output_folder`). A folder that does not exist
    yet is filled as a temporary folder beside it and renamed into place when the block succeeds; on any
    failure the temporary folder is removed. An existing folder (empty, or with ``force``) is written in
    place, each file atomically."""
    target = check_output_folder(path, force, inputs, will_write)
    if target.is_dir():
        yield target
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    try:
        as_new_output(tmp, folder=True)  # mkdtemp makes 0700 folders: the output gets the usual permissions
        try:
            yield tmp
        except OSError as exc:  # name the file the user asked for, not its place in the temporary folder
            name = str(exc.filename or "")
            if exc.errno is not None and name.startswith(str(tmp)):
                raise OSError(exc.errno, exc.strerror, str(target) + name[len(str(tmp)):]) from None
            raise
        try:
            os.rename(tmp, target)
        except OSError as exc:
            if target.exists():
                raise InvalidInputError(f"{target} was created by someone else while decoding; nothing written")
            raise OSError(exc.errno, exc.strerror, str(target)) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
