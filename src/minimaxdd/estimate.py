"""The work of a full run, stage by stage, and the hours it takes at measured throughputs
(benchmarks/benchmark.py records): what benchmarks/estimate.py tabulates for the presets and the
preflight projects for a user's config.

Work model (ImageNet: about 1,300 training and 50 validation images per class):
- fine-tuning: the steps of every fine-tuning job (`finetune.train_steps`, else epochs over its
  classes' images) at `finetune_cached` steps/s;
- generation: the images of every generated set, at `generate_batched` images/s (an IGD set at
  `generate_igd`, which adds its guidance) scaled by the set's denoising steps over the benchmark's;
- IGD's surrogate: `igd.surrogate_epochs` over the training split, at `validate` images/s scaled
  by the FLOPs of its net (as validation); its class gradients, a pass over `igd.gradient_memory`
  images a class per kept checkpoint, are left out (under 1 % of it at the presets' settings);
- validation: per run, epochs x set images training steps and `evaluations` passes over the test
  split (a forward pass taken as a third of a training step), at `validate` (hard labels) or
  `validate_soft` (soft labels) images/s, scaled by the FLOPs of the run's net at its resolution
  against the benchmark's ResNet-18 (counted with torch's FlopCounterMode);
- the same hard-label runs with the seeds of each net packed in one job (`validate.group_seeds`),
  at `validate_group` images/s (over all runs of the group), side by side;
- the feature network of the analyses: `analysis.feature_epochs` over the training split.
Stages the benchmark file lacks are reported as not measured.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import guidance, methods, plan
from .nets import build_bn_net, build_net
from .paths import Paths

TRAIN_PER_CLASS, TEST_PER_CLASS = 1300, 50


@functools.cache
def step_gflop(arch: str, classes: int, resolution: int) -> float:
    """GFLOP of one training step (forward + backward) of one image."""
    build = build_bn_net if arch == "resnet18_bn" else build_net
    net = build(arch, 3, classes, resolution, 1.0)
    x = torch.randn(2, 3, resolution, resolution)  # 2: instance norm of a 1x1 map needs 2 images
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return counter.get_total_flops() / 2 / 1e9


def stage_work(p: plan.Grid, rates: dict, bench: dict) -> list[tuple[str, int, str, float | None]]:
    """(stage, jobs, work in words, seconds or None) for every stage of the job grid."""
    config, classes = p.config, p.class_count
    paths = Paths(p)
    per_phase = config["finetune"]["classes_per_phase"] or classes
    rows = []

    def finetune_steps(name: str) -> int:
        settings = methods.finetune_settings(name, config)
        return settings["train_steps"] or settings["epochs"] * math.ceil(per_phase * TRAIN_PER_CLASS
                                                                         / settings["batch_size"])

    steps = [finetune_steps(name) for name in p.finetune_jobs for _ in p.phases]
    rows.append(("finetune", len(steps), f"{sum(steps):,} steps", _time(sum(steps), rates.get("finetune_cached"))))

    sets = [(m, ipc) for ipc in p.ipcs for m in p.methods_at(ipc) if methods.is_generated(m, config)]
    sets += [(pt, ipc) for s in p.studies.values() for pt in p.study_points(s) for ipc in s.get("ipcs", p.ipcs)]
    sets = list(dict.fromkeys((m, ipc) for m, ipc in sets if methods.is_generated(m, config)))
    groups = {("generate", "generate_batched"): []}  # (stage, the benchmark figure its cost scales from)
    for m, ipc in sets:
        guide = methods.guidance_of(m)
        method = guide and guidance.method(guide)
        key = (f"generate ({method.label})", method.benchmark) if method and method.benchmark else \
            ("generate", "generate_batched")
        groups.setdefault(key, []).append((m, ipc))
    for (stage, rate), group in groups.items():
        scaled = sum(ipc * classes * methods.generate_settings(m, config)["steps"] / bench["gen_steps"] for m, ipc in group)
        rows.append((stage, len(group), f"{sum(ipc * classes for _, ipc in group):,} images",
                     _time(scaled, rates.get(rate))))
    if any(methods.guidance_of(m) == "igd" for m, _ in sets):  # IGD's own stages
        igd = config["igd"]
        images = igd["surrogate_epochs"] * classes * TRAIN_PER_CLASS * step_gflop(
            igd["surrogate_arch"], classes, config["dataset"]["resolution"]) / bench["validate_gflop"]
        rows.append(("igd_surrogate", 1, f"{images:,.0f} ResNet-18-step images", _time(images, rates.get("validate"))))

    hard = paths.validation_records() + [r for s in p.studies.values() for r in paths.study_records(s)]
    hard = (hard + (paths.table9_records() if p.expanded else [])) if "hard_label" in p.protocols else []
    hard += paths.no_augment_records() if "no_augment" in p.protocols else []  # the same runs, unaugmented
    soft = paths.soft_label_records() if "soft_label" in p.protocols else []
    for stage, records, settings, rate in (("validate", hard, config["validate"], "validate"),
                                           ("validate_soft_label", soft, config["soft_label"], "validate_soft")):
        runs = [paths.run_of(r) for r in dict.fromkeys(records)]
        if not runs:
            continue
        images = 0.0
        for method, ipc, arch in runs:
            n = ipc * classes + (classes * TRAIN_PER_CLASS if method == "full" or method.startswith("full+") else 0)
            epochs = p.validation_epochs(method, ipc) if stage == "validate" else settings["epochs"]
            resolution = settings["resolution"] or config["dataset"]["resolution"]
            flops = step_gflop(arch, classes, resolution) / bench[f"{rate}_gflop"]
            evaluations = settings["evaluations"] or 20  # RDED: every 10 epochs of the last 20 % of 300 (6 + 1)
            images += flops * (epochs * n + evaluations * classes * TEST_PER_CLASS / 3)
        rows.append((stage, len(runs), f"{images:,.0f} ResNet-18-step images", _time(images, rates.get(rate))))
        if stage == "validate":  # the same runs, the seeds of each net packed in one job
            packs = len({Path(r).parent for r in records})  # one job per (protocol, method, IPC, net)
            rows.append(("validate, seeds grouped", packs, "the same", _time(images, rates.get("validate_group"))))

    if config["analysis"]["enabled"]:
        images = config["analysis"]["feature_epochs"] * classes * TRAIN_PER_CLASS * step_gflop(
            "resnetap10", classes, config["dataset"]["resolution"]) / bench["validate_gflop"]
        rows.append(("feature_net", 1, f"{images:,.0f} ResNet-18-step images", _time(images, rates.get("validate"))))
    return rows


def _time(work: float, rate: float | None) -> float | None:
    return None if rate is None else work / rate


def load_benchmark(path: Path) -> tuple[dict, dict, dict]:
    """(rates by stage name, the benchmark's reference settings, the whole record) of a
    benchmark-<device>.json."""
    report = json.loads(Path(path).read_text())
    rates = {r["name"]: r["value"] for r in report["results"]}
    bench = {"gen_steps": report["settings"]["gen_steps"]}
    for r in report["results"]:
        if r["name"] in ("validate", "validate_soft"):
            bench[f"{r['name']}_gflop"] = r["gflop_per_item"]
    bench.setdefault("validate_gflop", step_gflop("resnet18", 10, 256))
    bench.setdefault("validate_soft_gflop", bench["validate_gflop"])
    return rates, bench, report
