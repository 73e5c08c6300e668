"""Does every data-touching job's memory stay bounded when the dataset grows?

Builds an ImageNet-like folder of random JPEGs (minimaxdd.toy; sides 333-1024 px, quality 90) at two or more
sizes that differ in their NUMBER OF CLASSES at a fixed number of images per class, as
ImageNet-100 -> ImageNet-1K does, plus a VAE in the SD-VAE layout at reduced width (256 px ->
32x32x4 latents) and a tiny DiT (random weights: memory and speed only). It then runs each stage
that reads the real data as the workflow does, every job a fresh process:

    prepare (1 and 2 decoding workers), encode (every class, and one class as `encode_chunk`),
    select_random, generate (base DiT, IPC 1), validate_full and feature_net (the first
    `--budget` seconds only: their data side peaks within the first batches)

and samples /proc of the job's process tree (prepare forks its decoding workers) every 20 ms:

- peak_rss_mb: the peak over time of the tree's summed RssAnon + RssShmem, the memory the jobs
  own; the file-backed pages of the memory-mapped shards are page cache the kernel can reclaim,
  so they are not counted. Forked workers count the pages they share with their parent again.
- peak_total_rss_mb: the same with VmRSS (file-backed pages included), beside it;
- peak_pss_mb: Pss_Anon + Pss_Shmem of smaps_rollup (shared pages split between the sharers),
  sampled every 100 ms;
- hwm_rss_mb: the kernel's high-water mark of VmRSS (VmHWM) of the job's largest single process,
  which catches the spikes between two samples (all but those of the job's last 20 ms);
- wall_s: the job process from start to exit; stage_s: the stage function alone (no imports).

How to read it (`<out>/data-stage-<device>.md`): a bounded stage's peak barely moves between the
sizes (growth per 10x of the dataset near 1.0); a stage whose peak grows with the image count
will, by the linear extrapolation from the two points to ImageNet-100 (130,000 images) and
ImageNet-1K (1.3 M images), need that much memory there. See benchmarks/README.md.

    python benchmarks/data_stage.py --smoke --out /tmp/data-stage   # smoke test: 1 and 2 classes of 2 images, ~1 min
    python benchmarks/data_stage.py --quick --out /tmp/data-stage   # 2 and 10 classes of 6 images, ~2 min
    python benchmarks/data_stage.py                                 # 10 and 100 classes of 30 images, ~15 min
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout, installed or not
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchmark import device_info  # noqa: E402
from minimaxdd import checkpoints, methods, plan, toy  # noqa: E402
from minimaxdd.data import source_fingerprint  # noqa: E402
from minimaxdd.dit import DiT, DiTConfig  # noqa: E402
from minimaxdd.settings import HardLabel  # noqa: E402

IMAGENET = {"ImageNet-100": 100 * 1300, "ImageNet-1K": 1000 * 1300}  # training images
SAMPLE_S, PSS_EVERY = 0.02, 5  # status every 20 ms; smaps_rollup (~1 ms a read) every 5th sample
ENCODE_BATCH, VAL_BATCH = 16, 64  # encode.batch_size's default; the reference's batch for <= 100 classes
# The default sizes: 300 and 3,000 training images; 260 test images at the smaller size, so that every
# batch of the test scoring (256) is full at both sizes and the peaks compare the data, not the batch
SIZES = {"full": {"classes": [10, 100], "per_class": 30, "val_per_class": 26, "budget": 0.0},
         "quick": {"classes": [2, 10], "per_class": 6, "val_per_class": 2, "budget": 12.0},
         "smoke": {"classes": [1, 2], "per_class": 2, "val_per_class": 1, "budget": 8.0}}
SMOKE_LARGER = ("prepare", "select_random")  # --smoke: the only stages run again at the larger size (no model)

# The job process: the stage called as stages.run calls it for a Snakemake job (threads, log).
CHILD = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["src"])
from minimaxdd import stages
from minimaxdd.io import job_context
with job_context(spec["log"], spec["threads"]):
    start = time.perf_counter()
    if spec["stage"]:
        getattr(stages, spec["stage"])(**spec["kwargs"])
    stage_s = time.perf_counter() - start
open(spec["result"], "w").write(json.dumps({"stage_s": stage_s}))
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, nargs="+", help="class counts of the dataset sizes (default 10 100; "
                   "the smallest and the largest are compared)")
    p.add_argument("--per-class", type=int, help="training images per class (default 30)")
    p.add_argument("--val-per-class", type=int, help="test images per class (default 26)")
    p.add_argument("--budget", type=float, help="seconds validate_full and feature_net run before they are "
                   "stopped (default 0: to the end)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="the stages' device (default cpu)")
    p.add_argument("--out", type=Path, help="output folder (default docs/benchmarks/; a temp folder with --quick "
                   "or --smoke)")
    p.add_argument("--quick", action="store_true", help="small sizes (2 and 10 classes of 6 images)")
    p.add_argument("--smoke", action="store_true", help="the smallest sizes (1 and 2 classes of 2 images; at 2 only "
                   "the stages without a model): a smoke test")
    p.add_argument("--keep", action="store_true", help="keep the temporary data, models and outputs")
    args = p.parse_args(argv)
    args.size = "smoke" if args.smoke else "quick" if args.quick else "full"
    for key, value in SIZES[args.size].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.classes = sorted(set(args.classes))
    if len(args.classes) < 2:
        p.error("--classes needs at least two different class counts")
    if args.per_class < 2 or args.val_per_class < 1:
        p.error("--per-class must be at least 2 and --val-per-class at least 1")
    args.gen_batch = min(8, args.classes[0])  # full batches at every size (IPC 1: one image a class)
    return args


# -- data and models ----------------------------------------------------------------------------

def write_models(folder: Path, class_counts: list[int]) -> tuple[Path, dict[int, Path]]:
    """The SD-VAE layout at reduced width (256 px -> 32x32x4 latents) and a tiny DiT per class count."""
    torch.manual_seed(0)
    dits = {}
    for k in class_counts:
        dits[k] = folder / f"dit-{k}"
        checkpoints.save_dit(DiT(DiTConfig(input_size=32, patch_size=8, in_channels=4, hidden_size=32, depth=1,
                                           num_heads=2, num_classes=k)), dits[k])
    return toy.write_vae(folder / "vae"), dits


# -- measuring ----------------------------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from the kernel's children lists of every thread."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        for children in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                todo += [int(c) for c in Path(children).read_text().split()]
            except OSError:  # the thread or process ended meanwhile
                pass
    return tree


def read_kb(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    values = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in keys:
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):  # ended meanwhile
        pass
    return values


def run_job(stage: str | None, kwargs: dict, *, threads: int, log: Path, budget: float | None = None) -> dict:
    """Run one stage in a fresh process and sample its process tree's memory until it exits (or
    until `budget` seconds, then the tree is killed); MB and seconds."""
    result = log.with_suffix(".result.json")
    spec = {"stage": stage, "kwargs": kwargs, "threads": threads, "log": str(log), "result": str(result),
            "src": str(ROOT / "src")}
    errors = log.with_suffix(".stderr")
    start = time.perf_counter()
    with open(errors, "w") as err:
        job = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(spec)], stdout=err, stderr=err,
                               start_new_session=True)  # its own process group: killed with its workers
    peak = {"anon": 0, "total": 0, "pss": 0, "hwm": 0, "processes": 0}
    stopped, tick = None, 0
    while job.poll() is None:
        tree = process_tree(job.pid)
        status = [read_kb(f"/proc/{p}/status", ("RssAnon", "RssShmem", "VmRSS", "VmHWM")) for p in tree]
        peak["anon"] = max(peak["anon"], sum(s.get("RssAnon", 0) + s.get("RssShmem", 0) for s in status))
        peak["total"] = max(peak["total"], sum(s.get("VmRSS", 0) for s in status))
        peak["hwm"] = max([peak["hwm"]] + [s.get("VmHWM", 0) for s in status])
        peak["processes"] = max(peak["processes"], len(tree))
        if tick % PSS_EVERY == 0:
            pss = [read_kb(f"/proc/{p}/smaps_rollup", ("Pss_Anon", "Pss_Shmem")) for p in tree]
            peak["pss"] = max(peak["pss"], sum(s.get("Pss_Anon", 0) + s.get("Pss_Shmem", 0) for s in pss))
        tick += 1
        if budget is not None and time.perf_counter() - start > budget:
            stopped = round(time.perf_counter() - start, 1)
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
            break
        time.sleep(SAMPLE_S)
    row = {"peak_rss_mb": round(peak["anon"] / 1024, 1), "peak_total_rss_mb": round(peak["total"] / 1024, 1),
           "peak_pss_mb": round(peak["pss"] / 1024, 1), "hwm_rss_mb": round(peak["hwm"] / 1024, 1),
           "processes": peak["processes"],
           "wall_s": round(time.perf_counter() - start, 2)}
    if stopped is not None:
        row["stopped_after_s"] = stopped
    elif job.returncode != 0:
        row["error"] = errors.read_text()[-4000:] or f"exit status {job.returncode}"
    else:
        row["stage_s"] = round(json.loads(result.read_text())["stage_s"], 2)
    return row


# -- the stages ---------------------------------------------------------------------------------

def batch_items(stage: str, classes: int, per_class: int) -> tuple[int, int] | None:
    """(images the job processes, its batch) of a batched stage: a set smaller than one batch
    runs a smaller batch, whose activations are what then differs between the sizes."""
    return {"encode": (classes * per_class, ENCODE_BATCH), "encode_chunk": (per_class, ENCODE_BATCH),
            "validate_full": (classes * per_class, VAL_BATCH), "feature_net": (classes * per_class, VAL_BATCH),
            }.get(stage)


def stage_jobs(work: Path, dataset: dict, vae: Path, dit: Path, device: str, config: dict) -> list[tuple]:
    """(stage label, stage function, workers, threads, budget?, kwargs) of every job at one size,
    in the workflow's order; threads as each rule's (`threads:`; prepare: one per worker)."""
    data = {w: (str(work / f"data-w{w}" / "train" / "index.json"), str(work / f"data-w{w}" / "test" / "index.json"))
            for w in (1, 2)}
    train, test = data[1]
    cores = os.cpu_count() or 1
    hard = HardLabel.from_config(config["validate"], lr=0.01, weight_decay=5e-4, batch_size=VAL_BATCH, width_factor=0.125,
                                 resolution=None)  # the reference's rule for <= 100 classes, nets at 1/8 width
    generate = methods.generate_settings("dit", config)
    jobs = [("prepare", "prepare", w, w, False,
             {"train": data[w][0], "test": data[w][1], "dataset": dataset, "workers": w,
              "sources": source_fingerprint(dataset)}) for w in (1, 2)]
    jobs += [
        ("encode", "encode", 1, cores, False, {"train": train, "vae": str(vae), "latents": str(work / "all.pt"),
                                               "batch_size": ENCODE_BATCH, "classes": None, "device": device}),
        ("encode_chunk", "encode", 1, cores, False, {"train": train, "vae": str(vae), "latents": str(work / "0-0.pt"),
                                                     "batch_size": ENCODE_BATCH, "classes": [0], "device": device}),
        ("select_random", "select_random", 1, 1, False,
         {"train": train, "pack": str(work / "random" / "pack.pt"), "images": str(work / "random" / "images"),
          "ipc": 1, "order": "sorted", "seed": None}),
        ("generate", "generate", 1, 1, False,
         {"dit": str(dit), "vae": str(vae), "train": train, "weights": [], "guide_inputs": [],
          "pack": str(work / "dit" / "pack.pt"), "images": str(work / "dit" / "images"),
          "timing": str(work / "dit" / "generation.json"), "ipc": 1, "phases": [None], "generate": generate,
          "dit_num_heads": None, "device": device, "compile": False}),
        # the whole split, scored after every epoch as Params.validate sets it for `full`; the
        # resume checkpoint (every >= 1 epoch: 0 divides by zero) falls due after no epoch of 1
        ("validate_full", "validate", 1, 1, True,
         {"train": train, "test": test, "record": str(work / "full.json"), "method": "full", "ipc": None,
          "arch": "convnet", "seed": 0, "epochs": 1, "device": device, "checkpoint_every_epochs": 1,
          "channels_last": False, **hard.params(), "evaluations": 1}),
        ("feature_net", "feature_net", 1, 1, True,
         {"train": train, "test": test, "model": str(work / "feature_net.pt"), "features": str(work / "features.pt"),
          "epochs": 1, "seed": 0, "device": device, **hard.recipe().params()}),
    ]
    return jobs


def measure(args, tmp: Path) -> tuple[list[dict], dict]:
    largest = max(args.classes)
    print(f"writing {largest} classes x ({args.per_class} train + {args.val_per_class} val) JPEGs ...", flush=True)
    start = time.perf_counter()
    wnids = [f"n{k + 1:07d}" for k in range(largest)]
    toy.write_imagenet_like(tmp / "imagenet", wnids, args.per_class, args.val_per_class)
    jpeg_kb = np.mean([p.stat().st_size for p in (tmp / "imagenet" / "train").rglob("*.JPEG")]) / 1024
    vae, dits = write_models(tmp / "models", args.classes)
    print(f"  done in {time.perf_counter() - start:.0f} s (mean JPEG {jpeg_kb:.0f} KB)", flush=True)
    config = plan.load_config({"experiment": "bench", "generate": {"steps": 2, "batch_size": args.gen_batch}})
    baseline = run_job(None, {}, threads=1, log=tmp / "baseline.log")
    print(f"  an idle job process (python, torch, minimaxdd.stages): {baseline['peak_rss_mb']} MB", flush=True)
    runs = []
    for k in args.classes:
        # the smaller sets are the first classes of the same tree, as ImageNet-100 lists its classes
        dataset = plan.load_config({"experiment": "bench", "dataset": {
            "kind": "imagefolder", "root": str(tmp / "imagenet"), "train_dir": "train", "test_dir": "val",
            "resolution": 256, "channels": 3, "classes": wnids[:k]}})["dataset"]
        dataset = {key: v for key, v in dataset.items() if key not in plan.REPORT_ONLY["dataset"]}  # as Params.prepare
        work = tmp / f"classes-{k}"
        work.mkdir()
        for label, stage, workers, threads, stop, kwargs in stage_jobs(work, dataset, vae, dits[k], args.device,
                                                                       config):
            if args.smoke and k > args.classes[0] and label not in SMOKE_LARGER:
                continue
            row = {"stage": label, "images": k * args.per_class, "classes": k, "per_class": args.per_class,
                   "test_images": k * args.val_per_class, "workers": workers, "threads": threads}
            items = batch_items(label, k, args.per_class)
            if items:
                row["partial_batch"] = items[0] < items[1]
            row |= run_job(stage, kwargs, threads=threads, log=work / f"{label}-w{workers}.log",
                           budget=args.budget if stop and args.budget > 0 else None)
            runs.append(row)
            note = (f"stopped after {row['stopped_after_s']} s" if "stopped_after_s" in row
                    else "FAILED" if "error" in row else f"stage {row['stage_s']} s")
            print(f"  {k} classes ({row['images']} images) {label:<13} workers {workers}: "
                  f"{row['peak_rss_mb']:8.1f} MB anon ({row['peak_total_rss_mb']:.1f} MB RSS, "
                  f"{row['peak_pss_mb']:.1f} MB PSS, HWM {row['hwm_rss_mb']:.1f} MB), {row['wall_s']:.1f} s, {note}", flush=True)
            if "error" in row:
                print("    " + row["error"].strip().replace("\n", "\n    "), flush=True)
    setup = {"jpeg_mean_kb": round(float(jpeg_kb), 1), "baseline_rss_mb": baseline["peak_rss_mb"],
             "baseline_total_rss_mb": baseline["peak_total_rss_mb"], "baseline_pss_mb": baseline["peak_pss_mb"]}
    return runs, setup


# -- summary ------------------------------------------------------------------------------------

def decode_speedup(runs: list[dict], classes: int) -> dict:
    """prepare's images/s (train + test images over the stage's own time) at `classes`, by workers."""
    rate = {r["workers"]: (r["images"] + r["test_images"]) / r["stage_s"] for r in runs
            if r["stage"] == "prepare" and r["classes"] == classes and "stage_s" in r}
    speedup = rate[2] / rate[1] if 1 in rate and 2 in rate else None
    return {"decode_images_per_s": {str(w): round(v, 1) for w, v in rate.items()},
            "decode_speedup_2_workers": None if speedup is None else round(speedup, 2)}


def growth(runs: list[dict], small: int, large: int) -> list[dict]:
    """Per (stage, workers): the peaks at both sizes, their ratio, the ratio per 10x images and the
    linear extrapolation of the peak over the image count to ImageNet's sizes."""
    rows = []
    for stage, workers in dict.fromkeys((r["stage"], r["workers"]) for r in runs):
        at = {r["classes"]: r for r in runs if r["stage"] == stage and r["workers"] == workers}
        if small not in at or large not in at or "error" in at[small] or "error" in at[large]:
            continue
        (n0, p0), (n1, p1) = ((at[k]["images"], at[k]["peak_rss_mb"]) for k in (small, large))
        slope = (p1 - p0) / (n1 - n0)  # MB per training image
        rows.append({"stage": stage, "workers": workers, "peak_small_mb": p0, "peak_large_mb": p1,
                     "growth": round(p1 / p0, 3), "growth_per_10x": round((p0 + slope * 9 * n0) / p0, 3),
                     "mb_per_1000_images": round(1000 * slope, 2),
                     **{f"projected_{name}_mb": round(p0 + slope * (n - n0)) for name, n in IMAGENET.items()},
                     "stopped": any("stopped_after_s" in at[k] for k in (small, large)),
                     "partial_batch": at[small].get("partial_batch", False)})
    return rows


def write_markdown(path: Path, report: dict) -> None:
    s, runs = report["settings"], report["runs"]
    small, large = min(s["classes"]), max(s["classes"])
    sizes = sorted({(r["classes"], r["images"]) for r in runs})
    label = lambda stage, workers: (f"prepare ({workers} worker{'s' if workers > 1 else ''})"  # noqa: E731
                                    if stage == "prepare" else stage)
    title = (f"{s['size'].upper()} test sizes" if s["size"] != "full"
             else f"{small} -> {large} classes of {s['per_class']} images")
    lines = [f"# Data-stage memory on {report['device']['name']} — {title}", "",
             f"- date {report['date']}, torch {report['torch']}, device `{s['device']}`, "
             f"{report['device'].get('cpu_count', '?')} CPUs; command: `{report['command']}`",
             f"- data: ImageNet-like folder of random JPEGs (sides 333-1024 px, quality 90, mean "
             f"{report['jpeg_mean_kb']:.0f} KB), {s['per_class']} train + {s['val_per_class']} test images per "
             "class, prepared at 256 px RGB; SD-VAE layout at width [16, 16, 32, 32] (32x32x4 latents); "
             "DiT hidden 32, depth 1, patch 8; validation nets at width 1/8, batch 64",
             "- peak MB = the peak over time of the job's process tree's summed RssAnon + RssShmem (the "
             "memory it owns; the mapped shards' page cache is not counted; forked decoding workers count "
             "their parent's shared pages again: see the PSS column); sampled every 20 ms",
             f"- an idle job process (python, torch, minimaxdd.stages) holds {report['baseline_rss_mb']} MB",
             "- at the largest size also: RSS = the same sum with VmRSS (file-backed pages included), PSS = "
             "Pss_Anon + Pss_Shmem (shared pages split), HWM = the kernel's VmRSS high-water mark "
             "(VmHWM) of the largest single process, which no sampling interval misses", "",
             "| stage | " + " | ".join(f"peak MB, {k} classes ({n} images)" for k, n in sizes)
             + f" | RSS at {large} | PSS at {large} | HWM at {large} | wall s at {large} |",
             "|---|" + "---:|" * (len(sizes) + 4)]
    for stage, workers in dict.fromkeys((r["stage"], r["workers"]) for r in runs):
        at = {r["classes"]: r for r in runs if r["stage"] == stage and r["workers"] == workers}
        cell = lambda r: "failed" if "error" in r else f"{r['peak_rss_mb']:.1f}"  # noqa: E731
        big = at.get(large, {})
        wall = f"{big['wall_s']:.1f}" + (" (stopped)" if "stopped_after_s" in big else "") if big else ""
        lines.append(f"| {label(stage, workers)} | " + " | ".join(cell(at[k]) if k in at else "" for k, _ in sizes)
                     + " | " + " | ".join(str(big.get(key, "")) for key in ("peak_total_rss_mb", "peak_pss_mb",
                                                                           "hwm_rss_mb")) + f" | {wall} |")
    n0, n1 = small * s["per_class"], large * s["per_class"]
    lines += ["", f"## Growth from {n0} to {n1} images ({n1 / n0:.0f}x), and projected to ImageNet", "",
              "Projections are a LINEAR EXTRAPOLATION from these two points over the training-image count "
              f"(ImageNet-100: {IMAGENET['ImageNet-100']:,} images, ImageNet-1K: {IMAGENET['ImageNet-1K']:,}); "
              "growth per 10x = the peak extrapolated to 10x the smaller set's images over its peak. A "
              "bounded stage stays near 1.0. Timing noise and the sampling interval make a few MB of "
              "either sign.", "",
              "| stage | growth | growth per 10x | MB per 1000 images | ImageNet-100 (MB) | ImageNet-1K (MB) |",
              "|---|---:|---:|---:|---:|---:|"]
    for g in report["growth"]:
        marks = (" *" if g["stopped"] else "") + (" †" if g["partial_batch"] else "")
        lines.append(f"| {label(g['stage'], g['workers'])}{marks} | {g['growth']:.2f}x "
                     f"| {g['growth_per_10x']:.2f}x | {g['mb_per_1000_images']:.2f} "
                     f"| {g['projected_ImageNet-100_mb']:,} | {g['projected_ImageNet-1K_mb']:,} |")
    speed = report["decode_speedup_2_workers"]
    lines += ["", f"A difference of 1 MB between the two peaks projects to {1300000 / (n1 - n0):,.0f} MB more at "
              "ImageNet-1K: differences of a few MB are noise."]
    if any(g["stopped"] for g in report["growth"]):
        lines += ["", f"\\* stopped after {s['budget']:.0f} s (in its single epoch): the peak so far; a job stopped "
                  "at one size but finished at the other went through different phases (feature_net: the "
                  "test scoring and the embedding of the split, batch 256, come after the epoch)."]
    if any(g["partial_batch"] for g in report["growth"]):
        lines += ["", "† the smaller set holds fewer images than one batch of the stage (encode 16, validation 64): "
                  "its peak is that of a smaller batch, so the growth includes the batch's activations."]
    lines += ["", f"- prepare at {large} classes: {report['decode_images_per_s']} images/s by workers; 2 workers "
              + (f"decode {speed:.2f}x the images/s of 1 (target >= 1.7x on 2 cores)" if speed else "not measured")]
    failed = [r for r in runs if "error" in r]
    if failed:
        lines += ["", "## Failures", ""]
        for r in failed:
            lines += [f"{r['stage']} at {r['classes']} classes:", "", "```", r["error"].strip()[-1500:], "```", ""]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    if not sys.platform.startswith("linux"):
        sys.exit("data_stage.py reads /proc: Linux only")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    out = args.out or (Path(tempfile.gettempdir()) / f"minimaxdd-data-stage-{args.size}" if args.size != "full"
                       else ROOT / "docs" / "benchmarks")
    info = device_info(torch.device(args.device))
    stem = f"data-stage-{info['kind']}" + ("" if args.size == "full" else f"-{args.size}")
    tmp = Path(tempfile.mkdtemp(prefix="minimaxdd-data-stage-"))
    print(f"data-stage memory on {info['name']}: classes {args.classes} x {args.per_class} images, "
          f"device {args.device}, work folder {tmp}", flush=True)
    start = time.perf_counter()
    try:
        runs, setup = measure(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    small, large = min(args.classes), max(args.classes)
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "torch": torch.__version__,
              "device": info, "command": " ".join(["python", *sys.argv]),
              "settings": {"classes": args.classes, "per_class": args.per_class, "val_per_class": args.val_per_class,
                           "budget": args.budget, "device": args.device, "generate_batch": args.gen_batch,
                           "encode_batch": ENCODE_BATCH, "validate_batch": VAL_BATCH, "generate_steps": 2,
                           "size": args.size, "resolution": 256},
              **setup, **decode_speedup(runs, large), "growth": growth(runs, small, large),
              "total_s": round(time.perf_counter() - start, 1), "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(out / f"{stem}.md", report)
    print(f"wrote {out / stem}.json and .md ({report['total_s']:.0f} s)", flush=True)
    if any("error" in r for r in runs):
        sys.exit("some stages failed: see the report")


if __name__ == "__main__":
    main()
