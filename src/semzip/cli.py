"""The `semzip` command: compress, decompress, info, verify, demo.

Every SemzipError becomes one line on stderr and exit code 2; nothing is written unless the whole output
is ready (archives are written atomically).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from semzip import __version__
from semzip.errors import InvalidInputError, SemzipError

app = typer.Typer(
    name="semzip",
    help=(
        "Semantic image compression: keep what images mean at 1e-5 to 1e-2 bits per pixel.\n\n"
        "Start with `semzip demo`, which makes a small collection, compresses it and decodes it again."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _friendly(fn: Callable) -> Callable:
    """Turn semzip's own errors into one clear line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SemzipError as exc:
            err.print(f"[bold red]semzip: error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


@contextmanager
def _progress(total: int, description: str) -> Iterator[Callable[[int], None]]:
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


def _check_output(path: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    if any(path.resolve() == i.resolve() for i in inputs):
        raise InvalidInputError(f"refusing to overwrite the input {path}")
    if path.exists() and not force:
        raise InvalidInputError(f"{path} exists; pass --force to replace it")
    if not path.parent.exists():
        raise InvalidInputError(f"output folder does not exist: {path.parent}")


def _version(value: bool) -> None:
    if value:
        out.print(f"semzip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    pass


@app.command()
@_friendly
def compress(
    input: Annotated[Path, typer.Argument(help="Embeddings to compress: an (items x dims) .npy file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Archive to write (.smz).")],
    codec: Annotated[str, typer.Option(help="Codec name (see `semzip info --codecs`).")] = "sq",
    bits: Annotated[int, typer.Option(help="sq codec: bits per dimension before entropy coding.")] = 8,
    block_size: Annotated[int, typer.Option(help="Items per block: the unit of random access.")] = 64,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Compress a collection into one archive."""
    from semzip.api import compress_embeddings

    _check_output(output, force, (input,))
    from semzip.data.embeddings import load_embeddings

    x = load_embeddings(input)
    with _progress(len(x), "compressing") as advance:
        size = compress_embeddings(x, output, codec=codec, bits=bits, block_size=block_size, progress=advance)
    out.print(f"wrote {output}: {len(x)} items, {size} bytes, {8 * size / len(x):.1f} bits per item")


@app.command()
@_friendly
def decompress(
    archive: Annotated[Path, typer.Argument(help="Archive to decode.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the decoded embeddings (.npy).")],
    item: Annotated[list[str] | None, typer.Option(help="Decode only this item (by name); repeatable.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Decode an archive (all items, or only the named ones, reading only their blocks)."""
    from semzip.api import decompress as _decompress

    _check_output(output, force, (archive,))
    x = _decompress(archive, items=item)
    tmp = output.with_name(f".{output.name}.tmp.npy")
    np.save(tmp, x)
    tmp.replace(output)
    out.print(f"wrote {output}: {x.shape[0]} items x {x.shape[1]} dims")


@app.command()
@_friendly
def info(
    archive: Annotated[Path, typer.Argument(help="Archive to describe.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show an archive's header, sections, sizes and bits per item."""
    from semzip.api import describe

    d = describe(archive)
    if as_json:
        out.print_json(json.dumps(d))
        return
    out.print(f"[bold]{archive}[/]  format {d['format']}  codec [bold]{d['codec']}[/]  {d['n_items']} items")
    out.print(f"written by {d['writer'] or 'unknown'}; parameters: {json.dumps(d['params'])}", highlight=False)
    for m in d["models"]:
        out.print(f"model {m['role']}: {m['name']} (fingerprint {m['fingerprint']})", highlight=False)
    t = Table("section", "type", "bytes", "share")
    for s in d["sections"]:
        t.add_row(s["name"], s["type"], str(s["bytes"]), f"{100 * s['bytes'] / d['bytes']:.1f}%")
    t.add_row("[bold]total[/]", "", f"[bold]{d['bytes']}[/]", "100%")
    out.print(t)
    if d["n_items"]:
        out.print(f"{d['bits_per_item']:.2f} bits per item (whole file, header included)")
        if d.get("bits_per_pixel") is not None:
            out.print(f"{d['bits_per_pixel']:.3g} bits per pixel")


@app.command()
@_friendly
def verify(archive: Annotated[Path, typer.Argument(help="Archive to check.")]) -> None:
    """Check every section's and every block's CRC32; exit 1 if anything is damaged."""
    from semzip.format import Container

    with Container.open(archive) as c:
        rows = c.verify()
    t = Table("section", "status", "detail")
    for name, ok, msg in rows:
        t.add_row(name, "[green]ok[/]" if ok else "[red]CORRUPT[/]", msg)
    out.print(t)
    if not all(ok for _, ok, _ in rows):
        raise typer.Exit(1)


@app.command()
@_friendly
def demo(
    workdir: Annotated[Path, typer.Option("--dir", help="Folder for the demo's files.")] = Path("semzip-demo"),
    n: Annotated[int, typer.Option("-n", help="Items in the generated collection.")] = 2000,
    dim: Annotated[int, typer.Option(help="Embedding dimension.")] = 512,
) -> None:
    """Run the offline demo: generate a collection of embeddings, compress it, inspect it, decode it."""
    from semzip.api import compress_embeddings, decompress, describe
    from semzip.sparse.synthetic import make_sparse_embeddings

    workdir.mkdir(parents=True, exist_ok=True)
    x = make_sparse_embeddings(n=n, d=dim, seed=0)
    src, arc, dec = workdir / "embeddings.npy", workdir / "collection.smz", workdir / "decoded.npy"
    np.save(src, x)
    out.print(f"generated {n} synthetic embeddings of dimension {dim} -> {src}")
    out.print("(synthetic sparse mixtures of hidden concepts; real CLIP embeddings arrive with the collection codec)")
    for bits in (8, 4):
        with _progress(n, f"compressing at {bits} bits") as advance:
            size = compress_embeddings(x, arc, codec="sq", bits=bits, progress=advance)
        y = decompress(arc)
        cos = np.sum(x * y, axis=1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        out.print(
            f"sq{bits}: {size} bytes = {8 * size / n:.0f} bits per item (raw float32: {32 * dim}); "
            f"cosine to the original: mean {cos.mean():.4f}, 5th percentile {np.percentile(cos, 5):.4f}"
        )
    np.save(dec, y)
    d = describe(arc)
    out.print(f"archive {arc}: sections " + ", ".join(f"{s['name']} {s['bytes']} B" for s in d["sections"]))
    one = decompress(arc, items=["item_00007"])
    out.print(f"random access: item_00007 decoded alone, identical to the full decode: {bool(np.array_equal(one[0], y[7]))}")
    out.print(f"decoded embeddings -> {dec}. Next: `semzip info {arc}`")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("semzip: interrupted; no partial output was written")
        sys.exit(130)


if __name__ == "__main__":
    main()
