"""Check a user's data and weights before the full run, in minutes: `make preflight`.

1. The user's config (a preset plus their `--set` overrides) passes every start-of-run check on the
   FULL data: the schema, every class folder counted, the DiT, the VAE (and the soft-label teacher)
   read and matched with one another and with the data, the disk estimate.
2. The same config at toy size (minimaxdd.toy: only sizes shrunk, the protocol kept) runs end to
   end through Snakemake: data prepared at the preset's resolution, latents encoded with the
   user's VAE, the user's DiT fine-tuned and sampled, the validation nets trained and tested.
3. One screen of summary: data found per class, weights, images generated, validation runs and a
   table, and the projected time (minimaxdd.estimate, at a benchmark record's throughput) and disk
   of the full run.

    python -m minimaxdd.preflight configs/imagewoof.yaml --set dataset.root=/data/imagenet \\
        --set base_models.dit=/weights/DiT-XL-2-256x256.pt --set base_models.vae=/weights/sd-vae-ft-mse
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import checks, data, plan, pretrained, toy
from .checks import ConfigError

BENCHMARKS = Path("docs/benchmarks")


def check_full_config(config: dict) -> tuple[plan.Grid, dict, dict]:
    """plan.check on the user's own config, then what the summary reports of the data."""
    grid = plan.check(config)
    return grid, data.class_image_counts(config["dataset"]), data.split_sizes(config["dataset"])


def run_toy(toy_config: dict, snakefile: Path, cores: str, log: Path) -> float:
    """Snakemake on the toy config, its output in `log`; the wall seconds."""
    exp = Path(plan.RESULTS) / toy_config["experiment"]
    exp.mkdir(parents=True, exist_ok=True)
    config_file = exp / "preflight-config.yaml"
    config_file.write_text("# written by python -m minimaxdd.preflight: the user's config at toy size\n"
                           + yaml.safe_dump(toy_config, sort_keys=False, allow_unicode=True))
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--cores", cores,
                               "--configfile", str(config_file)],
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"{tail}\npreflight: the toy run failed (exit {done.returncode}); its log: {log}")
    return time.perf_counter() - start


def weights_lines(config: dict) -> list[str]:
    models, lines = config["base_models"], []
    if models["dit"]:
        dit = pretrained.inspect_dit(models["dit"], models["dit_num_heads"])
        lines.append(f"DiT   {models['dit']} ({pretrained.resolve_dit_source(models['dit'])}): {pretrained.describe(dit)}")
    else:
        lines.append("DiT   none given: a tiny DiT is trained here")
    if models["vae"]:
        vae = pretrained.inspect_vae(models["vae"])
        lines.append(f"VAE   {vae.folder}: {vae.in_channels}-channel images -> {vae.latent_channels} latent channels, "
                     f"/{vae.downsample}")
    else:
        lines.append("VAE   none given: a tiny VAE is trained here")
    teacher_check = Path(plan.RESULTS) / config["experiment"] / "teacher_check.json"
    if "soft_label" in config["validate"]["protocols"] and config["soft_label"]["teacher"] and teacher_check.is_file():
        accuracy = yaml.safe_load(teacher_check.read_text())["accuracy"]
        lines.append(f"teacher {config['soft_label']['teacher']}: class order accepted "
                     f"({accuracy:.0f}% on {config['soft_label']['check_images']} real test images per class)")
    return lines


def projection_lines(grid: plan.Grid, sizes: dict, benchmark: Path, png_bytes: float) -> list[str]:
    from .estimate import load_benchmark, stage_work

    config = grid.config
    lines = []
    if benchmark.is_file():
        rates, bench, report = load_benchmark(benchmark)
        rows = stage_work(grid, rates, bench)
        measured = [(stage, t) for stage, _, _, t in rows if t is not None and stage != "validate, seeds grouped"]
        missing = [stage for stage, _, _, t in rows if t is None]
        lines.append(f"time  {sum(t for _, t in measured) / 3600:,.1f} hours of the measured stages on "
                     f"{report['device']['name']} ({benchmark.name}, one job at a time): "
                     + ", ".join(f"{stage} {t / 3600:,.1f}" for stage, t in measured)
                     + (f"; not measured there: {', '.join(missing)}" if missing else ""))
    else:
        lines.append(f"time  no benchmark record {benchmark}: run benchmarks/benchmark.py on this machine first")
    disk = checks.data_disk_bytes(config, sizes, encoded=bool(grid.generated))
    images = sum(ipc * grid.class_count for ipc in grid.ipcs for m in grid.methods_at(ipc) if m != "full")
    lines.append(f"disk  {disk['shards'] / 1e9:,.1f} GB of data shards + {disk['latents'] / 1e9:,.1f} GB of latents"
                 f" + about {images * png_bytes / 1e9:,.1f} GB for the {images:,} images of the sets (as PNG, "
                 "at the toy run's size per image)")
    return lines


def summary(config: dict, grid: plan.Grid, counts: dict, sizes: dict, toy_config: dict, seconds: dict,
            benchmark: Path) -> str:
    exp = Path(plan.RESULTS) / toy_config["experiment"]
    fewest, most = min(counts, key=counts.get), max(counts, key=counts.get)
    pngs = sorted((exp / "sets").glob("*/ipc*/images/*/*.png"))
    records = sorted((exp / "validate").rglob("seed*.json"))
    tables = sorted((exp / "tables").glob("table*.md"))
    png_bytes = sum(p.stat().st_size for p in pngs) / max(1, len(pngs))
    lines = [f"preflight of {config['experiment']} ({config['dataset']['name']}): all checks passed",
             "",
             f"data  {len(counts)} classes under {config['dataset']['root']}: {sizes['train']:,} training images "
             f"({counts[fewest]:,} in {fewest}, the fewest; {counts[most]:,} in {most}, the most), "
             f"{sizes['test']:,} test images; checked in {seconds['check']:.0f} s",
             *weights_lines(config),
             "",
             f"toy run ({len(toy_config['dataset']['classes'] or [])} classes, IPCs {toy_config['ipcs']}, "
             f"{seconds['toy']:.0f} s): {len(pngs)} images in {len({p.parts[-5:-3] for p in pngs})} sets, "
             f"{len(records)} validation runs, tables {', '.join(t.name for t in tables)}",
             f"      results under {exp}; log {exp / 'preflight.log'}",
             "",
             "full run:",
             *projection_lines(grid, sizes, benchmark, png_bytes)]
    if tables:
        lines += ["", f"{tables[0].name} of the toy run (random weights give chance-level numbers; the path is "
                  "what is checked):", *tables[0].read_text().splitlines()[2:8]]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Check your data and weights with a toy-size run of a preset.")
    toy.add_config_arguments(parser)
    parser.add_argument("--cores", default="all", help="Snakemake's --cores for the toy run (default: all)")
    parser.add_argument("--benchmark", type=Path, default=BENCHMARKS / "benchmark-cpu.json",
                        help="benchmark record for the projected time (default: %(default)s)")
    parser.add_argument("--snakefile", type=Path, default=Path("Snakefile"), help="the workflow (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = toy.user_config(args.preset, args.set)
        start = time.perf_counter()
        grid, counts, sizes = check_full_config(config)
        seconds = {"check": time.perf_counter() - start}
        toy_config = toy.shrink(config, args.classes, args.ipcs)
    except (ConfigError, data.DatasetError, pretrained.CheckpointError) as error:
        sys.exit(f"preflight: {error}")
    exp = Path(plan.RESULTS) / toy_config["experiment"]
    exp.mkdir(parents=True, exist_ok=True)
    print(f"preflight: checks passed; running {args.preset} at toy size (log: {exp / 'preflight.log'}) ...",
          flush=True)
    seconds["toy"] = run_toy(toy_config, args.snakefile, args.cores, exp / "preflight.log")
    print(summary(config, grid, counts, sizes, toy_config, seconds, args.benchmark))


if __name__ == "__main__":
    main()
