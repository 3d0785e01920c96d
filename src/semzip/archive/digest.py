"""Decode digests: SHA-256 of everything a file decodes to before any float synthesis. Two machines that
print the same digest decoded the file identically (``tests/test_portable.py`` compares them across CPU
kernels and thread counts).

- caption files (``.smzc``): the caption texts;
- sq and collection archives: the entropy-decoded integers and the float32 embeddings;
- image-text archives: the captions and the LIC's integers up to ``y_hat``.
"""

from __future__ import annotations

import functools
import hashlib
import json

import numpy as np

from semzip.errors import InvalidInputError
from semzip.format import Container


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=4)
def _coder(language: str, codec: int, adapter: str | None):
    """Caption coders reused across digests in one process (a model loads once)."""
    from semzip.codecs.image_text import caption_coder

    return caption_coder(language, codec, adapter=adapter)


def caption_file_digest(data: bytes, language: str | None = None, adapter: str | None = None) -> dict:
    """The digest of a compact caption file's bytes ``data``."""
    from semzip.codecs.image_text import DEFAULT_LANGUAGE
    from semzip.format.compact import read_header

    header = read_header(data)
    (text,) = _coder(language or DEFAULT_LANGUAGE, header.codec, adapter).decode_files([data])
    if isinstance(text, Exception):
        raise text
    return {"kind": "captions", "codec": header.codec, "text_sha256": sha256(text.encode("utf-8")),
            "chars": len(text)}


def image_text_digest(container: Container, codec) -> dict:
    """The digest of an image-text archive decoded by ``codec`` (an :class:`ImageTextCodec`)."""
    from semzip.codecs.image_text import caption_codec

    texts, lic = codec.decode_integers(container)
    return {"kind": "image-text", "caption_codec": caption_codec(container.header),
            "captions_sha256": sha256("\n".join(texts).encode("utf-8")),
            "lic_sha256": sha256(json.dumps(lic, sort_keys=True).encode())}


def embeddings_digest(container: Container, codec) -> dict:
    """The digest of an sq or collection archive decoded by ``codec``: its integers and embeddings."""
    h = container.header
    if not hasattr(codec, "decode_integers"):
        raise InvalidInputError(f"{container.label}: no decode digest for {h.codec!r} archives")
    ints = codec.decode_integers(container)
    emb = np.ascontiguousarray(codec.decompress(container), dtype=np.float32)
    return {"kind": h.codec, "codes_sha256": sha256(ints.astype("<i8").tobytes()),
            "embeddings_sha256": sha256(emb.astype("<f4").tobytes()), "shape": list(emb.shape)}
