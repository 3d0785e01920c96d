"""Low-rank adapters for the caption language model, folded exactly into the integer model.

An adapter (``semzip text train``) is a safetensors file of integer low-rank factors per linear layer:

    delta W = B @ A * 2**-(exp_a + exp_b)        A: int16 (rank x in), B: int16 (out x rank)

named after the integer model's weights (``blk.<i>.attn_q`` ... ``blk.<i>.ffn_down``), B's rows already in
the GGUF row order of the integer model (q/k rows of a Hugging Face model are permuted as llama.cpp does).
:func:`merge_delta` adds ``round(B @ A * 2**-(exp_a + exp_b) / 2**-frac)`` to the exact integer weights
(``value = v * 2**-frac``) *before* they are requantised to int8 rows: ``B @ A`` is an exact int64
product (|entries| < 2**15, rank <= 256, so sums stay below 2**39) and the rescaling a rounded shift, so the
adapted model is the same integers on every machine. The float factors a training run produced are rounded
to int16 once, when the file is written; the file's integers are the adapter.

The file's metadata (``semzip`` key, JSON) names the base model and its fingerprint, the rank, the prompt
(text and token ids: decoding needs no tokenizer) and what training reported. The adapter's fingerprint is
the sha256 of the file's bytes; an adapted model's fingerprint combines the base model's and the adapter's,
so files coded with an adapter are refused by the plain model and by any other adapter (the compact
layout's model tag and check, the image-text header).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semzip.entropy.fixedpoint import bit_length, rshift_round
from semzip.errors import InvalidInputError, MissingModelError, ModelMismatchError

ADAPTER_FORMAT = "semzip-lm-adapter"
ADAPTER_VERSION = 1
ADAPTER_SUFFIX = ".adapter"
TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
HF_TARGETS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
              "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
MAX_RANK = 256
FACTOR_BITS = 15  # int16 factors: |entries| < 2**15
MAX_ADAPTER_BYTES = 1 << 30


@dataclass
class LMAdapter:
    """A loaded adapter: integer factors per weight and the metadata the coder needs."""

    path: str
    name: str
    fingerprint: str  # sha256 hex of the file
    base_model: str
    base_fingerprint: str
    rank: int
    prompt: str
    prompt_ids: list[int]
    factors: dict[str, tuple[np.ndarray, np.ndarray, int]]  # name -> (A int16, B int16, exponent a + b)
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"LMAdapter(name={self.name!r}, rank={self.rank}, fingerprint={self.fingerprint[:16]})"

    def delta(self, name: str) -> tuple[np.ndarray, int] | None:
        """``(D, e)`` with the weight change ``D * 2**-e`` (D exact int64), or None if ``name`` is not adapted."""
        f = self.factors.get(name)
        if f is None:
            return None
        a, b, e = f
        return b.astype(np.int64) @ a.astype(np.int64), e


def combined_fingerprint(base_fingerprint: str, adapter_fingerprint: str) -> str:
    """The adapted model's fingerprint (same length as the base one)."""
    h = hashlib.sha256(f"semzip.lm.adapted.v1\x00{base_fingerprint}\x00{adapter_fingerprint}".encode())
    return h.hexdigest()[: len(base_fingerprint)]


def quantize_factor(x: Any) -> tuple[np.ndarray, int]:
    """A float matrix as ``(q int16, e)`` with ``x ~= q * 2**-e`` and ``max |q| < 2**15`` (run once, when an
    adapter is written; the stored integers are what every decoder uses)."""
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise InvalidInputError("adapter factors contain NaN or infinity (training diverged?)")
    amax = float(np.abs(x).max()) if x.size else 0.0
    if amax == 0.0:
        return np.zeros(x.shape, dtype=np.int16), 0
    e = FACTOR_BITS - 1 - int(np.floor(np.log2(amax)))  # amax * 2**e in [2**14, 2**15)
    q = np.rint(np.ldexp(x, e))
    while np.abs(q).max() >= 1 << FACTOR_BITS:
        e -= 1
        q = np.rint(np.ldexp(x, e))
    return q.astype(np.int16), e


def save_adapter(path: str | os.PathLike, factors: Mapping[str, tuple[Any, Any]], *, base_model: str,
                 base_fingerprint: str, prompt: str, prompt_ids: Sequence[int], meta: Mapping[str, Any]) -> str:
    """Write an adapter (float factors ``name -> (A, B)`` with the scaling folded into B, rows of B in the
    integer model's order) atomically; returns its fingerprint."""
    from safetensors.numpy import save

    from semzip.format import atomic_write

    tensors: dict[str, np.ndarray] = {}
    exps: dict[str, list[int]] = {}
    ranks = set()
    for name, (a, b) in sorted(factors.items()):
        qa, ea = quantize_factor(a)
        qb, eb = quantize_factor(b)
        tensors[f"{name}.lora_a"], tensors[f"{name}.lora_b"] = qa, qb
        exps[name] = [ea, eb]
        ranks.add(qa.shape[0])
    if len(ranks) != 1:
        raise InvalidInputError(f"adapter factors have different ranks: {sorted(ranks)}")
    info = {"format": ADAPTER_FORMAT, "version": ADAPTER_VERSION, "base_model": base_model,
            "base_fingerprint": base_fingerprint, "rank": ranks.pop(), "prompt": prompt,
            "prompt_ids": [int(i) for i in prompt_ids], "exponents": exps, **dict(meta)}
    data = save(tensors, metadata={"semzip": json.dumps(info, sort_keys=True)})
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def _bad(path: Any, why: str) -> ModelMismatchError:
    return ModelMismatchError(f"{path} is not a usable semzip adapter: {why}")


def load_adapter(path: str | os.PathLike) -> LMAdapter:
    """Read and validate an adapter file (shapes, dtypes, names, metadata); its fingerprint is its sha256."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingModelError(f"adapter file not found: {p}")
    size = p.stat().st_size
    if size > MAX_ADAPTER_BYTES:
        raise _bad(p, f"{size} bytes is larger than any adapter")
    data = p.read_bytes()
    try:
        from safetensors.numpy import load
    except ImportError as exc:
        from semzip.errors import MissingDependencyError

        raise MissingDependencyError("reading adapters needs the safetensors package: pip install 'semzip[text]'") from exc
    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        info = json.loads(header.get("__metadata__", {}).get("semzip", "null"))
        tensors = load(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure of a foreign file is one clear error
        raise _bad(p, f"not a safetensors file ({type(exc).__name__})") from None
    if not isinstance(info, dict) or info.get("format") != ADAPTER_FORMAT:
        raise _bad(p, "no semzip adapter metadata")
    if info.get("version") != ADAPTER_VERSION:
        raise _bad(p, f"adapter version {info.get('version')!r}; this semzip reads version {ADAPTER_VERSION}")
    try:
        rank = int(info["rank"])
        exps = {str(k): (int(v[0]), int(v[1])) for k, v in dict(info["exponents"]).items()}
        prompt = str(info["prompt"])
        prompt_ids = [int(i) for i in info["prompt_ids"]]
        base_model, base_fp = str(info["base_model"]), str(info["base_fingerprint"])
    except (KeyError, TypeError, ValueError, IndexError):
        raise _bad(p, "incomplete metadata") from None
    if not 1 <= rank <= MAX_RANK or not prompt_ids:
        raise _bad(p, f"rank {rank} outside [1, {MAX_RANK}] or an empty prompt")
    factors: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for name, (ea, eb) in exps.items():
        a, b = tensors.get(f"{name}.lora_a"), tensors.get(f"{name}.lora_b")
        parts = name.split(".")
        if (a is None or b is None or len(parts) != 3 or parts[0] != "blk" or not parts[1].isdigit()
                or parts[2] not in TARGETS):
            raise _bad(p, f"unexpected or incomplete weight {name!r}")
        if a.dtype != np.int16 or b.dtype != np.int16 or a.ndim != 2 or b.ndim != 2 \
                or a.shape[0] != rank or b.shape[1] != rank:
            raise _bad(p, f"{name}: factors must be int16 of rank {rank}")
        if not -64 <= ea <= 64 or not -64 <= eb <= 64:
            raise _bad(p, f"{name}: exponents out of range")
        factors[name] = (a, b, ea + eb)
    if len(tensors) != 2 * len(factors) or not factors:
        raise _bad(p, "tensors without exponents, or no tensors")
    return LMAdapter(str(p), p.name.removesuffix(ADAPTER_SUFFIX) or p.name, hashlib.sha256(data).hexdigest(),
                     base_model, base_fp, rank, prompt, prompt_ids, factors,
                     {k: v for k, v in info.items() if k not in ("exponents",)})


def merge_delta(v: np.ndarray, frac: Any, delta: tuple[np.ndarray, int], name: str) -> tuple[np.ndarray, Any]:
    """Exact weights ``v * 2**-frac`` (``frac`` a scalar or one per row) plus the adapter's ``D * 2**-e``,
    in the weights' units: ``(v + round(D * 2**(frac - e)), frac)``. A row whose sum would reach 2**46 is
    first coarsened by ``k`` bits: ``(round(v / 2**k) + round(D * 2**(frac - k - e)), frac - k)``."""
    d, e = delta
    if d.shape != v.shape:
        raise ModelMismatchError(f"adapter weight {name} is {d.shape[0]}x{d.shape[1]}, the model's {v.shape[0]}x{v.shape[1]}")
    rows = v.shape[0]
    frac_rows = np.broadcast_to(np.asarray(frac, dtype=np.int64), (rows,))
    shift = e - frac_rows  # D's units -> the weights' units: a right shift by ``shift``
    bits_v = bit_length(np.abs(v).max(axis=1)) if v.size else np.zeros(rows, dtype=np.int64)
    bits_d = (bit_length(np.abs(d).max(axis=1)) if d.size else np.zeros(rows, dtype=np.int64)) - shift
    k = np.maximum(np.maximum(bits_v, bits_d) - 45, 0)
    if (k > 40).any():
        raise ModelMismatchError(f"adapter weight {name} is far larger than the model's weights (a broken adapter?)")
    if not k.any():
        return v + rshift_round(d, np.clip(shift, -62, 62)[:, None]), frac
    out = rshift_round(v, k[:, None]) + rshift_round(d, np.clip(shift + k, -62, 62)[:, None])
    return out, frac_rows - k
