"""Collection codec (SMIC-style dictionary + sparse codes): round trip, random access, add, determinism."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from semzip.api import add_embeddings, compress_embeddings, decompress, describe
from semzip.codecs.collection import CollectionCodec, CollectionPlan, EntropyModels, SparseCodes
from semzip.errors import CorruptedSectionError, InvalidInputError
from semzip.format import Container, pack
from semzip.sparse.synthetic import make_sparse_embeddings

PARAMS = dict(n_atoms=48, sparsity=3, max_epochs=5, block_size=32)


@pytest.fixture(scope="module")
def data():
    return make_sparse_embeddings(n=400, d=64, n_concepts=40, k=2, noise=0.05, seed=3)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("coll") / "x.smz"
    names = [f"img{i:03d}.png" for i in range(300)]
    compress_embeddings(data[:300], path, codec="collection", names=names, **PARAMS)
    return path


def test_round_trip_fidelity_and_rate(archive, data):
    y = decompress(archive)
    cos = np.sum(data[:300] * y, axis=1)
    assert y.shape == (300, 64) and np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    assert cos.mean() > 0.9
    d = describe(archive)
    assert d["codec"] == "collection" and d["n_items"] == 300
    items = next(s for s in d["sections"] if s["name"] == "items")["bytes"]
    assert 8 * items / 300 < 40  # a few atom indices and weights per item, not a float vector


def test_more_atoms_per_item_is_more_faithful(data):
    cos = []
    for k in (1, 3):
        enc = CollectionCodec(**{**PARAMS, "sparsity": k}).compress(data)
        c = Container.from_bytes(pack(enc.header, enc.blobs, enc.blocks))
        cos.append(np.mean(np.sum(CollectionCodec.from_header(c.header).decompress(c) * data, axis=1)))
    assert cos[1] > cos[0] + 0.02


def test_random_access_by_name_matches_full_decode(archive):
    full = decompress(archive)
    some = decompress(archive, items=["img250.png", "img007.png"])
    np.testing.assert_array_equal(some, full[[250, 7]])
    with pytest.raises(InvalidInputError, match="no item named"):
        decompress(archive, items=["nope.png"])


def test_decoding_is_deterministic(archive):
    assert decompress(archive).tobytes() == decompress(archive).tobytes()


def test_encoding_is_deterministic(data, tmp_path):
    a, b = tmp_path / "a.smz", tmp_path / "b.smz"
    compress_embeddings(data[:200], a, codec="collection", **PARAMS)
    compress_embeddings(data[:200], b, codec="collection", **PARAMS)
    assert a.read_bytes() == b.read_bytes()


def test_add_codes_new_items_without_recoding_old_ones(archive, data, tmp_path):
    path = tmp_path / "x.smz"
    path.write_bytes(archive.read_bytes())
    before = decompress(path)
    with Container.open(path) as c:
        old_blocks = [p for _, p in c.iter_blocks()]
    add_embeddings(path, data[300:], names=[f"new{i}" for i in range(100)])
    after = decompress(path)
    assert after.shape == (400, 64)
    np.testing.assert_array_equal(after[:300], before)
    assert np.mean(np.sum(after[300:] * data[300:], axis=1)) > 0.85
    with Container.open(path) as c:
        assert [p for _, p in c.iter_blocks()][: len(old_blocks)] == old_blocks
        assert c.names[-1] == "new99"
    with pytest.raises(InvalidInputError, match="already in the archive"):
        add_embeddings(path, data[:1], names=["img000.png"])
    with pytest.raises(InvalidInputError, match="dimensions"):
        add_embeddings(path, np.ones((2, 5), np.float32), names=["a", "b"])


def test_bits_per_item_budget_lowers_sparsity(data):
    loose = CollectionCodec(**PARAMS).compress(data)
    loose_bits = 8 * len(pack(loose.header, loose.blobs, loose.blocks)) / len(data)
    tight = CollectionCodec(**{**PARAMS, "bits_per_item": loose_bits - 8}).compress(data)
    assert tight.header.params["sparsity"] < loose.header.params["sparsity"]
    assert 8 * len(pack(tight.header, tight.blobs, tight.blocks)) / len(data) <= loose_bits - 8
    with pytest.raises(InvalidInputError, match="cannot be met"):
        CollectionCodec(**{**PARAMS, "bits_per_item": 1.0}).compress(data)


def test_min_cosine_stops_early(data):
    enc = CollectionCodec(**{**PARAMS, "sparsity": 6, "min_cosine": 0.8}).compress(data)
    c = Container.from_bytes(pack(enc.header, enc.blobs, enc.blocks))
    codes = CollectionCodec.from_header(c.header).decode_codes(c)
    assert codes.counts.min() >= 1 and codes.counts.mean() < 6


def test_bad_inputs_are_refused(data):
    with pytest.raises(InvalidInputError, match="all zeros"):
        CollectionCodec(**PARAMS).compress(np.vstack([data[:100], np.zeros((1, 64), np.float32)]))
    with pytest.raises(InvalidInputError, match="exceeds"):
        CollectionCodec(n_atoms=500).compress(data[:100])
    with pytest.raises(InvalidInputError):
        CollectionCodec(sparsity=0)
    with pytest.raises(CorruptedSectionError):
        EntropyModels.from_bytes(b"\x05\x00\x00\x00ab")


def test_public_stages_compose_to_what_compress_writes(data):
    """The stages the streaming and Ray engines call, run by hand on two halves, give compress's archive."""
    from semzip.codecs.collection import normalised
    from semzip.sparse import DictionaryLearner

    codec = CollectionCodec(**PARAMS)
    enc = codec.compress(data[:200])
    X = normalised(data[:200])
    plan = codec.plan(len(X))
    assert (plan.n_atoms, plan.sparsity) == (48, 3)
    learner = DictionaryLearner(**codec.learner_params(plan)).fit(X)
    dictionary = codec.quantize(learner.dictionary_)
    codes = [codec.code(X[a:b], dictionary.atoms, plan.sparsity) for a, b in ((0, 96), (96, 200))]
    counts = sum((codec.histograms(c, plan.n_atoms, plan.sparsity) for c in codes[1:]),
                 codec.histograms(codes[0], plan.n_atoms, plan.sparsity))
    models = codec.fit_models(counts)
    header, blobs = codec.assemble(dictionary, models, sparsity=plan.sparsity,
                                   fit=enc.header.params["dictionary_fit"])
    assert blobs == enc.blobs and header.params == enc.header.params
    blocks = [blk for c in codes for blk in codec.encode_blocks(c, models)]
    assert blocks == enc.blocks  # 96 items: whole blocks of 32, so the halves' blocks are compress's
    decoded = [codec.decode_block(p, n, models) for n, p in blocks]
    np.testing.assert_array_equal(
        codec.reconstruct(SparseCodes.concatenate(decoded), dictionary.atoms),
        codec.reconstruct(SparseCodes.concatenate(codes), dictionary.atoms))
    assert CollectionCodec(sparsity=4).plan(3) == CollectionPlan(n_items=3, n_atoms=3, sparsity=3)
    with pytest.raises(InvalidInputError, match="exceeds"):
        codec.plan(47)
