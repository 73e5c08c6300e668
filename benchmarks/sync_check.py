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
    python benchmarks/sync_check.py --smoke --out /tmp/sync-check.json   # tiny shapes; runs on a CPU too
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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


def syncs(fn, repeats: int) -> float | None:
    """Host synchronisations per call of `fn` (after one untimed call); None on the CPU (nothing to count)."""
    fn()
    if not torch.cuda.is_available():
        return None
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


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (nets at 16 px and 1/8 width, a DiT of "
                        "width 32, 2 sampling steps); without CUDA every loop runs once on the CPU, nothing "
                        "counted: a smoke test")
    parser.add_argument("--out", type=Path, help="also write the counts as JSON here")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        sys.exit("sync_check: no CUDA device (the check is about host-device synchronisation)")
    device, precision = (torch.device("cuda"), "bf16") if cuda else (torch.device("cpu"), "fp32")
    side, width, sampling_steps = (16, 0.125, 2) if args.smoke else (224, 1.0, 10)
    counts = {}
    hard, _ = protocols()
    steps = HardLabelSteps("resnetap10", dataclasses.replace(hard, precision=precision, width_factor=width))
    for channels_last in (False, True):
        step, _ = validation_step(device, steps, 1, side, channels_last)
        counts[f"validation step, channels_last={channels_last}"] = (syncs(step, 5), 0)
    step, mode = validation_step(device, steps, 3, side)
    counts[f"validation step of a group ({mode}, 3 runs)"] = (syncs(step, 5), 0)

    config = (DiTConfig(input_size=4, patch_size=1, hidden_size=32, depth=1, num_heads=2, num_classes=1000)
              if args.smoke else DiTConfig(hidden_size=384, depth=12, num_heads=6, num_classes=1000))  # DiT-S/2
    latent = (config.in_channels, config.input_size, config.input_size)
    model = DiT(config)
    trainable = mark_difffit_trainable(model)
    params = {k: p for k, p in model.named_parameters() if k in trainable}
    minimax = {"memory_size": 64, "rep_weight": 0.002, "div_weight": 0.008, "representativeness": "minimax",
               "diversity": "minimax", "classes": 10}
    trainer = Trainer(model, params, 1e-3, 0.9999, 0, device, minimax, precision)
    cache = {"mean": torch.randn(80, 2, *latent).half(), "std": torch.full((80, 2, *latent), 0.1).half(),
             "scaling_factor": 0.18215, "labels": torch.arange(80) % 10, "class_ids": list(range(0, 1000, 100))}
    latents = LatentSet(cache, device)
    index = torch.arange(8, device=device)
    counts["fine-tuning step (minimax on)"] = (syncs(lambda: trainer.step(latents, index), 5), 1)

    model.eval()
    diffusion = GaussianDiffusion.respaced(sampling_steps).to(device)
    noise = torch.randn(sampling_steps + 1, 8, *latent, device=device)
    labels = torch.arange(8, device=device)
    counts[f"guided sampling, {sampling_steps} steps"] = (syncs(
        lambda: sample_latents(model, diffusion, labels, noise, 4.0, guidance_channels=3, precision=precision), 2), 0)

    failed = [name for name, (found, expected) in counts.items() if found is not None and found > expected]
    for name, (found, expected) in counts.items():
        print(f"{name}: {'not counted (no CUDA)' if found is None else f'{found:g}'} host syncs per call "
              f"(expected {expected})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": str(device), "smoke": args.smoke, "torch": torch.__version__,
                                        "counts": {name: {"syncs_per_call": found, "expected": expected}
                                                   for name, (found, expected) in counts.items()}}, indent=1) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
