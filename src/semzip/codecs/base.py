"""What every codec provides, and the name -> codec registry (names are stored in archives, never indices).

The contract (CompressAI's split, one for every codec):

- ``compress(data, names=..., progress=...) -> Encoded``: the archive's header (complete: everything a
  decoder needs, the model specs included), blobs, item blocks and names;
- ``from_header(header, **options)`` (a classmethod): the codec that decodes an archive with that header,
  its models loaded from what the header records (``options`` override where a codec takes any);
- ``decompress(container, items=None)``: the decoded items, all or ``items`` (numbers) only;
- ``decodes_to``: what ``decompress`` returns, ``"embeddings"`` (an (n, d) float32 matrix) or ``"images"``
  (per item an image and its caption), so callers ask the codec instead of testing its name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from semzip.errors import InvalidInputError
from semzip.format import Container, Header

DecodesTo = Literal["embeddings", "images"]


@dataclass
class Encoded:
    """A codec's output before it is packed: header, named blobs, item blocks and item names."""

    header: Header
    blobs: dict[str, bytes] = field(default_factory=dict)
    blocks: list[tuple[int, bytes]] = field(default_factory=list)
    names: Sequence[str] | None = None


class Codec(Protocol):
    """CompressAI-style split: ``compress`` returns streams, ``decompress`` reads them back."""

    name: str
    decodes_to: DecodesTo

    def compress(self, data: Any, names: Sequence[str] | None = None, progress: Any = None) -> Encoded: ...

    @classmethod
    def from_header(cls, header: Header) -> Codec: ...

    def decompress(self, container: Container, items: Sequence[int] | None = None) -> Any: ...


# name -> "module:factory"; modules are imported only when their codec is asked for
_REGISTRY: dict[str, str] = {
    "sq": "semzip.codecs.embeddings:ScalarQuantCodec",
    "collection": "semzip.codecs.collection:CollectionCodec",
    "image-text": "semzip.codecs.image_text:ImageTextCodec",
}


def register_codec(name: str, target: str) -> None:
    """Register a codec under ``name`` as "module:callable" (lazy import)."""
    _REGISTRY[name] = target


def codec_names() -> list[str]:
    return sorted(_REGISTRY)


def get_codec(name: str) -> Callable[..., Codec]:
    """The codec class registered under ``name``."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise InvalidInputError(f"unknown codec {name!r}; known codecs: {', '.join(codec_names())}") from None
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


