"""Tests for the captioners: sidecar captions (CSV, .txt files) and a tiny random BLIP through HFCaptioner."""

from __future__ import annotations

import pytest
from helpers import random_image

from semzip.errors import InvalidInputError, MissingModelError
from semzip.models import tiny
from semzip.models.captioners import (
    DEFAULT_PROMPT,
    SidecarCaptions,
    max_new_tokens_for,
    read_captions_csv,
    truncate_words,
)
from semzip.models.registry import known_captioners, load_captioner


def test_truncate_words():
    assert truncate_words("  a  red\n house ", None) == "a red house"
    assert truncate_words("a red house on a hill", 3) == "a red house"
    assert max_new_tokens_for(10) >= 20
    assert "{max_words}" in DEFAULT_PROMPT


def test_sidecar_csv(tmp_path):
    csv = tmp_path / "caps.csv"
    csv.write_text('image,caption\nkodim01.png,"A red  brick building, with a door."\nsub/b.jpg,a blue sky\n')
    cap = SidecarCaptions(csv)
    imgs = [random_image(), random_image(seed=1), random_image(seed=2), random_image(seed=3)]
    names = ["kodim01.png", "/data/kodak/kodim01.png", "kodim01", "sub/b.jpg"]
    assert cap.caption(imgs, names=names) == ["A red brick building, with a door."] * 3 + ["a blue sky"]
    assert cap.caption([random_image()], names=["other/b.png"]) == ["a blue sky"]  # stem fallback
    assert cap.caption([random_image()], max_words=3, names=["kodim01.png"]) == ["A red brick"]
    assert "kodim01.png" in cap and "kodim02.png" not in cap
    assert len(cap.fingerprint) == 16
    assert cap.fingerprint != SidecarCaptions(_write(tmp_path / "c2.csv", "image,caption\nkodim01.png,x\n")).fingerprint
    with pytest.raises(MissingModelError, match=r"kodim02\.png.*no captioning model is available offline"):
        cap.caption([random_image()], names=["kodim02.png"])
    with pytest.raises(InvalidInputError, match="names"):
        cap.caption([random_image()])
    with pytest.raises(InvalidInputError, match="2 names"):
        cap.caption([random_image()], names=["a", "b"])
    with pytest.raises(InvalidInputError, match="positive"):
        cap.caption([random_image()], max_words=0, names=["kodim01.png"])


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_sidecar_csv_variants_and_errors(tmp_path):
    assert read_captions_csv(_write(tmp_path / "a.csv", "x.png,first\ny.png,second\n")) == {
        "x.png": "first", "y.png": "second"}  # no header
    assert read_captions_csv(_write(tmp_path / "b.csv", "Filename,Text\nx.png,hi\n")) == {"x.png": "hi"}
    with pytest.raises(InvalidInputError, match="twice"):
        read_captions_csv(_write(tmp_path / "c.csv", "image,caption\nx.png,a\nx.png,b\n"))
    with pytest.raises(InvalidInputError, match="caption column"):
        read_captions_csv(_write(tmp_path / "d.csv", "image,label,score\nx.png,a,1\n"))
    with pytest.raises(InvalidInputError, match="empty"):
        read_captions_csv(_write(tmp_path / "e.csv", ""))
    with pytest.raises(InvalidInputError, match="not found"):
        SidecarCaptions(tmp_path / "missing.csv")
    # the same stem with two different captions: only exact/file-name lookups resolve
    amb = SidecarCaptions(_write(tmp_path / "f.csv", "image,caption\na.png,one\na.jpg,two\n"))
    assert amb.caption([random_image()], names=["a.jpg"]) == ["two"]
    with pytest.raises(MissingModelError):
        amb.lookup("a.webp")


def test_sidecar_shared_kodak_csv():
    from pathlib import Path

    path = Path("/work/shared/data/kodak_captions_llava15.csv")
    if not path.is_file():
        pytest.skip("shared Kodak captions not present on this machine")
    cap = SidecarCaptions(path)
    (text,) = cap.caption([random_image()], names=["kodim01.png"])
    assert text.startswith("The image features a red brick building")
    assert len(cap.caption([random_image()], max_words=12, names=["kodim23"])[0].split()) == 12


def test_sidecar_txt_files(tmp_path):
    (tmp_path / "imgs").mkdir()
    _write(tmp_path / "imgs" / "kodim01.txt", "  a lighthouse\nat dusk \n")
    _write(tmp_path / "imgs" / "empty.txt", "   \n")
    beside = load_captioner()  # default: <stem>.txt next to the image
    assert beside.name == "sidecar"
    assert beside.caption([random_image()], names=[str(tmp_path / "imgs" / "kodim01.png")]) == ["a lighthouse at dusk"]
    with pytest.raises(MissingModelError, match="no captioning model is available offline"):
        beside.caption([random_image()], names=[str(tmp_path / "imgs" / "kodim02.png")])
    with pytest.raises(MissingModelError, match="empty"):
        beside.caption([random_image()], names=[str(tmp_path / "imgs" / "empty.png")])
    folder = load_captioner(f"sidecar:{tmp_path / 'imgs'}")
    assert folder.caption([random_image(), random_image(seed=1)], max_words=2, names=["kodim01.png", "x/kodim01.jpg"]) == [
        "a lighthouse"] * 2
    with pytest.raises(MissingModelError, match=r"kodim09\.txt"):
        folder.lookup("kodim09.png")


def test_registry_captioners(tmp_path):
    assert any(u.startswith("sidecar") for u in known_captioners())
    with pytest.raises(InvalidInputError, match="unknown captioner"):
        load_captioner("blip2")
    with pytest.raises(MissingModelError, match="no captioning model is available offline"):
        load_captioner(f"hf:{tmp_path / 'nope'}")
    with pytest.raises(MissingModelError, match="not found"):
        load_captioner(f"chat:{tmp_path / 'nope'}")
    with pytest.raises(InvalidInputError, match="missing argument"):
        load_captioner("hf")


# ------------------------------------------------------------------------------------------------ tiny BLIP


def _needs_tiny_tokenizers():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if not tiny.in_memory_tokenizers():
        pytest.skip("tiny tokenizer construction written for transformers >= 5")


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    _needs_tiny_tokenizers()
    return tiny.save_tiny_blip(tmp_path_factory.mktemp("blip") / "tiny-blip")


def test_hf_captioner_tiny_blip(tiny_blip):
    from semzip.models.captioners import HFCaptioner

    cap = HFCaptioner(tiny_blip, device="cpu", batch_size=2, max_words=8)
    imgs = [random_image(), random_image(64, 48, seed=1), random_image(seed=2)]
    a = cap.caption(imgs)
    assert len(a) == 3 and all(isinstance(t, str) and t for t in a)
    assert all(len(t.split()) <= 8 for t in a)
    assert cap.caption(imgs) == a  # greedy decoding: deterministic
    assert [cap.caption([im])[0] for im in imgs] == a  # batching does not change captions
    short = cap.caption(imgs[:1], max_words=2)[0]
    assert 1 <= len(short.split()) <= 2 and a[0].startswith(short)
    p = cap.params(max_words=5)
    assert p["captioner"] == f"hf:{tiny_blip}" and p["model_type"] == "blip" and p["max_words"] == 5
    assert p["decoding"] == "greedy" and p["max_new_tokens"] == max_new_tokens_for(5)
    assert len(cap.fingerprint) == 16
    assert load_captioner(f"hf:{tiny_blip}", device="cpu").fingerprint == cap.fingerprint


def test_hf_captioner_prompt(tiny_blip):
    from semzip.models.captioners import HFCaptioner

    cap = HFCaptioner(tiny_blip, device="cpu", prompt="a photo of", max_words=6)
    (text,) = cap.caption([random_image()])
    assert isinstance(text, str) and not text.startswith("a photo of")
    assert cap.params()["prompt"] == "a photo of"


# ------------------------------------------------------------------------------------------------ tiny LLaVA

def test_chat_captioner_tiny_llava(tmp_path):
    from semzip.models.captioners import ChatCaptioner

    _needs_tiny_tokenizers()
    folder = tiny.save_tiny_llava(tmp_path / "tiny-llava")
    cap = load_captioner(f"chat:{folder}", device="cpu", dtype="fp32", max_words=5, batch_size=2)
    assert isinstance(cap, ChatCaptioner) and cap.name == f"chat:{folder}"
    imgs = [random_image(), random_image(64, 48, seed=1), random_image(seed=2)]
    a = cap.caption(imgs)
    assert len(a) == 3 and all(isinstance(t, str) and len(t.split()) <= 5 for t in a)
    assert cap.caption(imgs[1:2]) == a[1:2]  # left padding: a batch gives the captions of single images
    assert all(len(t.split()) <= 2 for t in cap.caption(imgs[:1], max_words=2))
    assert "at most 7 words" in cap.prompt_text(7)
    p = cap.params(max_words=7)
    assert p["prompt"] == cap.prompt_text(7) and p["max_new_tokens"] == max_new_tokens_for(7)
    assert p["model_type"] == "llava" and len(cap.fingerprint) == 16
