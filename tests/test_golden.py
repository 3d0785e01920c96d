"""A pinned archive: any change to the container or entropy layers' bytes must be deliberate.

If this test fails after an intended format change, bump FORMAT_MAJOR/MINOR (semzip.format) as the change
requires and update the pinned digest.
"""

from __future__ import annotations

import hashlib

import numpy as np

from semzip.codecs.embeddings import ScalarQuantCodec
from semzip.format import Container, pack

GOLDEN_SHA256 = "b07f03e3845475f50a12aa6a93ce2e68704ce3f428f924193efe2d70fdeab72c"


def _golden_bytes() -> bytes:
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((10, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    enc = ScalarQuantCodec(bits=6, block_size=4).compress(x, names=[f"img{i}" for i in range(10)])
    enc.header.writer = "golden"
    return pack(enc.header, enc.blobs, enc.blocks, enc.names)


def test_golden_archive_bytes_are_pinned():
    data = _golden_bytes()
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256


def test_golden_archive_decodes_twice_identically():
    data = _golden_bytes()
    a = ScalarQuantCodec.from_header(Container.from_bytes(data).header).decompress(Container.from_bytes(data))
    b = ScalarQuantCodec.from_header(Container.from_bytes(data).header).decompress(Container.from_bytes(data))
    assert a.tobytes() == b.tobytes()
