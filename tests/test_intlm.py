"""The integer caption language model (semzip.models.intlm): exact tables, exact kernels, exact conversion,
agreement with the float model it approximates, batch invariance, and its on-disk cache."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from semzip.errors import ModelMismatchError
from semzip.models.intlm import arith
from semzip.models.intlm.arith import (
    NumpyKernel,
    freqs_from_logits,
    rope_table,
    sigmoid_table,
)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<i8").tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ exact pieces


def test_tables_are_close_to_the_functions_and_pinned():
    """The tables are part of the coder's definition: close to the real functions, and pinned to the bit."""
    from semzip.entropy.fixedpoint import exp_gap_table

    cos, sin = rope_table((12800000, -7), 64, 8192)  # SmolLM2's base 100000.0 as m * 2**e
    p = np.arange(8192)[:, None] * 100000.0 ** (-np.arange(32)[None, :] / 32)
    assert np.abs(cos / 2**16 - np.cos(p)).max() < 2e-5 and np.abs(sin / 2**16 - np.sin(p)).max() < 2e-5
    sig = sigmoid_table()
    x = np.arange(-(32 << 8), (32 << 8) + 1) / 256
    assert np.abs(sig / 2**30 - 1 / (1 + np.exp(-x))).max() < 1e-4
    t = exp_gap_table(12, 30)
    assert abs(int(t[4096]) - 2**30 * math.exp(-1)) / 2**30 < 1e-4 and t[-1] == 0 and t[-2] > 0
    assert {
        "cos": _sha(cos), "sin": _sha(sin), "sigmoid": _sha(sig), "gap30": _sha(t),
        "gap18": _sha(exp_gap_table(12, 18)),
    } == {
        "cos": "07ba9731e94f15f3", "sin": "7e13a2fd6a2aba50", "sigmoid": "6ee11b7a0f8318be",
        "gap30": "a94199588304f34a", "gap18": "822dcb497dc1c753",
    }


def _digit_rows(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    x = rng.integers(-(2**14), 2**14 + 1, (m, k))
    x[0] = 2**14  # the extremes: the largest partial sums the exactness argument allows
    x[1] = -(2**14)
    return arith._digits(x)


@pytest.mark.parametrize("k", [576, 1100, 1536])
def test_kernels_compute_the_exact_integer_product(k):
    rng = np.random.default_rng(k)
    x2 = _digit_rows(rng, 6, k)
    w = rng.integers(-127, 128, (40, k)).astype(np.int8)
    w[0] = 127
    w[1] = -127
    m = x2.shape[0] // 2
    want = 256 * (x2[:m].astype(np.int64) @ w.T.astype(np.int64)) + x2[m:].astype(np.int64) @ w.T.astype(np.int64)
    assert np.array_equal(NumpyKernel()(x2, w), want)
    pytest.importorskip("torch")
    assert np.array_equal(arith.TorchKernel()(x2, w), want)


def test_sparse_frequency_tables_equal_the_dense_definition():
    rng = np.random.default_rng(3)
    for scale in (0.01, 1.0, 5.0, 30.0):
        lg = (rng.standard_normal((9, 5000)) * scale * 2**16).astype(np.int64)
        lg[2] = 0  # all tied: the leftover goes to token 0
        lg[3, 10:20] = lg[3].max()
        f = freqs_from_logits(lg)
        assert np.array_equal(f, arith.freqs_from_logits_dense(lg))
        assert (f.sum(axis=1) == 2**24).all() and f.min() >= 1
        assert (np.argmax(f, axis=1) == np.argmax(lg, axis=1)).all()


# ------------------------------------------------------------------------------------------ conversion


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1", "Q8_0"])
def test_gguf_blocks_decode_to_their_exact_values(kind):
    gguf = pytest.importorskip("gguf")
    from semzip.models.intlm.convert import _gguf_blocks_to_q24

    qtype = getattr(gguf.GGMLQuantizationType, kind)
    data = np.random.default_rng(1).standard_normal((8, 96)).astype(np.float32)
    raw = gguf.quants.quantize(data, qtype)
    ref = gguf.quants.dequantize(raw, qtype).reshape(8, 96)
    exact = _gguf_blocks_to_q24(raw, kind, 8, 96)
    assert np.array_equal((exact.astype(np.float64) / 2**24).astype(np.float32), ref)


def test_requantised_weights_stay_within_half_a_step(tiny_llama_folder):
    from safetensors.numpy import load_file

    from semzip.models.intlm import convert_safetensors

    cfg, arrays = convert_safetensors(str(tiny_llama_folder))
    w = next(iter(load_file(str(tiny_llama_folder / "model.safetensors")).values()))  # embed_tokens
    q, mult, shift = arrays["token_embd.w"], arrays["token_embd.mult"], arrays["token_embd.shift"]
    approx = q.astype(np.float64) * (mult * 2.0 ** -shift.astype(np.float64))[:, None]
    step = np.abs(w).max(axis=1, keepdims=True) / 127
    assert (np.abs(approx - w) <= step * 0.5001).all()
    assert cfg.head_dim == 64 and cfg.n_kv_heads == 1


# ------------------------------------------------------------------------------------------ the model


def test_integer_model_follows_the_float_model(tiny_int_lm, tiny_llama_folder):
    """Same architecture conventions as transformers (RoPE pairing, GQA, scaling, norms): on the same int8
    weights, transformers' float logits and the integer model's tables agree closely."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ids = [49, 2767, 12894, 335, 253, 10091, 6289, 1867, 288, 253, 2382, 4405, 30]
    model = transformers.LlamaForCausalLM.from_pretrained(tiny_llama_folder).eval()
    state = model.state_dict()
    for k, v in state.items():  # the int8 row requantisation the integer model uses (half a step)
        if v.ndim == 2:
            amax = v.abs().amax(dim=1, keepdim=True)
            state[k] = torch.round(v / amax * 127) * amax / 127
    model.load_state_dict(state)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double().numpy()[:-1]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    m = tiny_int_lm.model
    q = m.score(m.prefix(ids[:1]), [ids[1:]])[0] / 2**24
    tv = 0.5 * np.abs(q - p).sum(axis=1)
    assert tv.max() < 0.003, tv
    assert (q.argmax(axis=1) == p.argmax(axis=1)).all()


def test_batches_and_steps_give_the_same_integers(tiny_int_lm):
    m = tiny_int_lm.model
    pre = m.prefix([1, 49, 2767])
    seqs = [[253, 10091, 6289, 30], [], [335], [12894, 335, 253, 10091, 6289, 1867, 288, 253]]
    together = m.score(pre, seqs)
    alone = [m.score(pre, [s])[0] for s in seqs]
    reordered = m.score(pre, seqs[::-1])[::-1]
    for a, b, c in zip(together, alone, reordered, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    # decoding one token at a time, with sequences dropping out, sees the same tables
    live = [0, 3]
    batch = m.new_batch(pre, len(live), 2)
    for i in range(len(seqs[3]) - 1):
        if i == len(seqs[0]) - 1:
            batch.select([1])
            live = [3]
        batch.reserve(1)
        tables = m.step(batch, np.array([seqs[j][i] for j in live]))
        for row, j in enumerate(live):
            assert np.array_equal(tables[row], together[j][i + 1])


def test_kernel_choice_does_not_change_a_bit(tiny_int_lm):
    pytest.importorskip("torch")
    m = tiny_int_lm.model
    seqs = [[49, 2767, 30], [253, 10091]]
    pre = m.prefix([1])
    a = m.score(pre, seqs)
    try:
        tiny_int_lm.use_kernel("torch")
        b = m.score(m.prefix([1]), seqs)
    finally:
        tiny_int_lm.use_kernel("numpy")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------------------ cache


def test_converted_cache_is_checked_and_rebuilt(tiny_llama_folder, tmp_path):
    from semzip.models.intlm import load_int_language_model

    first = load_int_language_model(tiny_llama_folder, cache_dir=tmp_path)
    assert first.converted
    again = load_int_language_model(tiny_llama_folder, cache_dir=tmp_path)
    assert not again.converted and again.fingerprint == first.fingerprint
    ref = again.model.prefix([1, 2, 3]).freqs
    weights = first.folder / "int8.npy"
    blob = bytearray(weights.read_bytes())
    blob[-7] ^= 0x10
    weights.write_bytes(bytes(blob))
    rebuilt = load_int_language_model(tiny_llama_folder, cache_dir=tmp_path)
    assert rebuilt.converted and np.array_equal(rebuilt.model.prefix([1, 2, 3]).freqs, ref)
    # a damaged prompt state is recomputed, not trusted
    pre = rebuilt.prefix([1, 5, 9])
    (path,) = rebuilt.folder.glob("prefix-*.npz")
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    fresh = load_int_language_model(tiny_llama_folder, cache_dir=tmp_path)
    assert np.array_equal(fresh.prefix([1, 5, 9]).freqs, pre.freqs)


def test_unsupported_models_are_refused(tmp_path, tiny_llama_folder):
    import json
    import shutil

    from semzip.models.intlm import convert_safetensors

    bad = tmp_path / "scaled"
    shutil.copytree(tiny_llama_folder, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelMismatchError, match="RoPE"):
        convert_safetensors(str(bad))
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    cfg["model_type"] = "mistral"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelMismatchError, match="llama"):
        convert_safetensors(str(bad))


def test_an_unwritable_cache_still_codes(tiny_llama_folder, tmp_path, monkeypatch, caplog):
    from semzip.codecs.text import IntTextCoder
    from semzip.models.intlm import load_int_language_model, loader

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(loader, "save_converted", refuse)
    lm = load_int_language_model(tiny_llama_folder, cache_dir=tmp_path / "ro")
    coder = IntTextCoder(lm)
    with caplog.at_level("WARNING", logger=loader.__name__):
        assert coder.decompress(coder.compress("A cat on a mat.")) == "A cat on a mat."
        lm.prefix([1, 2, 3])
    assert not (tmp_path / "ro" / "models").exists() or not any((tmp_path / "ro" / "models").iterdir())
    # the prompt-state cache could not be written either: said once, not per state, and not fatal
    assert sum("could not cache prompt states" in r.getMessage() for r in caplog.records) == 1


def test_prompt_states_are_cached_atomically(tiny_int_lm):
    from semzip.format.container import new_file_mode

    state = tiny_int_lm.prefix([7, 8, 9])
    files = list(tiny_int_lm.folder.glob("*prefix-*"))
    assert files and all(f.name.startswith("prefix-") and f.suffix == ".npz" for f in files)  # no temporaries
    assert all(f.stat().st_mode & 0o777 == new_file_mode() for f in files)  # the umask, not mkstemp's 0600
    tiny_int_lm._prefixes.clear()
    again = tiny_int_lm.prefix([7, 8, 9])  # read back from the file
    assert again.tokens == state.tokens and all((a == b).all() for a, b in zip(again.keys, state.keys, strict=True))
