"""A folder run survives every kind of bad image: each file is either handled or refused by name.

Images are generated in tmp_path (no data files are committed). Unusual but valid files (CMYK, 16-bit,
palette, alpha, EXIF rotation) are compressed; unreadable ones (corrupt, truncated, zero-size, giant declared
size, not an image) are reported with their name and the reason, and never abort the run.
"""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
from helpers import gradient_image
from PIL import Image

from semzip.data.folders import embed_folder
from semzip.data.images import iter_images, list_images
from semzip.models.registry import load_encoder

GOOD = {"rgb.png", "cmyk.jpg", "gray16.png", "palette.gif", "palette_alpha.png", "rgba.png", "exif_rot.jpg",
        "one_bit.bmp", "sub/nested.jpg"}
BAD = {  # name -> a word the reason must contain
    "corrupt.jpg": "cannot decode",
    "truncated.png": "cannot decode",
    "garbage.png": "not an image",
    "zero.jpg": "empty",
    "giant.png": "limit",
    "notes.txt": "not an image file",
}


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR that declare ``width x height`` pixels, with a tiny payload."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bad_folder(root):
    rgb = Image.fromarray(gradient_image(24, 40))
    rgb.save(root / "rgb.png")
    rgb.convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(gradient_image(24, 40)[:, :, 0].astype(np.uint16) * 257).save(root / "gray16.png")
    rgb.convert("P").save(root / "palette.gif")
    rgb.convert("P").save(root / "palette_alpha.png", transparency=3)
    rgba = np.dstack([gradient_image(24, 40), np.full((24, 40), 128, np.uint8)])
    Image.fromarray(rgba).save(root / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.save(root / "exif_rot.jpg", exif=exif)
    rgb.convert("1").save(root / "one_bit.bmp")
    (root / "sub").mkdir()
    rgb.save(root / "sub" / "nested.jpg")

    jpg = (root / "rgb.png").with_suffix(".tmp.jpg")
    rgb.save(jpg)
    data = bytearray(jpg.read_bytes())
    jpg.unlink()
    data[200:400] = bytes(200)  # scan data overwritten: Pillow fails while decoding
    (root / "corrupt.jpg").write_bytes(bytes(data[:260]))
    (root / "truncated.png").write_bytes((root / "rgb.png").read_bytes()[:60])
    (root / "garbage.png").write_bytes(b"this is not a picture at all" * 3)
    (root / "zero.jpg").write_bytes(b"")
    (root / "giant.png").write_bytes(_png_declaring(200_000, 200_000))  # 4e10 pixels declared, 100 bytes
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_with_every_kind_of_bad_image(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMZIP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "imgs").mkdir()
    root = _bad_folder(tmp_path / "imgs")
    reported = []
    got = embed_folder(root, load_encoder("thumbnail"), recursive=True, use_cache=False,
                       on_skip=lambda name, reason: reported.append((name, reason)))
    assert set(got.names) == GOOD
    assert got.embeddings.shape[0] == len(GOOD) and np.isfinite(got.embeddings).all()
    assert {n for n, _ in got.skipped} == set(BAD) and {n for n, _ in reported} == set(BAD)
    for name, reason in got.skipped:
        assert BAD[name] in reason, (name, reason)
        if name != "notes.txt":
            assert name in reason  # the reason names the file too
    # the EXIF-rotated file was turned upright (portrait), the 16-bit one scaled, not clipped
    pix = dict(zip(got.names, got.pixels))
    assert pix["exif_rot.jpg"] == pix["rgb.png"] == 40 * 24


def test_strict_mode_stops_at_the_first_bad_file(tmp_path, monkeypatch):
    from semzip.errors import BadImageError

    monkeypatch.setenv("SEMZIP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "imgs").mkdir()
    root = _bad_folder(tmp_path / "imgs")
    with pytest.raises(BadImageError):
        embed_folder(root, load_encoder("thumbnail"), strict=True, use_cache=False)


def test_ten_thousand_bad_files_do_not_abort_the_run(tmp_path):
    """10,000 unreadable files (zero bytes, garbage, truncated PNG headers) around 5 good ones."""
    good = set()
    for i in range(5):
        Image.fromarray(gradient_image(8, 8)).save(tmp_path / f"good_{i * 2000:05d}.png")
        good.add(f"good_{i * 2000:05d}.png")
    head = (tmp_path / "good_00000.png").read_bytes()[:40]
    for i in range(10_000):
        kind = i % 3
        data = b"" if kind == 0 else (b"junk %d" % i) if kind == 1 else head
        (tmp_path / f"bad_{i:05d}.{('jpg', 'png', 'png')[kind]}").write_bytes(data)
    skipped: list[str] = []
    t0 = time.perf_counter()
    got = [p.name for p, _ in iter_images(list_images(tmp_path), on_skip=lambda p, r: skipped.append(p.name))]
    elapsed = time.perf_counter() - t0
    assert set(got) == good
    assert len(skipped) == 10_000 and len(set(skipped)) == 10_000
    assert elapsed < 60, f"{elapsed:.1f} s for 10,005 files"
