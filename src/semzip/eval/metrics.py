"""Image-quality metrics over batches of uint8 RGB images, each from a maintained library where one exists.

A :class:`Metric` has a name, a direction (``higher_is_better``), ``available() -> (ok, reason)``,
``check(originals, captions) -> reason | None`` (set-specific limits, e.g. MS-SSIM on small images) and
``compute(originals, decoded, captions) -> per-image values`` (a single set-level value for FID/KID).
A metric that cannot be computed honestly (pretrained weights absent) says why; it never returns a number
from untrained weights.

* ``psnr``      torchmetrics PSNR on RGB, data range 255, per image; MSE = 0 gives the cap of 100 dB.
* ``ssim``, ``ms-ssim``  torchmetrics (Gaussian 11x11, sigma 1.5; MS-SSIM with the 5 standard scales, which
  needs a short side > 160 px: smaller sets are reported unavailable, not computed with fewer scales).
* ``lpips-alex``, ``lpips-vgg`` (``lpips`` = alex), ``dists``: torchmetrics' shipped heads (LPIPS linear
  layers, DISTS alpha/beta) on ImageNet backbones built here in plain torch (no torchvision). The backbone
  is torchvision's checkpoint file, found at an explicit path, ``$SEMZIP_ALEXNET_WEIGHTS`` /
  ``$SEMZIP_VGG16_WEIGHTS``, or torch's hub cache, where torchvision would have downloaded it.
* ``fid``, ``kid``: patch-based (HiFiC, Mentzer et al. 2020): each image is cut into non-overlapping
  256x256 patches, plus the same grid shifted by 128 px; torchmetrics' FID/KID over the patches' Inception
  features (torch-fidelity's InceptionV3 and its weight file, or any feature extractor module).
* ``clip``: cosine similarity of original and decoded image embeddings under any encoder of semzip's
  registry; with the offline ``thumbnail`` encoder it is named ``thumbnail-sim`` (colour layout, not CLIP).
* ``clip-text``: cosine similarity of the decoded image's and the caption's embeddings (CLIP encoders only).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semzip.errors import InvalidInputError

Images = Sequence[np.ndarray]
PSNR_CAP = 100.0
"""PSNR reported for identical images (MSE = 0), so that results stay finite JSON numbers."""
FID_PATCH = 256
"""Side of the square patches FID/KID are computed on (HiFiC's choice; shifted grid at half the size)."""

# torchvision's checkpoint files of the ImageNet backbones (as torchvision names them in torch's hub cache).
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
BACKBONE_ENV = {"alex": "SEMZIP_ALEXNET_WEIGHTS", "vgg": "SEMZIP_VGG16_WEIGHTS"}
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's InceptionV3 (FID/KID)
INCEPTION_ENV = "SEMZIP_INCEPTION_WEIGHTS"


class Metric:
    """Base class: a named quality measure over pairs (original, decoded) of RGB uint8 images."""

    name: str = ""
    label: str = ""
    higher_is_better: bool = True
    set_level: bool = False
    needs_captions: bool = False

    def __init__(self, device: str = "cpu", batch_size: int = 8) -> None:
        self.device = device
        self.batch_size = batch_size

    def available(self) -> tuple[bool, str]:
        """Whether the metric can run here, and if not why (missing package or weights)."""
        return True, ""

    def check(self, originals: Images, captions: Sequence[str | None] | None = None) -> str | None:
        """A reason this particular set cannot be measured (e.g. images too small), else None."""
        return None

    def compute(self, originals: Images, decoded: Images, captions: Sequence[str | None] | None = None):
        """Per-image values (list of floats), or one float for set-level metrics."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "label": self.label, "higher_is_better": self.higher_is_better,
                "set_level": self.set_level}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# ----------------------------------------------------------------------------------------------- helpers


def _torch():
    from semzip._optional import require

    return require("torch", "torch", "image metrics")


def _check_pairs(originals: Images, decoded: Images) -> None:
    if len(originals) != len(decoded):
        raise InvalidInputError(f"got {len(originals)} originals but {len(decoded)} decoded images")
    for i, (a, b) in enumerate(zip(originals, decoded)):
        if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
            raise InvalidInputError(f"image {i}: original {a.shape} and decoded {b.shape} must be equal HxWx3")


def _batches(originals: Images, decoded: Images, batch_size: int, device: str, double: bool = False
             ) -> Iterator[tuple[Any, Any]]:
    """Runs of consecutive same-shape pairs as float (N, 3, H, W) tensors in [0, 255]."""
    torch = _torch()
    dtype = torch.float64 if double else torch.float32
    i = 0
    while i < len(originals):
        j = i + 1
        while j < len(originals) and j - i < batch_size and originals[j].shape == originals[i].shape:
            j += 1
        to = lambda imgs: torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).to(device, dtype)
        yield to(originals[i:j]), to(decoded[i:j])
        i = j


def _import_ok(module: str) -> tuple[bool, str]:
    try:
        __import__(module)
    except Exception as exc:  # noqa: BLE001 - an import can fail in many ways (e.g. torchvision's ops)
        return False, f"{module} cannot be imported ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return True, ""


def _hub_checkpoint(filename: str) -> Path:
    torch = _torch()
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _find_weights(explicit: str | os.PathLike | None, env: str, filename: str) -> tuple[Path | None, list[str]]:
    """First existing file among an explicit path, ``$env`` and torch's hub cache; plus where it looked."""
    looked, home = [], str(Path.home())
    for cand in (explicit, os.environ.get(env), _hub_checkpoint(filename)):
        if cand:
            looked.append(str(cand).replace(home, "~", 1) if str(cand).startswith(home) else str(cand))
            if Path(cand).is_file():
                return Path(cand), looked
    return None, looked


# ----------------------------------------------------------------------------------------- pixel metrics


class PSNR(Metric):
    name, label, higher_is_better = "psnr", "PSNR (RGB, dB)", True

    def compute(self, originals, decoded, captions=None):
        _check_pairs(originals, decoded)
        from torchmetrics.functional.image import peak_signal_noise_ratio

        out = []
        for a, b in _batches(originals, decoded, self.batch_size, self.device, double=True):
            v = peak_signal_noise_ratio(b, a, data_range=255.0, reduction="none", dim=(1, 2, 3))
            out += [min(float(x), PSNR_CAP) for x in v.reshape(-1).cpu()]
        return out


class SSIM(Metric):
    name, label, higher_is_better = "ssim", "SSIM (RGB)", True

    def compute(self, originals, decoded, captions=None):
        _check_pairs(originals, decoded)
        from torchmetrics.functional.image import structural_similarity_index_measure

        out = []
        for a, b in _batches(originals, decoded, self.batch_size, self.device):
            v = structural_similarity_index_measure(b, a, data_range=255.0, reduction="none")
            out += [float(x) for x in v.reshape(-1).cpu()]
        return out


class MSSSIM(Metric):
    """MS-SSIM with torchmetrics' defaults: 5 scales, Gaussian 11x11 sigma 1.5, Wang et al.'s betas."""

    name, label, higher_is_better = "ms-ssim", "MS-SSIM (RGB)", True
    kernel_size, scales = 11, 5

    @property
    def min_side(self) -> int:
        return (self.kernel_size - 1) * 2 ** (self.scales - 1) + 1  # 161 px

    def check(self, originals, captions=None):
        small = [i for i, a in enumerate(originals) if min(a.shape[:2]) < self.min_side]
        if small:
            a = originals[small[0]]
            return (f"MS-SSIM with {self.scales} scales needs a short side of at least {self.min_side} px; "
                    f"{len(small)} image(s) are smaller (e.g. image {small[0]}: {a.shape[1]}x{a.shape[0]})")
        return None

    def compute(self, originals, decoded, captions=None):
        _check_pairs(originals, decoded)
        if (reason := self.check(originals)) is not None:
            raise InvalidInputError(reason)
        from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

        out = []
        for a, b in _batches(originals, decoded, self.batch_size, self.device):
            v = multiscale_structural_similarity_index_measure(b, a, data_range=255.0, reduction="none")
            out += [float(x) for x in v.reshape(-1).cpu()]
        return out


# ---------------------------------------------------------------------------------- perceptual (LPIPS/DISTS)


def build_backbone(net: str):
    """torchvision's AlexNet / VGG16 ``features`` layer stack rebuilt in plain torch (weights not loaded)."""
    torch = _torch()
    nn = torch.nn
    layers: list = []
    if net == "alex":
        spec = [(3, 64, 11, 4, 2), "R", "M", (64, 192, 5, 1, 2), "R", "M", (192, 384, 3, 1, 1), "R",
                (384, 256, 3, 1, 1), "R", (256, 256, 3, 1, 1), "R", "M"]
        for s in spec:
            if s == "R":
                layers.append(nn.ReLU())
            elif s == "M":
                layers.append(nn.MaxPool2d(3, 2))
            else:
                layers.append(nn.Conv2d(*s[:3], stride=s[3], padding=s[4]))
    elif net == "vgg":
        c_in = 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
                c_in = v
    else:
        raise InvalidInputError(f"backbone must be 'alex' or 'vgg', got {net!r}")
    return nn.Sequential(*layers)


def _backbone(net: str, weights: Path):
    """The backbone loaded from torchvision's checkpoint file (keys ``features.N.weight``/``.bias``)."""
    torch = _torch()
    features = build_backbone(net)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    sub = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict(sub, strict=True)
    except RuntimeError as exc:
        raise InvalidInputError(f"{weights}: not a torchvision {net} checkpoint ({str(exc).splitlines()[0]})") from None
    return features.eval().requires_grad_(False)


class _BackboneMetric(Metric):
    net = "vgg"
    higher_is_better = False

    def __init__(self, backbone: str | os.PathLike | None = None, **kw) -> None:
        super().__init__(**kw)
        self.backbone = backbone
        self._model = None

    def available(self):
        ok, why = _import_ok("torchmetrics")
        if not ok:
            return ok, why
        path, looked = _find_weights(self.backbone, BACKBONE_ENV[self.net], BACKBONE_FILES[self.net])
        if path is None:
            arch = "AlexNet" if self.net == "alex" else "VGG16"
            return False, (f"{self.label} needs the pretrained ImageNet {arch} backbone "
                           f"({BACKBONE_FILES[self.net]}), not found (looked at: {', '.join(looked)}); "
                           f"set ${BACKBONE_ENV[self.net]} or pass --lpips-backbone PATH to semzip eval. Not computed with untrained "
                           "weights.")
        return True, ""

    def _weights_path(self) -> Path:
        ok, why = self.available()
        if not ok:
            from semzip.errors import MissingModelError

            raise MissingModelError(why)
        return _find_weights(self.backbone, BACKBONE_ENV[self.net], BACKBONE_FILES[self.net])[0]

    def compute(self, originals, decoded, captions=None):
        _check_pairs(originals, decoded)
        torch = _torch()
        model = self.model()
        out = []
        with torch.inference_mode():
            for a, b in _batches(originals, decoded, self.batch_size, self.device):
                out += [float(x) for x in model(a / 255.0, b / 255.0).reshape(-1).cpu()]
        return out

    def model(self):
        if self._model is None:
            self._model = self._build(self._weights_path()).to(self.device)
        return self._model


def _lpips_module(net: str, features):
    """LPIPS (Zhang et al. 2018) v0.1 on a backbone, with torchmetrics' shipped linear heads."""
    torch = _torch()
    from torchmetrics.functional.image import lpips as tm_lpips

    heads_file = Path(tm_lpips.__file__).parent / "lpips_models" / f"{net}.pth"
    heads = torch.load(heads_file, map_location="cpu", weights_only=True)
    cuts = {"alex": [2, 5, 8, 10, 12], "vgg": [4, 9, 16, 23, 30]}[net]

    class LPIPS(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features
            self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
            for i in range(5):
                self.register_buffer(f"lin{i}", heads[f"lin{i}.model.1.weight"])

        def _feats(self, x):
            h, out, start = (2 * x - 1 - self.shift) / self.scale, [], 0
            for cut in cuts:
                for layer in self.features[start:cut]:
                    h = layer(h)
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
                start = cut
            return out

        def forward(self, x, y):  # x, y in [0, 1]
            total = 0
            for i, (f0, f1) in enumerate(zip(self._feats(x), self._feats(y))):
                d = torch.nn.functional.conv2d((f0 - f1) ** 2, getattr(self, f"lin{i}"))
                total = total + d.mean(dim=(2, 3))
            return total.reshape(-1)

    return LPIPS().eval()


class LPIPSMetric(_BackboneMetric):
    higher_is_better = False

    def __init__(self, net: str = "alex", **kw) -> None:
        if net not in BACKBONE_FILES:
            raise InvalidInputError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.net = net
        self.name, self.label = f"lpips-{net}", f"LPIPS ({'AlexNet' if net == 'alex' else 'VGG'})"
        super().__init__(**kw)

    def _build(self, weights: Path):
        return _lpips_module(self.net, _backbone(self.net, weights))


def _dists_module(features):
    """DISTS (Ding et al. 2020) with torchmetrics' alpha/beta and L2 pooling, on a VGG16 backbone."""
    torch = _torch()
    from torchmetrics.functional.image import dists as tm_dists

    w = torch.load(tm_dists._PATH_WEIGHT_DISTS, map_location="cpu", weights_only=True)
    nn = torch.nn
    stages = [nn.Sequential(*features[0:4])]
    for start, stop, ch in ((5, 9, 64), (10, 16, 128), (17, 23, 256), (24, 30, 512)):
        stages.append(nn.Sequential(tm_dists.L2pooling(channels=ch), *features[start:stop]))

    class DISTS(nn.Module):
        chns = (3, 64, 128, 256, 512, 512)

        def __init__(self):
            super().__init__()
            self.stages = nn.ModuleList(stages)
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1))
            self.register_buffer("alpha", w["alpha"])
            self.register_buffer("beta", w["beta"])

        def _feats(self, x):
            h, out = (x - self.mean) / self.std, [x]
            for s in self.stages:
                h = s(h)
                out.append(h)
            return out

        def forward(self, x, y):  # as torchmetrics' DISTSNetwork.forward
            f0, f1 = self._feats(x), self._feats(y)
            c1 = c2 = 1e-6
            w_sum = self.alpha.sum() + self.beta.sum()
            alpha = torch.split(self.alpha / w_sum, list(self.chns), dim=1)
            beta = torch.split(self.beta / w_sum, list(self.chns), dim=1)
            d1 = d2 = 0
            for k in range(len(self.chns)):
                xm, ym = f0[k].mean([2, 3], keepdim=True), f1[k].mean([2, 3], keepdim=True)
                d1 = d1 + (alpha[k] * (2 * xm * ym + c1) / (xm**2 + ym**2 + c1)).sum(1, keepdim=True)
                xv = ((f0[k] - xm) ** 2).mean([2, 3], keepdim=True)
                yv = ((f1[k] - ym) ** 2).mean([2, 3], keepdim=True)
                cov = (f0[k] * f1[k]).mean([2, 3], keepdim=True) - xm * ym
                d2 = d2 + (beta[k] * (2 * cov + c2) / (xv + yv + c2)).sum(1, keepdim=True)
            return (1 - (d1 + d2)).reshape(-1)

    return DISTS().eval()


class DISTSMetric(_BackboneMetric):
    name, label, net, higher_is_better = "dists", "DISTS", "vgg", False

    def _build(self, weights: Path):
        return _dists_module(_backbone("vgg", weights))


# ------------------------------------------------------------------------------------ FID / KID (patches)


def extract_patches(images: Images, patch: int = FID_PATCH) -> np.ndarray:
    """HiFiC's FID patches: the non-overlapping ``patch`` grid, then the grid shifted by ``patch // 2``."""
    out = []
    for a in images:
        h, w = a.shape[:2]
        for off in (0, patch // 2):
            for y in range(off, h - patch + 1, patch):
                for x in range(off, w - patch + 1, patch):
                    out.append(a[y : y + patch, x : x + patch])
    return np.stack(out) if out else np.zeros((0, patch, patch, 3), np.uint8)


def _inception(weights: Path):
    """torch-fidelity's InceptionV3 (the TF-FID port) returning 2048-d pool features of uint8 images."""
    torch = _torch()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Inception(torch.nn.Module):
        num_features = 2048

        def __init__(self):
            super().__init__()
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                   feature_extractor_weights_path=str(weights))

        def forward(self, x):
            return self.net(x)[0].reshape(x.shape[0], -1)

    return Inception().eval()


class PatchFID(Metric):
    """FID or KID over patches (set-level); ``extractor`` overrides the Inception network (any nn.Module
    mapping uint8 (N, 3, P, P) to (N, F) features)."""

    higher_is_better = False
    set_level = True

    def __init__(self, kind: str = "fid", patch: int = FID_PATCH, extractor=None,
                 inception_weights: str | os.PathLike | None = None, **kw) -> None:
        super().__init__(**kw)
        if kind not in ("fid", "kid"):
            raise InvalidInputError(f"kind must be 'fid' or 'kid', got {kind!r}")
        self.kind, self.patch, self.extractor, self.inception_weights = kind, patch, extractor, inception_weights
        self.name = kind
        self.label = f"{kind.upper()} ({patch}px patches)"
        self.extra: dict = {}

    def available(self):
        ok, why = _import_ok("torchmetrics")
        if not ok or self.extractor is not None:
            return ok, why
        ok, why = _import_ok("torch_fidelity")
        if not ok:
            return False, f"{self.kind.upper()} needs torch-fidelity's InceptionV3: {why}"
        path, looked = _find_weights(self.inception_weights, INCEPTION_ENV, INCEPTION_FILE)
        if path is None:
            return False, (f"{self.kind.upper()} needs the pretrained InceptionV3 weights ({INCEPTION_FILE}), "
                           f"not found (looked at: {', '.join(looked)}); set ${INCEPTION_ENV}")
        return True, ""

    def check(self, originals, captions=None):
        n = len(extract_patches([np.zeros((*a.shape[:2], 0), np.uint8) for a in originals], self.patch))
        if n < 2:
            return f"{self.kind.upper()} needs at least 2 patches of {self.patch} px; this set gives {n}"
        return None

    def compute(self, originals, decoded, captions=None):
        _check_pairs(originals, decoded)
        torch = _torch()
        extractor = self.extractor
        if extractor is None:
            ok, why = self.available()
            if not ok:
                from semzip.errors import MissingModelError

                raise MissingModelError(why)
            extractor = _inception(_find_weights(self.inception_weights, INCEPTION_ENV, INCEPTION_FILE)[0])
        real, fake = extract_patches(originals, self.patch), extract_patches(decoded, self.patch)
        if self.kind == "fid":
            from torchmetrics.image.fid import FrechetInceptionDistance

            m = FrechetInceptionDistance(feature=extractor)
        else:
            import warnings

            from torchmetrics.image.kid import KernelInceptionDistance

            with warnings.catch_warnings():  # "saves all features in a buffer": expected, patches are few
                warnings.simplefilter("ignore", UserWarning)
                m = KernelInceptionDistance(feature=extractor, subset_size=min(1000, len(real)), subsets=100)
        m = m.to(self.device)
        for arr, is_real in ((real, True), (fake, False)):
            for s in range(0, len(arr), self.batch_size):
                t = torch.from_numpy(arr[s : s + self.batch_size]).permute(0, 3, 1, 2).to(self.device)
                m.update(t, real=is_real)
        got = m.compute()
        self.extra = {"n_patches": len(real), "patch": self.patch}
        if self.kind == "kid":
            self.extra["kid_std"] = float(got[1])
            return float(got[0])
        return float(got)


# ---------------------------------------------------------------------------------- embedding similarity


def _is_thumbnail(spec: str) -> bool:
    return spec.strip().split(":", 1)[0] == "thumbnail"


class EmbeddingSimilarity(Metric):
    """Cosine similarity of original and decoded image embeddings under a registry encoder."""

    higher_is_better = True

    def __init__(self, encoder: str = "thumbnail", **kw) -> None:
        super().__init__(**kw)
        self.encoder_spec = encoder
        if _is_thumbnail(encoder):
            self.name, self.label = "thumbnail-sim", f"thumbnail similarity ({encoder}; colour layout, not CLIP)"
        else:
            self.name, self.label = "clip", f"CLIP image similarity ({encoder})"
        self._enc = None

    def encoder(self):
        if self._enc is None:
            from semzip.models.registry import load_encoder

            self._enc = load_encoder(self.encoder_spec)
        return self._enc

    def available(self):
        try:
            self.encoder()
        except Exception as exc:  # noqa: BLE001 - any loader failure makes the metric unavailable
            return False, f"encoder {self.encoder_spec!r} cannot be loaded: {exc}"
        return True, ""

    def compute(self, originals, decoded, captions=None):
        _check_pairs(originals, decoded)
        enc = self.encoder()
        a = _unit(enc.encode_images(list(originals)))
        b = _unit(enc.encode_images(list(decoded)))
        return [float(x) for x in np.sum(a * b, axis=1)]


class CaptionSimilarity(EmbeddingSimilarity):
    """Cosine similarity of the decoded image's embedding and its caption's (CLIP-score without the 100x)."""

    needs_captions = True

    def __init__(self, encoder: str = "thumbnail", **kw) -> None:
        super().__init__(encoder, **kw)
        self.name, self.label = "clip-text", f"image-caption similarity ({encoder})"

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        try:
            self.encoder().encode_text(["a photo"])
        except Exception as exc:  # noqa: BLE001
            return False, f"encoder {self.encoder_spec!r} cannot embed text: {exc}"
        return True, ""

    def check(self, originals, captions=None):
        if captions is None or not all(captions):
            return "the dataset has no caption for every image (pass a captions CSV)"
        return None

    def compute(self, originals, decoded, captions=None):
        _check_pairs(originals, decoded)
        if (reason := self.check(originals, captions)) is not None:
            raise InvalidInputError(reason)
        enc = self.encoder()
        a = _unit(enc.encode_images(list(decoded)))
        b = _unit(enc.encode_text(list(captions)))
        return [float(x) for x in np.sum(a * b, axis=1)]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------- registry

_METRICS: dict[str, tuple[Callable[..., Metric], tuple[str, ...]]] = {}
_ALIASES = {"lpips": "lpips-alex", "msssim": "ms-ssim", "ms_ssim": "ms-ssim", "thumbnail-sim": "clip",
            "clip-image": "clip", "clip_text": "clip-text"}
_BASE = ("device", "batch_size")


def register_metric(name: str, factory: Callable[..., Metric], options: Sequence[str] = ()) -> None:
    """Register ``factory(**options) -> Metric`` under ``name``; ``options`` are the keywords it takes
    besides ``device`` and ``batch_size``."""
    _METRICS[name] = (factory, _BASE + tuple(options))


def known_metrics() -> list[str]:
    return sorted(_METRICS)


def get_metric(name: str, **options: Any) -> Metric:
    """Build a metric by name; options it does not take (e.g. ``encoder`` for PSNR) or None are ignored."""
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in _METRICS:
        raise InvalidInputError(f"unknown metric {name!r}; known: {', '.join(known_metrics())}")
    factory, accepted = _METRICS[key]
    return factory(**{k: v for k, v in options.items() if k in accepted and v is not None})


register_metric("psnr", PSNR)
register_metric("ssim", SSIM)
register_metric("ms-ssim", MSSSIM)
register_metric("lpips-alex", lambda **kw: LPIPSMetric("alex", **kw), ("backbone",))
register_metric("lpips-vgg", lambda **kw: LPIPSMetric("vgg", **kw), ("backbone",))
register_metric("dists", DISTSMetric, ("backbone",))
register_metric("fid", lambda **kw: PatchFID("fid", **kw), ("patch", "extractor", "inception_weights"))
register_metric("kid", lambda **kw: PatchFID("kid", **kw), ("patch", "extractor", "inception_weights"))
register_metric("clip", EmbeddingSimilarity, ("encoder",))
register_metric("clip-text", CaptionSimilarity, ("encoder",))


def evaluate(metrics: Sequence[Metric], originals: Images, decoded: Images,
             captions: Sequence[str | None] | None = None) -> dict[str, dict]:
    """Run each metric: {name: {"mean", "per_image"} | {"value", ...} | {"unavailable": reason}}."""
    out: dict[str, dict] = {}
    for m in metrics:
        ok, why = m.available()
        if ok:
            why = m.check(originals, captions)
        if not ok or why:
            out[m.name] = {"unavailable": why}
            continue
        got = m.compute(originals, decoded, captions)
        if m.set_level:
            out[m.name] = {"value": float(got), **getattr(m, "extra", {})}
        else:
            vals = [float(v) for v in got]
            finite = [v for v in vals if math.isfinite(v)]
            out[m.name] = {"mean": float(np.mean(finite)) if finite else float("nan"), "per_image": vals}
    return out
