"""Per-stage throughput of the pipeline at the paper's scale, with random-init weights (speed only).

Measures fine-tuning (DiT-XL/2, Difffit + minimax, batch 8) from cached latents and with the SD-VAE
encoder run every step, generation (50 guided steps + VAE decoding) one image at a time and batched,
and validation training (ResNet-18, 256 px, batch 64). See benchmarks/README.md.

    python benchmarks/benchmark.py --tiny                          # tiny models, a minute on a CPU
    python benchmarks/benchmark.py --smoke --out /tmp/bench        # the same at its smallest: a smoke test
    python benchmarks/benchmark.py --device cuda --peak-tflops 989  # H100, bf16 dense peak
"""

from __future__ import annotations

import argparse
import dataclasses
import contextlib
import datetime
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout, installed or not
from minimaxdd.classifier import build_group  # noqa: E402
from minimaxdd.diffusion import GaussianDiffusion, sample_latents  # noqa: E402
from minimaxdd.dit import DIT_XL_2, DiT, DiTConfig, mark_difffit_trainable  # noqa: E402
from minimaxdd.training import LatentSet, Trainer  # noqa: E402
from minimaxdd.vae import build_tiny_vae, decode_latents, to_model_range  # noqa: E402
from minimaxdd.plan import load_config  # noqa: E402
from minimaxdd.settings import HardLabel, SoftLabel, hard_label_rule  # noqa: E402
from minimaxdd.validate import HardLabelSteps  # noqa: E402

MEASUREMENTS = ("finetune_cached", "finetune_vae", "generate_single", "generate_batched", "generate_igd", "validate",
                "validate_soft", "validate_group")
IGD = {"checkpoints": 4, "interval": (30, 45), "influence_scale": 10.0, "deviation_scale": 100.0,
       "memory_size": 64}  # DD_IGD sample_mp_minimax.sh (ImageWoof): 4 kept epochs, steps 30..45 of 50
GROUP_SEEDS = 3  # the presets' seeds of one (method, IPC, net)
FINETUNE = {"batch": 8, "lr": 1e-3, "ema_decay": 0.9999,
            "minimax": {"memory_size": 64, "rep_weight": 0.002, "div_weight": 0.008,
                        "representativeness": "minimax", "diversity": "minimax", "classes": 10}}  # the paper's forms
VAL_BATCH, NUM_CLASSES_REAL = 64, 10  # an ImageNet subset of 10 classes (ImageWoof, ImageNette)

# The CPU attention kernel has no FLOP formula in torch; it computes what the CUDA ones do.
_aten = torch.ops.aten
FLOP_EXTRA = {  # FlopCounterMode passes shapes in place of tensors
    _aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *_, out_shape=None, **__: sdpa_flop_count(q, k, v),
    _aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *_, out_shape=None, **__: sdpa_backward_flop_count(g, q, k, v)}

FLOP_MODEL = """\
FLOPs are counted, not assumed: `torch.utils.flop_counter.FlopCounterMode` records the matmul,
convolution and attention FLOPs (2 per multiply-add, the convention of GPU peak figures) of the
first warm-up iteration of each measurement; elementwise work (norms, activations, optimizer) is
not counted. TFLOP/s = counted FLOPs per iteration x timed iterations / timed seconds; % of peak
divides by `--peak-tflops` (e.g. 989 for an H100 SXM, bf16 dense) and is left empty without it.
For reference, DiT-XL/2 at 256 px takes 118.6 G multiply-adds per image per forward (the DiT
paper's "118.6 Gflops" counts multiply-adds), i.e. ~237 GFLOP. A full training step costs ~3x a
forward; a Difffit step ~2x, because the frozen weights need no weight gradients (only the input
gradients are computed). Guided sampling runs the conditional and unconditional branch in one
doubled batch: 2 forwards per image per step, ~23.7 TFLOP per image for 50 steps, plus the
VAE decoder. The `finetune_vae` and `generate_*` counts include the VAE's convolutions."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--repeats", type=int, help="timed iterations per measurement (default: 2 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, help="untimed iterations first, >= 1 (default: 1 on CPU, 3 on CUDA)")
    p.add_argument("--gen-steps", type=int, default=50, help="denoising steps (default 50, the paper's)")
    p.add_argument("--gen-batch", type=int, default=32, help="batch of the batched generation (default 32)")
    p.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale (default 4.0)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help=f"stages (finetune, generate, validate) or measurements ({', '.join(MEASUREMENTS)})")
    p.add_argument("--peak-tflops", type=float, help="the device's peak TFLOP/s for the %% of peak column")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own; 1 with --tiny)")
    p.add_argument("--out", type=Path, help="output folder (default docs/benchmarks/; a temp folder with --tiny)")
    p.add_argument("--tiny", action="store_true", help="tiny models at 32 px: tests the script, not paper scale")
    p.add_argument("--smoke", action="store_true", help="--tiny at its smallest (1 repeat, 4 steps, batch 4): seconds")
    p.add_argument("--compile", action="store_true", help="torch.compile the DiT (config speed.compile)")
    p.add_argument("--channels-last", action="store_true", help="channels-last validation net (config speed.channels_last)")
    p.add_argument("--tag", default="", help="appended to the output file names (e.g. -compiled)")
    args = p.parse_args(argv)
    if args.smoke:  # its sizes as the defaults: what is given still counts
        args = p.parse_args(argv, argparse.Namespace(tiny=True, repeats=1, gen_steps=4, gen_batch=4))
    selected = [m for m in MEASUREMENTS if not args.only or any(m == o or m.startswith(o + "_") for o in args.only)]
    if not selected:
        p.error(f"--only matches no measurement; choose from finetune, generate, validate, {', '.join(MEASUREMENTS)}")
    if args.gen_steps < 2:  # GaussianDiffusion.respaced(1) fails: a 1-step chain has no posterior variance
        p.error("--gen-steps must be at least 2")
    args.selected = selected
    return args


# -- models -------------------------------------------------------------------------------------

def build_models(tiny: bool, device: torch.device):
    """(DiT, VAE, image resolution): DiT-XL/2 + the SD VAE (sd-vae-ft-mse) at 256 px, or tiny ones."""
    torch.manual_seed(0)
    if tiny:
        dit = DiT(DiTConfig(input_size=4, patch_size=1, hidden_size=64, depth=2, num_heads=4, num_classes=1000))
        return dit.to(device), build_tiny_vae(3, 32, [16, 32, 32, 32], 4).to(device).eval(), 32
    return DiT(DIT_XL_2).to(device), sd_vae().to(device).eval(), 256


def sd_vae() -> AutoencoderKL:
    """The architecture of the SD VAE (sd-vae-ft-mse), random weights."""
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                         layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=256,
                         scaling_factor=0.18215)


def random_cache(n: int, latent_shape: tuple, scaling_factor: float) -> dict:
    """A latent cache like the encode stage's, of `n` random images of NUM_CLASSES_REAL classes."""
    return {"mean": torch.randn(n, 2, *latent_shape).half(), "std": torch.full((n, 2, *latent_shape), 0.1).half(),
            "scaling_factor": scaling_factor, "labels": torch.arange(n) % NUM_CLASSES_REAL,
            "class_ids": list(range(0, 1000, 1000 // NUM_CLASSES_REAL))}


# -- timing -------------------------------------------------------------------------------------

class Bench:
    def __init__(self, device: torch.device, warmup: int, repeats: int, peak_tflops: float | None):
        self.device, self.warmup, self.repeats, self.peak = device, warmup, repeats, peak_tflops
        self.cuda = device.type == "cuda"
        self.results = []

    def amp(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def measure(self, name: str, fn, *, items: int, unit: str, per: str, settings: dict, count=None):
        """Time `fn` (one iteration = `items` images or one step); unit is `per`s per second.
        `count`: the same iteration uncompiled, run once to count the FLOPs (default: `fn`)."""
        bar = tqdm(total=self.warmup + self.repeats, desc=name, unit="it", dynamic_ncols=True)
        with FlopCounterMode(display=False, custom_mapping=FLOP_EXTRA) as counter, self.amp():
            (count or fn)()  # first warm-up iteration: also counts the FLOPs
        bar.update()
        with self.amp():
            for _ in range(self.warmup - (0 if count else 1)):
                fn()
                bar.update()
            self.sync()
            start = time.perf_counter()
            for _ in range(self.repeats):
                fn()
                self.sync()  # per iteration, so the bar shows real progress; cheap next to an iteration
                bar.update()
            seconds = time.perf_counter() - start
        bar.close()
        flops = counter.get_total_flops()
        count = self.repeats * (1 if per == "step" else items)
        tflops = flops * self.repeats / seconds / 1e12
        row = {"name": name, "unit": unit, "value": count / seconds, "iterations": self.repeats,
               "seconds": seconds, "items_per_iteration": items, "gflop_per_iteration": flops / 1e9,
               "gflop_per_item": flops / items / 1e9, "tflops": tflops,
               "peak_fraction": tflops / self.peak if self.peak else None, "settings": settings}
        self.results.append(row)
        print(f"  {name}: {row['value']:.4g} {unit} ({self.repeats} iterations in {seconds:.2f} s, "
              f"{tflops:.3g} TFLOP/s)", flush=True)


# -- stages -------------------------------------------------------------------------------------

def bench_finetune(b: Bench, dit: DiT, vae, res: int, selected: list[str], compile: bool = False):
    names = mark_difffit_trainable(dit)
    params = dict(dit.named_parameters())
    params = {k: params[k] for k in names}
    batch, sf = FINETUNE["batch"], vae.config.scaling_factor
    settings = {"batch": batch, "trainable_params": sum(p.numel() for p in params.values()),
                "optimizer": "AdamW", "lr": FINETUNE["lr"], "minimax": FINETUNE["minimax"], "compile": compile}
    latent_shape = (dit.in_channels, dit.config.input_size, dit.config.input_size)

    def trainer(compiled=compile):
        return Trainer(dit, params, FINETUNE["lr"], FINETUNE["ema_decay"], 0, b.device, FINETUNE["minimax"],
                       compile=compiled)

    if "finetune_cached" in selected:
        t, latents = trainer(), LatentSet(random_cache(10 * batch, latent_shape, sf), b.device)
        gen = torch.Generator().manual_seed(0)
        index = lambda: torch.randperm(len(latents), generator=gen)[:batch].to(b.device)  # noqa: E731
        eager = trainer(False) if compile else None
        b.measure("finetune_cached", lambda: t.step(latents, index()), count=eager and (lambda: eager.step(latents, index())),
                  items=batch, unit="steps/s", per="step", settings={**settings, "latents": "cached"})
    if "finetune_vae" in selected:
        t = trainer()
        images = torch.randint(0, 256, (batch, 3, res, res), dtype=torch.uint8)
        labels = torch.arange(batch) % NUM_CLASSES_REAL
        class_ids = list(range(0, 1000, 1000 // NUM_CLASSES_REAL))

        def step():  # the reference's loop: encode the batch (already flipped or not), sample, train
            with torch.no_grad():
                dist = vae.encode(to_model_range(images.to(b.device))).latent_dist
            pair = lambda v: v.float().unsqueeze(1).expand(-1, 2, -1, -1, -1)  # noqa: E731 (no flip pair)
            latents = LatentSet({"mean": pair(dist.mean), "std": pair(dist.std), "scaling_factor": sf,
                                 "labels": labels, "class_ids": class_ids}, b.device)
            t.step(latents, torch.arange(batch, device=b.device))

        b.measure("finetune_vae", step, items=batch, unit="steps/s", per="step",
                  settings={**settings, "latents": f"VAE encoder on {res}x{res} images every step"})


def bench_generate(b: Bench, dit: DiT, vae, args):
    dit.eval()
    diffusion = GaussianDiffusion.respaced(args.gen_steps)
    shape = (dit.in_channels, dit.config.input_size, dit.config.input_size)
    for name, batch in (("generate_single", 1), ("generate_batched", args.gen_batch)):
        if name not in args.selected:
            continue

        def generate(batch=batch, compile=args.compile):  # as generate.generate_set does for one batch
            noise = torch.randn(args.gen_steps + 1, batch, *shape, device=b.device)
            labels = torch.randint(NUM_CLASSES_REAL, (batch,), device=b.device)
            decode_latents(vae, sample_latents(dit, diffusion, labels, noise, args.guidance, guidance_channels=3,
                                               compile=compile))

        b.measure(name, generate, items=batch, unit="images/s", per="image",
                  count=(lambda batch=batch: generate(batch, False)) if args.compile else None,
                  settings={"batch": batch, "steps": args.gen_steps, "guidance": args.guidance,
                            "compile": args.compile, "includes": "sampling + VAE decoding to uint8 on the CPU"})
    if "generate_igd" in args.selected:
        bench_generate_igd(b, dit, vae, diffusion, shape, args)
    dit.train()


def igd_guide(vae, res: int, tiny: bool, steps: int, device: torch.device):
    """IGD's guide at DD_IGD's ImageWoof shape: ConvNet-6 (ConvNet-3 at the tiny 32 px) at full width
    (a quarter with --tiny) over 10 classes, 4 kept checkpoints (random weights), a class gradient
    and a full deviation memory of random latents; the interval at the same fraction of `steps`."""
    from minimaxdd.guidance.igd import InfluenceGuide, build_surrogate

    surrogate = {"arch": "convnet", "channels": 3, "num_classes": NUM_CLASSES_REAL, "resolution": res,
                 "width_factor": 0.25 if tiny else 1.0, "normalize": "imagenet", "states": []}
    for k in range(IGD["checkpoints"]):
        torch.manual_seed(k)
        surrogate["states"].append(build_surrogate(surrogate).state_dict())
    interval = [min(steps - 1, round(i * steps / 50)) for i in IGD["interval"]]
    parameters = sum(p.numel() for p in build_surrogate(surrogate).parameters())
    gradient = torch.randn(IGD["checkpoints"], parameters)
    guide = InfluenceGuide(vae, surrogate, lambda c: gradient, influence_scale=IGD["influence_scale"],
                           deviation_scale=IGD["deviation_scale"], interval=interval,
                           memory_size=IGD["memory_size"], device=device)
    guide.start_classes(list(range(NUM_CLASSES_REAL)))
    return guide, interval, parameters


def bench_generate_igd(b: Bench, dit: DiT, vae, diffusion, shape: tuple, args):
    """generate_batched's batch with IGD's guidance: at each guided step a gradient through the VAE
    decoder and, per kept checkpoint, the surrogate's parameter gradient (a double backward)."""
    res = 32 if args.tiny else 256  # build_models' image side
    guide, interval, parameters = igd_guide(vae, res, args.tiny, args.gen_steps, b.device)
    batch = args.gen_batch
    labels = torch.arange(batch, device=b.device) % NUM_CLASSES_REAL
    for _ in range(IGD["memory_size"]):  # every class's deviation memory full
        guide.set_labels(list(range(NUM_CLASSES_REAL)))
        guide.end_batch(torch.randn(NUM_CLASSES_REAL, *shape, device=b.device))
    guide.set_labels(labels.tolist())

    def generate():
        noise = torch.randn(args.gen_steps + 1, batch, *shape, device=b.device)
        decode_latents(vae, sample_latents(dit, diffusion, labels, noise, args.guidance, guidance_channels=3,
                                           guide=guide))

    b.measure("generate_igd", generate, items=batch, unit="images/s", per="image",
              settings={"batch": batch, "steps": args.gen_steps, "guidance": args.guidance,
                        "guided_steps": interval[1] - interval[0] + 1, "interval": interval,
                        "surrogate_params": parameters, **{k: IGD[k] for k in ("checkpoints", "memory_size")},
                        "includes": "generate_batched's work + IGD's guidance at the guided steps"})


def protocols() -> tuple[HardLabel, SoftLabel]:
    """The schema's defaults (the paper's protocols) for a 10-class subset."""
    config = load_config({"experiment": "benchmark"})
    return (HardLabel.from_config(config["validate"], **hard_label_rule(NUM_CLASSES_REAL)),
            SoftLabel.from_config(config["soft_label"]))


def validation_step(device: torch.device, steps, runs: int, res: int, channels_last: bool = False):
    """One training step of `runs` classifiers (a group of seeds) on one batch of 64 images, as
    classifier.train_classifiers takes it: the protocol's batch (augmentation, CutMix, targets),
    then forward, backward and update; returns the step and the mode the group trains in."""
    trainer, rngs, mode, _ = build_group(steps, list(range(runs)), 3, NUM_CLASSES_REAL, res, device, epochs=1000,
                                         mode="auto", channels_last=channels_last)
    x = torch.randint(0, 256, (VAL_BATCH, 3, res, res), dtype=torch.uint8, device=device)
    y = torch.randint(NUM_CLASSES_REAL, (VAL_BATCH,), device=device)
    idx = torch.arange(VAL_BATCH, device=device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as classifier.train_classifiers

    def step():
        trainer.train_step([steps.batch(x, y, idx, rng) for rng in rngs], device)

    return step, mode


def bench_validate(b: Bench, tiny: bool, res: int, channels_last: bool = False):
    width = 0.25 if tiny else 1.0
    hard, _ = protocols()
    protocol = dataclasses.replace(hard, width_factor=width, precision="bf16" if b.cuda else "fp32")
    step, _ = validation_step(b.device, HardLabelSteps("resnet18", protocol), 1, res, channels_last)
    b.measure("validate", step, items=VAL_BATCH, unit="images/s", per="image",
              settings={"arch": "resnet18", "resolution": res, "width_factor": width, "batch": VAL_BATCH,
                        "optimizer": "SGD(momentum 0.9)", "channels_last": channels_last,
                        "augment": "random resized crop + flip + ColorJitter + Lighting + cutmix"})


def bench_validate_group(b: Bench, tiny: bool, res: int):
    """`validate` for the seeds of one net in one job (validate.group_seeds), in the mode the
    workflow picks on this device (vmap on CUDA, loop on the CPU); images/s over all runs."""
    width = 0.25 if tiny else 1.0
    hard, _ = protocols()
    protocol = dataclasses.replace(hard, width_factor=width, precision="bf16" if b.cuda else "fp32")
    step, mode = validation_step(b.device, HardLabelSteps("resnet18", protocol), GROUP_SEEDS, res)
    b.measure("validate_group", step, items=VAL_BATCH * GROUP_SEEDS, unit="images/s", per="image",
              settings={"arch": "resnet18", "resolution": res, "width_factor": width, "batch": VAL_BATCH,
                        "runs": GROUP_SEEDS, "group_mode": mode})


def bench_validate_soft(b: Bench, tiny: bool, res: int):
    """RDED's soft-label step on the same images: ResNet-18 (BN) student, frozen ResNet-18 teacher."""
    from minimaxdd.nets import build_bn_net
    from minimaxdd.softlabel import SoftLabelSteps, freeze

    torch.manual_seed(0)
    width = 0.25 if tiny else 1.0
    _, soft = protocols()
    protocol = dataclasses.replace(soft, width_factor=width, precision="bf16" if b.cuda else "fp32")
    teacher = freeze(build_bn_net("resnet18_bn", 3, NUM_CLASSES_REAL, res, width).to(b.device))
    step, _ = validation_step(b.device, SoftLabelSteps("resnet18_bn", protocol, teacher, None, VAL_BATCH), 1, res)
    b.measure("validate_soft", step, items=VAL_BATCH, unit="images/s", per="image",
              settings={"arch": "resnet18_bn (teacher: resnet18_bn)", "resolution": res, "width_factor": width,
                        "batch": VAL_BATCH, "optimizer": "AdamW", "augment": "patch shuffle + crop + flip + cutmix"})


# -- output -------------------------------------------------------------------------------------

def device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return {"kind": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"), "name": name,
                "cuda": torch.version.cuda, "count": torch.cuda.device_count()}
    name = platform.processor()
    with contextlib.suppress(OSError):
        name = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), name)
    return {"kind": "cpu", "name": name or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


def write_markdown(path: Path, report: dict) -> None:
    s, results = report["settings"], report["results"]
    title = "TINY smoke-test configuration (not paper scale)" if s["tiny"] else "paper scale, random-init weights"
    lines = [f"# Throughput on {report['device']['name']} — {title}", "",
             f"- date {report['date']}, torch {report['torch']}, device `{report['device']['kind']}`"
             + (f", {report['device'].get('cpu_count')} CPUs" if report["device"]["kind"] == "cpu" else ""),
             f"- precision: {s['precision']}; warm-up {s['warmup']} iterations (untimed), "
             f"{s['repeats']} timed iterations per row",
             f"- models: {s['models']}",
             f"- command: `{report['command']}`", "",
             "| measurement | value | unit | batch | timed iterations | seconds | GFLOP per image "
             "| TFLOP/s | % of peak | settings |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        extra = ", ".join(f"{k} {v}" for k, v in r["settings"].items() if k not in ("batch", "minimax"))
        peak = f"{100 * r['peak_fraction']:.1f}" if r["peak_fraction"] is not None else ""
        lines.append(f"| {r['name']} | {r['value']:.4g} | {r['unit']} | {r['items_per_iteration']} "
                     f"| {r['iterations']} | {r['seconds']:.2f} | {r['gflop_per_item']:.4g} "
                     f"| {r['tflops']:.3g} | {peak} | {extra} |")
    by = {r["name"]: r["value"] for r in results}
    lines.append("")
    if "finetune_cached" in by and "finetune_vae" in by:
        lines.append(f"- latent cache: {by['finetune_cached'] / by['finetune_vae']:.2f}x the fine-tuning "
                     "steps/s of encoding with the VAE every step")
    if "validate" in by and "validate_soft" in by:
        lines.append(f"- soft labels: {by['validate_soft'] / by['validate']:.2f}x the images/s of the hard-label "
                     "step (the teacher's forward pass on every batch, on the same images)")
    if "generate_batched" in by and "generate_igd" in by:
        igd = next(r for r in results if r["name"] == "generate_igd")
        plain = next(r for r in results if r["name"] == "generate_batched")
        lines.append(f"- IGD: {by['generate_batched'] / by['generate_igd']:.2f}x the seconds per image of unguided "
                     f"sampling (Minimax's, on the same model and batch), "
                     f"{igd['gflop_per_item'] / plain['gflop_per_item']:.2f}x its counted FLOPs "
                     f"({igd['settings']['guided_steps']} guided steps of {s['gen_steps']})")
    if "generate_single" in by and "generate_batched" in by:
        lines.append(f"- batching: {by['generate_batched'] / by['generate_single']:.2f}x the images/s "
                     f"of one image at a time (batch {s['gen_batch']} vs 1, {s['gen_steps']} steps)")
    lines += ["", "## FLOP model", "", FLOP_MODEL, ""]
    path.write_text("\n".join(lines))


def main(argv=None):
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    if args.threads or args.tiny:  # tiny ops on several threads crawl when other jobs hold the cores
        torch.set_num_threads(args.threads or 1)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    warmup = max(1, args.warmup if args.warmup is not None else (3 if cuda else 1))
    repeats = args.repeats or (20 if cuda else 2)
    out = args.out or (Path(tempfile.gettempdir()) / "minimaxdd-benchmark-tiny" if args.tiny
                       else ROOT / "docs" / "benchmarks")
    info = device_info(device)
    stem = f"benchmark-{info['kind']}" + ("-tiny" if args.tiny else "") + args.tag
    print(f"benchmark on {info['name']} ({device}), {'TINY' if args.tiny else 'paper-scale'} models: "
          f"{', '.join(args.selected)}; warm-up {warmup}, repeats {repeats}", flush=True)

    b = Bench(device, warmup, repeats, args.peak_tflops)
    needs_dit = any(m.startswith(("finetune", "generate")) for m in args.selected)
    start = time.perf_counter()
    dit, vae, res = build_models(args.tiny, device) if needs_dit else (None, None, 32 if args.tiny else 256)
    if dit is not None:
        print(f"  built DiT ({sum(p.numel() for p in dit.parameters()) / 1e6:.1f} M params) and VAE in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        bench_finetune(b, dit, vae, res, args.selected, args.compile)
        bench_generate(b, dit, vae, args)
        del dit, vae
    if "validate" in args.selected:
        bench_validate(b, args.tiny, res, args.channels_last)
    if "validate_soft" in args.selected:
        bench_validate_soft(b, args.tiny, res)
    if "validate_group" in args.selected:
        bench_validate_group(b, args.tiny, res)

    settings = {"tiny": args.tiny, "warmup": warmup, "repeats": repeats, "gen_steps": args.gen_steps,
                "gen_batch": args.gen_batch, "guidance": args.guidance, "peak_tflops": args.peak_tflops,
                "precision": "bf16 autocast + TF32" if cuda else "fp32", "compile": args.compile,
                "channels_last": args.channels_last,
                "models": ("tiny DiT (hidden 64, depth 2, 4x4 latents), tiny VAE (32 px), ResNet-18 x0.25 at 32 px"
                           if args.tiny else "DiT-XL/2 (256 px), SD VAE (sd-vae-ft-mse architecture), "
                           "ResNet-18 at 256 px")}
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "torch": torch.__version__, "device": info, "command": " ".join(["python", *sys.argv]),
              "settings": settings, "flop_model": FLOP_MODEL, "results": b.results}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(out / f"{stem}.md", report)
    print(f"wrote {out / stem}.json and .md", flush=True)


if __name__ == "__main__":
    main()
