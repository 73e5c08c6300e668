"""Saving and loading DiT weights: the base model and the Difffit deltas of fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .dit import DiT, DiTConfig
from .io import atomic_dir, atomic_path, verify


class CheckpointError(ValueError):
    """A checkpoint that is missing or does not fit the model; the message names the path."""


def save_dit(model: DiT, folder: str | Path) -> None:
    """Our base-model format: `config.json` + `model.safetensors`."""
    with atomic_dir(folder) as tmp:
        (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")


def load_dit(folder: str | Path, device: torch.device | str = "cpu") -> DiT:
    folder = Path(folder)
    verify(folder / "config.json")
    model = DiT(read_dit_config(folder))
    weights_file = folder / "model.safetensors"
    verify(weights_file)
    try:
        state = load_file(weights_file)
    except Exception as err:  # a truncated or foreign file
        reason = unreadable_reason(err, weights_file)
        raise CheckpointError(f"{weights_file} is not a readable safetensors file ({reason})") from err
    load_into(model, state, source=str(weights_file))
    return model.to(device).eval()


def read_dit_config(folder: str | Path) -> DiTConfig:
    """The DiTConfig of a folder in our base-model format; CheckpointError names the file at fault."""
    folder = Path(folder)
    config_file, weights_file = folder / "config.json", folder / "model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise CheckpointError(f"{folder}: expected config.json and model.safetensors of a DiT")
    try:
        return DiTConfig(**json.loads(config_file.read_text()))
    except (ValueError, TypeError) as err:  # bad JSON, or keys that are no DiTConfig field
        raise CheckpointError(f"{config_file} is no DiT configuration ({unreadable_reason(err)})") from err


def unreadable_reason(err: BaseException, path: str | Path | None = None) -> str:
    """Why a file could not be read, in a few words: what the file is when that says it (empty, text),
    else the first sentence of the exception."""
    if path is not None and (what := _what_file(Path(path))):
        return what
    text = str(err).strip().splitlines()
    first = text[0].split(". ")[0][:200] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _what_file(path: Path) -> str | None:
    try:
        size = path.stat().st_size
        if size == 0:
            return "it is an empty file"
        with open(path, "rb") as f:
            head = f.read(512)
            f.seek(max(0, size - 65_557))  # a zip archive (torch.save's format) ends with its directory record
            tail = f.read()
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04") and b"PK\x05\x06" not in tail:
        return f"it is a truncated zip archive of {size} bytes: a download or copy cut short?"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\0" in text or not text.strip():
        return None
    return f"it is a text file starting {text.strip().splitlines()[0][:60]!r}"


def mismatch(expected: dict[str, tuple], given: dict[str, tuple]) -> str | None:
    """What keeps weights of shapes `given` from loading into a model of shapes `expected`; None if
    they fit. Difffit gammas may be absent (they start at 1)."""
    missing = [k for k in expected if k not in given and "gamma" not in k]
    unexpected = [k for k in given if k not in expected]
    wrong_shape = [f"{k}: {tuple(given[k])} != {tuple(shape)}" for k, shape in expected.items()
                   if k in given and tuple(given[k]) != tuple(shape)]
    parts = [f"{label} {items[:5]}" + (f" and {len(items) - 5} more" if len(items) > 5 else "")
             for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong_shape))
             if items]
    return ", ".join(parts) or None


def load_into(model: DiT, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load, except that Difffit gammas may be absent (they start at 1)."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    problem = mismatch(expected, {k: v.shape for k, v in state.items()})
    if problem:
        raise CheckpointError(f"{source} does not fit the DiT: {problem}")
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
    verify(path)
    delta = {k[len(prefix):]: v for k, v in load_file(path).items() if k.startswith(prefix)}
    params = dict(model.named_parameters())
    unknown = [k for k in delta if k not in params]
    if unknown or not delta:
        raise CheckpointError(f"{path} does not fit the base DiT: unknown parameters {unknown[:5]}")
    with torch.no_grad():
        for name, value in delta.items():
            params[name].copy_(value)
    return model
