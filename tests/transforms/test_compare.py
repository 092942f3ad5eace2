from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tests.demo_files import read_demo
from transforms.compare import (
    add_q_values,
    adjusted_shift,
    cliffs_delta,
    compare_cohorts,
    covariate_block,
    hodges_lehmann,
    order_statistics,
    rank_trend,
    shift_test,
    wilson,
)
from transforms.demo import EARLY_SHIFT_SD, SEVERITY_SLOPE_SD, generate_demo
from transforms.normalise import dictionary_lookup, normalise
from transforms.reference import build_reference
from warehouse.lookups import read_analyte_dictionary


def test_wilson_interval_matches_the_closed_form_example() -> None:
    lo, hi = wilson(5, 20)
    assert (round(lo, 4), round(hi, 4)) == (0.1119, 0.4687)  # Newcombe (1998) method 3, worked by hand
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12)


def test_hodges_lehmann_and_cliffs_delta_against_brute_force() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(1, 1, 40), rng.normal(0, 1, 50)
    diffs = np.subtract.outer(x, y).ravel()
    est, lo, hi = hodges_lehmann(x, y)
    assert est == pytest.approx(np.median(diffs)) and lo < est < hi
    brute = (np.sum(x[:, None] > y[None, :]) - np.sum(x[:, None] < y[None, :])) / (x.size * y.size)
    assert cliffs_delta(x, y) == pytest.approx(brute)
    # CI: the order statistics of the differences at the Mann-Whitney critical rank
    k = int(np.floor(40 * 50 / 2 - stats.norm.ppf(0.975) * np.sqrt(40 * 50 * 91 / 12)))
    assert (lo, hi) == (np.sort(diffs)[k], np.sort(diffs)[diffs.size - 1 - k])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=60),
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=60),
    st.integers(0, 3),
    st.integers(1, 50),
)
def test_every_order_statistic_of_the_differences_is_selected_exactly(
    x: list[float], y: list[float], digits: int, enumerate_at: int
):
    xs, ys = np.sort(np.round(x, digits)), np.sort(np.round(y, digits))  # rounding makes ties, as lab data has
    diffs = np.sort(np.subtract.outer(xs, ys).ravel())
    for k in {0, diffs.size // 3, diffs.size // 2, diffs.size - 1}:
        assert order_statistics(xs, ys, [k], enumerate_at=enumerate_at) == [diffs[k]]  # small: halving runs
    if diffs.size > 1:
        mid = [(diffs.size - 1) // 2, diffs.size // 2]
        assert order_statistics(xs, ys, mid, enumerate_at=enumerate_at) == [diffs[mid[0]], diffs[mid[1]]]
    # searches that start from the counts of earlier ones (as hodges_lehmann's three do) select the same
    probes: list = []
    for k in (diffs.size // 2, diffs.size // 5, diffs.size - 1 - diffs.size // 5, 0, diffs.size - 1):
        assert order_statistics(xs, ys, [k], enumerate_at=enumerate_at, probes=probes) == [diffs[k]]
    for pair in ([diffs.size // 3, diffs.size // 3 + 1], [(diffs.size - 1) // 2, diffs.size // 2]):
        if pair[1] < diffs.size:
            got = order_statistics(xs, ys, pair, enumerate_at=enumerate_at, probes=probes)
            assert got == [diffs[pair[0]], diffs[pair[1]]]


def test_neighbouring_ranks_across_a_block_of_tied_differences_are_both_exact() -> None:
    """Values with one decimal tie many differences: the search stops at a tied block only when every wanted
    rank is inside it (here rank 630 is below the block that holds rank 631)."""
    xs = np.array([-2.3, -1.3, -1.2, -1.0, -0.9, -0.7, -0.7, -0.7, -0.7, -0.6, -0.5, -0.5, -0.5, -0.3, -0.2, -0.2])
    xs = np.r_[xs, [-0.2, -0.1, 0.0, 0.1, 0.1, 0.2, 0.2, 0.4, 0.4, 0.4, 0.4, 0.5, 0.6, 0.9, 0.9, 1.0, 1.3, 1.4]]
    ys = np.array([-1.3, -1.3, -1.2, -1.2, -1.2, -0.7, -0.7, -0.4, -0.3, -0.1, -0.0, 0.3, 0.4, 0.4, 0.4, 0.7, 0.7])
    ys = np.r_[ys, [0.8, 0.8, 1.3, 1.3, 1.5, 1.5, 1.5, 1.8, 2.0]]
    diffs = np.sort(np.subtract.outer(xs, ys).ravel())
    assert diffs[630] < diffs[631]
    for enumerate_at in (1, 2, 8):
        assert order_statistics(xs, ys, [630, 631], enumerate_at=enumerate_at) == [diffs[630], diffs[631]]


def test_hodges_lehmann_is_exact_for_groups_of_millions_of_pairs() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.lognormal(0.3, 0.8, 1500), np.round(rng.lognormal(0, 0.8, 4000), 2)  # 6 M pairs, with ties
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    k = int(np.floor(diffs.size / 2 - stats.norm.ppf(0.975) * np.sqrt(diffs.size * (1500 + 4000 + 1) / 12)))
    est, lo, hi = hodges_lehmann(x, y)
    assert (lo, hi) == (diffs[k], diffs[diffs.size - 1 - k])
    assert est == (diffs[(diffs.size - 1) // 2] + diffs[diffs.size // 2]) / 2


def test_rank_trend_finds_an_adjusted_trend_and_not_a_confounded_one() -> None:
    rng = np.random.default_rng(3)
    n = 200
    age = rng.uniform(20, 70, n)
    severity = rng.uniform(0, 100, n)
    male = (rng.random(n) < 0.5).astype(float)
    y = 0.02 * severity + 0.05 * age + rng.normal(0, 1, n)
    assert rank_trend(y, severity, age, male)[1] < 1e-6
    null = 0.05 * age + rng.normal(0, 1, n)
    assert rank_trend(null, severity, age, male)[1] > 0.01


def test_benjamini_hochberg_q_values() -> None:
    frame = pl.DataFrame({"cohort": ["patient"] * 4, "platform": ["msd"] * 4, "p": [0.01, 0.04, 0.03, 0.5]})
    q = add_q_values(frame, "p", "q")["q"].to_list()
    assert q == pytest.approx([0.04, 0.0533333, 0.0533333, 0.5], rel=1e-5)


@pytest.fixture(scope="module")
def demo_comparison() -> pl.DataFrame:
    demo = generate_demo(seed=2026)
    raw, samples = read_demo(demo)
    norm, _ = normalise(raw, samples, dictionary_lookup(read_analyte_dictionary()[0]))
    wide = norm.join(
        samples.select("sample_id", "cohort", "matrix", "sex", "age", "severity", "illness_duration_years"),
        on="sample_id",
    )
    healthy, patients = wide.filter(pl.col("cohort") == "healthy"), wide.filter(pl.col("cohort") == "patient")
    build = build_reference(healthy)
    return compare_cohorts(patients, healthy, build.intervals)


def test_planted_effects_are_significant_after_fdr_and_unplanted_mostly_not(demo_comparison) -> None:
    all_patients = demo_comparison.filter((pl.col("cohort") == "patient") & (pl.col("matrix") == "serum"))
    planted = all_patients.filter(pl.col("analyte").is_in(list(SEVERITY_SLOPE_SD)))
    assert planted.height == 6  # IL6, TNF, IFNG on both platforms
    assert (planted["q_severity"] < 0.05).all() and (planted["severity_slope_log_per_100"] > 0).all()
    others = all_patients.filter(~pl.col("analyte").is_in(list(SEVERITY_SLOPE_SD)))
    assert (others["q_severity"] < 0.05).mean() <= 0.10
    serum = demo_comparison.filter(pl.col("matrix") == "serum")
    early = serum.filter((pl.col("cohort") == "patient_early") & pl.col("analyte").is_in(list(EARLY_SHIFT_SD)))
    assert early.height >= 1 and (early["q_shift"] < 0.05).all() and (early["hl_shift_log"] > 0).all()
    long = serum.filter((pl.col("cohort") == "patient_long") & pl.col("analyte").is_in(list(EARLY_SHIFT_SD)))
    assert (long["q_shift"] > 0.05).all()  # the early-only effect is absent in long-standing illness


def test_comparison_rows_describe_groups_never_people(demo_comparison) -> None:
    assert "sample_id" not in demo_comparison.columns and "subject_key" not in demo_comparison.columns
    assert (demo_comparison["n"] >= 3).all()
    assert demo_comparison["median_percentile"].is_between(0, 100).all()


def test_the_release_report_plots_everyones_groups_first_up_to_its_limit() -> None:
    from warehouse.report import render_release_report

    demo = generate_demo(seed=2026)
    raw, samples = read_demo(demo)
    norm, _ = normalise(raw, samples, dictionary_lookup(read_analyte_dictionary()[0]))
    wide = norm.join(samples.select("sample_id", "cohort", "matrix", "sex", "age"), on="sample_id")
    build = build_reference(wide.filter(pl.col("cohort") == "healthy"))
    everyone = (pl.col("sex") == "all") & pl.col("age_min").is_null()
    n_all = build.intervals.filter(everyone).height
    assert build.intervals.height > n_all  # the demo has partitioned groups too
    full = render_release_report("v", build.intervals, build.quantiles, None)
    assert full.count("<svg class='plot'") == build.intervals.height and "Every group has a plot" in full
    capped = render_release_report("v", build.intervals, build.quantiles, None, max_plots=n_all)
    assert capped.count("<svg class='plot'") == n_all
    assert f"Plots are drawn for {n_all} of the {build.intervals.height} groups" in capped
    assert capped.count("<section>") == build.intervals.height  # every group keeps its table
    for section in capped.split("<section>")[1:]:  # the plotted ones are exactly everyone's groups
        assert ("<svg class='plot'" in section) == ("sex=all · age –<" in section), section[:120]


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 60), st.integers(0, 2**31 - 1), st.booleans())
def test_adjusted_shift_equals_the_partial_correlation_test(n: int, seed: int, with_text: bool) -> None:
    """Oracle (Frisch-Waugh-Lovell): the t of the cohort term in OLS of rank(y) on cohort + covariates is the
    partial correlation of rank(y) and cohort given the covariates, t = r sqrt(dof / (1 - r^2))."""
    rng = np.random.default_rng(seed)
    patient = np.r_[np.ones(n // 2), np.zeros(n - n // 2)]
    minutes = rng.uniform(20, 240, n)
    y = 0.4 * patient + 0.01 * minutes + rng.normal(0, 1, n)
    y[rng.random(n) < 0.1] = -np.inf  # censored values rank together at the bottom
    frame = pl.DataFrame({"osi_time_to_centrifugation": minutes.round(0).astype(str)})
    if with_text:
        frame = frame.with_columns(osi_preparation_temperature=pl.Series(rng.choice(["4C", "RT"], n)))
    covariates = frame.columns
    block = covariate_block(frame, covariates)
    t, p = adjusted_shift(y, patient, block)
    others = np.column_stack([np.ones(n), block])
    if np.linalg.matrix_rank(np.column_stack([others, patient])) < others.shape[1] + 1:
        return  # the cohort is a combination of the covariates: no test (nan), nothing to compare
    ranks = stats.rankdata(y)

    def residual(v: np.ndarray) -> np.ndarray:
        beta, *_ = np.linalg.lstsq(others, v, rcond=None)
        return v - others @ beta

    r = stats.pearsonr(residual(ranks), residual(patient))[0]
    dof = n - np.linalg.matrix_rank(others) - 1
    expected_t = r * np.sqrt(dof / (1 - r**2))
    assert t == pytest.approx(expected_t, rel=1e-7, abs=1e-9)
    assert p == pytest.approx(2 * stats.t.sf(abs(expected_t), dof), rel=1e-6, abs=1e-12)


def _handling_groups(effect: float, seed: int = 4) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Healthy people processed fast, patients slowly; slow processing raises the value by itself."""
    rng = np.random.default_rng(seed)
    rows = []
    for cohort, n, minutes in (("healthy", 240, (20, 150)), ("patient", 80, (90, 240))):
        t = rng.uniform(*minutes, n)
        v = 0.02 * t + (effect if cohort == "patient" else 0.0) + rng.normal(0, 0.5, n)
        for i in range(n):
            rows.append(
                {
                    "sample_id": f"{cohort}{i}",
                    "analyte": "IL6",
                    "uniprot": "P05231",
                    "platform": "olink_explore_ht",
                    "panel": "Explore_HT",
                    "matrix": "serum",
                    "unit": "NPX",
                    "cohort": cohort,
                    "sex": "F" if i % 2 else "M",
                    "age": 30.0 + i % 30,
                    "severity": 50.0 if cohort == "patient" else None,
                    "illness_duration_years": 5.0 if cohort == "patient" else None,
                    "log_value": float(v[i]),
                    "value": float(v[i]),
                    "censoring": None,
                    "limit_value": None,
                    "lod": None,
                    "osi_time_to_centrifugation": f"{t[i]:.0f}",
                }
            )
    frame = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col("censoring").cast(pl.String), pl.col("limit_value", "lod", "severity").cast(pl.Float64)
    )
    healthy, patients = frame.filter(pl.col("cohort") == "healthy"), frame.filter(pl.col("cohort") == "patient")
    build = build_reference(healthy.drop("osi_time_to_centrifugation"))
    return patients, healthy, build.intervals


def test_the_adjusted_shift_removes_a_handling_confound_and_keeps_a_true_shift() -> None:
    patients, healthy, intervals = _handling_groups(effect=0.0)
    plain = compare_cohorts(patients, healthy, intervals).filter(pl.col("cohort") == "patient").row(0, named=True)
    adjusted = compare_cohorts(patients, healthy, intervals, covariates=["osi_time_to_centrifugation"])
    row = adjusted.filter(pl.col("cohort") == "patient").row(0, named=True)
    assert plain["p_shift"] < 1e-6 and plain["p_shift_adjusted"] is None  # slow processing alone looks like disease
    assert row["p_shift"] == plain["p_shift"] and row["p_shift_adjusted"] > 0.01
    assert row["n_adjusted"] == 320 and row["adjusted_for"] == "osi_time_to_centrifugation"
    patients, healthy, intervals = _handling_groups(effect=0.8)
    row = compare_cohorts(patients, healthy, intervals, covariates=["osi_time_to_centrifugation"]).row(0, named=True)
    assert row["p_shift_adjusted"] < 1e-4


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(-30, 30, allow_nan=False), min_size=9, max_size=80),
    st.lists(st.floats(-30, 30, allow_nan=False), min_size=9, max_size=80),
    st.integers(0, 2),
    st.floats(0, 0.5),
)
def test_the_shift_test_equals_scipys_mann_whitney_to_the_last_bit(
    x: list[float], y: list[float], digits: int, censored: float
) -> None:
    """Oracle: scipy.stats.mannwhitneyu (two-sided, continuity, tie correction); ties from rounding and
    censored values at -inf / inf, as the comparisons pass them."""
    xs, ys = np.round(np.array(x), digits), np.round(np.array(y), digits)
    for v in (xs, ys):
        v[: int(v.size * censored)] = -np.inf
        v[-int(v.size * censored / 2) or v.size :] = np.inf
    test = stats.mannwhitneyu(xs, ys, alternative="two-sided")
    delta, p = shift_test(xs, ys)
    assert delta == float(2 * test.statistic / (xs.size * ys.size) - 1)
    assert p == float(test.pvalue) or (math.isnan(p) and math.isnan(float(test.pvalue)))


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e3, 1e3) | st.sampled_from([np.inf, -np.inf, np.nan, 0.0]), st.integers(1, 10_000))
def test_the_t_tail_equals_scipys_to_the_last_bit(t: float, dof: int) -> None:
    from transforms.compare import _t_sf

    expected = stats.t.sf(t, dof)
    assert _t_sf(t, dof) == expected or (np.isnan(expected) and np.isnan(_t_sf(t, dof)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([-np.inf, np.inf, np.nan, 0.0, -0.0, 1.5, 2.0]) | st.floats(-5, 5), max_size=40))
def test_average_ranks_equal_scipys(values: list[float]) -> None:
    from transforms.compare import average_ranks

    y = np.array(values, dtype=np.float64)
    np.testing.assert_array_equal(average_ranks(y), stats.rankdata(y))


GROUP_KEYS = ["analyte", "uniprot", "platform", "panel", "matrix", "unit"]


def _some_missing(rng: np.random.Generator, values: np.ndarray, share: float) -> list[object]:
    return [None if u < share else v.item() for u, v in zip(rng.random(values.size), values, strict=True)]


def _cohort_rows(rng: np.random.Generator, groups: list[tuple], n: int, *, patients: bool) -> pl.DataFrame:
    """Measurements of random groups (a null key on some rows, censoring, LODs, one covariate), shuffled."""
    keys = [groups[i] for i in rng.integers(0, len(groups), n)]
    frame = pl.DataFrame(
        {k: [g[j] for g in keys] for j, k in enumerate(GROUP_KEYS)}
        | {
            "log_value": rng.normal(0.3 if patients else 0.0, 1.0, n).round(2),
            "censoring": rng.choice(["below_lod", "above_uloq", None], n, p=[0.1, 0.03, 0.87]).tolist(),
            "limit_value": [None if u else 1.5 for u in rng.random(n) < 0.5],
            "sex": rng.choice(["F", "M"], n).tolist(),  # the manifest holds back a sample without one
            "age": _some_missing(rng, rng.integers(20, 70, n).astype(float), 0.05),
            "severity": _some_missing(rng, rng.integers(0, 100, n).astype(float), 0.1),
            "illness_duration_years": _some_missing(rng, rng.gamma(2, 2, n), 0.1),
            "osi": _some_missing(rng, rng.choice(["a", "b", "c"], n), 0.1),
        },
        schema_overrides={"limit_value": pl.Float64},
    )
    return frame.with_columns(pl.when(rng.random(n) < 0.02).then(None).otherwise(pl.col("uniprot")).alias("uniprot"))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.booleans())
def test_comparing_every_group_at_once_equals_comparing_each_group_alone(
    seed: int, n_groups: int, adjusted: bool
) -> None:
    """compare_cohorts splits a part's rows by group once (a join and a sort); the oracle compares each
    group's rows alone, filtered by equality on the keys. Same rows, same order within a group, same figures
    to the last bit, whatever the groups' order in the rows and in the intervals."""
    rng = np.random.default_rng(seed)
    groups = [
        (f"A{i}", f"P{i}", "olink" if i % 2 else "msd", "panel", "plasma", "NPX" if i % 2 else "pg/mL")
        for i in range(n_groups)
    ]
    # per group about 20-60 healthy and 10-40 patients: at 10 patients for 6 groups no cohort reached 3
    healthy = _cohort_rows(rng, groups, int(rng.integers(20, 60)) * n_groups, patients=False)
    patients = _cohort_rows(rng, groups, int(rng.integers(10, 40)) * n_groups, patients=True)
    listed = [groups[i] for i in rng.permutation(n_groups)][: max(1, n_groups - 1)]  # one group may be missing
    intervals = pl.DataFrame(
        [dict(zip(GROUP_KEYS, g, strict=True)) for g in listed],
        schema={k: pl.String for k in GROUP_KEYS},
    ).with_columns(
        sex=pl.lit("all"),
        age_min=pl.lit(None, pl.Float64),
        age_max=pl.lit(None, pl.Float64),
        lower_limit=pl.Series([-1.6 if g[5] == "NPX" else math.exp(-1.6) for g in listed]),
        lower_limit_censored=pl.Series([bool(b) for b in rng.random(len(listed)) < 0.3]),
        upper_limit=pl.Series([1.7 if g[5] == "NPX" else math.exp(1.7) for g in listed]),
    )
    covariates = ["osi"] if adjusted else None
    together = compare_cohorts(patients, healthy, intervals, q_values=False, covariates=covariates)
    alone = []
    for g in intervals.iter_rows(named=True):
        same = pl.all_horizontal(pl.col(k) == g[k] for k in GROUP_KEYS)
        alone.append(
            compare_cohorts(
                patients.filter(same),
                healthy.filter(same),
                intervals.filter(same),
                q_values=False,
                covariates=covariates,
            )
        )
    from polars.testing import assert_frame_equal

    assert together.height > 0
    assert_frame_equal(together, pl.concat(alone), check_exact=True)


def _per_comparison(patients: pl.DataFrame, healthy: pl.DataFrame, intervals: pl.DataFrame) -> dict[tuple, dict]:
    """Oracle: each comparison alone, by the per-comparison functions (shift_test, hodges_lehmann, wilson,
    rank_trend, np.polyfit, np.median of the percentiles), keyed by (analyte, cohort)."""
    out = {}
    for g in intervals.iter_rows(named=True):
        same = pl.all_horizontal(pl.col(k) == g[k] for k in GROUP_KEYS)
        h, p = healthy.filter(same), patients.filter(same)
        if h.height == 0 or p.height == 0:
            continue
        is_log = g["unit"] == "NPX"
        limits = pl.concat([h["limit_value"], p["limit_value"]]).drop_nulls().to_numpy()
        floor = -np.inf if not limits.size else (limits.max() if is_log else np.log(limits.max()))

        def logs(frame: pl.DataFrame, floor: float = floor) -> np.ndarray:
            v = frame["log_value"].cast(pl.Float64).to_numpy()
            below = frame["censoring"].is_in(["below_lod", "below_lloq"]).fill_null(False).to_numpy()
            above = (frame["censoring"] == "above_uloq").fill_null(False).to_numpy()
            return np.where(above, np.inf, np.where(below | (v < floor), -np.inf, v))

        hv, all_pv = logs(h), logs(p)
        duration = p["illness_duration_years"].cast(pl.Float64).to_numpy()
        lower = None if g["lower_limit_censored"] else (g["lower_limit"] if is_log else np.log(g["lower_limit"]))
        upper = g["upper_limit"] if is_log else np.log(g["upper_limit"])
        cohorts = {"patient": np.ones(p.height, bool), "patient_early": duration < 3, "patient_long": duration >= 3}
        for cohort, mask in cohorts.items():
            pv = all_pv[mask]
            if pv.size < 3:
                continue
            n, k_above = pv.size, int(np.sum(pv > upper))
            hs = np.sort(hv)
            pct = (np.searchsorted(hs, pv, side="left") + np.searchsorted(hs, pv, side="right")) / (2 * hs.size)
            finite, h_finite = pv[np.isfinite(pv)], hv[np.isfinite(hv)]
            hl = hodges_lehmann(finite, h_finite) if finite.size and h_finite.size else (np.nan,) * 3
            row = {"n": n, "n_reference": h.height, "median_percentile": float(np.median(pct) * 100)}
            row |= dict(zip(("cliffs_delta", "p_shift"), shift_test(pv, hv), strict=True))
            row |= dict(zip(("hl_shift_log", "hl_shift_ci_low", "hl_shift_ci_high"), hl, strict=True))
            row |= {"share_above": k_above / n, "share_above_ci_low": wilson(k_above, n)[0]}
            if lower is not None:
                k_below = int(np.sum(pv < lower))
                row |= {"share_below": k_below / n, "share_below_ci_high": wilson(k_below, n)[1]}
            sev = mask & p["severity"].is_not_null().to_numpy() & p["age"].is_not_null().to_numpy()
            if sev.sum() >= 10:
                y, x = all_pv[sev], p["severity"].cast(pl.Float64).to_numpy()[sev]
                male = (p["sex"] == "M").cast(pl.Float64).to_numpy()[sev]
                row["p_severity"] = rank_trend(y, x, p["age"].cast(pl.Float64).to_numpy()[sev], male)[1]
                ok = np.isfinite(y)
                if ok.sum() > 2 and np.unique(x[ok]).size > 1:  # one severity: no slope
                    row["severity_slope_log_per_100"] = float(np.polyfit(x[ok], y[ok], 1)[0] * 100)
            out[(g["analyte"], cohort)] = row
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 5), st.integers(4, 60), st.booleans())
def test_the_comparisons_as_arrays_equal_the_per_comparison_functions(
    seed: int, n_groups: int, per_group: int, nan_values: bool
) -> None:
    """compare_cohorts computes every comparison of a part at once as array operations; the oracle computes
    each alone with the functions tested above against scipy and brute force. Small groups (scipy's own
    Mann-Whitney rules), ties, censoring, NaN values and a severity that does not vary are all drawn. Every
    figure is the same to the last bit but for the OLS fits (the severity trend's p and the slope: centred
    normal equations against LAPACK's least squares), which agree to 1e-9."""
    rng = np.random.default_rng(seed)
    groups = [(f"A{i}", f"P{i}", "olink", "panel", "plasma", "NPX" if i % 2 else "pg/mL") for i in range(n_groups)]
    healthy, patients = (
        _cohort_rows(rng, groups, per_group * k * n_groups, patients=k == 1)
        .drop_nulls("uniprot")
        .with_columns(pl.col("censoring").cast(pl.String))
        for k in (2, 1)
    )
    if nan_values:  # a value that is missing but not censored: the per-comparison functions' rules
        patients = patients.with_columns(
            pl.when(pl.Series(rng.random(patients.height) < 0.05)).then(None).otherwise("log_value").alias("log_value")
        )
    design = rng.random()
    if design < 0.4:  # one severity for everyone: the trend's design does not vary
        patients = patients.with_columns(pl.col("severity").fill_null(40.0).clip(40.0, 40.0))
    elif design < 0.6:  # no severity recorded at all (a manifest without the column): it crashed the trends
        patients = patients.with_columns(pl.lit(None, pl.Float64).alias("severity"))
    intervals = pl.DataFrame([dict(zip(GROUP_KEYS, g, strict=True)) for g in groups]).with_columns(
        sex=pl.lit("all"),
        age_min=pl.lit(None, pl.Float64),
        age_max=pl.lit(None, pl.Float64),
        lower_limit=pl.Series([-1.6 if g[5] == "NPX" else math.exp(-1.6) for g in groups]),
        lower_limit_censored=pl.Series([bool(b) for b in rng.random(n_groups) < 0.3]),
        upper_limit=pl.Series([1.7 if g[5] == "NPX" else math.exp(1.7) for g in groups]),
    )
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = compare_cohorts(patients, healthy, intervals, q_values=False)
        expected = _per_comparison(patients, healthy, intervals)
    assert sorted(expected) == sorted(zip(got["analyte"], got["cohort"], strict=True))
    loose = {"p_severity", "severity_slope_log_per_100"}
    for row in got.iter_rows(named=True):
        for name, value in expected[(row["analyte"], row["cohort"])].items():
            if name == "p_severity" and math.isnan(value):
                assert row[name] is None
            elif name in loose:
                assert row[name] == pytest.approx(value, rel=1e-9, abs=0, nan_ok=True), name
            else:
                assert row[name] == value or (math.isnan(row[name]) and math.isnan(value)), name
        figures = expected[(row["analyte"], row["cohort"])]  # and no figure where the oracle has none
        assert (row["share_below"] is None) == ("share_below" not in figures)
        assert (row["severity_slope_log_per_100"] is None) == ("severity_slope_log_per_100" not in figures)
        assert (row["p_severity"] is None) == math.isnan(figures.get("p_severity", math.nan))
