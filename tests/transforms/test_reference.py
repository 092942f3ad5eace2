from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_GOLDEN
from transforms.reference import ci_ranks, quantile_grid, quantile_type6, reference_interval

GOLDEN = SHARED_GOLDEN / "reference_intervals"
# R referenceIntervals 1.3.1, singleRefLimit(x, RI="n", CI="n"), copied from ../shared/data/golden
NONPARAMETRIC_GOLDEN = {
    "lognormal_n120": (
        0.510011035255,
        6.3705094790125,
        0.4177678033,
        0.6986105883,
        4.4753296473,
        10.9194421093,
    ),
    "lognormal_n240": (
        1.16989467296,
        9.918281492485,
        0.7787148317,
        1.3732578619,
        8.4056100821,
        14.2826184347,
    ),
    "lognormal_n400_outliers": (
        2.669380471765,
        32.5753819205325,
        2.2492140031,
        2.896995995,
        20.5934785068,
        78.5339081153,
    ),
}
# CLSI EP28-A3c table of 90 % CI ranks for the 2.5th percentile (subset; the full table is checked below)
EP28_RANKS = {119: (1, 7), 120: (1, 7), 200: (2, 10), 240: (2, 11), 400: (5, 16), 1000: (17, 34)}


@pytest.mark.parametrize(("n", "ranks"), EP28_RANKS.items())
def test_ci_ranks_match_the_ep28_table(n: int, ranks: tuple[int, int]) -> None:
    assert ci_ranks(n, 0.025) == ranks
    lo, hi = ranks
    assert ci_ranks(n, 0.975) == (n + 1 - hi, n + 1 - lo)


@pytest.mark.skipif(not GOLDEN.exists(), reason="../shared golden files not present")
def test_ci_ranks_match_the_full_ep28_table() -> None:
    table = pl.read_csv(GOLDEN / "ep28_ci_ranks.csv")
    bad = [(n, lo, hi) for n, lo, hi in table.rows() if ci_ranks(n, 0.025) != (lo, hi)]
    assert not bad


@pytest.mark.skipif(not GOLDEN.exists(), reason="../shared golden files not present")
@pytest.mark.parametrize("name", NONPARAMETRIC_GOLDEN)
def test_nonparametric_limits_agree_with_r_reference_intervals(name: str) -> None:
    values = pl.read_csv(GOLDEN / f"{name}.csv")["value"].to_numpy()
    ri = reference_interval(values, outliers=None)
    got = (
        ri.lower_limit,
        ri.upper_limit,
        ri.lower_ci_low,
        ri.lower_ci_high,
        ri.upper_ci_low,
        ri.upper_ci_high,
    )
    assert got == pytest.approx(NONPARAMETRIC_GOLDEN[name], rel=1e-9)
    assert ri.n == values.size and ri.method == "nonparametric"


def test_type6_quantile_matches_hand_computed_order_statistics() -> None:
    x = np.arange(1.0, 121.0)  # 1..120: the value at rank r is r
    # rank 0.025 * 121 = 3.025 -> 3 + 0.025 * (4 - 3)
    assert quantile_type6(x, 0.025)[0] == pytest.approx(3.025)
    assert quantile_type6(x, 0.975)[0] == pytest.approx(117.975)
    assert quantile_type6(x, 0.5)[0] == pytest.approx(60.5)
    ri = reference_interval(x, outliers=None)
    assert (ri.lower_ci_low, ri.lower_ci_high, ri.upper_ci_low, ri.upper_ci_high) == (1.0, 7.0, 114.0, 120.0)


def test_censored_values_rank_lowest_and_a_censored_limit_is_reported_as_the_lod() -> None:
    rng = np.random.default_rng(1)
    x = np.exp(rng.normal(0, 0.5, 200))
    censored = np.zeros(200, dtype=bool)
    censored[:10] = True  # 5 % below LOD: the 2.5th percentile lies in the censored region
    ri = reference_interval(x, censored=censored, lod=0.3, outliers=None)
    assert ri.lower_limit == 0.3 and ri.lower_limit_censored
    assert ri.n_below_lod == 10 and ri.n == 200
    measured = np.sort(x[~censored])
    assert ri.upper_limit == pytest.approx(quantile_type6(np.concatenate([np.full(10, -np.inf), measured]), 0.975)[0])
    few = censored.copy()
    few[:] = False
    few[:2] = True
    assert not reference_interval(x, censored=few, lod=0.3, outliers=None).lower_limit_censored


def test_tukey_fences_on_the_log_scale_exclude_planted_outliers_only() -> None:
    rng = np.random.default_rng(3)
    x = np.exp(rng.normal(0, 0.4, 300))
    x[:4] *= 40
    ri = reference_interval(x)
    assert set(range(4)) <= set(ri.excluded_index)
    assert ri.n_outliers_excluded <= 8


def test_quantile_grid_keeps_k_values_on_each_side() -> None:
    x = np.arange(1.0, 41.0)  # n = 40
    grid = quantile_grid(x, censored=np.zeros(40, dtype=bool), lod=None, k=5)
    # rank p * 41 must be >= 5 and leave >= 5 above: p from 0.13 (rank 5.33) to 0.87 (rank 35.67)
    assert grid["p"].min() == pytest.approx(0.13) and grid["p"].max() == pytest.approx(0.87)
    assert grid["value"].is_sorted()
    assert grid["p"].dtype == pl.Float64 and grid["value"].dtype == pl.Float64


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.01, 1e4), min_size=120, max_size=300), st.randoms())
def test_limits_do_not_depend_on_order_and_bracket_the_median(values: list[float], rnd) -> None:
    x = np.array(values)
    shuffled = x.copy()
    rnd.shuffle(shuffled)
    a, b = reference_interval(x), reference_interval(shuffled)
    assert (a.lower_limit, a.upper_limit, a.median) == (b.lower_limit, b.upper_limit, b.median)
    a = reference_interval(x, outliers=None)
    assert a.lower_limit <= a.median <= a.upper_limit
    assert a.lower_ci_low <= a.lower_limit <= a.lower_ci_high
    assert a.upper_ci_low <= a.upper_limit <= a.upper_ci_high
