"""The integer arithmetic of the caption language model (ARITH_VERSION 1): formats, tables, kernels, the
forward pass. Everything here is specified in docs/text-coding.md ("The integer model")."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semzip.entropy.fixedpoint import (
    LOG2E_Q32,
    bit_length,
    div_round,
    exp2_neg,
    exp_gap_table,
    isqrt,
    rshift_round,
    saturate,
)
from semzip.errors import InvalidInputError, ModelMismatchError

__all__ = ["ARITH_VERSION", "IntLMConfig", "IntLlama", "freqs_from_logits", "rope_table"]

ARITH_VERSION = 1
"""Version of the integer arithmetic below. Text codec 2 is defined by this version."""

# Fixed-point formats (number of fractional bits) and bounds. Part of ARITH_VERSION.
F_H = 16  # residual stream
H_BOUND = (1 << 36) - 1  # residual saturation (|real| < 2**20)
F_Z = 20  # RMSNorm output
Z_BOUND = (1 << 30) - 1  # |real| < 1024
RMS_XS_BITS = 20  # the residual row is shifted to this many bits to form the sum of squares
RMS_R = 8  # fractional bits of the integer root
RMS_Y = 12  # h * g is rounded to 2**(12 + t) before the reciprocal multiply
NORM_BOUND = 16  # |RMSNorm weight| < 16
F_QKV = 15  # q, k, v (after RoPE too)
QKV_BOUND = (1 << 21) - 1  # |real| < 64
F_ROPE = 16  # cos/sin table
ATT_SCORE_SHIFT = 21  # q.k (Q30) / 8 -> units of 2**-12 nats
ATT_GAP_BITS = 12
F_MLP = 16  # gate, up, silu(gate) * up, o and down projections, logits
MLP_BOUND = (1 << 26) - 1  # |real| < 1024 for gate/up
EXP_FRAC = 12  # base-2 exponent arguments carry 12 fractional bits
ATT_P_BITS = 18  # attention weights: the largest is 2**18
SIG_BITS = 30  # sigmoid in Q30
FREQ_EXP_BITS = 30
A_BITS = 14  # GEMM inputs: |x| <= 2**14, sent as two int8 digits (base 256)
A_MAX = 1 << A_BITS
_KCHUNK = 1024  # float32 sums of int8 products stay exact (< 2**24) for up to 1024 terms
_SCRATCH_ROWS = 512
HEAD_ROWS = 64  # rows per vocabulary-wide block (speed only)
ROW_BLOCK = 128  # rows per block of the per-row work (speed only: results do not depend on it)


@dataclass(frozen=True)
class IntLMConfig:
    """Shape of a Llama-family model plus its exact RoPE base and RMSNorm epsilon (as ``m * 2**e``)."""

    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context: int
    rope_base: tuple[int, int]  # (m, e): base = m * 2**e
    rms_eps: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntLMConfig:
        try:
            kw = {f.name: d[f.name] for f in dataclasses.fields(cls)}
            kw["rope_base"], kw["rms_eps"] = tuple(kw["rope_base"]), tuple(kw["rms_eps"])
            cfg = cls(**kw)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelMismatchError(f"integer language model config is malformed: {exc}") from None
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Refuse shapes the arithmetic does not cover (bounds of the exact products)."""
        ints = [self.n_layers, self.hidden, self.n_heads, self.n_kv_heads, self.head_dim, self.ffn, self.vocab,
                self.context]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ints):
            raise ModelMismatchError(f"integer language model config has a non-positive size: {self}")
        if self.hidden > 4096 or self.ffn > 4096 or self.head_dim > 256 or self.head_dim % 2:
            raise ModelMismatchError("model too large for the integer coder's exact bounds "
                                     "(hidden <= 4096, ffn <= 4096, even head_dim <= 256)")
        if self.n_heads * self.head_dim != self.hidden or self.n_heads % self.n_kv_heads:
            raise ModelMismatchError(f"inconsistent attention shape in {self}")
        if self.context > 8192 or self.vocab > 1 << 22:
            raise ModelMismatchError("context above 8192 or vocabulary above 2**22 is not supported")


# --------------------------------------------------------------------------------------------- tables


def _iroot(n: int, k: int) -> int:
    """floor(n ** (1/k)) for Python ints (Newton's method from above)."""
    if n < 2:
        return n
    x = 1 << -(-n.bit_length() // k)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _cis(theta: int, p: int) -> tuple[int, int]:
    """(cos, sin) of ``theta * 2**-p`` (0 <= theta <= 2**p) in Q.p by Taylor series, truncating divisions."""
    one = 1 << p
    c, s = 0, 0
    term, n = one, 0  # theta**n / n! in Q.p
    while term:
        if n % 4 == 0:
            c += term
        elif n % 4 == 1:
            s += term
        elif n % 4 == 2:
            c -= term
        else:
            s -= term
        n += 1
        term = (term * theta >> p) // n
    return c, s


@functools.lru_cache(maxsize=4)
def rope_table(rope_base: tuple[int, int], head_dim: int, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """RoPE (cos, sin) in Q16, shape (positions, head_dim // 2), by an exact integer recipe.

    With P = 96: ``r = floor(2**P * base**(-2 / head_dim))`` (an integer root), ``theta_i = r**i`` (Q.P,
    truncated products), ``z_i = cis(theta_i)`` (Taylor series), ``B[b] = z**b`` and ``A[a] = z**(64 a)`` by
    repeated complex products (Q.P, truncated), rounded to Q30; ``cis(p theta) = A[p // 64] * B[p % 64]``
    in int64, rounded to Q16. Python integers and int64 only.
    """
    m, e = rope_base
    half = head_dim // 2
    p = 96
    num, den = 1 << (p * half), m  # 2**(P*half) / base, base = m * 2**e
    if e >= 0:
        den <<= e
    else:
        num <<= -e
    r = _iroot(num // den, half)  # 2**P * base**(-1/half)
    thetas, t = [], 1 << p
    for _ in range(half):
        thetas.append(t)
        t = t * r >> p
    n_a = -(-positions // 64)
    a_tab = np.empty((n_a, half, 2), dtype=np.int64)
    b_tab = np.empty((64, half, 2), dtype=np.int64)
    rnd = 1 << (p - 31)
    for i, th in enumerate(thetas):
        zc, zs = _cis(th, p)
        bc, bs = 1 << p, 0
        for b in range(64):
            b_tab[b, i] = ((bc + rnd) >> (p - 30), (bs + rnd) >> (p - 30))
            bc, bs = (bc * zc - bs * zs) >> p, (bc * zs + bs * zc) >> p
        z64c, z64s = bc, bs
        ac, as_ = 1 << p, 0
        for a in range(n_a):
            a_tab[a, i] = ((ac + rnd) >> (p - 30), (as_ + rnd) >> (p - 30))
            ac, as_ = (ac * z64c - as_ * z64s) >> p, (ac * z64s + as_ * z64c) >> p
    pos = np.arange(positions)
    ac, as_ = a_tab[pos // 64, :, 0], a_tab[pos // 64, :, 1]
    bc, bs = b_tab[pos % 64, :, 0], b_tab[pos % 64, :, 1]
    cos = rshift_round(ac * bc - as_ * bs, 60 - F_ROPE)
    sin = rshift_round(ac * bs + as_ * bc, 60 - F_ROPE)
    cos.flags.writeable = False
    sin.flags.writeable = False
    return cos, sin


# --------------------------------------------------------------------------------------------- kernels


class NumpyKernel:
    """Exact ``256 * (hi @ w.T) + lo @ w.T`` for int8 digit rows ``[hi; lo]`` and int8 weights, by float BLAS.

    Each float32 product of two int8 values is exact and each partial sum of at most 1024 of them stays
    below 2**24, so every float32 result is the exact integer whatever order BLAS sums in; K is split into
    chunks of 1024 and the chunks and digits are combined in float64 (exact below 2**53). Weights stay int8
    (memory-mapped); each slice is converted into a small reused float32 buffer just before its product.
    """

    name = "numpy"

    def __init__(self) -> None:
        self._scratch: np.ndarray | None = None

    def __call__(self, x2: np.ndarray, w: np.ndarray) -> np.ndarray:
        m2, k = x2.shape
        m, n = m2 // 2, w.shape[0]
        xf = x2.astype(np.float32)
        acc = np.zeros((m2, n), dtype=np.float64)
        rows = max(1, min(n, (_SCRATCH_ROWS * 576) // max(k, 1)))
        if self._scratch is None or self._scratch.size < rows * k:
            self._scratch = np.empty(max(rows * k, _SCRATCH_ROWS * 576), dtype=np.float32)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            buf = self._scratch[: (r1 - r0) * k].reshape(r1 - r0, k)
            np.copyto(buf, w[r0:r1], casting="unsafe")
            for k0 in range(0, k, _KCHUNK):
                k1 = min(k, k0 + _KCHUNK)
                acc[:, r0:r1] += xf[:, k0:k1] @ buf[:, k0:k1].T
        out = acc[:m] * 256.0
        out += acc[m:]
        return out.astype(np.int64)


class TorchKernel:
    """Exact ``256 * (hi @ w.T) + lo @ w.T`` with ``torch._int_mm`` (int8 x int8 -> int32, exact)."""

    name = "torch"

    def __init__(self, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self._weights: dict[int, Any] = {}

    def __call__(self, x2: np.ndarray, w: np.ndarray) -> np.ndarray:
        torch = self.torch
        held = self._weights.get(id(w))
        if held is None or held[1] is not w:
            held = (torch.from_numpy(np.array(w, dtype=np.int8)).to(self.device), w)  # a writable copy
            self._weights[id(w)] = held
        wt = held[0]
        m2 = x2.shape[0]
        xt = torch.from_numpy(np.ascontiguousarray(x2, dtype=np.int8)).to(self.device)
        if self.device.type == "cuda" and m2 <= 16:  # cuBLASLt's int8 path wants more than 16 rows
            xt = torch.cat([xt, xt.new_zeros((17 - m2, xt.shape[1]))])
        out = torch._int_mm(xt, wt.t())[:m2].cpu().numpy()
        m = m2 // 2
        acc = np.left_shift(out[:m], 8, dtype=np.int64)
        acc += out[m:]
        return acc


def make_kernel(kind: str = "numpy") -> Any:
    """``numpy`` (default; BLAS, no torch import), ``torch`` (CPU ``_int_mm``) or ``cuda``."""
    if kind == "numpy":
        return NumpyKernel()
    if kind not in ("torch", "cpu", "cuda"):
        raise InvalidInputError(f"unknown integer kernel {kind!r}: numpy, torch or cuda")
    try:
        import torch
    except ImportError:
        from semzip.errors import MissingDependencyError

        raise MissingDependencyError(f"the {kind} kernel needs torch: pip install 'semzip[torch]' "
                                     "(or use the numpy kernel: the same results)") from None
    if not hasattr(torch, "_int_mm"):
        raise InvalidInputError(f"torch {torch.__version__} has no _int_mm: use the numpy kernel")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("no CUDA device is available here (torch.cuda.is_available() is False)")
    return TorchKernel("cuda" if kind == "cuda" else "cpu")


# --------------------------------------------------------------------------------------------- arithmetic


def quantize_rows(z: np.ndarray, frac: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``z`` (Q.frac) as integers ``|x| <= 2**14`` and the per-row fractional bits ``s`` (value
    ``x * 2**-s``): ``t = max(0, bit_length(max |z|) - 14)``, ``x = round(z / 2**t)``, ``s = frac - t``."""
    amax = np.abs(z).max(axis=-1)
    t = np.maximum(bit_length(amax) - A_BITS, 0)
    return rshift_round(z, t[..., None]), frac - t


def _digits(x: np.ndarray) -> np.ndarray:
    """``x = 256 hi + lo``, ``lo`` in [-128, 127]: rows ``[hi; lo]`` as int8 (|x| <= 2**14 so |hi| <= 64)."""
    m = x.shape[0]
    out = np.empty((2 * m, x.shape[1]), dtype=np.int8)
    lo = x.astype(np.int8)  # two's-complement wrap: x mod 256 in [-128, 127]
    out[m:] = lo
    out[:m] = (x - lo) >> 8
    return out


LOGIT_GAP_BITS = 12  # logit gaps are looked up in units of 2**-12 (Q16 logits shifted right by 4)


def freqs_from_logits(logits: np.ndarray, precision: int = 24) -> np.ndarray:
    """Integer frequencies (each >= 1, rows summing to ``2**precision``) from Q16 integer logits.

    ``j = floor((max - l) / 2**4)`` (the gap in units of 2**-12); ``e = T[min(j, len(T) - 1)]`` with
    ``T = exp_gap_table(12, 30)`` (the top token gets exactly ``2**30``); ``S = sum(e)``,
    ``inv = floor(k * 2**38 / S)`` with ``k = 2**P - V``; ``f = floor(e * inv / 2**38) + 1`` (so
    ``sum(f) <= 2**P``); the units left over go to the first token with the largest ``f``.

    Computed sparsely when most gaps reach the table's end (``e = 0``, so ``f = 1`` exactly): only the
    other tokens go through the table; the result is the same integers as :func:`freqs_from_logits_dense`.
    """
    lg = np.asarray(logits, dtype=np.int64)
    squeeze = lg.ndim == 1
    lg = np.atleast_2d(lg)
    m, v = lg.shape
    table = exp_gap_table(LOGIT_GAP_BITS, FREQ_EXP_BITS)
    d = lg.max(axis=-1, keepdims=True) - lg
    near = d < (len(table) - 1) << (F_MLP - LOGIT_GAP_BITS)
    if np.count_nonzero(near) * 4 > near.size:  # flat rows: the dense form is faster (same integers)
        out = freqs_from_logits_dense(lg, precision)
        return out[0] if squeeze else out
    rows, cols = np.nonzero(near)  # row-major: each row's candidates in column order
    e = table[d[rows, cols] >> (F_MLP - LOGIT_GAP_BITS)]
    starts = np.searchsorted(rows, np.arange(m))  # every row has its top token (d = 0) as a candidate
    k = (1 << precision) - v
    inv = (k << 38) // np.add.reduceat(e, starts)
    fv = ((e * inv[rows]) >> 38) + 1
    f = np.ones((m, v), dtype=np.int64)
    f[rows, cols] = fv
    top = np.maximum.reduceat(fv, starts)
    hit = np.flatnonzero(fv == top[rows])
    first = hit[np.searchsorted(rows[hit], np.arange(m))]  # the first column with the largest f per row
    counts = np.diff(np.append(starts, rows.size))
    f[np.arange(m), cols[first]] += (1 << precision) - (v - counts) - np.add.reduceat(fv, starts)
    return f[0] if squeeze else f


def freqs_from_logits_dense(logits: np.ndarray, precision: int = 24) -> np.ndarray:
    """:func:`freqs_from_logits` computed over every token (the reference the sparse form is tested against)."""
    lg = np.atleast_2d(np.asarray(logits, dtype=np.int64))
    v = lg.shape[-1]
    table = exp_gap_table(LOGIT_GAP_BITS, FREQ_EXP_BITS)
    d = lg.max(axis=-1, keepdims=True) - lg
    d >>= F_MLP - LOGIT_GAP_BITS
    np.minimum(d, len(table) - 1, out=d)
    e = table[d]
    inv = (((1 << precision) - v) << 38) // e.sum(axis=-1, keepdims=True)
    e *= inv
    e >>= 38
    e += 1
    e[np.arange(lg.shape[0]), np.argmax(e, axis=-1)] += (1 << precision) - e.sum(axis=-1)
    return e


SIG_FRAC = 8  # sigmoid table step 2**-8
SIG_RANGE = 32  # table covers [-32, 32]; beyond it sigmoid is 0 or 1 to within 2**-46


@functools.lru_cache(maxsize=1)
def sigmoid_table() -> np.ndarray:
    """``T[j] = sigmoid(x_j)`` in Q30 at ``x_j = j / 2**8 - 32`` (j = 0 .. 2**14): for ``x >= 0``
    ``round(2**60 / (2**30 + e))``, for ``x < 0`` ``round(e * 2**30 / (2**30 + e))``, with
    ``e = exp2_neg(round(|x| * LOG2E_Q32 / 2**28))`` (Q30): integers only."""
    x = np.arange(-(SIG_RANGE << SIG_FRAC), (SIG_RANGE << SIG_FRAC) + 1, dtype=np.int64)  # Q8
    e = exp2_neg(rshift_round(np.abs(x) * LOG2E_Q32, 32 + SIG_FRAC - EXP_FRAC), EXP_FRAC, SIG_BITS)
    one = np.int64(1) << SIG_BITS
    out = np.where(x >= 0, div_round(one << SIG_BITS, one + e), div_round(e << SIG_BITS, one + e))
    out.flags.writeable = False
    return out


@dataclass
class Linear:
    """int8 weight rows ``w`` (out, in) with real row scale ``mult * 2**-shift``."""

    w: np.ndarray
    mult: np.ndarray  # per output row
    shift: np.int64  # common to the matrix


@dataclass
class Prefix:
    """The integer state after a fixed prefix (the coder's prompt): per-layer K/V and the next table."""

    tokens: tuple[int, ...]
    keys: list[np.ndarray]  # per layer (n_kv, P, head_dim) int32, after RoPE
    values: list[np.ndarray]
    freqs: np.ndarray  # (vocab,) int64: the table of the first token after the prefix

    @property
    def length(self) -> int:
        return len(self.tokens)


class Batch:
    """Several sequences continuing one :class:`Prefix` in lock step (own K/V caches grow per call)."""

    def __init__(self, model: IntLlama, prefix: Prefix, size: int, capacity: int) -> None:
        c = model.config
        self.prefix = prefix
        self.size = size
        self.done = 0  # tokens consumed by every sequence beyond the prefix
        self.keys = [np.zeros((size, c.n_kv_heads, capacity, c.head_dim), np.int32) for _ in range(c.n_layers)]
        self.values = [np.zeros_like(k) for k in self.keys]

    def select(self, rows: Sequence[int]) -> None:
        """Keep only the sequences ``rows`` (e.g. drop those that finished)."""
        if len(rows) == self.size and list(rows) == list(range(self.size)):
            return
        idx = np.asarray(rows, dtype=np.int64)
        self.keys = [k[idx] for k in self.keys]
        self.values = [v[idx] for v in self.values]
        self.size = len(idx)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more tokens per sequence beyond those consumed (grows by doubling)."""
        cap = self.keys[0].shape[2]
        need = self.done + extra
        if need <= cap:
            return
        new = max(need, 2 * cap)
        pad = ((0, 0), (0, 0), (0, new - cap), (0, 0))
        self.keys = [np.pad(k, pad) for k in self.keys]
        self.values = [np.pad(v, pad) for v in self.values]


class IntLlama:
    """The integer forward pass. ``arrays`` hold the converted weights (see :func:`convert_arrays`)."""

    def __init__(self, config: IntLMConfig, arrays: dict[str, np.ndarray], kernel: Any = None) -> None:
        config.validate()
        self.config = config
        self.kernel = kernel if kernel is not None else NumpyKernel()
        c = config
        try:
            self.embed = self._linear(arrays, "token_embd")
            self.layers = []
            for i in range(c.n_layers):
                p = f"blk.{i}."
                self.layers.append({
                    "attn_norm": np.asarray(arrays[p + "attn_norm"], dtype=np.int64),
                    "ffn_norm": np.asarray(arrays[p + "ffn_norm"], dtype=np.int64),
                    **{n: self._linear(arrays, p + n) for n in
                       ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")},
                })
            self.out_norm = np.asarray(arrays["output_norm"], dtype=np.int64)
            self.head = self._linear(arrays, "output") if "output.w" in arrays else self.embed
        except KeyError as exc:
            raise ModelMismatchError(f"integer language model is missing tensor {exc}") from None
        self._check_shapes()
        self.cos, self.sin = rope_table(c.rope_base, c.head_dim, c.context)

    @staticmethod
    def _linear(arrays: dict[str, np.ndarray], name: str) -> Linear:
        """Rows' scales brought to one shift per matrix: ``S = min(shift) + 4`` over non-zero rows,
        ``mult' = round(mult / 2**(shift - S))`` (so ``mult' < 2**29``)."""
        mult = np.asarray(arrays[name + ".mult"], dtype=np.int64)
        shift = np.asarray(arrays[name + ".shift"], dtype=np.int64)
        live = mult > 0
        if (mult < 0).any() or (mult >= 1 << 25).any() or (live & (shift > 120)).any():
            raise ModelMismatchError(f"integer language model: {name} has scales outside the supported range")
        common = int(shift[live].min()) + 4 if live.any() else F_MLP + 8
        if common < F_MLP + 8:
            raise ModelMismatchError(f"integer language model: {name} has weights too large for the coder")
        mult = np.where(live, rshift_round(mult, np.clip(shift - common, -4, 62)), 0)
        return Linear(arrays[name + ".w"], mult, np.int64(common))

    def _check_shapes(self) -> None:
        c = self.config
        kvd = c.n_kv_heads * c.head_dim
        want = {"attn_q": (c.hidden, c.hidden), "attn_k": (kvd, c.hidden), "attn_v": (kvd, c.hidden),
                "attn_output": (c.hidden, c.hidden), "ffn_gate": (c.ffn, c.hidden), "ffn_up": (c.ffn, c.hidden),
                "ffn_down": (c.hidden, c.ffn)}
        checks = [(self.embed, (c.vocab, c.hidden)), (self.head, (c.vocab, c.hidden))]
        for layer in self.layers:
            checks += [(layer[n], s) for n, s in want.items()]
            for n in ("attn_norm", "ffn_norm"):
                if layer[n].shape != (c.hidden,):
                    raise ModelMismatchError(f"integer language model: {n} has shape {layer[n].shape}")
        for lin, shape in checks:
            if lin.w.shape != shape or lin.w.dtype != np.int8 or lin.mult.shape != shape[:1]:
                raise ModelMismatchError(f"integer language model: a weight has shape {lin.w.shape}, expected {shape}")
        if self.out_norm.shape != (c.hidden,):
            raise ModelMismatchError("integer language model: output_norm has the wrong shape")

    # ---------------------------------------------------------------------------------------- pieces

    def linear(self, lin: Linear, x: np.ndarray, s_in: np.ndarray, frac_out: int) -> np.ndarray:
        """``x`` (M, K) integers ``|x| <= 2**14`` worth ``x * 2**-s_in`` -> ``x @ W.T`` in Q.frac_out:
        ``round(acc * mult / 2**(shift + s_in - frac_out))`` with the matrix's common ``shift``."""
        acc = self.kernel(_digits(x), lin.w)
        acc *= lin.mult[None, :]
        sh = lin.shift + s_in - frac_out
        if sh.size and sh.min() >= 1:
            acc += np.left_shift(np.int64(1), sh - 1)[:, None]
            acc >>= sh[:, None]
            return acc
        return rshift_round(acc, sh[:, None])

    def rmsnorm(self, h: np.ndarray, g: np.ndarray) -> np.ndarray:
        """``h * g / rms(h)`` in Q20 for Q16 rows ``h`` and Q16 weights ``g``.

        ``t = max(0, bit_length(max |h|) - 20)``, ``xs = round(h / 2**t)``, ``ms = round(sum(xs**2) / K)``,
        ``r = max(1, isqrt(ms * 2**16 + eps'))`` (``eps' = round(eps * 2**(32 - 2t + 16))``, so
        ``r ~ 2**8 rms(xs)``), ``b = bit_length(r)``, ``inv = round(2**(30 + b) / r)``,
        ``y = round(h * g / 2**(12 + t))``, ``z = round(y * inv / 2**(6 + b))``. Bounds: ``|g| < 16``
        so ``|y| < 2**28`` and ``|y * inv| < 2**59``.
        """
        k = h.shape[-1]
        t = np.maximum(bit_length(np.abs(h).max(axis=-1)) - RMS_XS_BITS, 0)
        xs = rshift_round(h, t[:, None])
        ms = div_round((xs * xs).sum(axis=-1), k)
        em, ee = self.config.rms_eps
        eps = rshift_round(np.full(t.shape, em, dtype=np.int64), -(ee + 2 * F_H - 2 * t + 2 * RMS_R))
        r = np.maximum(isqrt((ms << (2 * RMS_R)) + eps), 1)
        b = bit_length(r)
        inv = div_round(np.left_shift(np.int64(1), 30 + b), r)
        y = rshift_round(h * g[None, :], (RMS_Y + t)[:, None])
        y *= inv[:, None]
        return saturate(rshift_round(y, (46 - RMS_Y - RMS_R - F_Z + b)[:, None]), Z_BOUND)

    def rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Rotate adjacent pairs (GGUF layout) of (..., T, heads, head_dim) Q15 rows at positions ``pos``."""
        c = self.cos[pos][:, None, :]
        s = self.sin[pos][:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = rshift_round(x0 * c - x1 * s, F_ROPE)
        out[..., 1::2] = rshift_round(x0 * s + x1 * c, F_ROPE)
        return saturate(out, QKV_BOUND)

    def silu_mul(self, g: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``silu(g) * u`` for Q16 ``g``, ``u`` (|g|, |u| < 2**26): sigmoid by linear interpolation in
        :func:`sigmoid_table`: ``c = clip(g, -2**21, 2**21 - 1)``, ``i = floor(c / 2**8) + 2**13``,
        ``f = c mod 2**8``, ``sig = T[i] + round((T[i+1] - T[i]) * f / 2**8)``; ``silu = round(g * sig / 2**30)``;
        result ``round(silu * u / 2**16)`` (< 2**36)."""
        table = sigmoid_table()
        c = np.clip(g, -(SIG_RANGE << F_MLP), (SIG_RANGE << F_MLP) - 1)
        idx = c >> (F_MLP - SIG_FRAC)
        idx += SIG_RANGE << SIG_FRAC
        c &= (1 << (F_MLP - SIG_FRAC)) - 1
        sig = table[idx]
        step = table[idx + 1]
        step -= sig
        step *= c
        step += 1 << (F_MLP - SIG_FRAC - 1)
        step >>= F_MLP - SIG_FRAC
        sig += step
        sig *= g
        sig += 1 << (SIG_BITS - 1)
        sig >>= SIG_BITS
        sig *= u
        sig += 1 << (F_MLP - 1)
        sig >>= F_MLP
        return sig

    def attention(self, q: np.ndarray, k_parts: list[np.ndarray], v_parts: list[np.ndarray],
                  masks: list[np.ndarray | None]) -> np.ndarray:
        """Softmax attention in integers. ``q``: (G, R, Tq, D) Q15 with G key/value heads and R query heads
        per group flattened into rows; each ``k_parts[i]`` (G or broadcast, S_i, D) with its mask (Tq, S_i)
        of allowed positions or None. Scores ``s = round(q.k / 2**21)`` (units of 2**-12 nats: Q30 dot
        products over sqrt(64) = 8); weights ``p = T[min(top - s, len(T) - 1)]`` with
        ``T = exp_gap_table(12, 18)`` (masked positions get 0); output ``round(sum(p v) / sum(p))``.
        Products are exact in float64: |q|,|k|,|v| < 2**21, p <= 2**18, at most 2**13 positions, so every
        sum stays below 2**53."""
        table = exp_gap_table(ATT_GAP_BITS, ATT_P_BITS)
        last = len(table) - 1
        qf = q.astype(np.float64)
        scores = []
        for kp, mask in zip(k_parts, masks, strict=True):
            s = rshift_round((qf @ np.swapaxes(kp, -1, -2).astype(np.float64)).astype(np.int64), ATT_SCORE_SHIFT)
            scores.append(s if mask is None else np.where(mask, s, np.iinfo(np.int64).min // 4))
        top = np.max([s.max(axis=-1) for s in scores], axis=0)[..., None]
        out = None
        den = None
        for s, vp in zip(scores, v_parts, strict=True):
            d = top - s
            np.minimum(d, last, out=d)
            p = table[d]
            part = (p.astype(np.float64) @ vp.astype(np.float64)).astype(np.int64)
            out = part if out is None else out + part
            psum = p.sum(axis=-1, keepdims=True)
            den = psum if den is None else den + psum
        return div_round(out, den)

    # ---------------------------------------------------------------------------------------- passes

    def _attention_scale_ok(self) -> None:
        if self.config.head_dim != 64:
            raise ModelMismatchError("the integer coder's attention scale is fixed to head_dim 64 (1/8)")

    def forward(self, tokens: np.ndarray, start: int, prefix: Prefix | None, batch: Batch | None,
                rows: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """Run ``tokens`` (B, T) at positions ``start .. start+T-1``.

        Attends to ``prefix`` (shared by all rows) and to ``batch``'s own cache (whose first ``batch.done``
        entries are filled; this call writes the next T). Returns the next-token frequency tables (int64,
        each summing to ``2**24``) of the rows of the flattened (B*T) token grid listed in ``rows`` (all rows
        if None), and the new K and V per layer (B, n_kv, T, D). Rows are independent except through
        attention, which is exact: any batch shape, any split into calls gives the same integers.
        """
        self._attention_scale_ok()
        c = self.config
        b, t = tokens.shape
        if start + t > c.context:
            raise InvalidInputError(f"sequence of {start + t} tokens exceeds the model's context ({c.context})")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= c.vocab):
            raise InvalidInputError("token id outside the vocabulary")
        g, r, d = c.n_kv_heads, c.n_heads // c.n_kv_heads, c.head_dim
        flat = tokens.reshape(-1)
        e = self.embed
        h = rshift_round(e.w[flat].astype(np.int64) * e.mult[flat, None], e.shift - F_H)
        pos = np.arange(start, start + t)
        done = batch.done if batch is not None else 0
        own_mask = np.tile(np.arange(done + t)[None, :] <= (done + np.arange(t))[:, None], (r, 1))
        new_k, new_v = [], []
        for li, layer in enumerate(self.layers):
            x, s = quantize_rows(self.rmsnorm(h, layer["attn_norm"]), F_Z)
            q = saturate(self.linear(layer["attn_q"], x, s, F_QKV), QKV_BOUND).reshape(b, t, c.n_heads, d)
            k = saturate(self.linear(layer["attn_k"], x, s, F_QKV), QKV_BOUND).reshape(b, t, g, d)
            v = saturate(self.linear(layer["attn_v"], x, s, F_QKV), QKV_BOUND).reshape(b, t, g, d)
            q, k = self.rope(q, pos), self.rope(k, pos)
            k = np.ascontiguousarray(k.transpose(0, 2, 1, 3))  # (B, G, T, D)
            v = np.ascontiguousarray(v.transpose(0, 2, 1, 3))
            new_k.append(k)
            new_v.append(v)
            # queries grouped by their key/value head: (B, G, R*T, D), row = r * T + i
            qg = q.reshape(b, t, g, r, d).transpose(0, 2, 3, 1, 4).reshape(b, g, r * t, d)
            k_parts, v_parts, masks = [], [], []
            if prefix is not None and prefix.length:
                k_parts.append(prefix.keys[li][None])
                v_parts.append(prefix.values[li][None])
                masks.append(None)
            if batch is not None:
                batch.keys[li][:, :, done:done + t] = k
                batch.values[li][:, :, done:done + t] = v
                k_parts.append(batch.keys[li][:, :, : done + t])
                v_parts.append(batch.values[li][:, :, : done + t])
            else:
                k_parts.append(k)
                v_parts.append(v)
            masks.append(own_mask)
            o = self.attention(qg, k_parts, v_parts, masks)  # (B, G, R*T, D)
            o = o.reshape(b, g, r, t, d).transpose(0, 3, 1, 2, 4).reshape(b * t, c.hidden)
            for r0 in range(0, b * t, ROW_BLOCK):  # rows are independent: blocks keep arrays in cache
                hb = h[r0:r0 + ROW_BLOCK]
                x, s = quantize_rows(o[r0:r0 + ROW_BLOCK], F_QKV)
                hb = saturate(hb + self.linear(layer["attn_output"], x, s, F_MLP), H_BOUND)
                x, s = quantize_rows(self.rmsnorm(hb, layer["ffn_norm"]), F_Z)
                gate = saturate(self.linear(layer["ffn_gate"], x, s, F_MLP), MLP_BOUND)
                up = saturate(self.linear(layer["ffn_up"], x, s, F_MLP), MLP_BOUND)
                x, s = quantize_rows(self.silu_mul(gate, up), F_MLP)  # |silu * up| < 2**36
                h[r0:r0 + ROW_BLOCK] = saturate(hb + self.linear(layer["ffn_down"], x, s, F_MLP), H_BOUND)
        if batch is not None:
            batch.done += t
        sel = np.arange(b * t) if rows is None else np.asarray(rows, dtype=np.int64)
        return self.freqs(h[sel]), new_k, new_v

    def freqs(self, h: np.ndarray) -> np.ndarray:
        """Frequency tables (M, vocab) of final hidden rows: output norm, head, :func:`freqs_from_logits`
        (in chunks of rows so the vocab-wide integer arrays stay small)."""
        out = np.empty((h.shape[0], self.config.vocab), dtype=np.int64)
        if not h.shape[0]:
            return out
        x, s = quantize_rows(self.rmsnorm(h, self.out_norm), F_Z)
        for r0 in range(0, h.shape[0], HEAD_ROWS):
            r1 = min(h.shape[0], r0 + HEAD_ROWS)
            out[r0:r1] = freqs_from_logits(self.linear(self.head, x[r0:r1], s[r0:r1], F_MLP))
        return out

    def prefix(self, tokens: Sequence[int]) -> Prefix:
        """Run a prefix once (one pass) and keep its K/V and the frequencies of the token after it."""
        ids = np.asarray([list(tokens)], dtype=np.int64)
        if ids.shape[1] == 0:
            raise InvalidInputError("the integer language model needs at least one prefix token")
        f, ks, vs = self.forward(ids, 0, None, None, rows=np.array([ids.shape[1] - 1]))
        return Prefix(tuple(int(i) for i in tokens), [k[0].astype(np.int32) for k in ks],
                      [v[0].astype(np.int32) for v in vs], f[0])

    def extend(self, prefix: Prefix, tokens: Sequence[int]) -> Prefix:
        """``prefix`` continued by ``tokens`` through this model: e.g. an adapted model reading the last
        prompt token after a state its base model computed. The same integers as one pass would give when
        both are the same model."""
        ids = np.asarray([list(tokens)], dtype=np.int64)
        if ids.shape[1] == 0:
            return prefix
        f, ks, vs = self.forward(ids, prefix.length, prefix, None, rows=np.array([ids.shape[1] - 1]))
        return Prefix(prefix.tokens + tuple(int(i) for i in tokens),
                      [np.concatenate([pk, k[0].astype(np.int32)], axis=1) for pk, k in zip(prefix.keys, ks, strict=True)],
                      [np.concatenate([pv, v[0].astype(np.int32)], axis=1) for pv, v in zip(prefix.values, vs, strict=True)],
                      f[0])

    def new_batch(self, prefix: Prefix, size: int, capacity: int) -> Batch:
        """A batch of ``size`` sequences that may each grow to ``capacity`` tokens after ``prefix``."""
        if prefix.length + capacity > self.config.context:
            raise InvalidInputError(
                f"{capacity} tokens after a {prefix.length}-token prompt exceed the context ({self.config.context})")
        return Batch(self, prefix, size, capacity)

    def step(self, batch: Batch, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per sequence of ``batch``; returns their next frequency tables (B, vocab)."""
        toks = np.asarray(tokens, dtype=np.int64).reshape(-1, 1)
        f, _, _ = self.forward(toks, batch.prefix.length + batch.done, batch.prefix, batch)
        return f

    def score(self, prefix: Prefix, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Teacher-forced tables: for each sequence ``s``, the frequency tables that code ``s[0..n-1]``
        (row 0 is the prefix's; row i comes after ``s[:i]``). One pass for the whole batch."""
        n = max((len(s) for s in seqs), default=0)
        if n <= 1:
            return [np.repeat(prefix.freqs[None], len(s), axis=0) for s in seqs]
        t = n - 1
        grid = np.zeros((len(seqs), t), dtype=np.int64)
        for i, s in enumerate(seqs):
            if len(s) > 1:
                grid[i, : len(s) - 1] = s[:-1]
        batch = self.new_batch(prefix, len(seqs), t)
        rows = np.concatenate([i * t + np.arange(max(len(s) - 1, 0)) for i, s in enumerate(seqs)]).astype(np.int64)
        f, _, _ = self.forward(grid, prefix.length, prefix, batch, rows=rows)
        out, pos = [], 0
        for s in seqs:
            m = max(len(s) - 1, 0)
            out.append(np.concatenate([prefix.freqs[None], f[pos:pos + m]]) if len(s) else f[:0])
            pos += m
        return out
