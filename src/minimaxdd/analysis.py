"""How well a surrogate set covers the real distribution, measured on classifier features.

All metrics take (n, d) float arrays or torch tensors and work in float64. Large real sets (tens of
thousands of rows) are handled in blocks so no full n x n matrix is ever held in memory.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.distance import pdist

BLOCK_ENTRIES = 2**22  # distance entries per block: 32 MiB of float64


def as_matrix(x) -> np.ndarray:
    """A float64 (n, d) numpy copy of an array or tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (n, d) feature matrix, got shape {x.shape}")
    return x


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All squared Euclidean distances between rows of a and b (expanded form, so BLAS does the work)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)  # rounding can push exact zeros slightly negative


def _row_blocks(n_rows: int, n_cols: int):
    """Slices over rows so that each block against n_cols columns stays within BLOCK_ENTRIES."""
    step = max(1, BLOCK_ENTRIES // max(n_cols, 1))
    return (slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step))


def median_bandwidth(x, y, max_rows: int = 2000, seed: int = 0) -> float:
    """Median of the non-zero pairwise Euclidean distances of concatenate(x, y).

    Pooled samples larger than `max_rows` are subsampled without replacement with a fixed seed, so the
    estimate is deterministic and costs at most max_rows^2 / 2 distances.
    """
    pooled = np.concatenate([as_matrix(x), as_matrix(y)])
    if len(pooled) > max_rows:
        pooled = pooled[np.random.default_rng(seed).choice(len(pooled), max_rows, replace=False)]
    distances = pdist(pooled)
    distances = distances[distances > 0]
    if distances.size == 0:
        raise ValueError("median bandwidth undefined: all pooled points are identical")
    return float(np.median(distances))


def _mean_kernel(a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    total = 0.0
    for rows in _row_blocks(len(a), len(b)):
        total += np.exp(-_squared_distances(a[rows], b) / (2.0 * sigma**2)).sum()
    return total / (len(a) * len(b))


def mmd(x, y, bandwidth: float | None = None) -> float:
    """Squared MMD, biased V-statistic, Gaussian kernel exp(-||a-b||^2 / (2 sigma^2)).

    sigma = `bandwidth`, or `median_bandwidth(x, y)` when None; pass one precomputed sigma to compare
    several sets against the same real features on the same scale.
    """
    x, y = as_matrix(x), as_matrix(y)
    sigma = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    if sigma <= 0:
        raise ValueError(f"bandwidth must be positive, got {sigma}")
    value = _mean_kernel(x, x, sigma) + _mean_kernel(y, y, sigma) - 2.0 * _mean_kernel(x, y, sigma)
    return max(float(value), 0.0)  # the V-statistic is >= 0; clip rounding noise


def _knn_radii(points: np.ndarray, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest neighbour, not counting itself."""
    if not 1 <= k < len(points):
        raise ValueError(f"k={k} nearest neighbours need more than k points, got {len(points)}")
    radii = np.empty(len(points))
    for rows in _row_blocks(len(points), len(points)):
        # index k of the sorted row is the (k+1)-th smallest: the self-distance 0 comes first
        radii[rows] = np.sqrt(np.partition(_squared_distances(points[rows], points), k, axis=1)[:, k])
    return radii


def prdc(real, fake, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of Naeem et al. (2020), as in their `prdc` package.

    A ball around a point has radius = distance to its k-th nearest neighbour in its own set, and
    "inside" is strict (<), as in the reference implementation.
    """
    real, fake = as_matrix(real), as_matrix(fake)
    real_radii, fake_radii = _knn_radii(real, k), _knn_radii(fake, k)
    fake_in_some_real_ball = np.zeros(len(fake), dtype=bool)
    real_balls_per_fake = np.zeros(len(fake))
    real_near_some_fake = np.empty(len(real), dtype=bool)  # inside some fake ball (recall)
    real_covered = np.empty(len(real), dtype=bool)  # nearest fake inside the real ball (coverage)
    for rows in _row_blocks(len(real), len(fake)):
        distances = np.sqrt(_squared_distances(real[rows], fake))
        inside_real_ball = distances < real_radii[rows, None]
        fake_in_some_real_ball |= inside_real_ball.any(0)
        real_balls_per_fake += inside_real_ball.sum(0)
        real_near_some_fake[rows] = (distances < fake_radii[None, :]).any(1)
        real_covered[rows] = distances.min(1) < real_radii[rows]
    return {
        "precision": float(fake_in_some_real_ball.mean()),
        "recall": float(real_near_some_fake.mean()),
        "density": float(real_balls_per_fake.sum() / (k * len(fake))),
        "coverage": float(real_covered.mean()),
    }


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(x, y) -> float:
    """||mu_x - mu_y||^2 + Tr(Sx + Sy - 2 (Sx Sy)^(1/2)) with sample covariances (ddof=1).

    Tr((Sx Sy)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    Sx^(1/2) Sy Sx^(1/2), which has the same spectrum. Unlike a general matrix square root this stays
    real and stable when a covariance is singular, the usual case for a few images per class in 512-d.
    """
    x, y = as_matrix(x), as_matrix(y)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"Frechet distance needs at least 2 rows in each set, got {len(x)} and {len(y)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    cov_x, cov_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    root_x = _psd_sqrt(cov_x)
    cross_eigenvalues = np.linalg.eigvalsh(root_x @ cov_y @ root_x)
    trace_sqrt = np.sqrt(np.clip(cross_eigenvalues, 0.0, None)).sum()
    mean_term = float(((x.mean(0) - y.mean(0)) ** 2).sum())
    value = mean_term + np.trace(cov_x) + np.trace(cov_y) - 2.0 * trace_sqrt
    return max(float(value), 0.0)
