"""What the start-of-run data checks cost on an ImageNet-sized folder tree, and what keeping each
class folder's listing saves (data._list_class_folder).

At every workflow start, before any job, three things read the dataset's folders: the per-class
image counts (checks.check), the split sizes (the disk estimate) and the prepare rule's rerun
trigger (the name, size and modification time of every file). The benchmark builds a tree of
empty `.JPEG` files (the checks read names and stats, never pixels), dated an hour back, and
times the three in one process, as a workflow start runs them, twice in the same run:

- listed each time: the listing dropped before each of the three (every call walks every folder);
- listed once: as the workflow does, the listing kept while a folder's modification time stands.

Ratios within one run are what to quote (this VM's speed drifts).

    python benchmarks/start_checks.py --classes 100 --per-class 1300 --out docs/benchmarks
    python benchmarks/start_checks.py --smoke --out /tmp/start-checks   # 2 classes of 5 files: a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

from minimaxdd import data


def build_tree(root: Path, classes: int, per_class: int, test_per_class: int) -> None:
    past = time.time_ns() - 3600 * 10**9  # an hour back: older than the listing's racy-second rule
    for split, count in (("train", per_class), ("val", test_per_class)):
        for k in range(classes):
            folder = root / split / f"n{k:08d}"
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"n{k:08d}_{i}.JPEG").touch()
            os.utime(folder, ns=(past, past))


def start_checks(dataset: dict, keep_listing: bool) -> float:
    """Seconds for the three start-of-run reads of one workflow start."""
    data._listings.clear()
    start = time.perf_counter()
    for read in (data.class_image_counts, data.split_sizes, data.source_fingerprint):
        if not keep_listing:
            data._listings.clear()
        read(dataset)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=1300)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="2 classes of 5 files, 1 repeat: a smoke test")
    args = parser.parse_args(argv)
    if args.smoke:  # its sizes as the defaults: what is given still counts
        args = parser.parse_args(argv, argparse.Namespace(classes=2, per_class=5, test_per_class=1, repeats=1))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_tree(root, args.classes, args.per_class, args.test_per_class)
        dataset = {"kind": "imagefolder", "root": str(root), "train_dir": "train", "test_dir": "val",
                   "classes": None, "class_ids": None}
        times = {"listed_each_time_s": [], "listed_once_s": []}
        for _ in range(args.repeats):  # interleaved, so that drift hits both alike
            times["listed_each_time_s"].append(start_checks(dataset, keep_listing=False))
            times["listed_once_s"].append(start_checks(dataset, keep_listing=True))
    best = {name: min(values) for name, values in times.items()}
    record = {"date": datetime.date.today().isoformat(), "classes": args.classes, "per_class": args.per_class,
              "test_per_class": args.test_per_class, "files": args.classes * (args.per_class + args.test_per_class),
              **{name: [round(v, 3) for v in values] for name, values in times.items()},
              "speedup": round(best["listed_each_time_s"] / best["listed_once_s"], 2)}
    print(json.dumps(record, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "start-checks-cpu.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
