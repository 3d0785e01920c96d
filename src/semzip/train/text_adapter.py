"""``semzip text train``: adapt the caption language model to a corpus with low-rank adapters (LoRA).

As ``zstd --train`` builds a dictionary from samples, this trains a small add-on to the caption coder's
language model on a user's captions. The float model (transformers) is trained with ``peft`` LoRA on every
linear layer of every block; the result is written as an integer adapter
(:mod:`semzip.models.intlm.adapter`) that the integer model folds in exactly, so adapted files decode on
any machine like plain ones.

What a run does (docs/text-coding.md, "Adapters"):

- reads the corpus (a text file with one caption per line, a folder of ``.txt`` files, or a CSV column),
  tokenises each caption exactly as the coder will (captions the coder sends as raw bytes are skipped);
- holds out a validation split (``val_fraction``, seeded) and reports its bits per caption and per
  character after every epoch, with the training split's;
- trains with AdamW, stops early when validation has not improved for ``patience`` epochs, and keeps the
  best epoch's weights;
- checkpoints after every epoch into ``out_dir`` (``--resume`` continues an interrupted run: the same
  shuffles, the same result up to float rounding);
- exports the adapter (safetensors, int16 factors, the prompt and the run's figures in its metadata) and
  measures the exact coded size of the validation captions with the adapted integer model.

The model reads the coder's prompt before each caption (``prompt``, default the plain coder's few-shot
prompt). With ``prompt_state = "base"`` (default) the prompt's states come from the base model, as in
coding (:meth:`~semzip.models.intlm.loader.IntLanguageModel.prompt_state`): only the last prompt token and
the caption pass through the adapted model, so a long prompt costs nothing per training step. With
``"adapted"`` the whole prompt goes through the adapted model (for short prompts).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import random
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semzip.errors import InvalidInputError
from semzip.format import atomic_file, atomic_write

__all__ = ["AdapterConfig", "AdapterResult", "load_adapter_config", "read_corpus", "train_adapter"]

DEFAULT_PROMPT = ""  # "": the plain coder's prompt (semzip.codecs.text.PROMPT_V1)
CHECKPOINT = "checkpoint"


@dataclass
class AdapterConfig:
    """Everything a run needs. A TOML file with these keys (unknown keys are refused) or CLI flags set them."""

    model: str = "smollm2-135m"
    rank: int = 8
    alpha: float = 0.0  # LoRA scaling alpha / rank; 0 means alpha = rank (scaling 1)
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "up_proj", "down_proj"])
    prompt: str = DEFAULT_PROMPT
    prompt_state: str = "base"  # base: prompt states from the base model; adapted: through the adapter
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.0  # LoRA dropout on the adapters' inputs while training
    batch_size: int = 16
    epochs: int = 4
    patience: int = 1
    val_fraction: float = 0.1
    max_captions: int = 0  # 0: all
    seed: int = 0
    threads: int = 0  # 0: all cores
    device: str = "cpu"
    out_dir: str = ""  # checkpoints and log; default: <output>.run/
    column: str = ""  # CSV column (default: "caption", else the only column)

    def validate(self) -> None:
        checks = [
            (isinstance(self.rank, int) and 1 <= self.rank <= 256, f"rank must be in [1, 256], got {self.rank!r}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, got {self.lr!r}"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size must be a positive int"),
            (isinstance(self.epochs, int) and self.epochs >= 1, "epochs must be a positive int"),
            (isinstance(self.patience, int) and self.patience >= 0, "patience must be a non-negative int"),
            (0.0 < self.val_fraction < 0.9, f"val_fraction must be in (0, 0.9), got {self.val_fraction!r}"),
            (self.alpha >= 0, "alpha must be >= 0"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout!r}"),
            (isinstance(self.threads, int) and self.threads >= 0, "threads must be a non-negative int"),
            (self.device in ("cpu", "cuda"), f"device must be cpu or cuda, got {self.device!r}"),
            (self.prompt_state in ("base", "adapted"), f"prompt_state must be base or adapted, got {self.prompt_state!r}"),
            (bool(self.targets) and set(self.targets) <= {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"},
             f"targets must be among q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj: {self.targets}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InvalidInputError(msg)

    @property
    def scaling(self) -> float:
        return (self.alpha or self.rank) / self.rank


def load_adapter_config(path: str | os.PathLike | None, **overrides: Any) -> AdapterConfig:
    """The config of a TOML file (or the defaults), with the non-None ``overrides`` applied and validated."""
    cfg = AdapterConfig()
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise InvalidInputError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInputError(f"{p}: not a readable TOML file ({exc})") from None
        names = {f.name for f in dataclasses.fields(AdapterConfig)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise InvalidInputError(f"{p}: unknown keys {unknown} (known: {sorted(names)})")
        for k, v in raw.items():
            default = getattr(cfg, k)
            if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if type(v) is not type(default):
                raise InvalidInputError(f"{p}: {k} must be a {type(default).__name__}, got {v!r}")
            setattr(cfg, k, v)
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    cfg.validate()
    return cfg


# ------------------------------------------------------------------------------------------------ corpus


def read_corpus(path: str | os.PathLike, column: str = "") -> list[str]:
    """Captions from a text file (one per line), a folder of ``.txt`` files (lines of each, sorted by name)
    or a ``.csv`` file (``column``, default ``caption`` or the only column). Empty lines are skipped."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.txt") if f.is_file())
        if not files:
            raise InvalidInputError(f"{p}: no .txt files in this folder")
        out: list[str] = []
        for f in files:
            out += _lines(f)
        return out
    if not p.is_file():
        raise InvalidInputError(f"corpus not found: {p}")
    if p.suffix.lower() == ".csv":
        return _csv_column(p, column)
    if column:
        raise InvalidInputError("--column applies to a CSV corpus")
    return _lines(p)


def _text(p: Path) -> str:
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _lines(p: Path) -> list[str]:
    return [line.rstrip("\r") for line in _text(p).split("\n") if line.strip()]


def _csv_column(p: Path, column: str) -> list[str]:
    rows = list(csv.reader(_text(p).splitlines()))
    if not rows:
        raise InvalidInputError(f"{p}: empty CSV file")
    head = rows[0]
    if column:
        if column not in head:
            raise InvalidInputError(f"{p}: no column {column!r} (columns: {head})")
        idx = head.index(column)
    elif "caption" in head:
        idx = head.index("caption")
    elif len(head) == 1:
        idx = 0
    else:
        raise InvalidInputError(f"{p}: which column holds the captions? pass --column (columns: {head})")
    return [r[idx] for r in rows[1:] if len(r) > idx and r[idx].strip()]


# -------------------------------------------------------------------------------------------------- run


@dataclass
class AdapterResult:
    """What a run produced and measured."""

    path: Path
    fingerprint: str
    size_bytes: int
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    n_train: int
    n_val: int
    skipped: int
    val_payload_bytes: float  # exact coded payload per validation caption, adapted integer model
    base_val_payload_bytes: float  # the same with the plain model


def _sequences(coder: Any, captions: Sequence[str]) -> tuple[list[tuple[str, list[int]]], int]:
    """(caption, token ids + terminator) as the coder codes them; raw/bytes-mode captions are skipped."""
    from semzip.codecs.text import MODE_LINE, MODE_TEXT

    out, skipped = [], 0
    for c in captions:
        try:
            mode, ids = coder.symbols(c)
        except InvalidInputError:
            skipped += 1
            continue
        if mode not in (MODE_LINE, MODE_TEXT) or len(ids) > coder.max_tokens:
            skipped += 1
            continue
        out.append((c, [*ids, coder.newline_id if mode == MODE_LINE else coder.eos_id]))
    return out, skipped


def _split(seqs: list[Any], cfg: AdapterConfig) -> tuple[list[Any], list[Any]]:
    order = list(range(len(seqs)))
    random.Random(cfg.seed).shuffle(order)
    n_val = max(1, round(cfg.val_fraction * len(seqs)))
    return [seqs[i] for i in order[n_val:]], [seqs[i] for i in order[:n_val]]


def _corpus_digest(captions: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(captions).encode("utf-8")).hexdigest()[:16]


def train_adapter(corpus: Sequence[str], output: str | os.PathLike, cfg: AdapterConfig, *, resume: bool = False,
                  say: Callable[[str], None] = print, progress: Callable[[int, int], None] | None = None,
                  force: bool = False) -> AdapterResult:
    """Train, checkpoint and export an adapter for ``cfg.model`` on ``corpus`` (captions) to ``output``.

    ``say`` gets one line per stage and per epoch; ``progress(done, total)`` is called after every batch.
    """
    cfg.validate()
    output = Path(output)
    if output.exists() and not force:
        raise InvalidInputError(f"{output} exists; pass --force to replace it")
    if not output.parent.is_dir():
        raise InvalidInputError(f"output folder does not exist: {output.parent}")
    run_dir = Path(cfg.out_dir).expanduser() if cfg.out_dir else output.with_name(output.name + ".run")
    ckpt = run_dir / CHECKPOINT
    if resume and not (ckpt / "state.json").is_file():
        raise InvalidInputError(f"--resume: no checkpoint in {ckpt}; start without --resume")
    if not resume and (ckpt / "state.json").is_file() and not force:
        raise InvalidInputError(f"{ckpt} holds a checkpoint: pass --resume to continue it, or --force to start over")
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InvalidInputError("--device cuda: no CUDA device is available here")
    if len(corpus) < 2:
        raise InvalidInputError(f"the corpus has {len(corpus)} caption(s); training needs at least 2 (hundreds help)")

    from semzip.codecs.text import IntTextCoder
    from semzip.models.intlm import load_int_language_model

    t_start = time.monotonic()
    captions = list(corpus)
    if cfg.max_captions:
        captions = captions[: cfg.max_captions]
    int_lm = load_int_language_model(cfg.model)
    base_coder = IntTextCoder(int_lm, prompt=cfg.prompt or None)
    if len(base_coder.prompt_ids) < 2 and cfg.prompt_state == "base":
        raise InvalidInputError("prompt_state = base needs a prompt of at least 2 tokens")
    seqs, skipped = _sequences(base_coder, captions)
    if len(seqs) < 2:
        raise InvalidInputError("fewer than 2 captions of the corpus can be coded as text; nothing to train on")
    train, val = _split(seqs, cfg)
    say(f"corpus: {len(captions)} captions ({skipped} skipped: not codable as text), {len(train)} train, "
        f"{len(val)} validation")

    trainer = _Trainer(cfg, base_coder.prompt_ids)
    say(f"model {int_lm.name}: rank-{cfg.rank} adapters on {', '.join(cfg.targets)}; prompt of "
        f"{len(base_coder.prompt_ids)} tokens ({cfg.prompt_state} model states)")
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_val": None, "best_epoch": 0, "bad_epochs": 0,
                             "seconds": 0.0, "config": asdict(cfg), "corpus": _corpus_digest(captions)}
    if resume:
        state = trainer.load(ckpt, state)
        say(f"resumed after epoch {state['epoch']} of {cfg.epochs}")
    else:
        val0 = trainer.evaluate([s for _, s in val])
        state["history"].append({"epoch": 0, "train_bits": None, "val_bits": val0,
                                 "val_bpc": _bpc(val0, val)})
        state["best_val"] = val0
        say(f"epoch 0 (base model): validation {val0:.2f} bits/caption, {_bpc(val0, val):.3f} bits/char")
    steps = math.ceil(len(train) / cfg.batch_size)
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if state["bad_epochs"] > cfg.patience:
            break
        t0 = time.monotonic()
        order = list(range(len(train)))
        random.Random(cfg.seed * 1000003 + epoch).shuffle(order)
        bits = 0.0
        for b in range(steps):
            batch = [train[i][1] for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
            bits += trainer.step(batch)
            if progress is not None:
                progress(b + 1, steps)
        train_bits = bits / len(train)
        val_bits = trainer.evaluate([s for _, s in val])
        seconds = time.monotonic() - t0
        state["seconds"] += seconds
        state["history"].append({"epoch": epoch, "train_bits": train_bits, "val_bits": val_bits,
                                 "val_bpc": _bpc(val_bits, val), "seconds": seconds})
        better = val_bits < state["best_val"] - 1e-3
        if better:
            state["best_val"], state["best_epoch"], state["bad_epochs"] = val_bits, epoch, 0
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        trainer.save(ckpt, state, best=better)
        say(f"epoch {epoch}/{cfg.epochs}: train {train_bits:.2f}, validation {val_bits:.2f} bits/caption "
            f"({_bpc(val_bits, val):.3f} bits/char){' best' if better else ''}, {seconds:.0f} s")
    if state["best_epoch"] == 0:
        say("warning: no epoch improved on the base model; the adapter holds the last epoch's weights")
    factors = trainer.export_factors(ckpt, best=state["best_epoch"] > 0)
    from semzip.models.intlm.adapter import load_adapter, save_adapter

    meta = {"trained": {"corpus_captions": len(captions), "train": len(train), "val": len(val),
                        "skipped": skipped, "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
                        "val_bits_per_caption": round(state["best_val"], 3), "seconds": round(state["seconds"], 1),
                        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out_dir",)},
                        "corpus_sha256_16": state["corpus"]}}
    meta["prompt_state"] = cfg.prompt_state
    fp = save_adapter(output, factors, base_model=int_lm.name, base_fingerprint=int_lm.fingerprint,
                      prompt=base_coder.prompt, prompt_ids=base_coder.prompt_ids, meta=meta)
    adapter = load_adapter(output)
    say(f"wrote {output} ({output.stat().st_size} bytes, fingerprint {fp[:16]}); measuring the exact coded size "
        "of the validation captions")
    adapted = IntTextCoder(load_int_language_model(cfg.model, adapter=adapter, kernel=_kernel()))
    if adapted.prompt_ids != base_coder.prompt_ids:
        raise InvalidInputError("the adapter's prompt does not read back as trained (a tokenizer problem?)")
    base_coder.lm.use_kernel(_kernel())
    texts = [c for c, _ in val]
    val_bytes = sum(map(len, adapted.compress_many(texts))) / len(texts)
    base_bytes = sum(map(len, base_coder.compress_many(texts))) / len(texts)
    say(f"validation payload: {val_bytes:.2f} B per caption adapted, {base_bytes:.2f} B with the plain model "
        f"and this prompt")
    (run_dir / "result.json").write_text(json.dumps({**state, "val_payload_bytes": val_bytes,
                                                     "base_val_payload_bytes": base_bytes, "adapter": str(output),
                                                     "fingerprint": fp}, indent=1, default=str))
    return AdapterResult(output, fp, output.stat().st_size, state["history"], state["best_epoch"],
                         time.monotonic() - t_start, len(train), len(val), skipped, val_bytes, base_bytes)


def _cache_kw(model: Any, cache: Any) -> dict[str, Any]:
    """The cache keyword of this transformers version (``cache``; ``past_key_values`` before it)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    if cache is None:
        return {}
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def _kernel() -> str:
    import importlib.util

    return "torch" if importlib.util.find_spec("torch") is not None else "numpy"


def _bpc(bits_per_caption: float, items: Sequence[tuple[str, Any]]) -> float:
    chars = sum(len(c) + 1 for c, _ in items) / max(1, len(items))  # + the newline a caption file ends with
    return bits_per_caption / chars


class _Trainer:
    """The float model with LoRA layers, its optimiser and checkpoints (torch, transformers and peft)."""

    def __init__(self, cfg: AdapterConfig, prompt_ids: Sequence[int]) -> None:
        try:
            import torch
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            from semzip.errors import MissingDependencyError

            raise MissingDependencyError("training adapters needs torch and peft: pip install 'semzip[text]'") from exc
        from semzip.models.language import load_language_model

        self.torch = torch
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        lm = load_language_model(cfg.model)
        self.config = lm.model.config
        base = lm.model.float().to(cfg.device)
        lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.rank * cfg.scaling, lora_dropout=cfg.dropout,
                          target_modules=list(cfg.targets), bias="none")
        import warnings

        with warnings.catch_warnings():  # peft calls a transformers method that transformers deprecated
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            self.model = get_peft_model(base, lcfg)
        self.prompt = [int(i) for i in prompt_ids]
        self.state: list[tuple[Any, Any]] | None = None
        if cfg.prompt_state == "base":  # the prompt's K/V (all but its last token) from the base model, once
            causal = self.model.get_base_model()
            with torch.no_grad(), self.model.disable_adapter():
                out = causal.model(input_ids=torch.tensor([self.prompt[:-1]], device=cfg.device), use_cache=True,
                                   **_cache_kw(causal.model, None))
            cache = getattr(out, "cache", None) or out.past_key_values
            layers = getattr(cache, "layers", None)
            self.state = [(lay.keys, lay.values) for lay in layers] if layers is not None else [
                (k, v) for k, v in cache]
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _nll(self, seqs: Sequence[Sequence[int]]) -> Any:
        """Summed negative log-likelihood (nats) of ``seqs`` after the prompt."""
        if self.state is not None:
            return self._nll_after_state(seqs)
        torch, P = self.torch, self.prompt
        n = len(P) + max(map(len, seqs)) - 1
        inp = torch.zeros((len(seqs), n), dtype=torch.long)
        lab = torch.full((len(seqs), n), -100, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            x = P + list(s[:-1])
            inp[i, :len(x)] = torch.tensor(x)
            lab[i, len(P) - 1:len(P) - 1 + len(s)] = torch.tensor(list(s))
            mask[i, :len(x)] = 1
        dev = self.cfg.device
        causal = self.model.get_base_model()
        hidden = causal.model(input_ids=inp.to(dev), attention_mask=mask.to(dev)).last_hidden_state
        lab = lab.to(dev)
        keep = lab >= 0  # the output layer only where a token is predicted (not over the prompt)
        logits = causal.lm_head(hidden[keep]).float()
        return torch.nn.functional.cross_entropy(logits, lab[keep], reduction="sum")

    def _nll_after_state(self, seqs: Sequence[Sequence[int]]) -> Any:
        """As :meth:`_nll`, continuing the base model's prompt state: the inputs are the last prompt token
        and each caption but its last token."""
        from transformers import DynamicCache

        torch, P, dev = self.torch, self.prompt, self.cfg.device
        b, n, p = len(seqs), max(map(len, seqs)), len(self.prompt) - 1
        inp = torch.zeros((b, n), dtype=torch.long)
        lab = torch.full((b, n), -100, dtype=torch.long)
        mask = torch.zeros((b, p + n), dtype=torch.long)
        mask[:, :p] = 1
        for i, s in enumerate(seqs):
            inp[i, :len(s)] = torch.tensor([P[-1], *s[:-1]])
            lab[i, :len(s)] = torch.tensor(list(s))
            mask[i, p:p + len(s)] = 1
        cache = DynamicCache()
        for li, (k, v) in enumerate(self.state):
            cache.update(k.expand(b, -1, -1, -1).clone(), v.expand(b, -1, -1, -1).clone(), li)
        causal = self.model.get_base_model()
        pos = torch.arange(p, p + n, device=dev)[None].expand(b, -1)
        hidden = causal.model(input_ids=inp.to(dev), attention_mask=mask.to(dev), position_ids=pos, use_cache=True,
                              **_cache_kw(causal.model, cache)).last_hidden_state
        lab = lab.to(dev)
        keep = lab >= 0
        logits = causal.lm_head(hidden[keep]).float()
        return torch.nn.functional.cross_entropy(logits, lab[keep], reduction="sum")

    def step(self, seqs: Sequence[Sequence[int]]) -> float:
        """One optimiser step on a batch; returns its bits."""
        self.model.train()
        nll = self._nll(seqs)
        tokens = sum(map(len, seqs))
        (nll / tokens).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(nll.detach()) / math.log(2)

    def evaluate(self, seqs: Sequence[Sequence[int]]) -> float:
        """Mean bits per sequence."""
        self.model.eval()
        total = 0.0
        with self.torch.no_grad():
            for i in range(0, len(seqs), 64):
                total += float(self._nll(seqs[i:i + 64]))
        return total / math.log(2) / len(seqs)

    # checkpoints: lora.safetensors (last), best.safetensors, optim.pt, state.json written last

    def _lora_state(self) -> dict[str, Any]:
        return {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items() if "lora_" in k}

    def save(self, folder: Path, state: dict[str, Any], best: bool) -> None:
        from safetensors.torch import save

        folder.mkdir(parents=True, exist_ok=True)
        lora = save(self._lora_state())
        atomic_write(folder / "lora.safetensors", lora)
        if best:
            atomic_write(folder / "best.safetensors", lora)
        with atomic_file(folder / "optim.pt") as fh:
            self.torch.save({"optim": self.opt.state_dict(), "rng": self.torch.get_rng_state()}, fh)
        atomic_write(folder / "state.json", json.dumps(state, indent=1).encode("utf-8"))  # last: complete

    def load(self, folder: Path, fresh: dict[str, Any]) -> dict[str, Any]:
        from safetensors.torch import load_file

        state = json.loads((folder / "state.json").read_text())
        if state.get("corpus") != fresh["corpus"]:
            raise InvalidInputError("--resume: the checkpoint was trained on another corpus")
        keep = ("epochs", "patience", "out_dir")
        saved = {**asdict(AdapterConfig()), **state["config"]}  # keys added since the checkpoint: defaults
        if {k: v for k, v in saved.items() if k not in keep} != \
                {k: v for k, v in fresh["config"].items() if k not in keep}:
            raise InvalidInputError("--resume: the checkpoint's settings differ from this run's (only epochs and "
                                    "patience may change)")
        state["config"] = fresh["config"]
        self.model.load_state_dict(load_file(str(folder / "lora.safetensors")), strict=False)
        extra = self.torch.load(folder / "optim.pt", weights_only=True)
        self.opt.load_state_dict(extra["optim"])
        self.torch.set_rng_state(extra["rng"])
        return state

    def export_factors(self, folder: Path, best: bool) -> dict[str, tuple[Any, Any]]:
        """``blk.<i>.<target>`` -> (A, B * scaling) as float64 numpy, B's q/k rows in the integer model's order."""
        import numpy as np
        from safetensors.torch import load_file

        from semzip.models.intlm.adapter import HF_TARGETS
        from semzip.models.intlm.convert import hf_unpermute

        sd = load_file(str(folder / ("best.safetensors" if best else "lora.safetensors")))
        heads = {"attn_q": self.config.num_attention_heads,
                 "attn_k": getattr(self.config, "num_key_value_heads", None) or self.config.num_attention_heads}
        out: dict[str, tuple[Any, Any]] = {}
        for key, a in sd.items():
            if ".lora_A." not in key:
                continue
            b = sd[key.replace(".lora_A.", ".lora_B.")]
            parts = key.split(".")
            layer = int(parts[parts.index("layers") + 1])
            target = HF_TARGETS[next(p for p in parts if p in HF_TARGETS)]
            bm = b.double().numpy() * self.cfg.scaling
            if target in heads:
                bm = hf_unpermute(bm, int(heads[target]))
            out[f"blk.{layer}.{target}"] = (a.double().numpy(), np.ascontiguousarray(bm))
        return out
