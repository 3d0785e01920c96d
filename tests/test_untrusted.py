"""Untrusted files are never unpickled, and a model fingerprint is checked before any decode.

A pickle whose loading would run code (it creates a marker folder) is offered everywhere semzip reads
weights or arrays from a user-supplied path; each refuses it with a clear error, and the marker never appears.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from semzip.errors import InvalidInputError, MissingModelError, ModelMismatchError, SemzipError

SRC = Path(__file__).resolve().parents[1] / "src" / "semzip"


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"state_dict": _Evil(marker)}))
    return path


@pytest.mark.parametrize("name", ["evil.safetensors", "evil.pt", "evil.pth"])
def test_pickle_as_tiny_lic_weights_is_refused(tmp_path, name):
    pytest.importorskip("torch")
    from semzip.models.lic import load_lic

    marker = tmp_path / "pwned"
    path = _evil_pickle(tmp_path / name, marker)
    with pytest.raises(MissingModelError, match="not a readable safetensors file"):
        load_lic(f"tiny:{path}")
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_pickle_as_compressai_checkpoint_is_refused(tmp_path):
    pytest.importorskip("torch")
    from semzip.models.lic import _load_state

    marker = tmp_path / "pwned"
    path = _evil_pickle(tmp_path / "ckpt.pth.tar", marker)
    with pytest.raises(MissingModelError, match="weights-only"):
        _load_state(path)
    assert not marker.exists()


def test_pickled_embeddings_are_refused(tmp_path):
    from semzip.data.embeddings import load_embeddings

    marker = tmp_path / "pwned"
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = _Evil(marker), 1
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    _evil_pickle(tmp_path / "raw.npy", marker)
    for name in ("obj.npy", "raw.npy"):
        with pytest.raises(InvalidInputError, match="cannot read"):
            load_embeddings(tmp_path / name)
    assert not marker.exists()


def test_no_unsafe_deserialisation_in_the_source():
    """Every torch.load passes weights_only=True, every np.load allow_pickle=False; pickle is never loaded."""
    problems = []
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                problems.append(f"{path.name}: torch.load without weights_only=True")
        for m in re.finditer(r"np\.load\(([^)]*)\)", text):
            if "allow_pickle=False" not in m.group(1):
                problems.append(f"{path.name}: np.load without allow_pickle=False")
        if re.search(r"\b(pickle|dill|joblib|cloudpickle)\.loads?\(|import (pickle|dill|joblib)\b", text):
            problems.append(f"{path.name}: loads pickles")
    assert not problems, problems


def test_lic_fingerprint_checked_before_any_entropy_decoding(monkeypatch):
    pytest.importorskip("torch")
    import dataclasses

    import semzip.entropy
    from semzip.models.lic import load_lic

    lic = load_lic("tiny")
    streams, shape = lic.compress(np.full((16, 16, 3), 90, np.uint8))

    class _NoDecode:
        def __init__(self, *a, **k):
            raise AssertionError("decoding started before the model fingerprint was checked")

    monkeypatch.setattr(semzip.entropy, "Decoder", _NoDecode)
    with pytest.raises(ModelMismatchError, match="same weights"):
        lic.decompress(streams, dataclasses.replace(shape, model="00" * 8))


def test_image_text_archive_with_other_models_is_refused_before_decoding():
    """The header names the LIC and language models by fingerprint; another model is refused up front."""
    from semzip.codecs.image_text import ImageTextCodec
    from semzip.format import Header, ModelRef

    class _Lic:
        name, fingerprint = "tiny", "1" * 16

        def decompress(self, *a):
            raise AssertionError("decoded with the wrong model")

    class _Text:
        class lm:  # mimics TextCoder.lm
            name, fingerprint = "smol", "2" * 16

        prompt = "p"

        def decompress(self, *a):
            raise AssertionError("decoded with the wrong model")

    codec = ImageTextCodec(_Lic(), _Text())
    params = {"caption_prompt": codec._prompt_tag(), "scale": 0.5, "pixels_per_item": 64, "caption_check": "crc16",
              "caption_codec": 2, "refiner": {"spec": "identity"}}  # a valid header: only the LIC differs
    header = Header("image-text", params,
                    [ModelRef("lic", "tiny", "f" * 16), ModelRef("language", "smol", "2" * 16)], n_items=1)
    with pytest.raises(SemzipError, match="lic"):
        codec.check_models(header)


@pytest.mark.parametrize("config", ['{"N": 1000000000}', '{"N": "x"}', "[" * 50_000, '{"M": -1}'])
def test_hostile_lic_metadata_refused_before_building_the_model(tmp_path, config):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from semzip.models.lic import TINY_NAME, load_lic

    path = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"semzip_model": TINY_NAME, "config": config})
    with pytest.raises(ModelMismatchError, match="malformed"):
        load_lic(f"tiny:{path}")
