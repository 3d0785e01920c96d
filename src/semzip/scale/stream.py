"""Streaming collection compression: bounded memory, resumable, and parallel through an executor.

``compress_store`` turns an :class:`~semzip.scale.store.EmbeddingStore` into a collection archive without ever
holding the collection in memory:

1. **Dictionary**: online dictionary learning over mini-batches streamed from the store's shards. Each step
   folds the statistics of ``group`` mini-batches coded against the same dictionary
   (``DictionaryLearner.batch_stats`` / ``apply_batch_stats``); the executor computes them, locally one
   after the other or on Ray workers in parallel, and they are summed in a fixed order, so the result does
   not depend on which worker finished first. The epoch plan (shard order, row order, batch boundaries) is a
   pure function of the seed, and the learner's whole state is checkpointed (every ``checkpoint_seconds``
   and at each epoch end), so a killed run resumes and produces the same dictionary.
2. **Codes**: every shard is coded over the quantised atoms (in parallel), its integer codes spilled to
   the work folder (resumable); only symbol counts come back, and are summed.
3. **Entropy models** fit on the summed counts; every shard's blocks are range-coded (in parallel).
4. **Archive**: header, dictionary, models, blocks and names (packed shard by shard), written atomically.

Every step that touches the codec's data goes through the collection codec's public stages (``plan``,
``learner_params``, ``quantize``, ``code``, ``histograms``, ``fit_models``, ``encode_blocks``, ``assemble``:
see :mod:`semzip.codecs.collection`), the same ones its in-memory ``compress`` calls; this module only
decides where they run, what is checkpointed and how shards are combined.

Memory is one shard, the dictionary and its statistics, the coded bytes of the archive and the
zlib-compressed names: flat in the number of items up to the archive itself (a few bytes per item).
The archive decodes with the ordinary :class:`~semzip.codecs.collection.CollectionCodec`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semzip._version import __version__
from semzip.errors import InvalidInputError
from semzip.format.container import atomic_file, atomic_write
from semzip.scale.fill import ProgressFactory, fill_store, no_progress
from semzip.scale.store import EmbeddingStore

__all__ = ["LocalExecutor", "StreamSettings", "compress_store", "make_executor"]


@dataclass
class StreamSettings:
    """How the streaming fit walks the data (recorded in the archive header).

    max_epochs / epoch_tol: passes over the store, stopping early when an epoch's mean cosine improves by
    less than ``epoch_tol`` (as the in-memory fit). batch_size: items per mini-batch. group: mini-batches
    per step (their statistics are summed: the data-parallel width; the Ray engine uses one per worker).
    checkpoint_seconds: how often the learner's state is saved (and at every epoch end).
    """

    max_epochs: int = 10
    epoch_tol: float = 1e-4
    batch_size: int = 1024
    group: int = 1
    checkpoint_seconds: float = 30.0

    def check(self) -> None:
        for name in ("max_epochs", "batch_size", "group"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {v!r}")
        if not (math.isfinite(self.epoch_tol) and self.epoch_tol >= 0):
            raise InvalidInputError(f"epoch_tol must be >= 0, got {self.epoch_tol}")


class LocalExecutor:
    """Runs tasks one after the other in this process (the ``stream`` engine)."""

    name = "stream"
    workers = 1

    def put(self, obj: Any) -> Any:
        return obj

    def map(self, fn: Callable[..., Any], arglist: Iterable[tuple]) -> Iterator[Any]:
        for args in arglist:
            yield fn(*args)

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------ worker tasks
# Each task runs one of the collection codec's public stages on one shard (or one mini-batch); the driver
# below hands them to the executor (this process, or Ray workers) and combines what comes back.

_STORES: dict[str, EmbeddingStore] = {}
_SPILL_FIELDS = ("counts", "first", "sign", "rest", "ratios")


def _store(root: str) -> EmbeddingStore:
    """One open store per worker process (keeps its shard cache between tasks)."""
    s = _STORES.get(root)
    if s is None:
        s = _STORES[root] = EmbeddingStore.open(root)
    return s


def _unit_rows(store_root: str, shard: int, rows: np.ndarray | None = None) -> np.ndarray:
    """A shard's embeddings (or its ``rows``), scaled to unit norm as the codec codes them."""
    from semzip.codecs.collection import normalised

    x = _store(store_root).read_shard(shard).embeddings
    return normalised(x if rows is None else x[rows])


def _learner(params: dict, D: np.ndarray | None = None) -> Any:
    from semzip.sparse import DictionaryLearner

    lr = DictionaryLearner(**params)
    if D is not None:
        lr.dictionary_ = np.asarray(D, dtype=np.float32)
    return lr


def _save_spill(path: Path, codes: Any, cos_sum: float) -> None:
    """A shard's integer codes and its decoded items' cosine sum, written whole or not at all."""
    with atomic_file(path) as fh:
        np.savez(fh, cos_sum=np.float64(cos_sum), **asdict(codes))


def _load_spill(path: str | os.PathLike) -> tuple[Any, float]:
    from semzip.codecs.collection import SparseCodes

    with np.load(path, allow_pickle=False) as z:
        return SparseCodes(*(z[f] for f in _SPILL_FIELDS)), float(z["cos_sum"])


def task_batch_stats(store_root: str, params: dict, D: np.ndarray, shard: int, rows: np.ndarray) -> Any:
    """Statistics of one mini-batch (shard rows) against dictionary ``D``."""
    return _learner(params, D).batch_stats(_unit_rows(store_root, shard, rows))


def task_code_shard(store_root: str, codec_kw: dict, D: np.ndarray, k: int, shard: int, spill: str) -> dict:
    """Code one shard over the decoder's atoms (:meth:`CollectionCodec.code`), spill its codes (reused when
    present), and return what the driver sums: items, symbol counts, cosine sum of the decoded items."""
    from semzip.codecs.collection import CollectionCodec

    codec = CollectionCodec(**codec_kw)
    path = Path(spill)
    if path.is_file():
        codes, cos_sum = _load_spill(path)
    else:
        X = _unit_rows(store_root, shard)
        codes = codec.code(X, D, k)
        cos_sum = float(np.sum(np.sum(codec.reconstruct(codes, D) * X, axis=1, dtype=np.float64)))
        _save_spill(path, codes, cos_sum)
    return {"n": len(codes.counts), "counts": codec.histograms(codes, D.shape[0], k), "cos_sum": cos_sum}


def task_encode_shard(codec_kw: dict, spill: str, models: bytes) -> list[tuple[int, bytes]]:
    """Range-code one shard's spilled codes into blocks (:meth:`CollectionCodec.encode_blocks`)."""
    from semzip.codecs.collection import CollectionCodec, EntropyModels

    codes, _ = _load_spill(spill)
    return CollectionCodec(**codec_kw).encode_blocks(codes, EntropyModels.from_bytes(models))


def task_shard_names(store_root: str, shard: int) -> tuple[list[str], int]:
    """One shard's item names and its total pixel count."""
    s = _store(store_root).read_shard(shard)
    return s.names, int(s.pixels.sum())


# ------------------------------------------------------------------------------------------ the driver


@dataclass
class _Job:
    """One ``compress_store`` run: the store, the plan the codec resolved for it, how to run, where to work."""

    store: EmbeddingStore
    root: str  # the store's resolved path: what the workers open
    lengths: list[int]  # items per shard
    codec: Any  # CollectionCodec
    plan: Any  # CollectionPlan
    settings: StreamSettings
    executor: Any
    progress: ProgressFactory
    log: Callable[[str], None]
    run: Path  # this run's work folder (checkpoints, spilled codes)

    @property
    def codec_kw(self) -> dict:
        return self.codec.coding_params(self.plan)

    @property
    def learner_kw(self) -> dict:
        s = self.settings
        return self.codec.learner_params(self.plan, max_epochs=s.max_epochs, epoch_tol=s.epoch_tol,
                                         batch_size=s.batch_size, device=None, verbose=False)


@dataclass
class _FitPosition:
    """Where the dictionary fit stands: epochs finished, steps of the current epoch applied, the epoch's
    cosine sum so far, and whether the fit is over. Saved with the learner's state in every checkpoint."""

    epoch: int = 0
    step: int = 0
    cos_sum: float = 0.0
    done: bool = False

    def arrays(self) -> dict[str, np.ndarray]:
        return {"pos_epoch": np.int64(self.epoch), "pos_step": np.int64(self.step),
                "pos_cos_sum": np.float64(self.cos_sum), "pos_done": np.bool_(self.done)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> _FitPosition:
        return cls(int(arrays["pos_epoch"]), int(arrays["pos_step"]), float(arrays["pos_cos_sum"]),
                   bool(arrays["pos_done"]))


def _epoch_plan(lengths: Sequence[int], seed: int, epoch: int, batch_size: int) -> list[tuple[int, np.ndarray]]:
    """The mini-batches of one epoch: shards in a seeded order, rows shuffled inside each shard."""
    rng = np.random.default_rng([seed, epoch])
    plan = []
    for shard in rng.permutation(len(lengths)):
        n = lengths[shard]
        if n == 0:
            continue
        rows = np.random.default_rng([seed, epoch, int(shard)]).permutation(n)
        plan += [(int(shard), rows[s : s + batch_size]) for s in range(0, n, batch_size)]
    return plan


def _run_id(store: EmbeddingStore, codec_kw: dict, settings: StreamSettings) -> str:
    blob = json.dumps({"plan": store.meta["plan"], "codec": codec_kw, "settings": asdict(settings),
                       "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _start_job(store: EmbeddingStore | str | os.PathLike, output: str | os.PathLike, codec: Any,
               settings: StreamSettings | None, executor: Any, workdir: str | os.PathLike | None,
               progress: ProgressFactory | None, log: Callable[[str], None] | None) -> _Job:
    """Check the inputs, let the codec resolve its plan for the store's size, and make the run's work folder."""
    from semzip.codecs.collection import CollectionCodec

    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore.open(store)
    codec = codec or CollectionCodec()
    settings = settings or StreamSettings(max_epochs=codec.max_epochs, batch_size=codec.batch_size)
    settings.check()
    if codec.bits_per_item is not None:
        raise InvalidInputError("--bits-per-item needs the in-memory engine; with streaming use --sparsity or "
                                "--min-cosine")
    lengths = store.shard_lengths()
    if sum(lengths) == 0:
        raise InvalidInputError(f"{store.root} holds no items")
    plan = codec.plan(sum(lengths))
    work = Path(workdir if workdir is not None else f"{output}.work")
    run = work / _run_id(store, codec.coding_params(plan), settings)
    (run / "codes").mkdir(parents=True, exist_ok=True)
    return _Job(store, str(store.root.resolve()), lengths, codec, plan, settings, executor or LocalExecutor(),
                progress or no_progress, log or (lambda s: None), run)


# ---- 1. dictionary: online learning over mini-batches, checkpointed, resumable


def _learn_dictionary(job: _Job) -> Any:
    """The fitted learner: resumed from the run's checkpoint when there is one, else started from seeded
    sample rows; epochs run until the learner stops or ``max_epochs``."""
    ckpt = job.run / "dictionary.npz"
    learner = _learner(job.learner_kw)
    if ckpt.is_file():
        with np.load(ckpt, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        learner.load_state_arrays(arrays)
        pos = _FitPosition.from_arrays(arrays)
        job.log(f"resuming the dictionary fit at epoch {pos.epoch + 1}, step {pos.step}")
    else:
        learner.init_from_samples(_initial_samples(job))
        pos = _FitPosition()
    if not pos.done:
        _run_epochs(job, learner, pos, ckpt)
    return learner


def _initial_samples(job: _Job) -> np.ndarray:
    """The first atoms: ``n_atoms`` distinct items drawn with the seed, read shard by shard."""
    n_atoms, lengths = job.plan.n_atoms, job.lengths
    pick = np.random.default_rng(job.codec.random_state).choice(sum(lengths), size=n_atoms, replace=False)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    owner = np.searchsorted(starts, pick, side="right") - 1
    X0 = np.empty((n_atoms, job.store.dim), np.float32)
    for shard in np.unique(owner):
        sel = np.flatnonzero(owner == shard)
        X0[sel] = _unit_rows(job.root, int(shard), pick[sel] - starts[shard])
    return X0


def _save_checkpoint(path: Path, learner: Any, pos: _FitPosition) -> None:
    with atomic_file(path) as fh:
        np.savez(fh, **pos.arrays(), **learner.state_arrays())


def _run_epochs(job: _Job, learner: Any, pos: _FitPosition, ckpt: Path) -> None:
    """Apply the remaining steps of every epoch from ``pos`` on, checkpointing every ``checkpoint_seconds``
    and at each epoch end; the last checkpoint marks the fit done."""
    s, seed, n_items = job.settings, job.codec.random_state, sum(job.lengths)
    steps_per_epoch = -(-len(_epoch_plan(job.lengths, seed, 0, s.batch_size)) // s.group)
    remaining = (s.max_epochs - pos.epoch) * steps_per_epoch - pos.step
    with job.progress(remaining, "learning the dictionary") as advance:
        last_save = time.monotonic()
        while pos.epoch < s.max_epochs:
            plan = _epoch_plan(job.lengths, seed, pos.epoch, s.batch_size)
            groups = [plan[i : i + s.group] for i in range(0, len(plan), s.group)]
            while pos.step < len(groups):
                pos.cos_sum += _fit_step(job, learner, groups[pos.step])
                pos.step += 1
                advance(1)
                if time.monotonic() - last_save > s.checkpoint_seconds:
                    _save_checkpoint(ckpt, learner, pos)
                    last_save = time.monotonic()
            stop = learner.end_epoch(pos.cos_sum / n_items)
            job.log(f"epoch {pos.epoch + 1}: mean cosine {pos.cos_sum / n_items:.5f}")
            pos.epoch, pos.step, pos.cos_sum = pos.epoch + 1, 0, 0.0
            if stop or pos.epoch >= s.max_epochs:
                break
            _save_checkpoint(ckpt, learner, pos)
            last_save = time.monotonic()
    pos.done = True
    _save_checkpoint(ckpt, learner, pos)


def _fit_step(job: _Job, learner: Any, group: Sequence[tuple[int, np.ndarray]]) -> float:
    """One data-parallel step: the group's mini-batch statistics (computed by the executor against the same
    dictionary, combined in list order) applied to the learner; returns their cosine sum."""
    D_ref = job.executor.put(learner.dictionary_)
    args = [(job.root, job.learner_kw, D_ref, shard, rows) for shard, rows in group]
    stats = list(job.executor.map(task_batch_stats, args))
    learner.apply_batch_stats(stats)
    return sum(st.cos_sum for st in stats)


# ---- 2. codes: every shard coded and spilled, its symbol counts summed


def _code_shards(job: _Job, dictionary: Any) -> tuple[list[str], Any, float]:
    """Code every shard over the decoder's atoms; returns the spill files, the summed symbol counts and the
    summed cosine of the decoded items. Spills are kept per dictionary, so a resumed run reuses them."""
    codes_dir = job.run / "codes" / hashlib.sha256(dictionary.symbols.tobytes()).hexdigest()[:12]
    codes_dir.mkdir(parents=True, exist_ok=True)
    spills = [str(codes_dir / f"{i:05d}.npz") for i in range(len(job.lengths))]
    counts, cos_sum = None, 0.0
    with job.progress(sum(job.lengths), "coding items") as advance:
        D_ref = job.executor.put(dictionary.atoms)
        args = [(job.root, job.codec_kw, D_ref, job.plan.sparsity, i, spill) for i, spill in enumerate(spills)]
        for h in job.executor.map(task_code_shard, args):
            counts = h["counts"] if counts is None else counts + h["counts"]
            cos_sum += h["cos_sum"]
            advance(h["n"])
    return spills, counts, cos_sum


# ---- 3. blocks: every shard's spilled codes range-coded under the collection's models


def _range_code(job: _Job, spills: Sequence[str], models: Any) -> list[tuple[int, bytes]]:
    blocks: list[tuple[int, bytes]] = []
    models_bytes = models.to_bytes()
    with job.progress(len(spills), "range coding") as advance:
        for shard_blocks in job.executor.map(task_encode_shard, [(job.codec_kw, s, models_bytes) for s in spills]):
            blocks += shard_blocks
            advance(1)
    return blocks


# ---- 4. archive: header and sections from the codec, names packed shard by shard, written atomically


def _write_archive(job: _Job, output: str | os.PathLike, learner: Any, dictionary: Any, models: Any,
                   blocks: list[tuple[int, bytes]]) -> int:
    from semzip.format import ModelRef, NamesPacker, pack

    packer = NamesPacker()
    pixel_sum = 0
    for names, px in job.executor.map(task_shard_names, [(job.root, i) for i in range(len(job.lengths))]):
        packer.add(names)
        pixel_sum += px
    meta, s = job.store.meta, job.settings
    enc, space = meta.get("encoder") or {}, meta.get("space")
    header, blobs = job.codec.assemble(
        dictionary, models, sparsity=job.plan.sparsity,
        fit={"method": "online-stream", "epochs": int(learner.n_iter_), "seed": job.codec.random_state,
             "batch_size": s.batch_size, "group": s.group},
        space=space if space != "unknown" else None,
        pixels_per_item=round(pixel_sum / sum(job.lengths)) if pixel_sum else None,
        encoder=ModelRef("encoder", enc["name"], enc["fingerprint"]) if enc and not job.codec.encoder else None,
    )
    names = packer if meta.get("named", True) else None
    return atomic_write(output, pack(header, blobs, blocks, names))


def compress_store(
    store: EmbeddingStore | str | os.PathLike,
    output: str | os.PathLike,
    codec: Any = None,
    *,
    settings: StreamSettings | None = None,
    executor: Any = None,
    workdir: str | os.PathLike | None = None,
    keep_work: bool = False,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """Compress a complete store into a collection archive (see the module docstring); returns bytes written.

    ``codec`` is a :class:`~semzip.codecs.collection.CollectionCodec` carrying the parameters (its
    ``max_epochs`` and ``random_state`` are used; ``bits_per_item`` needs the in-memory engine). The work
    folder (default ``OUTPUT.work``) holds checkpoints and spilled codes; re-running the same command after
    a crash resumes from it. It is removed after success unless ``keep_work``.
    """
    job = _start_job(store, output, codec, settings, executor, workdir, progress, log)
    t0 = time.perf_counter()
    learner = _learn_dictionary(job)
    t_dict = time.perf_counter() - t0
    dictionary = job.codec.quantize(learner.dictionary_)
    spills, counts, cos_sum = _code_shards(job, dictionary)
    models = job.codec.fit_models(counts)
    blocks = _range_code(job, spills, models)
    size = _write_archive(job, output, learner, dictionary, models, blocks)
    k_used = int(np.flatnonzero(counts.count)[-1]) + 1 if counts.count.any() else 1
    job.log(f"dictionary {t_dict:.1f} s, total {time.perf_counter() - t0:.1f} s; mean cosine of decoded items "
            f"{cos_sum / sum(job.lengths):.4f}; {k_used} atoms per item at most")
    if not keep_work:
        shutil.rmtree(job.run, ignore_errors=True)
        with contextlib.suppress(OSError):
            job.run.parent.rmdir()  # only when empty: other runs' folders stay
    return size


# ------------------------------------------------------------------------------------------ one call


def make_executor(engine: str, *, workers: int = 2, address: str | None = None) -> Any:
    """The executor of an engine name: ``"stream"`` (this process) or ``"ray"`` (see semzip.scale.distributed)."""
    if engine == "stream":
        return LocalExecutor()
    if engine == "ray":
        from semzip.scale.distributed import RayExecutor  # one way: the Ray side never imports stream

        return RayExecutor(address=address, workers=workers)
    raise InvalidInputError(f"unknown engine {engine!r}: use memory, stream or ray")


def compress_streaming(
    source: str | os.PathLike | None,
    output: str | os.PathLike,
    *,
    engine: str = "stream",
    store: str | os.PathLike | None = None,
    shard_size: int = 4096,
    encoder: str = "thumbnail",
    space: str = "unknown",
    names: Sequence[str] | None = None,
    recursive: bool = False,
    strict: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    workers: int = 2,
    address: str | None = None,
    batches_per_step: int | None = None,
    keep_work: bool = False,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
    device: str | None = None,
    **codec_params: Any,
) -> tuple[int, int]:
    """Fill (or reuse) an embedding store from ``source`` and compress it with the streaming pipeline.

    ``source``: a folder of images, a .npy / .parquet embeddings file, or None to compress an existing
    ``store``. ``engine``: ``"stream"`` (this process) or ``"ray"`` (``workers`` local Ray workers, or the
    cluster at ``address``). Without ``store`` the embeddings go to ``OUTPUT.work/store``, removed with the
    rest of the work folder after success; re-running the same command after a crash resumes.
    Returns (archive bytes, items).
    """
    from semzip.codecs.collection import CollectionCodec

    work = Path(f"{output}.work")
    store_root = Path(store) if store is not None else work / "store"
    executor = make_executor(engine, workers=workers, address=address)
    try:
        if source is None:
            st = EmbeddingStore.open(store_root)
        else:
            st = fill_store(store_root, source, executor=executor, encoder=encoder, shard_size=shard_size,
                            space=space, names=names, recursive=recursive, strict=strict, on_skip=on_skip,
                            progress=progress, device=device)
        group = batches_per_step or (executor.workers if engine == "ray" else 1)
        codec = CollectionCodec(**codec_params)
        settings = StreamSettings(max_epochs=codec.max_epochs, group=group, batch_size=codec.batch_size)
        size = compress_store(st, output, codec, settings=settings, executor=executor, workdir=work,
                              keep_work=True, progress=progress, log=log)
        n_items = sum(st.shard_lengths())
    finally:
        executor.close()
    if not keep_work and work.is_dir():
        inside = store_root.resolve().is_relative_to(work.resolve())
        if store is None or not inside:
            shutil.rmtree(work, ignore_errors=True)
        else:  # the user's store lives in the work folder: keep it, drop the runs
            for p in work.iterdir():
                if p.is_dir() and p.resolve() != store_root.resolve():
                    shutil.rmtree(p, ignore_errors=True)
    return size, n_items
