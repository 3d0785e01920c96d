"""Crafted archives: valid CRCs, hostile or inconsistent content, per codec and per field.

Random damage is caught by the checksums; these files are what a malicious producer, a buggy writer or a
future version could write: every CRC is recomputed, only the meaning lies. From a small valid archive of each
codec (sq, collection, image-text) the generator derives one file per (field, variant):

* every header parameter of the codec's schema (``semzip.format.schema``), set to each value its kind refuses
  (wrong type, out of bounds, NaN/infinite, control characters, unknown enumeration member), and deleted;
* values inside the bounds that contradict the stored tables or sections (bits, dims, atom counts, steps);
* the generic header fields (codec, item count, models, writer), the format version (older, later minor with
  and without unknown fields, other major), the sections (dropped, renamed, retyped, repeated, unknown, out of
  order) and the index (blocks swapped, dropped, miscounted);
* the item names (NUL, newline, escapes, ``.``/``..``, absolute, empty parts, over 255 bytes, duplicates,
  invalid UTF-8, a zip bomb, too few/many, swapped).

The seeds already hold the names that are valid but easy to get wrong (markup such as ``car [red].png`` and
``[/x]``, ``photo.jpg`` next to ``photo.png`` and ``Photo.JPG``, sub-folders, a backslash, a reserved output
name), so every crafted file that keeps them checks the output-name mapping as well.

Each file is run through the command line, in process (``info``, ``verify``, ``verify --deep``,
``decompress``, and ``add`` for collections) and its outcome counted: *refused* (one error line, exit 2 /
verify exit 1 or 2, nothing written, the archive untouched), *decoded identically* to the seed (same output bytes
and file names), or *decoded differently*. Every craft states the outcome it must have; the only expected
"differently" outcomes are lies no checksum can tell (two blocks of the same size swapped, two names
swapped, a dropped names section or last block with the header made consistent, a flipped sq ``normalize``,
the same weight alphabet on another scale): they are listed in ``UNDETECTABLE`` with the reason.

``tests/test_crafted.py`` runs the whole set and asserts every outcome; ``benchmarks/reliability.py``
reports the counts (docs/format.md, "Header schema").
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# valid names that are easy to get wrong: markup, same stem, case, sub-folders, a reserved output name
TRICKY_NAMES = ["car [red].png", "[/x]", "photo.jpg", "photo.png", "Photo.JPG", "2024/beach.jpg",
                "2024__beach.jpg", "a\\b.png", "captions.png", "\u00e9t\u00e9 [bold]x[/bold].webp",
                "contact_sheet.jpg", "z.tar.gz"]

UNDETECTABLE = {
    "index: two blocks of the same item count swapped": "each block keeps its own valid CRC and nothing ties a "
    "block to its position",
    "names: two names swapped": "the names section is one CRC-checked list; which name belongs to which item is "
    "what it says",
    "names: section dropped, items get default names": "an archive without names is valid (its items are "
    "item_00000, ...); only the file names change",
    "index: last block dropped, header consistent": "a consistent, smaller archive",
    "index: first block claims one item fewer": "collection blocks of a few bytes: decoding one item fewer leaves "
    "too little behind for the entropy decoder's end check to see (sq blocks are refused by it)",
    "params.normalize: flipped": "whether decoded sq embeddings are rescaled to unit length is what the header "
    "says",
    "params.weight_clip: doubled, weight_step doubled": "the same number of weight levels, so the same table "
    "size, with other weights",
}


RENDER_REFUSED = {"params.space"}  # valid archives whose images need a --generator (their embeddings decode)


@dataclass
class Parts:
    """An archive split into its fields: version, header JSON, sections (type, name, payload)."""

    version: tuple[int, int]
    meta: dict
    sections: list[list]  # [type, name(str), payload(bytes)]
    listing: list | None = None  # the header's section list, when it must lie

    def section(self, name: str) -> list:
        return next(s for s in self.sections if s[1] == name)

    def has(self, name: str) -> bool:
        return any(s[1] == name for s in self.sections)


def split(data: bytes) -> Parts:
    from semzip.format.varint import decode_uvarint

    version = (data[4], data[5])
    pos, records = 6, []
    while pos < len(data):
        stype, nlen = data[pos], data[pos + 1]
        name = data[pos + 2 : pos + 2 + nlen].decode("ascii")
        length, p = decode_uvarint(data, pos + 2 + nlen)
        records.append([stype, name, data[p : p + length]])
        pos = p + length + 4
    meta = json.loads(records[0][2])
    return Parts(version, meta, records[1:])


def _record(stype: int, name: bytes, payload: bytes, prefix: bytes = b"") -> bytes:
    from semzip.format.varint import encode_uvarint

    body = bytes([stype, len(name)]) + name + encode_uvarint(len(payload)) + payload
    return body + (zlib.crc32(prefix + body) & 0xFFFFFFFF).to_bytes(4, "little")


def join(parts: Parts) -> bytes:
    """Serialise with every CRC valid (no writer-side checks: names, JSON and sections are written as given)."""
    from semzip.format import MAGIC

    pre = MAGIC + bytes(parts.version)
    meta = dict(parts.meta)
    meta["sections"] = parts.listing if parts.listing is not None else [[t, n] for t, n, _ in parts.sections]
    head = json.dumps(meta).encode("utf-8")  # NaN/Infinity allowed here: a hostile writer may emit them
    out = [pre, _record(1, b"header", head, pre)]
    out += [_record(t, n.encode("latin-1"), p) for t, n, p in parts.sections]
    return b"".join(out)


def _blocks(parts: Parts) -> list[tuple[int, bytes]]:
    from semzip.format.varint import decode_uvarint

    index, items = parts.section("index")[2], parts.section("items")[2]
    n, p = decode_uvarint(index, 0)
    out, off = [], 0
    for _ in range(n):
        k, p = decode_uvarint(index, p)
        ln, p = decode_uvarint(index, p)
        p += 4
        out.append((k, items[off : off + ln]))
        off += ln
    return out


def _set_blocks(parts: Parts, blocks: list[tuple[int, bytes]], n_items: int | None = None) -> None:
    from semzip.format.container import _pack_index

    parts.section("index")[2] = _pack_index(blocks)
    parts.section("items")[2] = b"".join(b for _, b in blocks)
    parts.meta["n_items"] = sum(k for k, _ in blocks) if n_items is None else n_items


def _names(parts: Parts) -> list[str]:
    return zlib.decompress(parts.section("names")[2]).decode("utf-8").split("\n")


def _set_names(parts: Parts, names: list[str] | bytes) -> None:
    raw = names if isinstance(names, bytes) else "\n".join(names).encode("utf-8", "surrogatepass")
    parts.section("names")[2] = zlib.compress(raw, 9)


# ------------------------------------------------------------------------------------------- seeds


class _StubText:
    """The caption coder stand-in: caption bytes pass through (an LM decode costs seconds per file)."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.lm = SimpleNamespace(name="stub-lm", fingerprint="0123456789abcdef")
        self.prompt = "stub prompt"
        self.codec_id = 2

    def compress_many(self, texts, progress=None) -> list[bytes]:
        return [t.encode("utf-8") for t in texts]

    def decompress_many(self, payloads, progress=None, errors: bool = False) -> list:
        return [p.decode("utf-8", "replace") for p in payloads]


_LICS: dict = {}


def stub_image_text_codec(lic: str, language: str, scale: float = 0.5, caption_codec: int = 2, kernel=None,
                          adapter=None, **_):
    """What ``ImageTextCodec.create`` builds, with the stub caption coder (the LIC is real; no caption
    adapter: an archive that names one is refused)."""
    from semzip.codecs.image_text import ImageTextCodec
    from semzip.models.lic import load_lic

    if lic not in _LICS:
        _LICS[lic] = load_lic(lic)
    return ImageTextCodec(_LICS[lic], _StubText(), scale=scale)


def _embeddings(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_seeds(tmp: Path) -> dict[str, bytes]:
    """One small valid archive per codec (format 1.1), all items named with ``TRICKY_NAMES``."""
    from semzip.api import compress_embeddings
    from semzip.format import pack
    from semzip.models.thumbnail import ThumbnailEncoder

    names = TRICKY_NAMES
    seeds = {}
    compress_embeddings(_embeddings(len(names), 8, 0), tmp / "sq.smz", codec="sq", names=names, block_size=4)
    seeds["sq"] = (tmp / "sq.smz").read_bytes()
    enc = ThumbnailEncoder(8)
    x = _embeddings(len(names), enc.dim, 1)
    compress_embeddings(x, tmp / "collection.smz", codec="collection", names=names, n_atoms=6, sparsity=2,
                        max_epochs=1, block_size=4, space=enc.space)
    seeds["collection"] = (tmp / "collection.smz").read_bytes()
    codec = stub_image_text_codec("tiny", "stub")
    rng = np.random.default_rng(2)
    images = [(rng.random((16, 24, 3)) * 255).astype(np.uint8), np.full((16, 16, 3), 90, np.uint8),
              (rng.random((16, 16, 3)) * 255).astype(np.uint8)]
    enc_it = codec.compress(images, ["a red car", "", "two [bold]cats[/bold]"], names=names[:3])
    enc_it.header.params.update(lic_spec="tiny", language_spec="stub")
    seeds["image-text"] = pack(enc_it.header, enc_it.blobs, enc_it.blocks, enc_it.names)
    return seeds


# ------------------------------------------------------------------------------------------- crafts


@dataclass
class Craft:
    codec: str
    field: str
    variant: str
    data: bytes
    expect: str  # "refused" | "identical" | "different"

    @property
    def label(self) -> str:
        return f"{self.field}: {self.variant}"


def _bad_values(kind) -> list:
    """Values the schema kind refuses (each is a JSON value)."""
    from semzip.format import schema as s

    if isinstance(kind, s.Maybe):
        return [v for v in _bad_values(kind.inner) if v is not None]
    if isinstance(kind, s.Int):
        return [kind.lo - 1, kind.hi + 1, kind.lo + 0.5, str(kind.lo), True, None, [kind.lo]]
    if isinstance(kind, s.Num):
        low = kind.lo if kind.open_lo else kind.lo - max(abs(kind.lo), 1.0)
        return [low, kind.hi * 2 if kind.hi else 1.0, float("nan"), float("inf"), -float("inf"), "0.5", None, True]
    if isinstance(kind, s.Text):
        bad = [123, None, ["a"], "a\x00b", "[/x]\x1b[31m", "x" * (kind.max_len + 1)]
        return bad + ([""] if kind.min_len else [])
    if isinstance(kind, s.Hex):
        return ["z" * kind.length, "a" * (kind.length - 1), 7, None]
    if isinstance(kind, s.OneOf):
        return ["[/x]", None, 99, *(str(v) for v in kind.values if not isinstance(v, str)),
                *(v.upper() + "x" for v in kind.values if isinstance(v, str))]
    if isinstance(kind, s.Record):
        return ["x", [], None, 5]
    raise TypeError(kind)


def _field_crafts(codec: str, seed: Parts) -> Iterator[tuple[str, str, Callable[[Parts], None], str]]:
    """Every parameter of the codec's schema: each refused value and deletion (nested records too)."""
    from semzip.format.schema import Record, schema_for

    schema, _ = schema_for(codec, seed.version)

    def walk(rec: Record, path: tuple[str, ...], present: dict):
        for key, kind in rec.fields.items():
            where = ".".join(("params", *path, key))
            full = (*path, key)
            if key not in present:
                continue  # optional fields the seed does not hold: their values are covered where they are
            for v in _bad_values(kind):
                yield where, f"= {json.dumps(v)[:40]}", _setter(full, v), "refused"
            required = key in rec.required
            yield where, "deleted", _deleter(full), "refused" if required else "identical"
            if isinstance(kind, Record):
                yield from walk(kind, full, present[key])

    yield from walk(schema.params, (), seed.meta["params"])


def _setter(path: tuple[str, ...], value) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        d = p.meta["params"]
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


def _deleter(path: tuple[str, ...]) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        d = p.meta["params"]
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return edit


def _meta(key: str, value) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        p.meta[key] = value
    return edit


def _param(**kv) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        p.meta["params"].update(kv)
    return edit


def _scaled(key: str, factor: float) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        p.meta["params"][key] = p.meta["params"][key] * factor
    return edit


def _plus(key: str, delta: int) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        p.meta["params"][key] = p.meta["params"][key] + delta
    return edit


def _version(v: tuple[int, int], extra_param: bool = False, extra_blob: bool = False) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        p.version = v
        if extra_param:
            p.meta["params"]["from_the_future"] = {"x": [1, 2]}
        if extra_blob:
            p.sections.insert(0, [2, "future", b"\x00" * 8])
    return edit


def _names_edit(fn: Callable[[list[str]], list[str] | bytes]) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        _set_names(p, fn(_names(p)))
    return edit


def _replace_name(i: int, new: str) -> Callable[[list[str]], list[str]]:
    return lambda ns: ns[:i] + [new] + ns[i + 1 :]


def _swap_names(ns: list[str]) -> list[str]:
    return [ns[1], ns[0], *ns[2:]]


def _drop_section(name: str) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        p.sections = [s for s in p.sections if s[1] != name]
    return edit


def _rename_section(name: str, new: str) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        p.section(name)[1] = new
    return edit


def _retype_section(name: str) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        s = p.section(name)
        s[0] = 3 if s[0] != 3 else 2  # BLOB (2) <-> INDEX (3)
    return edit


def _repeat_section(name: str) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        p.sections.append(list(p.section(name)))
    return edit


def _extra_section(p: Parts) -> None:
    p.sections.insert(0, [2, "extra", b"hello"])


def _reverse_sections(p: Parts) -> None:
    p.sections.reverse()


def _listing_lies(p: Parts) -> None:
    p.listing = [[t, n] for t, n, _ in p.sections][:-1]


def _swap_same_blocks(p: Parts) -> None:
    b = _blocks(p)
    i = next(i for i in range(len(b) - 1) if b[i][0] == b[i + 1][0])
    b[i], b[i + 1] = b[i + 1], b[i]
    _set_blocks(p, b)


def _drop_last_block(p: Parts) -> None:
    b = _blocks(p)
    _set_blocks(p, b[:-1])
    if p.has("names"):
        _set_names(p, _names(p)[: p.meta["n_items"]])


def _block_count(delta: int) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        b = _blocks(p)
        b[0] = (b[0][0] + delta, b[0][1])
        _set_blocks(p, b)
        if p.has("names"):
            ns = _names(p)
            _set_names(p, ns + [f"extra{i}" for i in range(delta)] if delta > 0 else ns[:delta])
    return edit


def _blocks_merged(p: Parts) -> None:
    b = _blocks(p)
    _set_blocks(p, [(b[0][0] + b[1][0], b[0][1] + b[1][1]), *b[2:]])


def _models(fn: Callable[[list], list]) -> Callable[[Parts], None]:
    def edit(p: Parts) -> None:
        p.meta["models"] = fn(copy.deepcopy(p.meta["models"]))
    return edit


def _generic(codec: str, seed: Parts) -> Iterator[tuple[str, str, Callable[[Parts], None], str]]:
    n = seed.meta["n_items"]
    folder = codec != "sq"  # sq decodes to .npy (no names in the output), the others to a folder of files
    for other in ("sq", "collection", "image-text", "text", "[/x]", "", "SQ"):
        if other != codec:
            yield "codec", repr(other), _meta("codec", other), "refused"
    yield "codec", "a number", _meta("codec", 5), "refused"
    for v in (n + 1, n - 1, 0, 2**31, -1, 1e300, "3"):
        yield "n_items", repr(v), _meta("n_items", v), "refused"
    yield "writer", "markup [bold red]x[/]", _meta("writer", "semzip [bold red]x[/]"), "identical"
    yield "writer", "terminal escape", _meta("writer", "\x1b]0;owned\x07"), "refused"
    yield "writer", "300 characters", _meta("writer", "w" * 300), "refused"
    yield "models", "unknown role", _models(lambda m: m + [{"role": "evil", "name": "x", "fingerprint": "00"}]), \
        "refused"
    yield "models", "not a list", _meta("models", {"role": "lic"}), "refused"
    if codec == "collection":
        enc = {"role": "encoder", "name": "[/x] car [red]", "fingerprint": "[bold]0[/bold]"}
        yield "models", "encoder with markup name", _models(lambda m: m + [enc]), "identical"
        yield "models", "two encoders", _models(lambda m: m + [enc, enc]), "refused"
        yield "models", "encoder name with NUL", _models(lambda m: m + [{**enc, "name": "a\x00"}]), "refused"
    if codec == "image-text":
        for role in ("lic", "language"):
            yield "models", f"{role} dropped", _models(lambda m, r=role: [x for x in m if x["role"] != r]), "refused"
            yield "models", f"{role} fingerprint changed", _models(
                lambda m, r=role: [{**x, "fingerprint": "f" * 16} if x["role"] == r else x for x in m]), "refused"
            yield "models", f"{role} twice", _models(lambda m, r=role: m + [x for x in m if x["role"] == r]), "refused"
    yield "format version", "1.0", _version((1, 0)), "identical"
    yield "format version", "1.2 (a later minor)", _version((1, 2)), "identical"
    yield "format version", "1.2 with an unknown field", _version((1, 2), extra_param=True), "identical"
    yield "format version", "1.2 with an unknown blob", _version((1, 2), extra_blob=True), "identical"
    yield "format version", "1.1 with an unknown field", _version((1, 1), extra_param=True), "refused"
    yield "format version", "2.0", _version((2, 0)), "refused"
    yield "format version", "0.9", _version((0, 9)), "refused"
    for s in seed.sections:
        name = s[1]
        if name == "names":
            yield "names", "section dropped, items get default names", _drop_section(name), \
                "different" if folder else "identical"
        else:
            yield "sections", f"{name} dropped", _drop_section(name), "refused"
        yield "sections", f"{name} renamed", _rename_section(name, name + "x"), "refused"
        yield "sections", f"{name} retyped", _retype_section(name), "refused"
        yield "sections", f"{name} repeated", _repeat_section(name), "refused"
        yield "sections", f"{name} renamed with markup", _rename_section(name, "[/x]"), "refused"
    yield "sections", "unknown blob", _extra_section, "refused"
    yield "sections", "in reverse order", _reverse_sections, "identical"
    yield "sections", "the header's list omits one", _listing_lies, "refused"
    # the index
    yield "index", "two blocks of the same item count swapped", _swap_same_blocks, "different"
    yield "index", "last block dropped, header consistent", _drop_last_block, "different"
    yield "index", "first block claims one item more", _block_count(1), "refused"
    yield "index", "first block claims one item fewer", _block_count(-1), \
        "different" if codec == "collection" else "refused"
    if codec != "image-text":
        yield "index", "two blocks merged into one", _blocks_merged, "refused"
    # names
    bad = {"NUL": "a\x00b.png", "newline": "a\nb", "tab": "a\tb", "escape": "\x1b[2J.png", "'.'": ".",
           "'..'": "..", "empty": "", "absolute": "/etc/passwd", "climbs out": "../evil.png",
           "empty part": "a//b.png", "backslash climb": "a\\..\\b.png", "300 bytes": "n" * 300,
           "a 300-byte part": "d/" + "n" * 300, "C1 control": "a\x85b", "DEL": "a\x7fb"}
    for what, v in bad.items():
        yield "names", what, _names_edit(_replace_name(1, v)), "refused"
    yield "names", "a duplicate", _names_edit(lambda ns: [ns[0], *ns[:-1]]), "refused"
    yield "names", "invalid UTF-8", _names_edit(lambda ns: b"\xff\xfe" + "\n".join(ns).encode()), "refused"
    yield "names", "one too few", _names_edit(lambda ns: ns[:-1]), "refused"
    yield "names", "one too many", _names_edit(lambda ns: ns + ["more"]), "refused"
    yield "names", "a zip bomb", _names_edit(lambda ns: b"x" * (n * 4097 + 10**6)), "refused"
    yield "names", "not zlib", lambda p: p.section("names").__setitem__(2, b"plain text"), "refused"
    yield "names", "two names swapped", _names_edit(_swap_names), "different" if folder else "identical"


def _codec_specific(codec: str, seed: Parts) -> Iterator[tuple[str, str, Callable[[Parts], None], str]]:
    p = seed.meta["params"]
    if codec == "sq":
        yield "params.bits", "one more than the table", _plus("bits", 1), "refused"
        yield "params.bits", "one less than the table", _plus("bits", -1), "refused"
        yield "params.dim", "one more", _plus("dim", 1), "refused"
        yield "params.dim", "one less", _plus("dim", -1), "refused"
        yield "params.step", "1e308", _param(step=1e308), "refused"
        yield "params.step", "0", _param(step=0), "refused"
        yield "params.step", "negative", _scaled("step", -1), "refused"
        # unit vectors (normalize true) are rescaled after decoding: another step gives the same embeddings
        yield "params.step", "doubled", _scaled("step", 2), "identical" if p["normalize"] else "different"
        yield "params.step", "above 1 for unit vectors", _param(step=1.5), "refused"
        yield "params.normalize", "flipped", _param(normalize=not p["normalize"]), "different"
        yield "params.block_size", "smaller than the blocks", _param(block_size=2), "refused"
        yield "params.block_size", "larger than the blocks", _param(block_size=64), "identical"
    if codec == "collection":
        yield "params.n_atoms", "one more than the dictionary", _plus("n_atoms", 1), "refused"
        yield "params.n_atoms", "one less", _plus("n_atoms", -1), "refused"
        yield "params.sparsity", "one more", _plus("sparsity", 1), "refused"
        yield "params.sparsity", "one less", _plus("sparsity", -1), "refused"
        yield "params.sparsity", "above n_atoms", _param(sparsity=p["n_atoms"] + 1), "refused"
        yield "params.atom_bits", "one more", _plus("atom_bits", 1), "refused"
        yield "params.atom_bits", "one less", _plus("atom_bits", -1), "refused"
        yield "params.dim", "one more", _plus("dim", 1), "refused"
        yield "params.dim", "one less", _plus("dim", -1), "refused"
        yield "params.atom_step", "halved", _scaled("atom_step", 0.5), "refused"
        yield "params.atom_step", "2", _param(atom_step=2.0), "refused"
        yield "params.weight_step", "doubled", _scaled("weight_step", 2), "refused"
        yield "params.weight_step", "1e308", _param(weight_step=1e308), "refused"
        yield "params.weight_step", "negative", _scaled("weight_step", -1), "refused"
        yield "params.weight_step", "above weight_clip", _param(weight_step=p["weight_clip"] * 2), "refused"
        yield "params.weight_clip", "doubled, weight_step doubled", _param(
            weight_clip=p["weight_clip"] * 2, weight_step=p["weight_step"] * 2), "different"
        yield "params.weight_clip", "tiny step: a huge weight alphabet", _param(weight_step=1e-9), "refused"
        yield "params.block_size", "smaller than the blocks", _param(block_size=2), "refused"
        yield "params.block_size", "larger than the blocks", _param(block_size=64), "identical"
        yield "params.space", "unknown space", _param(space="openclip-vit-h [/x]"), "identical"
        yield "params.space", "another thumbnail space", _param(space="thumbnail-16x16-opponent-v1"), "identical"
        yield "params.pixels_per_item", "other", _param(pixels_per_item=12345), "identical"
        yield "params.min_cosine", "other", _param(min_cosine=0.5), "identical"
        yield "params.dictionary_fit", "unknown field", _param(dictionary_fit={**p["dictionary_fit"], "x": 1}), \
            "refused"
    if codec == "image-text":
        yield "params.caption_check", "deleted in 1.0", lambda q: (_deleter(("caption_check",))(q),
                                                                    setattr(q, "version", (1, 0))), "refused"
        yield "params.caption_codec", "deleted in 1.0 (means codec 1)", lambda q: (
            _deleter(("caption_codec",))(q), setattr(q, "version", (1, 0))), "refused"
        yield "params.caption_codec", "1", _param(caption_codec=1), "refused"
        yield "params.caption_prompt", "another prompt", _param(caption_prompt="0" * 16), "refused"
        yield "params.scale", "other", _param(scale=0.25), "identical"
        yield "params.pixels_per_item", "other", _param(pixels_per_item=7), "identical"
        yield "params.refiner", "unknown refiner", _param(refiner={"spec": "nope:[/x]"}), "refused"
        yield "params.refiner", "identity with other settings", _param(
            refiner={"spec": "identity", "seed": 3, "steps": 5, "strength": 0.5, "guidance": 2.0}), "identical"
        yield "params.lic_spec", "unknown LIC", _param(lic_spec="nope"), "refused"
        from semzip.codecs.image_text import ImageTextCodec

        # valid fields, but the captions would need an adapter this decoder was not given: refused by name
        # (a semzip whose image-text codec predates adapters ignores the fields)
        knows = hasattr(ImageTextCodec, "_check_adapter")
        yield "params.caption_adapter", "name and fingerprint", _param(
            caption_adapter="lora [x]", caption_adapter_fingerprint="ab" * 32), "refused" if knows else "identical"
        yield "params.caption_adapter", "name without fingerprint", _param(caption_adapter="lora"), "refused"
        yield "params.caption_adapter_fingerprint", "not hex", _param(
            caption_adapter="lora", caption_adapter_fingerprint="zz" * 32), "refused"
        yield "params.caption_adapter_fingerprint", "too short", _param(
            caption_adapter="lora", caption_adapter_fingerprint="ab" * 8), "refused"


def crafts(seeds: dict[str, bytes]) -> list[Craft]:
    """Every crafted file of every codec (deterministic)."""
    out = []
    for codec, data in seeds.items():
        seed = split(data)
        gens = [*_field_crafts(codec, seed), *_codec_specific(codec, seed), *_generic(codec, seed)]
        for fld, variant, edit, expect in gens:
            parts = copy.deepcopy(seed)
            edit(parts)
            out.append(Craft(codec, fld, variant, join(parts), expect))
    return out


# ------------------------------------------------------------------------------------------- running


@dataclass
class Outcome:
    craft: Craft
    result: str  # "refused" | "identical" | "different" | "crash"
    problems: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        want = self.craft.expect
        if want == "identical_or_refused":
            good = self.result in ("identical", "refused")
        else:
            good = self.result == want
        return good and not self.problems


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
    else:
        for f in sorted(path.rglob("*")):
            if f.is_file() and f.name != "generation.json":  # generation.json names the archive path
                h.update(f.relative_to(path).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _one_line_error(r, problems: list[str], what: str) -> None:
    err = r.stderr.strip().splitlines()
    if len(err) != 1 or not err[0].startswith("semzip: error:"):
        problems.append(f"{what}: expected one error line, got {r.stderr[:300]!r}")


def _invoke(runner, app, args: list[str]):
    r = runner.invoke(app, args)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        tb = "".join(traceback.format_exception(r.exception))[-600:]
        raise _Crash(f"{args[0]}: {type(r.exception).__name__}: {r.exception}\n{tb}")
    return r


class _Crash(Exception):
    pass


_CLI: list = []


def _cli():
    """A click runner and the semzip command, built once (typer rebuilds the command on every invoke)."""
    if not _CLI:
        import typer
        from click.testing import CliRunner

        from semzip.cli import app

        _CLI.extend([CliRunner(), typer.main.get_command(app)])
    return _CLI[0], _CLI[1]


@contextlib.contextmanager
def stubbed_caption_model() -> Iterator[None]:
    """Decode image-text archives with the stub caption coder (and the real tiny LIC)."""
    from semzip.codecs.image_text import ImageTextCodec, caption_codec
    from semzip.format import check_header

    def from_header(cls, header, lic=None, language=None, adapter=None, kernel=None):  # as the real one checks
        check_header(header)
        return stub_image_text_codec(lic or header.params.get("lic_spec", "tiny"), "stub",
                                     float(header.params["scale"]), caption_codec(header))

    saved = ImageTextCodec.__dict__["from_header"]
    ImageTextCodec.from_header = classmethod(from_header)
    try:
        yield
    finally:
        ImageTextCodec.from_header = saved


def run_one(craft: Craft, work: Path, reference: str | None, add_npy: Path | None = None) -> tuple[Outcome, str]:
    """Run ``info``, ``verify``, ``verify --deep``, ``decompress`` (and ``add``) on one crafted file."""
    runner, app = _cli()
    work.mkdir(parents=True, exist_ok=True)
    arc = work / "crafted.smz"
    arc.write_bytes(craft.data)
    # sq and collection decode to embeddings (.npy: what verify --deep decodes); collections are also rendered
    # to a folder (thumbnail generator) and image-text archives decode to a folder: file names are checked
    out = work / ("out" if craft.codec == "image-text" else "out.npy")
    folder = work / "out" if craft.codec == "collection" else None
    problems: list[str] = []
    digest = ""
    try:
        info = _invoke(runner, app, ["info", str(arc)])
        verify = _invoke(runner, app, ["verify", str(arc)])
        deep = _invoke(runner, app, ["verify", str(arc), "--deep"])
        dec = _invoke(runner, app, ["decompress", str(arc), "-o", str(out)])
        render = None
        if folder is not None and dec.exit_code == 0:
            render = _invoke(runner, app, ["decompress", str(arc), "-o", str(folder)])
    except _Crash as exc:
        return Outcome(craft, "crash", [str(exc)]), ""
    for r, what, codes in ((info, "info", (0, 2)), (verify, "verify", (0, 1, 2)), (deep, "verify --deep", (0, 1, 2)),
                           (dec, "decompress", (0, 2))):
        if r.exit_code not in codes:
            problems.append(f"{what} exited {r.exit_code}: {r.output[-300:]!r}")
    for r, what in ((info, "info"), (verify, "verify"), (deep, "verify --deep")):
        if r.exit_code == 2:  # the file could not be opened as an archive at all
            _one_line_error(r, problems, what)
    if info.exit_code != 0 and verify.exit_code == 0:
        problems.append("info refused a file that verify passes")
    if verify.exit_code != 0 and deep.exit_code == 0:
        problems.append("verify --deep passes a file that verify refuses")
    if (deep.exit_code == 0) != (dec.exit_code == 0):
        problems.append(f"verify --deep exit {deep.exit_code} but decompress exit {dec.exit_code}: "
                        f"{(deep.output + dec.output)[-400:]!r}")
    n_items = split(craft.data).meta.get("n_items")
    if dec.exit_code == 0:
        digest = _digest(out)
        if render is not None:
            if render.exit_code == 0:
                digest += _digest(folder)
            elif craft.field in RENDER_REFUSED and reference is not None:
                # a valid archive whose space no offline generator renders: compared on its embeddings
                _one_line_error(render, problems, "decompress (images)")
                digest += reference[len(digest):]  # compared on the embeddings alone
                if folder.exists():
                    problems.append("decompress (images) refused the file but left output behind")
            else:
                problems.append(f"decompress (images) exited {render.exit_code}: {render.output[-300:]!r}")
        result = "identical" if digest == reference else "different"
        for f in (out, folder):
            if f is not None and f.is_dir():
                files = [p for p in f.iterdir() if p.suffix == ".png" and p.name != "contact_sheet.png"]
                if len(files) != n_items:
                    problems.append(f"decompress wrote {len(files)} images for {n_items} items")
    else:
        result = "refused"
        _one_line_error(dec, problems, "decompress")
        if out.exists():
            problems.append("decompress refused the file but left output behind")
    keep = {"crafted.smz", out.name} | ({folder.name} if folder is not None else set())
    leftovers = [f.name for f in work.iterdir() if f.name not in keep]
    if leftovers:
        problems.append(f"files left behind: {leftovers}")
    if arc.read_bytes() != craft.data:
        problems.append("the archive was modified")
    if add_npy is not None:
        try:
            add = _invoke(runner, app, ["add", str(arc), "--embeddings", str(add_npy)])
        except _Crash as exc:
            return Outcome(craft, "crash", [str(exc)]), digest
        version = (craft.data[4], craft.data[5])
        if add.exit_code == 0:
            if result == "refused":
                problems.append("add extended an archive that decompress refuses")
            if version not in ((1, 0), (1, 1)):
                problems.append(f"add rewrote a format {version} archive")
        elif add.exit_code == 2:
            _one_line_error(add, problems, "add")
            if arc.read_bytes() != craft.data:
                problems.append("add refused the archive but changed it")
        else:
            problems.append(f"add exited {add.exit_code}")
    detail = (dec.stderr.strip() if dec.exit_code else "")[:200]
    return Outcome(craft, result, problems, detail), digest


def run_all(work: Path, codecs: tuple[str, ...] = ("sq", "collection", "image-text"),
            progress: Callable[[str], None] | None = None) -> list[Outcome]:
    """Make the seeds, every crafted file, and run each through the commands."""
    import shutil

    work.mkdir(parents=True, exist_ok=True)
    outcomes = []
    with stubbed_caption_model(), np.errstate(all="ignore"):
        seeds = make_seeds(work)
        seeds = {c: d for c, d in seeds.items() if c in codecs}
        x_new = work / "new.npy"
        from semzip.models.thumbnail import ThumbnailEncoder

        np.save(x_new, _embeddings(2, ThumbnailEncoder(8).dim, 9))
        refs = {}
        for codec, data in seeds.items():
            ref_outcome, refs[codec] = run_one(Craft(codec, "seed", "unchanged", data, "identical"), work / "seed", None)
            if ref_outcome.result == "refused" or ref_outcome.problems:
                raise RuntimeError(f"the {codec} seed does not decode: {ref_outcome.problems} {ref_outcome.detail}")
            shutil.rmtree(work / "seed")
        all_crafts = crafts(seeds)
        for i, c in enumerate(all_crafts):
            d = work / f"c{i}"
            o, _ = run_one(c, d, refs[c.codec], x_new if c.codec == "collection" else None)
            outcomes.append(o)
            shutil.rmtree(d, ignore_errors=True)
            if progress is not None:
                progress(f"{c.codec} {c.label}: {o.result}")
    return outcomes


def summary(outcomes: list[Outcome]) -> dict:
    """Counts per codec and in total, the undetectable lies that decoded differently, and failures."""
    per = {}
    for o in outcomes:
        row = per.setdefault(o.craft.codec, Counter())
        row["tried"] += 1
        row[o.result] += 1
        row["fields"] = 0
    for codec, row in per.items():
        row["fields"] = len({o.craft.field for o in outcomes if o.craft.codec == codec})
    total = Counter()
    for row in per.values():
        total.update(row)
    different = sorted({o.craft.label for o in outcomes if o.result == "different"})
    failures = [f"{o.craft.codec} {o.craft.label}: expected {o.craft.expect}, got {o.result}"
                + (f" ({'; '.join(o.problems)[:600]})" if o.problems else "") + (f" [{o.detail}]" if o.detail else "")
                for o in outcomes if not o.ok]
    return {"per_codec": {k: dict(v) for k, v in per.items()}, "total": dict(total), "different": different,
            "failures": failures}


if __name__ == "__main__":
    import sys
    import tempfile
    import time

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_all(Path(tmp), progress=(lambda m: print(m, flush=True)) if "-v" in sys.argv else None)
    s = summary(res)
    print(json.dumps({k: v for k, v in s.items() if k != "failures"}, indent=1))
    print("\n".join(s["failures"]) or "no failures")
    print(f"{time.perf_counter() - t0:.1f} s")
