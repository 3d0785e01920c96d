"""The release check: the true pipelines end to end with real pretrained weights (`pytest -m weights`).

Deselected from the default run (pyproject's addopts). On a machine that has the weights (a GPU machine, or a
user's), each test runs where its models are found and is skipped with the missing piece named otherwise.
Where the weights are found (docs/models.md):

* OpenCLIP ViT-H-14 laion2b_s32b_b79k: the OpenCLIP hub cache (HF_HOME), or
  ``$SEMZIP_RELEASE_VIT_H`` = a local file of those weights (loaded as ``laion2b_s32b_b79k@<file>``);
* SD-2.1-unCLIP (``stable-diffusion-2-1-unclip``) and SD img2img (a Stable Diffusion 1.5/2.1 pipeline): the
  folders named by ``$SEMZIP_RELEASE_UNCLIP`` / ``$SEMZIP_RELEASE_SD`` (folder names are looked up in the model
  search path too: ``$SEMZIP_MODEL_PATH``);
* CompressAI cheng2020-attn (quality ``$SEMZIP_RELEASE_CHENG_Q``, default 3): torch's hub cache (TORCH_HOME);
* LPIPS/DISTS/FID backbones: ``$SEMZIP_ALEXNET_WEIGHTS``, ``$SEMZIP_VGG16_WEIGHTS``, ``$SEMZIP_INCEPTION_WEIGHTS``
  or torch's hub cache;
* Kodak: ``$SEMZIP_RELEASE_KODAK`` (24 PNGs), else ``../shared/data/kodak``; captions for the image-text path:
  ``$SEMZIP_RELEASE_KODAK_CAPTIONS`` (CSV image,caption), else the shared captions file.

Device: ``$SEMZIP_RELEASE_DEVICE`` (default: cuda when available).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.weights

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _device() -> str:
    torch = pytest.importorskip("torch")
    return os.environ.get("SEMZIP_RELEASE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def _kodak() -> Path:
    p = Path(os.environ.get("SEMZIP_RELEASE_KODAK", SHARED / "kodak"))
    if not p.is_dir() or len(list(p.glob("*.png"))) < 24:
        pytest.skip(f"Kodak (24 PNGs) not found at {p}; set $SEMZIP_RELEASE_KODAK")
    return p


def _kodak_captions() -> Path:
    env = os.environ.get("SEMZIP_RELEASE_KODAK_CAPTIONS")
    cands = [Path(env)] if env else sorted(SHARED.glob("kodak*captions*.csv")) + sorted((SHARED / "kodak").glob("*.csv"))
    for c in cands:
        if c.is_file():
            return c
    pytest.skip("Kodak captions CSV not found; set $SEMZIP_RELEASE_KODAK_CAPTIONS")


def _folder_env(var: str, what: str) -> str:
    from semzip.models.registry import locate

    v = os.environ.get(var)
    if not v or not Path(locate(v)).is_dir():
        pytest.skip(f"{what} not found: set ${var} to its pipeline folder")
    return locate(v)


def _vit_h_spec() -> str:
    from semzip.errors import MissingModelError
    from semzip.models.registry import load_encoder

    f = os.environ.get("SEMZIP_RELEASE_VIT_H")
    spec = f"open_clip:ViT-H-14/laion2b_s32b_b79k@{f}" if f else "open_clip:ViT-H-14/laion2b_s32b_b79k"
    try:
        load_encoder(spec, device=_device())
    except MissingModelError as exc:
        pytest.skip(f"OpenCLIP ViT-H-14 weights: {exc}")
    return spec


def test_vit_h_dictionary_unclip(tmp_path):
    """ViT-H-14 -> dictionary + sparse codes -> SD-2.1-unCLIP renders every Kodak image back; the decoded
    images stay closer in CLIP space to their originals than to the other images."""
    from semzip import api
    from semzip.models.registry import load_encoder

    kodak = _kodak()
    enc_spec = _vit_h_spec()
    unclip = _folder_env("SEMZIP_RELEASE_UNCLIP", "SD-2.1-unCLIP")
    arc = tmp_path / "kodak.smz"
    size, got = api.compress_folder(kodak, arc, encoder=enc_spec, n_atoms=16, sparsity=4)
    assert len(got.names) == 24 and size < 24 * 64
    out = api.decompress_images(arc, tmp_path / "dec", generator=f"stable-unclip:{unclip}", seed=0, size=(512, 512))
    assert len(out) >= 24
    enc = load_encoder(enc_spec, device=_device())
    from PIL import Image

    orig = enc.encode_images([np.array(Image.open(kodak / n).convert("RGB")) for n in got.names])
    dec = enc.encode_images([np.array(Image.open(p).convert("RGB")) for p in out[:24]])
    sim = dec @ orig.T
    assert np.mean(np.argmax(sim, axis=1) == np.arange(24)) > 0.5


def test_cheng2020_attn_caption_img2img(tmp_path):
    """cheng2020-attn at a low quality -> caption (integer LM) -> SD img2img, on Kodak."""
    from semzip import api
    from semzip.models.lic import load_lic

    kodak = _kodak()
    captions = _kodak_captions()
    q = int(os.environ.get("SEMZIP_RELEASE_CHENG_Q", "3"))
    from semzip.errors import MissingModelError

    try:
        load_lic(f"compressai:cheng2020-attn:{q}")
    except MissingModelError as exc:
        pytest.skip(f"cheng2020-attn weights: {exc}")
    sd = _folder_env("SEMZIP_RELEASE_SD", "Stable Diffusion img2img")
    arc = tmp_path / "k.smz"
    api.compress_image_text(kodak, arc, lic=f"compressai:cheng2020-attn:{q}", captions=captions, scale=0.25,
                            refiner=f"sd-img2img:{sd}", strength=0.5)
    out = api.decompress_image_text(arc, tmp_path / "dec")
    assert len([p for p in out if p.suffix == ".png"]) >= 24


def test_learned_metrics_on_kodak(tmp_path):
    """LPIPS, DISTS and FID/KID with their real backbones on Kodak against JPEG: finite, ordered by quality."""
    from semzip.eval.metrics import get_metric
    from semzip.eval.run import run_eval

    kodak = _kodak()
    for name in ("lpips", "dists", "fid"):
        ok, why = get_metric(name).available()
        if not ok:
            pytest.skip(why)
    s = run_eval(kodak, tmp_path / "ev", codecs=["jpeg"], metrics=["psnr", "lpips", "dists", "fid", "kid"],
                 qualities={"jpeg": [5, 50]}, device=_device(), progress=False)
    jpeg = next(e for e in s.results["codecs"] if e["name"] == "jpeg")
    lp, fid = jpeg["results"]["lpips-alex"], jpeg["results"]["fid"]
    assert lp[0] > lp[1] > 0 and fid[0] > fid[1] >= 0
