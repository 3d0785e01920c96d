"""``semzip text``: lossless caption coding with a language model (SmolLM2-135M by default).

    semzip text compress caption.txt                 -> caption.txt.smzc   (one caption per file)
    semzip text compress a.txt b.txt -o out/          (into an existing folder; the model loads once for all files)
    semzip text compress captions.txt --lines        -> one record per line, in one .smzc file
    semzip text decompress caption.txt.smzc          -> caption.txt
    semzip text train captions.txt -o mine.adapter    (adapt the model to a corpus; then --adapter mine.adapter)

A caption file is the compact layout of :mod:`semzip.format.compact` (payload + 4 bytes). A text file's
single final newline is kept as a header flag rather than coded. Files are written with text codec 2 (the
integer-exact model: they decode on any machine); codec-1 files (the float model, written before) still
decode, where they decoded before. All captions of one call go through the model in batches. Everything is
encoded in memory first and each output is written atomically: an error leaves no output file behind.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from semzip.cli.console import App, alias
from semzip.cli.console import err as _err
from semzip.cli.console import friendly as _friendly
from semzip.cli.console import progress as _progress
from semzip.errors import InvalidInputError, SemzipError

SUFFIX = ".smzc"

text_app = App(
    name="text",
    help=(
        "Lossless caption coding with a small language model: a COCO caption costs ~11 bytes per file, header included "
        f"(files end in {SUFFIX}). The model runs in exact integer arithmetic, so files decode to the same text on any "
        "machine (CPU, GPU, any thread count). Decoding needs the same model (and adapter); files made before (codec 1) "
        "still decode. 'semzip text train' adapts the model to your own captions."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


AUTO_TORCH_MIN = 32  # captions from which the torch int8 kernel pays for importing torch (same results)


@functools.lru_cache(maxsize=4)
def _coder(model: str, codec: int = 2, device: str = "cpu", work: int = 1, adapter: str | None = None):
    """The coder for ``codec`` (2: integer model, 1: float model, read-only use) on ``device``
    (:func:`semzip.codecs.image_text.caption_coder`, with the kernel that suits the device and the work)."""
    from semzip.codecs.image_text import caption_coder

    return caption_coder(model, codec, kernel=None if codec == 1 else _kernel(device, work), adapter=adapter)


def _adapter_arg(adapter: Path | None) -> str | None:
    """``--adapter`` checked before any work (exists, is an adapter file)."""
    if adapter is None:
        return None
    from semzip.models.intlm.adapter import load_adapter

    load_adapter(adapter)  # validates; cheap
    return str(adapter.resolve())


def _kernel(device: str, work: int) -> str:
    """Which exact matrix-product kernel to use: results are identical, only speed differs."""
    import os

    if os.environ.get("SEMZIP_LM_KERNEL"):
        return os.environ["SEMZIP_LM_KERNEL"]
    if device == "cuda":
        return "cuda"
    if device != "cpu":
        raise InvalidInputError(f"--device must be cpu or cuda, got {device!r}")
    if work >= AUTO_TORCH_MIN:
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            return "torch"
    return "numpy"


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InvalidInputError(f"no such file: {path}")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _split_final_newline(text: str) -> tuple[str, bool]:
    return (text[:-1], True) if text.endswith("\n") else (text, False)


def _targets(files: list[Path], out: Path | None, out_dir: Path | None, name: Callable[[Path], str],
             force: bool) -> list[Path]:
    """Output paths, checked before any work: no overwrites without --force, no input overwritten."""
    if out is not None and out_dir is not None:
        raise InvalidInputError("pass either -o/--output or --out-dir, not both")
    if out is not None and len(files) != 1:
        raise InvalidInputError("-o/--output names a file for one input; for several, give it an existing folder")
    if out_dir is not None and not out_dir.is_dir():
        raise InvalidInputError(f"output folder does not exist: {out_dir}")
    targets = [out] if out is not None else [
        (out_dir if out_dir is not None else f.parent) / name(f) for f in files
    ]
    inputs = {f.resolve() for f in files}
    seen: set[Path] = set()
    for t in targets:
        r = t.resolve()
        if r in inputs:
            raise InvalidInputError(f"refusing to overwrite the input {t}")
        if r in seen:
            raise InvalidInputError(f"two inputs would both be written to {t}")
        seen.add(r)
        if t.exists() and not force:
            raise InvalidInputError(f"{t} exists; pass --force to replace it")
        if not t.parent.is_dir():
            raise InvalidInputError(f"output folder does not exist: {t.parent}")
    return targets


def _outputs(output: Path | None, out_: Path | None, out_dir: Path | None) -> tuple[Path | None, Path | None]:
    """(file, folder) from -o/--output (an existing folder is a folder) and the older --out, --out-dir."""
    output = alias(output, out_, "-o/--output", "--out")
    if output is not None and out_dir is None and output.is_dir():
        return None, output
    return output, out_dir


def _decoded_name(path: Path) -> str:
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) and len(path.name) > len(SUFFIX) \
        else path.name + ".txt"


FilesArg = Annotated[list[Path], typer.Argument(help="input files", show_default=False)]
OutOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="output file (one input), or an existing folder for the outputs (default: beside "
    "each input)", show_default=False)]
LegacyOutOpt = Annotated[Path | None, typer.Option("--out", hidden=True)]  # older spelling of --output
OutDirOpt = Annotated[Path | None, typer.Option("--out-dir", "-d", hidden=True)]  # older: -o FOLDER
ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="language model: registry name, a llama .gguf file or a transformers Llama folder")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="replace existing output files")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="no summary line")]
LegacyQuietOpt = Annotated[bool, typer.Option("-q", hidden=True)]  # older short form of --quiet (-q: quality)


DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, or cuda (a GPU decodes to the same bytes)")]
AdapterOpt = Annotated[Path | None, typer.Option(
    "--adapter", "-a", help="an adapter made by 'semzip text train' (decoding needs the same file)",
    show_default=False)]


@text_app.command("compress")
@_friendly
def compress(
    files: FilesArg,
    output: OutOpt = None,
    lines: Annotated[bool, typer.Option("--lines", "-l", help="one caption per line: one record per line")] = False,
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    device: DeviceOpt = "cpu",
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    out_: LegacyOutOpt = None,
    out_dir: OutDirOpt = None,
    q: LegacyQuietOpt = False,
) -> None:
    """Compress UTF-8 caption files (each file one caption, or one per line with --lines)."""
    out, out_dir = _outputs(output, out_, out_dir)
    quiet = quiet or q
    targets = _targets(files, out, out_dir, lambda f: f.name + SUFFIX, force)
    texts = [_split_final_newline(_read_text(f)) for f in files]
    adapter_path = _adapter_arg(adapter)
    jobs = [(t.split("\n") if lines else [t], lines, nl) for t, nl in texts]
    n = sum(len(j[0]) for j in jobs)
    coder = _coder(model, 2, device, n, adapter_path)
    total_in = sum(len(t.encode("utf-8")) + nl for t, nl in texts)
    with _progress(n, "compressing captions") as advance:
        results = coder.encode_files(jobs, progress=advance)
    from semzip.format import atomic_write

    for target, data in zip(targets, results, strict=True):
        atomic_write(target, data)
    if not quiet:
        total_out = sum(map(len, results))
        _err.print(f"{len(files)} file(s), {n} caption(s): {total_in} -> {total_out} bytes "
                   f"({8 * total_out / max(1, total_in):.2f} bits per input byte)", highlight=False)


@text_app.command("decompress")
@_friendly
def decompress(
    files: FilesArg,
    output: OutOpt = None,
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    device: DeviceOpt = "cpu",
    force: ForceOpt = False,
    out_: LegacyOutOpt = None,
    out_dir: OutDirOpt = None,
) -> None:
    """Decompress caption files (single captions and --lines files alike) to the exact original text.
    Files written with --adapter need the same adapter file here."""
    out, out_dir = _outputs(output, out_, out_dir)
    from semzip.format import atomic_write
    from semzip.format.compact import read_header

    targets = _targets(files, out, out_dir, _decoded_name, force)
    adapter_path = _adapter_arg(adapter)
    blobs = []
    for f in files:
        if not f.is_file():
            raise InvalidInputError(f"no such file: {f}")
        data = f.read_bytes()
        try:
            header = read_header(data)
        except SemzipError as exc:
            raise type(exc)(f"{f}: {exc}") from None
        if header.codec not in (1, 2):
            raise InvalidInputError(f"{f}: caption codec {header.codec} is unknown to this semzip (upgrade it)")
        blobs.append((f, data, header))
    results: list[bytes | None] = [None] * len(blobs)
    total = sum(h.count or 1 for _, _, h in blobs)
    with _progress(total, "decompressing captions") as advance:
        for codec in (2, 1):
            mine = [i for i, (_, _, h) in enumerate(blobs) if h.codec == codec]
            if not mine:
                continue
            coder = _coder(model, codec, device, sum(blobs[i][2].count or 1 for i in mine),
                           adapter_path if codec == 2 else None)
            texts = coder.decode_files([blobs[i][1] for i in mine], progress=advance)
            for i, text in zip(mine, texts, strict=True):
                if isinstance(text, SemzipError):
                    raise type(text)(f"{blobs[i][0]}: {text}")
                results[i] = text.encode("utf-8")
    for target, data in zip(targets, results, strict=True):
        atomic_write(target, data)


@text_app.command("train")
@_friendly
def train(
    corpus: Annotated[Path, typer.Argument(
        help="captions: a text file (one per line), a folder of .txt files, or a .csv file", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="the adapter file to write (e.g. captions.adapter)",
                                         show_default=False)],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="a TOML file of training settings (keys as the options below)", show_default=False)] = None,
    model: ModelOpt = "smollm2-135m",
    column: Annotated[str | None, typer.Option("--column", help="CSV column of the captions (default: caption)",
                                               show_default=False)] = None,
    rank: Annotated[int | None, typer.Option("--rank", help="adapter rank (default: 8)", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="most epochs (default: 4)", show_default=False)] = None,
    patience: Annotated[int | None, typer.Option(
        "--patience", help="stop after this many epochs without a better validation (default: 1)",
        show_default=False)] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="learning rate (default: 0.001)", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="captions per step (default: 16)",
                                                   show_default=False)] = None,
    val_fraction: Annotated[float | None, typer.Option(
        "--val-fraction", help="held-out share for validation (default: 0.1)", show_default=False)] = None,
    max_captions: Annotated[int | None, typer.Option(
        "--max-captions", help="use only the first N captions (default: all)", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="seed of the split, shuffles and init (default: 0)",
                                             show_default=False)] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cpu)", show_default=False)] = None,
    run_dir: Annotated[Path | None, typer.Option(
        "--run-dir", help="checkpoints and result.json (default: OUTPUT.run/)", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the checkpoint in the run folder")] = False,
    force: ForceOpt = False,
) -> None:
    """Adapt the caption language model to a corpus (low-rank adapters, like 'zstd --train' for dictionaries).

    Holds out a validation split, reports bits per caption and per character after every epoch, stops early, checkpoints every epoch (--resume continues) and writes a small safetensors adapter (its fingerprint is its sha256).

    Use it with 'semzip text compress/decompress --adapter FILE': decoding needs the same file, and files stay integer-exact on every machine.
    """
    import logging

    from semzip.train.text_adapter import load_adapter_config, read_corpus, train_adapter

    cfg = load_adapter_config(config, model=None if model == "smollm2-135m" and config else model, column=column,
                              rank=rank, epochs=epochs, patience=patience, lr=lr, batch_size=batch_size,
                              val_fraction=val_fraction, max_captions=max_captions, seed=seed, device=device,
                              out_dir=str(run_dir) if run_dir is not None else None)
    captions = read_corpus(corpus, cfg.column)
    log = logging.getLogger("semzip.text.train")

    def say(line: str) -> None:
        _err.print(line, highlight=False, markup=False)
        log.info(line)

    epoch = contextlib.ExitStack()  # the shared progress (bar or plain lines), one per epoch's optimiser steps
    advance: list = []

    def progress(done: int, total: int) -> None:
        if not advance:
            advance.append(epoch.enter_context(_progress(total, "training steps")))
        advance[0](1)
        if done == total:
            advance.clear()
            epoch.close()

    with epoch:
        result = train_adapter(captions, output, cfg, resume=resume, say=say, progress=progress, force=force)
    say(f"adapter {result.path}: {result.size_bytes} bytes, best epoch {result.best_epoch}, "
        f"{result.seconds:.0f} s in this run; validation payload {result.val_payload_bytes:.2f} B per caption "
        f"(plain model {result.base_val_payload_bytes:.2f} B)")
    if result.val_payload_bytes >= result.base_val_payload_bytes:
        say(f"warning: on these {result.n_val} validation captions the adapter codes no smaller than the plain "
            "model; more captions or epochs may help, or keep using the plain model")
