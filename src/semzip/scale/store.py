"""An on-disk embedding store: a collection's embeddings in Parquet shards, written in a stream.

Layout of a store directory::

    store.json              what the store holds: dimension, shard size, dtype, the plan it was filled from
    shards/00000.parquet    items 0 .. shard_size-1 of the plan: columns name, pixels, embedding
    shards/00001.parquet    ...

A shard file appears only complete: it is written to a temporary name, fsynced and renamed. A store is
therefore always consistent, and an interrupted fill resumes from the shards that are missing: the *plan*
(the ordered list of inputs, fingerprinted in store.json) fixes which items belong to which shard, so a
resumed fill writes exactly the shards an uninterrupted one would have. Files skipped as unreadable are
recorded in their shard's metadata. Parquet was chosen by measurement (benchmarks/results/store_formats.md):
one self-describing file per shard makes the atomic commit a rename, names travel with the embeddings, Ray
Data and every dataframe tool read it natively, and pyarrow is already the parquet-input dependency.

pyarrow is imported lazily; ``import semzip.scale.store`` needs only numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semzip._optional import require
from semzip.errors import CorruptedSectionError, InvalidInputError
from semzip.format.container import atomic_file, atomic_write

__all__ = ["EmbeddingStore", "Shard", "plan_fingerprint"]

STORE_VERSION = 1
MANIFEST = "store.json"
_DTYPES = ("float32", "float16")


def plan_fingerprint(entries: Iterable[str]) -> str:
    """A digest of the ordered inputs a store is filled from (file names and sizes, or a source id)."""
    h = hashlib.sha256()
    for e in entries:
        h.update(e.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()[:32]


@dataclass
class Shard:
    """One shard's items: names, pixel counts, (n, d) float32 embeddings, and the inputs it skipped."""

    index: int
    names: list[str]
    pixels: np.ndarray
    embeddings: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


def _pa():
    return require("pyarrow", "distributed", "the embedding store")


def _pq():
    return require("pyarrow.parquet", "distributed", "the embedding store")


class EmbeddingStore:
    """A directory of Parquet shards holding one collection's embeddings (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, meta: dict):
        self.root = Path(root)
        self.meta = meta
        self._cache: dict[int, tuple[float, Shard]] = {}

    # ------------------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        *,
        dim: int,
        n_items: int,
        shard_size: int = 4096,
        plan: str,
        source: str = "",
        space: str = "unknown",
        encoder: dict | None = None,
        dtype: str = "float32",
        named: bool = True,
    ) -> EmbeddingStore:
        """Create a store for ``n_items`` planned items, or reopen the one at ``root`` if it has the same plan.

        Reopening a store that was filled from a different plan (another folder content, another encoder,
        another shard size) is refused: its shards would not line up with the new inputs.
        """
        if not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(shard_size, int) or shard_size < 1:
            raise InvalidInputError(f"shard_size must be a positive integer, got {shard_size!r}")
        if n_items < 0:
            raise InvalidInputError(f"n_items must be >= 0, got {n_items}")
        if dtype not in _DTYPES:
            raise InvalidInputError(f"store dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        meta = {
            "format": "semzip-embedding-store",
            "version": STORE_VERSION,
            "dim": dim,
            "n_items": int(n_items),
            "shard_size": shard_size,
            "dtype": dtype,
            "plan": plan,
            "source": source,
            "space": space,
            "encoder": encoder or {},
            "named": bool(named),  # False: the names are placeholders (item_00000...), not worth storing
        }
        root = Path(root)
        if (root / MANIFEST).is_file():
            store = cls.open(root)
            keys = ("dim", "n_items", "shard_size", "dtype", "plan", "encoder")
            diff = [k for k in keys if store.meta.get(k) != meta[k]]
            if diff:
                raise InvalidInputError(
                    f"{root} holds a store filled from other inputs or settings ({', '.join(diff)} differ); "
                    "remove it or give another --store"
                )
            return store
        if root.exists() and any(root.iterdir()):
            raise InvalidInputError(f"{root} exists and is not an embedding store; give an empty or new folder")
        (root / "shards").mkdir(parents=True, exist_ok=True)
        atomic_write(root / MANIFEST, json.dumps(meta, indent=1, sort_keys=True).encode("utf-8"))
        return cls(root, meta)

    @classmethod
    def open(cls, root: str | os.PathLike) -> EmbeddingStore:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise InvalidInputError(f"{root} is not an embedding store (no {MANIFEST})")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            ok = meta.get("format") == "semzip-embedding-store"
            int(meta["dim"]), int(meta["n_items"]), int(meta["shard_size"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            raise CorruptedSectionError(f"{path} is not a valid embedding store manifest")
        if meta.get("version", 0) > STORE_VERSION:
            raise InvalidInputError(f"{root} was written by a newer semzip (store version {meta['version']})")
        return cls(root, meta)

    # ------------------------------------------------------------------------------ layout
    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def shard_size(self) -> int:
        return int(self.meta["shard_size"])

    @property
    def planned_items(self) -> int:
        return int(self.meta["n_items"])

    @property
    def n_shards(self) -> int:
        """Shards the plan has (finished or not)."""
        return -(-self.planned_items // self.shard_size)

    def shard_range(self, i: int) -> tuple[int, int]:
        """Positions in the plan (start, stop) that shard ``i`` covers."""
        if not 0 <= i < self.n_shards:
            raise InvalidInputError(f"shard {i} out of range: the store plans {self.n_shards} shards")
        start = i * self.shard_size
        return start, min(self.planned_items, start + self.shard_size)

    def shard_path(self, i: int) -> Path:
        return self.root / "shards" / f"{i:05d}.parquet"

    def has_shard(self, i: int) -> bool:
        return self.shard_path(i).is_file()

    def missing_shards(self) -> list[int]:
        return [i for i in range(self.n_shards) if not self.has_shard(i)]

    @property
    def complete(self) -> bool:
        return not self.missing_shards()

    def require_complete(self) -> None:
        missing = self.missing_shards()
        if missing:
            raise InvalidInputError(
                f"{self.root}: {len(missing)} of {self.n_shards} shards are not written yet (first: {missing[0]}); "
                "finish filling the store first (re-run the same command to resume)"
            )

    # ------------------------------------------------------------------------------ write
    def write_shard(
        self,
        i: int,
        names: Sequence[str],
        pixels: Sequence[int] | np.ndarray,
        embeddings: np.ndarray,
        skipped: Sequence[tuple[str, str]] = (),
    ) -> Path:
        """Write shard ``i`` atomically (it may hold fewer items than planned: skipped inputs)."""
        pa, pq = _pa(), _pq()
        start, stop = self.shard_range(i)
        emb = np.ascontiguousarray(embeddings, dtype=np.dtype(self.meta["dtype"]))
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise InvalidInputError(f"shard {i}: embeddings must be (n, {self.dim}), got {emb.shape}")
        n = emb.shape[0]
        if len(names) != n or len(pixels) != n or n + len(skipped) != stop - start:
            raise InvalidInputError(
                f"shard {i}: {len(names)} names, {len(pixels)} pixel counts and {n} embeddings "
                f"(+{len(skipped)} skipped) for {stop - start} planned items"
            )
        if not np.isfinite(emb).all():
            raise InvalidInputError(f"shard {i}: embeddings contain NaN or infinite values")
        values = pa.array(emb.reshape(-1))
        table = pa.table(
            {
                "name": pa.array([str(s) for s in names], type=pa.string()),
                "pixels": pa.array(np.asarray(pixels, dtype=np.int64)),
                "embedding": pa.FixedSizeListArray.from_arrays(values, self.dim),
            }
        )
        table = table.replace_schema_metadata(
            {"semzip.shard": str(i), "semzip.skipped": json.dumps([list(s) for s in skipped])}
        )
        target = self.shard_path(i)
        target.parent.mkdir(parents=True, exist_ok=True)
        # uncompressed: embeddings do not compress (measured), and plain pages read fastest. pyarrow writes
        # into the open temporary file, which is fsynced and renamed into place only when it is complete
        with atomic_file(target) as fh:
            pq.write_table(table, fh, compression="none")
        self._cache.pop(i, None)
        return target

    # ------------------------------------------------------------------------------ read
    def read_shard(self, i: int) -> Shard:
        """Shard ``i`` (float32 embeddings); the last two shards read are kept in memory."""
        path = self.shard_path(i)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise InvalidInputError(f"{self.root}: shard {i} is not written yet") from None
        hit = self._cache.get(i)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        pq = _pq()
        try:
            table = pq.read_table(path)
            meta = table.schema.metadata or {}
            skipped = [tuple(s) for s in json.loads(meta.get(b"semzip.skipped", b"[]"))]
            col = table.column("embedding").combine_chunks()
            emb = col.values.to_numpy(zero_copy_only=False).reshape(-1, self.dim)
            names = [str(v) for v in table.column("name").to_pylist()]
            pixels = table.column("pixels").to_numpy()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptedSectionError(f"{path}: not a readable store shard ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - pyarrow raises its own error types for damaged files
            raise CorruptedSectionError(f"{path}: not a readable store shard ({exc})") from None
        if len(names) != emb.shape[0] or len(pixels) != emb.shape[0]:
            raise CorruptedSectionError(f"{path}: columns have different lengths")
        shard = Shard(i, names, np.asarray(pixels, np.int64), np.asarray(emb, dtype=np.float32), skipped)
        self._cache[i] = (mtime, shard)
        while len(self._cache) > 2:
            self._cache.pop(next(iter(self._cache)))
        return shard

    def shard_lengths(self) -> list[int]:
        """Items actually stored per shard (from the Parquet footers; no data read)."""
        pq = _pq()
        self.require_complete()
        return [pq.ParquetFile(self.shard_path(i)).metadata.num_rows for i in range(self.n_shards)]

    def iter_shards(self) -> Iterator[Shard]:
        self.require_complete()
        for i in range(self.n_shards):
            yield self.read_shard(i)

    def __len__(self) -> int:
        return sum(self.shard_lengths())

    def skipped(self) -> list[tuple[str, str]]:
        """Inputs skipped while filling the store, from every written shard's metadata."""
        pq = _pq()
        out: list[tuple[str, str]] = []
        for i in range(self.n_shards):
            if self.has_shard(i):
                meta = pq.read_schema(self.shard_path(i)).metadata or {}
                out += [tuple(s) for s in json.loads(meta.get(b"semzip.skipped", b"[]"))]
        return out

    def embeddings(self) -> np.ndarray:
        """All embeddings in one array (for small stores and tests; the pipeline reads shard by shard)."""
        return np.concatenate([s.embeddings for s in self.iter_shards()])

    def names(self) -> list[str]:
        return [n for s in self.iter_shards() for n in s.names]
