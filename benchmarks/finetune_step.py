"""Our fine-tuning step against the reference's training loop, side by side, in one process.

The reference is vimar-gu/MinimaxDiffusion `train_dit.py`; its loop is rewritten here from its
description (nothing copied), on the same DiT, diffusion loss and minimax criteria as ours:

- every step the image batch goes through the VAE encoder and the latent is sampled from its
  posterior (`vae.encode(x).latent_dist.sample() * 0.18215`);
- the minimax terms are computed class by class against memories kept as Python lists of single
  entries (concatenated every step, trimmed with `pop(0)`);
- plain `torch.optim.AdamW` (its default implementation on the device);
- the EMA is updated over every parameter of the model, the frozen ones included, one tensor at a time;
- `loss.item()` every step (its running-loss log).

Three timings per shape, interleaved round by round so that their ratios come from the same
machine load (the fastest round of each is kept):

- `reference`: the loop above;
- `reference_cached`: the same loop drawing latents from our cache instead of running the VAE
  (what the step costs without the encoder);
- `ours`: `training.Trainer.step` on the cached latents, as the fine-tune stage runs it (and with
  `--compile` also `ours_compiled`, the same with speed.compile).

Shapes: `tiny` is the embedded default's (config.yaml: 16 px digits, tiny VAE, DiT of width 96,
depth 4, 4x4x2 latents); `dit-s2` is DiT-S/2 on 32x32x4 latents with the SD VAE's architecture at
256 px (random weights: speed only). Batch 8, minimax on (memory 64), as the paper.

    python benchmarks/finetune_step.py                         # both shapes, CPU, 1 thread
    python benchmarks/finetune_step.py --shapes tiny --rounds 5
    python benchmarks/finetune_step.py --device cuda --shapes dit-s2 dit-xl2
    python benchmarks/finetune_step.py --smoke --out /tmp/finetune-step.json   # tiny, 1 round of 2 steps
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout, installed or not
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchmark import sd_vae  # noqa: E402
from minimaxdd.diffusion import NUM_TIMESTEPS, GaussianDiffusion, linear_betas  # noqa: E402
from minimaxdd.dit import DIT_XL_2, DiT, DiTConfig, mark_difffit_trainable  # noqa: E402
from minimaxdd.minimax import cosine_matrix  # noqa: E402
from minimaxdd.training import LatentSet, Trainer  # noqa: E402
from minimaxdd.vae import build_tiny_vae, to_model_range  # noqa: E402

BATCH, MEMORY, LR, EMA_DECAY = 8, 64, 1e-3, 0.9999
REP_WEIGHT, DIV_WEIGHT = 0.002, 0.008  # the paper's
CLASSES = 10


def shape(name: str):
    """(DiT config, VAE, image channels, image side)."""
    torch.manual_seed(0)
    if name == "tiny":
        dit = DiTConfig(input_size=4, patch_size=1, in_channels=2, hidden_size=96, depth=4, num_heads=4,
                        num_classes=CLASSES)
        return dit, build_tiny_vae(1, 16, [16, 32, 32], 2).eval(), 1, 16
    dit = {"dit-s2": DiTConfig(hidden_size=384, depth=12, num_heads=6), "dit-xl2": DIT_XL_2}[name]
    return dit, sd_vae().eval(), 3, 256


class ReferenceLoop:
    """One step of the reference's training loop (see the module docstring)."""

    def __init__(self, model: DiT, vae, device: torch.device):
        self.model, self.vae = model.to(device).train(), vae.to(device)
        mark_difffit_trainable(model)
        self.ema = {k: v.detach().clone() for k, v in model.named_parameters()}  # every parameter
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0)
        self.diffusion = GaussianDiffusion(linear_betas(NUM_TIMESTEPS))
        self.real_memory, self.pred_memory = defaultdict(list), defaultdict(list)
        self.device = device

    def step(self, images: torch.Tensor | None, latents: torch.Tensor | None, labels: torch.Tensor) -> float:
        if images is not None:
            with torch.no_grad():
                latents = self.vae.encode(to_model_range(images)).latent_dist.sample() * self.vae.config.scaling_factor
        t = torch.randint(NUM_TIMESTEPS, (len(latents),), device=self.device)
        terms = self.diffusion.training_losses(self.model, latents, t, labels)
        loss, preds = terms["loss"].mean(), terms["pred_x0"]
        rep = div = torch.zeros((), device=self.device)
        present = set(labels.tolist())
        for c in present:
            mine = labels == c
            if self.pred_memory[c]:
                reals = torch.cat(self.real_memory[c]).flatten(1)
                earlier = torch.cat(self.pred_memory[c]).flatten(1)
                rep = rep + (1 - cosine_matrix(preds[mine].flatten(1), reals).min()) * REP_WEIGHT / len(present)
                div = div + cosine_matrix(preds[mine].flatten(1), earlier).max() * DIV_WEIGHT / len(present)
            self.real_memory[c].extend(latents[mine].detach().split(1))
            self.pred_memory[c].extend(preds[mine].detach().split(1))
            while len(self.real_memory[c]) > MEMORY:
                self.real_memory[c].pop(0)
            while len(self.pred_memory[c]) > MEMORY:
                self.pred_memory[c].pop(0)
        total = loss + rep + div
        self.opt.zero_grad()
        total.backward()
        self.opt.step()
        with torch.no_grad():
            for name, param in OrderedDict(self.model.named_parameters()).items():
                self.ema[name].mul_(EMA_DECAY).add_(param.data, alpha=1 - EMA_DECAY)
        return loss.item()


def bench_shape(name: str, device: torch.device, rounds: int, steps: int, compile: bool = False) -> dict:
    config, vae, channels, side = shape(name)
    latent_shape = (config.in_channels, config.input_size, config.input_size)
    n = 10 * BATCH
    cache = {"mean": torch.randn(n, 2, *latent_shape).half(), "std": torch.full((n, 2, *latent_shape), 0.1).half(),
             "scaling_factor": vae.config.scaling_factor, "labels": torch.arange(n) % CLASSES,
             "class_ids": list(range(0, config.num_classes, config.num_classes // CLASSES))}
    latents = LatentSet(cache, device)
    images = torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8, device=device)
    order = torch.Generator().manual_seed(0)
    batches = [torch.randperm(n, generator=order)[:BATCH].to(device) for _ in range(steps)]
    gen = torch.Generator(device).manual_seed(1)

    torch.manual_seed(0)
    reference = ReferenceLoop(DiT(config), vae, device)
    minimax = {"memory_size": MEMORY, "rep_weight": REP_WEIGHT, "div_weight": DIV_WEIGHT,
               "representativeness": "minimax", "diversity": "minimax", "classes": CLASSES}

    def trainer(compiled: bool) -> Trainer:
        model = DiT(config)
        trainable = mark_difffit_trainable(model)
        params = {k: p for k, p in model.named_parameters() if k in trainable}
        return Trainer(model, params, LR, EMA_DECAY, 0, device, minimax, compile=compiled)

    ours = trainer(False)
    runs = {
        "reference": lambda i: reference.step(images[i], None, latents.model_ids[i]),
        "reference_cached": lambda i: reference.step(None, latents.draw(i, gen), latents.model_ids[i]),
        "ours": lambda i: ours.step(latents, i),
    }
    if compile:  # speed.compile; its compilation happens in the warm-up, untimed
        ours_compiled = trainer(True)
        runs["ours_compiled"] = lambda i: ours_compiled.step(latents, i)
    for run in runs.values():  # warm-up: allocator, first-call costs, memories filled
        for index in batches[:2]:
            run(index)
    best = {key: float("inf") for key in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            sync(device)
            start = time.perf_counter()
            for index in batches:
                run(index)
            sync(device)
            best[key] = min(best[key], (time.perf_counter() - start) / steps)
    return {"shape": name, "dit": config.to_dict(), "image_side": side, "batch": BATCH,
            "trainable_params": sum(p.numel() for p in ours.params.values()),
            "seconds_per_step": best,
            "speedup_vs_reference": best["reference"] / best["ours"],
            "speedup_vs_reference_cached": best["reference_cached"] / best["ours"]}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["tiny", "dit-s2"], choices=["tiny", "dit-s2", "dit-xl2"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each way (the fastest is kept)")
    parser.add_argument("--steps", type=int, help="steps per round (default: 20 tiny, 2 otherwise)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1, as a fine-tune job of the default)")
    parser.add_argument("--compile", action="store_true", help="also time our step compiled (speed.compile)")
    parser.add_argument("--smoke", action="store_true", help="the tiny shape, 1 round of 2 steps: a smoke test")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:  # its sizes as the defaults: what is given still counts
        args = parser.parse_args(argv, argparse.Namespace(shapes=["tiny"], rounds=1, steps=2))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":  # TF32 matmuls and convolutions, as train_dit.py L7-8 and our pick_device
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = []
    for name in args.shapes:
        steps = args.steps or (20 if name == "tiny" else 2)
        row = bench_shape(name, device, args.rounds, steps, args.compile)
        results.append(row)
        s = row["seconds_per_step"]
        print(f"{name}: reference {s['reference'] * 1e3:.1f} ms, reference without the VAE "
              f"{s['reference_cached'] * 1e3:.1f} ms, ours {s['ours'] * 1e3:.1f} ms per step -> "
              f"{row['speedup_vs_reference']:.2f}x the reference, "
              f"{row['speedup_vs_reference_cached']:.2f}x its step without the VAE"
              + (f"; compiled {s['ours_compiled'] * 1e3:.1f} ms" if "ours_compiled" in s else ""), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": str(device), "threads": args.threads, "torch": torch.__version__,
                                        "machine": platform.processor() or platform.machine(),
                                        "results": results}, indent=1))


if __name__ == "__main__":
    main()
