"""Dictionary learning for OMP sparse codes, with the scikit-learn estimator API, in torch.

Two methods:

- ``"online"``: Mairal, Bach, Ponce & Sapiro (2009) mini-batch dictionary learning. Each mini-batch is
  coded with Batch-OMP; the sufficient statistics ``A = sum code^T code`` (n_atoms, n_atoms) and
  ``B = sum code^T X`` (n_atoms, d) are accumulated with scikit-learn's forgetting factor, then the atoms
  get one block-coordinate pass. ``compute_stats`` / ``update_from_stats`` expose the two halves so that a
  distributed fitter can sum statistics from several workers.
- ``"ksvd"``: approximate K-SVD (Rubinstein, Zibulevsky & Elad 2008): code the whole set, then update each
  atom and its coefficients with one power-iteration step on the residual restricted to its users.

Atoms that fall out of use are re-initialised from the residuals of the worst-reconstructed samples.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from semzip.errors import InvalidInputError
from semzip.sparse.omp import batch_omp, densify, reconstruct, resolve_dtype, to_tensor

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BatchStats", "DictionaryLearner"]

_METHODS = ("online", "ksvd")
_UPDATE_BLOCK = 32


@dataclass
class BatchStats:
    """What one mini-batch contributes to an online step (numpy, so it travels between processes).

    ``A = C^T C``, ``B = C^T X`` (C: the batch's dense codes), ``n`` samples, per-atom ``usage`` counts, the
    residuals of the worst-coded samples (candidates for re-initialising dead atoms) with their squared
    norms, and the sum of the samples' reconstruction cosines (for the epoch's fidelity).
    """

    A: np.ndarray
    B: np.ndarray
    n: int
    usage: np.ndarray
    worst_res: np.ndarray
    worst_err: np.ndarray
    cos_sum: float


_STATE_SCALARS = ("weight", "since_check", "n_steps_", "n_iter_", "n_reinit_")


class DictionaryLearner:
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

    # ----------------------------------------------------------------------------- sklearn plumbing
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as a dict (scikit-learn API)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> DictionaryLearner:
        """Set hyperparameters (scikit-learn API)."""
        valid = set(self._get_param_names())
        for key, value in params.items():
            if key not in valid:
                raise InvalidInputError(
                    f"unknown parameter {key!r} for DictionaryLearner; valid: {sorted(valid)}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) != v]
        return f"{type(self).__name__}({', '.join(changed)})"

    # ----------------------------------------------------------------------------- validation
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
        return batch_omp(
            X,
            D,
            self.n_nonzero,
            tol=self.tol,
            min_cosine=self.min_cosine,
            dtype=self._dt,
            return_residual=True,
        )

    # ----------------------------------------------------------------------------- state
    def _init_state(self, X: torch.Tensor) -> None:
        """Atoms = distinct random samples (random directions if there are fewer samples than atoms)."""
        import torch

        K, (n, d) = self.n_atoms, X.shape
        self._rng = np.random.default_rng(self.random_state)
        pick = self._rng.choice(n, size=min(n, K), replace=False)
        D = torch.empty((K, d), dtype=self._dt, device=self._dev)
        D[: len(pick)] = X[torch.from_numpy(pick).to(self._dev)]
        if len(pick) < K:
            D[len(pick) :] = torch.from_numpy(self._rng.standard_normal((K - len(pick), d))).to(D)
        norms = D.norm(dim=1)
        weak = norms < 1e-8  # zero samples: replace by random directions
        if bool(weak.any()):
            D[weak] = torch.from_numpy(self._rng.standard_normal((int(weak.sum()), d))).to(D)
        self._D = D / D.norm(dim=1, keepdim=True)
        self._A = torch.zeros((K, K), dtype=self._dt, device=self._dev)
        self._B = torch.zeros((K, d), dtype=self._dt, device=self._dev)
        self._usage = torch.zeros(K, dtype=torch.long, device=self._dev)
        self._weight = 0.0
        self._since_check = 0
        self._pool_res: torch.Tensor | None = None  # residuals of the worst-coded recent samples
        self._pool_err: torch.Tensor | None = None
        self.n_steps_ = 0
        self.n_iter_ = 0
        self.n_reinit_ = 0
        self.history_: list[float] = []
        self.n_features_in_ = d
        self._sync()

    def _sync(self) -> None:
        import torch

        self.dictionary_ = self._D.detach().to("cpu", torch.float32).numpy().copy()

    def _ensure_state(self, X: torch.Tensor) -> None:
        if not hasattr(self, "_D"):
            if hasattr(self, "dictionary_"):  # e.g. a dictionary assigned by hand or unpickled
                self._D = to_tensor(self.dictionary_, "dictionary_", ndim=2, dtype=self._dt, device=self._dev)
                self._init_stats_only()
            else:
                self._init_state(X)

    def _init_stats_only(self) -> None:
        import torch

        K, d = self._D.shape
        self._rng = np.random.default_rng(self.random_state)
        self._A = torch.zeros((K, K), dtype=self._dt, device=self._dev)
        self._B = torch.zeros((K, d), dtype=self._dt, device=self._dev)
        self._usage = torch.zeros(K, dtype=torch.long, device=self._dev)
        self._weight = 0.0
        self._since_check, self._pool_res, self._pool_err = 0, None, None
        self.n_steps_, self.n_iter_, self.n_reinit_ = 0, 0, 0
        self.history_ = []
        self.n_features_in_ = d

    # ----------------------------------------------------------------------------- online method
    def compute_stats(self, X: Any) -> tuple[Any, Any, int]:
        """Code ``X`` with the current dictionary and return its statistics ``(A, B, n)`` (numpy float64).

        ``A = code^T code`` (n_atoms, n_atoms), ``B = code^T X`` (n_atoms, d). Summing these over workers
        and passing the sums to ``update_from_stats`` is one distributed mini-batch step.
        """
        self._require_fitted()
        self._setup()
        Xt = self._tensor(X)
        idx, coef, _ = self._code(Xt, self._D)
        C = densify(idx, coef, self.n_atoms)
        return (C.T @ C).double().cpu().numpy(), (C.T @ Xt).double().cpu().numpy(), int(Xt.shape[0])

    def update_from_stats(self, A: Any, B: Any, n_samples: int) -> DictionaryLearner:
        """Fold mini-batch statistics (from ``compute_stats``, possibly summed) in and update the atoms."""
        self._require_fitted()
        self._setup()
        K, d = self._D.shape
        At = to_tensor(A, "A", ndim=2, dtype=self._dt, device=self._dev)
        Bt = to_tensor(B, "B", ndim=2, dtype=self._dt, device=self._dev)
        if tuple(At.shape) != (K, K) or tuple(Bt.shape) != (K, d):
            raise InvalidInputError(
                f"A must be ({K}, {K}) and B ({K}, {d}); got {tuple(At.shape)}, {tuple(Bt.shape)}"
            )
        if n_samples < 1:
            raise InvalidInputError(f"n_samples must be >= 1, got {n_samples!r}")
        self._fold_stats(At, Bt, int(n_samples))
        self._update_atoms()
        self._sync()
        return self

    def batch_stats(self, X: Any) -> BatchStats:
        """Code mini-batch ``X`` with the current dictionary; everything one online step needs from it.

        ``apply_batch_stats([batch_stats(X)])`` is exactly ``partial_fit(X)`` on a fitted learner; passing
        the stats of several batches (computed anywhere against the same dictionary) is one data-parallel
        step, summed in list order so that the result does not depend on which worker finished first.
        """
        self._require_fitted()
        self._setup()
        Xt = self._tensor(X)
        idx, coef, res2 = self._code(Xt, self._D)
        C = densify(idx, coef, self.n_atoms)
        valid = idx >= 0
        import torch

        usage = torch.bincount(idx[valid], minlength=self.n_atoms)
        m = min(Xt.shape[0], self.n_atoms)
        err, worst = torch.topk(res2, m)
        resid = Xt[worst] - reconstruct(idx[worst], coef[worst], self._D)
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

        def t_(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.array(a, copy=True)).to(self._dev, self._dt)

        A, B = t_(stats[0].A), t_(stats[0].B)
        for st in stats[1:]:
            A = A + t_(st.A)
            B = B + t_(st.B)
        n = sum(st.n for st in stats)
        self._fold_stats(A, B, n)
        for st in stats:
            self._usage += torch.from_numpy(np.array(st.usage, copy=True)).to(self._dev, torch.long)
            self._since_check += st.n
            self._merge_pool(t_(st.worst_res), t_(st.worst_err))
        self._update_atoms()
        self._maybe_reinit()
        self._sync()
        return self

    # ----------------------------------------------------------------------------- checkpoints
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The learner's whole working state as named numpy arrays (for ``np.savez``; no pickle).

        ``load_state_arrays`` on a learner with the same parameters continues exactly where this one was.
        """
        self._require_fitted()
        d = self._D.shape[1]
        pool_res = self._pool_res if self._pool_res is not None else self._D.new_zeros((0, d))
        pool_err = self._pool_err if self._pool_err is not None else self._D.new_zeros((0,))
        out = {
            "D": self._D, "A": self._A, "B": self._B, "usage": self._usage,
            "pool_res": pool_res, "pool_err": pool_err,
        }
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in out.items()}
        arrays["has_pool"] = np.array(self._pool_res is not None)
        arrays["weight"] = np.array(self._weight, dtype=np.float64)
        arrays["since_check"] = np.array(self._since_check, dtype=np.int64)
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

            self._D, self._A, self._B = t_("D"), t_("A"), t_("B")
            self._usage = t_("usage", torch.long)
            has_pool = bool(arrays["has_pool"])
            self._pool_res = t_("pool_res") if has_pool else None
            self._pool_err = t_("pool_err") if has_pool else None
            self._weight = float(arrays["weight"])
            self._since_check = int(arrays["since_check"])
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

    def init_from_samples(self, X: Any) -> DictionaryLearner:
        """Start a fit: atoms from the samples ``X`` (as ``fit`` does), statistics empty."""
        self._setup()
        for attr in ("_D", "dictionary_"):
            if hasattr(self, attr):
                delattr(self, attr)
        self._init_state(self._tensor(X))
        return self

    def partial_fit(self, X: Any, y: Any = None) -> DictionaryLearner:
        """One online step on a mini-batch ``X`` (initialises the dictionary from it on the first call)."""
        self._setup()
        Xt = self._tensor(X)
        self._ensure_state(Xt)
        self._online_step(Xt)
        self._sync()
        return self

    def _fold_stats(self, A: torch.Tensor, B: torch.Tensor, n: int) -> None:
        # Exponential forgetting: the statistics' total weight grows with the samples seen up to
        # ``window`` samples, then stays there; statistics gathered with an early, poor dictionary fade out
        # instead of anchoring the atoms.
        window = max(float(self._window()), 1.0 * n)
        total = self._weight
        beta = (min(total + n, window) - n) / total if total > 0 else 0.0
        self._A.mul_(beta).add_(A)
        self._B.mul_(beta).add_(B)
        self._weight = beta * total + n
        self.n_steps_ += 1

    def _window(self) -> float:
        return float(self.forget_window) if self.forget_window is not None else 4.0 * self.n_atoms

    def _update_atoms(self) -> None:
        """One block-coordinate pass (Mairal et al. 2009, Algorithm 2) with atoms projected to unit norm.

        Atoms are visited in blocks of ``_UPDATE_BLOCK`` (Jacobi inside a block, Gauss-Seidel across
        blocks): one small GEMM per block instead of one python-level GEMV per atom.
        """
        import torch

        A, B, D = self._A, self._B, self._D
        K = D.shape[0]
        diag = A.diagonal()
        floor = 1e-10 * max(float(diag.max()), 1e-30)
        used = diag > floor  # unused atoms are left alone, for re-initialisation
        block = getattr(self, "_block", _UPDATE_BLOCK)
        for s in range(0, K, block):
            sl = slice(s, min(s + block, K))
            U = D[sl] + (B[sl] - A[sl] @ D) / diag[sl].clamp_min(floor).unsqueeze(1)
            nrm = U.norm(dim=1, keepdim=True)
            ok = (used[sl] & (nrm.squeeze(1) > 1e-10)).unsqueeze(1)
            D[sl] = torch.where(ok, U / nrm.clamp_min(1e-30), D[sl])

    def _online_step(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx, coef, res2 = self._code(X, self._D)
        C = densify(idx, coef, self.n_atoms)
        self._fold_stats(C.T @ C, C.T @ X, X.shape[0])
        self._note_usage(X, idx, coef, res2)
        self._update_atoms()
        self._maybe_reinit()
        return res2, (X * X).sum(1)

    def _note_usage(self, X: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor, res2: torch.Tensor) -> None:
        import torch

        valid = idx >= 0
        self._usage += torch.bincount(idx[valid], minlength=self.n_atoms)
        self._since_check += X.shape[0]
        m = min(X.shape[0], self.n_atoms)
        err, worst = torch.topk(res2, m)
        resid = X[worst] - reconstruct(idx[worst], coef[worst], self._D)
        self._merge_pool(resid, err)

    def _merge_pool(self, resid: torch.Tensor, err: torch.Tensor) -> None:
        import torch

        if self._pool_res is None:
            self._pool_res, self._pool_err = resid, err
        else:
            pool_res = torch.cat([self._pool_res, resid])
            pool_err = torch.cat([self._pool_err, err])
            err, keep = torch.topk(pool_err, min(len(pool_err), self.n_atoms))
            self._pool_res, self._pool_err = pool_res[keep], err

    def _maybe_reinit(self, force: bool = False) -> None:
        """Replace atoms unused over the last ~10 * n_atoms samples by normalised worst residuals."""
        if not force and self._since_check < 10 * self.n_atoms:
            return
        dead = (self._usage == 0).nonzero().squeeze(1)
        if dead.numel() and self._pool_res is not None:
            res = self._pool_res
            nrm = res.norm(dim=1)
            ok = nrm > 1e-6
            res, nrm = res[ok], nrm[ok]
            n = min(dead.numel(), res.shape[0])
            if n:
                j = dead[:n]
                self._D[j] = res[:n] / nrm[:n, None]
                self._A[j, :] = 0
                self._A[:, j] = 0
                self._B[j] = 0
                self.n_reinit_ += n
        self._usage.zero_()
        self._since_check = 0
        self._pool_res = self._pool_err = None

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

    # ----------------------------------------------------------------------------- K-SVD
    def _fit_ksvd(self, X: torch.Tensor, progress: Any) -> None:
        for _it in range(self.max_epochs):
            idx, coef, res2 = self._code(X, self._D)
            mean_cos = float(_cosines(res2, (X * X).sum(1)).mean())
            self._ksvd_sweep(X, idx, coef, res2)
            self.n_steps_ += 1
            if progress is not None:
                progress.advance(self._task, X.shape[0])
            if self.end_epoch(mean_cos):
                break

    def _ksvd_sweep(self, X: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor, res2: torch.Tensor) -> None:
        """Approximate K-SVD atom updates (Gauss-Seidel over atoms), coefficients updated in place."""
        import torch

        n, k = idx.shape
        D = self._D
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat[flat >= 0], minlength=self.n_atoms).tolist()
        start = int((flat < 0).sum())
        coef_flat = coef.reshape(-1)
        # candidates for dead atoms: worst-coded samples, their residuals computed once
        n_dead = sum(c == 0 for c in counts)
        spare: list[torch.Tensor] = []
        if n_dead:
            worst = torch.topk(res2, min(n, n_dead)).indices
            r = X[worst] - reconstruct(idx[worst], coef[worst], D)
            spare = [v / v.norm() for v in r if float(v.norm()) > 1e-6]
        for j in range(self.n_atoms):
            cnt = counts[j]
            if cnt == 0:
                if spare:
                    D[j] = spare.pop(0)
                    self.n_reinit_ += 1
                continue
            pos = order[start : start + cnt]
            start += cnt
            rows = pos // k
            g = coef_flat[pos]
            Xi = X.index_select(0, rows)
            ri, rc = idx.index_select(0, rows), coef.index_select(0, rows)
            rvalid = ri >= 0
            ri0 = ri.clamp_min(0)
            rc = torch.where(rvalid, rc, torch.zeros_like(rc))
            dj = D[j].clone()
            # d = E^T g with E = X_I - C_I D + g d_j^T
            v = torch.zeros(self.n_atoms, dtype=D.dtype, device=D.device)
            v.index_add_(0, ri0.reshape(-1), (rc * g[:, None]).reshape(-1))
            dnew = g @ Xi - v @ D + dj * (g @ g)
            nrm = float(dnew.norm())
            if nrm <= 1e-10:
                continue
            dnew /= nrm
            # g = E d
            Dd = D @ dnew
            gnew = Xi @ dnew - (rc * Dd[ri0]).sum(1) + g * (dj @ dnew)
            D[j] = dnew
            coef_flat[pos] = gnew

    # ----------------------------------------------------------------------------- shared
    def end_epoch(self, mean_cos: float) -> bool:
        """Close an epoch: count it, record its mean cosine, and say whether to stop (``epoch_tol``)."""
        self.n_iter_ += 1
        prev = self.history_[-1] if self.history_ else None
        self.history_.append(mean_cos)
        if self.verbose:
            print(f"[DictionaryLearner] epoch {self.n_iter_}: mean cosine {mean_cos:.5f}")
        return prev is not None and self.epoch_tol > 0 and mean_cos - prev < self.epoch_tol

    def fit(self, X: Any, y: Any = None) -> DictionaryLearner:
        """Learn the dictionary from samples ``X`` (n, d) from scratch."""
        self._setup()
        for attr in ("_D", "dictionary_"):  # a refit starts from scratch, possibly with another d
            if hasattr(self, attr):
                delattr(self, attr)
        Xt = self._tensor(X)
        self._init_state(Xt)
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

    def transform(self, X: Any) -> tuple[Any, Any]:
        """Sparse codes ``(indices, coefs)`` (n, n_nonzero) of ``X``; unused slots have index -1."""
        import torch

        self._require_fitted()
        self._setup()
        Xt = self._tensor(X)
        D = self._current_dictionary()
        idx, coef, _ = self._code(Xt, D)
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

    def _require_fitted(self) -> None:
        if not hasattr(self, "dictionary_"):
            raise InvalidInputError("this DictionaryLearner is not fitted yet; call fit or partial_fit first")
        if not hasattr(self, "_D") or self._D.shape != tuple(self.dictionary_.shape):
            self._setup()
            self._D = to_tensor(self.dictionary_, "dictionary_", ndim=2, dtype=self._dt, device=self._dev)
            if not hasattr(self, "_A"):
                self._init_stats_only()

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


def _cosines(res2: torch.Tensor, xn2: torch.Tensor) -> torch.Tensor:
    """Cosine between x and its least-squares reconstruction from ``|r|^2`` and ``|x|^2``."""
    return (1.0 - res2 / xn2.clamp_min(1e-30)).clamp(0.0, 1.0).sqrt()
