"""The streaming engine: batch statistics equal online steps, archives decode with the ordinary codec,
fidelity matches the in-memory fit, and an interrupted run resumes to the identical archive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pyarrow")

from semzip.api import compress_embeddings, decompress
from semzip.codecs.collection import CollectionCodec
from semzip.errors import InvalidInputError
from semzip.format import Container
from semzip.scale import stream
from semzip.scale.fill import fill_store_from_array, fill_store_from_file, fill_store_from_folder
from semzip.scale.store import EmbeddingStore
from semzip.scale.stream import StreamSettings, compress_store
from semzip.sparse import DictionaryLearner, make_sparse_embeddings

X = make_sparse_embeddings(3000, 64, n_concepts=120, k=3, noise=0.1, seed=3)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return fill_store_from_array(tmp_path_factory.mktemp("s") / "store", X, source="test-x", shard_size=700)


def _cos(archive: Path) -> float:
    return float(np.mean(np.sum(decompress(archive) * X, axis=1)))


def test_batch_stats_step_is_exactly_partial_fit():
    a = DictionaryLearner(n_atoms=40, n_nonzero=3, random_state=0)
    b = DictionaryLearner(n_atoms=40, n_nonzero=3, random_state=0)
    a.partial_fit(X[:200])
    b.init_from_samples(X[:200])
    b.dictionary_ = a.dictionary_.copy()  # same start as a after its first step
    b.load_state_arrays(a.state_arrays())
    for s in range(200, 2000, 200):
        a.partial_fit(X[s : s + 200])
        b.apply_batch_stats([b.batch_stats(X[s : s + 200])])
    np.testing.assert_array_equal(a.dictionary_, b.dictionary_)
    assert a.n_steps_ == b.n_steps_ and a.n_reinit_ == b.n_reinit_


def test_state_arrays_continue_exactly():
    a = DictionaryLearner(n_atoms=30, n_nonzero=2, random_state=1).partial_fit(X[:300])
    a.partial_fit(X[300:600])
    saved = {k: v.copy() for k, v in a.state_arrays().items()}
    b = DictionaryLearner(n_atoms=30, n_nonzero=2, random_state=1).load_state_arrays(saved)
    for s in (600, 900, 1200):
        a.partial_fit(X[s : s + 300])
        b.partial_fit(X[s : s + 300])
    np.testing.assert_array_equal(a.dictionary_, b.dictionary_)
    with pytest.raises(InvalidInputError, match="atoms"):
        DictionaryLearner(n_atoms=31).load_state_arrays(saved)


def test_stream_archive_decodes_and_matches_in_memory_fidelity(store, tmp_path):
    size = compress_store(store, tmp_path / "s.smz", CollectionCodec(max_epochs=4))
    compress_embeddings(X, tmp_path / "m.smz", codec="collection", max_epochs=4)
    with Container.open(tmp_path / "s.smz") as c:
        assert c.header.codec == "collection" and c.header.n_items == len(X)
        assert c.header.params["dictionary_fit"]["method"] == "online-stream"
        assert not c.has("names")  # placeholder names of an unnamed array are not stored
        with Container.open(tmp_path / "m.smz") as m:
            assert set(c.header.params) == set(m.header.params)
    assert size == (tmp_path / "s.smz").stat().st_size
    gap = _cos(tmp_path / "m.smz") - _cos(tmp_path / "s.smz")
    assert _cos(tmp_path / "s.smz") > 0.97 and abs(gap) < 0.01, gap
    assert not (tmp_path / "s.smz.work").exists()  # work folder removed after success


def test_parallel_steps_and_rate_control_errors(store, tmp_path):
    compress_store(store, tmp_path / "g.smz", CollectionCodec(max_epochs=3), settings=StreamSettings(max_epochs=3, group=3))
    assert _cos(tmp_path / "g.smz") > 0.97
    with pytest.raises(InvalidInputError, match="in-memory engine"):
        compress_store(store, tmp_path / "b.smz", CollectionCodec(bits_per_item=50))
    with pytest.raises(InvalidInputError, match="exceeds"):
        compress_store(store, tmp_path / "b.smz", CollectionCodec(n_atoms=5000))
    with pytest.raises(InvalidInputError, match="group"):
        compress_store(store, tmp_path / "b.smz", settings=StreamSettings(group=0))
    assert not (tmp_path / "b.smz").exists()


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("stage", ["dictionary", "coding"])
def test_interrupted_run_resumes_to_the_identical_archive(store, tmp_path, monkeypatch, stage):
    codec = CollectionCodec(max_epochs=2)
    settings = StreamSettings(max_epochs=2, checkpoint_seconds=0.0)
    compress_store(store, tmp_path / "ref.smz", codec, settings=settings)

    target = tmp_path / "out.smz"
    target.write_bytes(b"the previous archive")
    calls = {"n": 0}
    name = "task_batch_stats" if stage == "dictionary" else "task_code_shard"
    real = getattr(stream, name)

    def failing(*args):
        calls["n"] += 1
        if calls["n"] == (4 if stage == "dictionary" else 3):
            raise Boom("simulated crash")
        return real(*args)

    monkeypatch.setattr(stream, name, failing)
    with pytest.raises(Boom):
        compress_store(store, target, codec, settings=settings)
    assert target.read_bytes() == b"the previous archive"  # the old archive survives the crash
    work = list((tmp_path / "out.smz.work").iterdir())
    assert work and (work[0] / "dictionary.npz").is_file()
    monkeypatch.setattr(stream, name, real)
    logs: list[str] = []
    compress_store(store, target, codec, settings=settings, log=logs.append)
    assert target.read_bytes() == (tmp_path / "ref.smz").read_bytes()
    if stage == "dictionary":
        assert any("resuming" in m for m in logs)


_KILL_SCRIPT = """
import sys
from semzip.codecs.collection import CollectionCodec
from semzip.scale.stream import StreamSettings, compress_store
compress_store(sys.argv[1], sys.argv[2], CollectionCodec(max_epochs=4),
               settings=StreamSettings(max_epochs=4, batch_size=128, checkpoint_seconds=0.0))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkilled_run_resumes_to_the_identical_archive(store, tmp_path):
    cmd = [sys.executable, "-c", _KILL_SCRIPT, str(store.root)]
    subprocess.run([*cmd, str(tmp_path / "ref.smz")], check=True, timeout=300)
    target = tmp_path / "out.smz"
    p = subprocess.Popen([*cmd, str(target)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((tmp_path).glob("out.smz.work/*/dictionary.npz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    killed = p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert killed, "the run finished before it could be killed; make it longer"
    assert not target.exists()
    subprocess.run([*cmd, str(target)], check=True, timeout=300)
    assert target.read_bytes() == (tmp_path / "ref.smz").read_bytes()


def test_fill_from_npy_and_parquet_files(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    np.save(tmp_path / "x.npy", X[:500])
    a = fill_store_from_file(tmp_path / "a", tmp_path / "x.npy", shard_size=128)
    np.testing.assert_array_equal(a.embeddings(), X[:500])
    table = pa.table({"name": [f"img{i}.jpg" for i in range(500)], "embedding": list(X[:500])})
    pq.write_table(table, tmp_path / "x.parquet", row_group_size=77)  # row groups do not align with shards
    b = fill_store_from_file(tmp_path / "b", tmp_path / "x.parquet", shard_size=128)
    np.testing.assert_array_equal(b.embeddings(), X[:500])
    assert b.names()[:2] == ["img0.jpg", "img1.jpg"]
    # a partly filled store resumes at the missing shards and ends up the same
    os.remove(b.shard_path(2))
    c = fill_store_from_file(tmp_path / "b", tmp_path / "x.parquet", shard_size=128)
    np.testing.assert_array_equal(c.embeddings(), X[:500])
    with pytest.raises(InvalidInputError, match="expected .npy or .parquet"):
        fill_store_from_file(tmp_path / "c", __file__)


def test_folder_with_bad_images_streams_and_records_skips(tmp_path):
    from PIL import Image

    from semzip.models.registry import load_encoder

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(9):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "5.png").write_bytes(b"not a png")
    enc = load_encoder("thumbnail")
    skipped: list[str] = []
    st = fill_store_from_folder(tmp_path / "st", folder, enc, shard_size=4,
                                on_skip=lambda n, r: skipped.append(n))
    assert st.shard_lengths() == [4, 3, 1] and skipped == ["5.png"]
    assert [s for s, _ in st.skipped()] == ["5.png"]
    assert "5.png" not in st.names() and st.read_shard(0).pixels.tolist() == [24 * 32] * 4
    # changing the folder changes the plan: the old store is not silently mixed with new inputs
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / "9.png")
    with pytest.raises(InvalidInputError, match="other inputs"):
        fill_store_from_folder(tmp_path / "st", folder, enc, shard_size=4)


def test_cli_stream_engine(tmp_path):
    from typer.testing import CliRunner

    from semzip.cli import app

    np.save(tmp_path / "x.npy", X[:1500])
    runner = CliRunner()
    r = runner.invoke(app, ["compress", "--embeddings", str(tmp_path / "x.npy"), "-o", str(tmp_path / "a.smz"),
                            "--engine", "stream", "--shard-size", "400", "--epochs", "2",
                            "--store", str(tmp_path / "store")])
    assert r.exit_code == 0, r.output
    assert "1500 items" in r.output
    assert EmbeddingStore.open(tmp_path / "store").complete  # a named store is kept for reuse
    r = runner.invoke(app, ["compress", "-o", str(tmp_path / "b.smz"), "--engine", "stream", "--epochs", "2",
                            "--store", str(tmp_path / "store")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.smz").read_bytes() == (tmp_path / "b.smz").read_bytes()
    r = runner.invoke(app, ["compress", "--embeddings", str(tmp_path / "x.npy"), "-o", str(tmp_path / "c.smz"),
                            "--engine", "stream", "--bits-per-item", "40"])
    assert r.exit_code == 2 and "in-memory engine" in r.output
    r = runner.invoke(app, ["compress", "--embeddings", str(tmp_path / "x.npy"), "-o", str(tmp_path / "c.smz"),
                            "--engine", "warp"])
    assert r.exit_code == 2 and "unknown engine" in r.output
    assert not (tmp_path / "c.smz").exists()


def test_cli_embed_then_compress_from_the_store(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from semzip.cli import app

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    (folder / "notes.txt").write_text("not an image")
    runner = CliRunner()
    r = runner.invoke(app, ["embed", str(folder), "--store", str(tmp_path / "st"), "--shard-size", "16"])
    assert r.exit_code == 0, r.output
    assert "40 items in 3 shards" in r.output and "notes.txt" in r.output
    r = runner.invoke(app, ["compress", "-o", str(tmp_path / "a.smz"), "--engine", "stream", "--store",
                            str(tmp_path / "st"), "--n-atoms", "8", "--epochs", "2"])
    assert r.exit_code == 0, r.output
    with Container.open(tmp_path / "a.smz") as c:
        assert c.names[:2] == ["00.png", "01.png"] and c.header.model("encoder").name == "thumbnail"
        assert c.header.params["pixels_per_item"] == 256
    r = runner.invoke(app, ["embed", str(tmp_path / "nope"), "--store", str(tmp_path / "s2")])
    assert r.exit_code == 2 and "no such folder or file" in r.output
