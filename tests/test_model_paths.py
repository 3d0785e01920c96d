"""Where weights live is the user's to say at load time: archives record model names and fingerprints, never
paths; `--models` / $SEMZIP_MODEL_PATH find them again; the fingerprint refuses a wrong file; hub ids load from
a warm cache without `--allow-download`; small folders compress."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import random_image
from PIL import Image

from semzip.errors import InvalidInputError, MissingModelError, ModelMismatchError
from semzip.models import registry
from semzip.models.tiny import save_tiny_clip


def _cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from semzip.cli import main; main()", *args], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def _folder(path: Path, n: int = 3) -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(random_image(40, 56, seed=i)).save(path / f"img{i}.png")
    return path


@pytest.fixture(autouse=True)
def _clean_registry(monkeypatch):
    monkeypatch.delenv(registry.MODEL_PATH_ENV, raising=False)
    monkeypatch.delenv(registry.ALLOW_DOWNLOAD_ENV, raising=False)
    monkeypatch.setattr(registry, "_MODEL_DIRS", [])
    monkeypatch.setattr(registry, "_ALLOW_DOWNLOAD", [])


def test_locate_searches_the_model_folders(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "clip").mkdir(parents=True)
    (tmp_path / "b" / "ckpt.pt").write_bytes(b"x")
    assert registry.locate("clip") == "clip"  # found nowhere: unchanged, the loader reports it
    monkeypatch.setenv(registry.MODEL_PATH_ENV, os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert registry.locate("clip") == str(tmp_path / "b" / "clip")
    assert registry.locate("/gone/elsewhere/ckpt.pt") == str(tmp_path / "b" / "ckpt.pt")  # a moved file, by name
    assert registry.locate(str(tmp_path / "a")) == str(tmp_path / "a")  # an existing path is used as is
    registry.add_model_dirs([tmp_path / "a"])
    assert registry.model_dirs()[0] == tmp_path / "a"
    with pytest.raises(InvalidInputError, match="model folder not found"):
        registry.add_model_dirs([tmp_path / "nope"])
    assert registry.portable_name(tmp_path / "b" / "ckpt.pt") == "ckpt.pt"


def test_allow_download_reaches_the_loaders(monkeypatch):
    seen = {}

    def loader(arg, allow_download=False):
        seen["allow_download"] = allow_download
        return arg

    things = registry.ModelRegistry("thing")
    things.register("fake", loader, "fake:<x>")
    things.load("fake:x")
    assert seen == {"allow_download": False}
    monkeypatch.setenv(registry.ALLOW_DOWNLOAD_ENV, "1")
    things.load("fake:x")
    assert seen == {"allow_download": True}
    registry.allow_downloads(False)  # the explicit switch wins over the environment
    things.load("fake:x")
    assert seen == {"allow_download": False}
    things.load("fake:x", allow_download=True)  # and the caller's word wins over both
    assert seen == {"allow_download": True}


def test_one_registry_class_for_every_role(tmp_path, monkeypatch):
    from semzip.models.language import LANGUAGE_MODELS
    from semzip.models.lic import LIC_MODELS

    for reg in (registry.ENCODERS, registry.GENERATORS, registry.CAPTIONERS, registry.REFINERS, LIC_MODELS,
                LANGUAGE_MODELS):
        assert isinstance(reg, registry.ModelRegistry) and reg.usages()

    def loader(arg):
        if arg == "absent":
            raise MissingModelError("weights not found: absent")
        return ("loaded", arg)

    things = registry.ModelRegistry("thing", "plain")
    things.register("plain", loader, "plain[:<grid>] (optional argument)")
    things.register("folder", loader, "folder:<path> (required argument)")
    assert things.load() == ("loaded", None) and things.load("plain:3") == ("loaded", "3")
    assert things.names() == ["plain", "folder"] and "folder" in things
    with pytest.raises(InvalidInputError, match=r"unknown thing 'nope:1'; known: plain\[:<grid>\].*; folder:<path>"):
        things.load("nope:1")
    for spec in ("folder", "folder:"):
        with pytest.raises(InvalidInputError, match="missing argument: use folder:<path>"):
            things.check(spec)
    with pytest.raises(InvalidInputError, match="non-empty"):
        things.load("  ")
    monkeypatch.setenv(registry.MODEL_PATH_ENV, str(tmp_path))
    with pytest.raises(MissingModelError, match=f"weights not found: absent .*searched: {tmp_path}.*--models DIR"):
        things.load("folder:absent")

    # whole names, everything else to the fallback (the language models' shape: names, paths, hub ids)
    named = registry.ModelRegistry("model", prefixed=False, fallback=lambda spec: ("fallback", spec))
    named.register("small-1", loader, "small-1 (a registered name)")
    assert named.load("small-1") == ("loaded", None)
    assert named.load("/models/a:b") == ("fallback", "/models/a:b")
    assert named.load("owner/model") == ("fallback", "owner/model")


def test_archives_record_names_and_decode_time_says_where(tmp_path, monkeypatch):
    """A 3-image folder compressed with a CLIP folder given by absolute path: the archive holds the folder's
    name, not the path; search from elsewhere needs --models / $SEMZIP_MODEL_PATH, and another model of the
    same name is refused by its fingerprint."""
    pytest.importorskip("transformers")
    from semzip import api
    from semzip.format import open_archive

    clip = save_tiny_clip(tmp_path / "weights" / "tiny-clip", seed=0)
    other = save_tiny_clip(tmp_path / "other" / "tiny-clip", seed=1)
    arc = tmp_path / "c.smz"
    api.compress_folder(_folder(tmp_path / "imgs"), arc, encoder=f"hf:{clip}")  # 3 items < 16 default atoms
    with open_archive(arc) as c:
        ref = c.header.model("encoder")
        n_atoms = c.header.params.get("n_atoms")
    assert ref.name == "hf:tiny-clip" and n_atoms == 3
    assert str(tmp_path).encode() not in arc.read_bytes()
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(MissingModelError, match="--models DIR"):
        api.embed_concepts(arc, ["a cat"])
    monkeypatch.setenv(registry.MODEL_PATH_ENV, str(tmp_path / "other"))
    with pytest.raises(ModelMismatchError):
        api.embed_concepts(arc, ["a cat"])
    monkeypatch.setenv(registry.MODEL_PATH_ENV, str(tmp_path / "weights"))
    assert api.embed_concepts(arc, ["a cat"]).shape == (1, 16)
    # the command line: one error line without the folder, results with --models
    from typer.testing import CliRunner

    from semzip.cli import app

    monkeypatch.delenv(registry.MODEL_PATH_ENV)
    r = CliRunner().invoke(app, ["search", str(arc), "a cat"])
    assert r.exit_code == 2 and "--models" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = CliRunner().invoke(app, ["--models", str(tmp_path / "weights"), "search", str(arc), "a cat", "--top", "2"])
    assert r.exit_code == 0 and "img" in r.output, r.output
    assert other.is_dir()


def test_hub_id_loads_from_a_warm_cache_and_asks_for_allow_download_when_cold(tmp_path):
    pytest.importorskip("transformers")
    hf_home = tmp_path / "hf"
    snap = hf_home / "hub" / "models--semzip-test--tiny-clip"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("1" * 40)
    save_tiny_clip(snap / "snapshots" / ("1" * 40), seed=0)
    imgs = _folder(tmp_path / "imgs")
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "0"}
    r = _cli("compress", str(imgs), "-o", str(tmp_path / "a.smz"), "--encoder", "hf:semzip-test/tiny-clip", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    from semzip.format import open_archive

    with open_archive(tmp_path / "a.smz") as c:
        assert c.header.model("encoder").name == "hf:semzip-test/tiny-clip"  # the hub id, as given
    r = _cli("compress", str(imgs), "-o", str(tmp_path / "b.smz"), "--encoder", "hf:semzip-test/absent", env=env)
    assert r.returncode == 2 and "--allow-download" in r.stderr and "allow_download=True" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_moved_lic_checkpoint_is_found_by_name(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from semzip.models.lic import DEFAULT_WEIGHTS, load_lic

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("default LIC weights not built")
    shutil.copy(DEFAULT_WEIGHTS, tmp_path / "my-lic.safetensors")
    monkeypatch.chdir(tmp_path)
    a = load_lic("tiny:my-lic.safetensors")
    (tmp_path / "models").mkdir()
    shutil.move(tmp_path / "my-lic.safetensors", tmp_path / "models" / "my-lic.safetensors")
    with pytest.raises(MissingModelError, match="SEMZIP_MODEL_PATH"):
        load_lic("tiny:my-lic.safetensors")
    monkeypatch.setenv(registry.MODEL_PATH_ENV, str(tmp_path / "models"))
    assert load_lic("tiny:my-lic.safetensors").fingerprint == a.fingerprint


@pytest.mark.parametrize("spec, want", [
    ("sd-img2img:/models/sd15", "sd-img2img:sd15"),
    ("hf:/w/clip-vit-l", "hf:clip-vit-l"),
    ("hf:openai/clip-vit-base-patch32", "hf:openai/clip-vit-base-patch32"),  # a hub id stays
    ("open_clip:ViT-H-14/laion2b_s32b_b79k", "open_clip:ViT-H-14/laion2b_s32b_b79k"),  # a tag stays
    ("open_clip:ViT-H-14//w/vit-h.safetensors", "open_clip:ViT-H-14/vit-h.safetensors"),
    ("open_clip:ViT-H-14/laion2b_s32b_b79k@/w/vit-h.bin", "open_clip:ViT-H-14/laion2b_s32b_b79k@vit-h.bin"),
    ("compressai:cheng2020-attn:3", "compressai:cheng2020-attn:3"),
    ("compressai:mbt2018:/ck/m.pth.tar", "compressai:mbt2018:m.pth.tar"),
    ("tiny:./lic/my.safetensors", "tiny:my.safetensors"),
    ("controlnet-tile:/m/sd15,/m/tile", "controlnet-tile:sd15,tile"),
    ("identity", "identity"),
    ("/w/SmolLM2-135M.Q4_1.gguf", "SmolLM2-135M.Q4_1.gguf"),  # a language model is a bare path or name
    ("./lm/my-llama", "my-llama"),
    ("smollm2-135m", "smollm2-135m"),
    ("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M"),
    ("sidecar:/home/me/private/captions.csv", "sidecar:captions.csv"),  # the captioner, informational
    (None, None),
])
def test_portable_specs(spec, want):
    """What image-text archives record for the LIC, the language model, the captioner and the refiner: names,
    never paths."""
    assert registry.portable_spec(spec) == want


def test_image_text_records_the_language_model_and_captions_by_name(tiny_llama_folder, tmp_path, monkeypatch):
    """An image-text archive made with a language model folder and a captions CSV given by absolute paths
    holds their names only; decoding elsewhere finds the moved model through the model folders."""
    pytest.importorskip("torch")
    from semzip.api import compress_image_text, decompress_image_text, describe
    from semzip.data.scenes import write_scenes

    lm = tmp_path / "weights" / "my-llama"
    shutil.copytree(tiny_llama_folder, lm)
    paths = write_scenes(tmp_path / "imgs", n=2, size=(64, 48))
    csv = tmp_path / "private" / "captions.csv"
    csv.parent.mkdir()
    csv.write_text("image,caption\n" + "".join(f"{p.name},a photo number {i}\n" for i, p in enumerate(paths)))
    arc = tmp_path / "a.smz"
    compress_image_text(tmp_path / "imgs", arc, captions=str(csv), language=str(lm), scale=0.5)
    params = describe(arc)["params"]
    assert params["language_spec"] == "my-llama" and params["captioner"] == "sidecar:captions.csv"
    assert str(tmp_path).encode() not in arc.read_bytes()
    (tmp_path / "moved").mkdir()
    shutil.move(lm, tmp_path / "moved" / "my-llama")
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(MissingModelError, match="my-llama.*--models DIR"):
        decompress_image_text(arc, work / "o1")
    assert not (work / "o1").exists()
    monkeypatch.setenv(registry.MODEL_PATH_ENV, str(tmp_path / "moved"))
    decompress_image_text(arc, work / "ok")
    assert "a photo number 1" in (work / "ok" / "captions.txt").read_text()
