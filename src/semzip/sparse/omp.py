"""Batched Orthogonal Matching Pursuit (Batch-OMP, Rubinstein, Zibulevsky & Elad 2008) in torch.

Conventions follow scikit-learn: signals are rows of ``X`` (n, d), atoms are rows of ``D`` (n_atoms, d),
and ``X ~= code @ D``. Sparse codes are returned as ``(indices, coefs)``, both (n, k): atom indices in the
order OMP selected them (most important first) and their least-squares weights. Items that stopped early
(tolerance reached, or the residual became orthogonal to every atom) pad the unused slots with index ``-1``
and coefficient ``0``.

torch is imported inside the functions so that ``import semzip.sparse`` works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from semzip.errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["batch_omp", "cosine_similarity", "densify", "fit_coefs", "reconstruct", "resolve_dtype", "to_tensor"]

# Memory budget (bytes) for the per-batch buffer of selected Gram rows, which sets the default batch size.
_GRAM_BUFFER_BYTES = 256 * 2**20


def resolve_dtype(dtype: Any) -> torch.dtype:
    """Map ``None``/"float32"/"float64"/numpy or torch dtypes to a torch float dtype (float32 by default)."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        out = dtype
    else:
        try:
            out = {"float32": torch.float32, "float64": torch.float64}[np.dtype(dtype).name]
        except (TypeError, KeyError):
            raise InvalidInputError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if out not in (torch.float32, torch.float64):
        raise InvalidInputError(f"dtype must be float32 or float64, got {dtype!r}")
    return out


def to_tensor(a: Any, name: str, *, ndim: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """Convert an array-like to a finite torch tensor of the given rank, dtype and device."""
    import torch

    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        try:
            arr = np.asarray(a)
        except Exception as exc:
            raise InvalidInputError(f"{name} must be an array, got {type(a).__name__}") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InvalidInputError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim != ndim:
        raise InvalidInputError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.is_complex():
        raise InvalidInputError(f"{name} must be real, got {t.dtype}")
    t = t.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise InvalidInputError(f"{name} contains NaN or infinite values; clean the data first")
    return t


def _default_device(*arrays: Any) -> Any:
    import torch

    for a in arrays:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


def _omp_chunk(
    a0: torch.Tensor,
    xn2: torch.Tensor,
    G: torch.Tensor,
    k_max: int,
    target: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-OMP on one chunk given ``a0 = X D^T`` (b, K), ``xn2 = |x|^2`` (b,), ``G = D D^T``.

    ``target`` (b,) is the squared residual norm at which an item stops (None: run to ``k_max``).
    Returns indices (b, k_max), coefs (b, k_max), squared residual norms (b,).
    """
    import torch

    b, K = a0.shape
    dev, dt = a0.device, a0.dtype
    eps = torch.finfo(dt).eps
    tiny = torch.finfo(dt).tiny
    idx_out = torch.full((b, k_max), -1, dtype=torch.long, device=dev)
    coef_out = torch.zeros((b, k_max), dtype=dt, device=dev)
    res_out = xn2.clone()
    if b == 0 or k_max == 0:
        return idx_out, coef_out, res_out
    gdiag = torch.diagonal(G)

    # Working set: rows still running. ``rows`` maps them to chunk positions; ``live`` marks rows that are
    # still running among the working set (finished rows stay, frozen, until the set is compacted).
    rows = torch.arange(b, device=dev)
    live = torch.ones(b, dtype=torch.bool, device=dev)
    if target is not None:
        live &= xn2 > target
    a0_w, xn2_w = a0, xn2
    tgt_w = target
    gsel = torch.empty((b, k_max, K), dtype=dt, device=dev)  # rows G[I_s, :]
    L = torch.zeros((b, k_max, k_max), dtype=dt, device=dev)
    I_w = torch.zeros((b, k_max), dtype=torch.long, device=dev)
    gamma = torch.zeros((b, 0), dtype=dt, device=dev)
    res2 = xn2.clone()

    def finalize(mask: torch.Tensor, s: int) -> None:
        r = rows[mask]
        if s > 0:
            idx_out[r, :s] = I_w[mask, :s]
            coef_out[r, :s] = gamma[mask]
        res_out[r] = res2[mask]

    for s in range(k_max):
        n_live = int(live.sum())
        if n_live == 0:
            return idx_out, coef_out, res_out
        if n_live <= 0.75 * rows.numel():  # compact: drop finished rows from the working set
            keep = live.nonzero().squeeze(1)
            rows, a0_w, xn2_w, gsel, L, I_w, gamma, res2 = (
                t.index_select(0, keep) for t in (rows, a0_w, xn2_w, gsel, L, I_w, gamma, res2)
            )
            if tgt_w is not None:
                tgt_w = tgt_w.index_select(0, keep)
            live = torch.ones(rows.numel(), dtype=torch.bool, device=dev)

        if s == 0:
            alpha = a0_w.abs()
        else:
            alpha = (a0_w - torch.bmm(gamma.unsqueeze(1), gsel[:, :s]).squeeze(1)).abs_()
            alpha.scatter_(1, I_w[:, :s], 0.0)
        aval, j = alpha.max(dim=1)
        g_row = G.index_select(0, j)
        gjj = gdiag.index_select(0, j)
        if s == 0:
            diag2 = gjj
            w = None
        else:
            gvec = g_row.gather(1, I_w[:, :s])
            w = torch.linalg.solve_triangular(L[:, :s, :s], gvec.unsqueeze(-1), upper=False).squeeze(-1)
            diag2 = gjj - (w * w).sum(1)
        # Stop an item when its residual is orthogonal to all atoms or the new atom is linearly dependent.
        amax = a0_w.abs().amax(dim=1)
        degenerate = live & ((aval <= 1e3 * eps * amax + tiny) | (diag2 <= 1e2 * eps * gjj))
        if bool(degenerate.any()):
            finalize(degenerate, s)
            live = live & ~degenerate
        gsel[:, s] = g_row
        if w is not None:
            L[:, s, :s] = w
        L[:, s, s] = diag2.clamp_min(tiny).sqrt()
        I_w[:, s] = j
        rhs = a0_w.gather(1, I_w[:, : s + 1])
        gamma = torch.cholesky_solve(rhs.unsqueeze(-1), L[:, : s + 1, : s + 1]).squeeze(-1)
        res2 = (xn2_w - (gamma * rhs).sum(1)).clamp_min(0.0)
        if s + 1 == k_max:
            finalize(live, s + 1)
        elif tgt_w is not None:
            done = live & (res2 <= tgt_w)
            if bool(done.any()):
                finalize(done, s + 1)
                live = live & ~done
    return idx_out, coef_out, res_out


def batch_omp(
    X: Any,
    D: Any,
    n_nonzero: int | None = None,
    *,
    tol: float | None = None,
    min_cosine: float | None = None,
    batch_size: int | None = None,
    device: Any = None,
    dtype: Any = None,
    return_dense: bool = False,
    return_residual: bool = False,
) -> Any:
    """Sparse-code each row of ``X`` over the atoms (rows) of ``D`` with Batch-OMP.

    Stops an item after ``n_nonzero`` atoms, or once its squared residual norm is ``<= tol`` (scikit-learn's
    ``orthogonal_mp`` meaning), or once the cosine between it and its reconstruction is ``>= min_cosine``,
    whichever comes first. With neither ``tol`` nor ``min_cosine``, ``n_nonzero`` defaults to 10% of ``d``
    (as in scikit-learn); with one of them and no ``n_nonzero``, the cap is ``min(n_atoms, d)``.

    Returns ``(indices, coefs)`` (n, k) or, with ``return_dense``, the (n, n_atoms) code; with
    ``return_residual`` the squared residual norms (n,) are appended. numpy in, numpy out; torch in, torch
    out (on ``device``, default the input's device). Computation is float32 unless ``dtype="float64"``.
    """
    import torch

    if device is None:
        device = _default_device(X, D)
    device = torch.device(device)
    dt = resolve_dtype(dtype)
    as_numpy = not isinstance(X, torch.Tensor)
    Xt = to_tensor(X, "X", ndim=2, dtype=dt, device=device)
    Dt = to_tensor(D, "D", ndim=2, dtype=dt, device=device)
    n, d = Xt.shape
    K = Dt.shape[0]
    if Dt.shape[1] != d:
        raise InvalidInputError(f"X has {d} features but the dictionary atoms have {Dt.shape[1]}")
    if K == 0:
        raise InvalidInputError("the dictionary has no atoms")
    if tol is not None and not (np.isfinite(tol) and tol >= 0):
        raise InvalidInputError(f"tol must be a finite number >= 0, got {tol!r}")
    if min_cosine is not None and not (np.isfinite(min_cosine) and -1.0 <= min_cosine <= 1.0):
        raise InvalidInputError(f"min_cosine must lie in [-1, 1], got {min_cosine!r}")
    if n_nonzero is None:
        k_max = min(K, d) if (tol is not None or min_cosine is not None) else max(int(0.1 * d), 1)
    else:
        if isinstance(n_nonzero, bool) or not isinstance(n_nonzero, (int, np.integer)) or n_nonzero < 1:
            raise InvalidInputError(f"n_nonzero must be a positive integer, got {n_nonzero!r}")
        k_max = int(n_nonzero)
        if k_max > K:
            raise InvalidInputError(f"n_nonzero={k_max} exceeds the number of atoms ({K}); lower it")
    if batch_size is None:
        per_row = (k_max + 2) * K * Dt.element_size()
        batch_size = int(min(max(n, 1), 16384, max(64, _GRAM_BUFFER_BYTES // per_row)))
    elif batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size!r}")

    G = Dt @ Dt.T
    idx = torch.empty((n, k_max), dtype=torch.long, device=device)
    coef = torch.empty((n, k_max), dtype=dt, device=device)
    res = torch.empty((n,), dtype=dt, device=device)
    for start in range(0, n, batch_size):
        xb = Xt[start : start + batch_size]
        xn2 = (xb * xb).sum(1)
        target = None
        if tol is not None:
            target = torch.full_like(xn2, float(tol))
        if min_cosine is not None:
            c = max(float(min_cosine), 0.0)
            t2 = (1.0 - c * c) * xn2
            target = t2 if target is None else torch.maximum(target, t2)
        i, c_, r = _omp_chunk(xb @ Dt.T, xn2, G, k_max, target)
        idx[start : start + batch_size] = i
        coef[start : start + batch_size] = c_
        res[start : start + batch_size] = r

    if return_dense:
        out: tuple = (densify(idx, coef, K),)
    else:
        out = (idx, coef)
    if return_residual:
        out = out + (res,)
    if as_numpy:
        out = tuple(o.cpu().numpy() for o in out)
    return out[0] if len(out) == 1 else out


def densify(idx: torch.Tensor, coef: torch.Tensor, n_atoms: int) -> torch.Tensor:
    import torch

    dense = torch.zeros((idx.shape[0], n_atoms), dtype=coef.dtype, device=coef.device)
    valid = idx >= 0
    dense.scatter_add_(1, idx.clamp_min(0), torch.where(valid, coef, torch.zeros_like(coef)))
    return dense


def _check_code(indices: Any, coefs: Any, D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    it = indices if isinstance(indices, torch.Tensor) else torch.from_numpy(np.asarray(indices))
    if it.ndim != 2 or it.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
        raise InvalidInputError(f"indices must be a 2-D integer array, got {tuple(it.shape)} {it.dtype}")
    it = it.to(device=D.device, dtype=torch.long)
    ct = to_tensor(coefs, "coefs", ndim=2, dtype=D.dtype, device=D.device)
    if ct.shape != it.shape:
        raise InvalidInputError(f"indices {tuple(it.shape)} and coefs {tuple(ct.shape)} differ in shape")
    if it.numel() and (int(it.min()) < -1 or int(it.max()) >= D.shape[0]):
        raise InvalidInputError(f"atom indices must lie in [-1, {D.shape[0] - 1}] (-1 marks an unused slot)")
    return it, ct


def reconstruct(indices: Any, coefs: Any, D: Any, *, dtype: Any = None) -> Any:
    """Rebuild signals ``sum_j coefs[:, j] * D[indices[:, j]]`` (n, d); slots with index -1 are ignored."""
    import torch

    as_numpy = not isinstance(coefs, torch.Tensor)
    device = _default_device(coefs, indices, D)
    dt = resolve_dtype(dtype if dtype is not None else getattr(coefs, "dtype", None))
    Dt = to_tensor(D, "D", ndim=2, dtype=dt, device=device)
    it, ct = _check_code(indices, coefs, Dt)
    ct = torch.where(it >= 0, ct, torch.zeros_like(ct))
    out = (
        torch.bmm(ct.unsqueeze(1), Dt[it.clamp_min(0)]).squeeze(1)
        if it.shape[1]
        else ct.new_zeros((it.shape[0], Dt.shape[1]))
    )
    return out.cpu().numpy() if as_numpy else out


def fit_coefs(X: Any, indices: Any, D: Any, *, dtype: Any = None) -> Any:
    """Least-squares weights of ``X`` on a fixed support ``indices`` (n, k); -1 slots get weight 0.

    Useful to re-fit after the support changed (e.g. atoms pruned or a dictionary re-trained).
    """
    import torch

    as_numpy = not isinstance(X, torch.Tensor)
    device = _default_device(X, D)
    dt = resolve_dtype(dtype)
    Xt = to_tensor(X, "X", ndim=2, dtype=dt, device=device)
    Dt = to_tensor(D, "D", ndim=2, dtype=dt, device=device)
    if Dt.shape[1] != Xt.shape[1]:
        raise InvalidInputError(f"X has {Xt.shape[1]} features but the dictionary atoms have {Dt.shape[1]}")
    it, _ = _check_code(indices, torch.zeros(np.shape(indices), dtype=dt, device=device), Dt)
    if it.shape[0] != Xt.shape[0]:
        raise InvalidInputError(f"indices has {it.shape[0]} rows but X has {Xt.shape[0]}")
    valid = it >= 0
    Ds = Dt[it.clamp_min(0)] * valid.unsqueeze(-1)  # (n, k, d), unused slots zeroed
    gram = Ds @ Ds.transpose(1, 2)
    gram = gram + torch.diag_embed((~valid).to(dt))  # identity on unused slots keeps the system regular
    rhs = (Ds @ Xt.unsqueeze(-1)).squeeze(-1)
    sol = torch.linalg.lstsq(gram, rhs.unsqueeze(-1)).solution.squeeze(-1) if it.shape[1] else rhs
    sol = torch.where(valid, sol, torch.zeros_like(sol))
    return sol.cpu().numpy() if as_numpy else sol


def cosine_similarity(X: Any, Y: Any, eps: float = 1e-12) -> Any:
    """Row-wise cosine between two (n, d) arrays (0 where a row is zero)."""
    import torch

    if isinstance(X, torch.Tensor):
        Y = torch.as_tensor(Y, dtype=X.dtype, device=X.device)
        num = (X * Y).sum(1)
        return num / (X.norm(dim=1) * Y.norm(dim=1)).clamp_min(eps)
    X, Y = np.asarray(X), np.asarray(Y)
    num = (X * Y).sum(1)
    return num / np.maximum(np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1), eps)
