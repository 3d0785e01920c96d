"""One cache root for every module: $SEMZIP_CACHE (with ~ expanded), else ~/.cache/semzip."""

from __future__ import annotations

from pathlib import Path

from semzip import cache
from semzip.data.folders import EmbeddingCache
from semzip.models import language


def test_every_module_uses_the_one_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMZIP_CACHE", "~/semzip-cache-test")
    want = Path.home() / "semzip-cache-test"
    assert cache.cache_root() == language.cache_root() == want
    assert EmbeddingCache("enc", tmp_path, enabled=False).path.parent == want / "embeddings"
    for unset in ("", "  "):  # an empty variable means the default, not the working directory
        monkeypatch.setenv("SEMZIP_CACHE", unset)
        assert cache.cache_root() == Path.home() / ".cache" / "semzip"
    monkeypatch.delenv("SEMZIP_CACHE")
    assert cache.cache_root() == Path.home() / ".cache" / "semzip"
