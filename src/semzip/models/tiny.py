"""Tiny random-weight models of the real architectures, to run semzip's real backends offline.

Every builder here makes a model with **random weights: it exercises the code path, and means nothing**.
Its captions are word salad, its images noise; what it proves is that a backend loads a real
transformers / diffusers folder of that architecture, runs it, batches it and fingerprints it the way it
would the published weights (the ``get_dummy_components`` pattern of diffusers' own tests). The tests use
them, and so can benchmarks and users who want to try a backend on a machine without the weights::

    from semzip.models.tiny import save_tiny_clip
    from semzip.models.registry import load_encoder

    enc = load_encoder(f"hf:{save_tiny_clip('/tmp/tiny-clip')}", device="cpu")

(``semzip demo`` uses the thumbnail encoder and generator instead: they need no weights and render
recognisable pictures, where random weights would render noise.)

Each builder seeds torch itself, so the same arguments give the same weights. torch, transformers and
diffusers are imported inside the functions (``pip install 'semzip[clip]'`` or ``'semzip[diffusion]'``).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from semzip._optional import require

__all__ = [
    "CAT_MERGES",
    "CHAT_TEMPLATE",
    "CHAT_WORDS",
    "EMBED_DIM",
    "PEAKED_LLAMA",
    "TINY_TOWER",
    "TINY_VISION",
    "WORDS",
    "in_memory_tokenizers",
    "random_compressai_net",
    "random_open_clip",
    "save_tiny_blip",
    "save_tiny_clip",
    "save_tiny_clip_vision",
    "save_tiny_controlnet",
    "save_tiny_kandinsky",
    "save_tiny_llama",
    "save_tiny_llava",
    "save_tiny_sd_img2img",
    "save_tiny_stable_unclip",
    "tiny_clip_tokenizer",
    "tiny_llama",
    "tiny_sd_img2img_parts",
]

EMBED_DIM = 32
"""Width of the image embeddings of the tiny diffusion decoders (Kandinsky 2.2, SD-unCLIP)."""
CAT_MERGES = (("c", "a"), ("ca", "t</w>"))
"""BPE merges of the tiny CLIP tokenizer: the tokens "ca" and "cat</w>"."""
TINY_TOWER = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
"""Width, depth and heads of every tower of the tiny CLIP, BLIP and LLaVA models (text and vision)."""
TINY_VISION = {**TINY_TOWER, "image_size": 32, "patch_size": 8}
"""The vision tower of the tiny CLIP and BLIP models."""
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "cat", "dog", "on", "the", "red", "blue",
         "sky", "house", "tree", "with", "and", "photo", "of"]
"""The 20-word vocabulary of the tiny BLIP captioner."""
CHAT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<image>", "user", ":", "assistant", "a", "cat", "red",
              "sky", "describe", "in", "words", "at", "most", "the", "image"]
"""The 20-word vocabulary of the tiny LLaVA chat captioner."""
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"
)
PEAKED_LLAMA = {  # 2 layers, head_dim 64 with GQA, like SmolLM2's attention; weights drawn wider than usual
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 1, "head_dim": 64, "max_position_embeddings": 512, "bos_token_id": 1,
    "eos_token_id": 2, "tie_word_embeddings": True, "initializer_range": 0.2, "rope_theta": 10000.0,
}
"""Config of :func:`save_tiny_llama`: std 0.2 weights give peaked next-token distributions, like a trained
model's rather than flat ones."""


def _torch() -> Any:
    return require("torch", "torch", "tiny random models")


def _transformers() -> Any:
    return require("transformers", "clip", "tiny random models")


def _diffusers() -> Any:
    return require("diffusers", "diffusion", "tiny random diffusion pipelines")


def _folder(folder: str | os.PathLike) -> Path:
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _image_processor(transformers: Any, family: str) -> Any:
    """``<family>ImageProcessorPil`` where transformers has it (5.x), else ``<family>ImageProcessor``."""
    return getattr(transformers, f"{family}ImageProcessorPil", None) or getattr(transformers, f"{family}ImageProcessor")


def in_memory_tokenizers() -> bool:
    """Whether transformers builds a BERT tokenizer from an in-memory vocabulary (5.x), which the tiny BLIP
    and LLaVA builders need."""
    return "vocab" in inspect.signature(_transformers().BertTokenizer.__init__).parameters


def _needs_in_memory_tokenizers() -> None:
    if not in_memory_tokenizers():
        from semzip.errors import MissingDependencyError

        raise MissingDependencyError("the tiny BLIP and LLaVA models are built for transformers >= 5")


# ------------------------------------------------------------------------------------------------ CLIP


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: one printable character per byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_clip_tokenizer(merges: Any = (), model_max_length: int | None = None) -> tuple[Any, dict[str, int]]:
    """A ``CLIPTokenizer`` over the 256-symbol byte alphabet (each also as a word end ``</w>``), the tokens
    the ``merges`` make (:data:`CAT_MERGES`: "ca" and "cat</w>"), then ``<|startoftext|>`` and
    ``<|endoftext|>``. A made-up vocabulary: it exercises the code path, and means nothing.

    Returns ``(tokenizer, vocab)``. Works with transformers 4 (vocabulary files) and 5 (in-memory vocabulary).
    """
    clip_tokenizer = _transformers().CLIPTokenizer
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    for tok in (*(a + b for a, b in merges), "<|startoftext|>", "<|endoftext|>"):
        vocab[tok] = len(vocab)
    kw = {} if model_max_length is None else {"model_max_length": model_max_length}
    if "vocab" in inspect.signature(clip_tokenizer.__init__).parameters:  # transformers >= 5
        return clip_tokenizer(vocab=vocab, merges=list(merges), **kw), vocab
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        return clip_tokenizer(vocab_file=f"{tmp}/vocab.json", merges_file=f"{tmp}/merges.txt", **kw), vocab


def save_tiny_clip(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A CLIPModel with random weights (2 layers, width 32, 16-d projection, 32 px images) with its image
    processor and ``tiny_clip_tokenizer(CAT_MERGES)``, saved as a transformers folder (``hf:<folder>``).
    Random weights: it exercises the code path, and means nothing."""
    torch, transformers = _torch(), _transformers()
    folder = _folder(folder)
    tok, vocab = tiny_clip_tokenizer(CAT_MERGES)
    torch.manual_seed(seed)
    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            **TINY_TOWER,
            "max_position_embeddings": 16,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config=dict(TINY_VISION),
        projection_dim=16,
    )
    transformers.CLIPModel(config).eval().save_pretrained(folder)
    _image_processor(transformers, "CLIP")(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                                           ).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_tiny_clip_vision(folder: str | os.PathLike, seed: int = 0) -> Path:
    """An image-only CLIPVisionModelWithProjection with random weights (the :data:`TINY_VISION` tower, 16-d
    projection) and its image processor, saved as a transformers folder. Random weights: it exercises the
    code path, and means nothing."""
    torch, transformers = _torch(), _transformers()
    folder = _folder(folder)
    torch.manual_seed(seed)
    cfg = transformers.CLIPVisionConfig(**TINY_VISION, projection_dim=16)
    transformers.CLIPVisionModelWithProjection(cfg).eval().save_pretrained(folder)
    _image_processor(transformers, "CLIP")(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                                           ).save_pretrained(folder)
    return folder


def random_open_clip(model_name: str = "ViT-B-32", seed: int = 0) -> Any:
    """An OpenCLIP architecture with random weights (``open_clip.create_model(..., pretrained=None)``; ViT-B-32
    is OpenCLIP's smallest common one, not tiny: about 150 M parameters). Random weights: it exercises the
    code path, and means nothing."""
    torch = _torch()
    open_clip = require("open_clip", "clip", "OpenCLIP models")
    torch.manual_seed(seed)
    return open_clip.create_model(model_name, pretrained=None)


# ------------------------------------------------------------------------------------------------ captioners


def save_tiny_blip(folder: str | os.PathLike) -> Path:
    """A BlipForConditionalGeneration with random weights and a 20-word BERT tokenizer (:data:`WORDS`), saved
    as a transformers folder (``hf:<folder>`` captioner). Random weights: it exercises the code path, and
    means nothing. Needs transformers >= 5 (:func:`in_memory_tokenizers`)."""
    torch, transformers = _torch(), _transformers()
    _needs_in_memory_tokenizers()
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = transformers.BertTokenizer(vocab=vocab, bos_token="[DEC]", model_max_length=32)
    config = transformers.BlipConfig(
        text_config={
            "vocab_size": len(vocab),
            **TINY_TOWER,
            "max_position_embeddings": 64,
            "encoder_hidden_size": 32,
            "bos_token_id": vocab["[DEC]"],
            "eos_token_id": vocab["[SEP]"],
            "sep_token_id": vocab["[SEP]"],
            "pad_token_id": vocab["[PAD]"],
        },
        vision_config=dict(TINY_VISION),
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    processor = _image_processor(transformers, "Blip")(size={"height": 32, "width": 32})
    transformers.BlipProcessor(image_processor=processor, tokenizer=tok).save_pretrained(folder)
    return Path(folder)


def save_tiny_llava(folder: str | os.PathLike) -> Path:
    """A LlavaForConditionalGeneration with random weights (tiny CLIP vision tower + tiny Llama) and a chat
    template (:data:`CHAT_TEMPLATE`), saved as a transformers folder (``chat:<folder>`` captioner). Random
    weights: it exercises the code path, and means nothing. Needs transformers >= 5."""
    torch, transformers = _torch(), _transformers()
    _needs_in_memory_tokenizers()
    vocab = {w: i for i, w in enumerate(CHAT_WORDS)}
    tok = transformers.BertTokenizer(vocab=vocab, model_max_length=256)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    config = transformers.LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **TINY_TOWER, "image_size": 16, "patch_size": 8,
                       "projection_dim": 32},
        text_config={"model_type": "llama", "vocab_size": len(vocab), **TINY_TOWER, "num_key_value_heads": 2,
                     "max_position_embeddings": 256, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3},
        image_token_id=vocab["<image>"],
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    torch.manual_seed(0)
    transformers.LlavaForConditionalGeneration(config).eval().save_pretrained(folder)
    transformers.LlavaProcessor(
        image_processor=_image_processor(transformers, "CLIP")(size={"shortest_edge": 16},
                                                               crop_size={"height": 16, "width": 16}),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,  # the CLS token of the CLIP tower
    ).save_pretrained(folder)
    return Path(folder)


# ------------------------------------------------------------------------------------------------ language


def tiny_llama(vocab_size: int = 40, seed: int = 0, **config: Any) -> Any:
    """A LlamaForCausalLM with random weights, in eval mode; ``config`` goes to ``LlamaConfig`` (the default:
    one layer of width 32, 2 heads sharing one KV head of 16). Random weights: it exercises the code path,
    and means nothing."""
    torch, transformers = _torch(), _transformers()
    defaults = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 64}
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=vocab_size, **{**defaults, **config})
    return transformers.LlamaForCausalLM(cfg).eval()


def save_tiny_llama(folder: str | os.PathLike, tokenizer_json: str | os.PathLike, vocab_size: int,
                    seed: int = 0) -> Path:
    """A 2-layer Llama with random weights (:data:`PEAKED_LLAMA`) saved as a transformers folder beside a copy
    of ``tokenizer_json`` (e.g. SmolLM2's, with ``vocab_size`` its size): a caption language model for the
    float and integer coders. Random weights: it exercises the code path, and means nothing."""
    folder = _folder(folder)
    tiny_llama(vocab_size, seed, **PEAKED_LLAMA).save_pretrained(folder)
    shutil.copy(tokenizer_json, folder / "tokenizer.json")
    return folder


# ------------------------------------------------------------------------------------------------ diffusion


def save_tiny_kandinsky(folder: str | os.PathLike) -> Path:
    """A Kandinsky 2.2 decoder pipeline with random weights (diffusers' own dummy components; image
    embeddings of :data:`EMBED_DIM`), saved as a diffusers folder (``kandinsky22:<folder>``). Random weights:
    it exercises the code path, and means nothing."""
    torch, diffusers = _torch(), _diffusers()
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        in_channels=4,
        out_channels=8,  # mean and variance
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=EMBED_DIM,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )
    torch.manual_seed(0)
    movq = diffusers.VQModel(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        vq_embed_dim=4,
    )
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        prediction_type="epsilon",
        variance_type="learned_range",
    )
    diffusers.KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq).save_pretrained(folder)
    return Path(folder)


def _tiny_clip_text_encoder(transformers: Any, vocab_size: int, **extra: Any) -> Any:
    """The 2-layer, width-32 CLIP text encoder of diffusers' dummy SD components."""
    return transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            **TINY_TOWER,
            vocab_size=vocab_size,
            max_position_embeddings=16,
            **extra,
        )
    ).eval()


def save_tiny_stable_unclip(folder: str | os.PathLike) -> Path:
    """An SD-unCLIP img2img pipeline with random weights (diffusers' own dummy components; image embeddings
    of :data:`EMBED_DIM`; the normaliser holds made-up statistics, mean ``linspace(-1, 1)`` and std 0.5),
    saved as a diffusers folder (``stable-unclip:<folder>``). Random weights: it exercises the code path,
    and means nothing."""
    torch, transformers, diffusers = _torch(), _transformers(), _diffusers()
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )

    hidden = EMBED_DIM
    tokenizer, vocab = tiny_clip_tokenizer(model_max_length=16)
    torch.manual_seed(0)
    image_encoder = transformers.CLIPVisionModelWithProjection(
        transformers.CLIPVisionConfig(
            hidden_size=hidden,
            projection_dim=hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            intermediate_size=37,
            patch_size=8,
        )
    )
    torch.manual_seed(0)
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=hidden)
    with torch.no_grad():  # non-trivial statistics so that embed_norm is checked against something
        normalizer.mean.copy_(torch.linspace(-1.0, 1.0, hidden)[None])
        normalizer.std.copy_(torch.full((1, hidden), 0.5))
    torch.manual_seed(0)
    text_encoder = _tiny_clip_text_encoder(transformers, len(vocab), projection_dim=32)
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        attention_head_dim=(2, 4),
        class_embed_type="projection",
        projection_class_embeddings_input_dim=hidden * 2,  # noised image embedding + noise-level embedding
        cross_attention_dim=hidden,
        layers_per_block=1,
        upcast_attention=True,
        use_linear_projection=True,
    )
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(block_out_channels=(32,), norm_num_groups=8)
    pipe = diffusers.StableUnCLIPImg2ImgPipeline(
        feature_extractor=_image_processor(transformers, "CLIP")(crop_size=32, size=32),
        image_encoder=image_encoder.eval(),
        image_normalizer=normalizer.eval(),
        image_noising_scheduler=diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet.eval(),
        scheduler=diffusers.DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        vae=vae.eval(),
    )
    pipe.save_pretrained(folder)
    return Path(folder)


def tiny_sd_img2img_parts() -> dict[str, Any]:
    """diffusers' dummy components of its SD img2img tests with random weights (small UNet, a one-block VAE
    whose latents are as large as the image, a CLIP text encoder), as ``StableDiffusionImg2ImgPipeline``
    keyword arguments. Random weights: they exercise the code path, and mean nothing."""
    torch, transformers, diffusers = _torch(), _transformers(), _diffusers()
    tokenizer, vocab = tiny_clip_tokenizer(model_max_length=16)
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
        attention_head_dim=2,
    )
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(32,),  # one block: vae scale factor 1, so latents are as large as the image
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        norm_num_groups=8,
    )
    torch.manual_seed(0)
    text_encoder = _tiny_clip_text_encoder(transformers, len(vocab))
    scheduler = diffusers.DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler, "safety_checker": None, "feature_extractor": None}


def save_tiny_sd_img2img(folder: str | os.PathLike) -> Path:
    """:func:`tiny_sd_img2img_parts` saved as a Stable Diffusion img2img folder (``sd-img2img:<folder>``).
    Random weights: it exercises the code path, and means nothing."""
    pipe = _diffusers().StableDiffusionImg2ImgPipeline(**tiny_sd_img2img_parts(), requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return Path(folder)


def save_tiny_controlnet(folder: str | os.PathLike) -> Path:
    """A ControlNet with random weights that fits :func:`save_tiny_sd_img2img` (its conditioning is not
    downsampled: the tiny VAE has scale factor 1), saved for ``controlnet-tile:<sd folder>,<folder>``.
    Random weights: it exercises the code path, and means nothing."""
    torch, diffusers = _torch(), _diffusers()
    torch.manual_seed(0)
    controlnet = diffusers.ControlNetModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        in_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=32,
        conditioning_embedding_out_channels=(16,),
        norm_num_groups=8,
        attention_head_dim=2,
    )
    controlnet.save_pretrained(folder)
    return Path(folder)


# ------------------------------------------------------------------------------------------------ LIC


def random_compressai_net(arch: str, quality: int = 1, seed: int = 0, tables: bool = True) -> Any:
    """A CompressAI zoo architecture (``bmshj2018-hyperprior``, ``mbt2018``, ...) with random weights, in eval
    mode; ``tables`` computes its integer CDF tables (``update(force=True)``), as a saved zoo file has them.
    Random weights: it exercises the code path, and means nothing."""
    torch = _torch()
    from compressai.zoo import image_models

    torch.manual_seed(seed)
    net = image_models[arch](quality=quality, pretrained=False).eval()
    if tables:
        net.update(force=True)
    return net
