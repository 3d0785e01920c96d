"""Spec strings -> model loaders, one :class:`ModelRegistry` per model role. Specs are strings so that they
can live in archive headers and on the command line.

* image encoders: :data:`ENCODERS` (here): ``thumbnail[:<grid>]``, ``open_clip[:<model>/<tag or file>]``,
  ``hf:<folder or hub id>``;
* image generators: :data:`GENERATORS` (here): ``thumbnail[:<grid>]``, ``stable-unclip:<folder>``,
  ``kandinsky22:<folder>``;
* captioners: :data:`CAPTIONERS` (here): ``sidecar[:<csv or folder>]``, ``hf:<folder>``, ``chat:<folder>``;
* refiners: :data:`REFINERS` (here): ``identity``, ``sd-img2img:<folder>``,
  ``controlnet-tile:<sd folder>,<controlnet folder>``;
* learned image codecs: ``semzip.models.lic.LIC_MODELS``: ``tiny[:<file>]``, ``compressai:<arch>:<quality or file>``;
* caption language models: ``semzip.models.language.LANGUAGE_MODELS``: a registered name (``smollm2-135m``),
  a model folder, a ``.gguf`` file or a hub id.

The last two live in their own modules: ``lic.py`` and ``language.py`` call their registry (``load_lic``,
``load_language_model``) and import this module for the class and the search path, so a registry here
that imported them back would close an import cycle (tests/test_architecture.py forbids one). Loaders import
their backend, and its heavy dependencies, only when called. Keyword arguments go to the backend's constructor.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semzip.errors import InvalidInputError, MissingModelError

MODEL_PATH_ENV = "SEMZIP_MODEL_PATH"
ALLOW_DOWNLOAD_ENV = "SEMZIP_ALLOW_DOWNLOAD"
_MODEL_DIRS: list[Path] = []
_ALLOW_DOWNLOAD: list[bool] = []
Loader = Callable[..., Any]
"""``loader(arg, **kw)``: builds a model from a spec's argument (``None`` when the spec has none)."""


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


@dataclass(frozen=True)
class RegistryEntry:
    """One registered kind of spec: its loader, its usage line, and whether the spec must carry an argument."""

    loader: Loader
    usage: str
    needs_arg: bool


class ModelRegistry:
    """Spec strings -> loaders for one model role (encoder, generator, captioner, refiner, LIC, language model).

    A spec is ``prefix`` or ``prefix:arg``; :meth:`load` calls the prefix's ``loader(arg, **kw)`` (``arg`` is
    ``None`` without a colon) and turns a :class:`MissingModelError` into one that lists the model folders
    searched. ``allow_download=True`` is passed when downloads are allowed (:func:`downloads_allowed`) and the
    loader takes it, unless the caller says otherwise. A usage written ``prefix:<...>`` marks an argument as
    required (``hf:<folder>``); ``prefix[:<...>]`` as optional (``thumbnail[:<grid>]``).

    Some roles do not name models as ``prefix:arg``: a language model is a registry name (``smollm2-135m``),
    a local folder or ``.gguf`` file (whose path may hold anything, a colon included), or a hub id. Such a
    registry is built with ``prefixed=False`` and a ``fallback``: a registered name is matched as the whole
    spec, and every other spec goes, whole, to ``fallback(spec, **kw)``, which resolves paths and hub ids
    (``fallback`` is only for such registries).
    """

    def __init__(self, role: str, default: str | None = None, *, prefixed: bool = True,
                 fallback: Loader | None = None) -> None:
        self.role = role
        self.default = default
        self.prefixed = prefixed
        self.fallback = fallback
        self._entries: dict[str, RegistryEntry] = {}

    def register(self, prefix: str, loader: Loader, usage: str) -> None:
        """Register ``loader(arg, **kw)`` for specs ``prefix`` or ``prefix:arg``; ``usage`` is shown in help
        and errors, and says whether the argument is required (``prefix:<...>``) or optional."""
        needs_arg = self.prefixed and usage.startswith(prefix + ":")
        self._entries[prefix] = RegistryEntry(loader, usage, needs_arg)

    def names(self) -> list[str]:
        """The registered prefixes (or whole names), in registration order."""
        return list(self._entries)

    def usages(self) -> list[str]:
        """The usage line of every registered prefix, in registration order."""
        return [e.usage for e in self._entries.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def resolve(self, spec: str | None) -> tuple[Loader, str | None]:
        """The loader for ``spec`` and the argument it gets; refuses an empty spec, an unknown prefix and a
        missing required argument (:class:`InvalidInputError`) without loading anything."""
        spec = self.default if spec is None else spec
        if not isinstance(spec, str) or not spec.strip():
            raise InvalidInputError(f"{self.role} spec must be a non-empty string")
        key = spec.strip()
        if not self.prefixed:
            if key in self._entries:
                return self._entries[key].loader, None
            if self.fallback is not None:
                return self.fallback, spec  # a path is passed as given
            raise self._unknown(spec)
        prefix, sep, arg = key.partition(":")
        entry = self._entries.get(prefix)
        if entry is None:
            raise self._unknown(spec)
        if entry.needs_arg and not arg:
            raise InvalidInputError(f"missing argument: use {entry.usage}")
        return entry.loader, (arg if sep else None)

    def _unknown(self, spec: str) -> InvalidInputError:
        return InvalidInputError(f"unknown {self.role} {spec!r}; known: {'; '.join(self.usages())}")

    def check(self, spec: str | None) -> None:
        """Refuse a spec of no registered kind, or one missing its argument, without loading it."""
        self.resolve(spec)

    def load(self, spec: str | None = None, **kw: Any) -> Any:
        """Build the model named by ``spec`` (the registry's default when ``None``); ``kw`` go to the loader."""
        loader, arg = self.resolve(spec)
        try:
            return loader(arg, **_with_defaults(loader, kw))
        except MissingModelError as exc:
            raise with_searched_folders(exc) from None


ENCODERS = ModelRegistry("encoder", "thumbnail")
"""Image encoders (:class:`~semzip.models.encoders.ImageEncoder`): images -> embeddings."""
GENERATORS = ModelRegistry("generator", "thumbnail")
"""Image generators (:class:`~semzip.models.generators.ImageGenerator`): embeddings -> images."""
CAPTIONERS = ModelRegistry("captioner", "sidecar")
"""Captioners (:class:`~semzip.models.captioners.Captioner`): images -> captions, for the image-text codec."""
REFINERS = ModelRegistry("refiner", "identity")
"""Refiners (:class:`~semzip.models.refiners.Refiner`): LIC image + caption -> final image."""


def register_encoder(prefix: str, loader: Loader, usage: str) -> None:
    """Register ``loader(arg, **kw)`` for encoder specs ``prefix`` or ``prefix:arg``."""
    ENCODERS.register(prefix, loader, usage)


def register_generator(prefix: str, loader: Loader, usage: str) -> None:
    """Register ``loader(arg, **kw)`` for generator specs ``prefix`` or ``prefix:arg``."""
    GENERATORS.register(prefix, loader, usage)


def register_captioner(prefix: str, loader: Loader, usage: str) -> None:
    """Register ``loader(arg, **kw)`` for captioner specs ``prefix`` or ``prefix:arg``."""
    CAPTIONERS.register(prefix, loader, usage)


def register_refiner(prefix: str, loader: Loader, usage: str) -> None:
    """Register ``loader(arg, **kw)`` for refiner specs ``prefix`` or ``prefix:arg``."""
    REFINERS.register(prefix, loader, usage)


def known_encoders() -> list[str]:
    """Usage patterns of the registered encoder specs."""
    return ENCODERS.usages()


def known_generators() -> list[str]:
    """Usage patterns of the registered generator specs."""
    return GENERATORS.usages()


def known_captioners() -> list[str]:
    """Usage patterns of the registered captioner specs."""
    return CAPTIONERS.usages()


def known_refiners() -> list[str]:
    """Usage patterns of the registered refiner specs."""
    return REFINERS.usages()


def load_encoder(spec: str = "thumbnail", **kw: Any) -> Any:
    """Build the ``ImageEncoder`` named by ``spec`` (e.g. ``"thumbnail"``, ``"hf:/models/clip-vit-b32"``)."""
    return ENCODERS.load(spec, **kw)


def load_generator(spec: str = "thumbnail", **kw: Any) -> Any:
    """Build the ``ImageGenerator`` named by ``spec`` (e.g. ``"thumbnail"``, ``"kandinsky22:/models/k22"``)."""
    return GENERATORS.load(spec, **kw)


def load_captioner(spec: str | None = "sidecar", **kw: Any) -> Any:
    """Build the ``Captioner`` named by ``spec`` (e.g. ``"sidecar:captions.csv"``, ``"hf:/models/blip"``).

    ``None`` or ``"sidecar"``: captions from ``<image stem>.txt`` files next to the images (the offline default).
    """
    return CAPTIONERS.load(spec, **kw)


def load_refiner(spec: str | None = "identity", **kw: Any) -> Any:
    """Build the ``Refiner`` named by ``spec`` (e.g. ``"identity"``, ``"sd-img2img:/models/sd15"``)."""
    return REFINERS.load(spec, **kw)


def check_refiner_spec(spec: str | None) -> None:
    """Refuse a refiner spec of no registered kind, or one missing its argument, without loading it."""
    if spec is not None:
        REFINERS.check(spec)


# ---------------------------------------------------------------------------------------------- loaders


def _grid(arg: str | None) -> int:
    if arg is None or arg == "":
        from semzip.models.thumbnail import DEFAULT_GRID

        return DEFAULT_GRID
    try:
        return int(arg)
    except ValueError:
        raise InvalidInputError(f"thumbnail grid must be an integer, got {arg!r}") from None


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


def _hf_encoder(arg: str, **kw: Any) -> Any:
    from semzip.models.encoders import HFClipEncoder

    return HFClipEncoder(locate(arg), **kw)


def _thumbnail_generator(arg: str | None, **kw: Any) -> Any:
    from semzip.models.generators import ThumbnailGenerator

    return ThumbnailGenerator(grid=_grid(arg), **kw)


def _stable_unclip(arg: str, **kw: Any) -> Any:
    from semzip.models.generators import StableUnCLIPGenerator

    return StableUnCLIPGenerator(locate(arg), **kw)


def _kandinsky22(arg: str, **kw: Any) -> Any:
    from semzip.models.generators import KandinskyV22Generator

    return KandinskyV22Generator(locate(arg), **kw)


register_encoder(
    "thumbnail", _thumbnail_encoder, "thumbnail[:<grid>] (offline colour-layout thumbnail, default)"
)
register_encoder(
    "open_clip",
    _open_clip_encoder,
    "open_clip[:<model>/<pretrained tag or checkpoint file>] (e.g. open_clip:ViT-H-14/laion2b_s32b_b79k)",
)
register_encoder("hf", _hf_encoder, "hf:<folder or hub id> (transformers CLIPModel)")
register_generator(
    "thumbnail", _thumbnail_generator, "thumbnail[:<grid>] (renders thumbnail embeddings, default)"
)
register_generator(
    "stable-unclip", _stable_unclip,
    "stable-unclip:<folder or hub id> (SD-2.1-unCLIP, OpenCLIP ViT-H-14 space)",
)
register_generator(
    "kandinsky22", _kandinsky22, "kandinsky22:<folder or hub id> (Kandinsky 2.2 decoder, ViT-bigG-14 space)"
)


def _sidecar_captioner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.captioners import SidecarCaptions

    return SidecarCaptions(arg or None, **kw)


def _hf_captioner(arg: str, **kw: Any) -> Any:
    from semzip.models.captioners import HFCaptioner

    return HFCaptioner(locate(arg), **kw)


def _chat_captioner(arg: str, **kw: Any) -> Any:
    from semzip.models.captioners import ChatCaptioner

    return ChatCaptioner(locate(arg), **kw)


def _identity_refiner(arg: str | None, **kw: Any) -> Any:
    from semzip.models.refiners import IdentityRefiner

    if arg:
        raise InvalidInputError(f"the identity refiner takes no argument, got {arg!r}")
    return IdentityRefiner(**kw)


def _sd_img2img(arg: str, **kw: Any) -> Any:
    from semzip.models.refiners import SDImg2ImgRefiner

    return SDImg2ImgRefiner(locate(arg), **kw)


def _controlnet_tile(arg: str, **kw: Any) -> Any:
    from semzip.models.refiners import ControlNetTileRefiner

    sd, sep, cn = arg.rpartition(",")
    if not sep or not sd or not cn:
        raise InvalidInputError("missing argument: use controlnet-tile:<sd pipeline folder>,<controlnet folder>")
    return ControlNetTileRefiner(locate(sd), locate(cn), **kw)


register_captioner(
    "sidecar",
    _sidecar_captioner,
    "sidecar[:<captions.csv or folder>] (user captions: CSV image,caption or <stem>.txt files; offline default)",
)
register_captioner(
    "hf", _hf_captioner, "hf:<folder or hub id> (transformers image-to-text: BLIP, BLIP-2, GIT)"
)
register_captioner(
    "chat", _chat_captioner,
    "chat:<folder or hub id> (multimodal chat model: Qwen2-VL, LLaVA, SmolVLM, Florence-2)",
)
register_refiner("identity", _identity_refiner, "identity (no diffusion decoder: the LIC image is the output)")
register_refiner(
    "sd-img2img", _sd_img2img, "sd-img2img:<folder or hub id> (Stable Diffusion img2img, caption as prompt)"
)
register_refiner(
    "controlnet-tile",
    _controlnet_tile,
    "controlnet-tile:<sd folder>,<controlnet folder> (SD img2img + tile ControlNet on the LIC image)",
)
