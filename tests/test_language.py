"""The float language model wrapper (caption codec 1): incremental decoding through the KV cache under the
argument name the installed transformers uses, without deprecation warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from semzip.models.language import LanguageModel, _cache_argument
from semzip.models.tiny import tiny_llama


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(vocab_size=40, seed=0)


def test_incremental_decoding_warns_nothing_and_matches_a_full_pass(tiny):
    lm = LanguageModel(tiny, None, "tiny", "0" * 16, "test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = lm.start([1, 2])
        for t in (5, 7, 3):
            session.step(t)
        again = lm.start([1, 2])  # from the prefix cache: its KV cache is copied, not shared
        again.step(5)
    assert not [str(w.message) for w in caught]  # was: a FutureWarning per call (`past_key_values` is deprecated)
    with torch.no_grad():
        full = tiny(input_ids=torch.tensor([[1, 2, 5, 7, 3]])).logits[0].numpy()
    np.testing.assert_allclose(session.logits, full[-1], atol=1e-5)
    np.testing.assert_allclose(again.logits, full[2], atol=1e-5)


def test_the_cache_argument_follows_the_model_signature(tiny):
    class Older:  # transformers before the rename: forward(..., past_key_values=None, use_cache=None)
        def forward(self, input_ids=None, past_key_values=None, use_cache=None):
            return None

    assert _cache_argument(Older()) == "past_key_values"
    import inspect

    want = "cache" if "cache" in inspect.signature(tiny.forward).parameters else "past_key_values"
    assert _cache_argument(tiny) == want
