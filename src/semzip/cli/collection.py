"""Collection commands: ``compress``, ``embed``, ``add``, ``decompress`` and ``demo``.

These make, extend and decode archives. ``compress`` and ``decompress`` serve every codec (collection, sq and
image-text: the image-text codec has no command of its own, its options sit in their own help panels here).
Every SemzipError becomes one line on stderr and exit code 2; nothing is written unless the whole output
is ready (archives are written atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from semzip.cli.console import DEVICE_HELP, alias, check_device, err, out, save_npy, styled
from semzip.cli.console import friendly as _friendly
from semzip.cli.console import progress as _progress
from semzip.errors import InvalidInputError
from semzip.outputs import check_apart, check_output_file, check_output_folder


def _note(message: str) -> None:
    """One line on stderr (a terminal or a log) about what an output is or is not."""
    err.print(styled(("note:", "yellow"), " ", message))


def _skip_reporter(skipped: list):
    def report(name: str, reason: str) -> None:
        skipped.append(name)
        err.print(styled(("skipped", "yellow"), f" {name}: {reason}"))

    return report


def _parse_size(size: str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InvalidInputError(f"--size must look like 512x512, got {size!r}") from None
    return w, h


# compress --help groups its options per codec and engine
_INPUT = 'Input'
_COLLECTION = 'Collection codec (--codec collection, the default)'
_SQ = 'Scalar-quantisation codec (--codec sq)'
_IMAGE_TEXT = 'Image-text codec (--codec image-text)'
_DECODING = 'Image-text decoding settings recorded in the archive (decompress uses them unless told otherwise)'
_ENGINE = 'Collection engine (bounded memory, resumable, distributed)'
_OUTPUT = 'Output'



@_friendly
def compress(
    input: Annotated[
        Path | None, typer.Argument(help="A folder of images, or an (items x dims) .npy of embeddings.")
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", rich_help_panel=_OUTPUT, help="Archive to write (.smz).")] = Path("out.smz"),
    embeddings: Annotated[
        Path | None, typer.Option(rich_help_panel=_INPUT, help="Precomputed embeddings (.npy, or .parquet with an embedding column) instead of an image folder.")
    ] = None,
    names: Annotated[Path | None, typer.Option(rich_help_panel=_INPUT, help="With --embeddings: a text file of item names, one per line.")] = None,
    space: Annotated[
        str, typer.Option(rich_help_panel=_INPUT, help="With --embeddings: the space they live in, e.g. open_clip:ViT-H-14/laion2b_s32b_b79k.")
    ] = "unknown",
    codec: Annotated[
        str, typer.Option(help="collection (dictionary + sparse codes), image-text (LIC + caption), or sq.")
    ] = "collection",
    encoder: Annotated[
        str, typer.Option(rich_help_panel=_COLLECTION, help="Image encoder: thumbnail (offline default), hf:PATH, open_clip:MODEL/TAG.")
    ] = "thumbnail",
    quality: Annotated[int | None, typer.Option("-q", "--quality", rich_help_panel=_OUTPUT, show_default=False,
        help="One rate knob for every codec, higher = more bytes and closer to the original: collection: atoms per "
        "item, 1-16 (the default is 4); image-text: LIC downscale 1-4 = 1/8, 1/4 (the default), 1/2, 1; sq: bits "
        "per dimension, 1-16 (the default is 8). It sets --sparsity, --scale or --bits: give one or the other.")] = None,
    sparsity: Annotated[int | None, typer.Option(rich_help_panel=_COLLECTION, show_default="4", help="collection: at most this many atoms per item.")] = None,
    min_cosine: Annotated[float | None, typer.Option(rich_help_panel=_COLLECTION, help="collection: stop adding atoms at this cosine.")] = None,
    bits_per_item: Annotated[
        float | None, typer.Option(rich_help_panel=_COLLECTION, help="collection: rate budget, whole file / items (lowers sparsity to fit).")
    ] = None,
    n_atoms: Annotated[int | None, typer.Option(rich_help_panel=_COLLECTION, help="collection: dictionary size (default ~items/8, 16..1024).")] = None,
    atom_bits: Annotated[int, typer.Option(rich_help_panel=_COLLECTION, help="collection: quantisation bits of dictionary values.")] = 6,
    bits: Annotated[int | None, typer.Option(rich_help_panel=_SQ, show_default="8", help="sq: bits per dimension before entropy coding.")] = None,
    captions: Annotated[
        str | None, typer.Option(rich_help_panel=_IMAGE_TEXT, help="image-text: captions CSV (image,caption) or folder of <stem>.txt.")
    ] = None,
    captioner: Annotated[str | None, typer.Option(rich_help_panel=_IMAGE_TEXT, help="image-text: captioning model, hf:PATH or chat:PATH.")] = None,
    max_words: Annotated[int | None, typer.Option(rich_help_panel=_IMAGE_TEXT, help="image-text: caption length limit (a rate knob).")] = None,
    lic: Annotated[str, typer.Option(rich_help_panel=_IMAGE_TEXT, help="image-text: tiny (offline default) or compressai:ARCH:QUALITY.")] = "tiny",
    language: Annotated[str, typer.Option(rich_help_panel=_IMAGE_TEXT, help="image-text: caption language model.")] = "smollm2-135m",
    caption_adapter: Annotated[Path | None, typer.Option(rich_help_panel=_IMAGE_TEXT, 
        help="image-text: an adapter for the caption model (semzip text train); decoding needs the same file.",
        show_default=False)] = None,
    scale: Annotated[float | None, typer.Option(rich_help_panel=_IMAGE_TEXT, show_default="0.25", help="image-text: downscale before the LIC (a rate knob).")] = None,
    refiner: Annotated[
        str, typer.Option(rich_help_panel=_DECODING, help="image-text: decoder to record in the header, e.g. sd-img2img:PATH.")
    ] = "identity",
    seed: Annotated[int, typer.Option(rich_help_panel=_DECODING, help="image-text: decoding seed recorded in the header.")] = 0,
    steps: Annotated[int | None, typer.Option(rich_help_panel=_DECODING, help="image-text: diffusion steps recorded in the header.")] = None,
    strength: Annotated[float | None, typer.Option(rich_help_panel=_DECODING, help="image-text: img2img strength recorded in the header.")] = None,
    pixels: Annotated[str | None, typer.Option(rich_help_panel=_INPUT, 
        help="collection, with --embeddings: size of the images they came from (WxH, e.g. 1024x768, or a pixel "
        "count), for bits per pixel; default 768x512 (Kodak). Image folders are measured.",
        show_default=False)] = None,
    block_size: Annotated[int | None, typer.Option(rich_help_panel=_OUTPUT, help="Items per block: the unit of random access.")] = None,
    strict: Annotated[bool, typer.Option(rich_help_panel=_INPUT, help="Stop at the first unreadable file instead of skipping it.")] = False,
    recursive: Annotated[bool, typer.Option(rich_help_panel=_INPUT, help="Include images in sub-folders.")] = False,
    cache: Annotated[bool, typer.Option(rich_help_panel=_INPUT, help="Reuse cached embeddings of unchanged images.")] = True,
    epochs: Annotated[int, typer.Option(rich_help_panel=_COLLECTION, help="collection: at most this many passes of dictionary learning.")] = 10,
    batch_size: Annotated[int, typer.Option(rich_help_panel=_COLLECTION, help="collection: items per dictionary-learning mini-batch.")] = 1024,
    engine: Annotated[
        str, typer.Option(rich_help_panel=_ENGINE, help="collection: memory (all in RAM), stream (bounded memory, resumable) or ray.")
    ] = "memory",
    store: Annotated[
        Path | None, typer.Option(rich_help_panel=_ENGINE, help="stream/ray: embedding store folder to fill or reuse (kept; default: temporary).")
    ] = None,
    shard_size: Annotated[int, typer.Option(rich_help_panel=_ENGINE, help="stream/ray: items per store shard (the unit of resume).")] = 4096,
    workers: Annotated[int, typer.Option(rich_help_panel=_ENGINE, help="ray: local workers (ignored with --ray-address).")] = 2,
    ray_address: Annotated[str | None, typer.Option(rich_help_panel=_ENGINE, help="ray: cluster address (ray://host:10001 or auto).")] = None,
    batches_per_step: Annotated[
        int | None, typer.Option(rich_help_panel=_ENGINE, help="stream/ray: mini-batches per dictionary step (default 1; ray: workers).")
    ] = None,
    keep_work: Annotated[bool, typer.Option(rich_help_panel=_ENGINE, help="stream/ray: keep OUTPUT.work (checkpoints, codes) after success.")] = False,
    device: Annotated[str | None, typer.Option(rich_help_panel=_INPUT, 
        help=f"Where the image encoder (collection) or the captioning model (image-text) runs: {DEVICE_HELP}. "
        "The offline ones (thumbnail, caption files) run on the CPU; embeddings input runs no model.",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", rich_help_panel=_OUTPUT, help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Compress a collection (a folder of images or precomputed embeddings) into one archive.

    With --engine stream or ray the collection is embedded into an on-disk store shard by shard and
    compressed from there in bounded memory; re-running an interrupted command resumes where it stopped.
    """
    from semzip.api import compress_embeddings, compress_folder, device_kw
    from semzip.data.embeddings import load_embeddings_with_names
    from semzip.data.images import list_images

    source = embeddings or input
    sparsity, scale, bits = rate_settings(codec, quality, sparsity, scale, bits)
    check_device(device)
    if device is not None:  # refused before any work, as is an offline model on another device than the CPU
        if not (source is not None and source.is_dir()):
            raise InvalidInputError("--device does not apply to compressing embeddings (no model runs)")
        if codec == "image-text":
            device_kw("captioner", captioner or "sidecar", device)
        else:
            device_kw("encoder", encoder, device)
    pixels_per_item = _parse_pixels(pixels)
    if pixels_per_item is not None and (codec != "collection" or (source is not None and source.is_dir())):
        raise InvalidInputError("--pixels is for --codec collection from embeddings (image folders are measured)")
    assumed = pixels_per_item is None and not (source is not None and source.is_dir())
    extra = {} if pixels_per_item is None else {"pixels_per_item": pixels_per_item}
    if engine != "memory":
        if codec != "collection":
            raise InvalidInputError(f"--engine {engine} works with --codec collection only")
        if source is None and store is None:
            raise InvalidInputError("give a folder of images, an embeddings file, or an existing --store")
        check_output_file(output, force, (source, store))
        if store is not None:
            check_apart(store, (source,), force, "folder")  # a store may exist: it is resumed
        _compress_streaming(source, output, engine=engine, store=store, shard_size=shard_size, encoder=encoder,
                            space=space, names_file=names, recursive=recursive, strict=strict, workers=workers,
                            address=ray_address, batches_per_step=batches_per_step, keep_work=keep_work,
                            sparsity=sparsity, min_cosine=min_cosine, bits_per_item=bits_per_item,
                            n_atoms=n_atoms, atom_bits=atom_bits, block_size=block_size or 256,
                            max_epochs=epochs, batch_size=batch_size, assumed=assumed, device=device, **extra)
        return
    if source is None:
        raise InvalidInputError("give a folder of images or an embeddings file (--embeddings x.npy)")
    check_output_file(output, force, (source,))
    if codec == "image-text":
        from semzip.api import compress_image_text

        skipped: list[str] = []
        n_in = len(list_images(source, recursive)) if source.is_dir() else 1
        with _progress(2 * n_in, "coding captions, then images (2 steps an image)") as adv:
            size, names_ = compress_image_text(
                source, output, captions=captions, captioner=captioner, max_words=max_words, lic=lic,
                language=language, scale=scale, strict=strict, recursive=recursive,
                on_skip=_skip_reporter(skipped), progress=adv, refiner=refiner, seed=seed, steps=steps,
                strength=strength, caption_adapter=caption_adapter, device=device,
            )
        _print_rate(output, size, len(names_))
        return
    if codec == "collection":
        params = dict(sparsity=sparsity, min_cosine=min_cosine, bits_per_item=bits_per_item, n_atoms=n_atoms,
                      atom_bits=atom_bits, block_size=block_size or 256, verbose=err.is_terminal, max_epochs=epochs,
                      batch_size=batch_size)
    elif codec == "sq":
        params = dict(bits=bits, block_size=block_size or 64)
    else:
        raise InvalidInputError(f"unknown codec {codec!r}: use collection, image-text or sq")
    if source.is_dir():
        if codec != "collection":
            raise InvalidInputError("image folders are compressed with --codec collection")
        skipped = []
        with _progress(len(list_images(source, recursive)), "embedding images") as adv:
            size, got = compress_folder(source, output, encoder=encoder, strict=strict, recursive=recursive,
                                        use_cache=cache, on_skip=_skip_reporter(skipped), embed_progress=adv,
                                        device=device, **params)
        n = len(got.names)
        extra = f" ({got.cached} embeddings from cache)" if got.cached else ""
        out.print(f"embedded {n} images with {encoder}{extra}; skipped {len(got.skipped)}")
    else:
        x, item_names = load_embeddings_with_names(source)
        if names:
            item_names = _read_names(names, len(x))
        if codec == "collection":
            params.update(space=space, **extra)
        with _progress(len(x), "compressing") as advance:
            size = compress_embeddings(x, output, codec=codec, names=item_names, progress=advance, **params)
        n = len(x)
    _print_rate(output, size, n, assumed=assumed)


def _compress_streaming(source: Path | None, output: Path, *, names_file: Path | None, assumed: bool,
                        **kw) -> None:
    from semzip.scale.stream import compress_streaming

    names_ = None
    if names_file is not None and source is not None and not source.is_dir():
        names_ = _read_lines(names_file)
    skipped: list[str] = []
    size, n = compress_streaming(source, output, names=names_, on_skip=_skip_reporter(skipped),
                                 progress=_progress, log=err.print, **kw)
    where = f" (store {kw['store']})" if kw.get("store") is not None else ""
    out.print(f"{kw['engine']} engine: {n} items{where}")
    _print_rate(output, size, n, assumed=assumed)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InvalidInputError(f"no such names file: {path}")
    return path.read_text(encoding="utf-8").splitlines()


def _read_names(path: Path, n: int) -> list[str]:
    if not path.is_file():
        raise InvalidInputError(f"no such names file: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != n:
        raise InvalidInputError(f"{path} has {len(lines)} names for {n} embeddings")
    return lines


def _parse_pixels(pixels: str | None) -> int | None:
    if pixels is None:
        return None
    try:
        n = _parse_size(pixels) if "x" in pixels.lower() else None
        count = n[0] * n[1] if n else int(pixels)
    except (InvalidInputError, ValueError):
        count = 0
    if count < 1:
        raise InvalidInputError(f"--pixels must look like 1024x768 or be a positive pixel count, got {pixels!r}")
    return count


def _print_rate(output: Path, size: int, n: int, assumed: bool = False) -> None:
    """``assumed``: the pixel count behind bits per pixel was not measured (embeddings input without --pixels)."""
    from semzip.api import describe
    from semzip.codecs.collection import KODAK_PIXELS

    d = describe(output)
    bpp = f", {d['bits_per_pixel']:.3g} bpp" if d.get("bits_per_pixel") else ""
    if bpp and assumed and d["params"].get("pixels_per_item") == KODAK_PIXELS:
        bpp += " (assuming 768x512-pixel images; give their size with --pixels WxH)"
    out.print(f"wrote {output}: {n} items, {size} bytes, {8 * size / n:.1f} bits per item{bpp}")


@_friendly
def embed(
    input: Annotated[Path, typer.Argument(help="A folder of images, or a .npy / .parquet embeddings file.")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Embedding store folder to fill (created, or resumed); `compress --store` reads it.",
        show_default=False)] = None,
    encoder: Annotated[
        str, typer.Option(help="Image encoder: thumbnail (offline default), hf:PATH, open_clip:MODEL/TAG.")
    ] = "thumbnail",
    engine: Annotated[str, typer.Option(help="stream (this process) or ray (Ray Data actors).")] = "stream",
    shard_size: Annotated[int, typer.Option(help="Items per shard (the unit of resume).")] = 4096,
    workers: Annotated[int, typer.Option(help="ray: local workers (ignored with --ray-address).")] = 2,
    ray_address: Annotated[str | None, typer.Option(help="ray: cluster address.")] = None,
    space: Annotated[str, typer.Option(help="Embeddings file: the space they live in.")] = "unknown",
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable file instead of skipping it.")] = False,
    recursive: Annotated[bool, typer.Option(help="Include images in sub-folders.")] = False,
    device: Annotated[str | None, typer.Option(
        help=f"Where the image encoder runs: {DEVICE_HELP} (ray: each worker's; default cuda when the cluster "
        "has GPUs). The offline thumbnail encoder runs on the CPU.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Allow the store inside the input folder.")] = False,
    store_: Annotated[Path | None, typer.Option("--store", hidden=True)] = None,  # the older spelling of --output
) -> None:
    """Embed a collection into an on-disk store (Parquet shards), resumably; compress it later with
    `semzip compress --engine stream --store STORE` (any number of times, with different settings)."""
    from semzip.api import device_kw
    from semzip.scale.fill import fill_store
    from semzip.scale.stream import make_executor

    check_device(device)
    if device is not None:
        if not input.is_dir():
            raise InvalidInputError("--device does not apply to an embeddings file (no model runs)")
        device_kw("encoder", encoder, device)
    store = alias(output, store_, "-o/--output", "--store")
    if store is None:
        raise InvalidInputError("give the store folder to fill: -o/--output STORE")
    if engine not in ("stream", "ray"):
        raise InvalidInputError(f"unknown engine {engine!r}: use stream or ray")
    check_apart(store, (input,), force, "folder")
    executor = make_executor(engine, workers=workers, address=ray_address)
    skipped: list[str] = []
    try:
        st = fill_store(store, input, executor=executor, encoder=encoder, shard_size=shard_size, space=space,
                        recursive=recursive, strict=strict, on_skip=_skip_reporter(skipped), progress=_progress,
                        device=device)
    finally:
        executor.close()
    out.print(f"store {store}: {len(st)} items in {st.n_shards} shards, dimension {st.dim}; "
              f"skipped {len(st.skipped())}")


@_friendly
def add(
    archive: Annotated[Path, typer.Argument(help="Collection archive to extend (rewritten atomically).")],
    input: Annotated[Path | None, typer.Argument(help="Folder of new images.")] = None,
    embeddings: Annotated[Path | None, typer.Option(help="New precomputed embeddings (.npy) instead.")] = None,
    names: Annotated[Path | None, typer.Option(help="With --embeddings: their names, one per line.")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable file instead of skipping it.")] = False,
    recursive: Annotated[bool, typer.Option(help="Include images in sub-folders.")] = False,
    device: Annotated[str | None, typer.Option(
        help=f"Where the archive's image encoder runs: {DEVICE_HELP}. The offline thumbnail encoder runs on the CPU.",
        show_default=False)] = None,
) -> None:
    """Add new items to a collection archive on its existing dictionary (old items are not re-coded)."""
    from semzip.api import add_embeddings, add_folder
    from semzip.data.embeddings import load_embeddings_with_names

    check_device(device)
    if device is not None and embeddings is not None:
        raise InvalidInputError("--device does not apply to adding embeddings (no model runs)")
    if embeddings is not None:
        x, item_names = load_embeddings_with_names(embeddings)
        size = add_embeddings(archive, x, names=_read_names(names, len(x)) if names else item_names)
        n = len(x)
    elif input is not None:
        skipped: list[str] = []
        size, got = add_folder(archive, input, strict=strict, recursive=recursive, on_skip=_skip_reporter(skipped),
                               device=device)
        n = len(got.names)
    else:
        raise InvalidInputError("give a folder of new images or --embeddings x.npy")
    out.print(f"added {n} items; {archive} is now {size} bytes")


_DEC_COLLECTION = "Collection archives"
_DEC_IMAGE_TEXT = "Image-text archives"
_DEC_SETTINGS = "Decoding settings (image-text: the archive's recorded ones unless given)"


@_friendly
def decompress(
    archive: Annotated[Path, typer.Argument(help="Archive to decode.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", rich_help_panel=_OUTPUT, help="Folder for decoded images, or a .npy file for embeddings.")
    ],
    embeddings_only: Annotated[bool, typer.Option(hidden=True)] = False,  # the same as an -o ending in .npy
    item: Annotated[list[str] | None, typer.Option(rich_help_panel=_OUTPUT, help="Decode only this item (by name); repeatable.")] = None,
    generator: Annotated[
        str | None, typer.Option(rich_help_panel=_DEC_COLLECTION, help="Image generator (default: the offline one for the archive's space).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(rich_help_panel=_DEC_SETTINGS, help="Generation seed, item i uses seed + i (image-text: default from the header).")
    ] = None,
    steps: Annotated[int | None, typer.Option(rich_help_panel=_DEC_SETTINGS, help="Diffusion steps (generator default if unset).")] = None,
    guidance: Annotated[float | None, typer.Option(rich_help_panel=_DEC_SETTINGS, help="Guidance scale (generator default if unset).")] = None,
    size: Annotated[str | None, typer.Option(rich_help_panel=_DEC_COLLECTION, help="Output image size, e.g. 768x512.")] = None,
    refiner: Annotated[
        str | None, typer.Option(rich_help_panel=_DEC_IMAGE_TEXT, help="image-text: diffusion decoder, e.g. sd-img2img:PATH (default: identity).")
    ] = None,
    strength: Annotated[float | None, typer.Option(rich_help_panel=_DEC_IMAGE_TEXT, help="image-text: img2img strength.")] = None,
    caption_adapter: Annotated[Path | None, typer.Option(rich_help_panel=_DEC_IMAGE_TEXT, 
        help="image-text: the caption-model adapter the archive was made with (its header names it).",
        show_default=False)] = None,
    device: Annotated[str | None, typer.Option(rich_help_panel=_DEC_SETTINGS, 
        help=f"Where the generator or diffusion refiner runs: {DEVICE_HELP}. The offline ones (thumbnail, "
        "identity) run on the CPU.", show_default=False)] = None,
    originals: Annotated[Path | None, typer.Option(rich_help_panel=_OUTPUT, 
        help="The folder the archive was made from: also write originals_vs_decoded.png (each original beside "
        "its decode, in the same order) and show decodes at their originals' aspect ratios.",
        show_default=False)] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", rich_help_panel=_OUTPUT, help="Replace OUTPUT if it exists; write into a folder that is not empty.")
    ] = False,
) -> None:
    """Decode an archive to images (PNGs + contact sheet) or, with a .npy output, to embeddings.

    Images go to a new or empty folder (with --force, into any folder: files of the same names are replaced);
    each item's file name comes from its name, made distinct and safe (see docs/format.md, "Item names").
    """
    from semzip.archive import open_archive
    from semzip.archive.render import COMPARISON_SHEET

    check_device(device)
    with open_archive(archive, adapter=caption_adapter) as a:  # opened and checked once, for everything below
        if embeddings_only or output.suffix.lower() == ".npy":
            _decompress_embeddings(a, output, item, force, device, originals)
            return
        check_output_folder(output, force, (archive,))  # before any decoding: refusals cost nothing
        image_text = a.decodes_to == "images"
        wrong = ([("--generator", generator), ("--size", size)] if image_text else
                 [("--refiner", refiner), ("--strength", strength), ("--caption-adapter", caption_adapter)])
        for flag, value in wrong:
            if value is not None:
                raise InvalidInputError(f"{flag} does not apply to {a.codec_name} archives")
        wh = _parse_size(size)
        before = {p.name for p in output.iterdir()} if output.is_dir() else set()
        n = len(item) if item else a.n_items
        sheets = "contact_sheet.png" + (f" and {COMPARISON_SHEET}" if originals is not None else "")
        common = {"items": item, "seed": seed, "steps": steps, "guidance": guidance, "force": force,
                  "device": device, "originals": originals, "note": _note}
        if image_text:
            with _progress(3 * n, "decoding captions and images, then refining (3 steps an image)") as adv:
                files = a.refine(output, refiner=refiner, strength=strength, progress=adv, **common)
            out.print(f"wrote {len(files)} images, captions.txt and {sheets} to {output}")
            used = refiner or (a.header.params.get("refiner") or {}).get("spec") or "identity"
            if used.strip().partition(":")[0] == "identity":  # offline: the caption shapes nothing; say so
                _note("the images are the learned image codec's decodes; the captions (in captions.txt) were not "
                      "used: no diffusion refiner (identity). Give one with --refiner sd-img2img:PATH (weights)")
        else:
            with _progress(n, "generating images") as adv:
                files = a.render(output, generator=generator, size=wh, progress=adv, **{**common, "seed": seed or 0})
            out.print(f"wrote {len(files)} images and {sheets} to {output}")
    made = {"contact_sheet.png", "generation.json", COMPARISON_SHEET, *(["captions.txt"] if image_text else [])}
    kept = sorted(before - {f.name for f in files} - made)
    if kept:  # --force into a folder that held other files: say so rather than mix them silently
        _note(f"{len(kept)} older file(s) in {output} were kept and are not from {archive.name} (e.g. {kept[0]}); "
              "decode into an empty folder to keep them apart")


def _decompress_embeddings(a, output: Path, items: list[str] | None, force: bool, device: str | None,
                           originals: Path | None) -> None:
    """``decompress -o X.npy``: the archive's embeddings (refused for archives of images)."""
    a.require("embeddings")
    if device is not None:
        raise InvalidInputError("--device does not apply to decoding embeddings (no model runs)")
    if originals is not None:
        raise InvalidInputError("--originals is for decoding to images (-o DIR), not to embeddings")
    check_output_file(output, force, (Path(a.path),))
    x = a.embeddings(items)
    save_npy(output, x)
    out.print(f"wrote {output}: {x.shape[0]} embeddings x {x.shape[1]} dims")



@_friendly
def demo(
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Folder for the demo's files (default: semzip-demo).", show_default=False)] = None,
    n: Annotated[int, typer.Option("-n", help="Images in the generated collection.")] = 200,
    force: Annotated[bool, typer.Option("--force", "-f", help="Use the folder even if it is not empty.")] = False,
    dir_: Annotated[Path | None, typer.Option("--dir", hidden=True)] = None,  # the older spelling of --output
) -> None:
    """Offline demo: generate a collection of images, compress it, inspect it, decode it back to images."""
    from semzip.api import (
        COMPARISON_SHEET,
        SHEET_ITEMS,
        compress_embeddings,
        compress_folder,
        decompress,
        decompress_images,
        describe,
    )
    from semzip.data.images import contact_sheet, list_images, load_image, save_png
    from semzip.data.scenes import write_scenes

    workdir = alias(output, dir_, "-o/--output", "--dir", default=Path("semzip-demo"))
    check_output_folder(workdir, force)

    images, arc = workdir / "images", workdir / "collection.smz"
    write_scenes(images, n=n)
    out.print(f"1. generated {n} landscape images (5 themes, procedural) in {images}/")
    with _progress(len(list_images(images)), "embedding images") as adv:
        size, got = compress_folder(images, arc, encoder="thumbnail", embed_progress=adv, sparsity=3, use_cache=False)
    shown = got.names[:SHEET_ITEMS]  # the archive's order, as on the decoded sheets
    save_png(contact_sheet([load_image(images / m) for m in shown], shown), workdir / "originals.png")
    d = describe(arc)
    sec = {s["name"]: s["bytes"] for s in d["sections"]}
    codes, index = sec.get("items", 0), sec.get("index", 0)  # the sections `semzip info` lists
    out.print(
        f"2. compressed with the collection codec (encoder: colour-layout thumbnails, offline and NOT semantic; "
        f"a CLIP encoder gives semantic atoms): {arc}, {size} bytes"
    )
    out.print(
        f"   sections (as `semzip info` lists them): dictionary {sec['dictionary']} B, per-item codes (items) "
        f"{codes} B = {8 * codes / n:.1f} bits per image, block index {index} B; whole file (header, names and "
        f"model list included) {d['bits_per_item']:.0f} bits per image = {d['bits_per_pixel']:.2g} bpp"
    )
    raw = workdir / "sq8.smz"
    sq_size = compress_embeddings(got.embeddings, raw, codec="sq", bits=8)
    out.print(f"   for scale: the same embeddings scalar-quantised at 8 bits take {8 * sq_size / n:.0f} bits per image")
    y = decompress(arc)
    cos = np.sum(y * got.embeddings, axis=1)
    out.print(f"   decoded embeddings: cosine to the originals mean {cos.mean():.3f}, 5th percentile {np.percentile(cos, 5):.3f}")
    with _progress(n, "rendering") as adv:
        decompress_images(arc, workdir / "decoded", progress=adv, force=force, originals=images, note=_note)
    out.print(f"3. decoded {n} images to {workdir / 'decoded'}/ (contact_sheet.png, in the order of "
              f"{workdir / 'originals.png'}; {COMPARISON_SHEET}: originals and decodes side by side)")
    one = decompress(arc, items=[got.names[7]])
    same = bool(np.array_equal(one[0], y[7]))
    out.print(f"4. random access: {got.names[7]} decoded alone, identical to the full decode: {same}")
    out.print(f"Next: `semzip info {arc}`, `semzip decompress {arc} -o out --item {got.names[0]}`")


QUALITY_LADDERS = {  # codec -> (the option -q sets, its value at each quality level 1..n)
    "collection": ("--sparsity", list(range(1, 17))),
    "image-text": ("--scale", [0.125, 0.25, 0.5, 1.0]),
    "sq": ("--bits", list(range(1, 17))),
}
RATE_DEFAULTS = {"--sparsity": 4, "--scale": 0.25, "--bits": 8}


def rate_settings(codec: str, quality: int | None, sparsity: int | None, scale: float | None,
                  bits: int | None) -> tuple[int, float, int]:
    """(sparsity, scale, bits) from ``-q/--quality`` or the options themselves, defaults for the rest; -q
    together with the option it sets is refused, as is a level outside the codec's ladder."""
    given = {"--sparsity": sparsity, "--scale": scale, "--bits": bits}
    if quality is not None:
        if codec not in QUALITY_LADDERS:
            raise InvalidInputError(f"-q/--quality: unknown codec {codec!r}")
        flag, ladder = QUALITY_LADDERS[codec]
        if not 1 <= quality <= len(ladder):
            raise InvalidInputError(f"-q/--quality {quality}: {codec} takes 1-{len(ladder)} (it sets {flag})")
        if given[flag] is not None:
            raise InvalidInputError(f"-q/--quality sets {flag} for {codec}: give one or the other, not both")
        given[flag] = ladder[quality - 1]
    out = {k: RATE_DEFAULTS[k] if v is None else v for k, v in given.items()}
    return int(out["--sparsity"]), float(out["--scale"]), int(out["--bits"])
