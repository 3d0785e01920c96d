"""The state of online dictionary learning (Mairal, Bach, Ponce & Sapiro 2009) and its dead-atom pool.

- :class:`OnlineStatistics`: the atoms ``D`` and the sufficient statistics ``A = sum code^T code``,
  ``B = sum code^T X``, accumulated with exponential forgetting; one block-coordinate pass updates the atoms.
- :class:`DeadAtomPool`: per-atom usage since the last check and the residuals of the worst-coded recent
  samples; atoms unused over a check period are replaced by normalised worst residuals.
- :class:`BatchStats`: what one mini-batch contributes, as numpy arrays that travel between processes.

``DictionaryLearner`` (``semzip.sparse.dictionary``) drives them; this module holds no fit loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from semzip.sparse.omp import reconstruct

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BatchStats", "DeadAtomPool", "OnlineStatistics", "batch_usage"]

UPDATE_BLOCK = 32


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


def batch_usage(X: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor, res2: torch.Tensor, D: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A coded batch's per-atom usage counts, and the residuals of its worst-coded samples (at most one per
    atom) with their squared norms."""
    import torch

    n_atoms = D.shape[0]
    valid = idx >= 0
    usage = torch.bincount(idx[valid], minlength=n_atoms)
    m = min(X.shape[0], n_atoms)
    err, worst = torch.topk(res2, m)
    resid = X[worst] - reconstruct(idx[worst], coef[worst], D)
    return usage, resid, err


class OnlineStatistics:
    """Atoms ``D`` (K, d) and the forgetting-weighted statistics ``A`` (K, K), ``B`` (K, d); ``weight`` is the
    statistics' total sample weight."""

    def __init__(self, D: torch.Tensor, A: torch.Tensor | None = None, B: torch.Tensor | None = None,
                 weight: float = 0.0) -> None:
        import torch

        K, d = D.shape
        self.D = D
        self.A = A if A is not None else torch.zeros((K, K), dtype=D.dtype, device=D.device)
        self.B = B if B is not None else torch.zeros((K, d), dtype=D.dtype, device=D.device)
        self.weight = weight

    def fold(self, A: torch.Tensor, B: torch.Tensor, n: int, window: float) -> None:
        """Add a step's statistics of ``n`` samples.

        Exponential forgetting: the statistics' total weight grows with the samples seen up to ``window``
        samples, then stays there; statistics gathered with an early, poor dictionary fade out instead of
        anchoring the atoms.
        """
        window = max(float(window), 1.0 * n)
        total = self.weight
        beta = (min(total + n, window) - n) / total if total > 0 else 0.0
        self.A.mul_(beta).add_(A)
        self.B.mul_(beta).add_(B)
        self.weight = beta * total + n

    def update_atoms(self, block: int = UPDATE_BLOCK) -> None:
        """One block-coordinate pass (Mairal et al. 2009, Algorithm 2) with atoms projected to unit norm.

        Atoms are visited in blocks of ``block`` (Jacobi inside a block, Gauss-Seidel across blocks): one
        small GEMM per block instead of one python-level GEMV per atom. Unused atoms are left alone, for
        re-initialisation.
        """
        import torch

        A, B, D = self.A, self.B, self.D
        K = D.shape[0]
        diag = A.diagonal()
        floor = 1e-10 * max(float(diag.max()), 1e-30)
        used = diag > floor
        for s in range(0, K, block):
            sl = slice(s, min(s + block, K))
            U = D[sl] + (B[sl] - A[sl] @ D) / diag[sl].clamp_min(floor).unsqueeze(1)
            nrm = U.norm(dim=1, keepdim=True)
            ok = (used[sl] & (nrm.squeeze(1) > 1e-10)).unsqueeze(1)
            D[sl] = torch.where(ok, U / nrm.clamp_min(1e-30), D[sl])

    def replace_atoms(self, j: torch.Tensor, atoms: torch.Tensor) -> None:
        """Atoms ``j`` become ``atoms`` (unit norm), their statistics forgotten."""
        self.D[j] = atoms
        self.A[j, :] = 0
        self.A[:, j] = 0
        self.B[j] = 0


class DeadAtomPool:
    """Per-atom usage since the last check and the residuals of the worst-coded samples seen since."""

    def __init__(self, usage: torch.Tensor, since_check: int = 0, res: torch.Tensor | None = None,
                 err: torch.Tensor | None = None) -> None:
        self.usage = usage  # (K,) long
        self.since_check = since_check
        self.res = res  # residuals of the worst-coded recent samples (None: none yet)
        self.err = err  # their squared norms

    @classmethod
    def empty(cls, n_atoms: int, device: torch.device) -> DeadAtomPool:
        import torch

        return cls(torch.zeros(n_atoms, dtype=torch.long, device=device))

    def note(self, usage: torch.Tensor, n: int, resid: torch.Tensor, err: torch.Tensor) -> None:
        """Count a batch of ``n`` samples: its atom usage and its worst residuals."""
        self.usage += usage
        self.since_check += n
        self._merge(resid, err)

    def _merge(self, resid: torch.Tensor, err: torch.Tensor) -> None:
        import torch

        if self.res is None:
            self.res, self.err = resid, err
        else:
            pool_res = torch.cat([self.res, resid])
            pool_err = torch.cat([self.err, err])
            err, keep = torch.topk(pool_err, min(len(pool_err), len(self.usage)))
            self.res, self.err = pool_res[keep], err

    def maybe_reinit(self, stats: OnlineStatistics, force: bool = False) -> int:
        """After ~10 * n_atoms samples (or when ``force``d), replace the atoms of ``stats`` unused since the
        last check by normalised worst residuals and start a new period; returns the atoms replaced."""
        n_atoms = len(self.usage)
        if not force and self.since_check < 10 * n_atoms:
            return 0
        replaced = 0
        dead = (self.usage == 0).nonzero().squeeze(1)
        if dead.numel() and self.res is not None:
            res = self.res
            nrm = res.norm(dim=1)
            ok = nrm > 1e-6
            res, nrm = res[ok], nrm[ok]
            replaced = min(dead.numel(), res.shape[0])
            if replaced:
                stats.replace_atoms(dead[:replaced], res[:replaced] / nrm[:replaced, None])
        self.usage.zero_()
        self.since_check = 0
        self.res = self.err = None
        return replaced
