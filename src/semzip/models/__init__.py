"""Model backends behind small interfaces: encoders (images -> embeddings) and generators (embeddings -> images)
here; captioners, refiners, learned image codecs (``lic``) and caption language models (``language``,
``intlm``) in their modules. Every role is a :class:`~semzip.models.registry.ModelRegistry` of spec strings;
``semzip.models.tiny`` builds tiny random-weight models of the real architectures to try them offline.

Heavy libraries (torch, transformers, diffusers, open_clip) are imported inside the backends only.
"""

from __future__ import annotations

from semzip.models.encoders import HFClipEncoder, ImageEncoder, OpenClipEncoder
from semzip.models.generators import (
    ImageGenerator,
    KandinskyV22Generator,
    StableUnCLIPGenerator,
    ThumbnailGenerator,
)
from semzip.models.registry import known_encoders, known_generators, load_encoder, load_generator
from semzip.models.thumbnail import ThumbnailDecoder, ThumbnailEncoder

__all__ = [
    "HFClipEncoder",
    "ImageEncoder",
    "ImageGenerator",
    "KandinskyV22Generator",
    "OpenClipEncoder",
    "StableUnCLIPGenerator",
    "ThumbnailDecoder",
    "ThumbnailEncoder",
    "ThumbnailGenerator",
    "known_encoders",
    "known_generators",
    "load_encoder",
    "load_generator",
]
