"""Figures of the report: t-SNE of features (Fig. 3), fine-tuning loss curves, validation curves
and sample grids."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from .analysis import as_matrix  # noqa: E402
from .io import atomic_path  # noqa: E402
from .nets import arch_label  # noqa: E402
from .tables import label, load_records, seed_std  # noqa: E402

LOSS_TERMS = ("diffusion", "representativeness", "diversity")


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def plot_loss_curves(loss_files: dict[str, str], path) -> None:
    """One panel per loss term, one line per fine-tuned method (moving average over 50 steps)."""
    fig, axes = plt.subplots(1, len(LOSS_TERMS), figsize=(4.5 * len(LOSS_TERMS), 3.4))
    for method, file in loss_files.items():
        losses = pd.read_csv(file)
        for ax, term in zip(axes, LOSS_TERMS):
            ax.plot(losses.step, losses[term].rolling(50, min_periods=1).mean(), label=label(method))
    for ax, term in zip(axes, LOSS_TERMS):
        ax.set(title=f"{term} term (unweighted)", xlabel="fine-tuning step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_validation_curves(record_paths: list[str], path, methods: list[str], archs: list[str], title: str,
                           resolution: int) -> None:
    """Test accuracy over validation training, one panel per net, one line per method (mean over
    seeds, shaded ± their `seed_std`): where the best of the evaluations falls, and how far the last
    is from it."""
    records = load_records(record_paths)
    fig, axes = plt.subplots(1, len(archs), figsize=(4.5 * len(archs), 3.4), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for method in methods:
            runs = records[(records.method == method) & (records.arch == arch)]
            curves = pd.DataFrame([dict(run) for run in runs.curve])  # columns: evaluated epochs
            if curves.empty:
                continue
            mean, std = curves.mean(), seed_std(curves).fillna(0.0)
            ax.plot(mean.index, mean.values, label=label(method))
            ax.fill_between(mean.index, mean - std, mean + std, alpha=0.15)
        ax.set(title=f"{title}: {arch_label(arch, resolution)}", xlabel="epoch", ylabel="test top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_sample_grid(packs: dict, path, per_class: int, class_labels: list[str]) -> None:
    """Rows: classes (labelled `class_labels`); one block of `per_class` images per method, side by side."""
    first = next(iter(packs.values()))
    fig, axes = plt.subplots(1, len(packs), figsize=(1.2 + 0.45 * per_class * len(packs), 0.5 * len(first.class_names) + 0.8),
                             squeeze=False)
    for ax, (method, pack) in zip(axes[0], packs.items()):
        rows = []
        for k in range(len(pack.class_names)):
            images = pack.by_class(k)[:per_class].permute(0, 2, 3, 1).numpy()
            rows.append(np.concatenate(list(images), axis=1))
        grid = np.concatenate(rows, axis=0)
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
        ax.set_title(label(method), fontsize=8)
        side = first.images.shape[-1]
        if ax is axes[0][0]:  # the rows' classes, once, at the left
            ax.set_yticks(np.arange(len(pack.class_names)) * side + side / 2, class_labels, fontsize=7)
        else:
            ax.set_yticks([])
        ax.set_xticks([])
    fig.tight_layout()
    _save(fig, path)


def tsne_embedding(real, sets: dict, seed: int, max_real: int, perplexity: float = 30.0) -> dict[str, np.ndarray]:
    """Embed a real subsample and every set in ONE t-SNE fit, so all share the same 2-D space.

    Returns {"real": (n_real, 2), name: (n_name, 2), ...}; the real rows are a fixed-seed subsample of
    at most `max_real` rows. Perplexity is clipped to (n_total - 1) / 3 for small inputs.
    """
    real = as_matrix(real)
    if len(real) > max_real:
        real = real[np.sort(np.random.default_rng(seed).choice(len(real), max_real, replace=False))]
    parts = {"real": real, **{name: as_matrix(points) for name, points in sets.items()}}
    pooled = np.concatenate(list(parts.values()))
    perplexity = min(perplexity, (len(pooled) - 1) / 3)
    embedded = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(pooled)
    ends = np.cumsum([len(points) for points in parts.values()])
    return dict(zip(parts, np.split(embedded, ends[:-1])))


def plot_tsne(embedding: dict, path: str | os.PathLike, title: str) -> None:
    """Fig. 3 style: one panel per set, real points in light gray behind, all panels on the same axes."""
    methods = [name for name in embedding if name != "real"]
    if not methods:
        raise ValueError("the embedding has no set besides 'real' to plot")
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.4),
                             sharex=True, sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for i, (ax, name) in enumerate(zip(axes[0], methods)):
        ax.scatter(*embedding["real"].T, s=3, c="lightgray", linewidths=0)
        ax.scatter(*np.asarray(embedding[name]).T, s=14, color=colours[i % len(colours)], linewidths=0)
        ax.set_title(label(name), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    # sharex/sharey give one set of limits; set it from all points so every panel shows everything
    everything = np.concatenate([np.asarray(points) for points in embedding.values()])
    low, high = everything.min(0), everything.max(0)
    margin = 0.05 * np.maximum(high - low, 1e-9)
    axes[0, 0].set_xlim(low[0] - margin[0], high[0] + margin[0])
    axes[0, 0].set_ylim(low[1] - margin[1], high[1] + margin[1])
    fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
