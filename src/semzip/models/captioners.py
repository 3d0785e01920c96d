"""Captioners: images -> short descriptions, the text half of the image-text codec.

``SidecarCaptions`` is the offline default (no captioning weights exist offline): captions come from the user,
as a CSV ``image,caption`` or as ``<stem>.txt`` files next to the images. ``HFCaptioner`` wraps transformers
image-to-text models (BLIP, BLIP-2, GIT, ...); ``ChatCaptioner`` wraps multimodal chat models (Qwen2-VL,
LLaVA, SmolVLM, Florence-2, ...) prompted for a dense, compressible description.

Caption length is the rate knob of the text stream: ``max_words`` bounds the generated length (through
``max_new_tokens`` and, for chat models, the prompt) and every caption is cut to at most ``max_words`` words.
Generation is greedy (or deterministic beam search), so a captioner gives the same caption for the same image
on the same hardware. The caption itself is coded losslessly, so decoding never needs the captioner.
"""

from __future__ import annotations

import csv
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semzip.errors import InvalidInputError, MissingModelError

NO_OFFLINE_CAPTIONER = (
    "no captioning model is available offline; pass --captions captions.csv (columns image,caption), put a "
    "<image stem>.txt caption file next to each image, or give a local captioner path (hf:<folder> or chat:<folder>)"
)

DEFAULT_PROMPT = (
    "Describe this image in one dense paragraph of at most {max_words} words for someone who must redraw it: "
    "the main subjects, their colours, sizes and positions, the background, the lighting and the style. "
    "Plain words only; no preamble, no opinions, no lists."
)
"""Prompt of ``ChatCaptioner``; ``{max_words}`` is replaced by the word budget."""

DEFAULT_MAX_WORDS = 60
TOKENS_PER_WORD = 2.0
"""``max_new_tokens`` = ceil(TOKENS_PER_WORD * max_words) + 4: room for sub-word tokens and punctuation."""

_NAME_COLUMNS = ("image", "path", "file", "filename", "name")
_CAPTION_COLUMNS = ("caption", "text", "description")


def truncate_words(text: str, max_words: int | None) -> str:
    """``text`` with whitespace collapsed and cut to at most ``max_words`` words (None: no limit)."""
    words = str(text).split()
    if max_words is not None:
        words = words[: int(max_words)]
    return " ".join(words)


def _check_max_words(max_words: int | None) -> int | None:
    if max_words is None:
        return None
    if isinstance(max_words, bool) or int(max_words) != max_words or max_words < 1:
        raise InvalidInputError(f"max_words must be a positive integer, got {max_words!r}")
    return int(max_words)


def max_new_tokens_for(max_words: int) -> int:
    """Token budget of ``generate`` for a word budget (a generous bound; captions are then cut by words)."""
    return int(np.ceil(TOKENS_PER_WORD * max_words)) + 4


def _check_images(images: Sequence[Any]) -> list[np.ndarray]:
    from semzip.data.images import as_rgb_array

    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    return [as_rgb_array(img, f"image {i}") for i, img in enumerate(images)]


class Captioner(ABC):
    """Writes one caption per RGB uint8 (H, W, 3) image."""

    name: str

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Short hex hash of the weights (or of the caption source), for provenance in headers and reports."""

    @abstractmethod
    def caption(
        self, images: Sequence[np.ndarray], max_words: int | None = None, names: Sequence[str] | None = None
    ) -> list[str]:
        """One caption per image, at most ``max_words`` words. ``names`` (file names or paths) are needed by
        sidecar captions only; model captioners ignore them."""

    def params(self, max_words: int | None = None) -> dict[str, Any]:
        """The captioner and settings, as a JSON-able dict (informative: captions are stored losslessly)."""
        return {"captioner": self.name, "fingerprint": self.fingerprint, "max_words": max_words}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ----------------------------------------------------------------------------------------------------------
# user-supplied captions


def read_captions_csv(path: str | os.PathLike) -> dict[str, str]:
    """A CSV of ``image,caption`` rows (a header row naming the columns, or two columns without header)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInputError(f"captions file not found: {p}")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{p}: not a readable UTF-8 CSV ({exc})") from None
    if not rows:
        raise InvalidInputError(f"{p}: the captions CSV is empty")
    head = [c.strip().lower() for c in rows[0]]
    key = next((head.index(c) for c in _NAME_COLUMNS if c in head), None)
    cap = next((head.index(c) for c in _CAPTION_COLUMNS if c in head), None)
    if key is not None and cap is not None:
        rows = rows[1:]
    elif key is None and cap is None and len(rows[0]) == 2:
        key, cap = 0, 1  # no header: image,caption
    else:
        raise InvalidInputError(
            f"{p}: a captions CSV needs an image column ({', '.join(_NAME_COLUMNS)}) and a caption column "
            f"({', '.join(_CAPTION_COLUMNS)}), e.g. a header line 'image,caption'"
        )
    out: dict[str, str] = {}
    for n, r in enumerate(rows, start=2):
        if len(r) <= max(key, cap):
            raise InvalidInputError(f"{p}, line {n}: expected an image and a caption, got {r!r}")
        name, text = r[key].strip(), " ".join(r[cap].split())
        if not name:
            raise InvalidInputError(f"{p}, line {n}: empty image name")
        if name in out and out[name] != text:
            raise InvalidInputError(f"{p}: image {name!r} is listed twice with different captions")
        out[name] = text
    return out


class SidecarCaptions(Captioner):
    """User-supplied captions: a CSV ``image,caption``, a folder of ``<stem>.txt`` files, or (``source=None``)
    ``.txt`` files next to the images named in ``caption(..., names=...)``.

    Lookup of a name (a file name or a path): the exact string, then the file name, then the stem (the last
    only when it is unambiguous in the CSV). A missing or empty caption raises ``MissingModelError`` naming
    the image and saying how to provide one.
    """

    def __init__(self, source: str | os.PathLike | None = None) -> None:
        self.source = None if source is None else Path(source).expanduser()
        self.table: dict[str, str] | None = None
        self.folder: Path | None = None
        if self.source is None:
            self.name = "sidecar"
        elif self.source.is_dir():
            self.folder = self.source
            self.name = f"sidecar:{self.source}"
        elif self.source.is_file():
            self.table = read_captions_csv(self.source)
            self.name = f"sidecar:{self.source}"
        else:
            raise InvalidInputError(
                f"captions source not found: {self.source}. Pass a CSV with columns image,caption or a folder "
                "of <image stem>.txt files."
            )
        self._by_file: dict[str, str] = {}
        self._by_stem: dict[str, str | None] = {}
        for key, text in (self.table or {}).items():
            p = Path(key.replace("\\", "/"))
            self._by_file.setdefault(p.name, text)
            stem = p.stem
            self._by_stem[stem] = text if self._by_stem.get(stem, text) == text else None  # None: ambiguous

    @property
    def fingerprint(self) -> str:
        from semzip.models.fingerprint import fingerprint_text

        if self.table is not None:
            return fingerprint_text("\n".join(f"{k}\t{v}" for k, v in sorted(self.table.items())))
        return fingerprint_text(self.name)

    def __contains__(self, name: str) -> bool:
        return self._find(name) is not None

    def _find(self, name: str) -> str | None:
        name = str(name)
        p = Path(name.replace("\\", "/"))
        if self.table is not None:
            for hit in (self.table.get(name), self.table.get(p.as_posix()), self._by_file.get(p.name),
                        self._by_stem.get(p.stem)):
                if hit:
                    return hit
            return None
        candidates = [self.folder / f"{p.stem}.txt"] if self.folder is not None else [p.with_suffix(".txt")]
        if self.folder is not None and p.parent != Path("."):
            candidates.insert(0, self.folder / p.with_suffix(".txt"))
        for c in candidates:
            if c.is_file():
                try:
                    text = " ".join(c.read_text(encoding="utf-8-sig").split())
                except UnicodeDecodeError:
                    raise InvalidInputError(f"caption file {c} is not UTF-8 text") from None
                if text:
                    return text
        return None

    def lookup(self, name: str) -> str:
        """The caption of the image called ``name`` (file name or path)."""
        text = self._find(name)
        if text is not None:
            return text
        stem = Path(str(name)).stem
        if self.table is not None:
            where = f"{self.source} has no caption for {name!r}: add a row '{Path(str(name)).name},<caption>'"
        elif self.folder is not None:
            where = f"no caption for {name!r}: {self.folder / (stem + '.txt')} is missing or empty"
        else:
            where = f"no caption for {name!r}: {Path(str(name)).with_suffix('.txt')} is missing or empty"
        raise MissingModelError(f"{where}; {NO_OFFLINE_CAPTIONER}.")

    def caption(self, images, max_words=None, names=None):
        max_words = _check_max_words(max_words)
        n = 1 if isinstance(images, np.ndarray) and images.ndim == 3 else len(images)
        if names is None:
            raise InvalidInputError(
                f"{self.name} captions are looked up by image name: pass names=[...] (file names or paths). "
                f"Otherwise: {NO_OFFLINE_CAPTIONER}."
            )
        names = [str(x) for x in ([names] if isinstance(names, (str, os.PathLike)) else names)]
        if len(names) != n:
            raise InvalidInputError(f"{n} images but {len(names)} names")
        return [truncate_words(self.lookup(x), max_words) for x in names]


# ----------------------------------------------------------------------------------------------------------
# transformers backends


class _TransformersCaptioner(Captioner):
    what = "captioning model"

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | None,
        dtype: Any,
        batch_size: int,
        max_words: int,
        num_beams: int,
        allow_download: bool,
        trust_remote_code: bool = False,
    ) -> None:
        from semzip.models.torch_utils import (
            dtype_kwarg,
            hub_folder,
            hub_offline,
            resolve_device,
            resolve_dtype,
        )

        self.path = str(path)
        local = Path(self.path).expanduser()
        if not allow_download and not local.is_dir():
            local = Path(hub_folder(  # a hub id from the local hub cache, else MissingModelError
                self.path, False, self.what,
                "Pass a local folder saved with save_pretrained (config.json, weights, processor and tokenizer "
                f"files), or a hub id with --allow-download. Without a model: "
                f"{NO_OFFLINE_CAPTIONER}",
            ))
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise InvalidInputError("batch_size must be positive")
        self.max_words = _check_max_words(max_words)
        self.num_beams = int(num_beams)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        import torch
        import transformers

        self._torch = torch
        src = str(local) if local.is_dir() else self.path
        kw: dict[str, Any] = {"local_files_only": not allow_download}
        if trust_remote_code:
            kw["trust_remote_code"] = True
        try:
            with hub_offline(not allow_download):
                self.processor = transformers.AutoProcessor.from_pretrained(src, **kw)
                model_cls = getattr(transformers, "AutoModelForImageTextToText", None)
                if model_cls is None:  # transformers < 4.50
                    model_cls = transformers.AutoModelForVision2Seq
                try:
                    model = model_cls.from_pretrained(src, **dtype_kwarg(transformers, self.dtype), **kw)
                except ValueError:
                    if not hasattr(transformers, "AutoModelForVision2Seq"):
                        raise
                    model = transformers.AutoModelForVision2Seq.from_pretrained(
                        src, **dtype_kwarg(transformers, self.dtype), **kw
                    )
        except (OSError, ValueError) as exc:
            raise MissingModelError(
                f"cannot load the {self.what} from {self.path}: {exc}. Check the folder holds config.json, the "
                "weights and the processor/tokenizer files (save_pretrained of the model and its processor)."
            ) from None
        self.model = model.to(self.device).eval()
        self.model_type = str(getattr(self.model.config, "model_type", ""))
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from semzip.models.fingerprint import fingerprint_loaded

            self._fingerprint = fingerprint_loaded(self.path, self.model)
        return self._fingerprint

    def params(self, max_words=None):
        words = _check_max_words(max_words) or self.max_words
        return {
            **super().params(words),
            "model_type": self.model_type,
            "decoding": "greedy" if self.num_beams == 1 else f"beam search ({self.num_beams} beams)",
            "max_new_tokens": max_new_tokens_for(words),
        }

    @property
    def _tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def caption(self, images, max_words=None, names=None):
        words = _check_max_words(max_words) or self.max_words
        arrays = _check_images(images)
        from PIL import Image

        out: list[str] = []
        for start in range(0, len(arrays), self.batch_size):
            pil = [Image.fromarray(a) for a in arrays[start : start + self.batch_size]]
            out.extend(truncate_words(t, words) for t in self._caption_batch(pil, words))
        return out

    def _generate(self, inputs: Any, words: int) -> Any:
        torch = self._torch
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            return self.model.generate(
                **inputs, max_new_tokens=max_new_tokens_for(words), do_sample=False, num_beams=self.num_beams
            )

    def _caption_batch(self, images: list[Any], words: int) -> list[str]:
        raise NotImplementedError


class HFCaptioner(_TransformersCaptioner):
    """transformers image-to-text captioners (BLIP, BLIP-2, GIT, ...) through ``AutoProcessor`` and
    ``AutoModelForImageTextToText`` (``AutoModelForVision2Seq`` on transformers 4), greedy by default.

    ``prompt`` is an optional text prefix for conditional captioning (BLIP: ``"a photography of"``); it is
    removed from the output when the model echoes it.
    """

    what = "image-to-text captioning model"

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | None = None,
        dtype: Any = "fp32",
        batch_size: int = 8,
        max_words: int = 30,
        num_beams: int = 1,
        prompt: str | None = None,
        allow_download: bool = False,
    ) -> None:
        super().__init__(path, device, dtype, batch_size, max_words, num_beams, allow_download)
        self.prompt = prompt or None
        self.name = f"hf:{self.path}"

    def params(self, max_words=None):
        return {**super().params(max_words), "prompt": self.prompt}

    def _caption_batch(self, images, words):
        kw: dict[str, Any] = {"images": images, "return_tensors": "pt"}
        if self.prompt:
            kw["text"] = [self.prompt] * len(images)
            kw["padding"] = True
        ids = self._generate(self.processor(**kw), words)
        texts = self._tokenizer.batch_decode(ids, skip_special_tokens=True)
        out = []
        for t in texts:
            t = " ".join(t.split())
            if self.prompt and t.lower().startswith(" ".join(self.prompt.split()).lower()):
                t = t[len(" ".join(self.prompt.split())) :]
            out.append(t.strip())
        return out


class ChatCaptioner(_TransformersCaptioner):
    """Multimodal chat models (Qwen2-VL, LLaVA, SmolVLM, Idefics3, Florence-2, ...) asked for a dense,
    compressible description through the processor's chat template.

    The prompt (``DEFAULT_PROMPT`` by default) states the word budget ``max_words``; the budget also sets
    ``max_new_tokens``. Processors without a chat template (Florence-2) get the prompt as plain text, so pass
    their task token there (``prompt="<MORE_DETAILED_CAPTION>"``). Only the newly generated tokens are decoded.
    """

    what = "multimodal chat model"

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | None = None,
        dtype: Any = "bf16",
        batch_size: int = 4,
        max_words: int = DEFAULT_MAX_WORDS,
        num_beams: int = 1,
        prompt: str = DEFAULT_PROMPT,
        allow_download: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__(path, device, dtype, batch_size, max_words, num_beams, allow_download, trust_remote_code)
        self.prompt = str(prompt)
        self.name = f"chat:{self.path}"
        tok = self._tokenizer
        if getattr(tok, "padding_side", None) is not None:
            tok.padding_side = "left"  # decoder-only batches: generation continues right after the prompt

    def prompt_text(self, max_words: int | None = None) -> str:
        """The instruction given to the model for this word budget."""
        words = _check_max_words(max_words) or self.max_words
        return self.prompt.replace("{max_words}", str(words))

    def params(self, max_words=None):
        words = _check_max_words(max_words) or self.max_words
        return {**super().params(words), "prompt": self.prompt_text(words)}

    def _has_chat_template(self) -> bool:
        return bool(getattr(self.processor, "chat_template", None))

    def _caption_batch(self, images, words):
        instruction = self.prompt_text(words)
        if self._has_chat_template():
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = instruction
        inputs = self.processor(text=[text] * len(images), images=images, return_tensors="pt", padding=True)
        ids = self._generate(inputs, words)
        if not getattr(self.model.config, "is_encoder_decoder", False) and "input_ids" in inputs:
            ids = ids[:, inputs["input_ids"].shape[1] :]  # decoder-only: drop the echoed prompt
        texts = self._tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]


def default_captioner(captions: str | os.PathLike | None = None) -> Captioner:
    """The offline default: sidecar captions from ``captions`` (CSV or folder), else ``<stem>.txt`` files."""
    return SidecarCaptions(captions)
