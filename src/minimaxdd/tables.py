"""Paper-shaped tables and figures from the per-run JSON records."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path, save_text  # noqa: E402
from .nets import arch_label  # noqa: E402

METHOD_LABELS = {
    "random": "Random", "kcenter": "K-Center", "herding": "Herding", "dit": "DiT",
    "difffit": "Difffit", "minimax": "Minimax", "full": "Full",
}


def load_records(paths: list[str]) -> pd.DataFrame:
    return pd.DataFrame([json.loads(Path(p).read_text()) for p in paths])


def summarize(records: pd.DataFrame, ipcs: list[int]) -> pd.DataFrame:
    """Mean and std (over seeds) of the top-1 accuracy per (method, ipc, arch).

    `full` does not depend on the IPC; its one result is repeated on every IPC row, as in the paper.
    """
    full = records[records.method == "full"]
    per_ipc = records[records.method != "full"]
    repeated = [full.assign(ipc=ipc) for ipc in ipcs] if len(full) else []
    records = pd.concat([per_ipc, *repeated], ignore_index=True)
    grouped = records.groupby(["method", "ipc", "arch"]).accuracy
    return grouped.agg(mean="mean", std="std", runs="count").reset_index().fillna({"std": 0.0})


def write_table1(record_paths: list[str], out_dir: Path, methods: list[str], ipcs: list[int], archs: list[str],
                 resolution: int) -> None:
    """table1.csv (numbers), table1.md (mean ± std, shaped like the paper), accuracy_vs_ipc.png."""
    summary = summarize(load_records(record_paths), ipcs)
    with atomic_path(out_dir / "table1.csv") as tmp:
        summary.sort_values(["ipc", "arch", "method"]).to_csv(tmp, index=False, float_format="%.2f")

    cell = summary.assign(text=summary["mean"].map("{:.1f}".format) + " ± " + summary["std"].map("{:.1f}".format))
    wide = cell.pivot(index=["ipc", "arch"], columns="method", values="text")
    wide = wide.reindex(index=pd.MultiIndex.from_product([ipcs, archs]), columns=methods)
    lines = ["| IPC | Test Model | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for (ipc, arch), row in wide.iterrows():
        lines.append(f"| {ipc} | {arch_label(arch, resolution)} | " + " | ".join(row.fillna("-")) + " |")
    save_text("\n".join(lines) + "\n", out_dir / "table1.md")
    plot_accuracy_vs_ipc(summary, out_dir / "accuracy_vs_ipc.png", methods, archs, resolution)


def plot_accuracy_vs_ipc(summary: pd.DataFrame, path: Path, methods: list[str], archs: list[str],
                         resolution: int) -> None:
    fig, axes = plt.subplots(1, len(archs), figsize=(4.5 * len(archs), 3.6), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for method in methods:
            rows = summary[(summary.method == method) & (summary.arch == arch)].sort_values("ipc")
            style = dict(linestyle="--", color="gray") if method == "full" else dict(marker="o")
            ax.errorbar(rows.ipc, rows["mean"], yerr=rows["std"], label=METHOD_LABELS[method], capsize=3, **style)
        ax.set(title=arch_label(arch, resolution), xlabel="images per class", ylabel="top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
