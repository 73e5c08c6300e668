"""tables/scores.* and tables/leaderboard.*: DD-Ranking's scores and how sure each gain over random
is (Welch's t over seeds, the verdicts, the rank with ties), recomputed by hand from fixed records."""

import math

import pandas as pd
import pytest

from minimaxdd import tables

from conftest import write_records

# Student's t, two-sided 95 % (the 0.975 quantile), from the printed tables: df 2, 4, 8
T_2, T_4, T_8 = 4.303, 2.776, 2.306


def write_scores(tmp_path, hard, methods, ipcs, soft=(), plain=()):
    tables.write_scores(hard, list(soft), list(plain), tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "l.csv",
                        tmp_path / "l.md", methods, ipcs, ["convnet"], 32, "best")
    return (pd.read_csv(tmp_path / "s.csv").set_index(["method", "ipc"]), pd.read_csv(tmp_path / "l.csv"),
            (tmp_path / "s.md").read_text(), (tmp_path / "l.md").read_text())


def test_dd_ranking_scores_recomputed_by_hand_from_fixed_records(tmp_path):
    """HLR = Acc(full, hard) - Acc(set, hard), IOR = Acc(set) - Acc(random) under one protocol,
    alpha = 0.5 IOR - 0.5 HLR on fractions, LRS = (e^alpha - e^-1) / (e - e^-1) (ddranking
    metrics/hard_label.py, soft_label.py compute_metrics), means over seeds."""
    hard = (write_records(tmp_path / "hard", "random", [20, 30]) + write_records(tmp_path / "hard", "minimax", [40, 44])
            + write_records(tmp_path / "hard", "igd", [50]) + write_records(tmp_path / "hard", "full", [80], ipc=None))
    soft = (write_records(tmp_path / "soft", "random", [30]) + write_records(tmp_path / "soft", "minimax", [60])
            + write_records(tmp_path / "soft", "igd", [58]))
    plain = write_records(tmp_path / "plain", "random", [10, 12]) + write_records(tmp_path / "plain", "minimax", [35])  # no igd
    scores, board, markdown, _ = write_scores(tmp_path, hard, ["random", "minimax", "igd", "full"], [10], soft, plain)
    scores = scores.droplevel("ipc")

    def lrs(hlr, ior):
        alpha = 0.5 * ior / 100 - 0.5 * hlr / 100
        return 100 * (math.exp(alpha) - math.exp(-1)) / (math.exp(1) - math.exp(-1))

    # minimax: hard 42 (mean of 40, 44), random 25, full 80; soft 60 against 30
    assert scores.loc["minimax", "hlr"] == 38.0 and scores.loc["minimax", "ior"] == 17.0
    assert scores.loc["minimax", "lrs"] == pytest.approx(lrs(38, 17), abs=0.01)
    assert scores.loc["minimax", "lrs"] == pytest.approx(100 * (math.exp(-0.105) - math.exp(-1)) / 2.3504, abs=0.01)
    assert scores.loc["minimax", "lrs_soft"] == pytest.approx(lrs(38, 30), abs=0.01)
    assert scores.loc["igd", "lrs"] == pytest.approx(lrs(30, 25), abs=0.01)  # one seed: 50 against 25 and 80
    assert scores.loc["igd", "lrs"] > scores.loc["minimax", "lrs"]
    # ARS (ddranking metrics/aug_robust.py): beta = 0.5 IOR(augmented) + 0.5 IOR(no augmentation) on fractions
    assert scores.loc["minimax", "ior_no_augment"] == 24.0  # 35 against the mean of 10 and 12
    ars = 100 * (math.exp(0.5 * 0.17 + 0.5 * 0.24) - math.exp(-1)) / (math.exp(1) - math.exp(-1))
    assert scores.loc["minimax", "ars"] == pytest.approx(ars, abs=0.01)
    assert math.isnan(scores.loc["igd", "ars"])
    assert list(board.method) == ["IGD", "Minimax"] and board.mean_lrs.iloc[0] == pytest.approx(lrs(30, 25), abs=0.01)
    assert f"| 10 | ConvNet-3 | {lrs(38, 17):.1f} (38.0, +17.0); soft {lrs(38, 30):.1f}; ARS {ars:.1f} |" in markdown


@pytest.fixture
def four_methods(tmp_path):
    """Random at 58, 60, 62 (sample variance 4) at IPC 1 and 10; Minimax and DiT three seeds of
    variance 4 each, Herding three equal seeds, IGD one seed at IPC 1 only."""
    folder = tmp_path / "hard"
    hard = [path for ipc in (1, 10) for path in write_records(folder, "random", [58, 60, 62], ipc)]
    hard += write_records(folder, "minimax", [70, 72, 74], 1) + write_records(folder, "minimax", [64, 66, 68], 10)  # +12, +6
    hard += write_records(folder, "dit", [59, 61, 63], 1) + write_records(folder, "dit", [68, 70, 72], 10)  # +1, +10
    hard += write_records(folder, "herding", [50, 50, 50], 1) + write_records(folder, "herding", [50, 50, 50], 10)  # -10, -10
    hard += write_records(folder, "igd", [80], 1)  # +20
    return write_scores(tmp_path, hard, ["random", "minimax", "dit", "herding", "igd"], [1, 10])


def test_each_cell_has_its_welch_interval_and_verdict(four_methods):
    scores, _, markdown, _ = four_methods

    def cell(method, ipc):
        row = scores.loc[(method, ipc)]
        return row.gain, row.gain_low, row.gain_high, row.verdict

    # equal variances and seeds: SE^2 = 4/3 + 4/3, Welch-Satterthwaite df = (8/3)^2 / (2 (4/3)^2 / 2) = 4
    half = T_4 * math.sqrt(8 / 3)  # 4.53
    assert cell("minimax", 1) == (12.0, pytest.approx(12 - half, abs=0.01), pytest.approx(12 + half, abs=0.01), "better")
    assert cell("dit", 1) == (1.0, pytest.approx(1 - half, abs=0.01), pytest.approx(1 + half, abs=0.01),
                              "not distinguishable")
    assert scores.loc[("minimax", 10), "gain_low"] == pytest.approx(6 - half, abs=0.01)  # 1.47: still above 0
    # Herding's seeds agree: SE^2 = 0 + 4/3 and df = (4/3)^2 / ((4/3)^2 / 2) = 2 (a pooled t would take 4)
    half = T_2 * math.sqrt(4 / 3)  # 4.97
    assert cell("herding", 1) == (-10.0, pytest.approx(-10 - half, abs=0.01), pytest.approx(-10 + half, abs=0.01),
                                  "worse")
    gain, low, high, verdict = cell("igd", 1)  # one seed: no variance, no interval
    assert gain == 20.0 and math.isnan(low) and math.isnan(high) and verdict == "not distinguishable"
    assert "| 1 | ConvNet-3 | +12.0 [+7.5, +16.5] better | +1.0 [-3.5, +5.5] not distinguishable | " \
           "-10.0 [-15.0, -5.0] worse | +20.0 [1 seed] not distinguishable |" in markdown
    assert "95 % confidence interval by Welch's t over the validation seeds (sample variances, ddof 1" in markdown


def test_the_leaderboard_ranks_by_the_mean_gain_and_ties_what_the_intervals_cannot_tell_apart(four_methods):
    _, board, _, markdown = four_methods
    board = board.set_index("method")
    # mean of two cells: SE^2 = (4/3 + 4/3 + 4/3 + 4/3) / 2^2, df = (16/3)^2 / (4 (4/3)^2 / 2) = 8
    half = T_8 * math.sqrt(16 / 3) / 2  # 2.66
    assert board.loc["Minimax", ["mean_gain", "mean_gain_low", "mean_gain_high"]].tolist() == pytest.approx(
        [9, 9 - half, 9 + half], abs=0.01)  # 6.34 to 11.66
    assert board.loc["DiT", ["mean_gain", "mean_gain_low", "mean_gain_high"]].tolist() == pytest.approx(
        [5.5, 5.5 - half, 5.5 + half], abs=0.01)  # 2.84 to 8.16: overlaps Minimax's
    # Herding: SE^2 = (0 + 4/3 + 0 + 4/3) / 2^2, df = (8/3)^2 / (2 (4/3)^2 / 2) = 4
    half = T_4 * math.sqrt(8 / 3) / 2  # 2.27
    assert board.loc["Herding", ["mean_gain_low", "mean_gain_high"]].tolist() == pytest.approx(
        [-10 - half, -10 + half], abs=0.01)
    assert board.verdict.to_dict() == {"IGD": "not distinguishable", "Minimax": "better", "DiT": "better",
                                       "Herding": "worse"}
    assert list(board.index) == ["IGD", "Minimax", "DiT", "Herding"]  # by mean gain: 20, 9, 5.5, -10
    # Minimax and DiT overlap: both 1; Herding lies below both: 3; IGD has no interval: 1, tied with all
    assert board["rank"].to_dict() == {"IGD": 1, "Minimax": 1, "DiT": 1, "Herding": 3}
    assert board.tied.to_dict() == {"IGD": True, "Minimax": True, "DiT": True, "Herding": False}
    assert board.better.to_dict() == {"IGD": 0, "Minimax": 2, "DiT": 1, "Herding": 0}
    assert board.beats_random.to_dict() == {"IGD": 1, "Minimax": 2, "DiT": 2, "Herding": 0}
    assert "rank = 1 + the number of methods whose interval lies entirely above this one's" in markdown


def test_seeds_that_agree_give_an_interval_of_zero_width(tmp_path):
    hard = (write_records(tmp_path / "hard", "random", [60, 60]) + write_records(tmp_path / "hard", "minimax", [63, 63])
            + write_records(tmp_path / "hard", "dit", [60, 60]) + write_records(tmp_path / "hard", "herding", [57, 57]))
    scores, board, _, _ = write_scores(tmp_path, hard, ["random", "minimax", "dit", "herding"], [10])
    scores = scores.droplevel("ipc")
    assert scores.loc["minimax", ["gain_low", "gain_high", "verdict"]].tolist() == [3.0, 3.0, "better"]
    assert scores.loc["dit", ["gain_low", "gain_high", "verdict"]].tolist() == [0.0, 0.0, "not distinguishable"]
    assert scores.loc["herding", ["gain_low", "gain_high", "verdict"]].tolist() == [-3.0, -3.0, "worse"]
    assert board["rank"].tolist() == [1, 2, 3] and not board.tied.any()
