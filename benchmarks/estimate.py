"""How long would a preset's full table rebuild take on this device? The job plan's work per stage
(from the same plan the workflow runs) times the per-stage throughput that benchmark.py measured.

    python benchmarks/estimate.py --benchmark docs/benchmarks/benchmark-cpu.json
    python benchmarks/estimate.py --benchmark docs/benchmarks/benchmark-nvidia-h200.json configs/imagewoof.yaml

Work model (ImageNet: about 1,300 training and 50 validation images per class):
- fine-tuning: the steps of every fine-tuning job (`finetune.train_steps`, else epochs over its
  classes' images) at `finetune_cached` steps/s;
- generation: the images of every generated set, at `generate_batched` images/s scaled by the
  set's denoising steps over the benchmark's;
- validation: per run, epochs x set images training steps and `evaluations` passes over the test
  split (a forward pass taken as a third of a training step), at `validate` (hard labels) or
  `validate_soft` (soft labels) images/s, scaled by the FLOPs of the run's net at its resolution
  against the benchmark's ResNet-18 (counted with torch's FlopCounterMode);
- the same hard-label runs with the seeds of each net packed in one job (`validate.group_seeds`),
  at `validate_group` images/s (over all runs of the group), side by side;
- the feature network of the analyses: `analysis.feature_epochs` over the training split.
Stages the benchmark file lacks are reported as not measured. Writes a Markdown table to stdout and,
with --out, to a file.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from minimaxdd import methods, plan  # noqa: E402
from minimaxdd.nets import build_bn_net, build_net  # noqa: E402
from minimaxdd.paths import Paths  # noqa: E402

TRAIN_PER_CLASS, TEST_PER_CLASS = 1300, 50
PRESETS = ("imagewoof", "imagenette", "imageidc", "imagenet100", "imagenet1k")


@functools.cache
def step_gflop(arch: str, classes: int, resolution: int) -> float:
    """GFLOP of one training step (forward + backward) of one image."""
    build = build_bn_net if arch == "resnet18_bn" else build_net
    net = build(arch, 3, classes, resolution, 1.0)
    x = torch.randn(2, 3, resolution, resolution)  # 2: instance norm of a 1x1 map needs 2 images
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return counter.get_total_flops() / 2 / 1e9


def preset_grid(path: Path) -> plan.Grid:
    config = yaml.safe_load(path.read_text())
    for key in ("classes", "class_ids"):
        config["dataset"][key] = str(ROOT / config["dataset"][key])
    return plan.Grid(plan.load_config(config))


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
    scaled = sum(ipc * classes * methods.generate_settings(m, config)["steps"] / bench["gen_steps"] for m, ipc in sets)
    rows.append(("generate", len(sets), f"{sum(ipc * classes for _, ipc in sets):,} images",
                 _time(scaled, rates.get("generate_batched"))))

    hard = paths.validation_records() + [r for s in p.studies.values() for r in paths.study_records(s)]
    hard = (hard + (paths.table9_records() if p.expanded else [])) if "hard_label" in p.protocols else []
    soft = paths.soft_label_records() if "soft_label" in p.protocols else []
    for stage, records, settings, rate in (("validate", hard, config["validate"], "validate"),
                                           ("validate_soft_label", soft, config["soft_label"], "validate_soft")):
        records = [Path(r).parts for r in dict.fromkeys(records)]
        if not records:
            continue
        images = 0.0
        for parts in records:
            if parts[-3] == "full":  # validate/full/<arch>/seed<S>.json: the whole training split
                method, ipc, arch = "full", 0, parts[-2]
            else:  # validate/<method>/ipc<N>/<arch>/seed<S>.json
                method, ipc, arch = parts[-4], int(parts[-3].removeprefix("ipc")), parts[-2]
            n = ipc * classes + (classes * TRAIN_PER_CLASS if method == "full" or method.startswith("full+") else 0)
            epochs = p.validation_epochs(method, ipc) if stage == "validate" else settings["epochs"]
            resolution = settings["resolution"] or config["dataset"]["resolution"]
            flops = step_gflop(arch, classes, resolution) / bench[f"{rate}_gflop"]
            evaluations = settings["evaluations"] or 20  # RDED: every 10 epochs of the last 20 % of 300 (6 + 1)
            images += flops * (epochs * n + evaluations * classes * TEST_PER_CLASS / 3)
        rows.append((stage, len(records), f"{images:,.0f} ResNet-18-step images", _time(images, rates.get(rate))))
        if stage == "validate":  # the same runs, the seeds of each net packed in one job
            packs = len({parts[:-1] for parts in records})  # one job per (method, IPC, net)
            rows.append(("validate, seeds grouped", packs, "the same", _time(images, rates.get("validate_group"))))

    if config["analysis"]["enabled"]:
        images = config["analysis"]["feature_epochs"] * classes * TRAIN_PER_CLASS * step_gflop(
            "resnetap10", classes, config["dataset"]["resolution"]) / bench["validate_gflop"]
        rows.append(("feature_net", 1, f"{images:,.0f} ResNet-18-step images", _time(images, rates.get("validate"))))
    return rows


def _time(work: float, rate: float | None) -> float | None:
    return None if rate is None else work / rate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", type=Path, help="preset configs (default: every configs/*.yaml preset)")
    parser.add_argument("--benchmark", type=Path, required=True, help="a benchmark-<device>.json of benchmark.py")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)
    report = json.loads(args.benchmark.read_text())
    rates = {r["name"]: r["value"] for r in report["results"]}
    bench = {"gen_steps": report["settings"]["gen_steps"]}
    for r in report["results"]:
        if r["name"] in ("validate", "validate_soft"):
            bench[f"{r['name']}_gflop"] = r["gflop_per_item"]
    bench.setdefault("validate_gflop", step_gflop("resnet18", 10, 256))
    bench.setdefault("validate_soft_gflop", bench["validate_gflop"])
    lines = [f"# Estimated full-table rebuild on {report['device']['name']} ({report['device']['kind']})", "",
             f"From `{args.benchmark.name}` ({report['date']}, torch {report['torch']}), by `benchmarks/estimate.py`: "
             "the plan's work per stage over the measured throughput, one job at a time on this device "
             "(ImageNet: 1,300 training and 50 validation images per class).", ""]
    for preset in args.presets or [ROOT / f"configs/{name}.yaml" for name in PRESETS]:
        rows = stage_work(preset_grid(preset), rates, bench)
        hours = {stage: t for stage, _, _, t in rows}
        one_by_one = sum(t for stage, *_, t in rows if t is not None and stage != "validate, seeds grouped")
        lines += [f"## {preset.stem}", "", "| stage | jobs | work | hours |", "|---|---:|---|---:|"]
        lines += [f"| {stage} | {jobs} | {work} | {'not measured' if t is None else f'{t / 3600:,.1f}'} |"
                  for stage, jobs, work, t in rows]
        lines += [f"| **total of the measured stages, one validation run at a time** | | | **{one_by_one / 3600:,.1f}** |"]
        if hours.get("validate") is not None and hours.get("validate, seeds grouped") is not None:
            packed = one_by_one - hours["validate"] + hours["validate, seeds grouped"]
            lines += [f"| **the same, the seeds of each net packed** | | | **{packed / 3600:,.1f}** |"]
        lines += [""]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
