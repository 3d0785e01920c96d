"""Short content hashes of model weights, recorded in archive headers so a mismatched model is refused.

Two sources: weight files on disk (hashed streaming, in sorted relative-path order) and in-memory torch
modules (their ``state_dict`` tensors in sorted key order). Nothing is cached on disk; an in-process cache
keyed by (path, size, mtime) avoids re-reading multi-GB checkpoints within one run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semzip.errors import MissingModelError

FINGERPRINT_HEX = 16
"""Length of a fingerprint in hex characters (64 bits)."""

WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".gguf",
    ".npz",
    ".msgpack",
    ".h5",
    ".onnx",
)
"""File suffixes counted as weights when a folder is fingerprinted (configs and tokenizers are not)."""

_CHUNK = 1 << 20
_cache: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    hit = _cache.get(key)
    if hit is None:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        hit = _cache[key] = h.hexdigest()
    return hit


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """Weight files under ``folder`` (recursive), sorted by relative path."""
    root = Path(folder)
    files = [p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(WEIGHT_SUFFIXES)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def fingerprint_path(path: str | os.PathLike) -> str:
    """Fingerprint of a weight file, or of all weight files in a folder (relative names and bytes)."""
    p = Path(path).expanduser()
    if p.is_file():
        return _file_digest(p)[:FINGERPRINT_HEX]
    if not p.is_dir():
        raise MissingModelError(f"cannot fingerprint {p}: no such file or folder")
    files = weight_files(p)
    if not files:
        raise MissingModelError(
            f"cannot fingerprint {p}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) inside"
        )
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(p).as_posix().encode("utf-8") + b"\0")
        h.update(bytes.fromhex(_file_digest(f)))
    return h.hexdigest()[:FINGERPRINT_HEX]


def fingerprint_state_dict(state_dict: Mapping[str, Any]) -> str:
    """Fingerprint of torch tensors: key, dtype, shape and raw bytes, in sorted key order."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{key}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:FINGERPRINT_HEX]


def fingerprint_module(module: Any) -> str:
    """Fingerprint of a torch module's (or a diffusers pipeline component's) state_dict."""
    return fingerprint_state_dict(module.state_dict())


def fingerprint_loaded(path: str | os.PathLike, module: Any) -> str:
    """Fingerprint of a model loaded from ``path``: its weight files when ``path`` is a local folder (cheap,
    cached by file), else (a hub id) the loaded module's state_dict."""
    local = Path(path).expanduser()
    return fingerprint_path(local) if local.is_dir() else fingerprint_module(module)


def fingerprint_text(text: str) -> str:
    """Fingerprint of a definition string, for project-defined models that have no weights."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:FINGERPRINT_HEX]
