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


# ----------------------------------------------------------------------------------------------------------
# captioners and refiners (image-text codec)
#
# Captioners: ``sidecar`` | ``sidecar:<captions.csv or folder of .txt>`` | ``hf:<folder>`` | ``chat:<folder>``
# Refiners:   ``identity`` | ``sd-img2img:<folder>`` | ``controlnet-tile:<sd folder>,<controlnet folder>``

_CAPTIONERS: dict[str, tuple[Loader, str]] = {}
_REFINERS: dict[str, tuple[Loader, str]] = {}


def register_captioner(prefix: str, loader: Loader, usage: str) -> None:
    """Register ``loader(arg, **kw)`` for specs ``prefix`` or ``prefix:arg``."""
    _CAPTIONERS[prefix] = (loader, usage)


def register_refiner(prefix: str, loader: Loader, usage: str) -> None:
    """Register ``loader(arg, **kw)`` for specs ``prefix`` or ``prefix:arg``."""
    _REFINERS[prefix] = (loader, usage)


def known_captioners() -> list[str]:
    """Usage patterns of the registered captioner specs."""
    return [usage for _, usage in _CAPTIONERS.values()]


def known_refiners() -> list[str]:
    """Usage patterns of the registered refiner specs."""
    return [usage for _, usage in _REFINERS.values()]


def load_captioner(spec: str | None = "sidecar", **kw: Any) -> Any:
    """Build the ``Captioner`` named by ``spec`` (e.g. ``"sidecar:captions.csv"``, ``"hf:/models/blip"``).

    ``None`` or ``"sidecar"``: captions from ``<image stem>.txt`` files next to the images (the offline default).
    """
    if spec is None:
        spec = "sidecar"
    loader, arg = _split(spec, _CAPTIONERS, "captioner")
    return loader(arg, **kw)


def load_refiner(spec: str | None = "identity", **kw: Any) -> Any:
    """Build the ``Refiner`` named by ``spec`` (e.g. ``"identity"``, ``"sd-img2img:/models/sd15"``)."""
    if spec is None:
        spec = "identity"
    loader, arg = _split(spec, _REFINERS, "refiner")
    return loader(arg, **kw)


def _sidecar_captioner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.captioners import SidecarCaptions

    return SidecarCaptions(arg or None, **kw)


def _hf_captioner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.captioners import HFCaptioner

    return HFCaptioner(_need(arg, "hf:<captioner folder or hub id>"), **kw)


def _chat_captioner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.captioners import ChatCaptioner

    return ChatCaptioner(_need(arg, "chat:<multimodal chat model folder or hub id>"), **kw)


def _identity_refiner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.refiners import IdentityRefiner

    if arg:
        raise InvalidInputError(f"the identity refiner takes no argument, got {arg!r}")
    return IdentityRefiner(**kw)


def _sd_img2img(arg: str | None, **kw: Any) -> Any:
    from semzip.models.refiners import SDImg2ImgRefiner

    return SDImg2ImgRefiner(_need(arg, "sd-img2img:<pipeline folder>"), **kw)


def _controlnet_tile(arg: str | None, **kw: Any) -> Any:
    from semzip.models.refiners import ControlNetTileRefiner

    usage = "controlnet-tile:<sd pipeline folder>,<controlnet folder>"
    sd, sep, cn = _need(arg, usage).rpartition(",")
    if not sep or not sd or not cn:
        raise InvalidInputError(f"missing argument: use {usage}")
    return ControlNetTileRefiner(sd, cn, **kw)


register_captioner(
    "sidecar",
    _sidecar_captioner,
    "sidecar[:<captions.csv or folder>] (user captions: CSV image,caption or <stem>.txt files; offline default)",
)
register_captioner("hf", _hf_captioner, "hf:<folder> (transformers image-to-text: BLIP, BLIP-2, GIT)")
register_captioner(
    "chat", _chat_captioner, "chat:<folder> (multimodal chat model: Qwen2-VL, LLaVA, SmolVLM, Florence-2)"
)
register_refiner("identity", _identity_refiner, "identity (no diffusion decoder: the LIC image is the output)")
register_refiner("sd-img2img", _sd_img2img, "sd-img2img:<folder> (Stable Diffusion img2img, caption as prompt)")
register_refiner(
    "controlnet-tile",
    _controlnet_tile,
    "controlnet-tile:<sd folder>,<controlnet folder> (SD img2img + tile ControlNet on the LIC image)",
)
