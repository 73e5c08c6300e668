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


def label(method: str) -> str:
    """The paper's name of a method; variants and study points keep their own names."""
    return METHOD_LABELS.get(method, method)


REPORTS = {  # validate.report: which accuracy of each run the tables show
    "best": "best top-1 of the periodic test evaluations (as the paper and its reference code report)",
    "last": "top-1 after the last epoch",
}


def load_records(paths: list[str]) -> pd.DataFrame:
    return pd.DataFrame([json.loads(Path(p).read_text()) for p in paths])


def load_accuracies(paths: list[str], report: str) -> pd.DataFrame:
    """Validation records with `accuracy` set to the one `report` names (best or last)."""
    records = load_records(paths)
    return records.assign(accuracy=records[f"accuracy_{report}"])


def caption(report: str) -> str:
    return f"Top-1 accuracy (%) on the real test split: {REPORTS[report]}; mean ± std over seeds.\n\n"


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


def write_table1(record_paths: list[str], csv: str, md: str, plot: str, methods: list[str], ipcs: list[int],
                 archs: list[str], resolution: int, report: str) -> None:
    """Table 1: the numbers (csv), mean ± std shaped like the paper (md), accuracy vs IPC (plot)."""
    summary = summarize(load_accuracies(record_paths, report), ipcs).assign(report=report)
    with atomic_path(csv) as tmp:
        summary.sort_values(["ipc", "arch", "method"]).to_csv(tmp, index=False, float_format="%.2f")

    cell = summary.assign(text=summary["mean"].map("{:.1f}".format) + " ± " + summary["std"].map("{:.1f}".format))
    wide = cell.pivot(index=["ipc", "arch"], columns="method", values="text")
    wide = wide.reindex(index=pd.MultiIndex.from_product([ipcs, archs]), columns=methods)
    lines = ["| IPC | Test Model | " + " | ".join(label(m) for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for (ipc, arch), row in wide.iterrows():
        lines.append(f"| {ipc} | {arch_label(arch, resolution)} | " + " | ".join(row.fillna("-")) + " |")
    save_text(caption(report) + "\n".join(lines) + "\n", md)
    plot_accuracy_vs_ipc(summary, plot, methods, archs, resolution, report)


def plot_accuracy_vs_ipc(summary: pd.DataFrame, path: Path, methods: list[str], archs: list[str],
                         resolution: int, report: str) -> None:
    fig, axes = plt.subplots(1, len(archs), figsize=(4.5 * len(archs), 3.6), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for method in methods:
            rows = summary[(summary.method == method) & (summary.arch == arch)].sort_values("ipc")
            style = dict(linestyle="--", color="gray") if method == "full" else dict(marker="o")
            ax.errorbar(rows.ipc, rows["mean"], yerr=rows["std"], label=label(method), capsize=3, **style)
        ax.set(title=arch_label(arch, resolution), xlabel="images per class", ylabel=f"top-1 accuracy (%, {report})")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


QUALITY_METRICS = {"precision": "Precision", "recall": "Recall", "density": "Density", "coverage": "Coverage",
                   "frechet": "Fréchet dist. (ResNetAP-10 feat.)"}


def write_analysis_tables(record_paths: list[str], table2: tuple[str, str], table10: tuple[str, str],
                          methods: list[str], ipcs: list[int]) -> None:
    """Table 2 (MMD to the full data: rows IPC, columns methods) and Table 10 (generation quality),
    each to its (CSV, Markdown) paths."""
    records = load_records(record_paths)
    present = [m for m in methods if m in set(records.method)]
    mmd = records.pivot(index="ipc", columns="method", values="mmd").reindex(index=ipcs, columns=present)
    mmd = mmd.rename(columns=label).rename_axis(index="IPC", columns=None)
    _write_csv_and_markdown(mmd.reset_index(), *table2, "{:.4f}")

    quality = records.assign(order=records.method.map(present.index)).sort_values(["ipc", "order"])
    quality = quality.assign(method=quality.method.map(label))[["ipc", "method", *QUALITY_METRICS]]
    quality = quality.rename(columns={"ipc": "IPC", "method": "Method", **QUALITY_METRICS})
    _write_csv_and_markdown(quality, *table10, "{:.3f}")


def _write_csv_and_markdown(frame: pd.DataFrame, csv: str, md: str, number_format: str, title: str = "") -> None:
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.5g")
    cells = [[number_format.format(v) if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    save_text(title + "\n".join(lines) + "\n", md)


def _mean_std(frame: pd.DataFrame) -> str:
    return f"{frame['mean']:.1f} ± {frame['std']:.1f}"


def write_study(record_paths: list[str], timing_paths: list[str], csv: str, md: str, plot: str, study: dict,
                points: list[str], resolution: int, report: str) -> None:
    """One parameter sweep: accuracy per value (rows IPC x arch, as Fig. 6 / Table 8), its CSV and a
    line plot; for generation settings also the generation time per image (Table 8's first row)."""
    value_of = dict(zip(points, study["values"]))
    records = load_accuracies(record_paths, report)
    records["value"] = records.method.map(value_of)
    summary = records.groupby(["value", "ipc", "arch"]).accuracy.agg(mean="mean", std="std", runs="count")
    summary = summary.reset_index().fillna({"std": 0.0})
    timing = pd.DataFrame([json.loads(Path(p).read_text()) | {"method": Path(p).parts[-3]} for p in timing_paths])
    if len(timing):
        per_image = timing.assign(value=timing.method.map(value_of)).groupby("value").seconds_per_image.mean()
        summary["seconds_per_image"] = summary.value.map(per_image)
    with atomic_path(csv) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.4g")

    values = list(study["values"])
    lines = ["| IPC | Test Model | " + " | ".join(f"{study['parameter']} = {v}" for v in values) + " |",
             "|---|---|" + "---|" * len(values)]
    if len(timing):
        lines.append("| | time per image (s) | " + " | ".join(f"{per_image[v]:.3g}" for v in values) + " |")
    for (ipc, arch), rows in summary.groupby(["ipc", "arch"]):
        cells = {row.value: _mean_std(row) for _, row in rows.iterrows()}
        lines.append(f"| {ipc} | {arch_label(arch, resolution)} | " + " | ".join(cells.get(v, "-") for v in values) + " |")
    save_text(caption(report) + "\n".join(lines) + "\n", md)

    archs = sorted(summary.arch.unique())
    fig, axes = plt.subplots(1, len(archs), figsize=(4.5 * len(archs), 3.4), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for ipc, rows in summary[summary.arch == arch].groupby("ipc"):
            rows = rows.sort_values("value")
            ax.errorbar(rows.value, rows["mean"], yerr=rows["std"], marker="o", capsize=3, label=f"IPC {ipc}")
        ax.set(title=f"{study['name']}: {arch_label(arch, resolution)}", xlabel=study["parameter"],
               ylabel=f"top-1 accuracy (%, {report})")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(plot) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_table5(record_paths: list[str], csv: str, md: str, methods: list[str], forms: dict, ipcs: list[int],
                 archs: list[str], resolution: int, report: str) -> None:
    """The criteria ablation (Table 5): one row per fine-tuned method with the form of each term."""
    summary = summarize(load_accuracies(record_paths, report), ipcs)
    rows = []
    for method in methods:
        row = {"Method": label(method), "Representativeness": forms[method][0], "Diversity": forms[method][1]}
        for ipc in ipcs:
            for arch in archs:
                cell = summary[(summary.method == method) & (summary.ipc == ipc) & (summary.arch == arch)]
                row[f"{arch_label(arch, resolution)} IPC {ipc}"] = _mean_std(cell.iloc[0]) if len(cell) else "-"
        rows.append(row)
    _write_csv_and_markdown(pd.DataFrame(rows), csv, md, "{}", caption(report))


def write_table9(record_paths: list[str], csv: str, md: str, resolution: int, report: str) -> None:
    """Dataset expansion (Table 9): rows arch, columns the full split alone and with each generated set."""
    records = load_accuracies(record_paths, report)
    records["column"] = [
        "Original" if m == "full" else f"Original + {label(m.removeprefix('full+'))} IPC {int(i)}"
        for m, i in zip(records.method, records.ipc.fillna(0))
    ]
    summary = records.groupby(["arch", "column"]).accuracy.agg(mean="mean", std="std").reset_index().fillna(0.0)
    summary["cell"] = summary.apply(_mean_std, axis=1)
    wide = summary.pivot(index="arch", columns="column", values="cell")
    wide = wide[["Original", *[c for c in wide.columns if c != "Original"]]]
    wide.index = [arch_label(a, resolution) for a in wide.index]
    _write_csv_and_markdown(wide.rename_axis("Test Model").reset_index(), csv, md, "{}", caption(report))
