"""How long would a preset's full table rebuild take on this device? The job plan's work per stage
(from the same plan the workflow runs) times the per-stage throughput that benchmark.py measured.

    python benchmarks/estimate.py --benchmark docs/benchmarks/benchmark-cpu.json
    python benchmarks/estimate.py --benchmark docs/benchmarks/benchmark-nvidia-h200.json configs/imagewoof.yaml
    python benchmarks/estimate.py --benchmark docs/benchmarks/benchmark-cpu.json --smoke --out /tmp/estimate.md

The work model: minimaxdd/estimate.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from minimaxdd import plan  # noqa: E402
from minimaxdd.estimate import load_benchmark, stage_work  # noqa: E402

PRESETS = ("imagewoof", "imagenette", "imageidc", "imagenet100", "imagenet1k")


def preset_grid(path: Path) -> plan.Grid:
    config = yaml.safe_load(path.read_text())
    for key in ("classes", "class_ids"):
        config["dataset"][key] = str(ROOT / config["dataset"][key])
    return plan.Grid(plan.load_config(config))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", type=Path, help="preset configs (default: every configs/*.yaml preset)")
    parser.add_argument("--benchmark", type=Path, required=True, help="a benchmark-<device>.json of benchmark.py")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    parser.add_argument("--smoke", action="store_true", help=f"the first preset only ({PRESETS[0]}): a smoke test")
    args = parser.parse_args(argv)
    args.presets = args.presets or [ROOT / f"configs/{name}.yaml" for name in (PRESETS[:1] if args.smoke else PRESETS)]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    rates, bench, report = load_benchmark(args.benchmark)
    lines = [f"# Estimated full-table rebuild on {report['device']['name']} ({report['device']['kind']})", "",
             f"From `{args.benchmark.name}` ({report['date']}, torch {report['torch']}), by `benchmarks/estimate.py`: "
             "the plan's work per stage over the measured throughput, one job at a time on this device "
             "(ImageNet: 1,300 training and 50 validation images per class).", ""]
    for preset in args.presets:
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
