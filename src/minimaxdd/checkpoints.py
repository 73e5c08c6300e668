"""Saving and loading DiT weights: the base model and the Difffit deltas of fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .dit import DiT, DiTConfig
from .io import atomic_dir, atomic_path


class CheckpointError(ValueError):
    """A checkpoint that is missing or does not fit the model; the message names the path."""


def save_dit(model: DiT, folder: str | Path) -> None:
    """Our base-model format: `config.json` + `model.safetensors`."""
    with atomic_dir(folder) as tmp:
        (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")


def load_dit(folder: str | Path, device: torch.device | str = "cpu") -> DiT:
    folder = Path(folder)
    config_file, weights_file = folder / "config.json", folder / "model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise CheckpointError(f"{folder}: expected config.json and model.safetensors of a DiT")
    model = DiT(DiTConfig(**json.loads(config_file.read_text())))
    load_into(model, load_file(weights_file), source=str(weights_file))
    return model.to(device).eval()


def load_into(model: DiT, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load, except that Difffit gammas may be absent (they start at 1)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and "gamma" not in k]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                   if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{source} does not fit the DiT: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatch {wrong_shape[:5]}"
        )
    model.load_state_dict(state, strict=False)


def save_difffit(model_params: dict, ema_params: dict, path: str | Path, metadata: dict) -> None:
    """The fine-tuned delta: only the trainable parameters and their EMA."""
    tensors = {f"model.{k}": v.contiguous() for k, v in model_params.items()}
    tensors |= {f"ema.{k}": v.contiguous() for k, v in ema_params.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={k: str(v) for k, v in metadata.items()})


def apply_difffit(model: DiT, path: str | Path, use_ema: bool = True) -> DiT:
    """Overwrite the base model's Difffit parameters with the fine-tuned (EMA) ones."""
    prefix = "ema." if use_ema else "model."
    delta = {k[len(prefix):]: v for k, v in load_file(path).items() if k.startswith(prefix)}
    params = dict(model.named_parameters())
    unknown = [k for k in delta if k not in params]
    if unknown or not delta:
        raise CheckpointError(f"{path} does not fit the base DiT: unknown parameters {unknown[:5]}")
    with torch.no_grad():
        for name, value in delta.items():
            params[name].copy_(value)
    return model
