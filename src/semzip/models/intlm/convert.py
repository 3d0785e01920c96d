"""Weights to exact integers: GGUF blocks (Q4_0, Q4_1, Q8_0, F16, F32, BF16) and safetensors floats become
int8 rows with fixed-point scales by the integer recipe of :func:`semzip.entropy.fixedpoint.requantize_rows`;
byte-level token tables and the encoding-side tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from semzip.entropy.fixedpoint import f16_to_q24, f32_to_fraction, requantize_rows, rshift_round
from semzip.errors import ModelMismatchError
from semzip.models.intlm.adapter import merge_delta
from semzip.models.intlm.arith import F_H, NORM_BOUND, IntLMConfig


def _row_fraction_f32(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact float32 rows as integers with a per-row common exponent: (v, frac) with value v * 2**-frac."""
    m, e = f32_to_fraction(bits)
    top = np.where(m != 0, e, np.iinfo(np.int64).min).max(axis=1)
    top = np.where(top == np.iinfo(np.int64).min, 0, top)
    # v = m * 2**(e - top + 22): |v| < 2**46; tiny values round (deterministically) towards their value
    v = rshift_round(m, -(e - top[:, None] + 22))
    return v, 22 - top


def _quantize_matrix(v: np.ndarray, frac: Any, name: str) -> dict[str, np.ndarray]:
    q, mult, shift = requantize_rows(v, frac)
    return {name + ".w": q, name + ".mult": mult, name + ".shift": shift}


def _gguf_blocks_to_q24(raw: np.ndarray, kind: str, rows: int, cols: int) -> np.ndarray:
    """Exact int64 values (units of 2**-24) of GGUF Q4_0/Q4_1/Q8_0/F16 rows from their raw bytes."""
    if kind == "F16":
        return f16_to_q24(raw.view(np.uint16).reshape(rows, cols))
    blk = raw.reshape(rows, -1).reshape(rows, cols // 32, -1)
    d = f16_to_q24(np.ascontiguousarray(blk[:, :, 0:2]).view(np.uint16)[..., 0])[..., None]
    if kind == "Q8_0":
        q = np.ascontiguousarray(blk[:, :, 2:34]).view(np.int8).astype(np.int64)
        return (d * q).reshape(rows, cols)
    off = 4 if kind == "Q4_1" else 2
    qs = blk[:, :, off:off + 16].astype(np.int64)
    q = np.concatenate([qs & 15, qs >> 4], axis=-1)
    if kind == "Q4_1":
        mn = f16_to_q24(np.ascontiguousarray(blk[:, :, 2:4]).view(np.uint16)[..., 0])[..., None]
        return (d * q + mn).reshape(rows, cols)
    return (d * (q - 8)).reshape(rows, cols)


_GGUF_KINDS = {"F16", "Q4_0", "Q4_1", "Q8_0", "F32", "BF16"}


def _gguf_matrix(t: Any, name: str, adapter: Any = None) -> dict[str, np.ndarray]:
    kind = t.tensor_type.name
    cols, rows = int(t.shape[0]), int(t.shape[1])
    if kind not in _GGUF_KINDS:
        raise ModelMismatchError(
            f"GGUF tensor {t.name} is {kind}; the integer coder reads F32, F16, BF16, Q4_0, Q4_1 and Q8_0 "
            "(re-quantize the model with llama.cpp, e.g. to Q4_1 or Q8_0)")
    raw = np.asarray(t.data)
    delta = adapter.delta(name) if adapter is not None else None
    if delta is not None and delta[0].shape != (rows, cols):
        raise ModelMismatchError(f"adapter weight {name} is {delta[0].shape[0]}x{delta[0].shape[1]}, the model's {rows}x{cols}")
    out: dict[str, np.ndarray] = {}
    step = max(1, (1 << 22) // cols)
    parts = []
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        if kind in ("F32", "BF16"):
            bits = raw.reshape(rows, -1)[r0:r1]
            bits = bits.view(np.uint32) if kind == "F32" else bits.view(np.uint16).astype(np.uint32) << 16
            v, frac = _row_fraction_f32(bits.reshape(r1 - r0, cols))
        else:
            v, frac = _gguf_blocks_to_q24(raw.reshape(rows, -1)[r0:r1], kind, r1 - r0, cols), 24
        if delta is not None:
            v, frac = merge_delta(v, frac, (delta[0][r0:r1], delta[1]), name)
        parts.append(_quantize_matrix(v, frac, name))
    for key in parts[0]:
        out[key] = np.concatenate([p[key] for p in parts])
    return out


def _f32_vector_q16(bits: np.ndarray, name: str) -> np.ndarray:
    m, e = f32_to_fraction(np.asarray(bits).view(np.uint32).reshape(-1))
    q = rshift_round(m, np.clip(-(e + F_H), -40, 62))
    if (np.abs(q) >= NORM_BOUND << F_H).any():
        raise ModelMismatchError(f"{name}: RMSNorm weights of {NORM_BOUND} or more are not supported")
    return q


def _f32_scalar(value: float) -> tuple[int, int]:
    m, e = f32_to_fraction(np.array([value], dtype=np.float32).view(np.uint32))
    return int(m[0]), int(e[0])


def convert_gguf(path: str, adapter: Any = None) -> tuple[IntLMConfig, dict[str, np.ndarray], dict[str, Any]]:
    """Read a llama-architecture GGUF file; exact integer weights, config and tokenizer fields. An
    :class:`~semzip.models.intlm.adapter.LMAdapter` is folded into the weights exactly."""
    try:
        import gguf
    except ImportError as exc:
        from semzip.errors import MissingDependencyError

        raise MissingDependencyError("reading GGUF models needs the gguf package: pip install 'semzip[text]'") from exc
    reader = gguf.GGUFReader(path)

    def field(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        if f is None:
            if default is None:
                raise ModelMismatchError(f"GGUF file {path} has no {key}")
            return default
        if f.types and f.types[0] == gguf.GGUFValueType.STRING:
            return bytes(f.parts[f.data[0]]).decode("utf-8")
        return f.parts[f.data[0]][0]

    arch = field("general.architecture")
    if arch != "llama":
        raise ModelMismatchError(f"GGUF architecture {arch!r} is not supported by the integer coder (llama only)")
    scaling = reader.fields.get("llama.rope.scaling.type")
    if scaling is not None and field("llama.rope.scaling.type") not in ("none", ""):
        raise ModelMismatchError(f"GGUF file {path} uses RoPE scaling; the integer coder supports plain RoPE only")
    n_heads = int(field("llama.attention.head_count"))
    hidden = int(field("llama.embedding_length"))
    tensors = {t.name: t for t in reader.tensors}
    emb = tensors.get("token_embd.weight")
    if emb is None:
        raise ModelMismatchError(f"GGUF file {path} has no token_embd.weight")
    cfg = IntLMConfig(
        n_layers=int(field("llama.block_count")), hidden=hidden, n_heads=n_heads,
        n_kv_heads=int(field("llama.attention.head_count_kv", n_heads)),
        head_dim=int(field("llama.rope.dimension_count", hidden // n_heads)),
        ffn=int(field("llama.feed_forward_length")), vocab=int(emb.shape[1]),
        context=min(int(field("llama.context_length", 2048)), 8192),
        rope_base=_f32_scalar(float(field("llama.rope.freq_base", 10000.0))),
        rms_eps=_f32_scalar(float(field("llama.attention.layer_norm_rms_epsilon", 1e-5))),
    )
    cfg.validate()
    arrays: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        base = name.removesuffix(".weight")
        if t.tensor_type.name == "F32" and len(t.shape) == 1 or base.endswith("_norm"):
            if t.tensor_type.name != "F32":
                raise ModelMismatchError(f"GGUF norm tensor {name} is {t.tensor_type.name}, expected F32")
            arrays[base] = _f32_vector_q16(np.asarray(t.data), name)
        elif len(t.shape) == 2:
            arrays.update(_gguf_matrix(t, base, adapter))
    tok = {
        "tokens": [bytes(reader.fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
                   for i in reader.fields["tokenizer.ggml.tokens"].data],
        "token_type": [int(reader.fields["tokenizer.ggml.token_type"].parts[i][0])
                       for i in reader.fields["tokenizer.ggml.token_type"].data],
        "model": field("tokenizer.ggml.model", "gpt2"),
        "eos": int(field("tokenizer.ggml.eos_token_id", 2)),
        "bos": int(field("tokenizer.ggml.bos_token_id", 1)),
    }
    if "tokenizer.ggml.merges" in reader.fields:
        f = reader.fields["tokenizer.ggml.merges"]
        tok["merges"] = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    return cfg, arrays, tok


def hf_unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF rotate-half q/k rows -> GGUF's adjacent-pair layout (what llama.cpp's converter does)."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def convert_safetensors(folder: str, adapter: Any = None) -> tuple[IntLMConfig, dict[str, np.ndarray]]:
    """A Hugging Face Llama folder (config.json + *.safetensors in F32/F16/BF16) as exact integer weights,
    with an adapter folded in exactly when one is given."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    root = Path(folder)
    try:
        hf = json.loads((root / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelMismatchError(f"{folder}: cannot read config.json ({exc})") from None
    if hf.get("model_type") != "llama":
        raise ModelMismatchError(f"{folder}: model_type {hf.get('model_type')!r} is not llama")
    n_heads = int(hf["num_attention_heads"])
    n_kv = int(hf.get("num_key_value_heads", n_heads))
    hidden = int(hf["hidden_size"])
    cfg = IntLMConfig(
        n_layers=int(hf["num_hidden_layers"]), hidden=hidden, n_heads=n_heads, n_kv_heads=n_kv,
        head_dim=int(hf.get("head_dim") or hidden // n_heads), ffn=int(hf["intermediate_size"]),
        vocab=int(hf["vocab_size"]), context=min(int(hf.get("max_position_embeddings", 2048)), 8192),
        rope_base=_f32_scalar(_hf_rope_theta(hf, folder)),
        rms_eps=_f32_scalar(float(hf.get("rms_norm_eps", 1e-5))),
    )
    cfg.validate()
    names = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    per_layer = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    arrays: dict[str, np.ndarray] = {}
    files = sorted(root.glob("*.safetensors"))
    if not files:
        raise ModelMismatchError(f"{folder}: no *.safetensors weights")
    for path in files:
        with safe_open(str(path), framework="numpy") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                base = key.removesuffix(".weight")
                if base.startswith("model.layers."):
                    _, _, idx, rest = base.split(".", 3)
                    target = f"blk.{int(idx)}.{per_layer.get(rest, rest)}"
                else:
                    target = names.get(base, base)
                arr = fh.get_tensor(key)
                bits = _float_bits(arr, key)
                if bits.ndim == 1:
                    arrays[target] = _f32_vector_q16(bits, key)
                    continue
                if target.endswith("attn_q"):
                    bits = hf_unpermute(bits, n_heads)
                elif target.endswith("attn_k"):
                    bits = hf_unpermute(bits, n_kv)
                v, frac = _row_fraction_f32(bits)
                delta = adapter.delta(target) if adapter is not None else None
                if delta is not None:
                    v, frac = merge_delta(v, frac, delta, target)
                arrays.update(_quantize_matrix(v, frac, target))
    if hf.get("tie_word_embeddings", True) and "output.w" in arrays:
        pass
    elif not hf.get("tie_word_embeddings", True) and "output.w" not in arrays:
        raise ModelMismatchError(f"{folder}: untied model without lm_head weights")
    return cfg, arrays


def _hf_rope_theta(hf: dict[str, Any], folder: str) -> float:
    """RoPE base from config.json (``rope_theta``, or transformers 5's ``rope_parameters``); only plain RoPE."""
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default")) if isinstance(params, dict) else "default"
    if kind not in (None, "default"):
        raise ModelMismatchError(f"{folder}: RoPE type {kind!r} is not supported by the integer coder (plain RoPE)")
    theta = hf.get("rope_theta") or (params.get("rope_theta") if isinstance(params, dict) else None) or 10000.0
    return float(theta)


def _float_bits(arr: np.ndarray, key: str) -> np.ndarray:
    if arr.dtype == np.float32:
        return arr.view(np.uint32)
    if arr.dtype == np.float16:
        return arr.astype(np.float32).view(np.uint32)  # exact widening
    if arr.dtype.name == "bfloat16" or (arr.dtype == np.uint16):
        return arr.view(np.uint16).astype(np.uint32) << 16
    raise ModelMismatchError(f"{key}: dtype {arr.dtype} is not supported (float32, float16, bfloat16)")




# --------------------------------------------------------------------------------------------- tokens


def byte_level_chars() -> list[str]:
    """GPT-2's byte-level alphabet: the character that stands for each byte value in token strings."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


class TokenTable:
    """Token id -> bytes, for byte-level BPE vocabularies, without any tokenizer library.

    The decoder turns ids into text with this table only, so a caption decodes to the same bytes whatever
    ``tokenizers`` version is installed. Control tokens (special tokens such as ``<|im_end|>``) have no
    bytes: they are terminators, never text.
    """

    def __init__(self, tokens: Sequence[str], control: Sequence[int]) -> None:
        inverse = {c: b for b, c in enumerate(byte_level_chars())}
        self.size = len(tokens)
        self.control = frozenset(int(i) for i in control)
        self.bytes: list[bytes | None] = []
        for i, tok in enumerate(tokens):
            if i in self.control:
                self.bytes.append(None)
                continue
            try:
                self.bytes.append(bytes(inverse[ch] for ch in tok))
            except KeyError:
                self.bytes.append(None)  # not a byte-level spelling: never produced as text
        single = {b: i for i, b in enumerate(self.bytes) if b is not None and len(b) == 1}
        self.byte_ids: list[int | None] = [single.get(bytes([v])) for v in range(256)]

    def text_bytes(self, ids: Sequence[int]) -> bytes | None:
        """The bytes of ``ids`` joined, or None if one of them is a control or unknown token."""
        out = []
        for i in ids:
            if not 0 <= i < self.size:
                return None
            b = self.bytes[i]
            if b is None:
                return None
            out.append(b)
        return b"".join(out)


def build_tokenizer(tokens: Sequence[str], merges: Sequence[str], control: Sequence[int]) -> Any:
    """A ``tokenizers`` byte-level BPE equal to the one transformers builds from a GPT-2-style GGUF."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tk = Tokenizer(models.BPE(vocab, pairs, fuse_unk=False, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in sorted(control)])
    return tk
