from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

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
    assert not (ri.upper_limit_censored or ri.median_censored)
    # a marker nearly all below its LOD: the median and the upper limit are the LOD too, and say so (they were
    # published as if measured, an interval of 0.3 to 0.3)
    most = np.zeros(200, dtype=bool)
    most[:196] = True
    mostly = reference_interval(x, censored=most, lod=0.3, outliers=None)
    assert (mostly.lower_limit, mostly.median, mostly.upper_limit) == (0.3, 0.3, 0.3)
    assert mostly.lower_limit_censored and mostly.median_censored and mostly.upper_limit_censored


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
    a = reference_interval(x, method="nonparametric")
    b = reference_interval(shuffled, method="nonparametric")
    assert (a.lower_limit, a.upper_limit, a.median) == (b.lower_limit, b.upper_limit, b.median)
    a = reference_interval(x, outliers=None, method="nonparametric")
    assert a.lower_limit <= a.median <= a.upper_limit
    assert a.lower_ci_low <= a.lower_limit <= a.lower_ci_high
    assert a.upper_ci_low <= a.upper_limit <= a.upper_ci_high


# R referenceIntervals 1.3.1 singleRefLimit(RI = "p", CI = "p") on the log values (figures from ../shared golden)
PARAMETRIC_LOG_GOLDEN = {
    "lognormal_n60": (
        -0.746330662069953,
        0.813123434109283,
        -0.890705597263627,
        -0.601955726876279,
        0.668748498915609,
        0.957498369302957,
    ),
    "lognormal_n120": (
        -0.671990045178849,
        1.73132337208632,
        -0.829321160013545,
        -0.514658930344152,
        1.57399225725162,
        1.88865448692102,
    ),
}
ROBUST_LOG_GOLDEN = {
    "lognormal_n60": (-0.764617045313664, 0.842985111084249),
    "lognormal_n120": (-0.720840733862297, 1.72517608219929),
}


@pytest.mark.skipif(not GOLDEN.exists(), reason="../shared golden files not present")
@pytest.mark.parametrize("name", PARAMETRIC_LOG_GOLDEN)
def test_parametric_limits_and_cis_agree_with_r(name: str) -> None:
    from transforms.reference import parametric_limits

    t = np.log(pl.read_csv(GOLDEN / f"{name}.csv")["value"].to_numpy())
    assert parametric_limits(t)[:6] == pytest.approx(PARAMETRIC_LOG_GOLDEN[name], rel=1e-9)


@pytest.mark.skipif(not GOLDEN.exists(), reason="../shared golden files not present")
@pytest.mark.parametrize("name", ROBUST_LOG_GOLDEN)
def test_robust_limits_are_close_to_the_peer(name: str) -> None:
    """Horn-Pesce with the standard biweight midvariance (c = 9); the peer's scale constant differs, so
    the limits agree to within 2.5 % of the interval width, not to rounding."""
    from transforms.reference import robust_limits

    t = np.log(pl.read_csv(GOLDEN / f"{name}.csv")["value"].to_numpy())
    lo, hi, _ = robust_limits(t)
    glo, ghi = ROBUST_LOG_GOLDEN[name]
    width = ghi - glo
    assert abs(lo - glo) < 0.025 * width and abs(hi - ghi) < 0.025 * width


def test_auto_method_by_n_and_shape() -> None:
    rng = np.random.default_rng(11)
    big = reference_interval(np.exp(rng.normal(0, 0.5, 150)))
    assert big.method == "nonparametric"
    small = reference_interval(np.exp(rng.normal(0, 0.5, 60)))
    assert small.method.startswith("parametric") and small.lower_limit < small.median < small.upper_limit
    assert small.lower_ci_low < small.lower_limit < small.lower_ci_high
    skewed = reference_interval(np.concatenate([rng.normal(10, 1, 50), rng.normal(16, 1, 12)]), outliers=None)
    assert skewed.method.startswith("robust") and skewed.upper_ci_low < skewed.upper_limit < skewed.upper_ci_high
    with pytest.raises(ValueError, match="below 20"):
        reference_interval(np.exp(rng.normal(0, 0.5, 15)))
    with pytest.raises(ValueError, match="uncensored"):
        reference_interval(np.exp(rng.normal(0, 0.5, 60)), censored=np.arange(60) < 3, lod=0.2)


def test_dixon_rule_removes_an_isolated_extreme_only() -> None:
    from transforms.reference import dixon_outliers

    x = np.array([1.0, 1.05, 1.1, 1.2, 1.25, 1.3, 9.0])
    assert np.flatnonzero(dixon_outliers(x)).tolist() == [6]
    assert not dixon_outliers(np.linspace(1, 2, 20)).any()


def _msd_group(
    analyte: str, values: np.ndarray, sex: np.ndarray, age: np.ndarray, log: np.ndarray | None = None
) -> pl.DataFrame:
    """Healthy rows of one MSD serum marker in pg/mL, measured (nothing censored), as build_reference takes them
    (``log``: the log values when known exactly, else the log of ``values``)."""
    n = values.size
    return pl.DataFrame(
        {
            "sample_id": [f"S{i}" for i in range(n)],
            "analyte": analyte,
            "uniprot": "X",
            "platform": "msd",
            "panel": "MSD",
            "matrix": "serum",
            "unit": "pg/mL",
            "value": values,
            "log_value": np.log(values) if log is None else log,
            "sex": sex,
            "age": age,
            "censoring": None,
            "limit_value": None,
            "lod": None,
        },
        schema_overrides={"censoring": pl.String, "limit_value": pl.Float64, "lod": pl.Float64},
    )


def test_sex_and_age_partitions_follow_harris_boyd() -> None:
    from transforms.reference import build_reference, harris_boyd

    rng = np.random.default_rng(4)
    n = 600
    sex = np.where(np.arange(n) % 2 == 0, "F", "M")
    age = rng.uniform(20, 70, n)
    logs = {"DIFF": rng.normal(0, 0.5, n) + np.where(sex == "M", 0.6, 0.0), "SAME": rng.normal(0, 0.5, n)}
    frames = [_msd_group(analyte, np.exp(lv), sex, age, lv) for analyte, lv in logs.items()]
    build = build_reference(pl.concat(frames), age_bands=[45.0])
    groups = {(r["analyte"], r["sex"], r["age_min"], r["age_max"]) for r in build.intervals.iter_rows(named=True)}
    assert ("DIFF", "F", None, None) in groups and ("DIFF", "M", None, None) in groups
    assert ("SAME", "F", None, None) not in groups and ("SAME", "all", None, None) in groups
    assert not any(g[2] is not None or g[3] is not None for g in groups)  # age has no planted effect
    split, z, z_star = harris_boyd(rng.normal(0, 1, 100), rng.normal(0, 1, 100))
    assert not split and z < z_star


@pytest.mark.slow
def test_order_statistic_cis_cover_the_true_percentile_about_90_percent_of_the_time() -> None:
    """Coverage simulation: 1,000 seeded log-normal samples of n = 120."""
    rng = np.random.default_rng(120)
    true_low, true_high = np.exp(-1.959963984540054 * 0.5), np.exp(1.959963984540054 * 0.5)
    hits_low = hits_high = 0
    for _ in range(1000):
        ri = reference_interval(np.exp(rng.normal(0, 0.5, 120)), outliers=None, method="nonparametric")
        hits_low += ri.lower_ci_low <= true_low <= ri.lower_ci_high
        hits_high += ri.upper_ci_low <= true_high <= ri.upper_ci_high
    # the exact coverage of the (1st, 7th) order statistics at n = 120: P(1 <= B <= 6), B ~ Bin(120, 0.025)
    exact = float(stats.binom.cdf(6, 120, 0.025) - stats.binom.cdf(0, 120, 0.025))
    assert 0.90 <= exact <= 0.921  # 92.05 %: exact order-statistic CIs are never below nominal
    se = np.sqrt(exact * (1 - exact) / 1000)
    assert abs(hits_low / 1000 - exact) <= 3 * se and abs(hits_high / 1000 - exact) <= 3 * se


def messy_groups(seed: int) -> pl.DataFrame:
    """Healthy rows of 40 groups shaped like real ones: sizes from 30 to 700, NPX and concentrations,
    plate-wise LODs with censored values (some without a number), above-ULOQ values, planted outliers,
    sex and age effects, missing sex or age, and one measured value without a number."""
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(40):
        n = int(rng.choice([30, 60, 130, 300, 700])) if a != 21 else 300
        unit = "NPX" if a % 3 == 0 else "pg/mL"
        sex = rng.choice(np.array(["F", "M", None], dtype=object), n, p=[0.48, 0.48, 0.04])
        age = np.where(rng.random(n) < 0.05, np.nan, rng.uniform(18, 80, n))
        shift = (a % 5 == 0) * 0.8 * (sex == "M") + (a % 7 == 0) * 0.03 * np.nan_to_num(age, nan=45.0)
        lv = rng.normal(1, 0.6 + 0.5 * (a % 11 == 0) * (sex == "F"), n) + shift
        lv[rng.random(n) < 0.02] += 4
        val = lv if unit == "NPX" else np.exp(lv)
        plate_lod = rng.choice([0.5, 0.8, 1.2], n) if a % 2 else np.full(n, np.nan)
        if a == 21:  # a marker nearly all below its LOD, as many cytokines are in healthy people
            plate_lod = np.full(n, 9.0)
        cens = np.where(~np.isnan(plate_lod) & (val < plate_lod), "below_lod", None)
        if a % 4 == 1:
            cens = np.where(val > np.quantile(val, 0.99), "above_uloq", cens)
        v = np.where(cens == "below_lod", np.where(rng.random(n) < 0.5, np.nan, val), val)
        if a == 13:
            v[3], cens[3] = np.nan, None
        with np.errstate(invalid="ignore", divide="ignore"):
            lvv = v if unit == "NPX" else np.log(v)
        for i in range(n):
            rows.append(
                {
                    "analyte": f"A{a:02d}",
                    "uniprot": "P00000",
                    "platform": "msd",
                    "panel": None,
                    "matrix": "serum" if a % 9 else "plasma",
                    "unit": unit,
                    "sample_id": f"S{i:05d}",
                    "value": None if np.isnan(v[i]) else float(v[i]),
                    "log_value": None if np.isnan(lvv[i]) else float(lvv[i]),
                    "censoring": cens[i],
                    "limit_value": float(plate_lod[i]) if cens[i] == "below_lod" else None,
                    "lod": None if np.isnan(plate_lod[i]) else float(plate_lod[i]),
                    "sex": sex[i],
                    "age": None if np.isnan(age[i]) else float(age[i]),
                }
            )
    return pl.DataFrame(rows, infer_schema_length=None)


@pytest.mark.parametrize(("seed", "bands", "k"), [(7, [45.0], 5), (8, [30.0, 60.0], 10)])
def test_the_vectorised_build_gives_what_reference_interval_gives_group_by_group(seed, bands, k) -> None:
    """Oracle: every published group rebuilt alone with reference_interval and quantile_grid (which the R
    golden tests pin), and every partition decision re-taken with harris_boyd."""
    from itertools import pairwise

    from transforms import schema
    from transforms.reference import _group_arrays, build_reference, harris_boyd

    frame = messy_groups(seed)
    build = build_reference(frame, age_bands=bands, k_privacy=k)
    assert build.intervals.height >= 40 and (build.intervals["sex"] != "all").any()
    assert build.intervals["age_min"].is_not_null().any() and (build.intervals["n_below_lod"] > 0).any()
    assert build.intervals["upper_limit_censored"].any() and build.intervals["median_censored"].any()

    def rows_of(g: dict) -> pl.DataFrame:
        cond = schema.same_group(g, schema.MARKER_KEYS)
        if g["sex"] != "all":
            cond = cond & (pl.col("sex") == g["sex"])
        if g["age_min"] is not None:
            cond = cond & (pl.col("age") >= g["age_min"])
        if g["age_max"] is not None:
            cond = cond & (pl.col("age") < g["age_max"])
        return frame.filter(cond).sort("sample_id")

    for g in build.intervals.iter_rows(named=True):
        group = rows_of(g)
        values, cens, logv, lod = _group_arrays(group)
        method = "nonparametric" if group.height >= 120 else "auto"
        ri = reference_interval(values, censored=cens, lod=lod, log_scale=logv, method=method)
        for field_name in (
            "n",
            "n_below_lod",
            "n_outliers_excluded",
            "lower_limit_censored",
            "upper_limit_censored",
            "median_censored",
        ):
            assert g[field_name] == getattr(ri, field_name), (g["analyte"], field_name)
        if method == "nonparametric":
            assert g["method"] == "nonparametric"
            for field_name in (
                "lower_limit",
                "upper_limit",
                "lower_ci_low",
                "lower_ci_high",
                "upper_ci_low",
                "upper_ci_high",
                "median",
                "lod",
            ):
                want = getattr(ri, field_name)
                assert (g[field_name] is None and want is None) or g[field_name] == pytest.approx(
                    want, rel=1e-12, abs=1e-12
                ), (g["analyte"], field_name)
            keep = np.ones(values.size, dtype=bool)
            keep[ri.excluded_index] = False
            want_grid = quantile_grid(values[keep], censored=cens[keep], lod=lod, k=k)
            got_grid = build.quantiles.filter(schema.same_group(g)).sort("p")
            assert got_grid["p"].to_list() == want_grid["p"].to_list()
            assert np.allclose(
                got_grid["value"].to_numpy().astype(float),
                want_grid["value"].to_numpy().astype(float),
                rtol=1e-12,
                equal_nan=True,
            )
            assert got_grid["censored"].to_list() == want_grid["censored"].to_list()

    # partitions: a sex or age split is published exactly where Harris-Boyd says so and each part is big enough
    published_all = build.intervals.filter(
        (pl.col("sex") == "all") & pl.col("age_min").is_null() & pl.col("age_max").is_null()
    )

    def measured(part: pl.DataFrame) -> np.ndarray:
        return part.filter(pl.col("censoring").is_null() & pl.col("log_value").is_finite())["log_value"].to_numpy()

    for g in published_all.iter_rows(named=True):
        group = rows_of(g)
        women, men = group.filter(pl.col("sex") == "F"), group.filter(pl.col("sex") == "M")
        split = harris_boyd(measured(women), measured(men))[0] and min(women.height, men.height) >= 40
        sexes = set(build.intervals.filter(pl.col("analyte") == g["analyte"], pl.col("matrix") == g["matrix"])["sex"])
        attempted = split  # a part may still be skipped for its own n; then it is in `skipped`
        skipped = set(build.skipped.filter(pl.col("analyte") == g["analyte"])["sex"])
        assert (bool({"F", "M"} & (sexes | skipped))) == attempted, g["analyte"]
        edges = [None, *bands, None]
        parts = [
            group.filter(
                (pl.col("age") >= lo if lo is not None else pl.lit(True))
                & (pl.col("age") < hi if hi is not None else pl.lit(True))
            )
            for lo, hi in pairwise(edges)
        ]
        differ = any(harris_boyd(measured(a), measured(b))[0] for a, b in pairwise(parts))
        banded = differ and min(p.height for p in parts) >= 40
        has_bands = build.intervals.filter(pl.col("analyte") == g["analyte"], pl.col("age_min").is_not_null()).height
        skipped_bands = build.skipped.filter(pl.col("analyte") == g["analyte"], pl.col("age_min").is_not_null()).height
        assert bool(has_bands or skipped_bands) == banded, g["analyte"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=30), min_size=1, max_size=8),
    st.floats(0.0, 1.0),
)
def test_type6_for_many_groups_equals_type6_for_each(groups: list[list[float]], p: float) -> None:
    from transforms.reference import _type6_many

    sorted_groups = [np.sort(np.array(g, dtype=float)) for g in groups]
    s = np.concatenate(sorted_groups) if any(len(g) for g in groups) else np.array([], dtype=float)
    n = np.array([len(g) for g in groups])
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    got = _type6_many(s, start, n, np.float64(p))
    for i, g in enumerate(sorted_groups):
        if g.size == 0:
            assert np.isnan(got[i])
        else:
            assert got[i] == pytest.approx(quantile_type6(g, p)[0], rel=1e-12, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 5000), min_size=1, max_size=40),
    st.sampled_from([0.01, 0.025, 0.05, 0.5, 0.95, 0.975, 0.99]),
    st.sampled_from([0.80, 0.90, 0.95, 0.99]),
)
def test_ci_ranks_for_many_sizes_equal_ci_ranks_for_each(sizes: list[int], p: float, ci: float) -> None:
    from transforms.reference import _ci_ranks_many

    lo, hi = _ci_ranks_many(np.array(sizes), p, ci)
    for n, a, b in zip(sizes, lo, hi, strict=True):
        want = ci_ranks(n, p, ci)
        assert (int(a), int(b)) == (want[0] or 0, want[1] or 0), n


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e7, 1e7),  # where the group sits: a large mean must not cost precision
            st.lists(st.tuples(st.floats(-3, 3), st.integers(0, 2), st.booleans()), min_size=1, max_size=25),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_one_pass_moments_equal_numpy_per_part(groups) -> None:
    """Counts, means and SDs of the measured values of each (group, part), against numpy's two-pass ones."""
    from transforms.reference import _Moments

    logs, parts, measured, gid = [], [], [], []
    for g, (centre, rows) in enumerate(groups):
        rows = sorted(rows)  # the sorted layout: values rise within a group
        logs += [centre + x if m else -np.inf for x, _, m in rows]
        parts += [part for _, part, _ in rows]
        measured += [m for _, _, m in rows]
        gid += [g] * len(rows)
    log, part, mask, gids = np.array(logs), np.array(parts), np.array(measured), np.array(gid)
    start = np.flatnonzero(np.r_[True, gids[1:] != gids[:-1]])
    n, mean, sd = _Moments.of(start, log, mask).stats(gids * 3 + part, 3)
    for g in range(len(groups)):
        for j in range(3):
            x = log[(gids == g) & (part == j) & mask]
            assert n[g * 3 + j] == x.size
            if x.size:
                assert mean[g * 3 + j] == pytest.approx(x.mean(), rel=1e-12, abs=1e-9)
            if x.size > 1:
                assert sd[g * 3 + j] == pytest.approx(x.std(ddof=1), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("varying", [["analyte"], ["panel"], ["analyte", "panel"], []])
def test_groups_are_the_key_tuples_whichever_keys_vary(varying: list[str]) -> None:
    """Only varying key columns are hashed: a key that is null in some rows and set in others, or a key
    other than the analyte, must still split the groups exactly as the full key tuple does."""
    from transforms import schema
    from transforms.reference import build_reference

    rng = np.random.default_rng(3)
    n = 130 * 4
    code = np.arange(n) % 4
    frame = pl.DataFrame(
        {
            "analyte": [f"A{c % 2}" if "analyte" in varying else "A" for c in code],
            "uniprot": "P1",
            "platform": "olink",
            "panel": [(None if c < 2 else "p2") if "panel" in varying else None for c in code],
            "matrix": "serum",
            "unit": "NPX",
            "sample_id": [f"S{i:04d}" for i in range(n)],
            "value": rng.normal(3, 1, n) + code,
            "censoring": None,
            "limit_value": None,
            "lod": None,
        },
        schema_overrides={"censoring": pl.String, "limit_value": pl.Float64, "lod": pl.Float64, "panel": pl.String},
    ).with_columns(log_value=pl.col("value"))
    build = build_reference(frame)
    want = frame.group_by(schema.MARKER_KEYS).len().sort(schema.MARKER_KEYS, nulls_last=False)
    got = build.intervals.select(*schema.MARKER_KEYS, len=pl.col("n") + pl.col("n_outliers_excluded"))
    assert (
        got.sort(schema.MARKER_KEYS, nulls_last=False).to_dicts()
        == want.with_columns(pl.col("len").cast(pl.Int64)).to_dicts()
    )


def test_a_small_group_whose_values_are_one_number_is_skipped_with_its_reason_not_fatal() -> None:
    """A group of 50 with one value repeated (a fill value, a reporting floor), or of 75 whose few other values
    the outlier rule excluded, made Box-Cox raise "Data must not be constant", and the whole release failed.
    Such groups are now skipped with a reason."""
    from transforms.reference import build_reference

    rng = np.random.default_rng(11)

    def group(analyte: str, values: np.ndarray) -> pl.DataFrame:
        return _msd_group(analyte, values, rng.choice(["F", "M"], values.size), rng.uniform(20, 70, values.size))

    ties = np.r_[np.full(70, 0.5), np.full(5, 0.7)]  # the 0.7s lie outside Tukey's fences of a zero IQR
    frame = pl.concat(
        [
            group("CONST", np.full(50, 2.0)),
            group("TIES", ties),
            group("FINE", np.exp(rng.normal(0, 0.5, 60))),
        ]
    )
    build = build_reference(frame)
    assert build.intervals.filter(pl.col("sex") == "all")["analyte"].to_list() == ["FINE"]
    why = dict(zip(build.skipped["analyte"], build.skipped["why"], strict=True))
    assert why["CONST"].startswith("n = 50: every value is 2: a small-sample method needs values that vary")
    assert why["TIES"].startswith("n = 75: every value is 0.5: ")
