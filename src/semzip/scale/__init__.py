"""Scale: collections larger than memory.

- :mod:`semzip.scale.store`: the on-disk embedding store (Parquet shards, written in a stream, resumable);
- :mod:`semzip.scale.shards`: embedding one shard of a folder of images (shared by both engines);
- :mod:`semzip.scale.stream`: the streaming engine (fill a store, compress it with bounded memory) and the
  in-process executor;
- :mod:`semzip.scale.distributed`: the Ray executor (extra ``semzip[distributed]``).

Import directions: ``store`` <- ``shards`` <- {``stream``, ``distributed``}; ``stream`` reaches the Ray
executor only inside :func:`make_executor` (when ``engine="ray"``), and ``distributed`` never imports
``stream``. Importing this package needs numpy only: pyarrow and ray are imported when used.
"""

from semzip.scale.distributed import RayExecutor
from semzip.scale.store import EmbeddingStore, Shard, plan_fingerprint
from semzip.scale.stream import (
    LocalExecutor,
    StreamSettings,
    compress_store,
    fill_store,
    fill_store_from_array,
    fill_store_from_file,
    fill_store_from_folder,
    make_executor,
)

__all__ = [
    "EmbeddingStore",
    "LocalExecutor",
    "RayExecutor",
    "Shard",
    "StreamSettings",
    "compress_store",
    "fill_store",
    "fill_store_from_array",
    "fill_store_from_file",
    "fill_store_from_folder",
    "make_executor",
    "plan_fingerprint",
]
