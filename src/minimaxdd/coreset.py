"""Coreset baselines: Herding and K-Center selection on classifier features, per class.

Both are greedy, so a selection of k is the first k of any larger selection (the prefix property):
a set for IPC 10 contains the set for IPC 1.
"""

from __future__ import annotations

import numpy as np

from .analysis import as_matrix


def _check_k(k: int, n: int) -> None:
    if not 0 <= k <= n:
        raise ValueError(f"cannot select k={k} rows from n={n}")


def herding(features, k: int) -> np.ndarray:
    """Indices of k rows in selection order (Welling 2009, as used in dataset distillation).

    Step t adds the unselected row that brings the mean of the selected rows closest (L2) to the
    mean of all rows; ties go to the lowest index.
    """
    features = as_matrix(features)
    _check_k(k, len(features))
    target = features.mean(0)
    selected_sum = np.zeros(features.shape[1])
    available = np.ones(len(features), dtype=bool)
    order = []
    for t in range(1, k + 1):
        gaps = (((selected_sum + features) / t - target) ** 2).sum(1)
        gaps[~available] = np.inf
        best = int(np.argmin(gaps))  # argmin returns the first minimum: lowest index wins ties
        order.append(best)
        available[best] = False
        selected_sum += features[best]
    return np.array(order, dtype=np.int64)


def kcenter(features, k: int) -> np.ndarray:
    """Indices of k rows in selection order, greedy k-center (Sener & Savarese 2018).

    The first center is the row closest to the mean, a deterministic choice in place of the usual
    random start; then each step adds the row farthest from its nearest chosen center. Ties go to the
    lowest index.
    """
    features = as_matrix(features)
    _check_k(k, len(features))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    order = [int(np.argmin(((features - features.mean(0)) ** 2).sum(1)))]
    nearest_center = ((features - features[order[0]]) ** 2).sum(1)  # squared distance
    nearest_center[order[0]] = -1.0  # below any distance, so duplicates of a center still beat it
    for _ in range(k - 1):
        farthest = int(np.argmax(nearest_center))
        order.append(farthest)
        nearest_center = np.minimum(nearest_center, ((features - features[farthest]) ** 2).sum(1))
        nearest_center[farthest] = -1.0
    return np.array(order, dtype=np.int64)


SELECTORS = {"herding": herding, "kcenter": kcenter}


def select_per_class(features, labels, ipc: int, method: str) -> np.ndarray:
    """Dataset indices of `ipc` rows per class, classes in sorted order, each in selection order."""
    if method not in SELECTORS:
        raise ValueError(f"unknown coreset method {method!r}; valid: {', '.join(sorted(SELECTORS))}")
    features = as_matrix(features)
    labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).reshape(-1)
    if len(labels) != len(features):
        raise ValueError(f"{len(labels)} labels for {len(features)} feature rows")
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if ipc > len(members):
            raise ValueError(f"IPC {ipc} exceeds the {len(members)} rows of class {c}")
        chosen.append(members[SELECTORS[method](features[members], ipc)])
    return np.concatenate(chosen).astype(np.int64)
