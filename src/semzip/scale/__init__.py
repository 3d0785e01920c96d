"""Scale: collections larger than memory.

- :mod:`semzip.scale.store`: the on-disk embedding store (Parquet shards, written in a stream, resumable);
- :mod:`semzip.scale.shards`: embedding one shard of a folder of images (shared by both engines);
- :mod:`semzip.scale.fill`: filling a store from an array, an embeddings file or a folder of images;
- :mod:`semzip.scale.stream`: the streaming engine (compress a store with bounded memory) and the in-process
  executor;
- :mod:`semzip.scale.distributed`: the Ray executor (extra ``semzip[distributed]``).

Import directions: ``store`` <- ``shards`` <- {``fill``, ``distributed``}; ``fill`` <- ``stream``, which
reaches the Ray executor only inside :func:`make_executor` (when ``engine="ray"``); ``distributed`` never
imports ``stream`` or ``fill``. Importing this package needs numpy only: pyarrow and ray are imported when used.
"""

from semzip.scale import distributed, fill, store, stream
from semzip.scale.distributed import RayExecutor as RayExecutor
from semzip.scale.fill import fill_store as fill_store
from semzip.scale.fill import fill_store_from_array as fill_store_from_array
from semzip.scale.fill import fill_store_from_file as fill_store_from_file
from semzip.scale.fill import fill_store_from_folder as fill_store_from_folder
from semzip.scale.store import EmbeddingStore as EmbeddingStore
from semzip.scale.store import Shard as Shard
from semzip.scale.store import plan_fingerprint as plan_fingerprint
from semzip.scale.stream import LocalExecutor as LocalExecutor
from semzip.scale.stream import StreamSettings as StreamSettings
from semzip.scale.stream import compress_store as compress_store
from semzip.scale.stream import make_executor as make_executor

# ``X as X``: an explicit re-export. The names are listed once, in each module's own __all__.
__all__ = [*distributed.__all__, *fill.__all__, *store.__all__, *stream.__all__]
