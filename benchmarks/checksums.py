"""What the artifacts' content checksums cost (io.write_checksum, io.verify): SHA-256 of every
artifact a job reads, written with it, checked by its readers, and by a repair run's scrub.

Measured in one process: the hashing throughput, and for a set's pack (`--mb` MB) the time to save
it with and without its checksum and to load it with and without the check (ratios within one run
are what to quote: this VM's speed drifts). Projected from the throughput: a scrub of a default
run's artifacts (`--results`, when given), and at ImageNet-1K size the check of the test split
(what every validation job reads) and of the training split (what the feature network and a
repair's scrub read).

    python benchmarks/checksums.py --results results/digits --out docs/benchmarks
    python benchmarks/checksums.py --smoke --out /tmp/checksums   # 8 MB: a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from minimaxdd import io
from minimaxdd.data import RealPack

# ImageNet-1K at 256 px, as the data shards hold it (uint8, 3 x 256 x 256 a image)
IMAGE_BYTES = 3 * 256 * 256
IMAGENET = {"train split (1,281,167 images)": 1_281_167 * IMAGE_BYTES, "test split (50,000 images)": 50_000 * IMAGE_BYTES}


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def artifact_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in io.ARTIFACT_SUFFIXES and p.is_file())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=256, help="size of the measured pack")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=None, help="a finished run's results/<experiment> folder")
    parser.add_argument("--smoke", action="store_true", help="8 MB, one repeat")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    mb, repeats = (8, 1) if args.smoke else (args.mb, args.repeats)

    images = torch.randint(0, 256, (mb * 2**20 // IMAGE_BYTES, 3, 256, 256), dtype=torch.uint8)
    pack = RealPack(images, torch.zeros(len(images), dtype=torch.long), ["a"], [0])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pack.pt"
        pack.save(path)
        size = path.stat().st_size
        seconds = {
            "hash": best_of(repeats, lambda: io.file_digest(path)),
            "save_with_checksum": best_of(repeats, lambda: pack.save(path)),
            "save_without": best_of(repeats, lambda: torch.save({"images": images}, Path(tmp) / "plain.pt")),
            "load_with_check": best_of(repeats, lambda: io.load_torch(path)),
            "load_without": best_of(repeats, lambda: torch.load(path, map_location="cpu", weights_only=False)),
        }
    throughput = size / seconds["hash"]
    projected = {name: nbytes / throughput for name, nbytes in IMAGENET.items()}
    if args.results:
        projected[f"scrub of {args.results} ({artifact_bytes(args.results) / 1e6:.1f} MB)"] = \
            artifact_bytes(args.results) / throughput
    record = {"date": datetime.date.today().isoformat(), "host": os.uname().nodename, "cpus": os.cpu_count(),
              "pack_bytes": size, "seconds": seconds, "sha256_gb_per_s": throughput / 1e9,
              "save_ratio": seconds["save_with_checksum"] / seconds["save_without"],
              "load_ratio": seconds["load_with_check"] / seconds["load_without"], "projected_seconds": projected}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "checksums-cpu" + ("-smoke" if args.smoke else "")
    (args.out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# Content checksums: cost ({record['date']}, {record['cpus']} CPUs, `benchmarks/checksums.py`)", "",
             f"SHA-256 at {record['sha256_gb_per_s']:.2f} GB/s on one core. A {size / 1e6:.0f} MB pack saved "
             f"with its checksum takes {record['save_ratio']:.2f}x the time of a plain `torch.save`, and "
             f"loaded with the check {record['load_ratio']:.2f}x that of a plain `torch.load` (best of "
             f"{repeats}, in one run).", "", "| what is checked | seconds of hashing (projected) |", "| --- | --- |"]
    lines += [f"| {name} | {s:.1f} |" for name, s in projected.items()]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
