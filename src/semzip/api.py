"""The Python API behind the CLI: compress, decompress and describe archives."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from semzip.codecs import get_codec
from semzip.data.folders import EmbeddedFolder, embed_folder
from semzip.errors import InvalidInputError, ModelMismatchError, UnsupportedVersionError
from semzip.format import (
    WRITABLE_VERSIONS,
    Container,
    ModelRef,
    SectionType,
    atomic_write,
    open_archive,
    pack,
    write,
)
from semzip.format.names import RESERVED_FILES, output_files
from semzip.outputs import output_folder

PathLike = str | os.PathLike


def compress_embeddings(
    x: np.ndarray,
    output: PathLike,
    codec: str = "sq",
    names: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    **params,
) -> int:
    """Compress an (n, d) embedding matrix into an archive at ``output``; returns its size in bytes."""
    enc = get_codec(codec)(**params).compress(x, names=names, progress=progress)
    return write(output, enc.header, enc.blobs, enc.blocks, enc.names)


def add_embeddings(
    archive: PathLike,
    x: np.ndarray,
    names: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Append items to an archive, coded on its existing dictionary; old items' bytes are copied unchanged.

    Before anything is coded the archive must decode completely (every item and name, as ``decompress``
    reads them) and be of a format version this semzip writes: an archive it cannot fully read, or one from a
    later version that may hold what it does not know, is refused untouched. The archive keeps its format
    version and is rewritten atomically: a crash leaves the previous archive intact. Returns the new size.
    """
    with open_archive(archive) as c:
        if c.format_version not in WRITABLE_VERSIONS:
            raise UnsupportedVersionError(
                f"{archive} is container format {c.format_version[0]}.{c.format_version[1]}; this semzip writes "
                f"{', '.join(f'{a}.{b}' for a, b in WRITABLE_VERSIONS)} only and would lose what a newer writer "
                "stored: upgrade semzip to add items to it")
        codec = get_codec(c.header.codec).from_header(c.header)
        if not hasattr(codec, "encode_more"):
            raise InvalidInputError(f"the {c.header.codec!r} codec cannot add items to an existing archive")
        codec.decompress(c)  # the whole archive decodes, or it is refused before anything is written
        old_names = c.names
        n_old = len(old_names)
        if names is None and getattr(old_names, "generated", False):
            new_names = None  # the new items get the next default names, still without a names section
        else:
            new_names = list(names) if names is not None else [f"item_{i:05d}" for i in range(n_old, n_old + len(x))]
            old_set = set(old_names)
            clash = sorted(n for n in set(new_names) if n in old_set)
            if clash:
                raise InvalidInputError(f"{len(clash)} new items have names already in the archive, e.g. {clash[0]!r}")
        new_blocks = codec.encode_more(c, x, progress=progress)
        old_blocks = [(b.n_items, payload) for b, payload in c.iter_blocks()]
        blobs = c.blobs()
        header = c.header
        all_names = None if new_names is None else list(old_names) + new_names
        data = pack(header, blobs, old_blocks + new_blocks, all_names, version=c.format_version)
    return atomic_write(archive, data)


def decompress(archive: PathLike, items: Sequence[str | int] | None = None) -> np.ndarray:
    """Decode an archive; ``items`` (names or numbers) restricts decoding to those items' blocks.

    The header, sections and item names are checked first (:func:`semzip.format.open_archive`), as by every
    command, so an archive that decodes here decodes the same way in ``decompress`` and ``verify --deep``.
    """
    with open_archive(archive) as c:
        codec = get_codec(c.header.codec).from_header(c.header)
        _ = c.names  # checked (file-name safe, distinct) even when only embeddings are wanted
        idx = None if items is None else [_item_number(c, i) for i in items]
        return codec.decompress(c, idx)


def _item_number(c: Container, item: str | int) -> int:
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise InvalidInputError(f"items are names or numbers, got {item!r}")
    if isinstance(item, int):
        c.locate(item)  # range check
        return item
    return c.item_index(item)


def decode_check(archive: PathLike, caption_adapter: PathLike | None = None, device: str | None = None) -> int:
    """Decode every item of an archive the way ``decompress`` does, without writing anything; returns the
    number of items (``semzip verify --deep``). ``device``: where an image-text archive's refiner runs (see
    :func:`device_kw`); collections and sq archives decode to embeddings, where no model runs."""
    with open_archive(archive) as c:
        codec_name = c.header.codec
    if codec_name == "image-text":
        import tempfile

        with tempfile.TemporaryDirectory(prefix="semzip-verify-") as tmp:
            return len(decompress_image_text(archive, Path(tmp) / "out", caption_adapter=caption_adapter,
                                             device=device))
    if device is not None:
        raise InvalidInputError(f"--device does not apply to verifying a {codec_name} archive (it decodes to "
                                "embeddings; no model runs)")
    return len(decompress(archive))


def describe(archive: PathLike) -> dict:
    """Header, per-section sizes and real bits per item (the whole file counted) of an archive."""
    with open_archive(archive) as c:
        h = c.header
        sections = [{"name": "header", "type": "HEADER", "bytes": c.header_size}]
        sections += [{"name": s.name, "type": SectionType(s.type).name, "bytes": s.record_size} for s in c.sections]
        d = {
            "format": "%d.%d" % c.format_version,
            "codec": h.codec,
            "params": h.params,
            "models": [m.to_json() for m in h.models],
            "n_items": h.n_items,
            "writer": h.writer,
            "bytes": c.size,
            "sections": sections,
            "bits_per_item": 8 * c.size / h.n_items if h.n_items else None,
        }
        pixels = h.params.get("pixels_per_item")  # a checked integer >= 0 (0: unknown)
        d["bits_per_pixel"] = d["bits_per_item"] / pixels if pixels and h.n_items else None
        return d


# ----------------------------------------------------------------------------------------------- collections


def encoder_ref(encoder) -> ModelRef:
    """The header record of an image encoder (its registry spec, so `add` can load it again)."""
    return ModelRef("encoder", encoder.name, encoder.fingerprint)


def compress_folder(
    folder: PathLike,
    output: PathLike,
    encoder: str = "thumbnail",
    strict: bool = False,
    recursive: bool = False,
    use_cache: bool = True,
    on_skip: Callable[[str, str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    embed_progress: Callable[[int], None] | None = None,
    device: str | None = None,
    **params,
) -> tuple[int, EmbeddedFolder]:
    """Embed a folder of images and compress it with the collection codec; returns (bytes, embedding info).
    ``device``: where the encoder runs (see :func:`device_kw`)."""
    from semzip.models.registry import load_encoder

    enc = load_encoder(encoder, **device_kw("encoder", encoder, device))
    got = embed_folder(folder, enc, strict=strict, recursive=recursive, use_cache=use_cache, on_skip=on_skip,
                       progress=embed_progress)
    params.setdefault("pixels_per_item", int(np.mean(got.pixels)))
    size = compress_embeddings(got.embeddings, output, codec="collection", names=got.names, progress=progress,
                               encoder=encoder_ref(enc), space=enc.space, **params)
    return size, got


def add_folder(
    archive: PathLike,
    folder: PathLike,
    strict: bool = False,
    recursive: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    device: str | None = None,
) -> tuple[int, EmbeddedFolder]:
    """Embed new images with the archive's own encoder and append them (see :func:`add_embeddings`);
    ``device``: where the encoder runs (see :func:`device_kw`)."""
    with open_archive(archive) as c:
        ref = c.header.model("encoder")
    if ref is None:
        raise InvalidInputError("the archive records no image encoder; add precomputed embeddings instead")
    enc = _load_recorded_encoder(ref, device, "new items would live in another embedding space")
    got = embed_folder(folder, enc, strict=strict, recursive=recursive, on_skip=on_skip)
    return add_embeddings(archive, got.embeddings, names=got.names, progress=progress), got


def default_generator(space: str) -> str:
    """The generator spec that renders a given embedding space offline, if one exists."""
    from semzip.models.thumbnail import ThumbnailEncoder

    for grid in (16, 8, 12, 24, 32):
        if ThumbnailEncoder(grid).space == space:
            return "thumbnail" if grid == 16 else f"thumbnail:{grid}"
    raise InvalidInputError(
        f"no offline generator renders the embedding space {space!r}; pass --generator "
        "(e.g. stable-unclip:/path/to/sd21-unclip for OpenCLIP ViT-H-14 embeddings)"
    )


_CPU_ONLY = {"generator": ("thumbnail",), "refiner": ("identity",), "encoder": ("thumbnail",),
             "captioner": ("sidecar",)}  # no model: numpy on the CPU, or captions read from files


def device_kw(kind: str, spec: str | None, device: str | None) -> dict:
    """``device=`` for a generator, refiner, encoder or captioner loader: passed to the models; the offline ones
    run on the CPU, so another device is refused (before any work) rather than ignored."""
    spec = spec or _CPU_ONLY[kind][0]
    if device is None:
        return {}
    if spec.strip().partition(":")[0] in _CPU_ONLY[kind]:
        if device != "cpu":
            raise InvalidInputError(f"--device {device}: the {kind} {spec!r} has no model and runs on the CPU only; "
                                    "leave --device out")
        return {}
    return {"device": device}


def archive_generator(archive: PathLike, generator: str | None = None, device: str | None = None):
    """The generator to render an archive's embeddings: the given spec or the space's offline default
    (``device``: where a diffusion generator runs; see :func:`device_kw`).

    Refuses a generator conditioned on another embedding space than the archive's.
    """
    from semzip.models.registry import load_generator

    with open_archive(archive) as c:
        space = c.header.params.get("space", "unknown")
    spec = generator or default_generator(space)
    gen = load_generator(spec, **device_kw("generator", spec, device))
    if gen.space != space:
        raise ModelMismatchError(
            f"the archive holds {space!r} embeddings but generator {gen.name!r} is conditioned on {gen.space!r}; "
            "decoding would produce nonsense"
        )
    return gen


def decompress_images(
    archive: PathLike,
    out_dir: PathLike,
    items: Sequence[str | int] | None = None,
    generator: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    size: tuple[int, int] | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 8,
    force: bool = False,
    device: str | None = None,
    originals: PathLike | None = None,
    note: Callable[[str], None] | None = None,
) -> list[Path]:
    """Decode embeddings and render them to PNGs (one per item) plus contact_sheet.png in ``out_dir``.

    ``originals``: the folder the archive was made from; then the contact sheet shows each decode at its
    original's aspect ratio (the generators render every item at one size) and originals_vs_decoded.png puts
    originals and decodes side by side, in the same order (``note`` hears of items without an original).

    File names follow :func:`semzip.format.names.output_files` (collision-free). ``out_dir`` must not exist
    or be empty unless ``force``; a new one appears only complete (see :func:`semzip.outputs.output_folder`).
    """
    from semzip.data.images import save_png

    with open_archive(archive) as c:  # seeds follow the item's number, so one item decodes as in the full run
        gidx = list(range(c.header.n_items)) if items is None else [_item_number(c, i) for i in items]
        files = _output_files(c, gidx)
        names = [c.names[i] for i in gidx]
    found = _load_originals(originals, names, note)
    gen = archive_generator(archive, generator, device)  # a missing generator or a bad setting is refused before
    params = gen.params(seed=seed, steps=steps, guidance=guidance, size=size)  # any decoding
    x = decompress(archive, items=gidx if items is not None else None)
    written, thumbs = [], []
    step = batch_size if items is None else 1
    with output_folder(out_dir, force, inputs=[Path(archive)], will_write=[*files, *RESERVED_FILES]) as out:
        for start in range(0, len(x), step):
            imgs = gen.generate(x[start : start + step], seed=seed + gidx[start], steps=steps, guidance=guidance,
                                size=size)
            for file, img in zip(files[start : start + step], imgs):
                written.append(Path(out_dir) / save_png(img, out / file).name)
                if len(thumbs) < SHEET_ITEMS:
                    thumbs.append(img)
            if progress is not None:
                progress(len(imgs))
        atomic_write(out / "generation.json", json.dumps({"archive": str(archive), **params}, indent=2).encode())
        _write_sheets(out, thumbs, names, found)
    return written


def _output_files(c: Container, numbers: Sequence[int]) -> list[str]:
    """The output file names of items ``numbers``: computed over all the archive's names, so an item decoded
    alone gets the same file as in a full decode."""
    names = c.names
    if getattr(names, "generated", False):
        return output_files([names[i] for i in numbers])  # default names are distinct and safe as they are
    every = output_files(names)
    return [every[i] for i in numbers]


SHEET_ITEMS = 200
"""Items shown on a decoded folder's contact sheet and originals-vs-decoded sheet (the first ones, in order)."""
COMPARISON_SHEET = "originals_vs_decoded.png"


def _load_originals(folder: PathLike | None, names: Sequence[str],
                    note: Callable[[str], None] | None) -> list[np.ndarray | None] | None:
    """Small copies of the original images of the first :data:`SHEET_ITEMS` items, read from ``folder`` (the
    source folder: item names are paths relative to it), None where an item has no readable file there.
    Read before any decoding: a folder holding none of them is refused."""
    if folder is None:
        return None
    from semzip.data.images import load_image, sheet_thumbnail
    from semzip.errors import BadImageError, ResourceLimitError

    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"--originals {root}: no such folder")
    found: list[np.ndarray | None] = []
    for name in names[:SHEET_ITEMS]:
        p = root / name
        try:
            parts = Path(name).parts  # inside the folder by name; a symlinked photo folder is fine
            inside = not Path(name).is_absolute() and ".." not in parts and not Path(name).drive
            found.append(sheet_thumbnail(load_image(p)) if inside and p.is_file() else None)
        except (BadImageError, ResourceLimitError, OSError, ValueError):
            found.append(None)
    n = sum(f is not None for f in found)
    if n == 0:
        raise InvalidInputError(f"--originals {root}: none of the items' names is an image file there (e.g. "
                                f"{names[0]!r}); give the folder the archive was made from")
    if n < len(found) and note is not None:
        missing = next(nm for nm, f in zip(names, found) if f is None)
        note(f"{len(found) - n} of the first {len(found)} items have no readable original in {root} (e.g. "
             f"{missing!r}); {COMPARISON_SHEET} shows the other {n}")
    return found


def _write_sheets(out: Path, decoded: Sequence[np.ndarray], names: Sequence[str],
                  originals: Sequence[np.ndarray | None] | None) -> None:
    """contact_sheet.png of the decoded images (at their originals' aspect ratios when those are at hand) and,
    with originals, originals_vs_decoded.png: each original beside its decode, in the same order."""
    from semzip.data.images import comparison_sheet, contact_sheet, save_png

    decoded, names = list(decoded[:SHEET_ITEMS]), list(names[: min(len(decoded), SHEET_ITEMS)])
    aspects = None
    if originals is not None:
        aspects = [(o.shape[1] / o.shape[0]) if o is not None else d.shape[1] / d.shape[0]
                   for o, d in zip(originals, decoded)]
    save_png(contact_sheet(decoded, names, aspects=aspects), out / "contact_sheet.png")
    if originals is not None:
        pairs = [(o, d, n) for o, d, n in zip(originals, decoded, names) if o is not None]
        save_png(comparison_sheet(*zip(*pairs)), out / COMPARISON_SHEET)


# ----------------------------------------------------------------------------------------------- semantics


def _load_recorded_encoder(ref: ModelRef, device: str | None, why: str):
    """The encoder an archive records, on ``device``, refused when its weights differ from the archive's."""
    from semzip.models.registry import load_encoder

    enc = load_encoder(ref.name, **device_kw("encoder", ref.name, device))
    if enc.fingerprint != ref.fingerprint:
        raise ModelMismatchError(f"encoder {ref.name!r} here has fingerprint {enc.fingerprint}, the archive was "
                                 f"made with {ref.fingerprint}: {why}")
    return enc


def _archive_encoder(archive: PathLike, device: str | None = None):
    with open_archive(archive) as c:
        ref = c.header.model("encoder")
    if ref is None:
        raise InvalidInputError("the archive records no encoder: concepts cannot be embedded in its space")
    return _load_recorded_encoder(ref, device, "concepts would be embedded in another space")


def need_text_tower(encoder, image_queries: bool = True) -> None:
    """Refuse text queries, in one line saying which weights they need and how to give them, when the archive's
    encoder has no text tower (the offline thumbnail encoder)."""
    if getattr(encoder, "has_text_tower", False):
        return
    tail = "; an image file works as a query without them" if image_queries else ""
    raise InvalidInputError(
        f"text queries need CLIP weights (an image encoder with a text tower); this archive was made with the "
        f"{encoder.name!r} encoder, which has none: compress the images again with --encoder "
        f"open_clip:MODEL/TAG or --encoder hf:PATH, the weights in a folder given by --models DIR or "
        f"$SEMZIP_MODEL_PATH{tail}")


def embed_concepts(archive: PathLike, concepts: Sequence[str], device: str | None = None) -> np.ndarray:
    """Embed concepts in the archive's space: an existing image file path is an image, anything else text
    (refused before any work when the archive's encoder has no text tower: :func:`need_text_tower`)."""
    from semzip.data.images import IMAGE_EXTENSIONS, load_image

    enc = _archive_encoder(archive, device)
    is_image = [Path(c).suffix.lower() in IMAGE_EXTENSIONS and Path(c).is_file() for c in concepts]
    if not all(is_image):
        need_text_tower(enc)
    rows = []
    for c, image in zip(concepts, is_image):
        if image:
            rows.append(enc.encode_images([load_image(Path(c))])[0])
        else:
            rows.append(enc.encode_text([c])[0])
    return np.stack(rows)


def blend_item(archive: PathLike, item: str, add: Sequence[str] = (), remove: Sequence[str] = (),
               weight: float = 0.5, device: str | None = None) -> np.ndarray:
    """An item's decoded embedding with concepts added (+weight) or removed (-weight), renormalised."""
    from semzip.query.semantics import blend

    x = decompress(archive, items=[item])[0]
    concepts = list(add) + list(remove)
    if not concepts:
        raise InvalidInputError("give at least one concept to --add or --remove")
    emb = embed_concepts(archive, concepts, device)
    weights = [weight] * len(add) + [-weight] * len(remove)
    return blend(x, list(zip(emb, weights)))


def atom_concepts(archive: PathLike, vocabulary: Sequence[str], top_k: int = 5,
                  device: str | None = None) -> list[list[tuple[str, float]]]:
    """The vocabulary words nearest to each dictionary atom (the "dictionary is semantic" probe)."""
    from semzip.query.semantics import nearest_concepts

    with open_archive(archive) as c:
        if c.header.codec != "collection":
            raise InvalidInputError(f"{archive} is a {c.header.codec!r} archive: only collection archives have atoms")
        atoms, _ = get_codec("collection").from_header(c.header).load_state(c)
    words = [w.strip() for w in vocabulary if w.strip()]
    enc = _archive_encoder(archive, device)
    need_text_tower(enc, image_queries=False)
    emb = enc.encode_text(words)
    return nearest_concepts(atoms, emb, words, top_k)


# ----------------------------------------------------------------------------------------------- image-text


def image_text_codec(lic: str, language: str, scale: float = 0.5, caption_codec: int = 2, kernel: str | None = None,
                      adapter: PathLike | None = None):
    from semzip.codecs.image_text import ImageTextCodec
    from semzip.models.lic import load_lic

    return ImageTextCodec(load_lic(lic), caption_coder(language, caption_codec, kernel, adapter), scale=scale)


def caption_coder(language: str = "smollm2-135m", codec: int = 2, kernel: str | None = None,
                  adapter: PathLike | None = None):
    """The caption coder for text ``codec`` 2 (integer model; ``kernel`` numpy, torch or cuda: same bytes) or
    1 (the float model of older files). ``adapter``: a file made by ``semzip text train`` (codec 2 only),
    folded exactly into the model; decoding needs the same file."""
    if codec == 1:
        if adapter is not None:
            raise InvalidInputError("text codec 1 (the float model) has no adapters; drop the adapter")
        from semzip.codecs.text import TextCoder
        from semzip.models.language import load_language_model

        return TextCoder(load_language_model(language))
    from semzip.codecs.text import IntTextCoder
    from semzip.models.intlm import load_int_language_model

    return IntTextCoder(load_int_language_model(language, kernel=kernel, adapter=adapter))


def compress_image_text(
    source: PathLike,
    output: PathLike,
    captions: str | None = None,
    captioner: str | None = None,
    max_words: int | None = None,
    lic: str = "tiny",
    language: str = "smollm2-135m",
    scale: float = 0.25,
    strict: bool = False,
    recursive: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    refiner: str = "identity",
    seed: int = 0,
    steps: int | None = None,
    strength: float | None = None,
    guidance: float | None = None,
    caption_adapter: PathLike | None = None,
    device: str | None = None,
) -> tuple[int, list[str]]:
    """Code one image or a folder of images with the image-text codec; returns (bytes, item names).

    Captions come from ``captioner`` (a registry spec, e.g. ``hf:/models/blip``) or, offline, from
    ``captions`` (a CSV image,caption or a folder of <stem>.txt) or <stem>.txt files beside the images.
    The decoding settings (refiner, seed, steps, strength, guidance) are recorded in the header and used by
    :func:`decompress_image_text` unless it is given others, so decoding is repeatable. ``progress(1)`` after
    each caption and each image coded (two steps per item).
    """
    from semzip.data.folders import folder_files
    from semzip.data.images import iter_images
    from semzip.models.registry import load_captioner

    src = Path(source)
    if src.is_dir():
        paths, _ = folder_files(src, recursive, strict, on_skip)
        root = src
    elif src.is_file():
        paths, root = [src], src.parent
    else:
        raise InvalidInputError(f"no such image or folder: {src}")

    def skip(p: Path, why: str) -> None:
        if on_skip:
            on_skip(p.relative_to(root).as_posix(), why)

    check_refiner_settings(refiner, steps, strength, guidance)  # recorded for decoding: refused now, not then
    cap_spec = captioner or (f"sidecar:{captions}" if captions else "sidecar")
    cap_kw = device_kw("captioner", cap_spec, device)  # --device is where the captioner runs: checked now
    loaded = list(iter_images(paths, strict=strict, on_skip=skip))
    if not loaded:
        raise InvalidInputError(f"no readable images in {src}")
    cap = load_captioner(cap_spec, **cap_kw)
    if caption_adapter is not None:  # checked before captioning and coding
        from semzip.models.intlm.adapter import load_adapter

        caption_adapter = load_adapter(caption_adapter)
    codec = image_text_codec(lic, language, scale, adapter=caption_adapter)  # models load before captioning
    texts = cap.caption([a for _, a in loaded], max_words=max_words, names=[str(p) for p, _ in loaded])
    names = [p.relative_to(root).as_posix() for p, _ in loaded]
    from semzip.models.registry import (
        portable_spec,  # archives record model names, never paths (docs/models.md)
    )

    decode_settings = {"spec": portable_spec(refiner), "seed": seed, "steps": steps, "strength": strength,
                       "guidance": guidance}
    enc = codec.compress([a for _, a in loaded], texts, names=names, progress=progress, refiner_params=decode_settings)
    enc.header.params.update(captioner=portable_spec(cap.name), lic_spec=portable_spec(lic),
                             language_spec=portable_spec(language))
    return write(output, enc.header, enc.blobs, enc.blocks, enc.names), names


def check_refiner_settings(refiner: str | None, steps: int | None = None, strength: float | None = None,
                           guidance: float | None = None) -> None:
    """Refuse a refiner spec of no known kind, or settings no refiner accepts, without loading any model
    (compress records them for decoding, which may happen on another machine)."""
    from semzip.models.registry import check_refiner_spec

    check_refiner_spec(refiner)
    if steps is not None and steps < 1:
        raise InvalidInputError(f"--steps must be at least 1, got {steps}")
    if strength is not None and not 0.0 < strength <= 1.0:
        raise InvalidInputError(f"--strength must lie in (0, 1], got {strength}")
    if guidance is not None and guidance < 0:
        raise InvalidInputError(f"guidance must be non-negative, got {guidance}")


def decompress_image_text(
    archive: PathLike,
    out_dir: PathLike,
    items: Sequence[str | int] | None = None,
    refiner: str | None = None,
    lic: str | None = None,
    language: str | None = None,
    seed: int | None = None,
    steps: int | None = None,
    strength: float | None = None,
    guidance: float | None = None,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
    caption_adapter: PathLike | None = None,
    device: str | None = None,
    originals: PathLike | None = None,
    note: Callable[[str], None] | None = None,
) -> list[Path]:
    """Decode LIC images and captions, refine them (identity offline), write PNGs, captions.txt, a sheet.
    An archive whose captions were coded with an adapter needs the same ``caption_adapter`` file;
    ``originals`` adds originals_vs_decoded.png (see :func:`decompress_images`).

    ``progress(1)`` after each caption, each image and each refined image (three steps per item). Refiner
    settings left as None are taken from the archive header (what the encoder recorded). File names
    and the output folder follow the rules of :func:`decompress_images`.
    """
    from semzip.data.images import save_png
    from semzip.models.registry import load_refiner

    with open_archive(archive) as c:
        h = c.header
        if h.codec != "image-text":
            raise InvalidInputError(f"{archive} is a {h.codec!r} archive, not image-text")
        from semzip.codecs.image_text import caption_codec

        numbers = None if items is None else [_item_number(c, i) for i in items]
        every = list(range(h.n_items)) if numbers is None else numbers
        files = _output_files(c, every)
        names = [c.names[i] for i in every]
        rec = h.params.get("refiner") or {}
        refiner = refiner or rec.get("spec") or "identity"
        seed = int(rec.get("seed") or 0) if seed is None else seed
        steps = rec.get("steps") if steps is None else steps
        strength = rec.get("strength") if strength is None else strength
        guidance = rec.get("guidance") if guidance is None else guidance
        check_refiner_settings(refiner, steps, strength, guidance)  # refused before any model loads or decodes
        ref = load_refiner(refiner, **device_kw("refiner", refiner, device))
        ref.params(seed=seed, steps=steps, strength=strength, guidance=guidance)
        found = _load_originals(originals, names, note)
        codec = image_text_codec(lic or h.params.get("lic_spec", "tiny"),
                                  language or h.params.get("language_spec", "smollm2-135m"), float(h.params["scale"]),
                                  caption_codec(h), adapter=caption_adapter)
        decoded = codec.decode_items(c, numbers, progress)
    written, finals = [], []
    with output_folder(out_dir, force, inputs=[Path(archive)], will_write=[*files, *RESERVED_FILES]) as out:
        for number, file, d in zip(every, files, decoded):  # seeds follow the item number, as for collections
            img = ref.refine([d.image], [d.caption], seed=seed + number, steps=steps, strength=strength,
                             guidance=guidance)[0]
            if len(finals) < SHEET_ITEMS:
                finals.append(img)
            written.append(Path(out_dir) / save_png(img, out / file).name)
            if progress is not None:
                progress(1)
        atomic_write(out / "captions.txt", "".join(f"{n}\t{' '.join(d.caption.split())}\n"
                                                    for n, d in zip(names, decoded)).encode())
        params = ref.params(seed=seed, steps=steps, strength=strength, guidance=guidance)
        atomic_write(out / "generation.json", json.dumps({"archive": str(archive), **params}, indent=2).encode())
        _write_sheets(out, finals, names, found)
    return written


# ----------------------------------------------------------------------------------------------- portability


@functools.lru_cache(maxsize=4)
def _digest_coder(language: str, codec: int, adapter: str | None):
    """Caption coders reused across :func:`decode_digest` calls of one process (a model loads once)."""
    return caption_coder(language, codec, adapter=adapter)


def decode_digest(path: PathLike, language: str | None = None, adapter: PathLike | None = None) -> dict:
    """SHA-256 digests of everything a file decodes to before any float synthesis: caption texts (``.smzc``),
    entropy-decoded integers and embeddings (collection, sq), captions and LIC integers up to ``y_hat``
    (image-text). Two machines that print the same digest decoded the file identically.
    """
    import hashlib

    from semzip.format.compact import is_compact, read_header

    def sha(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()

    p = Path(path)
    data = p.read_bytes()
    if is_compact(data):
        header = read_header(data)
        coder = _digest_coder(language or "smollm2-135m", header.codec, None if adapter is None else str(adapter))
        (text,) = coder.decode_files([data])
        if isinstance(text, Exception):
            raise text
        return {"kind": "captions", "codec": header.codec, "text_sha256": sha(text.encode("utf-8")),
                "chars": len(text)}
    c = Container.from_bytes(data)
    h = c.header
    if h.codec == "image-text":
        from semzip.codecs.image_text import caption_checked, caption_codec, unpack_item
        from semzip.models.lic import LICShape

        codec = image_text_codec(h.params.get("lic_spec", "tiny"), language or h.params.get("language_spec",
                                  "smollm2-135m"), float(h.params["scale"]), caption_codec(h), adapter=adapter)
        codec.check_models(h)
        lic = codec.lic
        items = [unpack_item(c.block(c.locate(i)[0])) for i in range(h.n_items)]
        texts = codec._decode_captions([f for _, _, f in items], caption_checked(h), list(range(h.n_items)))
        lic_digests = []
        for shape_bytes, streams, _ in items:
            if not hasattr(lic, "decode_integers"):
                raise InvalidInputError(f"{p}: its LIC ({lic.name}) has no integer decode to digest")
            lic_digests.append(lic.decode_integers(streams, LICShape.from_bytes(shape_bytes)).digest())
        return {"kind": "image-text", "caption_codec": caption_codec(h),
                "captions_sha256": sha("\n".join(texts).encode("utf-8")),
                "lic_sha256": sha(json.dumps(lic_digests, sort_keys=True).encode())}
    codec = get_codec(h.codec).from_header(h)
    if h.codec == "sq":
        from semzip.entropy import CategoricalModel, decode_symbols

        model = CategoricalModel.from_bytes(c.read("model"))
        d = int(h.params["dim"])
        ints = np.concatenate([decode_symbols(blob, model, b.n_items * d) for b, blob in c.iter_blocks()])
    elif h.codec == "collection":
        codes = codec.decode_codes(c)
        ints = np.concatenate([codes.counts, codes.first, codes.sign, codes.rest, codes.ratios])
    else:
        raise InvalidInputError(f"{p}: no decode digest for {h.codec!r} archives")
    emb = np.ascontiguousarray(codec.decompress(c), dtype=np.float32)
    return {"kind": h.codec, "codes_sha256": sha(ints.astype("<i8").tobytes()),
            "embeddings_sha256": sha(emb.astype("<f4").tobytes()), "shape": list(emb.shape)}
