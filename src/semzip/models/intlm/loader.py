"""The converted-model cache and :func:`load_int_language_model`: the first load converts a model (a few
seconds) into ``<cache>/models/<name>-<fingerprint>-int<ARITH_VERSION>-<code digest>/``; later loads
memory-map it and check every file's sha256, so a damaged cache is rebuilt, never used."""

from __future__ import annotations

import contextlib
import functools
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from semzip.errors import ModelMismatchError
from semzip.models.intlm.arith import ARITH_VERSION, IntLlama, IntLMConfig, Prefix, make_kernel
from semzip.models.intlm.convert import TokenTable, build_tokenizer, convert_gguf, convert_safetensors

CACHE_FORMAT = 1


@functools.lru_cache(maxsize=4)
def code_digest(*modules: str) -> str:
    """sha256 (16 hex) of the named modules' files: cached results are tied to the code that computed them,
    so an edited arithmetic never meets a stale cache (a new version only recomputes once)."""
    import hashlib
    import importlib.util

    h = hashlib.sha256(ARITH_VERSION.to_bytes(4, "big"))
    for name in modules:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        try:
            with open(origin, "rb") as fh:  # type: ignore[arg-type]
                h.update(fh.read())
        except (OSError, TypeError):
            h.update(name.encode())  # no file to read (a frozen install): the version alone decides
    return h.hexdigest()[:16]


CONVERT_CODE = ("semzip.entropy.fixedpoint", "semzip.models.intlm.convert", "semzip.models.intlm.adapter")
ARITH_CODE = ("semzip.entropy.fixedpoint", "semzip.models.intlm.arith")
_META = "semzip-int.json"
_WEIGHTS = "int8.npy"
_SCALES = "scales.npz"
_TOKENIZER = "tokenizer.json"


def _digest(path: Any) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def save_converted(folder: Any, config: IntLMConfig, arrays: dict[str, np.ndarray], tokens: Sequence[str],
                   control: Sequence[int], tokenizer_json: str, info: dict[str, Any]) -> None:
    """Write a converted model folder: one flat int8 file, small integer arrays, tokenizer, metadata
    (with sha256 of each file, checked on load). Written to a temporary folder, renamed into place."""
    import json

    from semzip.format import atomic_folder

    with atomic_folder(folder) as tmp:
        names = sorted(k[:-2] for k in arrays if k.endswith(".w"))
        offsets, pos = {}, 0
        for n in names:
            offsets[n] = [pos, list(arrays[n + ".w"].shape)]
            pos += arrays[n + ".w"].size
        flat = np.lib.format.open_memmap(tmp / _WEIGHTS, mode="w+", dtype=np.int8, shape=(pos,))
        for n in names:
            a, shape = offsets[n]
            flat[a:a + int(np.prod(shape))] = arrays[n + ".w"].reshape(-1)
        flat.flush()
        del flat
        small = {k: np.asarray(v, dtype=np.int64) for k, v in arrays.items() if not k.endswith(".w")}
        np.savez(tmp / _SCALES, **small)
        (tmp / _TOKENIZER).write_text(tokenizer_json)
        meta = {
            "format": CACHE_FORMAT, "arith": ARITH_VERSION, "code": code_digest(*CONVERT_CODE),
            "config": config.to_dict(), "offsets": offsets,
            "tokens": list(tokens), "control": sorted(int(c) for c in control), **info,
            "sha256": {f: _digest(tmp / f) for f in (_WEIGHTS, _SCALES, _TOKENIZER)},
        }
        (tmp / _META).write_text(json.dumps(meta))


def load_converted(folder: Any, verify: bool = True) -> tuple[IntLMConfig, dict[str, np.ndarray], dict[str, Any]]:
    """Read a converted model folder (weights memory-mapped); ``verify`` checks every file's sha256."""
    import json
    from pathlib import Path

    root = Path(folder)
    try:
        meta = json.loads((root / _META).read_text())
        if meta.get("format") != CACHE_FORMAT or meta.get("arith") != ARITH_VERSION \
                or meta.get("code") != code_digest(*CONVERT_CODE):
            raise ModelMismatchError(f"{root} was written by another semzip version")
        if verify:
            for f, want in meta["sha256"].items():
                if _digest(root / f) != want:
                    raise ModelMismatchError(f"{root / f} is damaged (sha256 mismatch): delete {root} to rebuild it")
        config = IntLMConfig.from_dict(meta["config"])
        flat = np.load(root / _WEIGHTS, mmap_mode="r", allow_pickle=False)
        arrays: dict[str, np.ndarray] = {}
        with np.load(root / _SCALES, allow_pickle=False) as z:
            for k in z.files:
                arrays[k] = z[k]
        for n, (a, shape) in meta["offsets"].items():
            size = int(np.prod(shape))
            if a < 0 or a + size > flat.size:
                raise ModelMismatchError(f"{root}: weight {n} lies outside the weight file")
            arrays[n + ".w"] = flat[a:a + size].reshape(shape)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelMismatchError(f"cannot read the converted language model in {root}: {exc}") from None
    return config, arrays, meta


# --------------------------------------------------------------------------------------------- loading


class IntLanguageModel:
    """A converted integer model with its token table, tokenizer (encoding only) and prefix cache."""

    def __init__(self, name: str, fingerprint: str, source: str, folder: Any, config: IntLMConfig,
                 arrays: dict[str, np.ndarray], meta: dict[str, Any], kernel: str = "numpy") -> None:
        self.name = name
        self.fingerprint = fingerprint
        self.source = source
        self.folder = folder
        self.config = config
        self.kernel_name = kernel
        self.model = IntLlama(config, arrays, make_kernel(kernel))
        self.table = TokenTable(meta["tokens"], meta["control"])
        self.eos_id = int(meta["eos"])
        self.bos_id = int(meta["bos"])
        self.vocab_size = config.vocab
        self.max_positions = config.context
        self._tokenizer: Any = None
        self._tokenizer_json: str | None = meta.get("tokenizer_json")  # set when the cache is not writable
        self._prefixes: dict[tuple[int, ...], Prefix] = {}
        self._prefix_cache_warned = False
        self.load_seconds = 0.0
        self.converted = False
        self.adapter: Any = None  # the LMAdapter folded into the weights, if any
        self.base: IntLanguageModel | None = None  # the plain model, for adapters that read base prompt states
        self.base_fingerprint = fingerprint  # the model's own fingerprint (``fingerprint`` includes an adapter)

    def __repr__(self) -> str:
        return f"IntLanguageModel(name={self.name!r}, fingerprint={self.fingerprint}, kernel={self.kernel_name})"

    def use_kernel(self, kind: str) -> None:
        """Switch the matrix-product kernel (numpy, torch, cuda): results are identical by construction."""
        if kind != self.kernel_name:
            self.model.kernel = make_kernel(kind)
            self.kernel_name = kind
        if self.base is not None:
            self.base.use_kernel(kind)

    def prompt_state(self, ids: Sequence[int]) -> Prefix:
        """The state after the coder's prompt ``ids``. An adapter trained on base-model prompt states
        (``prompt_state: base`` in its metadata) reads all but the last prompt token with the base model,
        and the last one with the adapted model, as in its training; otherwise :meth:`prefix`."""
        if self.adapter is None or self.base is None or len(ids) < 2:
            return self.prefix(ids)
        key = ("base", *ids)
        if key not in self._prefixes:
            self._prefixes[key] = self.model.extend(self.base.prefix(ids[:-1]), ids[-1:])
        return self._prefixes[key]

    @property
    def tokenizer(self) -> Any:
        """The ``tokenizers`` tokenizer (encoding side only; decoding uses :attr:`table`)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            if self._tokenizer_json is not None:
                self._tokenizer = Tokenizer.from_str(self._tokenizer_json)
            else:
                self._tokenizer = Tokenizer.from_file(str(self.folder / _TOKENIZER))
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def prefix(self, ids: Sequence[int]) -> Prefix:
        """The state after ``ids``: from memory, from ``<model folder>/prefix-*.npz``, or computed."""
        import hashlib

        key = tuple(int(i) for i in ids)
        if key in self._prefixes:
            return self._prefixes[key]
        tag = hashlib.sha256(np.asarray(key, dtype="<i8").tobytes() + code_digest(*ARITH_CODE).encode()).hexdigest()[:16]
        path = self.folder / f"prefix-{tag}.npz"
        pre = None
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            body = b"".join(data[k].astype("<i8").tobytes() for k in sorted(data) if k != "sha256")
            if bytes(data["sha256"]) == hashlib.sha256(body).digest() and tuple(data["tokens"].tolist()) == key:
                n = self.config.n_layers
                pre = Prefix(key, [data[f"k{i}"].astype(np.int32) for i in range(n)],
                             [data[f"v{i}"].astype(np.int32) for i in range(n)], data["freqs"].astype(np.int64))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged: recompute it
            pre = None
        if pre is None:
            pre = self.model.prefix(key)
            data = {"tokens": np.asarray(key, dtype=np.int64), "freqs": pre.freqs}
            for i, (k, v) in enumerate(zip(pre.keys, pre.values, strict=True)):
                data[f"k{i}"], data[f"v{i}"] = k, v
            body = b"".join(np.asarray(data[k]).astype("<i8").tobytes() for k in sorted(data))
            data["sha256"] = np.frombuffer(hashlib.sha256(body).digest(), dtype=np.uint8)
            self._save_prefix(path, data)
        if len(self._prefixes) >= 4:
            self._prefixes.pop(next(iter(self._prefixes)))
        self._prefixes[key] = pre
        return pre

    def _save_prefix(self, path: Any, data: dict[str, np.ndarray]) -> None:
        """Write a prefix state to the cache (atomically). A cache that cannot be written (read-only, or the
        conversion was kept in memory) only costs the recomputation next time: warned about once per model."""
        from semzip.errors import SemzipError
        from semzip.format import atomic_file

        try:
            with atomic_file(path) as fh:
                np.savez(fh, **data)
        except (OSError, SemzipError) as exc:
            if not self._prefix_cache_warned:
                self._prefix_cache_warned = True
                import logging

                logging.getLogger(__name__).warning(
                    "could not cache prompt states in %s (%s): recomputing them on every load", self.folder, exc)


def _gguf_tokenizer_info(tok: dict[str, Any]) -> tuple[list[int], str]:
    if tok.get("model") != "gpt2" or "merges" not in tok:
        raise ModelMismatchError(
            f"GGUF tokenizer model {tok.get('model')!r}: the integer coder reads byte-level BPE (gpt2) vocabularies")
    control = [i for i, t in enumerate(tok["token_type"]) if t not in (1,)]
    return control, build_tokenizer(tok["tokens"], tok["merges"], control).to_str()


def _hf_tokenizer_info(folder: Any) -> tuple[list[str], list[int], str, int, int]:
    import json

    path = folder / _TOKENIZER
    try:
        text = path.read_text()
        tj = json.loads(text)
        vocab = tj["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelMismatchError(f"{folder}: needs a byte-level BPE tokenizer.json ({exc})") from None
    size = max(list(vocab.values()) + [a["id"] for a in tj.get("added_tokens", [])]) + 1
    tokens = [""] * size
    for t, i in vocab.items():
        tokens[i] = t
    control = []
    for a in tj.get("added_tokens", []):
        tokens[a["id"]] = a["content"]
        if a.get("special"):
            control.append(int(a["id"]))
    eos = bos = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        cfg = json.loads((folder / "config.json").read_text())
        eos, bos = cfg.get("eos_token_id"), cfg.get("bos_token_id")
    eos = int(eos[0] if isinstance(eos, list) else eos) if eos is not None else (control[0] if control else 0)
    bos = int(bos) if isinstance(bos, int) else eos
    return tokens, control, text, eos, bos


def _default_kernel() -> str:
    """torch's int8 kernel when torch is already imported (its import cost is paid), else numpy: the same
    integers either way."""
    import sys

    torch = sys.modules.get("torch")
    return "torch" if torch is not None and hasattr(torch, "_int_mm") else "numpy"


def load_int_language_model(spec: Any = "smollm2-135m", gguf_file: str | None = None,
                            cache_dir: Any = None, kernel: str | None = None, allow_download: bool = False,
                            verify: bool = True, adapter: Any = None) -> IntLanguageModel:
    """The integer-exact model for ``spec`` (registry name, ``.gguf`` file, local Llama folder, or a hub
    name already in the cache). The first load converts the weights (a few seconds) into
    ``<cache>/models/<name>-<fingerprint>-int<ARITH_VERSION>-<code digest>/``; later loads map that folder.

    ``kernel``: the exact matrix-product kernel, ``numpy`` (no torch import), ``torch`` (int8 ``_int_mm``,
    faster for batches) or ``cuda``; ``$SEMZIP_LM_KERNEL`` sets the default, else torch if it is already
    imported, else numpy. All give the same integers.

    ``adapter``: an adapter file (``semzip text train``) or :class:`~semzip.models.intlm.adapter.LMAdapter`,
    folded exactly into the weights (cached separately); it must have been trained for this model.
    """
    import os
    import time
    from pathlib import Path

    kernel = kernel or os.environ.get("SEMZIP_LM_KERNEL") or _default_kernel()

    from semzip.cache import cache_root
    from semzip.errors import MissingModelError
    from semzip.models import language as L

    t0 = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    found = L.find_language_model(spec, gguf_file, allow_download)
    name, source, gguf_path = found.name, found.source, found.gguf_path
    hf_folder = None if gguf_path is not None else found.folder
    if gguf_path is not None:
        if not gguf_path.is_file():
            raise MissingModelError(f"GGUF file not found: {gguf_path}")
        fingerprint = L.combined_file_fingerprint([(gguf_path.name, gguf_path)], cache)
    else:
        fingerprint = L.combined_file_fingerprint(L.folder_weight_files(found.folder), cache)
    base_fingerprint = fingerprint
    if adapter is not None:
        from semzip.models.intlm.adapter import LMAdapter, combined_fingerprint, load_adapter

        if not isinstance(adapter, LMAdapter):
            adapter = load_adapter(adapter)
        if adapter.base_fingerprint != fingerprint:
            raise ModelMismatchError(
                f"adapter {adapter.path} was trained for language model {adapter.base_model!r} (fingerprint "
                f"{adapter.base_fingerprint[:16]}), not for {name!r} ({fingerprint[:16]})")
        fingerprint = combined_fingerprint(fingerprint, adapter.fingerprint)
    # the converting code's digest is part of the name: semzip versions that share a cache keep their own
    # conversions instead of replacing each other's on every load
    tag = f"int{ARITH_VERSION}-{code_digest(*CONVERT_CODE)[:8]}"
    if adapter is not None:
        folder = cache / "models" / f"{name}-{base_fingerprint[:16]}-a{adapter.fingerprint[:12]}-{tag}"
    else:
        folder = cache / "models" / f"{name}-{fingerprint[:16]}-{tag}"
    converted = False
    try:
        config, arrays, meta = load_converted(folder, verify=verify)
        if meta.get("fingerprint") != fingerprint:
            raise ModelMismatchError("stale conversion")
    except ModelMismatchError:
        if folder.exists():  # stale (another semzip, other code) or damaged: replaced by a new conversion
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        if gguf_path is not None:
            config, arrays, tok = convert_gguf(str(gguf_path), adapter)
            control, tokenizer_json = _gguf_tokenizer_info(tok)
            tokens, eos, bos = tok["tokens"], tok["eos"], tok["bos"]
        else:
            config, arrays = convert_safetensors(str(hf_folder), adapter)
            tokens, control, tokenizer_json, eos, bos = _hf_tokenizer_info(hf_folder)
        if adapter is not None:
            unknown = sorted(n for n in adapter.factors if n + ".w" not in arrays)
            if unknown:
                raise ModelMismatchError(f"adapter {adapter.path} adapts weights {name!r} does not have: {unknown[:3]}")
        if len(tokens) > config.vocab:
            raise ModelMismatchError(f"{source}: the tokenizer has {len(tokens)} tokens, the model {config.vocab}")
        tokens = list(tokens) + [""] * (config.vocab - len(tokens))
        info = {"fingerprint": fingerprint, "name": name, "source": source, "eos": int(eos), "bos": int(bos),
                "note": "integer weights converted by semzip; delete this folder to rebuild it"}
        try:
            save_converted(folder, config, arrays, tokens, control, tokenizer_json, info)
            config, arrays, meta = load_converted(folder, verify=False)
        except (OSError, ModelMismatchError) as exc:  # an unwritable cache: use the conversion in memory
            import logging

            logging.getLogger(__name__).warning(
                "could not cache the converted model in %s (%s): converting again on every load", folder, exc)
            meta = {**info, "tokens": tokens, "control": sorted(int(c) for c in control),
                    "tokenizer_json": tokenizer_json}
        converted = True
    lm = IntLanguageModel(name, fingerprint, source, folder, config, arrays, meta, kernel=kernel)
    lm.converted = converted
    lm.adapter = adapter
    lm.base_fingerprint = base_fingerprint
    if adapter is not None and adapter.meta.get("prompt_state", "adapted") == "base":
        lm.base = load_int_language_model(spec, gguf_file, cache_dir, kernel, False, verify)
    lm.load_seconds = time.perf_counter() - t0
    return lm
