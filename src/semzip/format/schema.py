"""The header schema: one per codec and container format version, checked before anything is decoded.

A header passes when every field has its type and lies in its bounds (numbers finite, steps positive, counts
within limits), enumerations are closed (codec names, caption codecs, caption checks, model roles), the
fields agree with each other, and the sections and item blocks are the ones the header describes.
:func:`open_archive` runs the whole check on every archive a command opens (``info`` and ``verify``
included); codecs also check the header they are built from (:func:`check_header`), so no decoder starts on
an unchecked header. Consistency with the stored tables (their sizes against ``n_atoms``, ``bits``, ...) is
checked by each codec when it parses them.

Fields whose absence changes how bytes are read are fixed by the format version: in 1.0 an image-text
header without ``caption_codec`` holds codec-1 captions and one without ``caption_check`` has no caption
checks (archives written before those fields existed; a codec-2 header must state its check); from 1.1 both
fields are required. A header of a later 1.x minor version is read with the newest schema known here, its
unknown fields and extra blob sections ignored (minor versions only add what older readers may skip);
such archives are never rewritten (``semzip add`` refuses them).

Only the standard library is used here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from semzip.errors import CorruptedSectionError
from semzip.format.container import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    NAMES_SECTION,
    Container,
    Header,
    Limits,
    SectionType,
)

MAX_ALPHABET = 2**22  # semzip.entropy.MAX_ALPHABET (kept numpy-free here; a test pins the two together)
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_MIN_NORMAL = 2.0**-126
INT64_MAX = 2**63 - 1
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_HEX = re.compile("[0-9a-fA-F]+")


# ------------------------------------------------------------------------------------------ field kinds


@dataclass(frozen=True)
class Int:
    """An integer (not a bool, not a float) in [lo, hi]."""

    lo: int = 0
    hi: int = INT64_MAX

    def problem(self, v: Any) -> str | None:
        if type(v) is not int or not self.lo <= v <= self.hi:
            return f"an integer in [{self.lo}, {self.hi}]"
        return None


@dataclass(frozen=True)
class Num:
    """A finite number in [lo, hi] (or (lo, hi] when ``open_lo``)."""

    lo: float
    hi: float
    open_lo: bool = False

    def problem(self, v: Any) -> str | None:
        ok = type(v) in (int, float) and math.isfinite(v) and v <= self.hi and (v > self.lo if self.open_lo else v >= self.lo)
        return None if ok else f"a finite number in {'(' if self.open_lo else '['}{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Text:
    """Printable text (no control characters) of at most ``max_len`` characters."""

    max_len: int = 4096
    min_len: int = 0

    def problem(self, v: Any) -> str | None:
        if not isinstance(v, str) or not self.min_len <= len(v) <= self.max_len or _CONTROL.search(v):
            return f"printable text of {self.min_len} to {self.max_len} characters"
        return None


@dataclass(frozen=True)
class Hex:
    """Hexadecimal text of exactly ``length`` digits (a fingerprint)."""

    length: int

    def problem(self, v: Any) -> str | None:
        if isinstance(v, str) and len(v) == self.length and _HEX.fullmatch(v):
            return None
        return f"{self.length} hexadecimal digits"


@dataclass(frozen=True)
class OneOf:
    """One of a closed set of values (compared with their types: ``true`` is not 1)."""

    values: tuple

    def problem(self, v: Any) -> str | None:
        if any(type(v) is type(x) and v == x for x in self.values):
            return None
        return "one of " + ", ".join(map(repr, self.values))


@dataclass(frozen=True)
class Maybe:
    """``null`` or the inner kind."""

    inner: Any

    def problem(self, v: Any) -> str | None:
        if v is None:
            return None
        p = self.inner.problem(v)
        return None if p is None else f"null or {p}"


@dataclass(frozen=True)
class Record:
    """A JSON object with known keys (``required`` ones must be present); closed unless a later minor
    version is being read."""

    fields: dict
    required: frozenset = frozenset()

    def problem(self, v: Any) -> str | None:
        return None if isinstance(v, dict) else "an object"


BOOL = OneOf((False, True))


@dataclass(frozen=True)
class CodecSchema:
    """What one codec's header holds in one format version."""

    params: Record
    models: dict  # role -> required
    blobs: tuple[str, ...]  # BLOB sections besides the optional names
    block_items: Callable[[dict], tuple[int, int]]  # (min, max) items per block, from the checked params
    rules: tuple[Callable[[dict], str | None], ...] = ()


# ------------------------------------------------------------------------------------------ the codecs


def _sq_rules(p: dict) -> str | None:
    levels = 2 ** (p["bits"] - 1) - 1
    if p["step"] < FLOAT32_MIN_NORMAL or p["step"] * levels > FLOAT32_MAX:
        return f"params.step {p['step']!r} makes the {p['bits']}-bit values leave float32's normal range"
    if p["normalize"] and p["step"] > 1:
        return f"params.step {p['step']!r} is impossible for unit-norm embeddings (normalize is true)"
    return None


SQ = CodecSchema(
    params=Record({
        "bits": Int(2, 12),
        "dim": Int(1, 2**53),  # items x dim is bounded by the max_values limit when decoding
        "step": Num(0, FLOAT32_MAX, open_lo=True),
        "normalize": BOOL,
        "block_size": Int(1, 2**32),
    }, frozenset({"bits", "dim", "step", "normalize", "block_size"})),
    models={},
    blobs=("model",),
    block_items=lambda p: (1, p["block_size"]),
    rules=(_sq_rules,),
)


def _collection_rules(p: dict) -> str | None:
    if p["sparsity"] > p["n_atoms"]:
        return f"params.sparsity {p['sparsity']} exceeds params.n_atoms {p['n_atoms']}"
    if p["weight_step"] > p["weight_clip"]:
        return f"params.weight_step {p['weight_step']!r} exceeds params.weight_clip {p['weight_clip']!r}"
    if math.ceil(p["weight_clip"] / p["weight_step"]) > MAX_ALPHABET // 2:
        return "params.weight_clip / params.weight_step gives more weight levels than an entropy model holds"
    return None


COLLECTION = CodecSchema(
    params=Record({
        "n_atoms": Int(1, MAX_ALPHABET),
        "dim": Int(1, 2**53),  # items x dim is bounded by the max_values limit when decoding
        "sparsity": Int(1, MAX_ALPHABET),
        "min_cosine": Maybe(Num(-1, 1)),
        "atom_bits": Int(2, 12),
        # atoms are unit vectors: the step (largest |value| / levels) is at most 1; at least 2**-30 keeps
        # their squares normal float32 numbers for any dimension up to the max_values limit
        "atom_step": Num(2.0**-30, 1),
        "weight_step": Num(0, 2**20, open_lo=True),
        "weight_clip": Num(0, 2**20, open_lo=True),
        "block_size": Int(1, 2**32),
        "space": Text(1024),
        "pixels_per_item": Int(0, 2**53),
        "dictionary_fit": Record({
            "method": OneOf(("online", "online-stream")),
            "epochs": Int(0, 2**32),
            "seed": Maybe(Int(-INT64_MAX - 1, INT64_MAX)),
            "batch_size": Int(1, 2**32),
            "group": Int(1, 2**32),
        }),
    }, frozenset({"n_atoms", "dim", "sparsity", "min_cosine", "atom_bits", "atom_step", "weight_step",
                  "weight_clip", "block_size", "space", "pixels_per_item", "dictionary_fit"})),
    models={"encoder": False},
    blobs=("dictionary", "models"),
    block_items=lambda p: (1, p["block_size"]),
    rules=(_collection_rules,),
)

_REFINER = Record({
    "spec": Text(4096, 1),
    "refiner": Text(4096, 1),  # the first writers' key for the spec
    "seed": Maybe(Int(-INT64_MAX - 1, INT64_MAX)),
    "steps": Maybe(Int(1, 10_000)),
    "strength": Maybe(Num(0, 1)),
    "guidance": Maybe(Num(0, 1000)),
})
_IMAGE_TEXT_FIELDS = {
    "scale": Num(0, 1, open_lo=True),
    "pixels_per_item": Int(0, 2**53),
    "caption_prompt": Text(64, 1),
    "caption_check": OneOf(("crc16",)),
    "caption_codec": OneOf((1, 2)),
    "refiner": _REFINER,
    "captioner": Text(4096),
    "lic_spec": Text(4096, 1),
    "language_spec": Text(4096, 1),
    # optional: a caption-model adapter (name + SHA-256 of its weights) the captions were coded with
    "caption_adapter": Text(4096, 1),
    "caption_adapter_fingerprint": Hex(64),
}


def _image_text_adapter(p: dict) -> str | None:
    if ("caption_adapter" in p) != ("caption_adapter_fingerprint" in p):
        return "params.caption_adapter and params.caption_adapter_fingerprint go together: one is missing"
    return None


def _image_text_10(p: dict) -> str | None:
    if p.get("caption_codec", 1) != 1 and "caption_check" not in p:
        return "params.caption_check is missing: every archive with caption codec 2 was written with it"
    return None


IMAGE_TEXT_10 = CodecSchema(
    params=Record(_IMAGE_TEXT_FIELDS, frozenset({"scale", "pixels_per_item", "caption_prompt", "refiner"})),
    models={"lic": True, "language": True},
    blobs=(),
    block_items=lambda p: (1, 1),
    rules=(_image_text_10, _image_text_adapter),
)
IMAGE_TEXT_11 = CodecSchema(
    params=Record(_IMAGE_TEXT_FIELDS, frozenset({"scale", "pixels_per_item", "caption_prompt", "refiner",
                                                 "caption_check", "caption_codec"})),
    models={"lic": True, "language": True},
    blobs=(),
    block_items=lambda p: (1, 1),
    rules=(_image_text_adapter,),
)

SCHEMAS: dict[tuple[str, tuple[int, int]], CodecSchema] = {
    ("sq", (1, 0)): SQ, ("sq", (1, 1)): SQ,
    ("collection", (1, 0)): COLLECTION, ("collection", (1, 1)): COLLECTION,
    ("image-text", (1, 0)): IMAGE_TEXT_10, ("image-text", (1, 1)): IMAGE_TEXT_11,
}
LATEST = (FORMAT_MAJOR, FORMAT_MINOR)


# ------------------------------------------------------------------------------------------ checking


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def schema_for(codec: str, version: tuple[int, int] | None) -> tuple[CodecSchema, bool]:
    """The schema of ``codec`` in ``version`` and whether it is closed (False for a later minor version)."""
    version = tuple(version or LATEST)
    later = version[0] == LATEST[0] and version[1] > LATEST[1]
    schema = SCHEMAS.get((codec, LATEST if later else version))
    if schema is None:
        known = sorted({c for c, _ in SCHEMAS})
        raise CorruptedSectionError(
            f"unknown codec {_show(codec)} (this semzip knows {', '.join(known)}): the archive is damaged or was "
            "written by another program"
        )
    return schema, not later


def _check_record(value: Any, rec: Record, where: str, closed: bool) -> None:
    if not isinstance(value, dict):
        raise CorruptedSectionError(f"{where} must be an object, got {_show(value)}")
    missing = sorted(rec.required - value.keys())
    if missing:
        raise CorruptedSectionError(f"{where}.{missing[0]} is missing")
    for key, v in value.items():
        kind = rec.fields.get(key)
        if kind is None:
            if closed:
                raise CorruptedSectionError(f"{where} has an unknown field {_show(key)}")
            continue
        if isinstance(kind, Record):
            _check_record(v, kind, f"{where}.{key}", closed)
            continue
        problem = kind.problem(v)
        if problem:
            raise CorruptedSectionError(f"{where}.{key} must be {problem}, got {_show(v)}")


def check_header(header: Header, version: tuple[int, int] | None = None) -> CodecSchema:
    """Check a header's fields against its codec's schema for ``version`` (default: the version it was read
    with, else the current one); raises ``CorruptedSectionError`` naming the first bad field."""
    version = version or header.version
    schema, closed = schema_for(header.codec, version)
    try:
        _check_record(header.params, schema.params, "params", closed)
        for problem in (rule(header.params) for rule in schema.rules):
            if problem:
                raise CorruptedSectionError(problem)
        roles = [m.role for m in header.models]
        for role, required in schema.models.items():
            if required and role not in roles:
                raise CorruptedSectionError(f"models: no {role} model recorded")
        for m in header.models:
            if m.role not in schema.models and closed:
                raise CorruptedSectionError(f"models: unknown role {_show(m.role)}")
            if roles.count(m.role) > 1:
                raise CorruptedSectionError(f"models: two {m.role} models")
            for what, text in (("name", m.name), ("fingerprint", m.fingerprint)):
                if Text(4096, 1).problem(text):
                    raise CorruptedSectionError(f"models: the {m.role} model's {what} must be printable text, "
                                                f"got {_show(text)}")
        if Text(256).problem(header.writer):
            raise CorruptedSectionError(f"writer must be printable text, got {_show(header.writer)}")
    except CorruptedSectionError as exc:
        raise CorruptedSectionError(f"invalid {header.codec} header: {exc}") from None
    return schema


def check_container(c: Container) -> None:
    """Check an opened container's header (:func:`check_header`) and that its sections and item blocks are
    the ones the header describes. Runs once per container."""
    if getattr(c, "_schema_checked", False):
        return
    try:
        schema = check_header(c.header, c.format_version)
    except CorruptedSectionError as exc:
        raise CorruptedSectionError(f"{c.label}: {exc}") from None
    closed = schema_for(c.header.codec, c.format_version)[1]
    want = {name: SectionType.BLOB for name in schema.blobs}
    if c.header.n_items:
        want.update(index=SectionType.INDEX, items=SectionType.ITEMS)
    have = {s.name: s.type for s in c.sections}
    for name, stype in want.items():
        if have.get(name) != stype:
            raise CorruptedSectionError(
                f"{c.label}: a {c.header.codec} archive of {c.header.n_items} items needs a {stype.name} section "
                f"{name!r}" + ("" if name not in have else f", found a {SectionType(have[name]).name} one"))
    for name, stype in have.items():
        extra_blob_ok = not closed and stype == SectionType.BLOB
        if name not in want and not (name == NAMES_SECTION and stype == SectionType.BLOB) and not extra_blob_ok:
            raise CorruptedSectionError(f"{c.label}: unexpected section {name!r} in a {c.header.codec} archive")
    lo, hi = schema.block_items(c.header.params)
    for i, b in enumerate(c.blocks):
        if not lo <= b.n_items <= hi:
            raise CorruptedSectionError(
                f"{c.label}: item block {i} declares {b.n_items} items; this archive's blocks hold {lo} to {hi}")
    c._schema_checked = True  # type: ignore[attr-defined]


def open_archive(path: str | os.PathLike, limits: Limits | None = None) -> Container:
    """Open an archive and check it against its schema (:func:`check_container`) before anything else."""
    c = Container.open(path, limits)
    try:
        check_container(c)
    except BaseException:
        c.close()
        raise
    return c


def archive_from_bytes(data: bytes, limits: Limits | None = None) -> Container:
    """:func:`open_archive` for an archive held in memory."""
    c = Container.from_bytes(data, limits)
    check_container(c)
    return c
