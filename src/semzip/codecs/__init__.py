"""Codecs: pure logic over models, the entropy layer and the container. A small registry maps names to them."""

from __future__ import annotations

from semzip.codecs.base import Codec, Encoded, codec_names, get_codec, register_codec

__all__ = ["Codec", "Encoded", "codec_names", "get_codec", "register_codec"]
