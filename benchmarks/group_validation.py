"""Runs per hour of validation: one run at a time vs a group of seeds in one job
(classifier.train_classifiers, modes "loop" and "vmap"), for the embedded default's nets, in one
process.

The default validates ConvNet-3, ResNetAP-10 and ResNet-18 at width 1/8 on 16 px gray digits,
100 (IPC 10) or 200 (IPC 20) training images, batch 64, 10 evaluations on a test split of 360
images (20 % of digits), each Snakemake job on one thread. The images here are random (speed
only). Every configuration is timed `--rounds` times, the three ways interleaved, and the
fastest round of each is kept, so that the ratios come from one run of this script under the
same machine load.

    python benchmarks/group_validation.py                      # 16 and 32 px, 2 seeds, 1 thread
    python benchmarks/group_validation.py --seeds 4 --epochs 10 --sizes 16
    python benchmarks/group_validation.py --smoke --json /tmp/group.json   # 16 px, 1 epoch of 20 images
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout, installed or not
from minimaxdd.classifier import train_classifiers  # noqa: E402
from minimaxdd.plan import load_config  # noqa: E402
from minimaxdd.settings import HardLabel, hard_label_rule  # noqa: E402
from minimaxdd.validate import HardLabelSteps  # noqa: E402


def images(n: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=g), torch.arange(n) % 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["convnet", "resnetap10", "resnet18"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[16, 32])
    parser.add_argument("--train-images", type=int, default=100)
    parser.add_argument("--test-images", type=int, default=360)
    parser.add_argument("--seeds", type=int, default=2, help="runs per group (the default config: 2)")
    parser.add_argument("--epochs", type=int, default=20, help="the default trains 60 (IPC 10) / 40 (IPC 20)")
    parser.add_argument("--evaluations", type=int, default=10)
    parser.add_argument("--width-factor", type=float, default=0.125)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a validate job has 1)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="16 px, 1 round of 1 epoch on 20 images: a smoke test")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.smoke:  # its sizes as the defaults: what is given still counts
        args = parser.parse_args(argv, argparse.Namespace(sizes=[16], train_images=20, test_images=20, epochs=1,
                                                          evaluations=1, rounds=1))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    default_protocol = HardLabel.from_config(load_config({"experiment": "bench"})["validate"], **hard_label_rule(10))
    rows = []
    for side in args.sizes:
        train_x, train_y = images(args.train_images, side, 0)
        test_x, test_y = images(args.test_images, side, 1)
        for arch in args.archs:
            protocol = dataclasses.replace(default_protocol, width_factor=args.width_factor,
                                           evaluations=args.evaluations)
            settings = dict(num_classes=10, epochs=args.epochs, device=args.device, channels_last=False,
                            test_x=test_x, test_y=test_y, progress=False, checkpointer=None)

            def train(group, mode, steps=HardLabelSteps(arch, protocol)):
                return train_classifiers(steps, train_x, train_y, seeds=group, mode=mode, **settings)

            ways = {
                "one_by_one": lambda: [train([s], "loop") for s in seeds],
                "group_loop": lambda: train(seeds, "loop"),
                "group_vmap": lambda: train(seeds, "vmap"),
            }
            best = {name: float("inf") for name in ways}
            for _ in range(args.rounds):
                for name, way in ways.items():
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    way()
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    best[name] = min(best[name], time.perf_counter() - start)
            per_hour = {name: 3600 * len(seeds) / wall for name, wall in best.items()}
            row = {"arch": arch, "px": side, "runs": len(seeds), "epochs": args.epochs,
                   **{f"{name}_runs_per_hour": round(v, 1) for name, v in per_hour.items()},
                   "loop_ratio": round(per_hour["group_loop"] / per_hour["one_by_one"], 3),
                   "vmap_ratio": round(per_hour["group_vmap"] / per_hour["one_by_one"], 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"torch": torch.__version__, "machine": platform.machine(), "threads": args.threads,
               "device": args.device, "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    print("\n| net | px | runs/group | one by one (runs/h) | group loop | group vmap | loop x | vmap x |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['arch']} | {r['px']} | {r['runs']} | {r['one_by_one_runs_per_hour']:.0f} | "
              f"{r['group_loop_runs_per_hour']:.0f} | {r['group_vmap_runs_per_hour']:.0f} | "
              f"{r['loop_ratio']:.2f} | {r['vmap_ratio']:.2f} |")


if __name__ == "__main__":
    main()
