"""The Ray engine on a local 2-worker Ray instance: same archive as the streaming engine, Ray Data embedding."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pyarrow")
pytest.importorskip("ray")

from semzip.codecs.collection import CollectionCodec
from semzip.scale.fill import fill_store_from_array, fill_store_from_folder
from semzip.scale.stream import StreamSettings, compress_store
from semzip.sparse import make_sparse_embeddings

X = make_sparse_embeddings(1200, 32, n_concepts=60, k=3, noise=0.1, seed=5)


@pytest.fixture(scope="module")
def ray_executor():
    from semzip.scale.distributed import RayExecutor

    ex = RayExecutor(workers=2, object_store_mb=256)
    yield ex
    ex.close()


def test_ray_engine_gives_the_stream_engines_archive(ray_executor, tmp_path):
    store = fill_store_from_array(tmp_path / "store", X, source="ray-test", shard_size=400)
    settings = StreamSettings(max_epochs=2, group=2, batch_size=256)
    codec = CollectionCodec(max_epochs=2)
    compress_store(store, tmp_path / "ray.smz", codec, settings=settings, executor=ray_executor)
    compress_store(store, tmp_path / "local.smz", codec, settings=settings)
    assert (tmp_path / "ray.smz").read_bytes() == (tmp_path / "local.smz").read_bytes()


def test_ray_data_actors_embed_a_folder_like_the_local_engine(ray_executor, tmp_path):
    from PIL import Image

    from semzip.models.registry import load_encoder

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(7):
        Image.fromarray(rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "3.png").write_bytes(b"\x89PNG broken")
    enc = load_encoder("thumbnail")
    a = fill_store_from_folder(tmp_path / "a", folder, enc, shard_size=3, executor=ray_executor)
    b = fill_store_from_folder(tmp_path / "b", folder, enc, shard_size=3)
    np.testing.assert_array_equal(a.embeddings(), b.embeddings())
    assert a.names() == b.names() and "3.png" not in a.names()
    assert [s for s, _ in a.skipped()] == ["3.png"]


def test_cli_ray_engine(ray_executor, tmp_path):
    from typer.testing import CliRunner

    from semzip.cli import app

    np.save(tmp_path / "x.npy", X)
    r = CliRunner().invoke(app, ["compress", "--embeddings", str(tmp_path / "x.npy"), "-o", str(tmp_path / "r.smz"),
                                 "--engine", "ray", "--workers", "2", "--shard-size", "600", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert "ray engine: 1200 items" in r.output
    assert ray_executor._ray.is_initialized()  # an already running Ray is used, and left running
