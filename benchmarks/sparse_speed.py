"""Speed and fidelity of semzip.sparse (DictionaryLearner + Batch-OMP) against scikit-learn.

Data: ``semzip.sparse.make_sparse_embeddings`` -- synthetic CLIP-like embeddings (d=1024, unit norm):
each item mixes k=4 of 1024 hidden "concept" directions (Zipf-like popularity, positive decreasing
weights), plus a shared mean direction (CLIP's common offset) and Gaussian noise (relative norm 0.1),
then is normalised. Both learners get the same data, n_atoms and sparsity (OMP with n_nonzero atoms for
the codes). Fidelity is the cosine between each item and its reconstruction (mean and 5th percentile),
measured on the training items themselves (SMIC compresses the collection it learned from).

scikit-learn: ``MiniBatchDictionaryLearning(fit_algorithm="cd", alpha=0.1, batch_size=256, max_iter=1)``
(one epoch; the most accurate of the lars/cd and alpha settings tried at N=2k) and ``transform`` with
``transform_algorithm="omp"``. Where its fit would exceed ``--sk-budget`` seconds, its time is
extrapolated linearly in N from the largest size measured (one epoch costs O(N)) and marked as such.

Usage: ``python benchmarks/sparse_speed.py [--quick] [--sizes 1000 10000 100000]``;
writes benchmarks/results/sparse_speed.md (or ``--out``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import time
import warnings

import numpy as np


def _cos_stats(X: np.ndarray, R: np.ndarray) -> tuple[float, float]:
    from semzip.sparse import cosine_similarity

    c = cosine_similarity(X.astype(np.float64), R.astype(np.float64))
    return float(c.mean()), float(np.percentile(c, 5))


def run_ours(X: np.ndarray, n_atoms: int, k: int, epochs: int) -> dict:
    from semzip.sparse import DictionaryLearner, reconstruct

    dl = DictionaryLearner(n_atoms, k, max_epochs=epochs, random_state=0)
    t = time.perf_counter()
    dl.fit(X)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    idx, coef = dl.transform(X)
    tr_s = time.perf_counter() - t
    mean, p5 = _cos_stats(X, reconstruct(idx, coef, dl.dictionary_))
    return {"fit": fit_s, "transform": tr_s, "mean": mean, "p5": p5, "note": f"{dl.n_iter_} epochs"}


def run_sklearn(X: np.ndarray, n_atoms: int, k: int) -> dict:
    from sklearn.decomposition import MiniBatchDictionaryLearning

    sk = MiniBatchDictionaryLearning(
        n_components=n_atoms,
        alpha=0.1,
        fit_algorithm="cd",
        batch_size=256,
        max_iter=1,
        random_state=0,
        transform_algorithm="omp",
        transform_n_nonzero_coefs=k,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        sk.fit(X)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        code = sk.transform(X)
        tr_s = time.perf_counter() - t
    mean, p5 = _cos_stats(X, code @ sk.components_)
    return {"fit": fit_s, "transform": tr_s, "mean": mean, "p5": p5, "note": "1 epoch"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run: N=1000, d=256, 128 atoms")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--n-atoms", type=int, default=512)
    ap.add_argument("--k", type=int, default=8, help="atoms per code (OMP n_nonzero)")
    ap.add_argument("--epochs", type=int, default=10, help="max epochs of our online learner")
    ap.add_argument("--sk-budget", type=float, default=400.0, help="largest scikit-learn fit (s) to run")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "sparse_speed.md"))
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.d, args.n_atoms = [1000], 256, 128

    import torch

    from semzip.sparse import make_sparse_embeddings

    rows = []
    sk_rate = None  # seconds per sample of scikit-learn's fit (and transform), from the largest measured N
    for n in args.sizes:
        X = make_sparse_embeddings(n, args.d, n_concepts=1024, k=4, noise=0.1, seed=0)
        ours = run_ours(X, args.n_atoms, args.k, args.epochs)
        print(f"N={n} ours: {ours}", flush=True)
        predicted = None if sk_rate is None else sk_rate[0] * n
        if predicted is None or predicted <= args.sk_budget:
            sk = run_sklearn(X, args.n_atoms, args.k)
            sk_rate = (sk["fit"] / n, sk["transform"] / n)
            sk["extrapolated"] = False
        else:
            sk = {
                "fit": sk_rate[0] * n,
                "transform": sk_rate[1] * n,
                "mean": float("nan"),
                "p5": float("nan"),
                "note": f"not run: predicted {predicted:.0f} s > budget",
                "extrapolated": True,
            }
        print(f"N={n} sklearn: {sk}", flush=True)
        rows.append((n, ours, sk))

    command = " ".join(["python benchmarks/sparse_speed.py", *sys.argv[1:]])
    lines = [
        "# semzip.sparse vs scikit-learn: dictionary learning + OMP",
        "",
        (
            f"Produced by `{command}` on "
            f"{_dt.date.today().isoformat()}: {os.cpu_count()}-core CPU "
            f"({platform.processor() or platform.machine()}), "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads, float32, no GPU. "
            f"Data: `make_sparse_embeddings(N, d={args.d}, n_concepts=1024, k=4, noise=0.1)`; "
            f"{args.n_atoms} atoms, {args.k} atoms per code for both. Cosine = item vs its reconstruction, "
            "on the training items. Times are wall-clock seconds."
        ),
        "",
        "| N | method | fit s | transform s | mean cos | p5 cos | speed-up fit (total) | note |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for n, o, s in rows:
        star = "~" if s["extrapolated"] else ""
        su = f"{s['fit'] / o['fit']:.1f}x ({(s['fit'] + s['transform']) / (o['fit'] + o['transform']):.1f}x)"
        lines.append(
            f"| {n} | semzip online | {o['fit']:.1f} | {o['transform']:.2f} | {o['mean']:.4f} | {o['p5']:.4f} | "
            f"{star}{su} | {o['note']} |"
        )
        mean = "n/a" if s["extrapolated"] else f"{s['mean']:.4f}"
        p5 = "n/a" if s["extrapolated"] else f"{s['p5']:.4f}"
        lines.append(
            f"| {n} | sklearn MBDL(cd)+OMP | {star}{s['fit']:.1f} | {star}{s['transform']:.2f} | {mean} | {p5} | "
            f"1.0x | {s['note']} |"
        )
    lines += [
        "",
        "`~` = extrapolated linearly in N from the largest N where scikit-learn was run (labelled, not measured).",
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
