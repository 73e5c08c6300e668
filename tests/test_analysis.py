import math

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from minimaxdd import analysis
from minimaxdd.analysis import frechet_distance, median_bandwidth, mmd, prdc
from minimaxdd.figures import plot_tsne, tsne_embedding
from minimaxdd.coreset import herding, kcenter, select_per_class

# Points on a line whose gaps are powers of two: all pairwise distances differ and integer arithmetic
# is exact, so k-NN balls have no ties and no rounding at their boundary.
LINE = np.array([[0, 0], [1, 0], [3, 0], [7, 0], [15, 0], [31, 0]], dtype=float)


def cloud(n=20, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


# ---------------------------------------------------------------- MMD

def test_mmd_of_a_set_with_itself_is_zero():
    x = cloud()
    assert mmd(x, x) == 0.0
    assert mmd(x, x, bandwidth=0.3) == 0.0


def test_mmd_matches_hand_computation_for_two_points():
    # Kxx = Kyy = 1, Kxy = exp(-1 / 2) at sigma = 1
    assert mmd([[0.0]], [[1.0]], bandwidth=1.0) == pytest.approx(2 - 2 * math.exp(-0.5))


def test_mmd_grows_with_shift_is_symmetric_and_non_negative():
    x = cloud()
    y = cloud(seed=1)
    values = [mmd(x, y + [shift, 0, 0], bandwidth=1.0) for shift in (0, 0.5, 1, 2)]
    assert all(v >= 0 for v in values)
    assert values == sorted(values) and len(set(values)) == 4
    assert mmd(x, y, bandwidth=1.0) == pytest.approx(mmd(y, x, bandwidth=1.0), abs=1e-15)


def test_median_bandwidth_of_known_distances():
    # distances 1, 4, 6, 3, 5, 2 -> median 3.5
    assert median_bandwidth([[0.0], [1.0], [4.0]], [[6.0]]) == pytest.approx(3.5)
    # zeros between duplicates are left out: distances 1, 1, 1 remain
    assert median_bandwidth([[0.0], [0.0]], [[0.0], [1.0]]) == pytest.approx(1.0)


def test_mmd_default_bandwidth_is_the_median_heuristic_and_accepts_tensors():
    x, y = cloud(), cloud(seed=1) + 1
    sigma = median_bandwidth(x, y)
    assert mmd(torch.from_numpy(x).float(), y) == pytest.approx(mmd(x, y, bandwidth=sigma), rel=1e-6)


def test_median_bandwidth_subsample_is_deterministic():
    x, y = cloud(50), cloud(50, seed=1)
    assert median_bandwidth(x, y, max_rows=30) == median_bandwidth(x, y, max_rows=30)
    assert median_bandwidth(x, y, max_rows=30, seed=1) != median_bandwidth(x, y, max_rows=30)


def test_blocked_computation_matches_unblocked(monkeypatch):
    real, fake = cloud(40), cloud(15, seed=1)
    expected = mmd(real, fake, bandwidth=1.5), prdc(real, fake, k=3)
    monkeypatch.setattr(analysis, "BLOCK_ENTRIES", 7)  # many tiny blocks
    assert mmd(real, fake, bandwidth=1.5) == pytest.approx(expected[0], rel=1e-12)
    assert prdc(real, fake, k=3) == expected[1]


# ---------------------------------------------------------------- PRDC

def test_prdc_fake_equal_to_real():
    # each real ball (strict <) holds the point itself and its k-1 nearer neighbours: k fakes per ball
    assert prdc(LINE, LINE.copy(), k=2) == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}


def test_prdc_fake_far_away_is_all_zero():
    scores = prdc(LINE, LINE + 100, k=2)
    assert scores == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_fake_in_one_of_two_real_clusters():
    real = np.concatenate([LINE, LINE + [1000, 0]])
    scores = prdc(real, LINE, k=2)
    # all fakes sit in the first cluster, the second is missed; first-cluster balls hold 2 fakes each
    assert scores == {"precision": 1.0, "recall": 0.5, "coverage": 0.5, "density": 12 / (2 * 6)}


def test_prdc_half_the_fakes_off_the_real_support():
    scores = prdc(LINE, np.concatenate([LINE, LINE + [1000, 0]]), k=2)
    assert scores == {"precision": 0.5, "recall": 1.0, "coverage": 1.0, "density": 12 / (2 * 12)}


def test_prdc_needs_more_than_k_points():
    with pytest.raises(ValueError, match="k=5"):
        prdc(LINE, LINE[:5], k=5)


# ---------------------------------------------------------------- Frechet distance

def test_frechet_of_a_set_with_itself_is_zero():
    x = cloud()
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_frechet_exact_one_dimensional_case():
    # means 0 and 5, variances (ddof=1) 2 and 8: 25 + (sqrt 2 - sqrt 8)^2 = 27
    assert frechet_distance([[-1.0], [1.0]], [[3.0], [7.0]]) == pytest.approx(27.0)


def test_frechet_mean_shift_adds_squared_norm():
    x = cloud()
    assert frechet_distance(x, x + [1.0, -2.0, 0.5]) == pytest.approx(1 + 4 + 0.25)


def test_frechet_matches_textbook_formula_and_gaussian_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2)) * [1, 2]  # N(0, diag(1, 4))
    y = rng.normal(size=(20000, 2)) * [2, 3] + [1, 1]  # N((1, 1), diag(4, 9))
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    textbook = (((x.mean(0) - y.mean(0)) ** 2).sum()
                + np.trace(cov_x + cov_y - 2 * sqrtm(cov_x @ cov_y).real))
    assert frechet_distance(x, y) == pytest.approx(textbook, rel=1e-9)
    assert frechet_distance(x, y) == pytest.approx(2 + 1 + 1, rel=0.05)  # |dmu|^2 + sum (sqrt a - sqrt b)^2


def test_frechet_singular_covariance_and_too_few_rows():
    value = frechet_distance(cloud(3, 10), cloud(200, 10, seed=1))  # rank-2 covariance in 10-d
    assert math.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(cloud(1), cloud())


# ---------------------------------------------------------------- coresets

def test_herding_greedy_order_by_hand():
    # mean 2.5; picks 1 (mean 1), then 0 (mean .5), then 10 (mean 3.67), then -1
    assert herding([[-1.0], [0.0], [1.0], [10.0]], 4).tolist() == [2, 1, 3, 0]
    assert herding([[1.0], [-1.0]], 1).tolist() == [0]  # tie at distance 1 from the mean 0: lowest index


def test_kcenter_farthest_point_order_by_hand():
    points = [[4, 4], [0, 0], [9, 0], [0, 20], [5, 5]]
    # mean (3.6, 5.8) is nearest (5, 5); then (0, 20) at 250, (0, 0) at 50, (9, 0) at 41, (4, 4)
    assert kcenter(points, 5).tolist() == [4, 3, 1, 2, 0]
    assert kcenter([[0.0], [0.0], [5.0]], 3).tolist() == [0, 2, 1]  # a duplicate of a center still comes


@pytest.mark.parametrize("select", [herding, kcenter])
def test_selection_prefix_property_and_bounds(select):
    features = cloud(15, 4)
    full = select(features, 15)
    assert sorted(full.tolist()) == list(range(15))
    for k in range(15):
        assert select(features, k).tolist() == full[:k].tolist()
    with pytest.raises(ValueError, match="k=16.*n=15"):
        select(features, 16)


def test_select_per_class_counts_order_and_errors():
    labels = np.array([2, 0, 1, 2, 0, 2, 1, 0, 2, 1, 0, 2])  # class sizes 4, 3, 5
    features = torch.from_numpy(cloud(12, 3))
    chosen = select_per_class(features, torch.from_numpy(labels), ipc=3, method="herding")
    assert labels[chosen].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    class_two = np.flatnonzero(labels == 2)
    assert chosen[6:].tolist() == class_two[herding(features.numpy()[class_two], 3)].tolist()
    assert len(set(select_per_class(features, labels, 3, "kcenter").tolist())) == 9
    with pytest.raises(ValueError, match="IPC 4 exceeds the 3 rows of class 1"):
        select_per_class(features, labels, 4, "kcenter")
    with pytest.raises(ValueError, match="herding, kcenter"):
        select_per_class(features, labels, 1, "random")


# ---------------------------------------------------------------- t-SNE

def test_tsne_shapes_and_plot(tmp_path):
    real = cloud(50, 5)
    sets = {"herding": cloud(6, 5, seed=1), "minimax": torch.from_numpy(cloud(4, 5, seed=2))}
    embedding = tsne_embedding(real, sets, seed=0, max_real=30)
    assert list(embedding) == ["real", "herding", "minimax"]
    assert [e.shape for e in embedding.values()] == [(30, 2), (6, 2), (4, 2)]
    assert all(np.isfinite(e).all() for e in embedding.values())
    path = tmp_path / "fig" / "tsne.png"
    plot_tsne(embedding, path, "t-SNE test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["tsne.png"]  # no temporary left behind
