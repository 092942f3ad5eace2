from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.variation import RETEST_VARIATION, first_visits, retest_variation


def visits(levels: list[list[float]], *, unit: str = "pg/mL", replicate_cv: float | None = None) -> pl.DataFrame:
    """One row per visit; ``levels[s]`` are subject s's log values."""
    rows = []
    for s, logs in enumerate(levels):
        for v, x in enumerate(logs):
            rows.append(
                {
                    "analyte": "IL6",
                    "uniprot": "P05231",
                    "platform": "msd" if unit != "NPX" else "olink",
                    "panel": "P",
                    "matrix": "serum",
                    "unit": unit,
                    "subject_key": f"k{s}",
                    "sample_id": f"{s:04d}-{v}",
                    "collection_date": date(2026, 1 + v, 1),
                    "log_value": x,
                    "value": x if unit == "NPX" else math.exp(x),
                    "censoring": None,
                    "replicate_cv": replicate_cv,
                }
            )
    return pl.DataFrame(rows)


def anova_within_sd(levels: list[list[float]]) -> float:
    """Independent oracle: the within-group mean square of a one-way ANOVA, written out by hand."""
    ss = sum(float(np.sum((np.array(g) - np.mean(g)) ** 2)) for g in levels if len(g) >= 2)
    df = sum(len(g) - 1 for g in levels if len(g) >= 2)
    return math.sqrt(ss / df)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=4),
        min_size=3,
        max_size=30,
    ).filter(lambda g: sum(len(x) >= 2 for x in g) >= 3 and any(len(set(x)) > 1 for x in g if len(x) >= 2))
)
def test_pooled_within_person_sd_matches_one_way_anova(levels: list[list[float]]) -> None:
    out = retest_variation(visits(levels), min_subjects=3)
    assert out.height == 1
    row = out.row(0, named=True)
    assert row["n_subjects"] == sum(len(g) >= 2 for g in levels)
    assert row["n_samples"] == sum(len(g) for g in levels if len(g) >= 2)
    assert math.isclose(row["sd_total_log"], anova_within_sd(levels), rel_tol=1e-9, abs_tol=1e-12)


def test_rcv_figures_by_hand() -> None:
    # two visits per subject, differences of exactly ±0.4 -> within SD = 0.4 / sqrt(2) per subject
    levels = [[0.0, 0.4 if s % 2 else -0.4] for s in range(20)]
    row = retest_variation(visits(levels, replicate_cv=0.05), min_subjects=20).row(0, named=True)
    s_total = 0.4 / math.sqrt(2)
    assert math.isclose(row["sd_total_log"], s_total, rel_tol=1e-12)
    assert math.isclose(row["rcv_log"], 1.959963984540054 * math.sqrt(2) * s_total, rel_tol=1e-9)
    assert math.isclose(row["rcv_increase_pct"], (math.exp(row["rcv_log"]) - 1) * 100, rel_tol=1e-12)
    assert math.isclose(row["rcv_decrease_pct"], (math.exp(-row["rcv_log"]) - 1) * 100, rel_tol=1e-12)
    # 5 % duplicate CV -> sd_a = sqrt(ln(1.0025)); CV_i from the remainder
    sd_a = math.sqrt(math.log(1 + 0.05**2))
    assert math.isclose(row["sd_analytical_log"], sd_a, rel_tol=1e-12)
    assert math.isclose(row["cv_analytical_pct"], 5.0, rel_tol=1e-9)
    sd_i = math.sqrt(s_total**2 - sd_a**2)
    assert math.isclose(row["sd_within_subject_log"], sd_i, rel_tol=1e-12)
    assert math.isclose(row["cv_within_subject_pct"], math.sqrt(math.exp(sd_i**2) - 1) * 100, rel_tol=1e-9)
    assert row["scale"] == "ln" and row["probability"] == 0.95


def test_npx_rcv_is_a_difference_in_npx_and_a_power_of_two() -> None:
    levels = [[5.0, 5.5 if s % 2 else 4.5] for s in range(25)]
    row = retest_variation(visits(levels, unit="NPX"), min_subjects=20, probability=0.9).row(0, named=True)
    assert row["scale"] == "NPX (log2)" and row["cv_within_subject_pct"] is None
    assert math.isclose(row["rcv_log"], 1.6448536269514722 * math.sqrt(2) * 0.5 / math.sqrt(2), rel_tol=1e-9)
    assert math.isclose(row["rcv_increase_pct"], (2 ** row["rcv_log"] - 1) * 100, rel_tol=1e-12)


def test_too_few_repeat_subjects_publish_nothing_and_censored_values_do_not_count() -> None:
    levels = [[0.0, 0.3]] * 19 + [[0.0]] * 50
    assert retest_variation(visits(levels), min_subjects=20).height == 0
    frame = visits([[0.0, 0.3]] * 26)
    censored = frame.with_columns(
        censoring=pl.when(pl.col("subject_key").is_in(["k0", "k1", "k2", "k3", "k4", "k5"]))
        .then(pl.lit("below_lod"))
        .otherwise(None)
    )
    assert retest_variation(censored, min_subjects=20).row(0, named=True)["n_subjects"] == 20
    assert retest_variation(frame.head(0), min_subjects=1).schema == pl.Schema(RETEST_VARIATION)


def test_first_visits_keep_each_subjects_earliest_sample_and_anonymous_rows() -> None:
    frame = visits([[0.0, 1.0, 2.0], [3.0]])
    later_first = frame.with_columns(
        collection_date=pl.when(pl.col("sample_id") == "0000-2").then(date(2025, 1, 1)).otherwise("collection_date")
    )
    anonymous = frame.head(1).with_columns(subject_key=pl.lit(None, pl.String), sample_id=pl.lit("anon"))
    out = first_visits(pl.concat([later_first, anonymous]))
    assert sorted(out["sample_id"]) == ["0000-2", "0001-0", "anon"]


def _first_visits_by_sorting_everything(measurements: pl.DataFrame) -> pl.DataFrame:
    """The straightforward form (before the speed work of issue 17): sort every row by date."""
    keys = ["analyte", "uniprot", "platform", "panel", "matrix", "unit"]
    anonymous = measurements.filter(pl.col("subject_key").is_null())
    known = (
        measurements.filter(pl.col("subject_key").is_not_null())
        .sort(["collection_date", "sample_id"], nulls_last=True, maintain_order=True)
        .unique(subset=["subject_key", *keys], keep="first", maintain_order=True)
    )
    return pl.concat([known, anonymous]).sort("sample_id", maintain_order=True)


def _retest_variation_over_every_marker(healthy: pl.DataFrame, min_subjects: int) -> pl.DataFrame:
    """retest_variation's figures computed over every marker, as before markers without enough repeat
    subjects were left out up front: the published rows must be the same to the last bit."""
    keys = ["analyte", "uniprot", "platform", "panel", "matrix", "unit"]
    measured = (
        healthy.filter(
            pl.col("censoring").is_null() & pl.col("log_value").is_finite() & pl.col("subject_key").is_not_null()
        )
        .select(*keys, "subject_key", "log_value", pl.col("replicate_cv").alias("rcv"))
        .sort([*keys, "subject_key", "log_value"], nulls_last=False)
    )
    per_subject = (
        measured.with_columns(
            k=pl.len().over([*keys, "subject_key"]),
            dev2=(pl.col("log_value") - pl.col("log_value").mean().over([*keys, "subject_key"])) ** 2,
        )
        .filter(pl.col("k") >= 2)
        .group_by([*keys, "subject_key"], maintain_order=True)
        .agg(pl.col("dev2").sum(), (pl.len() - 1).alias("df"))
    )
    analytical = measured.group_by(keys, maintain_order=True).agg(
        ((1 + pl.col("rcv").cast(pl.Float64) ** 2).log().mean().sqrt()).alias("sd_analytical_log")  # pg/mL: ln
    )
    return (
        per_subject.group_by(keys, maintain_order=True)
        .agg(pl.len().alias("n_subjects"), (pl.col("dev2").sum() / pl.col("df").sum()).sqrt().alias("sd_total_log"))
        .filter(pl.col("n_subjects") >= min_subjects)
        .join(analytical, on=keys, how="left", nulls_equal=True)
        .sort(keys, nulls_last=False)
    )


@st.composite
def cohorts(draw: st.DrawFn) -> pl.DataFrame:
    """Rows of several markers (one with a null panel) and people with one to three visits, some without a
    subject key, some without a date, some censored, with duplicate-well CVs; in shuffled order."""
    n_people = draw(st.integers(1, 12))
    rows = []
    for person in range(n_people):
        key = None if draw(st.integers(0, 9)) == 0 else f"k{person}"
        for visit in range(draw(st.integers(1, 3))):
            sample = f"S{person:02d}-{visit}"
            day = draw(st.one_of(st.none(), st.dates(date(2025, 1, 1), date(2025, 12, 31))))
            for analyte, panel in (("IL6", "P"), ("TNF", None), ("IL10", "P")):
                if draw(st.booleans()) and draw(st.booleans()):
                    continue  # not every marker at every visit
                rows.append(
                    {
                        "analyte": analyte,
                        "uniprot": "U" + analyte,
                        "platform": "msd",
                        "panel": panel,
                        "matrix": "serum",
                        "unit": "pg/mL",
                        "subject_key": key,
                        "sample_id": sample,
                        "collection_date": day,
                        "log_value": draw(st.floats(-3, 3, allow_nan=False)),
                        "censoring": "below_lod" if draw(st.integers(0, 7)) == 0 else None,
                        "replicate_cv": draw(st.one_of(st.none(), st.floats(0, 0.3))),
                    }
                )
    frame = pl.DataFrame(
        rows,
        schema={
            "analyte": pl.String,
            "uniprot": pl.String,
            "platform": pl.String,
            "panel": pl.String,
            "matrix": pl.String,
            "unit": pl.String,
            "subject_key": pl.String,
            "sample_id": pl.String,
            "collection_date": pl.Date,
            "log_value": pl.Float64,
            "censoring": pl.String,
            "replicate_cv": pl.Float64,
        },
    )
    return frame.sample(fraction=1.0, shuffle=True, seed=draw(st.integers(0, 2**16)))


@settings(max_examples=150, deadline=None)
@given(cohorts(), st.booleans())
def test_first_visits_equals_sorting_every_row(frame: pl.DataFrame, in_sample_order: bool) -> None:
    from polars.testing import assert_frame_equal

    if in_sample_order:  # as the pipeline hands them over
        frame = frame.sort("sample_id", "analyte")
    assert_frame_equal(first_visits(frame), _first_visits_by_sorting_everything(frame))


@settings(max_examples=150, deadline=None)
@given(cohorts(), st.integers(1, 4))
def test_retest_variation_leaving_out_thin_markers_first_publishes_the_same_rows(
    frame: pl.DataFrame, min_subjects: int
) -> None:
    from polars.testing import assert_frame_equal

    out = retest_variation(frame, min_subjects=min_subjects)
    expected = _retest_variation_over_every_marker(frame, min_subjects)
    got = out.select(*expected.columns).with_columns(pl.col("n_subjects").cast(pl.UInt32))
    assert_frame_equal(got, expected.with_columns(pl.col("n_subjects").cast(pl.UInt32)), check_exact=True)
