from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from tests.demo_files import read_demo
from transforms.compare import add_q_values, cliffs_delta, compare_cohorts, hodges_lehmann, rank_trend, wilson
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
