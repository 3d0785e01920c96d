"""Which models turn an archive's contents into images or query its space, checked before any work.

Generators render embeddings (the archive's space must be theirs), refiners render image-text items (their
settings are recorded in the header at compress time and checked again here), the archive's own encoder
embeds queries. ``--device`` applies only to models that run somewhere: the offline ones run on the CPU.
"""

from __future__ import annotations

from semzip.errors import InvalidInputError, ModelMismatchError
from semzip.format import ModelRef

_CPU_ONLY = {"generator": ("thumbnail",), "refiner": ("identity",), "encoder": ("thumbnail",),
             "captioner": ("sidecar",)}  # no model: numpy on the CPU, or captions read from files


def device_kw(kind: str, spec: str | None, device: str | None) -> dict:
    """``device=`` for a generator, refiner, encoder or captioner loader: passed to the models; the offline ones
    run on the CPU, so another device is refused (before any work) rather than ignored."""
    spec = spec or _CPU_ONLY[kind][0]
    if device is None:
        return {}
    if spec.strip().partition(":")[0] in _CPU_ONLY[kind]:
        if device != "cpu":
            raise InvalidInputError(f"--device {device}: the {kind} {spec!r} has no model and runs on the CPU only; "
                                    "leave --device out")
        return {}
    return {"device": device}


def default_generator(space: str) -> str:
    """The generator spec that renders a given embedding space offline, if one exists."""
    from semzip.models.thumbnail import ThumbnailEncoder

    for grid in (16, 8, 12, 24, 32):
        if ThumbnailEncoder(grid).space == space:
            return "thumbnail" if grid == 16 else f"thumbnail:{grid}"
    raise InvalidInputError(
        f"no offline generator renders the embedding space {space!r}; pass --generator "
        "(e.g. stable-unclip:/path/to/sd21-unclip for OpenCLIP ViT-H-14 embeddings)"
    )


def space_generator(space: str, generator: str | None = None, device: str | None = None):
    """The generator for embeddings of ``space``: the given spec or the space's offline default (``device``:
    where a diffusion generator runs; see :func:`device_kw`). One conditioned on another space is refused."""
    from semzip.models.registry import load_generator

    spec = generator or default_generator(space)
    gen = load_generator(spec, **device_kw("generator", spec, device))
    if gen.space != space:
        raise ModelMismatchError(
            f"the archive holds {space!r} embeddings but generator {gen.name!r} is conditioned on {gen.space!r}; "
            "decoding would produce nonsense"
        )
    return gen


def check_refiner_settings(refiner: str | None, steps: int | None = None, strength: float | None = None,
                           guidance: float | None = None) -> None:
    """Refuse a refiner spec of no known kind, or settings no refiner accepts, without loading any model
    (compress records them for decoding, which may happen on another machine)."""
    from semzip.models.registry import check_refiner_spec

    check_refiner_spec(refiner)
    if steps is not None and steps < 1:
        raise InvalidInputError(f"--steps must be at least 1, got {steps}")
    if strength is not None and not 0.0 < strength <= 1.0:
        raise InvalidInputError(f"--strength must lie in (0, 1], got {strength}")
    if guidance is not None and guidance < 0:
        raise InvalidInputError(f"guidance must be non-negative, got {guidance}")


def refiner_settings(recorded: dict | None, refiner: str | None = None, seed: int | None = None,
                     steps: int | None = None, strength: float | None = None,
                     guidance: float | None = None) -> dict:
    """The refiner settings to decode with: each one given, else the one the header recorded, checked
    (:func:`check_refiner_settings`). Returns ``spec``, ``seed``, ``steps``, ``strength``, ``guidance``."""
    rec = recorded or {}
    s = {"spec": refiner or rec.get("spec") or "identity",
         "seed": int(rec.get("seed") or 0) if seed is None else seed,
         "steps": rec.get("steps") if steps is None else steps,
         "strength": rec.get("strength") if strength is None else strength,
         "guidance": rec.get("guidance") if guidance is None else guidance}
    check_refiner_settings(s["spec"], s["steps"], s["strength"], s["guidance"])
    return s


def load_recorded_encoder(ref: ModelRef, device: str | None, why: str):
    """The encoder an archive records, on ``device``, refused when its weights differ from the archive's."""
    from semzip.models.registry import load_encoder

    enc = load_encoder(ref.name, **device_kw("encoder", ref.name, device))
    if enc.fingerprint != ref.fingerprint:
        raise ModelMismatchError(f"encoder {ref.name!r} here has fingerprint {enc.fingerprint}, the archive was "
                                 f"made with {ref.fingerprint}: {why}")
    return enc


def need_text_tower(encoder, image_queries: bool = True) -> None:
    """Refuse text queries, in one line saying which weights they need and how to give them, when the archive's
    encoder has no text tower (the offline thumbnail encoder)."""
    if encoder.has_text_tower:
        return
    tail = "; an image file works as a query without them" if image_queries else ""
    raise InvalidInputError(
        f"text queries need CLIP weights (an image encoder with a text tower); this archive was made with the "
        f"{encoder.name!r} encoder, which has none: compress the images again with --encoder "
        f"open_clip:MODEL/TAG or --encoder hf:PATH, the weights in a folder given by --models DIR or "
        f"$SEMZIP_MODEL_PATH{tail}")
