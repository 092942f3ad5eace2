from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tests.demo_files import read_demo
from transforms.compare import (
    add_q_values,
    cliffs_delta,
    compare_cohorts,
    hodges_lehmann,
    order_statistics,
    rank_trend,
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
    assert full.count("data:image/png;base64,") == build.intervals.height and "Every group has a plot" in full
    capped = render_release_report("v", build.intervals, build.quantiles, None, max_plots=n_all)
    assert capped.count("data:image/png;base64,") == n_all
    assert f"Plots are drawn for {n_all} of the {build.intervals.height} groups" in capped
    assert capped.count("<section>") == build.intervals.height  # every group keeps its table
    for section in capped.split("<section>")[1:]:  # the plotted ones are exactly everyone's groups
        assert ("data:image/png" in section) == ("sex=all · age –<" in section), section[:120]
