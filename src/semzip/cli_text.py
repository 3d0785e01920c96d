"""``semzip text``: lossless caption coding with a language model (SmolLM2-135M by default).

    semzip text compress caption.txt                 -> caption.txt.smzc   (one caption per file)
    semzip text compress a.txt b.txt --out-dir out/   (the model loads once for all files)
    semzip text compress captions.txt --lines        -> one record per line, in one .smzc file
    semzip text decompress caption.txt.smzc          -> caption.txt

A caption file is the compact layout of :mod:`semzip.format.compact` (payload + 5 bytes). A text file's
single final newline is kept as a header flag rather than coded. Everything is encoded in memory first
and each output is written atomically: an error leaves no output file behind, partial or not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from semzip.clitools import err as _err
from semzip.clitools import friendly as _friendly
from semzip.clitools import progress as _progress
from semzip.errors import InvalidInputError, SemzipError

SUFFIX = ".smzc"

text_app = typer.Typer(
    name="text",
    help=(
        "Lossless caption coding with a small language model: a COCO caption costs ~13 bytes per file, header included "
        f"(files end in {SUFFIX}). Decoding needs the same model."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@functools.lru_cache(maxsize=2)
def _coder(model: str):
    from semzip.codecs.text import TextCoder
    from semzip.models.language import load_language_model

    return TextCoder(load_language_model(model))


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InvalidInputError(f"no such file: {path}")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _split_final_newline(text: str) -> tuple[str, bool]:
    return (text[:-1], True) if text.endswith("\n") else (text, False)


def _targets(files: list[Path], out: Path | None, out_dir: Path | None, name: Callable[[Path], str],
             force: bool) -> list[Path]:
    """Output paths, checked before any work: no overwrites without --force, no input overwritten."""
    if out is not None and out_dir is not None:
        raise InvalidInputError("pass either -o/--out or --out-dir, not both")
    if out is not None and len(files) != 1:
        raise InvalidInputError("-o/--out takes one input file; use --out-dir for several")
    if out_dir is not None and not out_dir.is_dir():
        raise InvalidInputError(f"output folder does not exist: {out_dir}")
    targets = [out] if out is not None else [
        (out_dir if out_dir is not None else f.parent) / name(f) for f in files
    ]
    inputs = {f.resolve() for f in files}
    seen: set[Path] = set()
    for t in targets:
        r = t.resolve()
        if r in inputs:
            raise InvalidInputError(f"refusing to overwrite the input {t}")
        if r in seen:
            raise InvalidInputError(f"two inputs would both be written to {t}")
        seen.add(r)
        if t.exists() and not force:
            raise InvalidInputError(f"{t} exists; pass --force to replace it")
        if not t.parent.is_dir():
            raise InvalidInputError(f"output folder does not exist: {t.parent}")
    return targets


def _decoded_name(path: Path) -> str:
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) and len(path.name) > len(SUFFIX) \
        else path.name + ".txt"


FilesArg = Annotated[list[Path], typer.Argument(help="input files", show_default=False)]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="output file (one input only)")]
OutDirOpt = Annotated[Path | None, typer.Option("--out-dir", "-d", help="folder for the outputs")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="language model: registry name or local path")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="replace existing output files")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no summary line")]


@text_app.command("compress")
@_friendly
def compress(
    files: FilesArg,
    out: OutOpt = None,
    out_dir: OutDirOpt = None,
    lines: Annotated[bool, typer.Option("--lines", "-l", help="one caption per line: one record per line")] = False,
    model: ModelOpt = "smollm2-135m",
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compress UTF-8 caption files (each file one caption, or one per line with --lines)."""
    targets = _targets(files, out, out_dir, lambda f: f.name + SUFFIX, force)
    texts = [_split_final_newline(_read_text(f)) for f in files]
    coder = _coder(model)
    results: list[bytes] = []
    total_in = sum(len(t.encode("utf-8")) + nl for t, nl in texts)
    if lines:
        split = [t.split("\n") for t, _ in texts]
        with _progress(sum(map(len, split)), "compressing captions") as advance:
            for (_, nl), items in zip(texts, split, strict=True):
                results.append(coder.encode_lines_file(items, final_newline=nl, progress=advance))
    else:
        with _progress(len(texts), "compressing captions") as advance:
            for text, nl in texts:
                results.append(coder.encode_file(text, final_newline=nl))
                advance(1)
    from semzip.format import atomic_write

    for target, data in zip(targets, results, strict=True):
        atomic_write(target, data)
    if not quiet:
        total_out = sum(map(len, results))
        _err.print(f"{len(files)} file(s): {total_in} -> {total_out} bytes "
                   f"({8 * total_out / max(1, total_in):.2f} bits per input byte)", highlight=False)


@text_app.command("decompress")
@_friendly
def decompress(
    files: FilesArg,
    out: OutOpt = None,
    out_dir: OutDirOpt = None,
    model: ModelOpt = "smollm2-135m",
    force: ForceOpt = False,
) -> None:
    """Decompress caption files (single captions and --lines files alike) to the exact original text."""
    from semzip.format import atomic_write
    from semzip.format.compact import read_header

    targets = _targets(files, out, out_dir, _decoded_name, force)
    blobs = []
    for f in files:
        if not f.is_file():
            raise InvalidInputError(f"no such file: {f}")
        data = f.read_bytes()
        try:
            header = read_header(data)
        except SemzipError as exc:
            raise type(exc)(f"{f}: {exc}") from None
        blobs.append((f, data, header))
    coder = _coder(model)
    results: list[bytes] = []
    total = sum(h.count or 1 for _, _, h in blobs)
    with _progress(total, "decompressing captions") as advance:
        for f, data, header in blobs:
            try:
                if header.lines:
                    items, nl = coder.decode_lines_file(data, progress=advance)
                    text = "\n".join(items) + ("\n" if nl else "")
                else:
                    text = coder.decode_file(data)
                    advance(1)
            except SemzipError as exc:
                raise type(exc)(f"{f}: {exc}") from None
            results.append(text.encode("utf-8"))
    for target, data in zip(targets, results, strict=True):
        atomic_write(target, data)
