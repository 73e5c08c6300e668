"""Paper-shaped tables and figures from the per-run JSON records."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from . import guidance  # noqa: E402
from .io import atomic_path, load_json, save_text  # noqa: E402
from .methods import sampler_of  # noqa: E402
from .nets import arch_label  # noqa: E402

METHOD_LABELS = {
    "random": "Random", "kcenter": "K-Center", "herding": "Herding", "dit": "DiT",
    "difffit": "Difffit", "minimax": "Minimax", "full": "Full",
}


def label(method: str) -> str:
    """The paper's name of a method (a guidance method's own label, with its fine-tuned model's in
    parentheses); variants and study points keep their own names."""
    guide = sampler_of(method)
    if guide:
        own = guidance.method(guide).label
        return own if method == guide else f"{own} ({label(method.removeprefix(f'{guide}_'))})"
    return METHOD_LABELS.get(method, method)


REPORTS = {  # validate.report: which accuracy of each run the tables show
    "best": "best top-1 of the periodic test evaluations (as the paper and its reference code report)",
    "last": "top-1 after the last epoch",
}


def load_records(paths: list[str]) -> pd.DataFrame:
    return pd.DataFrame([load_json(p) for p in paths])


def load_accuracies(paths: list[str], report: str) -> pd.DataFrame:
    """Validation records with `accuracy` set to the one `report` names (best or last)."""
    records = load_records(paths)
    return records.assign(accuracy=records[f"accuracy_{report}"])


PROTOCOLS = {  # validate.protocols: how the classifiers of a table were trained
    "hard_label": "",
    "soft_label": " under RDED's soft-label protocol (a teacher labels every training crop)",
}


SEED_STD = "population std, ddof 0, as the reference's np.std"  # what every ± of the tables is


def seed_std(values: pd.Series | pd.DataFrame) -> float | pd.Series:
    """The spread over seeds behind every ± and error bar: the population std (ddof 0), as the
    reference's train.py prints np.std of its repeats' best accuracies; one seed gives 0."""
    return values.std(ddof=0)


def over_seeds(accuracies) -> pd.DataFrame:
    """Mean, `seed_std` and number of runs of each group of a grouped accuracy column."""
    return accuracies.agg(mean="mean", std=seed_std, runs="count").reset_index()


def caption(report: str, protocol: str = "hard_label") -> str:
    return (f"Top-1 accuracy (%) on the real test split{PROTOCOLS[protocol]}: {REPORTS[report]}; "
            f"mean ± std over seeds ({SEED_STD}).\n\n")


def summarize(records: pd.DataFrame, ipcs: list[int]) -> pd.DataFrame:
    """Mean and std (over seeds, `seed_std`) of the top-1 accuracy per (method, ipc, arch).

    `full` does not depend on the IPC; its one result is repeated on every IPC row, as in the paper.
    """
    full = records[records.method == "full"]
    per_ipc = records[records.method != "full"]
    repeated = [full.assign(ipc=ipc) for ipc in ipcs] if len(full) else []
    records = pd.concat([per_ipc, *repeated], ignore_index=True)
    records["ipc"] = records.ipc.astype(int)  # `full`'s missing IPC made the column float: 1.00 in the CSV
    return over_seeds(records.groupby(["method", "ipc", "arch"]).accuracy)


def write_accuracy_table(record_paths: list[str], csv: str, md: str, plot: str | None, methods: list[str],
                         ipcs: list[int], archs: list[str], resolution: int, report: str,
                         protocol: str = "hard_label") -> None:
    """Table 1 (Table 4 under the soft-label protocol): the numbers (csv), mean ± std shaped like
    the paper (md), accuracy vs IPC (plot, when given)."""
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
    save_text(caption(report, protocol) + "\n".join(lines) + "\n", md)
    if plot:
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
    _write_csv_and_markdown(mmd.reset_index(), *table2, "{:.4f}",
                            "Maximum mean discrepancy (MMD, lower is closer) between each set and the full "
                            "training split, in the feature space of a ResNetAP-10 trained on the full data "
                            "(Table 2).\n\n")

    quality = records.assign(order=records.method.map(present.index)).sort_values(["ipc", "order"])
    quality = quality.assign(method=quality.method.map(label))[["ipc", "method", *QUALITY_METRICS]]
    quality = quality.rename(columns={"ipc": "IPC", "method": "Method", **QUALITY_METRICS})
    _write_csv_and_markdown(quality, *table10, "{:.3f}",
                            "Generation quality of each set against the real training split (Table 10): "
                            "precision, recall, density and coverage of k-nearest-neighbour manifolds "
                            "(analysis.k) and the Fréchet distance, in the same ResNetAP-10 features.\n\n")


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
    summary = over_seeds(records.groupby(["value", "ipc", "arch"]).accuracy)
    timing = pd.DataFrame([load_json(p) | {"method": Path(p).parts[-3]} for p in timing_paths])
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
    summary = over_seeds(records.groupby(["arch", "column"]).accuracy)
    summary["cell"] = summary.apply(_mean_std, axis=1)
    wide = summary.pivot(index="arch", columns="column", values="cell")
    wide = wide[["Original", *[c for c in wide.columns if c != "Original"]]]
    wide.index = [arch_label(a, resolution) for a in wide.index]
    _write_csv_and_markdown(wide.rename_axis("Test Model").reset_index(), csv, md, "{}", caption(report))


def _weak_full_note(summary: pd.DataFrame, ipcs: list[int], archs: list[str], resolution: int) -> str:
    """A note where the full-data reference scores below random real images (an undertrained full
    run): there the share recovered can pass 100 % and means nothing."""
    weak = [f"IPC {ipc} {arch_label(arch, resolution)}" for ipc in ipcs for arch in archs
            if {("full", ipc, arch), ("random", ipc, arch)} <= set(summary.index)
            and summary.loc[("full", ipc, arch), "mean"] < summary.loc[("random", ipc, arch), "mean"]]
    if not weak:
        return ""
    return (f"\nNote: the full-data accuracy is below Random's at {', '.join(weak)}: the full-data run is too "
            "short to be a reference (validate.full_epochs), so the share recovered there, which can pass "
            "100 %, says nothing.\n")


# DD-Ranking (NUS-HPC-AI-Lab/DD-Ranking, package ddranking): the weight w of its Label-Robust Score,
# its leaderboard's default (ddranking/metrics/hard_label.py and soft_label.py, compute_metrics(lrs_lambda=0.5)),
# and gamma of its Augmentation-Robust Score (ddranking/metrics/aug_robust.py, compute_metrics(ars_lambda=0.5)).
LRS_WEIGHT = 0.5
ARS_WEIGHT = 0.5


def _normalized_exp(points: float) -> float:
    """(e^x - e^-1) / (e - e^-1) in percent, x = `points` / 100 (see label_robust_score)."""
    return 100 * (math.exp(points / 100) - math.exp(-1)) / (math.e - math.exp(-1))


def augmentation_robust_score(ior: float, ior_no_augment: float, weight: float = ARS_WEIGHT) -> float:
    """DD-Ranking's ARS in percent from the IOR with and without augmentation, in points: beta =
    gamma IOR(augmented) + (1 - gamma) IOR(not augmented), ARS = (e^beta - e^-1) / (e - e^-1)
    (ddranking/metrics/aug_robust.py compute_metrics: `with_aug_score`, `without_aug_score`,
    `beta`, `ars`), the accuracies as fractions as for label_robust_score."""
    return _normalized_exp(weight * ior + (1 - weight) * ior_no_augment)


def label_robust_score(hlr: float, ior: float, weight: float = LRS_WEIGHT) -> float:
    """DD-Ranking's LRS in percent, from HLR and IOR in points of accuracy: alpha = w IOR - (1 - w)
    HLR and LRS = (e^alpha - e^-1) / (e - e^-1) (ddranking/metrics/hard_label.py compute_metrics,
    the lines `hlr = ...` to `lrs = ...`; the same in soft_label.py). Its README normalizes LRS to
    [0, 1], which needs the accuracies as fractions: the code's accuracies come from
    utils/meter.py `accuracy`, in percent, with which alpha leaves [-1, 1] and every LRS of a set
    below the full data's accuracy by 2 points or more collapses toward -e^-1 / (e - e^-1). So alpha
    takes the points / 100, and the score is shown x 100."""
    return _normalized_exp(weight * ior - (1 - weight) * hlr)


def _welch_interval(difference: float, parts: list[tuple[float, int]], cells: int = 1) -> tuple[float, float]:
    """The 95 % confidence interval of `difference`, the mean over `cells` (IPC, net) cells of
    differences of independent means over seeds, by Welch's t. `parts` holds each of those means'
    (`seed_std`, seeds n): its squared standard error is its sample variance (ddof 1: n std^2 /
    (n - 1)) over n, that of the mean over cells their sum over cells^2, and the degrees of freedom
    Welch-Satterthwaite's over all of them (cells^2 cancels there). NaN where a mean has one seed (no
    variance to estimate); of zero width where every mean's seeds agree (no spread, and no degrees
    of freedom to divide by)."""
    if any(seeds < 2 for _, seeds in parts):
        return math.nan, math.nan
    terms = [(std ** 2 / (seeds - 1), seeds - 1) for std, seeds in parts]
    squared_error = sum(term for term, _ in terms)
    if squared_error == 0:
        return difference, difference
    df = squared_error ** 2 / sum(term ** 2 / dof for term, dof in terms)
    half = stats.t.ppf(0.975, df) * squared_error ** 0.5 / cells
    return difference - half, difference + half


def _verdict(low: float, high: float) -> str:
    """What an interval of a gain over random says: above 0, below 0, or holding 0 (or none: NaN)."""
    return "better" if low > 0 else "worse" if high < 0 else "not distinguishable"


INTERVAL = ("95 % confidence interval by Welch's t over the validation seeds (sample variances, ddof 1, where the "
            f"tables' ± is the {SEED_STD}; Welch-Satterthwaite degrees of freedom)")


def write_scores(record_paths: list[str], soft_record_paths: list[str], no_augment_record_paths: list[str], csv: str,
                 md: str, leaderboard_csv: str, leaderboard_md: str, methods: list[str], ipcs: list[int],
                 archs: list[str], resolution: int, report: str) -> None:
    """The scores the field now reports: each method's gain over random real images at the same
    IPC and net, in points, with its 95 % interval over seeds and verdict (_welch_interval: better,
    worse or not distinguishable from random), the share of the full-data accuracy it recovers, and
    DD-Ranking's scores (label_robust_score): HLR = Acc(full) - Acc(set) under hard labels, IOR =
    Acc(set) - Acc(random) under the same protocol (the gain, under hard labels; `ior_soft` under
    RDED's soft-label protocol where `soft_record_paths` score the set), LRS from the two; and where
    `no_augment_record_paths` score the set without augmentation, `ior_no_augment` and the ARS
    (augmentation_robust_score). Every accuracy is the mean over seeds. Then a leaderboard of the
    methods by their mean gain over every (IPC, net), with its interval: a method's rank is 1 + the
    number of methods whose interval lies entirely above its own, so methods the intervals cannot
    tell apart share a rank."""
    summary = summarize(load_accuracies(record_paths, report), ipcs).set_index(["method", "ipc", "arch"])
    soft, plain = ((summarize(load_accuracies(paths, report), ipcs).set_index(["method", "ipc", "arch"])
                    if paths else None) for paths in (soft_record_paths, no_augment_record_paths))

    def gain(other, method, ipc, arch):
        """IOR under another protocol's records: the set's mean minus random's (NaN without them)."""
        if other is None or not {(method, ipc, arch), ("random", ipc, arch)} <= set(other.index):
            return math.nan
        return other.loc[(method, ipc, arch), "mean"] - other.loc[("random", ipc, arch), "mean"]

    rows, parts = [], {}  # parts: each method's (std, seeds) of both sides of every cell, for its overall interval
    for method in [m for m in methods if m not in ("random", "full")]:
        for ipc in ipcs:
            for arch in archs:
                if (method, ipc, arch) not in summary.index or ("random", ipc, arch) not in summary.index:
                    continue
                mine, random = summary.loc[(method, ipc, arch)], summary.loc[("random", ipc, arch)]
                full = summary.loc[("full", ipc, arch), "mean"] if ("full", ipc, arch) in summary.index else math.nan
                hlr, ior = full - mine["mean"], mine["mean"] - random["mean"]
                cell = [(mine["std"], mine["runs"]), (random["std"], random["runs"])]
                parts.setdefault(method, []).extend(cell)
                low, high = _welch_interval(ior, cell)
                ior_soft, ior_no_augment = gain(soft, method, ipc, arch), gain(plain, method, ipc, arch)
                rows.append({"method": method, "ipc": ipc, "arch": arch, "accuracy": mine["mean"], "gain": ior,
                             "gain_low": low, "gain_high": high, "verdict": _verdict(low, high),
                             "recovered": 100 * mine["mean"] / full, "hlr": hlr, "ior": ior,
                             "lrs": label_robust_score(hlr, ior), "ior_soft": ior_soft,
                             "lrs_soft": label_robust_score(hlr, ior_soft), "ior_no_augment": ior_no_augment,
                             "ars": augmentation_robust_score(ior, ior_no_augment)})
    columns = ["method", "ipc", "arch", "accuracy", "gain", "gain_low", "gain_high", "verdict", "recovered", "hlr",
               "ior", "lrs", "ior_soft", "lrs_soft", "ior_no_augment", "ars"]
    scores = pd.DataFrame(rows, columns=columns)
    with atomic_path(csv) as tmp:
        scores.to_csv(tmp, index=False, float_format="%.2f")
    shown = [m for m in methods if m in set(scores.method)]
    interval = ("[" + scores.gain_low.map("{:+.1f}".format) + ", " + scores.gain_high.map("{:+.1f}".format)
                + "]").where(scores.gain_low.notna(), "[1 seed]")  # NaN only where a side has one seed
    gains = scores.gain.map("{:+.1f}".format) + " " + interval + " " + scores.verdict \
        + scores.recovered.map(lambda r: "" if r != r else f" ({r:.0f}%)")
    ranking = scores.lrs.map(lambda v: "-" if v != v else f"{v:.1f}") + " (" + scores.hlr.map("{:.1f}".format) \
        + ", " + scores.ior.map("{:+.1f}".format) + ")" \
        + scores.lrs_soft.map(lambda v: "" if v != v else f"; soft {v:.1f}") \
        + scores.ars.map(lambda v: "" if v != v else f"; ARS {v:.1f}")
    title = ("Gain over random real images at the same IPC and net, in points of top-1 accuracy "
             f"({REPORTS[report]}; means over seeds), its {INTERVAL} in square brackets ([1 seed]: a side has "
             "one seed, no interval) and the verdict: better or worse where the interval lies entirely above or "
             "below 0, not distinguishable where it holds 0; in round brackets the share of the full-data "
             "accuracy recovered.\n\n")
    ranking_title = ("\nDD-Ranking's Label-Robust Score (%), with (HLR, IOR) in points: HLR = Acc(full) - "
                     "Acc(set) under hard labels, IOR = Acc(set) - Acc(random) under the same protocol, "
                     f"LRS = (e^a - e^-1) / (e - e^-1), a = {LRS_WEIGHT} IOR - {1 - LRS_WEIGHT} HLR (accuracies "
                     "as fractions); `soft`: the LRS with the IOR of RDED's soft-label protocol"
                     + (f"; `ARS`: DD-Ranking's Augmentation-Robust Score, (e^b - e^-1) / (e - e^-1), b = {ARS_WEIGHT} "
                        f"IOR + {1 - ARS_WEIGHT} IOR without augmentation or CutMix" if scores.ars.notna().any() else "")
                     + ". Means over seeds.\n\n")
    text = title + _method_grid(scores.assign(text=gains), shown, resolution) \
        + _weak_full_note(summary, ipcs, archs, resolution) + ranking_title \
        + _method_grid(scores.assign(text=ranking), shown, resolution)
    save_text(text, md)

    board = scores.groupby("method").agg(mean_gain=("gain", "mean"), beats_random=("gain", lambda g: int((g > 0).sum())),
                                         better=("verdict", lambda v: int((v == "better").sum())),
                                         cells=("gain", "size"), mean_recovered=("recovered", "mean"),
                                         mean_hlr=("hlr", "mean"), mean_lrs=("lrs", "mean"),
                                         mean_ars=("ars", "mean"))
    if board.mean_ars.isna().all():  # no evaluation without augmentation (validate.protocols no_augment)
        board = board.drop(columns="mean_ars")
    intervals = [_welch_interval(row.mean_gain, parts[method], row.cells) for method, row in board.iterrows()]
    board.insert(1, "mean_gain_low", [low for low, _ in intervals])
    board.insert(2, "mean_gain_high", [high for _, high in intervals])
    board.insert(3, "verdict", [_verdict(*interval) for interval in intervals])
    board = board.sort_values("mean_gain", ascending=False).reset_index()
    # NaN bounds compare False: a method without an interval is above none and below none
    board.insert(0, "rank", [1 + int((board.mean_gain_low > high).sum()) for high in board.mean_gain_high])
    board.insert(1, "tied", board["rank"].duplicated(keep=False))
    board["method"] = board.method.map(label)
    _write_csv_and_markdown(board, leaderboard_csv, leaderboard_md, "{:.2f}",
                            "Methods by their mean gain over random real images (points) over every (IPC, net), "
                            f"with its {INTERVAL} and verdict; the variance of that mean is the sum over the cells of "
                            "s_m^2/n_m + s_random^2/n_random over cells^2. "
                            "rank = 1 + the number of methods whose interval lies entirely above this one's, so "
                            "methods the intervals cannot tell apart share a rank (tied; a method with a 1-seed "
                            "cell has no interval and ties with every method). beats_random counts the cells where "
                            "the gain is positive, better those where its interval lies above 0. mean_lrs (and "
                            "mean_ars) are DD-Ranking's scores, means over the cells: within a cell LRS orders the "
                            "methods as their accuracy does (random and full are common to all), but it has no "
                            "interval, so the ranking is by the gain.\n\n")


def _method_grid(cells: pd.DataFrame, methods: list[str], resolution: int) -> str:
    """A markdown grid of `cells.text`: rows (IPC, net), a column per method."""
    wide = cells.pivot(index=["ipc", "arch"], columns="method", values="text").reindex(columns=methods)
    lines = ["| IPC | Test Model | " + " | ".join(label(m) for m in methods) + " |", "|---|---|" + "---|" * len(methods)]
    for (ipc, arch), row in wide.iterrows():
        lines.append(f"| {ipc} | {arch_label(arch, resolution)} | " + " | ".join(row.fillna("-")) + " |")
    return "\n".join(lines) + "\n"
