"""The on-disk embedding store: shards written atomically, read back exactly, plans that must match."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from semzip.errors import CorruptedSectionError, InvalidInputError
from semzip.scale.store import EmbeddingStore, plan_fingerprint


def _store(tmp_path, n=10, shard=4, dim=3, **kw):
    return EmbeddingStore.create(tmp_path / "st", dim=dim, n_items=n, shard_size=shard, plan=plan_fingerprint(["a"]),
                                 **kw)


def test_roundtrip_and_layout(tmp_path):
    st = _store(tmp_path)
    assert st.n_shards == 3 and st.shard_range(2) == (8, 10)
    assert st.missing_shards() == [0, 1, 2] and not st.complete
    rng = np.random.default_rng(0)
    data = rng.standard_normal((10, 3)).astype(np.float32)
    for i in range(3):
        a, b = st.shard_range(i)
        st.write_shard(i, [f"n{j}" for j in range(a, b)], list(range(a, b)), data[a:b])
    assert st.complete and len(st) == 10
    again = EmbeddingStore.open(tmp_path / "st")
    np.testing.assert_array_equal(again.embeddings(), data)
    assert again.names() == [f"n{j}" for j in range(10)]
    assert again.read_shard(1).pixels.tolist() == [4, 5, 6, 7]


def test_skipped_inputs_are_recorded(tmp_path):
    st = _store(tmp_path, n=4, shard=4)
    st.write_shard(0, ["a", "b"], [1, 1], np.ones((2, 3)), skipped=[("c.jpg", "corrupt"), ("d.png", "zero bytes")])
    assert st.shard_lengths() == [2]
    assert st.skipped() == [("c.jpg", "corrupt"), ("d.png", "zero bytes")]


def test_reopen_with_same_plan_resumes_and_other_plan_is_refused(tmp_path):
    st = _store(tmp_path)
    st.write_shard(0, list("abcd"), [0] * 4, np.zeros((4, 3)))
    assert _store(tmp_path).missing_shards() == [1, 2]  # same plan: reopened, shard 0 kept
    with pytest.raises(InvalidInputError, match="other inputs or settings"):
        EmbeddingStore.create(tmp_path / "st", dim=3, n_items=10, shard_size=4, plan=plan_fingerprint(["b"]))
    with pytest.raises(InvalidInputError, match="shard_size"):
        _store(tmp_path, shard=5)


def test_refuses_foreign_folders_and_bad_shards(tmp_path):
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "precious.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="not an embedding store"):
        _store(tmp_path)
    assert (tmp_path / "st" / "precious.txt").read_text() == "keep me"
    st = _store(tmp_path / "other")
    with pytest.raises(InvalidInputError, match=r"\(n, 3\)"):
        st.write_shard(0, list("abcd"), [0] * 4, np.zeros((4, 5)))
    with pytest.raises(InvalidInputError, match="planned items"):
        st.write_shard(0, list("abc"), [0] * 3, np.zeros((3, 3)))
    with pytest.raises(InvalidInputError, match="NaN"):
        st.write_shard(0, list("abcd"), [0] * 4, np.full((4, 3), np.nan))
    with pytest.raises(InvalidInputError, match="out of range"):
        st.write_shard(7, list("abcd"), [0] * 4, np.zeros((4, 3)))
    assert st.missing_shards() == [0, 1, 2]  # nothing half-written counts as a shard
    assert not list((tmp_path / "other" / "st" / "shards").iterdir())


def test_damaged_shard_is_reported(tmp_path):
    st = _store(tmp_path)
    st.write_shard(0, list("abcd"), [0] * 4, np.zeros((4, 3)))
    path = st.shard_path(0)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CorruptedSectionError, match="not a readable store shard"):
        EmbeddingStore.open(tmp_path / "st").read_shard(0)
    (tmp_path / "st" / "store.json").write_text("{not json")
    with pytest.raises(CorruptedSectionError, match="manifest"):
        EmbeddingStore.open(tmp_path / "st")


def test_reading_an_unfinished_store_says_so(tmp_path):
    st = _store(tmp_path)
    st.write_shard(0, list("abcd"), [0] * 4, np.zeros((4, 3)))
    with pytest.raises(InvalidInputError, match="2 of 3 shards are not written yet"):
        st.embeddings()


def test_float16_store_reads_back_as_float32(tmp_path):
    st = _store(tmp_path, n=4, dtype="float16")
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    st.write_shard(0, list("abcd"), [0] * 4, x)
    y = EmbeddingStore.open(tmp_path / "st").read_shard(0).embeddings
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1e-3)
    with pytest.raises(InvalidInputError, match="dtype"):
        _store(tmp_path / "x", dtype="int8")
