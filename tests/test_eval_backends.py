"""`semzip eval` with the real backends on random weights of their real architectures: CompressAI zoo codecs
(quality sweeps, files with and without entropy tables), the collection codec with a CLIP encoder that no
offline generator renders, LPIPS against the reference implementation, DISTS, FID/KID through torch-fidelity's
InceptionV3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")
pytest.importorskip("bjontegaard")

from semzip.data.scenes import write_scenes
from semzip.errors import InvalidInputError
from semzip.eval import metrics as M
from semzip.eval.run import run_eval


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    write_scenes(folder, 3, size=(96, 64))
    return folder


def _zoo_weights(torch_home: Path, arch: str, quality: int, tables: bool) -> None:
    """A random-weight zoo file of ``arch`` at ``quality`` in torch's hub cache, with or without CDF tables."""
    from compressai.zoo.image import model_urls

    from semzip.models.tiny import random_compressai_net

    net = random_compressai_net(arch, quality, seed=quality, tables=tables)
    d = torch_home / "hub" / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), d / model_urls[arch]["mse"][quality].rsplit("/", 1)[-1])


def test_compressai_codec_sweeps_the_given_qualities(scenes, tmp_path, monkeypatch):
    """`--qualities compressai=1,2` is honoured; a zoo file without CDF tables (never update()d) is coded
    instead of failing with CompressAI's 'Uninitialized CDFs'."""
    pytest.importorskip("compressai")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _zoo_weights(tmp_path / "torch", "bmshj2018-factorized", 1, tables=False)
    _zoo_weights(tmp_path / "torch", "bmshj2018-factorized", 2, tables=True)
    s = run_eval(scenes, tmp_path / "out", codecs=["compressai:bmshj2018-factorized"], metrics=["psnr"],
                 qualities={"compressai": [1, 2]}, anchor=None, progress=False, report=False)
    entry = next(e for e in s.results["codecs"] if e["name"] == "compressai:bmshj2018-factorized")
    assert [p["label"] for p in entry["points"]] == ["q=1", "q=2"]
    assert [p["extra"]["tables"] for p in entry["points"]] == ["computed", "stored"]
    assert all(b > 0 for b in entry["results"]["bpp"])
    # a quality the zoo lacks locally: the codec is reported not measured, the run goes on
    s = run_eval(scenes, tmp_path / "out2", codecs=["jpeg", "compressai:bmshj2018-factorized"], metrics=["psnr"],
                 qualities={"jpeg": [50], "compressai:bmshj2018-factorized": [3]}, anchor=None, progress=False,
                 report=False)
    assert "not in torch's hub cache" in s.results["unavailable_codecs"]["compressai:bmshj2018-factorized"]
    with pytest.raises(InvalidInputError, match="'webp', which is not a codec of this run"):
        run_eval(scenes, tmp_path / "out3", codecs=["jpeg"], metrics=["psnr"], qualities={"webp": [5]},
                 progress=False, report=False)
    with pytest.raises(InvalidInputError, match="unknown CompressAI architecture"):
        run_eval(scenes, tmp_path / "out4", codecs=["compressai:nope"], metrics=["psnr"], progress=False)


def test_collection_with_an_encoder_no_offline_generator_renders(scenes, tmp_path):
    """A CLIP encoder without --generator: the collection codec is 'not measured' with the reason, the other
    codecs still run; with --generator the spec is wired to the codec."""
    pytest.importorskip("transformers")
    from semzip.eval.baselines import eval_codec
    from semzip.models.tiny import save_tiny_clip

    clip = save_tiny_clip(tmp_path / "tiny-clip", seed=0)
    s = run_eval(scenes, tmp_path / "out", codecs=["jpeg", "collection"], metrics=["psnr"], encoder=f"hf:{clip}",
                 qualities={"jpeg": [50]}, anchor=None, progress=False, report=False)
    why = s.results["unavailable_codecs"]["collection"]
    assert "no offline generator" in why and "--generator" in why
    assert [e["name"] for e in s.results["codecs"]] == ["jpeg"]
    c = eval_codec("collection", encoder=f"hf:{clip}", generator="stable-unclip:/models/sd21-unclip")
    assert c.generator == "stable-unclip:/models/sd21-unclip" and c.available() == (True, "")
    from typer.testing import CliRunner

    from semzip.cli import app

    r = CliRunner().invoke(app, ["eval", "--dataset", str(scenes), "--out", str(tmp_path / "cli"), "--codecs",
                                 "jpeg,collection", "--metrics", "psnr", "--encoder", f"hf:{clip}", "--qualities",
                                 "jpeg=50", "--no-progress"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output[-1500:]
    assert "not measured" in r.output and "--generator" in r.output


# ------------------------------------------------------------------------------- learned metrics (random)


def _pair(seed: int = 0, h: int = 64, w: int = 64) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    a = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)]
    b = [np.clip(x.astype(int) + rng.integers(-30, 30, x.shape), 0, 255).astype(np.uint8) for x in a]
    return a, b


def test_lpips_equals_the_reference_implementation_on_the_same_backbone(tmp_path):
    """semzip's LPIPS (torchmetrics' heads on a plain-torch AlexNet) against the `lpips` package, both on the
    same random torchvision AlexNet weights: the formula, the scaling and the heads agree."""
    lpips = pytest.importorskip("lpips")
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    alex = tv.models.alexnet(weights=None)
    torch.save(alex.state_dict(), tmp_path / "alexnet.pth")
    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    feats = {f"features.{k.split('.', 1)[1]}": v for k, v in alex.state_dict().items() if k.startswith("features.")}
    ref_state = {}
    for k in ref.net.state_dict():
        _, idx, param = k.split(".")  # sliceN.<features index>.weight
        ref_state[k] = feats[f"features.{idx}.{param}"]
    ref.net.load_state_dict(ref_state)
    a, b = _pair()
    got = M.get_metric("lpips", backbone=str(tmp_path / "alexnet.pth")).compute(a, b)
    to = lambda imgs: torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        want = ref(to(a), to(b)).reshape(-1).tolist()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_dists_runs_on_a_torchvision_vgg16_file(tmp_path):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    torch.save(tv.models.vgg16(weights=None).state_dict(), tmp_path / "vgg16.pth")
    m = M.get_metric("dists", backbone=str(tmp_path / "vgg16.pth"))
    assert m.available() == (True, "")
    a, b = _pair(h=96, w=96)
    same, diff = m.compute(a, a), m.compute(a, b)
    assert np.allclose(same, 0, atol=1e-5) and all(np.isfinite(diff)) and min(diff) > 0


def test_fid_and_kid_through_torch_fidelity_inception(tmp_path, monkeypatch):
    """FID/KID load torch-fidelity's InceptionV3 from a weights file (random weights of the real network,
    written here because the real file cannot be downloaded) and run on patches."""
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    with monkeypatch.context() as mp:  # build the network without its weight download, then save it
        mp.setattr(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None)
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), tmp_path / M.INCEPTION_FILE)
    rng = np.random.default_rng(0)
    real = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)]  # 5 patches of 64 px: 4 + 1 shifted
    fake = [np.clip(x.astype(int) + 40, 0, 255).astype(np.uint8) for x in real]
    for kind in ("fid", "kid"):
        m = M.PatchFID(kind, patch=64, inception_weights=tmp_path / M.INCEPTION_FILE)
        assert m.available() == (True, "") and m.check(real) is None
        v = m.compute(real, fake)
        assert np.isfinite(v) and m.extra["n_patches"] == 5
    monkeypatch.setenv(M.INCEPTION_ENV, str(tmp_path / "absent.pth"))
    ok, why = M.PatchFID("fid").available()
    assert not ok and M.INCEPTION_FILE in why
