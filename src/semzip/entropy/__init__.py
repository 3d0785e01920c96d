"""Entropy coding for semzip on top of ``constriction``: integer tables, one FIFO range-coded stream.

Every probability the decoder uses is an integer frequency table (see :mod:`semzip.entropy.models`
for the deterministic integerisation and how tables reach constriction exactly); parametric
Gaussian/Laplace tables carry a fingerprint that archives store so a mismatch fails loudly.
numpy + constriction only (no torch).
"""

from semzip.entropy.coder import Decoder, Encoder, decode_symbols, encode_symbols
from semzip.entropy.models import (
    CODER_PRECISION,
    MAX_ALPHABET,
    MAX_PRECISION,
    CategoricalModel,
    QuantizedGaussianTable,
    QuantizedLaplaceTable,
    QuantizedTable,
    integerize,
)

__all__ = [
    "CODER_PRECISION",
    "MAX_ALPHABET",
    "MAX_PRECISION",
    "CategoricalModel",
    "Decoder",
    "Encoder",
    "QuantizedGaussianTable",
    "QuantizedLaplaceTable",
    "QuantizedTable",
    "decode_symbols",
    "encode_symbols",
    "integerize",
]
