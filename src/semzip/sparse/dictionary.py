"""Dictionary learning for OMP sparse codes, with the scikit-learn estimator API, in torch.

Two methods:

- ``"online"``: Mairal, Bach, Ponce & Sapiro (2009) mini-batch dictionary learning. Each mini-batch is
  coded with Batch-OMP; the sufficient statistics ``A = sum code^T code`` (n_atoms, n_atoms) and
  ``B = sum code^T X`` (n_atoms, d) are accumulated with exponential forgetting, then the atoms get one
  block-coordinate pass (:mod:`semzip.sparse.online`). ``batch_stats`` / ``apply_batch_stats`` expose the
  two halves of a step, so that a distributed fitter sums statistics from several workers; ``end_epoch``
  closes an epoch that such a fitter drives itself.
- ``"ksvd"``: approximate K-SVD (Rubinstein, Zibulevsky & Elad 2008): code the whole set, then update each
  atom and its coefficients with one power-iteration step on the residual restricted to its users
  (:mod:`semzip.sparse.ksvd`).

Atoms that fall out of use are re-initialised from the residuals of the worst-reconstructed samples. The
class below is the fit loops and the public API; the parameter API comes from :mod:`semzip.sparse.params`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from semzip.errors import InvalidInputError
from semzip.sparse.ksvd import ksvd_sweep
from semzip.sparse.omp import batch_omp, densify, reconstruct, resolve_dtype, to_tensor
from semzip.sparse.online import BatchStats, DeadAtomPool, OnlineStatistics, batch_usage
from semzip.sparse.params import ParamsMixin

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BatchStats", "DictionaryLearner"]

_METHODS = ("online", "ksvd")


class DictionaryLearner(ParamsMixin):
    """Learn ``n_atoms`` unit-norm atoms so that each sample is well approximated by a few of them (OMP).

    Parameters
    ----------
    n_atoms: dictionary size.
    n_nonzero: sparsity budget per sample (atoms per code), used by ``fit`` and ``transform``.
    tol: optional squared-residual target at which OMP stops early (scikit-learn's ``orthogonal_mp``).
    min_cosine: optional target cosine between a sample and its reconstruction at which OMP stops early.
    method: ``"online"`` (mini-batch, Mairal et al. 2009) or ``"ksvd"`` (approximate K-SVD).
    max_epochs: passes over the data (K-SVD: iterations).
    epoch_tol: stop early when the mean cosine of an epoch improves by less than this (0 disables).
    batch_size: mini-batch size of the online method (and chunk size of OMP in K-SVD).
    forget_window: online method: the statistics A, B average over roughly the last this many samples
        (exponential forgetting; default ``4 * n_atoms``, never less than a batch). Measured: a short window
        escapes poor early atoms faster than scikit-learn's long memory.
    shuffle: shuffle samples each epoch (online method).
    device, dtype: torch device (default CPU) and compute dtype (float32 default, or float64).
    random_state: seed for initialisation and shuffling; fits are deterministic given it.
    verbose: show a progress bar (rich) and per-epoch mean cosine.

    Attributes
    ----------
    dictionary_: (n_atoms, d) float32 array, unit-norm rows.
    n_iter_: epochs (iterations) run. n_steps_: mini-batch updates applied. n_features_in_: d.
    history_: mean cosine between samples and their reconstructions, per epoch (measured while coding).
    n_reinit_: atoms re-initialised from badly reconstructed samples.
    """

    def __init__(
        self,
        n_atoms: int = 256,
        n_nonzero: int = 8,
        *,
        tol: float | None = None,
        min_cosine: float | None = None,
        method: str = "online",
        max_epochs: int = 10,
        epoch_tol: float = 1e-4,
        batch_size: int = 1024,
        forget_window: int | None = None,
        shuffle: bool = True,
        device: Any = None,
        dtype: Any = "float32",
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.n_atoms = n_atoms
        self.n_nonzero = n_nonzero
        self.tol = tol
        self.min_cosine = min_cosine
        self.method = method
        self.max_epochs = max_epochs
        self.epoch_tol = epoch_tol
        self.batch_size = batch_size
        self.forget_window = forget_window
        self.shuffle = shuffle
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any = None) -> DictionaryLearner:
        """Learn the dictionary from samples ``X`` (n, d) from scratch."""
        Xt = self._fresh_start(X)
        progress = self._progress(Xt.shape[0] * self.max_epochs)
        try:
            if self.method == "online":
                self._fit_online(Xt, progress)
            else:
                self._fit_ksvd(Xt, progress)
        finally:
            if progress is not None:
                progress.stop()
        self._sync()
        return self

    def _fit_online(self, X: torch.Tensor, progress: Any) -> None:
        import torch

        n = X.shape[0]
        bs = min(self.batch_size, n)
        for _epoch in range(self.max_epochs):
            order = self._rng.permutation(n) if self.shuffle else np.arange(n)
            order_t = torch.from_numpy(order).to(self._dev)
            cos_sum = 0.0
            for s in range(0, n, bs):
                xb = X.index_select(0, order_t[s : s + bs])
                res2, xn2 = self._online_step(xb)
                cos_sum += float(_cosines(res2, xn2).sum())
                if progress is not None:
                    progress.advance(self._task, xb.shape[0])
            if self.end_epoch(cos_sum / n):
                break

    def _fit_ksvd(self, X: torch.Tensor, progress: Any) -> None:
        for _it in range(self.max_epochs):
            idx, coef, res2 = self._code(X, self._stats.D)
            mean_cos = float(_cosines(res2, (X * X).sum(1)).mean())
            self.n_reinit_ += ksvd_sweep(X, idx, coef, res2, self._stats.D)
            self.n_steps_ += 1
            if progress is not None:
                progress.advance(self._task, X.shape[0])
            if self.end_epoch(mean_cos):
                break

    def end_epoch(self, mean_cos: float) -> bool:
        """Close an epoch: count it, record its mean cosine, and say whether to stop (``epoch_tol``)."""
        self.n_iter_ += 1
        prev = self.history_[-1] if self.history_ else None
        self.history_.append(mean_cos)
        if self.verbose:
            print(f"[DictionaryLearner] epoch {self.n_iter_}: mean cosine {mean_cos:.5f}")
        return prev is not None and self.epoch_tol > 0 and mean_cos - prev < self.epoch_tol

    def init_from_samples(self, X: Any) -> DictionaryLearner:
        """Start a fit: atoms from the samples ``X`` (as ``fit`` does), statistics empty."""
        self._fresh_start(X)
        return self

    def _fresh_start(self, X: Any) -> torch.Tensor:
        """Forget any earlier fit (a refit may change d), start from atoms drawn from ``X``; ``X`` as a tensor."""
        self._setup()
        for attr in ("_stats", "dictionary_"):
            if hasattr(self, attr):
                delattr(self, attr)
        Xt = self._tensor(X)
        self._rng = np.random.default_rng(self.random_state)
        self._start(_initial_atoms(Xt, self.n_atoms, self._rng, self._dt, self._dev))
        return Xt

    # ----------------------------------------------------------------------------- online steps
    def partial_fit(self, X: Any, y: Any = None) -> DictionaryLearner:
        """One online step on a mini-batch ``X`` (initialises the dictionary from it on the first call)."""
        self._setup()
        Xt = self._tensor(X)
        if not hasattr(self, "_stats"):
            if hasattr(self, "dictionary_"):  # e.g. a dictionary assigned by hand or unpickled
                self._adopt_dictionary()
            else:
                self._fresh_start(Xt)
        self._online_step(Xt)
        self._sync()
        return self

    def _online_step(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        D = self._stats.D
        idx, coef, res2 = self._code(X, D)
        C = densify(idx, coef, self.n_atoms)
        self._fold(C.T @ C, C.T @ X, X.shape[0])
        usage, resid, err = batch_usage(X, idx, coef, res2, D)
        self._pool.note(usage, X.shape[0], resid, err)
        self._stats.update_atoms()
        self.n_reinit_ += self._pool.maybe_reinit(self._stats)
        return res2, (X * X).sum(1)

    def batch_stats(self, X: Any) -> BatchStats:
        """Code mini-batch ``X`` with the current dictionary; everything one online step needs from it.

        ``apply_batch_stats([batch_stats(X)])`` is exactly ``partial_fit(X)`` on a fitted learner; passing
        the stats of several batches (computed anywhere against the same dictionary) is one data-parallel
        step, summed in list order so that the result does not depend on which worker finished first.
        """
        self._require_fitted()
        self._setup()
        Xt = self._tensor(X)
        D = self._stats.D
        idx, coef, res2 = self._code(Xt, D)
        C = densify(idx, coef, self.n_atoms)
        usage, resid, err = batch_usage(Xt, idx, coef, res2, D)
        cos_sum = float(_cosines(res2, (Xt * Xt).sum(1)).sum())

        def np_(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy()

        return BatchStats(np_(C.T @ C), np_(C.T @ Xt), int(Xt.shape[0]), np_(usage), np_(resid), np_(err), cos_sum)

    def apply_batch_stats(self, stats: list[BatchStats]) -> DictionaryLearner:
        """One online step from the statistics of one or more mini-batches (see ``batch_stats``)."""
        import torch

        self._require_fitted()
        self._setup()
        if not stats:
            raise InvalidInputError("apply_batch_stats needs at least one BatchStats")

        def t_(a: np.ndarray, dtype: Any = None) -> torch.Tensor:
            return torch.from_numpy(np.array(a, copy=True)).to(self._dev, dtype or self._dt)

        A, B = t_(stats[0].A), t_(stats[0].B)
        for st in stats[1:]:
            A = A + t_(st.A)
            B = B + t_(st.B)
        self._fold(A, B, sum(st.n for st in stats))
        for st in stats:
            self._pool.note(t_(st.usage, torch.long), st.n, t_(st.worst_res), t_(st.worst_err))
        self._stats.update_atoms()
        self.n_reinit_ += self._pool.maybe_reinit(self._stats)
        self._sync()
        return self

    def _fold(self, A: torch.Tensor, B: torch.Tensor, n: int) -> None:
        window = float(self.forget_window) if self.forget_window is not None else 4.0 * self.n_atoms
        self._stats.fold(A, B, n, window)
        self.n_steps_ += 1

    # ----------------------------------------------------------------------------- checkpoints
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The learner's whole working state as named numpy arrays (for ``np.savez``; no pickle).

        ``load_state_arrays`` on a learner with the same parameters continues exactly where this one was.
        """
        self._require_fitted()
        st, pool = self._stats, self._pool
        d = st.D.shape[1]
        out = {
            "D": st.D, "A": st.A, "B": st.B, "usage": pool.usage,
            "pool_res": pool.res if pool.res is not None else st.D.new_zeros((0, d)),
            "pool_err": pool.err if pool.err is not None else st.D.new_zeros((0,)),
        }
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in out.items()}
        arrays["has_pool"] = np.array(pool.res is not None)
        arrays["weight"] = np.array(st.weight, dtype=np.float64)
        arrays["since_check"] = np.array(pool.since_check, dtype=np.int64)
        for name in ("n_steps_", "n_iter_", "n_reinit_"):
            arrays[name] = np.array(getattr(self, name), dtype=np.int64)
        arrays["history_"] = np.asarray(self.history_, dtype=np.float64)
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> DictionaryLearner:
        """Restore a state saved by ``state_arrays``."""
        import torch

        self._setup()
        try:
            D = np.asarray(arrays["D"])
            K, d = D.shape
            if K != self.n_atoms:
                raise InvalidInputError(f"the saved state has {K} atoms but n_atoms={self.n_atoms}")

            def t_(name: str, dtype: Any = None) -> torch.Tensor:
                return torch.from_numpy(np.array(arrays[name])).to(self._dev, dtype or self._dt)

            has_pool = bool(arrays["has_pool"])
            self._stats = OnlineStatistics(t_("D"), t_("A"), t_("B"), float(arrays["weight"]))
            self._pool = DeadAtomPool(t_("usage", torch.long), int(arrays["since_check"]),
                                      t_("pool_res") if has_pool else None, t_("pool_err") if has_pool else None)
            self.n_steps_, self.n_iter_, self.n_reinit_ = (
                int(arrays["n_steps_"]), int(arrays["n_iter_"]), int(arrays["n_reinit_"])
            )
            self.history_ = [float(v) for v in np.asarray(arrays["history_"]).ravel()]
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInputError(f"not a DictionaryLearner state ({exc!r})") from None
        self._rng = np.random.default_rng(self.random_state)
        self.n_features_in_ = d
        self._sync()
        return self

    # ----------------------------------------------------------------------------- state
    def _start(self, D: torch.Tensor) -> None:
        """Fresh working state around atoms ``D``: empty statistics and pool, counters at zero."""
        K, d = D.shape
        self._stats = OnlineStatistics(D)
        self._pool = DeadAtomPool.empty(K, self._dev)
        self.n_steps_, self.n_iter_, self.n_reinit_ = 0, 0, 0
        self.history_: list[float] = []
        self.n_features_in_ = d
        self._sync()

    def _adopt_dictionary(self) -> None:
        """Working state around ``dictionary_`` set from outside (by hand, unpickled, or sent to a worker)."""
        self._rng = np.random.default_rng(self.random_state)
        self._start(to_tensor(self.dictionary_, "dictionary_", ndim=2, dtype=self._dt, device=self._dev))

    def _sync(self) -> None:
        import torch

        self.dictionary_ = self._stats.D.detach().to("cpu", torch.float32).numpy().copy()

    def _require_fitted(self) -> None:
        if not hasattr(self, "dictionary_"):
            raise InvalidInputError("this DictionaryLearner is not fitted yet; call fit or partial_fit first")
        if not hasattr(self, "_stats") or self._stats.D.shape != tuple(self.dictionary_.shape):
            self._setup()
            self._adopt_dictionary()

    # ----------------------------------------------------------------------------- transform
    def transform(self, X: Any) -> tuple[Any, Any]:
        """Sparse codes ``(indices, coefs)`` (n, n_nonzero) of ``X``; unused slots have index -1."""
        import torch

        self._require_fitted()
        self._setup()
        Xt = self._tensor(X)
        idx, coef, _ = self._code(Xt, self._current_dictionary())
        if isinstance(X, torch.Tensor):
            return idx, coef
        return idx.cpu().numpy(), coef.cpu().numpy()

    def fit_transform(self, X: Any, y: Any = None) -> tuple[Any, Any]:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    def inverse_transform(self, indices: Any, coefs: Any) -> Any:
        """Reconstruct samples from their codes."""
        self._require_fitted()
        self._setup()
        return reconstruct(indices, coefs, self.dictionary_, dtype=self._dt)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean cosine between samples and their sparse reconstructions (higher is better)."""
        self._require_fitted()
        self._setup()
        Xt = self._tensor(X)
        _, _, res2 = self._code(Xt, self._current_dictionary())
        return float(_cosines(res2, (Xt * Xt).sum(1)).mean())

    def _current_dictionary(self) -> torch.Tensor:
        D = to_tensor(self.dictionary_, "dictionary_", ndim=2, dtype=self._dt, device=self._dev)
        if D.shape[0] != self.n_atoms:
            raise InvalidInputError(f"dictionary_ has {D.shape[0]} atoms but n_atoms={self.n_atoms}")
        return D

    # ----------------------------------------------------------------------------- plumbing
    def _check_params(self) -> None:
        def pos_int(name: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {v!r}")

        for name in ("n_atoms", "n_nonzero", "max_epochs", "batch_size"):
            pos_int(name)
        if self.forget_window is not None:
            pos_int("forget_window")
        if self.n_nonzero > self.n_atoms:
            raise InvalidInputError(f"n_nonzero={self.n_nonzero} exceeds n_atoms={self.n_atoms}; lower it")
        if self.method not in _METHODS:
            raise InvalidInputError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.tol is not None and not (np.isfinite(self.tol) and self.tol >= 0):
            raise InvalidInputError(f"tol must be a finite number >= 0, got {self.tol!r}")
        if self.min_cosine is not None and not (np.isfinite(self.min_cosine) and -1 <= self.min_cosine <= 1):
            raise InvalidInputError(f"min_cosine must lie in [-1, 1], got {self.min_cosine!r}")
        if not (np.isfinite(self.epoch_tol) and self.epoch_tol >= 0):
            raise InvalidInputError(f"epoch_tol must be >= 0, got {self.epoch_tol!r}")

    def _setup(self) -> None:
        import torch

        self._check_params()
        self._dt = resolve_dtype(self.dtype)
        self._dev = torch.device(self.device if self.device is not None else "cpu")

    def _tensor(self, X: Any, name: str = "X") -> torch.Tensor:
        t = to_tensor(X, name, ndim=2, dtype=self._dt, device=self._dev)
        if hasattr(self, "dictionary_") and t.shape[1] != self.dictionary_.shape[1]:
            raise InvalidInputError(
                f"{name} has {t.shape[1]} features but the dictionary was fit on {self.dictionary_.shape[1]}"
            )
        if t.shape[0] == 0:
            raise InvalidInputError(f"{name} has no samples")
        return t

    def _code(self, X: torch.Tensor, D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return batch_omp(X, D, self.n_nonzero, tol=self.tol, min_cosine=self.min_cosine, dtype=self._dt,
                         return_residual=True)

    def _progress(self, total: int) -> Any:
        if not self.verbose:
            return None
        try:
            from rich.progress import Progress
        except ImportError:
            return None
        progress = Progress(transient=True)
        self._task = progress.add_task(f"dictionary ({self.method})", total=total)
        progress.start()
        return progress

    def __getstate__(self) -> dict[str, Any]:
        # pickle the public state; torch working tensors are rebuilt on demand
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def _initial_atoms(X: torch.Tensor, K: int, rng: np.random.Generator, dt: Any, dev: Any) -> torch.Tensor:
    """Atoms = distinct random samples (random directions if there are fewer samples than atoms, or for
    zero samples), normalised."""
    import torch

    n, d = X.shape
    pick = rng.choice(n, size=min(n, K), replace=False)
    D = torch.empty((K, d), dtype=dt, device=dev)
    D[: len(pick)] = X[torch.from_numpy(pick).to(dev)]
    if len(pick) < K:
        D[len(pick) :] = torch.from_numpy(rng.standard_normal((K - len(pick), d))).to(D)
    norms = D.norm(dim=1)
    weak = norms < 1e-8  # zero samples: replace by random directions
    if bool(weak.any()):
        D[weak] = torch.from_numpy(rng.standard_normal((int(weak.sum()), d))).to(D)
    return D / D.norm(dim=1, keepdim=True)


def _cosines(res2: torch.Tensor, xn2: torch.Tensor) -> torch.Tensor:
    """Cosine between x and its least-squares reconstruction from ``|r|^2`` and ``|x|^2``."""
    return (1.0 - res2 / xn2.clamp_min(1e-30)).clamp(0.0, 1.0).sqrt()
