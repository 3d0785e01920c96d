"""Procedurally generated landscape "photos" for the offline demo and tests (no data files needed).

Five themes (beach, forest, city, mountains, night), each a sky gradient, a horizon, and theme-specific
shapes with random colours and positions: a collection with real structure that a person can look at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

THEMES = ("beach", "forest", "city", "mountains", "night")


def _gradient(h: int, w: int, top, bottom) -> np.ndarray:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(img, (h, w, 3)).copy()


def make_scene(theme: str, rng: np.random.Generator, size: tuple[int, int] = (192, 128)) -> np.ndarray:
    """One RGB uint8 image of the given theme."""
    w, h = size
    jitter = lambda c, s=25: tuple(int(np.clip(v + rng.normal(0, s), 0, 255)) for v in c)
    horizon = int(h * rng.uniform(0.45, 0.7))
    if theme == "night":
        sky = _gradient(horizon, w, jitter((10, 10, 40), 8), jitter((40, 40, 90), 10))
    elif theme == "beach":
        sky = _gradient(horizon, w, jitter((90, 160, 230)), jitter((200, 225, 250)))
    else:
        sky = _gradient(horizon, w, jitter((120, 170, 220)), jitter((210, 220, 235)))
    ground_col = {"beach": (230, 210, 160), "forest": (40, 100, 40), "city": (90, 90, 95),
                  "mountains": (110, 120, 90), "night": (20, 25, 30)}[theme]
    ground = _gradient(h - horizon, w, jitter(ground_col), jitter(tuple(0.7 * c for c in ground_col)))
    img = Image.fromarray(np.concatenate([sky, ground]).astype(np.uint8))
    d = ImageDraw.Draw(img)
    if theme == "beach":
        sea_top = horizon - int(h * 0.12)
        d.rectangle([0, sea_top, w, horizon], fill=jitter((30, 110, 170)))
        r = int(rng.uniform(8, 16))
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.4) * h
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=jitter((255, 220, 120), 10))
    elif theme == "forest":
        for _ in range(int(rng.integers(6, 14))):
            x, s = rng.uniform(0, w), rng.uniform(10, 28)
            base = horizon + rng.uniform(0, 0.2) * h
            d.polygon([(x, base - 2.5 * s), (x - s, base), (x + s, base)], fill=jitter((20, 80, 30)))
    elif theme == "city":
        for _ in range(int(rng.integers(5, 10))):
            x, bw, bh = rng.uniform(0, w), rng.uniform(12, 30), rng.uniform(0.2, 0.6) * h
            d.rectangle([x, horizon - bh, x + bw, horizon], fill=jitter((100, 100, 110), 30))
    elif theme == "mountains":
        for _ in range(int(rng.integers(2, 4))):
            x, s = rng.uniform(0, w), rng.uniform(0.3, 0.6) * w
            peak = horizon - rng.uniform(0.25, 0.45) * h
            d.polygon([(x, peak), (x - s, horizon), (x + s, horizon)], fill=jitter((100, 105, 120), 15))
            d.polygon([(x, peak), (x - s * 0.2, peak + 0.2 * (horizon - peak)), (x + s * 0.2, peak + 0.2 * (horizon - peak))],
                      fill=(245, 245, 250))
    elif theme == "night":
        r = int(rng.uniform(6, 12))
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.35) * h
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(240, 240, 210))
        for _ in range(30):
            x, y = rng.uniform(0, w), rng.uniform(0, horizon)
            d.point((x, y), fill=(255, 255, 255))
    return np.asarray(img)


def write_scenes(folder: str | Path, n: int = 200, seed: int = 0, size: tuple[int, int] = (192, 128)) -> list[Path]:
    """Write ``n`` scenes (themes in turn) as PNGs named <theme>_<number>.png; returns their paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        theme = THEMES[i % len(THEMES)]
        p = out / f"{theme}_{i:04d}.png"
        Image.fromarray(make_scene(theme, rng, size)).save(p)
        paths.append(p)
    return paths
