"""Names -> model loaders. Specs are strings so they can live in archive headers and on the command line.

Encoders:   ``thumbnail`` | ``thumbnail:<grid>`` | ``open_clip:<model>/<tag-or-checkpoint>`` | ``hf:<path-or-id>``
Generators: ``thumbnail`` | ``thumbnail:<grid>`` | ``stable-unclip:<path>`` | ``kandinsky22:<decoder path>``

Loaders import their heavy dependencies only when called. Keyword arguments go to the backend's constructor.

Where weights live is the user's to say when loading, not the archive's: archives record a model's portable
name (a folder's or file's *name*, a hub id, a tag) and its fingerprint. A name that is not a path here is
looked up in the model folders: ``--models DIR`` on the command line (:func:`add_model_dirs`), then
``$SEMZIP_MODEL_PATH`` (folders separated by ``os.pathsep``); the fingerprint check then refuses a wrong file.
Downloads are off unless asked (``--allow-download``, ``$SEMZIP_ALLOW_DOWNLOAD=1`` or ``allow_download=True``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from semzip.errors import InvalidInputError, MissingModelError

MODEL_PATH_ENV = "SEMZIP_MODEL_PATH"
ALLOW_DOWNLOAD_ENV = "SEMZIP_ALLOW_DOWNLOAD"
_MODEL_DIRS: list[Path] = []
_ALLOW_DOWNLOAD: list[bool] = []


def add_model_dirs(dirs: list[str | os.PathLike] | tuple[str | os.PathLike, ...]) -> None:
    """Folders searched first for model folders/files named without a usable path (``--models``)."""
    for d in dirs:
        p = Path(d).expanduser()
        if not p.is_dir():
            raise InvalidInputError(f"model folder not found: {d}")
        if p not in _MODEL_DIRS:
            _MODEL_DIRS.append(p)


def set_model_dirs(dirs: list[str | os.PathLike] | tuple[str | os.PathLike, ...]) -> None:
    """Replace the ``--models`` folders (one command's worth; ``$SEMZIP_MODEL_PATH`` still follows)."""
    _MODEL_DIRS.clear()
    add_model_dirs(dirs)


def model_dirs() -> list[Path]:
    """The model search path: ``--models`` folders, then ``$SEMZIP_MODEL_PATH``."""
    env = [Path(d).expanduser() for d in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if d.strip()]
    return _MODEL_DIRS + [d for d in env if d not in _MODEL_DIRS]


def allow_downloads(allowed: bool | None = True) -> None:
    """Let loaders download missing weights from their hub (the CLI's ``--allow-download``); ``None`` hands
    the choice back to ``$SEMZIP_ALLOW_DOWNLOAD``."""
    _ALLOW_DOWNLOAD[:] = [] if allowed is None else [bool(allowed)]


def downloads_allowed() -> bool:
    """Whether loaders may download: :func:`allow_downloads`, else ``$SEMZIP_ALLOW_DOWNLOAD`` (1/true/yes)."""
    if _ALLOW_DOWNLOAD:
        return _ALLOW_DOWNLOAD[0]
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def locate(arg: str) -> str:
    """``arg`` itself if it exists here, else the first model folder holding it (as given, then by its name);
    unchanged when found nowhere (a hub id or tag, or a missing file the loader reports)."""
    p = Path(arg).expanduser()
    if p.exists():
        return arg
    for d in model_dirs():
        for cand in (d / arg, d / p.name):
            if p.name and cand.exists():
                return str(cand)
    return arg


def portable_name(path: str | os.PathLike) -> str:
    """What an archive records for a local model file or folder: its name only (the search path finds it)."""
    return Path(path).expanduser().name or str(path)


def portable_spec(spec: str | None) -> str | None:
    """``spec`` as an archive records it: local paths in it reduced to their names, so that decoding finds
    them through the search path on any machine (``"sd-img2img:/models/sd15"`` -> ``"sd-img2img:sd15"``,
    ``"compressai:mbt2018:/ck/m.pth"`` -> ``"compressai:mbt2018:m.pth"``, a language model's
    ``"/models/SmolLM2.gguf"`` -> ``"SmolLM2.gguf"``); names, tags and hub ids unchanged."""

    def name(a: str) -> str:
        return portable_name(a) if Path(a).expanduser().exists() or _looks_local(a) else a

    if not spec:
        return spec
    if ":" not in spec or Path(spec).expanduser().exists():  # a bare path (language models), a name or an id
        return name(spec)
    prefix, _, arg = spec.partition(":")

    if prefix == "open_clip":
        model, sep, pretrained = arg.partition("/")
        tag, at, path = pretrained.partition("@")
        if at and tag and "/" not in tag:
            return f"open_clip:{model}/{tag}@{name(path)}"
        return f"open_clip:{model}{sep}{name(pretrained) if sep else ''}"
    if prefix == "compressai":
        arch, sep, q = arg.partition(":")
        return spec if not sep or q.isdigit() else f"compressai:{arch}:{name(q)}"
    if prefix == "controlnet-tile":
        sd, sep, cn = arg.rpartition(",")
        return f"controlnet-tile:{name(sd)},{name(cn)}" if sep else spec
    return f"{prefix}:{name(arg)}" if arg else spec


def _looks_local(a: str) -> bool:
    """A path typed as one (absolute, home, explicitly relative), as opposed to a hub id ``owner/name``."""
    return a.startswith(("/", "~", "./", "../")) or (os.sep != "/" and os.sep in a)


def _with_defaults(loader: Loader, kw: dict[str, Any]) -> dict[str, Any]:
    """``allow_download`` from the global switch for loaders whose backend takes it."""
    if "allow_download" not in kw and downloads_allowed():
        try:
            params = inspect.signature(loader).parameters
        except (TypeError, ValueError):
            params = {}
        if "allow_download" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kw = {**kw, "allow_download": True}
    return kw


def with_searched_folders(exc: MissingModelError) -> MissingModelError:
    """``exc`` with the model folders searched and how to name one appended."""
    dirs = model_dirs()
    where = ", ".join(str(d) for d in dirs) if dirs else "none given"
    return MissingModelError(
        f"{exc} [model folders searched: {where}; name one with --models DIR or ${MODEL_PATH_ENV}]"
    )

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


def _load(loader: Loader, arg: str | None, kw: dict[str, Any]) -> Any:
    try:
        return loader(arg, **_with_defaults(loader, kw))
    except MissingModelError as exc:
        raise with_searched_folders(exc) from None


def load_encoder(spec: str = "thumbnail", **kw: Any) -> Any:
    """Build the ``ImageEncoder`` named by ``spec`` (e.g. ``"thumbnail"``, ``"hf:/models/clip-vit-b32"``)."""
    loader, arg = _split(spec, _ENCODERS, "encoder")
    return _load(loader, arg, kw)


def load_generator(spec: str = "thumbnail", **kw: Any) -> Any:
    """Build the ``ImageGenerator`` named by ``spec`` (e.g. ``"thumbnail"``, ``"kandinsky22:/models/k22"``)."""
    loader, arg = _split(spec, _GENERATORS, "generator")
    return _load(loader, arg, kw)


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
    return OpenClipEncoder(model, _locate_pretrained(pretrained) if sep and pretrained else OPENCLIP_DEFAULT_PRETRAINED,
                           **kw)


_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".tar", ".ckpt")


def _locate_pretrained(pretrained: str) -> str:
    """An OpenCLIP ``pretrained``: a tag stays a tag; a file (or the file of ``<tag>@<file>``) is located."""
    from semzip.models.encoders import split_weights_tag

    path, tag = split_weights_tag(pretrained)
    if tag is None and not (os.sep in path or "/" in path or path.lower().endswith(_WEIGHT_SUFFIXES)):
        return pretrained
    found = locate(path)
    return found if tag is None else f"{tag}@{found}"


def _hf_encoder(arg: str | None, **kw: Any) -> Any:
    from semzip.models.encoders import HFClipEncoder

    return HFClipEncoder(locate(_need(arg, "hf:<local folder or hub id>")), **kw)


def _thumbnail_generator(arg: str | None, **kw: Any) -> Any:
    from semzip.models.generators import ThumbnailGenerator

    return ThumbnailGenerator(grid=_grid(arg), **kw)


def _stable_unclip(arg: str | None, **kw: Any) -> Any:
    from semzip.models.generators import StableUnCLIPGenerator

    return StableUnCLIPGenerator(locate(_need(arg, "stable-unclip:<pipeline folder>")), **kw)


def _kandinsky22(arg: str | None, **kw: Any) -> Any:
    from semzip.models.generators import KandinskyV22Generator

    return KandinskyV22Generator(locate(_need(arg, "kandinsky22:<decoder pipeline folder>")), **kw)


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
    return _load(loader, arg, kw)


def load_refiner(spec: str | None = "identity", **kw: Any) -> Any:
    """Build the ``Refiner`` named by ``spec`` (e.g. ``"identity"``, ``"sd-img2img:/models/sd15"``)."""
    if spec is None:
        spec = "identity"
    loader, arg = _split(spec, _REFINERS, "refiner")
    return _load(loader, arg, kw)


def check_refiner_spec(spec: str | None) -> None:
    """Refuse a refiner spec of no registered kind, or one missing its argument, without loading it."""
    if spec is None:
        return
    _split(spec, _REFINERS, "refiner")
    prefix, _, arg = spec.strip().partition(":")
    usage = _REFINERS[prefix][1]
    if "<" in usage and not arg:
        raise InvalidInputError(f"missing argument: use {usage}")


def _sidecar_captioner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.captioners import SidecarCaptions

    return SidecarCaptions(arg or None, **kw)


def _hf_captioner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.captioners import HFCaptioner

    return HFCaptioner(locate(_need(arg, "hf:<captioner folder or hub id>")), **kw)


def _chat_captioner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.captioners import ChatCaptioner

    return ChatCaptioner(locate(_need(arg, "chat:<multimodal chat model folder or hub id>")), **kw)


def _identity_refiner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.refiners import IdentityRefiner

    if arg:
        raise InvalidInputError(f"the identity refiner takes no argument, got {arg!r}")
    return IdentityRefiner(**kw)


def _sd_img2img(arg: str | None, **kw: Any) -> Any:
    from semzip.models.refiners import SDImg2ImgRefiner

    return SDImg2ImgRefiner(locate(_need(arg, "sd-img2img:<pipeline folder>")), **kw)


def _controlnet_tile(arg: str | None, **kw: Any) -> Any:
    from semzip.models.refiners import ControlNetTileRefiner

    usage = "controlnet-tile:<sd pipeline folder>,<controlnet folder>"
    sd, sep, cn = _need(arg, usage).rpartition(",")
    if not sep or not sd or not cn:
        raise InvalidInputError(f"missing argument: use {usage}")
    return ControlNetTileRefiner(locate(sd), locate(cn), **kw)


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
