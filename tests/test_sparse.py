"""Tests of semzip.sparse: Batch-OMP against scikit-learn, stopping rules, dictionary learning."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sklearn = pytest.importorskip("sklearn")

from sklearn.decomposition import MiniBatchDictionaryLearning
from sklearn.linear_model import orthogonal_mp, orthogonal_mp_gram

from semzip.errors import InvalidInputError
from semzip.sparse import (
    DictionaryLearner,
    batch_omp,
    cosine_similarity,
    fit_coefs,
    make_sparse_embeddings,
    reconstruct,
)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def random_problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((300, 32)), _unit_rows(rng.standard_normal((64, 32)))


@pytest.fixture(scope="module")
def sparse_data() -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth dictionary of 64 atoms in d=32, 3-sparse codes, small noise."""
    rng = np.random.default_rng(1)
    n, d, K, k = 2000, 32, 64, 3
    D = _unit_rows(rng.standard_normal((K, d)))
    C = np.zeros((n, K))
    for i in range(n):
        C[i, rng.choice(K, k, replace=False)] = rng.standard_normal(k)
    X = C @ D + 0.01 * rng.standard_normal((n, d))
    return X.astype(np.float32), D


def _omp_cosine(X: np.ndarray, D: np.ndarray, k: int) -> float:
    """Mean cosine of scikit-learn OMP reconstructions (the common yardstick)."""
    D = D.astype(np.float64)
    code = orthogonal_mp(D.T, X.T.astype(np.float64), n_nonzero_coefs=k).T
    return float(cosine_similarity(X, code @ D).mean())


# ----------------------------------------------------------------------------------------- OMP
@pytest.mark.parametrize("k", [1, 4, 10, 32])
def test_omp_matches_sklearn_float64(random_problem, k):
    X, D = random_problem
    dense = batch_omp(X, D, k, dtype="float64", return_dense=True)
    ref = orthogonal_mp(D.T, X.T, n_nonzero_coefs=k).T
    np.testing.assert_array_equal(dense != 0, ref != 0)
    np.testing.assert_allclose(dense, ref, atol=1e-4)


@pytest.mark.parametrize("tol", [20.0, 5.0, 0.5])
def test_omp_tol_matches_sklearn_gram(random_problem, tol):
    X, D = random_problem
    G, Xy = D @ D.T, D @ X.T
    ref = orthogonal_mp_gram(G, Xy, tol=tol, norms_squared=(X * X).sum(1)).T
    dense, res = batch_omp(X, D, tol=tol, dtype="float64", return_dense=True, return_residual=True)
    # scikit-learn always picks one atom; we stop at zero atoms when |x|^2 <= tol already
    above = (X * X).sum(1) > tol
    assert np.all(dense[~above] == 0)
    np.testing.assert_array_equal(dense[above] != 0, ref[above] != 0)
    np.testing.assert_allclose(dense[above], ref[above], atol=1e-4)
    assert np.all(res <= tol + 1e-9)
    np.testing.assert_allclose(res, ((X - dense @ D) ** 2).sum(1), rtol=1e-6, atol=1e-9)


def test_omp_float32_close_to_float64(random_problem):
    X, D = random_problem
    idx32, c32 = batch_omp(X, D, 6)
    idx64, c64 = batch_omp(X, D, 6, dtype="float64")
    assert c32.dtype == np.float32 and c64.dtype == np.float64 and idx32.dtype == np.int64
    assert (idx32 == idx64).mean() > 0.99
    same = (idx32 == idx64).all(1)
    np.testing.assert_allclose(c32[same], c64[same], atol=1e-4)


def test_min_cosine_stops_at_first_sufficient_atom(random_problem):
    X, D = random_problem
    target = 0.8
    idx, coef = batch_omp(X, D, 20, min_cosine=target, dtype="float64")
    used = (idx >= 0).sum(1)
    cos = cosine_similarity(X, reconstruct(idx, coef, D))
    assert np.all(cos[used < 20] >= target - 1e-9)
    assert np.all(idx[np.arange(len(X)), used - 1] >= 0) and np.all(coef[idx < 0] == 0)
    # OMP paths are nested: one atom fewer must miss the target
    for k in np.unique(used):
        if k <= 1:
            continue
        rows = used == k
        i2, c2 = batch_omp(X[rows], D, int(k) - 1, dtype="float64")
        assert np.all(cosine_similarity(X[rows], reconstruct(i2, c2, D)) < target)


def test_exact_recovery_of_sparse_signals():
    rng = np.random.default_rng(3)
    D = _unit_rows(rng.standard_normal((128, 64)))
    n, k = 500, 4
    true_idx = np.stack([rng.choice(128, k, replace=False) for _ in range(n)])
    true_coef = rng.uniform(0.5, 2.0, (n, k)) * rng.choice([-1, 1], (n, k))
    X = reconstruct(true_idx, true_coef, D)
    idx, coef = batch_omp(X, D, k, dtype="float64")
    order_t, order = np.argsort(true_idx, 1), np.argsort(idx, 1)
    np.testing.assert_array_equal(np.take_along_axis(idx, order, 1), np.take_along_axis(true_idx, order_t, 1))
    np.testing.assert_allclose(
        np.take_along_axis(coef, order, 1), np.take_along_axis(true_coef, order_t, 1), atol=1e-8
    )
    # with a generous budget and a tolerance it stops after the true support (slots padded with -1)
    idx2, _ = batch_omp(X, D, 10, tol=1e-10, dtype="float64")
    assert np.all((idx2 >= 0).sum(1) == k) and np.all(idx2[:, k:] == -1)


def test_torch_in_torch_out_and_batching(random_problem):
    X, D = random_problem
    idx_np, coef_np = batch_omp(X, D, 5)
    idx_t, coef_t = batch_omp(torch.from_numpy(X), torch.from_numpy(D), 5, batch_size=7)
    assert isinstance(idx_t, torch.Tensor) and idx_t.dtype == torch.long and coef_t.dtype == torch.float32
    np.testing.assert_array_equal(idx_t.numpy(), idx_np)
    np.testing.assert_allclose(coef_t.numpy(), coef_np, atol=1e-5)


def test_reconstruct_and_fit_coefs(random_problem):
    X, D = random_problem
    idx, coef = batch_omp(X, D, 8, tol=30.0, dtype="float64")
    assert (idx < 0).any()  # some items stopped early, so padding is exercised
    dense = batch_omp(X, D, 8, tol=30.0, dtype="float64", return_dense=True)
    np.testing.assert_allclose(reconstruct(idx, coef, D), dense @ D, atol=1e-10)
    np.testing.assert_allclose(fit_coefs(X, idx, D, dtype="float64"), coef, atol=1e-8)


def test_zero_signal_gets_empty_code(random_problem):
    _, D = random_problem
    idx, coef = batch_omp(np.zeros((2, 32)), D, 3)
    assert np.all(idx == -1) and np.all(coef == 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"X": np.full((3, 32), np.nan)},
        {"X": np.ones((3, 31))},
        {"X": np.ones(32)},
        {"n_nonzero": 65},
        {"n_nonzero": 0},
        {"tol": -1.0},
        {"min_cosine": 1.5},
        {"D": np.ones((4, 32)), "n_nonzero": 5},
        {"dtype": "int32"},
        {"X": np.array([["a"] * 32])},
    ],
)
def test_omp_bad_input(random_problem, kwargs):
    X, D = random_problem
    args = {"X": X, "D": D, "n_nonzero": 3} | kwargs
    with pytest.raises(InvalidInputError):
        batch_omp(args.pop("X"), args.pop("D"), **args)


def test_reconstruct_bad_indices(random_problem):
    _, D = random_problem
    with pytest.raises(InvalidInputError):
        reconstruct(np.array([[64]]), np.array([[1.0]]), D)
    with pytest.raises(InvalidInputError):
        reconstruct(np.array([[1, 2]]), np.array([[1.0]]), D)


# ----------------------------------------------------------------------------------------- learner
@pytest.fixture(scope="module")
def sklearn_reference_cosine(sparse_data) -> float:
    X, _ = sparse_data
    ref = MiniBatchDictionaryLearning(n_components=64, alpha=0.3, batch_size=256, max_iter=3, random_state=0)
    return _omp_cosine(X, ref.fit(X).components_, 3)


@pytest.mark.parametrize("method", ["online", "ksvd"])
def test_learner_matches_or_beats_sklearn(sparse_data, sklearn_reference_cosine, method):
    X, _ = sparse_data
    ref_cos = sklearn_reference_cosine
    dl = DictionaryLearner(64, 3, method=method, max_epochs=20, random_state=0).fit(X)
    ours = _omp_cosine(X, dl.dictionary_, 3)
    assert ours >= ref_cos - 0.005, (ours, ref_cos)
    assert dl.score(X) == pytest.approx(ours, abs=1e-3)
    D = dl.dictionary_
    assert D.dtype == np.float32 and D.shape == (64, 32)
    np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1.0, atol=1e-5)
    assert 1 <= dl.n_iter_ <= 20 and len(dl.history_) == dl.n_iter_


@pytest.mark.parametrize("method", ["online", "ksvd"])
def test_learner_deterministic(sparse_data, method):
    X = sparse_data[0][:1000]
    a = DictionaryLearner(32, 3, method=method, max_epochs=3, batch_size=128, random_state=7).fit(X)
    b = DictionaryLearner(32, 3, method=method, max_epochs=3, batch_size=128, random_state=7).fit(X)
    np.testing.assert_array_equal(a.dictionary_, b.dictionary_)
    assert a.history_ == b.history_
    c = DictionaryLearner(32, 3, method=method, max_epochs=3, batch_size=128, random_state=8).fit(X)
    assert not np.array_equal(a.dictionary_, c.dictionary_)


def test_learner_transform_roundtrip(sparse_data):
    X = sparse_data[0][:500]
    dl = DictionaryLearner(64, 3, min_cosine=0.999, max_epochs=5, random_state=0)
    idx, coef = dl.fit_transform(X)
    assert idx.shape == (500, 3) and coef.dtype == np.float32
    rec = dl.inverse_transform(idx, coef)
    cos = cosine_similarity(X, rec)
    assert np.all((cos >= 0.999 - 1e-4) | ((idx >= 0).sum(1) == 3))
    idx_t, _ = dl.transform(torch.from_numpy(X))
    np.testing.assert_array_equal(idx_t.numpy(), idx)


def test_partial_fit_and_distributed_stats(sparse_data):
    X = sparse_data[0]
    dl = DictionaryLearner(64, 3, random_state=0)
    for s in range(0, 1536, 256):
        dl.partial_fit(X[s : s + 256])
    assert dl.n_steps_ == 6
    np.testing.assert_allclose(np.linalg.norm(dl.dictionary_, axis=1), 1.0, atol=1e-5)
    # sufficient statistics are additive: two workers' halves sum to the whole batch's
    whole = dl.batch_stats(X[1536:2000])
    half1, half2 = dl.batch_stats(X[1536:1800]), dl.batch_stats(X[1800:2000])
    assert (half1.n + half2.n, whole.A.shape, whole.B.shape) == (whole.n, (64, 64), (64, 32))
    np.testing.assert_allclose(half1.A + half2.A, whole.A, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(half1.B + half2.B, whole.B, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(half1.usage + half2.usage, whole.usage)
    assert half1.cos_sum + half2.cos_sum == pytest.approx(whole.cos_sum, rel=1e-6)
    before = dl.score(X[1536:])
    dl.apply_batch_stats([half1, half2])  # one data-parallel step
    assert dl.n_steps_ == 7 and dl.score(X[1536:]) >= before - 0.01
    with pytest.raises(InvalidInputError, match="at least one"):
        dl.apply_batch_stats([])


def test_end_epoch_counts_and_stops_on_a_plateau():
    dl = DictionaryLearner(8, 2, epoch_tol=1e-3)
    dl.init_from_samples(np.random.default_rng(0).standard_normal((20, 4)))
    assert not dl.end_epoch(0.5) and not dl.end_epoch(0.6)
    assert dl.end_epoch(0.6005)  # improved by less than epoch_tol
    assert dl.n_iter_ == 3 and dl.history_ == [0.5, 0.6, 0.6005]


def test_sklearn_clone_and_params():
    from sklearn.base import clone

    dl = DictionaryLearner(16, 2, method="ksvd", random_state=3)
    c = clone(dl)
    assert c.get_params() == dl.get_params() and c is not dl
    assert dl.set_params(n_atoms=8).n_atoms == 8
    assert "n_atoms=8" in repr(dl)
    with pytest.raises(InvalidInputError):
        dl.set_params(bogus=1)


@pytest.mark.parametrize(
    "params, X",
    [
        ({"n_atoms": 4, "n_nonzero": 5}, None),
        ({"method": "lars"}, None),
        ({"n_atoms": 0}, None),
        ({"min_cosine": 2.0}, None),
        ({}, np.full((10, 32), np.inf)),
        ({}, np.ones((10,))),
        ({}, np.ones((0, 32))),
    ],
)
def test_learner_bad_input(params, X):
    X = np.random.default_rng(0).standard_normal((40, 32)) if X is None else X
    with pytest.raises(InvalidInputError):
        DictionaryLearner(**({"n_atoms": 8, "n_nonzero": 2, "max_epochs": 1} | params)).fit(X)


def test_learner_not_fitted_and_feature_mismatch():
    dl = DictionaryLearner(8, 2, max_epochs=1)
    with pytest.raises(InvalidInputError):
        dl.transform(np.ones((2, 4)))
    dl.fit(np.random.default_rng(0).standard_normal((40, 4)))
    with pytest.raises(InvalidInputError):
        dl.transform(np.ones((2, 5)))
    assert dl.fit(np.ones((40, 5)) + np.eye(40, 5)).dictionary_.shape == (8, 5)  # a refit may change d


def test_fewer_samples_than_atoms_and_float64():
    X = np.random.default_rng(0).standard_normal((10, 16))
    dl = DictionaryLearner(32, 2, max_epochs=2, dtype="float64", random_state=0).fit(X)
    assert dl.dictionary_.shape == (32, 16) and dl.dictionary_.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(dl.dictionary_, axis=1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------------------- synthetic, import
def test_make_sparse_embeddings():
    X, concepts, codes = make_sparse_embeddings(100, 64, 32, 3, 0.05, seed=1, return_truth=True)
    assert X.shape == (100, 64) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert concepts.shape == (32, 64) and np.all((codes != 0).sum(1) == 3)
    np.testing.assert_array_equal(X, make_sparse_embeddings(100, 64, 32, 3, 0.05, seed=1))
    with pytest.raises(InvalidInputError):
        make_sparse_embeddings(10, 8, 4, 5)


def test_import_does_not_load_torch():
    code = "import sys, semzip.sparse; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(__file__), os.pardir, "src")
    env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(src), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
