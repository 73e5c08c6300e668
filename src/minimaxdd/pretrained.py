"""Pretrained DiT weights from local files: the facebookresearch/DiT checkpoint or a diffusers folder.

Both load into our DiT (dit.py), whose parameter names are facebookresearch/DiT's. The original
checkpoint carries no configuration, so it is read from the tensor shapes; a diffusers folder states
it in config.json, and its weights are renamed back into DiT's layout (the inverse of diffusers'
scripts/convert_dit_to_diffusers.py). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .checkpoints import CheckpointError, load_dit, load_into, mismatch, read_dit_config, unreadable_reason
from .dit import DiT, DiTConfig

# Shapes do not tell the number of heads; for the hidden sizes of the DiT model zoo (XL, L, B, S) it does.
ZOO_NUM_HEADS = {1152: 16, 1024: 16, 768: 12, 384: 6}
DIFFUSERS_DIT_CLASSES = ("DiTTransformer2DModel", "Transformer2DModel")
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")

# diffusers name prefix -> DiT name prefix. Every diffusers block holds a copy of the timestep and
# label embedders; block 0's copy becomes DiT's shared one. q/k/v are merged separately.
DIFFUSERS_RENAMES = [
    (r"pos_embed\.proj\.", "x_embedder.proj."),
    (r"transformer_blocks\.0\.norm1\.emb\.timestep_embedder\.linear_1\.", "t_embedder.mlp.0."),
    (r"transformer_blocks\.0\.norm1\.emb\.timestep_embedder\.linear_2\.", "t_embedder.mlp.2."),
    (r"transformer_blocks\.0\.norm1\.emb\.class_embedder\.embedding_table\.", "y_embedder.embedding_table."),
    (r"transformer_blocks\.(\d+)\.norm1\.linear\.", r"blocks.\1.adaLN_modulation.1."),
    (r"transformer_blocks\.(\d+)\.attn1\.to_out\.0\.", r"blocks.\1.attn.proj."),
    (r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.", r"blocks.\1.mlp.fc1."),
    (r"transformer_blocks\.(\d+)\.ff\.net\.2\.", r"blocks.\1.mlp.fc2."),
    (r"proj_out_1\.", "final_layer.adaLN_modulation.1."),
    (r"proj_out_2\.", "final_layer.linear."),
]


def resolve_dit_source(path: str | Path) -> str:
    """"original" for a checkpoint file, "minimaxdd" for a base DiT trained by this workflow (another
    experiment's base/dit), "diffusers" for a diffusers DiT folder; else CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if path.is_file():
        return "original"
    if (path / "model.safetensors").is_file():
        return "minimaxdd"
    transformer_folder(path)
    return "diffusers"


def resolve_vae_folder(path: str | Path) -> Path:
    """The AutoencoderKL folder: `path/vae` of a diffusers pipeline, or `path` itself."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if path.is_file():
        raise CheckpointError(f"{path} is a file; expected a diffusers AutoencoderKL folder (config.json and "
                              "weights) or a pipeline folder with vae/")
    for folder in (path / "vae", path):
        if (folder / "config.json").is_file():
            return folder
    raise CheckpointError(f"{path}: no config.json; expected a diffusers pipeline folder with vae/ or a VAE folder")


# -- checks without loading the weights (run when the workflow starts) -----------------------------

@dataclass(frozen=True)
class VaeInfo:
    folder: Path
    in_channels: int  # image channels it encodes
    latent_channels: int
    downsample: int  # image side / latent side


def vae_norm_groups(block_channels: list[int]) -> int:
    """Group count of the tiny VAE's group norms (vae.build_tiny_vae): 16, or the first width when
    it is narrower; every width must be a multiple of it."""
    return min(16, block_channels[0])


def inspect_vae(path: str | Path) -> VaeInfo:
    """Check a diffusers AutoencoderKL folder without loading its weights: its config.json, and that
    the weights file's header holds the convolutions that config implies, of the right shapes."""
    folder = resolve_vae_folder(path)
    config_file = folder / "config.json"
    config = _read_json(config_file)
    if config.get("_class_name") != "AutoencoderKL":
        raise CheckpointError(f"{config_file} has _class_name {config.get('_class_name')!r}, "
                              "not 'AutoencoderKL': no diffusers VAE")
    # diffusers' AutoencoderKL defaults, for keys a config may omit
    in_channels, out_channels = config.get("in_channels", 3), config.get("out_channels", 3)
    latent, blocks = config.get("latent_channels", 4), list(config.get("block_out_channels", [64]))
    weights = next((folder / name for name in DIFFUSERS_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder}: no weights file (one of {DIFFUSERS_WEIGHTS})")
    expected = {  # (out, in, 3, 3) convolutions at both ends of the encoder and the decoder
        "encoder.conv_in.weight": (blocks[0], in_channels, 3, 3),
        "encoder.conv_out.weight": (2 * latent, blocks[-1], 3, 3),
        "decoder.conv_in.weight": (blocks[-1], latent, 3, 3),
        "decoder.conv_out.weight": (out_channels, blocks[0], 3, 3),
    }
    shapes = read_shapes(weights)
    problem = mismatch(expected, {k: v for k, v in shapes.items() if k in expected})
    if problem:
        raise CheckpointError(f"{weights} does not fit {config_file}: {problem}")
    return VaeInfo(folder, in_channels, latent, 2 ** (len(blocks) - 1))


def inspect_dit(path: str | Path, num_heads: int | None = None) -> DiTConfig:
    """The configuration of the DiT weights at `path`, after checking every key and shape against
    it, without loading the weights (checkpoints are memory-mapped, safetensors read by header).
    num_heads: as for load_pretrained_dit, so that this refuses what a job would."""
    path = Path(path)
    kind = resolve_dit_source(path)
    if kind == "minimaxdd":
        config, weights = read_dit_config(path), path / "model.safetensors"
        state = read_shapes(weights)
    elif kind == "original":
        weights = path
        tensors = read_original_checkpoint(path, mmap=True)
        config = infer_config(tensors, path, num_heads)
        state = {k: tuple(v.shape) for k, v in tensors.items()}
    else:
        folder = transformer_folder(path)
        config = diffusers_config(folder, num_heads)
        weights = next(folder / name for name in DIFFUSERS_WEIGHTS if (folder / name).is_file())
        meta = {k: torch.empty(shape, device="meta") for k, shape in read_shapes(weights).items()}
        state = {k: tuple(v.shape) for k, v in convert_diffusers_state(meta, weights, compare_copies=False).items()}
        state["pos_embed"] = (1, (config.input_size // config.patch_size) ** 2, config.hidden_size)
    if config.hidden_size % config.num_heads:
        raise CheckpointError(f"{path}: hidden size {config.hidden_size} does not split into {config.num_heads} heads")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in DiT(config).state_dict().items()}
    problem = mismatch(expected, state)
    if problem:
        raise CheckpointError(f"{weights} does not fit a DiT with {describe(config)}: {problem}")
    return config


def describe(config: DiTConfig) -> str:
    return (f"hidden size {config.hidden_size}, depth {config.depth}, patch {config.patch_size}, "
            f"{config.in_channels} latent channels of {config.input_size}x{config.input_size}, "
            f"{config.num_classes} classes")


def read_shapes(file: Path) -> dict[str, tuple]:
    """Tensor name -> shape of a weights file, from its header (safetensors) or memory-mapped (torch)."""
    if file.suffix == ".safetensors":
        try:
            with safe_open(file, framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as err:  # a truncated file, or no safetensors file at all
            reason = unreadable_reason(err, file)
            raise CheckpointError(f"{file} is not a readable safetensors file ({reason})") from err
    return {k: tuple(v.shape) for k, v in read_original_checkpoint(file, mmap=True).items()}


def _read_json(file: Path) -> dict:
    try:
        config = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{file} is not valid JSON ({unreadable_reason(err)})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} holds no JSON object")
    return config


def load_pretrained_dit(path: str | Path, device="cpu", num_heads: int | None = None) -> DiT:
    """Our DiT with pretrained weights (or a tiny one trained here, in our folder format), in eval mode.

    num_heads: for the original checkpoint, whose shapes do not tell it (default: the model zoo's
    value for the hidden size; CheckpointError for another size); a diffusers config states it.
    """
    path = Path(path)
    kind = resolve_dit_source(path)
    if kind == "minimaxdd":
        return load_dit(path, device)
    if kind == "original":
        state = read_original_checkpoint(path)
        model = build_dit(infer_config(state, path, num_heads), path)
        source = path
    else:
        folder = transformer_folder(path)
        model = build_dit(diffusers_config(folder, num_heads), path)
        source = next(folder / name for name in DIFFUSERS_WEIGHTS if (folder / name).is_file())
        # diffusers computes the same sin-cos position table instead of storing it.
        state = convert_diffusers_state(read_weights(source), source) | {"pos_embed": model.pos_embed.detach()}
    load_into(model, state, source=str(source))
    return model.to(device).eval()


def build_dit(config: DiTConfig, path: Path) -> DiT:
    if config.hidden_size % config.num_heads:
        raise CheckpointError(f"{path}: hidden size {config.hidden_size} does not split into {config.num_heads} heads")
    return DiT(config)


# -- facebookresearch/DiT checkpoints --------------------------------------------------------------

def read_original_checkpoint(path: Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """A state dict saved with torch.save, bare or as a training checkpoint's "ema" (else "model").

    mmap: map the file instead of reading it (for looking at shapes only); a file in torch's legacy
    (pre-zip) format cannot be mapped and is read.
    """
    try:
        # DiT's training checkpoints also store their argparse arguments.
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except Exception:
                if not mmap:
                    raise
                # a legacy file, or a broken one (then the plain load names the actual problem)
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # whatever the file is (random bytes, text, a foreign pickle), it is no checkpoint
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({unreadable_reason(err, path)})") from err
    if isinstance(checkpoint, dict):
        checkpoint = checkpoint.get("ema", checkpoint.get("model", checkpoint))
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return checkpoint


def infer_config(state: dict[str, torch.Tensor], path: Path, num_heads: int | None) -> DiTConfig:
    """The DiT configuration that fits the tensor shapes."""
    required = ["x_embedder.proj.weight", "pos_embed", "y_embedder.embedding_table.weight",
                "blocks.0.mlp.fc1.weight", "final_layer.linear.weight"]
    lacking = [k for k in required if k not in state]
    if lacking:
        raise CheckpointError(f"{path} is not a DiT checkpoint: it lacks {lacking}")
    hidden, in_channels, patch, _ = state["x_embedder.proj.weight"].shape
    num_heads = num_heads or ZOO_NUM_HEADS.get(hidden)
    if num_heads is None:  # a guess could load without complaint and compute garbage
        raise CheckpointError(f"{path}: hidden size {hidden} is no DiT model-zoo size ({sorted(ZOO_NUM_HEADS)}), "
                              "so the head count cannot be known from the weights; set base_models.dit_num_heads "
                              "in the config")
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    return DiTConfig(
        input_size=math.isqrt(state["pos_embed"].shape[1]) * patch,
        patch_size=patch,
        in_channels=in_channels,
        hidden_size=hidden,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / hidden,
        num_classes=state["y_embedder.embedding_table.weight"].shape[0] - 1,  # last row: the null class
        learn_sigma=state["final_layer.linear.weight"].shape[0] == patch * patch * 2 * in_channels,
    )


# -- diffusers DiTTransformer2DModel ---------------------------------------------------------------

def transformer_folder(path: Path) -> Path:
    """The DiT transformer folder: `path/transformer` of a diffusers pipeline, or `path` itself."""
    folder = path / "transformer" if (path / "transformer" / "config.json").is_file() else path
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{path}: no config.json; expected a diffusers DiT pipeline folder (with transformer/) "
            "or its transformer folder"
        )
    config = _read_json(config_file)
    if config.get("_class_name") not in DIFFUSERS_DIT_CLASSES or config.get("norm_type") != "ada_norm_zero":
        raise CheckpointError(
            f"{config_file} describes a {config.get('_class_name')} with norm_type {config.get('norm_type')!r}, "
            f"not a DiT (one of {DIFFUSERS_DIT_CLASSES} with norm_type 'ada_norm_zero')"
        )
    if not any((folder / name).is_file() for name in DIFFUSERS_WEIGHTS):
        raise CheckpointError(f"{folder}: no weights file (one of {DIFFUSERS_WEIGHTS})")
    return folder


def diffusers_config(folder: Path, num_heads: int | None) -> DiTConfig:
    config = json.loads((folder / "config.json").read_text())
    needed = ["num_attention_heads", "attention_head_dim", "in_channels", "num_layers", "patch_size",
              "sample_size", "num_embeds_ada_norm"]
    lacking = [k for k in needed if config.get(k) is None]
    if lacking:
        raise CheckpointError(f"{folder / 'config.json'} lacks {lacking}")
    heads, in_channels = config["num_attention_heads"], config["in_channels"]
    out_channels = config.get("out_channels") or in_channels
    if num_heads not in (None, heads):
        raise CheckpointError(f"{folder / 'config.json'} states {heads} heads, not the {num_heads} asked for")
    if out_channels not in (in_channels, 2 * in_channels):
        raise CheckpointError(
            f"{folder / 'config.json'}: out_channels {out_channels} is neither in_channels nor twice it"
        )
    return DiTConfig(
        input_size=config["sample_size"],
        patch_size=config["patch_size"],
        in_channels=in_channels,
        hidden_size=heads * config["attention_head_dim"],
        depth=config["num_layers"],
        num_heads=heads,
        num_classes=config["num_embeds_ada_norm"],
        learn_sigma=out_channels == 2 * in_channels,
    )


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix != ".safetensors":
        return read_original_checkpoint(file)
    try:
        return load_file(file)
    except Exception as err:  # a truncated file, or no safetensors file at all
        raise CheckpointError(f"{file} is not a readable safetensors file ({unreadable_reason(err, file)})") from err


def dit_name(diffusers_name: str) -> str:
    for pattern, replacement in DIFFUSERS_RENAMES:
        name, found = re.subn(f"^{pattern}", replacement, diffusers_name, count=1)
        if found:
            return name
    return diffusers_name  # unknown: kept, so that the load names it


def convert_diffusers_state(state: dict[str, torch.Tensor], source: Path,
                            compare_copies: bool = True) -> dict[str, torch.Tensor]:
    """diffusers DiT weights under facebookresearch/DiT names; unknown keys pass through (and fail the load).

    The timestep embedder's first linear needs no column permutation: diffusers' DiT embeds with
    flip_sin_to_cos=True, i.e. [cos | sin] like DiT. Its frequencies differ slightly, though
    (downscale_freq_shift=1: exp(-ln(1e4) i / (half - 1)) against DiT's i / half). The released
    diffusers DiT weights are the original ones converted, trained with DiT's spacing, which our
    DiT keeps; so the loaded model reproduces the original DiT, not diffusers' approximation of it.
    """
    converted, qkv, differing = {}, {}, []
    for key, value in state.items():
        if key == "pos_embed.pos_embed":  # stored by some diffusers versions; ours is the same table
            continue
        if (m := re.fullmatch(r"transformer_blocks\.(\d+)\.norm1\.emb\.(.+)", key)) and m.group(1) != "0":
            # a block's copy of the shared embedders
            shared = state.get(f"transformer_blocks.0.norm1.emb.{m.group(2)}", value.new_empty(0))
            if compare_copies and not torch.equal(value, shared):
                differing.append(int(m.group(1)))
            continue
        if m := re.fullmatch(r"transformer_blocks\.(\d+)\.attn1\.to_([qkv])\.(weight|bias)", key):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = key
            continue
        converted[dit_name(key)] = value
    for (block, param), parts in qkv.items():
        if len(parts) == 3:
            converted[f"blocks.{block}.attn.qkv.{param}"] = torch.cat([state[parts[c]] for c in "qkv"])
        else:  # an incomplete triple: leave the pieces for the error message
            converted |= {key: state[key] for key in parts.values()}
    if differing:
        warnings.warn(
            f"{source}: the timestep/label embedders of blocks {sorted(set(differing))} differ from block 0's; "
            "using block 0's (DiT shares one embedder across blocks)",
            stacklevel=3,
        )
    return converted
