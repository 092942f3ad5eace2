"""Plate, file, normalised and release suites: every expectation fails on a breaking frame and passes on a
good one; GX and the polars masks agree; the QC report is offline."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from expectations.report import render_report
from expectations.runner import quarantine_rows, validate_with_gx
from expectations.suites import DEFAULT_THRESHOLDS, load_suite
from transforms import schema
from transforms.qc import file_statistics, plate_statistics, release_checks
from transforms.reference import build_reference


def plate_stats(**changes: float) -> pl.DataFrame:
    good = {
        "platform": ["msd"] * 3,
        "panel": ["MSD"] * 3,
        "analyte": ["IL6"] * 3,
        "plate_id": ["P1", "P2", "P3"],
        "n_controls": [2, 2, 2],
        "control_cv": [0.05, 0.06, 0.04],
        "replicate_cv": [0.05, 0.07, 0.06],
        "control_shift_abs": [0.1, 0.0, 0.2],
        "calibrator_recovery_dev": [3.0, 5.0, None],
        "below_lod_share": [0.1, 0.0, 0.2],
        "vendor_warning_share": [0.0, 0.0, 0.0],
        "source_file": ["f.csv"] * 3,
        "n_source_files": [1, 1, 1],
        "line_number": [2, 50, 99],
    }
    frame = pl.DataFrame(good)
    for column, value in changes.items():
        frame = frame.with_columns(
            pl.when(pl.col("plate_id") == "P2").then(value).otherwise(pl.col(column)).alias(column)
        )
    return frame


PLATE_BREAKERS = {
    "between(n_controls)": {"n_controls": 0},
    "between(control_cv)": {"control_cv": 0.35},
    "between(replicate_cv)": {"replicate_cv": 0.4},
    "between(control_shift_abs)": {"control_shift_abs": 3.0},
    "between(calibrator_recovery_dev)": {"calibrator_recovery_dev": 35.0},
    "between(below_lod_share)": {"below_lod_share": 0.9},
    "between(vendor_warning_share)": {"vendor_warning_share": 0.1},
    "between(n_source_files)": {"n_source_files": 2},
}


@pytest.mark.parametrize("label", PLATE_BREAKERS)
def test_each_plate_expectation_breaks_and_passes(label: str) -> None:
    suite = load_suite("plates")
    assert quarantine_rows(plate_stats(), suite).results["success"].all()
    out = quarantine_rows(plate_stats(**PLATE_BREAKERS[label]), suite)
    failed = out.results.filter(~pl.col("success"))
    assert failed["expectation"].to_list() == [f"expect_column_values_to_be_{label}"]
    action = failed["action"][0]
    assert out.failed["plate_id"].to_list() == (["P2"] if action == "quarantine" else [])


def plate_well(plate: str, sample: str, kind: str, log_value: float, censoring: str | None = None) -> dict:
    """One well of an MSD IL-6 plate, as plate_statistics reads it."""
    return {
        "platform": "msd",
        "panel": "MSD",
        "analyte": "IL6",
        "plate_id": plate,
        "sample_id": sample,
        "sample_type": kind,
        "log_value": log_value,
        "censoring": censoring,
        "unit": "pg/mL",
        "vendor_qc": None,
        "recovery_pct": None,
        "source_file": "f",
        "line_number": 2,
    }


def test_plate_statistics_see_drift_cv_and_missing_controls() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for plate, drift in (("P1", 0.0), ("P2", 0.0), ("P3", 3.0)):
        for sample, level, kind in (("C1", 3.0, "control"), ("C2", 5.0, "control"), ("S1", 1.0, "sample")):
            for well in range(2):
                noise = rng.normal(0, 0.02) + (0.5 * well if plate == "P2" and kind == "sample" else 0.0)
                rows.append(plate_well(plate, sample, kind, level + drift + noise))
    stats = plate_statistics(pl.DataFrame(rows)).sort("plate_id")
    assert stats["n_controls"].to_list() == [2, 2, 2]
    assert stats["control_shift_abs"][2] == pytest.approx(3.0, abs=0.1)
    assert stats["replicate_cv"][1] > 0.3 > stats["replicate_cv"][0]
    held = quarantine_rows(stats, load_suite("plates")).failed
    assert sorted(held["plate_id"].to_list()) == ["P2", "P3"]


def test_plate_cvs_come_from_samples_with_two_measured_wells_only() -> None:
    """Singletons, and a pair whose second well is censored, have no CV; a sample measured in two wells has."""

    rows = [
        plate_well("P1", "S1", "sample", np.log(2.0)),
        plate_well("P1", "S1", "sample", np.log(8.0)),  # the plate's one replicate pair: CV of (2, 8)
        plate_well("P1", "S2", "sample", np.log(50.0)),  # a singleton
        plate_well("P1", "S3", "sample", np.log(1.0)),
        plate_well("P1", "S3", "sample", np.log(0.1), "below_lod"),  # one measured well left
        plate_well("P1", "C1", "control", np.log(4.0)),
        plate_well("P1", "C1", "control", np.log(6.0)),
        plate_well("P2", "S1", "sample", np.log(9.0)),  # the same sample once on another plate
    ]
    stats = plate_statistics(pl.DataFrame(rows)).sort("plate_id")
    assert stats["replicate_cv"][0] == pytest.approx(np.std([2.0, 8.0], ddof=1) / 5.0)
    assert stats["control_cv"][0] == pytest.approx(np.std([4.0, 6.0], ddof=1) / 5.0)
    assert stats["replicate_cv"][1] is None and stats["n_rows"].to_list() == [7, 1]


def test_a_plate_held_in_two_loaded_files_is_counted_and_warned_about() -> None:
    """A corrected re-export kept beside the old one (run1/ and run1_corrected/) made every sample of the plate
    a pair of "replicates" without a word."""
    rows = [plate_well("P1", s, "sample", np.log(v)) for s, v in (("S1", 2.0), ("S2", 3.0))]
    rows += [
        {**plate_well("P1", s, "sample", np.log(v)), "source_file": "run1_corrected/export.csv"}
        for s, v in (("S1", 2.2), ("S2", 3.1))
    ]
    rows += [plate_well("P2", "S3", "sample", np.log(4.0))]
    stats = plate_statistics(pl.DataFrame(rows)).sort("plate_id")
    assert stats["n_source_files"].to_list() == [2, 1]
    out = quarantine_rows(stats, load_suite("plates"))
    warned = out.results.filter(pl.col("expectation") == "expect_column_values_to_be_between(n_source_files)")
    assert warned.select("success", "unexpected_count", "action").row(0) == (False, 1, "warn")
    assert out.failed.height == 0  # reported, never held back


def test_files_suite_holds_a_file_with_half_its_rows_unusable() -> None:
    suite = load_suite("files")
    assert quarantine_rows(file_statistics(100, 10), suite).failed.height == 0
    assert quarantine_rows(file_statistics(100, 60), suite).failed.height == 1
    assert quarantine_rows(file_statistics(0, 0), suite).failed.height == 1
    strict = load_suite("files", thresholds={**DEFAULT_THRESHOLDS, "max_bad_row_share": 0.05})
    assert quarantine_rows(file_statistics(100, 10), strict).failed.height == 1


def normalised(n: int = 4) -> pl.DataFrame:
    return schema.conform(
        pl.DataFrame(
            {
                "sample_id": [f"S{i}" for i in range(n)],
                "analyte": ["IL6"] * n,
                "platform": ["msd"] * n,
                "panel": ["MSD"] * n,
                "unit": ["pg/mL"] * n,
                "value": [1.0] * n,
                "batch_method": ["plate_control"] * n,
            }
        ),
        schema.NORMALISED,
    )


NORMALISED_BREAKERS = {
    "not_be_null(analyte)": lambda f: f.with_columns(
        pl.when(pl.col("sample_id") == "S1").then(None).otherwise(pl.col("analyte")).alias("analyte")
    ),
    "be_in_set(unit)": lambda f: f.with_columns(
        pl.when(pl.col("sample_id") == "S1").then(pl.lit("ng/mL")).otherwise(pl.col("unit")).alias("unit")
    ),
    "be_unique(sample_id,analyte,platform,panel,unit)": lambda f: pl.concat([f, f.head(1)]),
    "be_in_set(batch_method)": lambda f: f.with_columns(
        pl.when(pl.col("sample_id") == "S1")
        .then(pl.lit("none: no plate controls"))
        .otherwise(pl.col("batch_method"))
        .alias("batch_method")
    ),
}


@pytest.mark.parametrize("label", NORMALISED_BREAKERS)
def test_each_normalised_expectation_breaks_and_passes(label: str) -> None:
    suite = load_suite("normalised_measurements")
    assert quarantine_rows(normalised(), suite).results["success"].all()
    out = quarantine_rows(NORMALISED_BREAKERS[label](normalised()), suite)
    failed = out.results.filter(~pl.col("success"))
    assert failed["expectation"].to_list() == [
        f"expect_{'compound_columns' if 'unique' in label else 'column_values'}_to_{label}"
    ]


def release_candidate() -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(5)
    frame = pl.DataFrame(
        {
            "sample_id": [f"S{i}" for i in range(300)],
            "analyte": "IL6",
            "uniprot": "P05231",
            "platform": "msd",
            "panel": "MSD",
            "matrix": "serum",
            "unit": "pg/mL",
            "value": np.exp(rng.normal(0, 0.5, 300)),
        }
    )
    frame = frame.with_columns(
        pl.col("value").log().alias("log_value"),
        pl.lit(None, pl.String).alias("censoring"),
        pl.lit(None, pl.Float64).alias("limit_value"),
        pl.lit(None, pl.Float64).alias("lod"),
    )
    build = build_reference(frame)
    return build.intervals, build.quantiles


RELEASE_BREAKERS = {
    "between(n)": lambda i, q: (i.with_columns(pl.lit(30).cast(pl.Int64).alias("n")), q),
    "between(median_minus_lower)": lambda i, q: (i.with_columns((pl.col("median") * 2).alias("lower_limit")), q),
    "between(upper_minus_median)": lambda i, q: (i.with_columns((pl.col("median") / 2).alias("upper_limit")), q),
    "between(ci_bracket_gap)": lambda i, q: (i.with_columns((pl.col("upper_limit") * 3).alias("upper_ci_low")), q),
    "between(quantile_min_step)": lambda i, q: (
        i,
        q.with_columns(pl.when(pl.col("p") == 0.5).then(0.0).otherwise(pl.col("value")).alias("value")),
    ),
    "between(grid_min_tail)": lambda i, q: (i, pl.concat([q, q.head(1).with_columns(pl.lit(0.001).alias("p"))])),
}


@pytest.mark.parametrize("label", RELEASE_BREAKERS)
def test_each_release_expectation_blocks_a_broken_candidate(label: str) -> None:
    suite = load_suite("release")
    intervals, quantiles = release_candidate()
    good = quarantine_rows(release_checks(intervals, quantiles, extra_columns=[]), suite)
    assert good.results["success"].all()
    bad_i, bad_q = RELEASE_BREAKERS[label](intervals, quantiles)
    out = quarantine_rows(release_checks(bad_i, bad_q, extra_columns=[]), suite)
    failed = out.results.filter(~pl.col("success"))
    assert f"expect_column_values_to_be_{label}" in failed["expectation"].to_list()
    assert set(failed["action"]) == {"block"}


def test_release_suite_blocks_individual_value_columns() -> None:
    intervals, quantiles = release_candidate()
    out = quarantine_rows(release_checks(intervals, quantiles, extra_columns=["max_value"]), load_suite("release"))
    assert out.results.filter(~pl.col("success"))["expectation"].to_list() == [
        "expect_column_values_to_be_between(n_individual_columns)"
    ]


def test_great_expectations_agrees_with_the_masks_on_every_gate_suite() -> None:
    intervals, quantiles = release_candidate()
    bad_i, bad_q = RELEASE_BREAKERS["between(median_minus_lower)"](intervals, quantiles)
    frames = {
        "plates": pl.concat([plate_stats(control_cv=0.5), plate_stats(n_controls=0)]),
        "files": pl.concat([file_statistics(10, 9), file_statistics(10, 1)]),
        "normalised_measurements": NORMALISED_BREAKERS["be_in_set(unit)"](normalised()),
        "release": release_checks(bad_i, bad_q, extra_columns=[]),
    }
    for name, frame in frames.items():
        suite = load_suite(name)
        ours, theirs = quarantine_rows(frame, suite).results, validate_with_gx(frame, suite)
        assert ours["unexpected_count"].to_list() == theirs["unexpected_count"].to_list(), name
        assert not ours["success"].all(), name


def test_qc_report_is_self_contained_and_offline() -> None:
    results = quarantine_rows(plate_stats(control_cv=0.5), load_suite("plates")).results
    hostile = "<img src=x onerror=alert(1)>"
    results = results.with_columns(pl.lit(hostile).alias("unexpected_sample"))  # values from the data
    page = render_report(
        run_id="r1",
        results=results,
        quarantine=pl.DataFrame({"stage": ["qc"], "check": ["x"], "n": [3], "example": ["<b>"]}),
        files=pl.DataFrame({"file": ["<script>alert(2)</script>.csv"]}),
        release=hostile,
    )
    assert "control_cv" in page and "failed" in page and "&lt;b&gt;" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;.csv" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert not re.search(r"(?i)(https?:)?//[a-z0-9]", page.replace("<!doctype html>", ""))
    assert not re.search(r"(?i)<(script|link|img|iframe)\b", page)


def test_the_qc_report_says_at_the_top_what_the_run_held_back_even_when_every_suite_passed() -> None:
    """A manifest row that contradicted another manifest was held back under "all checks passed"."""
    results = quarantine_rows(plate_stats(), load_suite("plates")).results
    files = pl.DataFrame(
        {
            "file": ["a.csv", "m.csv", "bad.csv"],
            "status": ["loaded", "loaded", "quarantined"],
            "rows_quarantined": [0, 2, 5],
        }
    )
    page = render_report(run_id="r1", results=results, quarantine=pl.DataFrame(), files=files, release="-")
    top = page[page.index("<h1>") : page.index("<h2>")]
    assert "all checks passed" in top and "7 rows held back and 1 file quarantined in this run" in top
    clean = render_report(run_id="r1", results=results, quarantine=pl.DataFrame(), files=files.head(1), release="-")
    assert "held back" not in clean[clean.index("<h1>") : clean.index("<h2>")]


def test_results_of_disjoint_parts_merge_into_the_results_of_the_whole() -> None:
    from expectations.runner import merge_results

    broken = NORMALISED_BREAKERS["be_in_set(unit)"](normalised())
    suite = load_suite("normalised_measurements")
    whole = validate_with_gx(broken, suite)
    halves = [broken.head(broken.height // 2), broken.tail(broken.height - broken.height // 2)]
    merged = merge_results([validate_with_gx(part, suite) for part in halves])
    assert merged.drop("unexpected_sample").equals(whole.drop("unexpected_sample"))
    assert not merged["success"].all()
    assert merge_results([]).height == 0 and merged.columns == whole.columns


def test_gx_validates_without_fingerprinting_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """GX's batch fingerprint (a hash of every value, never read) is skipped; the validation is not."""
    from great_expectations.execution_engine import pandas_execution_engine

    def no_hash(df: object) -> str:
        raise AssertionError("GX hashed the whole batch")

    monkeypatch.setattr(pandas_execution_engine, "hash_pandas_dataframe", no_hash)
    broken = NORMALISED_BREAKERS["be_in_set(unit)"](normalised())
    results = validate_with_gx(broken, load_suite("normalised_measurements"))
    failed = results.filter(~pl.col("success"))
    assert failed.height >= 1 and failed["unexpected_count"].sum() > 0


def test_a_row_held_for_its_value_names_the_value_to_correct() -> None:
    """The reason said "only known concentration units (or NPX) can be converted" without the unit the file
    wrote, so finding it meant opening the export at that line."""
    from expectations.suites import prepare_raw
    from transforms.readers import read_file

    export = b"sample_id,analyte,value,unit,plate_id\nS1,IL-6,2.5,IU/mL,P1\nS2,IL-6,-2.5,pg/mL,P1\nS3,IL-6,55,NPX,P1\n"
    rows = prepare_raw(read_file(export, source="v.csv", sha256="x").rows)
    reasons = quarantine_rows(rows, load_suite("raw_measurements")).quarantine["reason"].to_list()
    assert [r.split(": ")[:3] for r in reasons] == [
        ["v.csv", "line 2", "unit_read 'IU/mL'"],
        ["v.csv", "line 3", "concentration_value '-2.5'"],
        ["v.csv", "line 4", "npx_value '55.0'"],
    ]
    flagged = rows.with_columns(pl.lit(1, pl.Int8).alias("censoring_conflict"), pl.lit("NPX").alias("unit_raw"))
    conflict = quarantine_rows(flagged.head(1), load_suite("raw_measurements")).quarantine["reason"][0]
    assert "censoring_conflict" not in conflict  # a derived 0/1 flag says nothing to correct
