"""Archive commands: ``info``, ``verify``, ``search``, ``atoms`` and ``blend`` read an existing archive
(its header and sections, its checksums, its sparse codes and dictionary).

Every SemzipError becomes one line on stderr and exit code 2; outputs are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from semzip.cli.console import DEVICE_HELP, check_device, out, save_npy, styled
from semzip.cli.console import friendly as _friendly
from semzip.errors import InvalidInputError
from semzip.outputs import check_output_file


@_friendly
def blend(
    archive: Annotated[Path, typer.Argument(help="Collection archive.")],
    item: Annotated[str, typer.Option(help="Name of the item to edit.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image to write (.png), or .npy for the embedding.")],
    add: Annotated[list[str] | None, typer.Option(
        help="Concept to add: an image file, or a text prompt (needs CLIP weights, see below). Repeatable.")] = None,
    remove: Annotated[list[str] | None, typer.Option(help="Concept to remove (the same kinds). Repeatable.")] = None,
    weight: Annotated[float, typer.Option(help="Strength of each concept.")] = 0.5,
    generator: Annotated[str | None, typer.Option(help="Image generator (default: the archive space's offline one).")] = None,
    seed: Annotated[int, typer.Option(help="Generation seed.")] = 0,
    device: Annotated[str | None, typer.Option(
        help=f"Where the encoder (for concepts) and the generator run: {DEVICE_HELP}. The offline thumbnail "
        "encoder and generator run on the CPU.",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Semantic arithmetic: add or remove concepts from an item in embedding space, then render it.

    Image concepts work offline. Text concepts need CLIP weights: an archive made with --encoder
    open_clip:MODEL/TAG or hf:PATH (weights found through --models DIR or $SEMZIP_MODEL_PATH); the offline
    thumbnail encoder has no text tower and refuses them."""
    from semzip.api import blend_item
    from semzip.archive import open_archive
    from semzip.data.images import save_png

    check_device(device)
    check_output_file(output, force, (archive,))
    e = blend_item(archive, item, add or [], remove or [], weight, device=device)
    if output.suffix.lower() == ".npy":
        save_npy(output, e[None])
    else:
        with open_archive(archive) as a:
            gen = a.generator(generator, device=device)
        save_png(gen.generate(e[None], seed=seed)[0], output)
    out.print(f"wrote {output}")


@_friendly
def atoms(
    archive: Annotated[Path, typer.Argument(help="Collection archive.")],
    vocab: Annotated[Path, typer.Option(help="Text file of concepts (words or phrases), one per line.")],
    top: Annotated[int, typer.Option(help="Concepts to list per atom.")] = 5,
    limit: Annotated[int, typer.Option(help="Atoms to list (most used first is not tracked: in index order).")] = 20,
    device: Annotated[str | None, typer.Option(
        help=f"Where the archive's encoder runs: {DEVICE_HELP}.", show_default=False)] = None,
) -> None:
    """List the text concepts nearest to each dictionary atom.

    Needs CLIP weights: an archive made with --encoder open_clip:MODEL/TAG or hf:PATH (weights found through
    --models DIR or $SEMZIP_MODEL_PATH); the offline thumbnail encoder has no text tower and is refused."""
    from semzip.api import atom_concepts

    check_device(device)
    if not vocab.is_file():
        raise InvalidInputError(f"no such vocabulary file: {vocab}")
    rows = atom_concepts(archive, vocab.read_text(encoding="utf-8").splitlines(), top, device=device)
    t = Table("atom", "nearest concepts (cosine)")
    for i, row in enumerate(rows[:limit]):
        t.add_row(str(i), ", ".join(f"{w} ({s:.2f})" for w, s in row))
    out.print(t)


@_friendly
def search(
    archive: Annotated[Path, typer.Argument(help="Collection archive.")],
    query: Annotated[str, typer.Argument(
        help="An image file, or a text prompt (needs CLIP weights, see below); embedded with the archive's encoder.")],
    top: Annotated[int, typer.Option(help="How many items to list.")] = 10,
    device: Annotated[str | None, typer.Option(
        help=f"Where the archive's encoder runs: {DEVICE_HELP}. The offline thumbnail encoder runs on the CPU.",
        show_default=False)] = None,
) -> None:
    """Rank items by similarity to a query straight from the sparse codes (nothing is decoded to pixels).

    Image queries work offline. Text queries need CLIP weights: an archive made with --encoder
    open_clip:MODEL/TAG or hf:PATH (weights found through --models DIR or $SEMZIP_MODEL_PATH); the offline
    thumbnail encoder has no text tower and refuses them."""
    from semzip.archive import open_archive

    check_device(device)
    with open_archive(archive) as a:
        q = a.embed_concepts([query], device)[0]
        index = a.search_index()
    t = Table("rank", "item", "cosine")
    for i, (name, score) in enumerate(index.top(q, top), 1):
        t.add_row(str(i), name, f"{score:.4f}")
    out.print(t)


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
    out.print(styled((str(archive), "bold"), f"  format {d['format']}  codec ", (d["codec"], "bold"),
                     f"  {d['n_items']} items"))
    out.print(f"written by {d['writer'] or 'unknown'}; parameters: {json.dumps(d['params'])}")
    for m in d["models"]:
        out.print(f"model {m['role']}: {m['name']} (fingerprint {m['fingerprint']})")
    n = max(d["n_items"], 1)
    t = Table("section", "type", "bytes", "share", "bits per item")
    for s in d["sections"]:
        t.add_row(s["name"], s["type"], str(s["bytes"]), f"{100 * s['bytes'] / d['bytes']:.1f}%", f"{8 * s['bytes'] / n:.2f}")
    t.add_row(styled(("total", "bold")), "", styled((str(d["bytes"]), "bold")), "100%", f"{8 * d['bytes'] / n:.2f}")
    out.print(t)
    if d["n_items"]:
        out.print(f"{d['bits_per_item']:.2f} bits per item (whole file, header included)")
        if d.get("bits_per_pixel") is not None:
            out.print(f"{d['bits_per_pixel']:.3g} bits per pixel")


@_friendly
def verify(
    archive: Annotated[Path, typer.Argument(help="Archive to check.")],
    deep: Annotated[
        bool, typer.Option("--deep", help="Also decode every item (catches damage that keeps the CRCs valid).")
    ] = False,
    caption_adapter: Annotated[Path | None, typer.Option(
        help="image-text with --deep: the caption-model adapter the archive was made with.", show_default=False)] = None,
    device: Annotated[str | None, typer.Option(
        help=f"image-text with --deep: where the refiner runs, {DEVICE_HELP} (the offline identity refiner runs "
        "on the CPU; other archives decode to embeddings, where no model runs).", show_default=False)] = None,
) -> None:
    """Check every section's and every block's CRC32, the header against its schema and the item names;
    exit 1 if anything is damaged. --deep decodes every item exactly as decompress does."""
    from semzip.archive import open_archive

    check_device(device)
    if device is not None and not deep:
        raise InvalidInputError("--device is for --deep (the other checks run no model)")
    with open_archive(archive, check=False, adapter=caption_adapter) as a:  # the schema is a row of the report
        rows = a.verify(deep, device)
    t = Table("section", "status", "detail")
    for name, ok, msg in rows:
        t.add_row(name, styled(("ok", "green")) if ok else styled(("CORRUPT", "red")), msg)
    out.print(t)
    if not all(ok for _, ok, _ in rows):
        raise typer.Exit(1)
