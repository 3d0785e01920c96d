"""The Python API behind the CLI: compress, decompress and describe archives."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from semzip.archive import Archive, open_archive
from semzip.archive.decoders import (  # re-exported: the API's names for them
    check_refiner_settings,
    default_generator,
    device_kw,
    need_text_tower,
)
from semzip.archive.digest import caption_file_digest
from semzip.archive.render import COMPARISON_SHEET, SHEET_ITEMS
from semzip.codecs.base import get_codec
from semzip.codecs.image_text import caption_coder
from semzip.data.folders import EmbeddedFolder, embed_folder
from semzip.errors import InvalidInputError, UnsupportedVersionError
from semzip.format import WRITABLE_VERSIONS, ModelRef, atomic_write, pack, write

__all__ = [
    "COMPARISON_SHEET", "SHEET_ITEMS", "Archive", "add_embeddings", "add_folder", "atom_concepts",
    "blend_item", "caption_coder", "check_refiner_settings", "compress_embeddings", "compress_folder",
    "compress_image_text", "decode_check", "decode_digest", "decompress", "decompress_image_text",
    "decompress_images", "default_generator", "describe", "device_kw", "embed_concepts", "encoder_ref",
    "image_text_codec", "need_text_tower", "open_archive",
]

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
    cls = get_codec(codec)
    if cls.decodes_to != "embeddings":
        raise InvalidInputError(f"the {codec} codec codes images, not embeddings")
    enc = cls(**params).compress(x, names=names, progress=progress)
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
    with open_archive(archive) as a:
        c = a.container
        if c.format_version not in WRITABLE_VERSIONS:
            raise UnsupportedVersionError(
                f"{archive} is container format {c.format_version[0]}.{c.format_version[1]}; this semzip writes "
                f"{', '.join(f'{a}.{b}' for a, b in WRITABLE_VERSIONS)} only and would lose what a newer writer "
                "stored: upgrade semzip to add items to it")
        if a.decodes_to != "embeddings" or not hasattr(a.codec, "encode_more"):
            raise InvalidInputError(f"the {a.codec_name!r} codec cannot add items to an existing archive")
        a.embeddings()  # the whole archive decodes, or it is refused before anything is written
        codec = a.codec
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
    """Decode an archive's embeddings; ``items`` (names or numbers) restricts decoding to those items' blocks
    (:meth:`Archive.embeddings`).

    The header, sections and item names are checked first (:func:`semzip.archive.open_archive`), as by every
    command, so an archive that decodes here decodes the same way in ``decompress`` and ``verify --deep``.
    """
    with open_archive(archive) as a:
        return a.embeddings(items)


def decode_check(archive: PathLike, caption_adapter: PathLike | None = None, device: str | None = None) -> int:
    """Decode every item of an archive the way ``decompress`` does, without writing anything; returns the
    number of items (``semzip verify --deep``; :meth:`Archive.decode_all`). ``device``: where an image-text
    archive's refiner runs (see :func:`device_kw`); collections and sq archives decode to embeddings, where no
    model runs."""
    with open_archive(archive, adapter=caption_adapter) as a:
        return a.decode_all(device)


def describe(archive: PathLike) -> dict:
    """Header, per-section sizes and real bits per item (the whole file counted) of an archive."""
    with open_archive(archive) as a:
        return a.describe()


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
    with open_archive(archive) as a:
        if a.header.model("encoder") is None:
            raise InvalidInputError("the archive records no image encoder; add precomputed embeddings instead")
        enc = a.encoder(device, "new items would live in another embedding space")
    got = embed_folder(folder, enc, strict=strict, recursive=recursive, on_skip=on_skip)
    return add_embeddings(archive, got.embeddings, names=got.names, progress=progress), got


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
    """Decode embeddings and render them to PNGs (one per item) plus contact_sheet.png in ``out_dir``
    (:meth:`Archive.render`).

    ``originals``: the folder the archive was made from; then the contact sheet shows each decode at its
    original's aspect ratio (the generators render every item at one size) and originals_vs_decoded.png puts
    originals and decodes side by side, in the same order (``note`` hears of items without an original).

    File names follow :func:`semzip.format.names.output_files` (collision-free). ``out_dir`` must not exist
    or be empty unless ``force``; a new one appears only complete (see :func:`semzip.outputs.output_folder`).
    """
    with open_archive(archive) as a:
        return a.render(out_dir, items, generator=generator, seed=seed, steps=steps, guidance=guidance, size=size,
                        progress=progress, batch_size=batch_size, force=force, device=device,
                        originals=originals, note=note)


# ----------------------------------------------------------------------------------------------- semantics


def embed_concepts(archive: PathLike, concepts: Sequence[str], device: str | None = None) -> np.ndarray:
    """Embed concepts in the archive's space: an existing image file path is an image, anything else text
    (refused before any work when the archive's encoder has no text tower: :func:`need_text_tower`)."""
    with open_archive(archive) as a:
        return a.embed_concepts(concepts, device)


def blend_item(archive: PathLike, item: str, add: Sequence[str] = (), remove: Sequence[str] = (),
               weight: float = 0.5, device: str | None = None) -> np.ndarray:
    """An item's decoded embedding with concepts added (+weight) or removed (-weight), renormalised."""
    from semzip.query.semantics import blend

    concepts = list(add) + list(remove)
    if not concepts:
        raise InvalidInputError("give at least one concept to --add or --remove")
    with open_archive(archive) as a:
        x = a.embeddings([item])[0]
        emb = a.embed_concepts(concepts, device)
    weights = [weight] * len(add) + [-weight] * len(remove)
    return blend(x, list(zip(emb, weights)))


def atom_concepts(archive: PathLike, vocabulary: Sequence[str], top_k: int = 5,
                  device: str | None = None) -> list[list[tuple[str, float]]]:
    """The vocabulary words nearest to each dictionary atom (the "dictionary is semantic" probe)."""
    from semzip.query.semantics import nearest_concepts

    words = [w.strip() for w in vocabulary if w.strip()]
    with open_archive(archive) as a:
        atoms = a.atoms()
        enc = a.encoder(device)
    need_text_tower(enc, image_queries=False)
    emb = enc.encode_text(words)
    return nearest_concepts(atoms, emb, words, top_k)


# ----------------------------------------------------------------------------------------------- image-text


def image_text_codec(lic: str, language: str, scale: float = 0.5, caption_codec: int = 2, kernel: str | None = None,
                     adapter: PathLike | None = None):
    """The image-text codec with the LIC ``lic`` and a caption coder for ``language``
    (:meth:`ImageTextCodec.create`; :func:`caption_coder` says what the other arguments do)."""
    from semzip.codecs.image_text import ImageTextCodec

    return ImageTextCodec.create(lic, language, scale, caption_codec, kernel=kernel, adapter=adapter)


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
    decode_settings = {"spec": refiner, "seed": seed, "steps": steps, "strength": strength, "guidance": guidance}
    enc = codec.compress([a for _, a in loaded], texts, names=names, progress=progress, refiner_params=decode_settings,
                         captioner=cap.name)
    return write(output, enc.header, enc.blobs, enc.blocks, enc.names), names


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
    with open_archive(archive, lic=lic, language=language, adapter=caption_adapter) as a:
        return a.refine(out_dir, items, refiner=refiner, seed=seed, steps=steps, strength=strength,
                        guidance=guidance, progress=progress, force=force, device=device, originals=originals,
                        note=note)


# ----------------------------------------------------------------------------------------------- portability


def decode_digest(path: PathLike, language: str | None = None, adapter: PathLike | None = None) -> dict:
    """SHA-256 digests of everything a file decodes to before any float synthesis: caption texts (``.smzc``),
    entropy-decoded integers and embeddings (collection, sq), captions and LIC integers up to ``y_hat``
    (image-text): :mod:`semzip.archive.digest`. Two machines that print the same digest decoded the file
    identically. ``language`` and ``adapter``: the caption model, when not the recorded one.
    """
    from semzip.format.compact import is_compact

    p = Path(path)
    if p.is_file():
        with open(p, "rb") as fh:
            head = fh.read(1)
        if is_compact(head):
            return caption_file_digest(p.read_bytes(), language, None if adapter is None else str(adapter))
    with open_archive(path, language=language, adapter=adapter) as a:
        return a.digest()
