"""Names -> model loaders. Specs are strings so they can live in archive headers and on the command line.

Encoders:   ``thumbnail`` | ``thumbnail:<grid>`` | ``open_clip:<model>/<tag-or-checkpoint>`` | ``hf:<path-or-id>``
Generators: ``thumbnail`` | ``thumbnail:<grid>`` | ``stable-unclip:<path>`` | ``kandinsky22:<decoder path>``

Loaders import their heavy dependencies only when called. Keyword arguments go to the backend's constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from semzip.errors import InvalidInputError

Loader = Callable[..., Any]

_ENCODERS: dict[str, tuple[Loader, str]] = {}
_GENERATORS: dict[str, tuple[Loader, str]] = {}


def register_encoder(prefix: str, loader: Loader, usage: str) -> None:
    """Register ``loader(arg, **kw)`` for specs ``prefix`` or ``prefix:arg``."""
    _ENCODERS[prefix] = (loader, usage)


def register_generator(prefix: str, loader: Loader, usage: str) -> None:
    """Register ``loader(arg, **kw)`` for specs ``prefix`` or ``prefix:arg``."""
    _GENERATORS[prefix] = (loader, usage)


def known_encoders() -> list[str]:
    """Usage patterns of the registered encoder specs."""
    return [usage for _, usage in _ENCODERS.values()]


def known_generators() -> list[str]:
    """Usage patterns of the registered generator specs."""
    return [usage for _, usage in _GENERATORS.values()]


def _split(spec: str, table: dict[str, tuple[Loader, str]], kind: str) -> tuple[Loader, str | None]:
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"{kind} spec must be a non-empty string")
    prefix, sep, arg = spec.strip().partition(":")
    if prefix not in table:
        usages = "; ".join(u for _, u in table.values())
        raise InvalidInputError(f"unknown {kind} {spec!r}; known: {usages}")
    return table[prefix][0], (arg if sep else None)


def load_encoder(spec: str = "thumbnail", **kw: Any) -> Any:
    """Build the ``ImageEncoder`` named by ``spec`` (e.g. ``"thumbnail"``, ``"hf:/models/clip-vit-b32"``)."""
    loader, arg = _split(spec, _ENCODERS, "encoder")
    return loader(arg, **kw)


def load_generator(spec: str = "thumbnail", **kw: Any) -> Any:
    """Build the ``ImageGenerator`` named by ``spec`` (e.g. ``"thumbnail"``, ``"kandinsky22:/models/k22"``)."""
    loader, arg = _split(spec, _GENERATORS, "generator")
    return loader(arg, **kw)


def _grid(arg: str | None) -> int:
    if arg is None or arg == "":
        from semzip.models.thumbnail import DEFAULT_GRID

        return DEFAULT_GRID
    try:
        return int(arg)
    except ValueError:
        raise InvalidInputError(f"thumbnail grid must be an integer, got {arg!r}") from None


def _need(arg: str | None, usage: str) -> str:
    if not arg:
        raise InvalidInputError(f"missing argument: use {usage}")
    return arg


def _thumbnail_encoder(arg: str | None, **kw: Any) -> Any:
    from semzip.models.thumbnail import ThumbnailEncoder

    return ThumbnailEncoder(grid=_grid(arg), **kw)


def _open_clip_encoder(arg: str | None, **kw: Any) -> Any:
    from semzip.models.encoders import OPENCLIP_DEFAULT_MODEL, OPENCLIP_DEFAULT_PRETRAINED, OpenClipEncoder

    if not arg:
        return OpenClipEncoder(OPENCLIP_DEFAULT_MODEL, OPENCLIP_DEFAULT_PRETRAINED, **kw)
    model, sep, pretrained = arg.partition("/")
    return OpenClipEncoder(model, pretrained if sep and pretrained else OPENCLIP_DEFAULT_PRETRAINED, **kw)


def _hf_encoder(arg: str | None, **kw: Any) -> Any:
    from semzip.models.encoders import HFClipEncoder

    return HFClipEncoder(_need(arg, "hf:<local folder or hub id>"), **kw)


def _thumbnail_generator(arg: str | None, **kw: Any) -> Any:
    from semzip.models.generators import ThumbnailGenerator

    return ThumbnailGenerator(grid=_grid(arg), **kw)


def _stable_unclip(arg: str | None, **kw: Any) -> Any:
    from semzip.models.generators import StableUnCLIPGenerator

    return StableUnCLIPGenerator(_need(arg, "stable-unclip:<pipeline folder>"), **kw)


def _kandinsky22(arg: str | None, **kw: Any) -> Any:
    from semzip.models.generators import KandinskyV22Generator

    return KandinskyV22Generator(_need(arg, "kandinsky22:<decoder pipeline folder>"), **kw)


register_encoder(
    "thumbnail", _thumbnail_encoder, "thumbnail[:<grid>] (offline colour-layout thumbnail, default)"
)
register_encoder(
    "open_clip",
    _open_clip_encoder,
    "open_clip:<model>/<pretrained tag or checkpoint file> (e.g. open_clip:ViT-H-14/laion2b_s32b_b79k)",
)
register_encoder("hf", _hf_encoder, "hf:<folder or hub id> (transformers CLIPModel)")
register_generator(
    "thumbnail", _thumbnail_generator, "thumbnail[:<grid>] (renders thumbnail embeddings, default)"
)
register_generator(
    "stable-unclip", _stable_unclip, "stable-unclip:<folder> (SD-2.1-unCLIP, OpenCLIP ViT-H-14 space)"
)
register_generator(
    "kandinsky22", _kandinsky22, "kandinsky22:<folder> (Kandinsky 2.2 decoder, ViT-bigG-14 space)"
)
