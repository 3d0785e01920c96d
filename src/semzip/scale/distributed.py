"""Ray backend (extra ``semzip[distributed]``): the streaming pipeline's work, spread over a Ray cluster.

``RayExecutor`` is the executor ``semzip.scale.stream`` runs on with ``--engine ray``:

- **embedding**: the store's missing shards become a Ray Data dataset mapped by a pool of actors
  (``map_batches`` with a callable class): each actor loads the image encoder once and holds it (on its GPU
  when the cluster has GPUs), reads its shard's images and writes the shard file itself;
- **dictionary learning**: each step, one Ray task per worker codes one mini-batch against the current
  dictionary (``DictionaryLearner.batch_stats``); the driver sums the statistics in a fixed order and
  updates the atoms, so the result does not depend on scheduling;
- **coding and range coding**: one Ray task per shard.

Locally ``RayExecutor()`` starts ``ray.init`` with ``workers`` CPUs (2 by default; what the tests use); with
``address="ray://..."`` or ``"auto"`` the same code runs on a cluster. The store and the work folder must
then be on storage every node sees (a shared file system). Nothing here is cluster code of our own: Ray
schedules, retries and moves the data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from semzip._optional import require
from semzip.scale.shards import embed_shard
from semzip.scale.store import EmbeddingStore

__all__ = ["RayExecutor"]


class _EmbedShards:
    """Ray Data actor: holds one image encoder and embeds whole store shards (rows: shard id + file list)."""

    def __init__(self, encoder: str, store_root: str, folder: str, strict: bool, device: str | None):
        from semzip.models.registry import load_encoder

        kw = {"device": device} if device else {}
        self.encoder = load_encoder(encoder, **kw)
        self.store = EmbeddingStore.open(store_root)
        self.folder = Path(folder)
        self.strict = strict

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        shards, written = [], []
        for shard, files in zip(batch["shard"], batch["files"]):
            rel = json.loads(str(files))
            written.append(embed_shard(self.store, int(shard), self.folder, rel, self.encoder, self.strict))
            shards.append(int(shard))
        return {"shard": np.array(shards, np.int64), "written": np.array(written, np.int64)}


class RayExecutor:
    """Runs the streaming pipeline's tasks on Ray (local ``ray.init`` or a cluster ``address``)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, object_store_mb: int | None = 512,
                 quiet: bool = True):
        ray = require("ray", "distributed", "--engine ray")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            from semzip.errors import InvalidInputError

            raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
        self._ray = ray
        self.workers = workers
        self._started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": not quiet,
                                  "configure_logging": not quiet}
            if address is None:
                kw["num_cpus"] = workers
                if object_store_mb:
                    kw["object_store_memory"] = int(object_store_mb) * 2**20
            else:
                kw["address"] = address
            os.environ.setdefault("RAY_DEDUP_LOGS", "0")
            if quiet:
                import logging

                for name in ("ray", "ray.data"):
                    logging.getLogger(name).setLevel(logging.WARNING)
            try:
                ray.init(**kw)
            except TypeError:  # older Ray without configure_logging
                kw.pop("configure_logging", None)
                ray.init(**kw)
            self._started = True
            try:  # Ray Data progress bars would interleave with ours
                ctx = ray.data.DataContext.get_current()
                ctx.enable_progress_bars = False
            except Exception:  # noqa: BLE001, S110  # pragma: no cover - cosmetic only
                pass
        self._remote: dict[Callable, Any] = {}

    @property
    def gpus(self) -> float:
        return float(self._ray.cluster_resources().get("GPU", 0))

    def put(self, obj: Any) -> Any:
        return self._ray.put(obj)

    def map(self, fn: Callable[..., Any], arglist: Iterable[tuple]) -> Iterator[Any]:
        """Run ``fn(*args)`` as one Ray task per entry; results come back in the order of ``arglist``."""
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=3)(fn)
        refs = [remote.remote(*args) for args in arglist]
        for ref in refs:
            yield self._ray.get(ref)

    def embed_shards(self, store: Any, folder: Path, rel_paths: Sequence[str], todo: Sequence[int], encoder: Any,
                     strict: bool, device: str | None = None) -> Iterator[tuple[int, int]]:
        """Embed the store's shards ``todo`` with Ray Data actors; yields (shard, planned items) as they finish.
        ``device``: where the actors' encoders run (default: cuda when the cluster has GPUs)."""
        ray = self._ray
        rows = []
        for i in todo:
            start, stop = store.shard_range(i)
            rows.append({"shard": i, "files": json.dumps(list(rel_paths[start:stop]))})
        if not rows:
            return
        gpus = self.gpus
        use_gpu = gpus >= 1 and (device is None or device.startswith("cuda"))
        device = device or ("cuda" if use_gpu else None)
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(
            _EmbedShards,
            fn_constructor_kwargs={"encoder": encoder.name, "store_root": str(store.root.resolve()),
                                   "folder": str(folder.resolve()), "strict": strict, "device": device},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(
                size=max(1, min(self.workers, len(rows), int(gpus) if use_gpu else self.workers))
            ),
            num_gpus=1 if use_gpu else 0,
            num_cpus=1,
        )
        for row in ds.iter_rows():
            start, stop = store.shard_range(int(row["shard"]))
            yield int(row["shard"]), stop - start

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
