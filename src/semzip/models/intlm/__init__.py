"""Integer-exact inference of a Llama-family causal LM: the caption coder's model (text codec 2).

Why: a range decoder must see the very tables the encoder used. A float network does not give them on
another machine (AVX2 vs AVX-512 kernels, thread counts, ARM, GPUs reorder sums), so codec-1 caption files
decode only where they were written. Here every quantity on the path from token ids to frequency tables
is an integer computed exactly, so a batch, a thread count or a CPU cannot change one bit. The arithmetic
is specified in docs/text-coding.md ("The integer model") precisely enough to re-implement; the constants
below and :mod:`semzip.entropy.fixedpoint` are part of that specification (``ARITH_VERSION``).

Modules: ``arith`` (formats, exact tables, matrix-product kernels: numpy float32 BLAS on bounded
integers or torch ``_int_mm``; the forward pass :class:`IntLlama`), ``convert`` (GGUF blocks or safetensors
floats -> exact integers -> int8 rows with fixed-point scales; token tables), ``loader`` (the on-disk cache
of converted models). numpy only at import; ``gguf``, ``safetensors``, ``tokenizers`` and torch are
imported where needed.
"""

from __future__ import annotations

from semzip.models.intlm.arith import (
    ARITH_VERSION,
    IntLlama,
    IntLMConfig,
    Prefix,
    freqs_from_logits,
    make_kernel,
    rope_table,
    sigmoid_table,
)
from semzip.models.intlm.convert import TokenTable, build_tokenizer, convert_gguf, convert_safetensors
from semzip.models.intlm.loader import (
    IntLanguageModel,
    load_converted,
    load_int_language_model,
    save_converted,
)

__all__ = [
    "ARITH_VERSION",
    "IntLMConfig",
    "IntLanguageModel",
    "IntLlama",
    "Prefix",
    "TokenTable",
    "build_tokenizer",
    "convert_gguf",
    "convert_safetensors",
    "freqs_from_logits",
    "load_converted",
    "load_int_language_model",
    "make_kernel",
    "rope_table",
    "save_converted",
    "sigmoid_table",
]
