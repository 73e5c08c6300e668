"""IGD's two scales on the embedded default (digits, 16 px): which values the default config takes.

Reads the artifacts of a finished default run (`make run`: results/digits) and, for each (k, gamma)
pair, generates the IPC-10 set of `igd` (the pretrained tiny DiT) and `igd_minimax` with the
workflow's own stages and settings, then validates it as the workflow does (the default's nets,
seeds and hard-label protocol). Writes <out>/igd-scales-digits.{json,md}.

    python benchmarks/igd_scales.py --results results/digits --out docs/benchmarks
    python benchmarks/igd_scales.py --smoke --results R --config C --out /tmp/igd   # one pair, IPC 1, ConvNet
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import yaml

from minimaxdd import methods, plan, stages
from minimaxdd.params import Params
from minimaxdd.paths import Paths

# (k, gamma): unguided, DD_IGD's ImageWoof values for the DiT and for Minimax, each term alone, smaller ones
PAIRS = [(0.0, 0.0), (5.0, 120.0), (10.0, 100.0), (5.0, 0.0), (0.0, 120.0), (1.0, 0.0), (0.0, 10.0), (1.0, 10.0),
         (0.5, 5.0)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results/digits"))
    p.add_argument("--config", type=Path, default=Path("config.yaml"))
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--archs", nargs="+", default=["convnet", "resnet18"])
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    p.add_argument("--smoke", action="store_true", help="one guided pair (DD_IGD's for the DiT), IPC 1, ConvNet-3: "
                   "a smoke test (on a run whose config has IPC 1)")
    args = p.parse_args(argv)
    if args.smoke:  # its sizes as the defaults: what is given still counts
        args = p.parse_args(argv, argparse.Namespace(ipc=1, archs=["convnet"]))
    args.pairs = PAIRS[1:2] if args.smoke else PAIRS
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    config = plan.load_config(yaml.safe_load(args.config.read_text()))
    grid = plan.Grid(config)
    paths, params = Paths(grid), Params(grid, Paths(grid))
    exp = args.results

    def located(path: str) -> str:
        """A path of the plan (in the workflow's folder) where it is: under --results if in the experiment."""
        return str(exp / path.removeprefix(f"{grid.exp}/")) if path.startswith(f"{grid.exp}/") else path

    rows = []
    work = Path(tempfile.mkdtemp(prefix="igd-scales-"))
    for method in ("igd", "igd_minimax"):
        model = "dit" if methods.model_of(method) == "dit" else "finetuned"
        weights = [located(p) for p in paths.finetuned_weights(method)]
        settings = params.generate(SimpleNamespace(method=method, ipc=args.ipc))
        for k, gamma in args.pairs:
            generate = dict(settings["generate"])
            generate["guidance"] = {**generate["guidance"], "influence_scale": k,
                                              "deviation_scale": gamma}
            name = f"{method}_k{k:g}_g{gamma:g}"
            pack, timing = work / f"{name}.pt", work / f"{name}.json"
            stages.generate(dit=located(paths.dit_path()), vae=located(paths.vae_path()),
                            train=str(exp / "data/train/index.json"), weights=weights,
                            guide_inputs=[located(paths.igd_surrogate), located(paths.igd_gradients)],
                            pack=str(pack), timing=str(timing), ipc=args.ipc, phases=settings["phases"],
                            generate=generate, dit_num_heads=settings["dit_num_heads"], device="cpu", compile=False)
            for arch in args.archs:
                run = params.validate(SimpleNamespace(method=method, ipc=args.ipc, arch=arch))
                records = [work / f"{name}_{arch}_seed{s}.json" for s in run["seeds"]]
                stages.validate_group(train=str(pack), test=str(exp / "data/test/index.json"),
                                      records=[str(r) for r in records], device="cpu", checkpoint_every_epochs=10**9,
                                      channels_last=False, **run)
                accuracies = [json.loads(r.read_text())["accuracy_best"] for r in records]
                rows.append({"method": method, "model": model, "k": k, "gamma": gamma, "arch": arch,
                             "accuracy_mean": sum(accuracies) / len(accuracies), "accuracies": accuracies})
                print(rows[-1], flush=True)
    shutil.rmtree(work)  # the sets and records: only their accuracies are kept
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "ipc": args.ipc,
              "results": str(exp), "rows": rows}
    (args.out / "igd-scales-digits.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# IGD's scales on the embedded default (digits 16 px, IPC {args.ipc})", "",
             f"- date {report['date']}; `python benchmarks/igd_scales.py` on the artifacts of a default run "
             "(the surrogate, class gradients, tiny DiT and minimax weights of `make run`)",
             "- top-1 accuracy (%), best of the periodic evaluations, mean over the default's validation seeds, "
             "the default's hard-label protocol; k = igd.influence_scale, gamma = igd.deviation_scale; "
             "k = gamma = 0 is the unguided sampler", "",
             "| method | k | gamma | " + " | ".join(args.archs) + " |",
             "|---|---:|---:|" + "---:|" * len(args.archs)]
    for method in ("igd", "igd_minimax"):
        for k, gamma in args.pairs:
            cells = [r for r in rows if r["method"] == method and r["k"] == k and r["gamma"] == gamma]
            accuracy = {r["arch"]: r["accuracy_mean"] for r in cells}
            lines.append(f"| {method} | {k:g} | {gamma:g} | " + " | ".join(f"{accuracy[a]:.1f}" for a in args.archs)
                         + " |")
    (args.out / "igd-scales-digits.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'igd-scales-digits.md'}")


if __name__ == "__main__":
    main()
