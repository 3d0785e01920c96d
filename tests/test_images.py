"""Tests for semzip.data.images: modes, EXIF orientation, bad files, folder listing, atomic PNG, contact sheets."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import gradient_image
from PIL import Image

from semzip.data.images import (
    comparison_sheet,
    contact_sheet,
    iter_images,
    list_images,
    load_image,
    save_png,
)
from semzip.errors import BadImageError, ResourceLimitError


def test_rgb_png_roundtrip(tmp_path):
    a = gradient_image()
    Image.fromarray(a).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (16, 24, 3)
    np.testing.assert_array_equal(out, a)


def test_grayscale_and_one_bit(tmp_path):
    g = np.arange(0, 256, 16, dtype=np.uint8).reshape(4, 4)
    Image.fromarray(g).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (4, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)
    b = Image.new("1", (5, 3), 0)
    b.putpixel((1, 1), 1)
    b.save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    assert out.shape == (3, 5, 3)
    assert tuple(out[1, 1]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 0)


def test_palette_with_transparency_is_on_white(tmp_path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0  # palette index 0 (red) is transparent
    p.save(tmp_path / "p.png", transparency=0)
    out = load_image(tmp_path / "p.png")
    assert tuple(out[0, 0]) == (0, 0, 255)
    assert tuple(out[3, 3]) == (255, 255, 255)
    # GIF with a transparent palette entry behaves the same.
    p.save(tmp_path / "p.gif", transparency=0)
    assert tuple(load_image(tmp_path / "p.gif")[3, 3]) == (255, 255, 255)


def test_rgba_and_la_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png")
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert all(120 <= v <= 135 for v in out[1, 0])
    la = Image.fromarray(np.array([[[0, 0], [10, 255]]], np.uint8), "LA")
    la.save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (10, 10, 10)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (8, 8, 3)
    r, g, b = out[4, 4].astype(int)
    assert r > 200 and g < 60 and b < 60  # cyan 0, magenta+yellow full -> red


def test_16_bit_scaled_to_8_bits(tmp_path):
    a16 = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "d.png")
    out = load_image(tmp_path / "d.png")
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])
    Image.fromarray(a16).save(tmp_path / "d.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "d.tif")[0, :, 1], [0, 128, 255])


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((10, 20, 3), np.uint8)  # 20 wide, 10 high, marker in the top-left corner
    a[0:3, 0:3] = (255, 0, 0)
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (20, 10, 3)  # displayed upright: portrait
    assert out[1, -2, 0] > 200 and out[1, -2, 1] < 60  # the top-left marker is now top-right


def test_truncated_png_is_bad(tmp_path):
    Image.fromarray(gradient_image(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_text_file_with_image_extension(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a picture\n")
    with pytest.raises(BadImageError, match=r"notes\.jpg.*not an image"):
        load_image(tmp_path / "notes.jpg")


def test_zero_size_and_missing(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(BadImageError, match=r"empty\.png.*empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(BadImageError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_too_many_pixels(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ResourceLimitError, match=r"big\.png.*10000 pixels"):
        load_image(tmp_path / "big.png", max_pixels=5000)
    assert load_image(tmp_path / "big.png", max_pixels=10000).shape == (100, 100, 3)


def test_pillow_bomb_limit_becomes_resource_limit(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    # Our own limit above Pillow's: Pillow's global is lifted for this one read, then restored.
    assert load_image(tmp_path / "bomb.png", max_pixels=20000).shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(ResourceLimitError, match=r"bomb\.png"):
        load_image(tmp_path / "bomb.png", max_pixels=500)


def _make_folder(tmp_path):
    Image.fromarray(gradient_image()).save(tmp_path / "b.png")
    Image.fromarray(gradient_image()).save(tmp_path / "a.jpg")
    (tmp_path / "c.jpg").write_text("not an image")
    (tmp_path / "readme.txt").write_text("ignored")
    (tmp_path / "sub").mkdir()
    Image.fromarray(gradient_image()).save(tmp_path / "sub" / "d.PNG")
    return tmp_path


def test_list_images_sorted(tmp_path):
    root = _make_folder(tmp_path)
    assert [p.name for p in list_images(root)] == ["a.jpg", "b.png", "c.jpg"]
    assert [p.relative_to(root).as_posix() for p in list_images(root, recursive=True)] == [
        "a.jpg",
        "b.png",
        "c.jpg",
        "sub/d.PNG",
    ]


def test_iter_images_reports_skips(tmp_path):
    root = _make_folder(tmp_path)
    skipped = []
    got = list(iter_images(list_images(root), on_skip=lambda p, r: skipped.append((p.name, r))))
    assert [p.name for p, _ in got] == ["a.jpg", "b.png"]
    assert len(skipped) == 1 and skipped[0][0] == "c.jpg" and "c.jpg" in skipped[0][1]
    with pytest.warns(UserWarning, match="c.jpg"):
        assert len(list(iter_images(list_images(root)))) == 2


def test_iter_images_strict_raises(tmp_path):
    root = _make_folder(tmp_path)
    with pytest.raises(BadImageError, match="c.jpg"):
        list(iter_images(list_images(root), strict=True))


def test_save_png_atomic(tmp_path):
    a = gradient_image()
    dest = save_png(a, tmp_path / "out" / "x.png")
    np.testing.assert_array_equal(load_image(dest), a)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.png"]  # no temp file left behind


def test_contact_sheet(tmp_path):
    imgs = [gradient_image(), gradient_image(30, 8), Image.fromarray(gradient_image(10, 40))]
    sheet = contact_sheet(imgs, ["one", "two", "a-very-long-name-that-is-shortened.png"], columns=2, thumb=32)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[1] == 2 * 36 + 4
    assert sheet.shape[0] > 2 * 32
    plain = contact_sheet(imgs, columns=3, thumb=32)  # cells take the median aspect ratio (3:2): 32x21
    assert plain.shape == (21 + 8, 3 * 36 + 4, 3)


def _content_box(cell: np.ndarray) -> tuple[int, int]:
    """(width, height) of the non-white part of a sheet cell."""
    ys, xs = np.nonzero((cell < 250).any(axis=2))
    return xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def test_contact_sheet_keeps_aspect_ratios():
    """Landscape photos get landscape cells; an image of another shape is letterboxed, never stretched; a decoded
    square image is shown at its original's aspect ratio when told (issue 14)."""
    def dark(h, w):
        return np.full((h, w, 3), 20, np.uint8)

    sheet = contact_sheet([dark(128, 192)] * 3, columns=3, thumb=96)
    assert sheet.shape[:2] == (64 + 8, 3 * 100 + 4)  # 96x64 cells, not 96x96
    assert _content_box(sheet[4:68, 4:100]) == (96, 64)
    mixed = contact_sheet([dark(128, 192), dark(192, 128), dark(128, 192)], columns=3, thumb=96)
    assert _content_box(mixed[4:68, 104:200]) == (43, 64)  # a portrait photo keeps 2:3 inside a 3:2 cell
    square = contact_sheet([dark(256, 256)] * 2, columns=2, thumb=96, aspects=[1.5, 1.5])
    assert square.shape[:2] == (64 + 8, 2 * 100 + 4) and _content_box(square[4:68, 4:100]) == (96, 64)


def test_comparison_sheet_pairs_in_order():
    originals = [np.full((64, 96, 3), v, np.uint8) for v in (10, 60, 110)]
    decoded = [np.full((50, 50, 3), v + 5, np.uint8) for v in (10, 60, 110)]
    sheet = comparison_sheet(originals, decoded, ["a", "b", "c"], pairs_per_row=3, thumb=48)
    cell = 48 + 4
    tops = [int(sheet[4 + 16, 4 + i * cell + 24, 0]) for i in range(6)]
    assert tops == [10, 15, 60, 65, 110, 115]  # original, decoded, original, decoded... in the given order
    assert _content_box(sheet[4:36, 4 + cell : 4 + cell + 48]) == (48, 32)  # decoded shown at 3:2 too
