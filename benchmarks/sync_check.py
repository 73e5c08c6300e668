"""Counts on a CUDA device the host synchronisations inside the hot loops, which leave the GPU idle
while the host catches up:

- a validation training step (the hard-label protocol's batch, then forward, backward, SGD, as
  classifier.train_classifiers takes it), in contiguous and channels-last format, and one of a
  group of 3 seeds stacked with vmap:
  expected 0 (CutMix draws its scalars on the CPU; the epoch's loss is read once per epoch,
  outside the step);
- a fine-tuning step (`training.Trainer.step`, minimax on): expected 1, the read of the step's
  losses after all its work is queued;
- guided sampling (`diffusion.sample_latents`, 10 steps): expected 0.

Each runs after a warm-up under `torch.cuda.set_sync_debug_mode("warn")`, every warning counted.

    python benchmarks/sync_check.py            # exits 1 when a loop syncs more than expected
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout, installed or not
from minimaxdd.diffusion import GaussianDiffusion, sample_latents  # noqa: E402
from minimaxdd.dit import DiT, DiTConfig, mark_difffit_trainable  # noqa: E402
from minimaxdd.training import LatentSet, Trainer  # noqa: E402
from minimaxdd.validate import HardLabelSteps  # noqa: E402

from benchmark import protocols, validation_step  # noqa: E402


def syncs(fn, repeats: int) -> float:
    """Host synchronisations per call of `fn` (after one untimed call)."""
    fn()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(repeats):
                fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / repeats


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("sync_check: no CUDA device (the check is about host-device synchronisation)")
    device = torch.device("cuda")
    counts = {}
    hard, _ = protocols()
    steps = HardLabelSteps("resnetap10", dataclasses.replace(hard, precision="bf16"))
    for channels_last in (False, True):
        step, _ = validation_step(device, steps, 1, 224, channels_last)
        counts[f"validation step, channels_last={channels_last}"] = (syncs(step, 5), 0)
    step, mode = validation_step(device, steps, 3, 224)
    counts[f"validation step of a group ({mode}, 3 runs)"] = (syncs(step, 5), 0)

    config = DiTConfig(hidden_size=384, depth=12, num_heads=6, num_classes=1000)  # DiT-S/2
    model = DiT(config)
    trainable = mark_difffit_trainable(model)
    params = {k: p for k, p in model.named_parameters() if k in trainable}
    minimax = {"memory_size": 64, "rep_weight": 0.002, "div_weight": 0.008, "representativeness": "minimax",
               "diversity": "minimax", "classes": 10}
    trainer = Trainer(model, params, 1e-3, 0.9999, 0, device, minimax, "bf16")
    cache = {"mean": torch.randn(80, 2, 4, 32, 32).half(), "std": torch.full((80, 2, 4, 32, 32), 0.1).half(),
             "scaling_factor": 0.18215, "labels": torch.arange(80) % 10, "class_ids": list(range(0, 1000, 100))}
    latents = LatentSet(cache, device)
    index = torch.arange(8, device=device)
    counts["fine-tuning step (minimax on)"] = (syncs(lambda: trainer.step(latents, index), 5), 1)

    model.eval()
    diffusion = GaussianDiffusion.respaced(10).to(device)
    noise = torch.randn(11, 8, 4, 32, 32, device=device)
    labels = torch.arange(8, device=device)
    counts["guided sampling, 10 steps"] = (
        syncs(lambda: sample_latents(model, diffusion, labels, noise, 4.0, guidance_channels=3, precision="bf16"), 2), 0)

    failed = False
    for name, (found, expected) in counts.items():
        failed |= found > expected
        print(f"{name}: {found:g} host syncs per call (expected {expected})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
