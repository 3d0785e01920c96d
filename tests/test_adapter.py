"""Caption-model adapters (``semzip text train``): training on a tiny Llama, the exact integer merge against
the float LoRA model it came from, coding with an adapter, refusals of wrong or missing adapters, resume,
and the adapter file's validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semzip.errors import InvalidInputError, ModelMismatchError, SemzipError

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

CORPUS = [
    "A dog lying on a wooden floor next to a red ball.", "Two people walking down a busy street at night.",
    "A plate of rice and vegetables on a white table.", "A man riding a bike past a row of parked cars.",
    "A small kitchen with a stove and white cabinets.", "A group of zebras standing in a grassy field.",
    "A woman holding an umbrella in the rain.", "A red bus stopped at the side of the road.",
    "A cat sleeping on a red couch.", "A boy throwing a frisbee in a park.", "Two dogs playing on the beach.",
    "A bowl of fruit on a kitchen counter.", "A train pulling into a station.", "A man surfing a large wave.",
    "A giraffe eating leaves from a tall tree.", "A pizza with cheese and tomatoes on a plate.",
] * 2


@pytest.fixture(scope="module")
def trained(tiny_llama_folder, tmp_path_factory, monkeypatch_module):
    """One short training run of a rank-2 adapter on the tiny model (a few seconds)."""
    from semzip.train.text_adapter import load_adapter_config, train_adapter

    folder = tmp_path_factory.mktemp("adapter")
    monkeypatch_module.setenv("SEMZIP_CACHE", str(tmp_path_factory.mktemp("adapter-cache")))
    cfg = load_adapter_config(None, model=str(tiny_llama_folder), rank=2, epochs=2, batch_size=8, lr=3e-3,
                              val_fraction=0.25, prompt="Captions:\n", patience=5)
    lines: list[str] = []
    result = train_adapter(CORPUS, folder / "tiny.adapter", cfg, say=lines.append)
    return result, cfg, folder, lines


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_training_reports_and_improves(trained):
    result, _cfg, folder, lines = trained
    assert result.n_train + result.n_val == len(CORPUS) and result.n_val == 8
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    assert result.history[-1]["val_bits"] < result.history[0]["val_bits"]  # it learned something
    # ... and the integer coder, reading the prompt state as training did, codes the held-out captions shorter
    assert result.val_payload_bytes < result.base_val_payload_bytes
    assert result.size_bytes < 200_000 and result.path.is_file()
    assert any("epoch 2/2" in line for line in lines)
    state = json.loads((folder / "tiny.adapter.run" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and state["best_epoch"] == result.best_epoch


def test_integer_merge_follows_the_float_lora_model(trained, tiny_llama_folder):
    """The adapter folded into the integer weights gives the float LoRA model's distributions: the
    factors' int16 rounding, B's q/k row order and the scaling are right."""
    transformers = pytest.importorskip("transformers")
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    from semzip.models.intlm import load_int_language_model

    result, cfg, folder, _ = trained
    model = transformers.LlamaForCausalLM.from_pretrained(tiny_llama_folder).eval()
    peft_model = get_peft_model(model, LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, target_modules=list(cfg.targets)))
    ckpt = folder / "tiny.adapter.run" / "checkpoint"
    peft_model.load_state_dict(load_file(str(ckpt / ("best.safetensors" if result.best_epoch else "lora.safetensors"))),
                               strict=False)
    merged = peft_model.merge_and_unload().eval()
    state = merged.state_dict()
    for k, v in state.items():  # the int8 row requantisation the integer model uses
        if v.ndim == 2:
            amax = v.abs().amax(dim=1, keepdim=True)
            state[k] = torch.round(v / amax * 127) * amax / 127
    merged.load_state_dict(state)
    ids = [49, 2767, 12894, 335, 253, 10091, 6289, 1867, 288, 253, 2382, 4405, 30]
    with torch.no_grad():
        logits = merged(torch.tensor([ids])).logits[0].double().numpy()[:-1]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    lm = load_int_language_model(tiny_llama_folder, adapter=result.path)
    plain = load_int_language_model(tiny_llama_folder)
    q = lm.model.score(lm.model.prefix(ids[:1]), [ids[1:]])[0] / 2**24
    q0 = plain.model.score(plain.model.prefix(ids[:1]), [ids[1:]])[0] / 2**24
    tv, tv0 = 0.5 * np.abs(q - p).sum(axis=1), 0.5 * np.abs(q0 - p).sum(axis=1)
    assert tv.max() < 0.003, tv
    assert tv0.max() > 10 * tv.max()  # the adapter changed the model (the check above is not vacuous)
    assert lm.fingerprint != plain.fingerprint and lm.base_fingerprint == plain.fingerprint


def test_adapted_coding_round_trips_and_refuses_the_wrong_model(trained, tiny_llama_folder, tmp_path):
    from semzip.codecs.text import IntTextCoder
    from semzip.models.intlm import load_int_language_model

    result, cfg, *_ = trained
    adapted = IntTextCoder(load_int_language_model(tiny_llama_folder, adapter=result.path))
    plain = IntTextCoder(load_int_language_model(tiny_llama_folder))
    assert adapted.prompt == cfg.prompt and adapted.prompt_ids == adapted.lm.adapter.prompt_ids
    texts = ["A dog on a red couch.", "Two zebras near a train.\nAnd a second line."]
    files = adapted.encode_files([([t], False, False) for t in texts])
    assert adapted.decode_files(files) == texts
    assert [f[0] for f in files] == [0xFA, 0xFA]  # the 3-byte single layout, adapter flag set
    refused = plain.decode_files(files)
    assert all(isinstance(r, ModelMismatchError) and "with an adapter" in str(r) for r in refused)  # before decoding
    other = IntTextCoder(load_int_language_model(tiny_llama_folder, adapter=_other_adapter(result.path, tmp_path)))
    wrong = other.decode_files(files)  # another adapter: found by the check (it covers the full fingerprint)
    assert all(isinstance(r, SemzipError) and not isinstance(r, ModelMismatchError) for r in wrong), wrong
    assert "different model, adapter" in str(wrong[0]) or "damaged" in str(wrong[0])
    assert any(isinstance(r, ModelMismatchError) and "adapter" in str(r) for r in refused)


def test_an_adapter_for_another_model_is_refused(trained, int_lm):
    from semzip.models.intlm import load_int_language_model

    result, *_ = trained
    with pytest.raises(ModelMismatchError, match="trained for language model"):
        load_int_language_model(int_lm.source, adapter=result.path)


def test_adapter_files_are_validated(trained, tmp_path):
    from safetensors.numpy import load, save

    from semzip.models.intlm.adapter import load_adapter

    result, *_ = trained
    good = result.path.read_bytes()
    adapter = load_adapter(result.path)
    assert adapter.rank == 2 and adapter.fingerprint == __import__("hashlib").sha256(good).hexdigest()
    bad = tmp_path / "bad.adapter"
    cases = {
        "garbage": b"not an adapter at all",
        "truncated": good[: len(good) // 2],
        "foreign safetensors": save({"x": np.zeros(3, dtype=np.float32)}),
    }
    tensors = load(good)
    meta = json.loads(json.loads(good[8:8 + int.from_bytes(good[:8], "little")])["__metadata__"]["semzip"])
    name = next(iter(meta["exponents"]))
    wrong = dict(tensors, **{f"{name}.lora_a": tensors[f"{name}.lora_a"].astype(np.float32)})
    cases["float factors"] = save(wrong, metadata={"semzip": json.dumps(meta)})
    cases["future version"] = save(tensors, metadata={"semzip": json.dumps({**meta, "version": 99})})
    cases["unknown weight"] = save(dict(tensors, **{"blk.0.nope.lora_a": tensors[f"{name}.lora_a"],
                                                    "blk.0.nope.lora_b": tensors[f"{name}.lora_b"]}),
                                   metadata={"semzip": json.dumps({**meta, "exponents": {
                                       **meta["exponents"], "blk.0.nope": [0, 0]}})})
    for why, data in cases.items():
        bad.write_bytes(data)
        with pytest.raises(SemzipError) as info:
            load_adapter(bad)
        assert "adapter" in str(info.value), why
    with pytest.raises(SemzipError, match="not found"):
        load_adapter(tmp_path / "missing.adapter")


def test_merge_is_exact_integer_arithmetic():
    """``merge_delta`` = v + round(D * 2**(frac - e)), row-wise frac included; rows that would reach 2**46
    are coarsened first (deterministically)."""
    from semzip.models.intlm.adapter import merge_delta, quantize_factor

    rng = np.random.default_rng(0)
    v = rng.integers(-(1 << 20), 1 << 20, size=(4, 6))
    d = rng.integers(-(1 << 30), 1 << 30, size=(4, 6))
    got, frac = merge_delta(v, 24, (d, 30), "w")
    want = v + np.array([[(int(x) + 32) >> 6 for x in row] for row in d])
    assert np.array_equal(got, want) and frac == 24
    fr = np.array([22, 24, 30, 36])
    got, frac = merge_delta(v, fr, (d, 30), "w")
    assert np.array_equal(frac, fr)
    for r in range(4):
        s = 30 - fr[r]
        exp_row = [(int(x) + (1 << (s - 1))) >> s if s > 0 else int(x) << -s for x in d[r]]
        assert list(got[r]) == [int(a) + b for a, b in zip(v[r], exp_row, strict=True)]
    big = np.full((1, 2), 1 << 44)
    got, frac = merge_delta(big, np.array([40]), (np.array([[1 << 30, 0]]), 16), "w")  # sum needs 47 bits
    assert int(frac[0]) < 40 and np.abs(got).max() < 1 << 46
    assert np.allclose(got[0] * 2.0 ** -int(frac[0]), (big[0] * 2.0**-40) + np.array([2.0**14, 0]), rtol=1e-9)
    with pytest.raises(ModelMismatchError):
        merge_delta(v, 60, (d, 0), "w")
    q, e = quantize_factor(np.array([[0.5, -0.25], [1e-3, 0.0]]))
    assert q.dtype == np.int16 and np.abs(q).max() < 2**15 and q[0, 0] == 1 << 14 and e == 15
    with pytest.raises(InvalidInputError):
        quantize_factor(np.array([np.nan]))


def test_resume_continues_and_refuses_another_corpus(trained, tiny_llama_folder, tmp_path):
    from semzip.train.text_adapter import load_adapter_config, train_adapter

    _result, cfg, folder, _ = trained
    more = load_adapter_config(None, **{**{k: getattr(cfg, k) for k in ("model", "rank", "batch_size", "lr",
                                                                       "val_fraction", "prompt", "patience")},
                                        "epochs": 3})
    lines: list[str] = []
    out = folder / "tiny3.adapter"
    more.out_dir = str(folder / "tiny.adapter.run")
    state = folder / "tiny.adapter.run" / "checkpoint" / "state.json"  # as written before `dropout` existed
    saved = json.loads(state.read_text())
    del saved["config"]["dropout"]
    state.write_text(json.dumps(saved))
    res = train_adapter(CORPUS, out, more, resume=True, say=lines.append)
    assert any(ln.startswith("resumed after epoch 2") for ln in lines) and [h["epoch"] for h in res.history] == [0, 1, 2, 3]
    with pytest.raises(InvalidInputError, match="another corpus"):
        train_adapter(CORPUS[:-2], folder / "x.adapter", more, resume=True, say=lines.append)
    with pytest.raises(InvalidInputError, match="exists"):
        train_adapter(CORPUS, out, more, say=lines.append)
    with pytest.raises(InvalidInputError, match="holds a checkpoint"):
        train_adapter(CORPUS, folder / "y.adapter", more, say=lines.append)


def test_corpus_readers(tmp_path):
    from semzip.train.text_adapter import load_adapter_config, read_corpus

    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("three\n")
    (tmp_path / "d" / "y.txt").write_text("four\nfive")
    (tmp_path / "c.csv").write_text('image,caption\n1.jpg,"six, with a comma"\n2.jpg,seven\n')
    assert read_corpus(tmp_path / "a.txt") == ["one", "two"]
    assert read_corpus(tmp_path / "d") == ["three", "four", "five"]
    assert read_corpus(tmp_path / "c.csv") == ["six, with a comma", "seven"]
    assert read_corpus(tmp_path / "c.csv", "image") == ["1.jpg", "2.jpg"]
    for bad, why in [(tmp_path / "none.txt", "not found"), (tmp_path / "c.csv", "no column")]:
        with pytest.raises(InvalidInputError, match=why):
            read_corpus(bad, "nope" if bad.suffix == ".csv" else "")
    (tmp_path / "cfg.toml").write_text("rank = 4\nepochs = 2\nlr = 1\n")
    assert load_adapter_config(tmp_path / "cfg.toml").rank == 4
    (tmp_path / "bad.toml").write_text("rnak = 4\n")
    with pytest.raises(InvalidInputError, match="unknown keys"):
        load_adapter_config(tmp_path / "bad.toml")
    with pytest.raises(InvalidInputError, match="rank"):
        load_adapter_config(None, rank=0)
    with pytest.raises(InvalidInputError, match="dropout"):
        load_adapter_config(None, dropout=1.0)


def _other_adapter(path, tmp_path):
    """A valid adapter for the same model with other integers (so another fingerprint)."""
    from safetensors.numpy import load, save

    data = path.read_bytes()
    meta = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    tensors = {k: (v // 2 if k.endswith("lora_b") else v) for k, v in load(data).items()}
    other = tmp_path / "other.adapter"
    other.write_bytes(save(tensors, metadata=meta))
    return other


def test_cli_text_with_adapter(trained, tiny_llama_folder, tmp_path):
    from typer.testing import CliRunner

    from semzip.cli import app

    result, *_ = trained
    runner = CliRunner()
    src = tmp_path / "cap.txt"
    src.write_text("A giraffe next to a red bus.\n")
    model = ["--model", str(tiny_llama_folder)]
    r = runner.invoke(app, ["text", "compress", str(src), "--adapter", str(result.path), *model])
    assert r.exit_code == 0, r.output
    coded = tmp_path / "cap.txt.smzc"
    assert coded.read_bytes()[0] == 0xFB  # layout 3: the final newline kept as a flag, coded with an adapter
    r = runner.invoke(app, ["text", "decompress", str(coded), "-o", str(tmp_path / "plain.txt"), *model])
    assert r.exit_code == 2 and ("adapter" in r.output or "check" in r.output), r.output
    assert not (tmp_path / "plain.txt").exists()
    r = runner.invoke(app, ["text", "decompress", str(coded), "-o", str(tmp_path / "back.txt"),
                            "--adapter", str(result.path), *model])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "back.txt").read_bytes() == src.read_bytes()
    r = runner.invoke(app, ["text", "compress", str(src), "-o", str(tmp_path / "x.smzc"),
                            "--adapter", str(tmp_path / "missing.adapter"), *model])
    assert r.exit_code == 2 and "adapter file not found" in r.output
    r = runner.invoke(app, ["text", "train", "--help"])
    assert r.exit_code == 0 and "--resume" in r.output and "validation" in r.output
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    r = runner.invoke(app, ["text", "train", str(corpus), "-o", str(tmp_path / "cli.adapter"), *model, "--rank",
                            "1", "--epochs", "1", "--batch-size", "4"], env={"SEMZIP_PROGRESS_INTERVAL": "0"})
    assert r.exit_code == 0, r.output  # in a log: the shared progress lines, with counts and a rate
    assert "training steps: 1/" in r.output and "done in" in r.output and (tmp_path / "cli.adapter").is_file()


def test_image_text_archives_record_and_require_the_adapter(trained, tiny_llama_folder, tmp_path):
    from semzip.api import compress_image_text, decompress_image_text, describe
    from semzip.data.scenes import write_scenes

    result, *_ = trained
    paths = write_scenes(tmp_path / "imgs", n=2, size=(64, 48))
    for p, c in zip(paths, ["a sandy beach under a blue sky", "a dark forest of pine trees"], strict=True):
        p.with_suffix(".txt").write_text(c)
    arc = tmp_path / "a.smz"
    lang = str(tiny_llama_folder)
    compress_image_text(tmp_path / "imgs", arc, language=lang, scale=0.5, caption_adapter=result.path)
    params = describe(arc)["params"]
    assert params["caption_adapter"] == "tiny" and params["caption_adapter_fingerprint"] == result.fingerprint
    with pytest.raises(ModelMismatchError, match="coded with the adapter 'tiny'.*pass that adapter"):
        decompress_image_text(arc, tmp_path / "o1", language=lang)
    with pytest.raises(ModelMismatchError, match="not with"):
        decompress_image_text(arc, tmp_path / "o2", language=lang, caption_adapter=_other_adapter(result.path, tmp_path))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    files = decompress_image_text(arc, tmp_path / "ok", language=lang, caption_adapter=result.path)
    assert len(files) == 2 and "sandy beach" in (tmp_path / "ok" / "captions.txt").read_text()
