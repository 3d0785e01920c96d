"""Item names: which names an archive may hold, and the file names decoded items are written to.

An item name is a relative POSIX path (``beach.jpg``, ``2024/beach.jpg``) or any other label. Writers and
readers apply the same rules (docs/format.md, "Item names"): a name is non-empty UTF-8 of at most
``MAX_NAME_BYTES``, holds no control character (C0, DEL, C1: no NUL, newline, tab or terminal escape),
and every part between ``/`` or ``\\`` separators is non-empty, not ``.`` or ``..`` and at most 255 bytes (so
no name is absolute or climbs out of a folder); the names of one archive are distinct. A names section that
breaks a rule is refused on read (``CorruptedSectionError``), before anything is written.

Output file names (:func:`output_files`) are collision-free for every archive, computed from all its names
so that an item decoded alone gets the same file as in a full decode:

1. ``base`` = the name without its last extension, each separator replaced by ``__`` (``2024/beach.jpg`` ->
   ``2024__beach``); the file is ``base + suffix`` (``.png``) when no other name of the archive gives the same
   file (compared case-insensitively, as some file systems do), it is not one of the reserved files
   (``contact_sheet.png``, ``captions.txt``, ``generation.json``) and it fits in 255 bytes;
2. otherwise, in item order, the whole name with separators replaced (``photo.jpg`` -> ``photo.jpg.png``) if
   that file is still free and fits;
3. otherwise ``base`` cut to fit, ``~`` and the item number (``photo~3.png``), with more ``~`` until free.

Only the standard library is used here.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

MAX_NAME_BYTES = 4096  # one item name, UTF-8 (bounds what a names section may inflate to: n_items * 4097)
MAX_PART_BYTES = 255  # one path component, and one output file name (the common file-system limit)
RESERVED_FILES = ("contact_sheet.png", "captions.txt", "generation.json", "originals_vs_decoded.png")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SEPARATORS = re.compile(r"[/\\]")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an item name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "an item name must be non-empty text"
    if _CONTROL.search(name):
        return "an item name must hold no control character (NUL, newline, tab, escape, ...)"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "an item name must be valid Unicode text"
    if size > MAX_NAME_BYTES:
        return f"an item name must be at most {MAX_NAME_BYTES} bytes"
    for part in _SEPARATORS.split(name):
        if part in ("", ".", ".."):
            return "an item name must be a relative path without empty, '.' or '..' parts"
        if len(part) > MAX_PART_BYTES // 4 and len(part.encode("utf-8")) > MAX_PART_BYTES:
            return f"each part of an item name must be at most {MAX_PART_BYTES} bytes"
    return None


def first_duplicate(names: Iterable[str]) -> str | None:
    """The first name that occurs twice, or None."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return None


class DuplicateTracker:
    """Remembers 16-byte digests of names fed shard by shard (less memory than the names themselves)."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def add(self, name: str) -> bool:
        """Record ``name``; False if it was seen before."""
        key = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def _fit(text: str, budget: int) -> str:
    """``text`` cut to at most ``budget`` UTF-8 bytes, on a character boundary."""
    raw = text.encode("utf-8")
    return text if len(raw) <= budget else raw[:budget].decode("utf-8", "ignore")


def _flat(name: str) -> str:
    return _SEPARATORS.sub("__", name)


def _base(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    return _flat(str(path.with_suffix("")) if path.suffix else name)


def output_files(names: Sequence[str], suffix: str = ".png", reserved: Iterable[str] = RESERVED_FILES) -> list[str]:
    """One distinct, file-name-safe output file per item name (rules in the module docstring)."""
    if getattr(names, "generated", False):  # item_00000, ...: distinct and safe as they are
        return [f"{n}{suffix}" for n in names]
    limit = MAX_PART_BYTES - len(suffix.encode("utf-8"))
    bases = [_base(n) for n in names]
    first = [b + suffix for b in bases]
    count = Counter(f.casefold() for f in first)
    used = {r.casefold() for r in reserved}
    out: list[str | None] = [None] * len(names)
    for i, f in enumerate(first):
        key = f.casefold()
        if count[key] == 1 and key not in used and len(bases[i].encode("utf-8")) <= limit:
            out[i] = f
    used |= {f.casefold() for f in out if f is not None}
    for i, name in enumerate(names):
        if out[i] is not None:
            continue
        whole = _flat(name)
        candidate = whole + suffix
        if candidate.casefold() in used or len(whole.encode("utf-8")) > limit:
            tag = f"~{i}"
            while True:
                candidate = _fit(bases[i], limit - len(tag)) + tag + suffix
                if candidate.casefold() not in used:
                    break
                tag += "~"
        used.add(candidate.casefold())
        out[i] = candidate
    return [f for f in out if f is not None]
