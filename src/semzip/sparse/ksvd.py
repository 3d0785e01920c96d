"""The atom update of approximate K-SVD (Rubinstein, Zibulevsky & Elad 2008), one sweep over the atoms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from semzip.sparse.omp import reconstruct

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ksvd_sweep"]


def ksvd_sweep(X: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor, res2: torch.Tensor, D: torch.Tensor) -> int:
    """Update every atom of ``D`` in place (Gauss-Seidel over atoms) with one power-iteration step on the
    residual restricted to the samples that use it, and their coefficients in ``coef`` with it. Unused atoms
    are replaced by the normalised residuals of the worst-coded samples; returns how many were."""
    import torch

    n_atoms = D.shape[0]
    k = idx.shape[1]
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat[flat >= 0], minlength=n_atoms).tolist()
    start = int((flat < 0).sum())
    coef_flat = coef.reshape(-1)
    spare = _spare_directions(X, idx, coef, res2, D, sum(c == 0 for c in counts))
    n_reinit = 0
    for j in range(n_atoms):
        cnt = counts[j]
        if cnt == 0:
            if spare:
                D[j] = spare.pop(0)
                n_reinit += 1
            continue
        pos = order[start : start + cnt]
        start += cnt
        _update_atom(X, idx, coef, D, j, pos, coef_flat, k)
    return n_reinit


def _spare_directions(X: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor, res2: torch.Tensor,
                      D: torch.Tensor, n_dead: int) -> list[torch.Tensor]:
    """Candidates for dead atoms: the normalised residuals of the ``n_dead`` worst-coded samples."""
    import torch

    if not n_dead:
        return []
    worst = torch.topk(res2, min(X.shape[0], n_dead)).indices
    r = X[worst] - reconstruct(idx[worst], coef[worst], D)
    return [v / v.norm() for v in r if float(v.norm()) > 1e-6]


def _update_atom(X: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor, D: torch.Tensor, j: int,
                 pos: torch.Tensor, coef_flat: torch.Tensor, k: int) -> None:
    """Atom ``j`` and its coefficients (at flat code positions ``pos``) from the residual of its users."""
    import torch

    rows = pos // k
    g = coef_flat[pos]
    Xi = X.index_select(0, rows)
    ri, rc = idx.index_select(0, rows), coef.index_select(0, rows)
    rvalid = ri >= 0
    ri0 = ri.clamp_min(0)
    rc = torch.where(rvalid, rc, torch.zeros_like(rc))
    dj = D[j].clone()
    # d = E^T g with E = X_I - C_I D + g d_j^T
    v = torch.zeros(D.shape[0], dtype=D.dtype, device=D.device)
    v.index_add_(0, ri0.reshape(-1), (rc * g[:, None]).reshape(-1))
    dnew = g @ Xi - v @ D + dj * (g @ g)
    nrm = float(dnew.norm())
    if nrm <= 1e-10:
        return
    dnew /= nrm
    # g = E d
    Dd = D @ dnew
    gnew = Xi @ dnew - (rc * Dd[ri0]).sum(1) + g * (dj @ dnew)
    D[j] = dnew
    coef_flat[pos] = gnew
