"""Frames that quality suites check at plate, file and release level. Pure: frames in, frames out."""

from __future__ import annotations

import polars as pl

from transforms import schema
from transforms.normalise import LOG_SCALE_UNITS, plate_control_shifts

PLATE_KEYS = ["platform", "panel", "analyte", "plate_id"]


#: Row checks that carry the vendor's own QC verdict (Olink's SampleQC FAIL, a WARN held on request): rows
#: read correctly and held back on purpose, never a sign of a damaged or misread export.
VENDOR_QC_CHECKS = ("vendor_sample_qc", "vendor_qc_warning")


def file_statistics(rows_read: int, rows_quarantined: int, vendor_held: int = 0) -> pl.DataFrame:
    """One row: the parse ledger of a file, for the `files` suite. ``bad_row_share`` counts the rows that could
    not be used, not the ``vendor_held`` of them that the vendor's QC failed (:data:`VENDOR_QC_CHECKS`): a
    file whose Olink run failed QC on some plates was quarantined whole as "probably damaged or misread",
    its good plates with it.

    >>> file_statistics(100, 40, vendor_held=30).row(0)
    (100, 40, 30, 0.1)
    """
    share = (rows_quarantined - vendor_held) / rows_read if rows_read else 0.0
    return pl.DataFrame(
        {
            "rows_read": [rows_read],
            "rows_quarantined": [rows_quarantined],
            "rows_held_by_vendor_qc": [vendor_held],
            "bad_row_share": [share],
        }
    )


def vendor_held(quarantine: pl.DataFrame) -> int:
    """How many of the quarantined rows ``quarantine`` holds carry the vendor's QC verdict."""
    return quarantine.height and quarantine.filter(pl.col("check").is_in(VENDOR_QC_CHECKS)).height


def plate_statistics(frame: pl.DataFrame, anchors: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per platform x panel x analyte x plate: controls, replicate CVs, drift, censoring, vendor flags, and the
    number of loaded files that hold the plate (a corrected re-export kept beside the old one makes two).

    ``frame`` is the log-scale frame of normalisation (before plate correction): it needs platform, panel,
    analyte, plate_id, sample_id, sample_type, log_value, censoring, unit, vendor_qc, recovery_pct,
    source_file, line_number. ``calibrator_recovery_dev`` is the median |recovery - 100| of the calibrators,
    in percentage points (null when the export carries no recovery). CVs are on the linear scale
    (NPX: of 2**NPX), as fractions. ``control_shift_abs`` is the drift of the plate's controls from the
    level of all plates in ``frame``, or from the frozen levels of a release when ``anchors`` gives them
    (a retest plate is checked against the release it is scored on).
    """
    # the grouping keys as categories once: every group-by below then hashes integers, not text (two
    # million rows of four to six text keys took most of the time); the result's keys are text again
    keys = [*PLATE_KEYS, "sample_id", "sample_type"]
    frame = frame.with_columns(pl.col(k).cast(pl.Categorical) for k in keys)
    measured = pl.col("censoring").is_null() | (pl.col("censoring") == "extrapolated")
    linear = (
        pl.when(pl.col("unit").is_in(list(LOG_SCALE_UNITS)))
        .then(2 ** pl.col("log_value"))
        .otherwise(pl.col("log_value").exp())
    )
    wells = frame.with_columns(linear.alias("__lin"))
    # a CV needs two wells of one sample: only rows whose keys repeat are grouped (one row per sample and
    # analyte, as in Olink exports, groups nothing; the integer codes are hashed, not the text)
    repeated = pl.struct([pl.col(k).to_physical() for k in keys]).is_duplicated()
    per_sample = (  # of the columns it needs only: a filter copies every column it is given
        wells.select([*keys, "__lin", "censoring"])
        .filter(measured)
        .filter(repeated)
        .group_by(keys)
        .agg((pl.col("__lin").std() / pl.col("__lin").mean()).alias("cv"), pl.len().alias("n"))
        .filter(pl.col("n") >= 2)
    )
    cvs = per_sample.group_by(PLATE_KEYS).agg(
        pl.col("cv").filter(pl.col("sample_type") == "control").median().alias("control_cv"),
        pl.col("cv").filter(pl.col("sample_type").is_in(["sample", "bridge"])).median().alias("replicate_cv"),
    )
    study = pl.col("sample_type").is_in(["sample", "bridge"])
    base = wells.group_by(PLATE_KEYS).agg(
        pl.col("sample_id").filter(pl.col("sample_type") == "control").n_unique().alias("n_controls"),
        (
            pl.col("censoring").filter(study).is_in(["below_lod", "below_lloq"]).sum()
            / pl.col("sample_id").filter(study).len().clip(lower_bound=1)
        ).alias("below_lod_share"),
        (pl.col("vendor_qc").is_not_null().sum() / pl.len()).alias("vendor_warning_share"),
        (pl.col("recovery_pct").filter(pl.col("sample_type") == "calibrator") - 100)
        .abs()
        .median()
        .alias("calibrator_recovery_dev"),
        pl.col("source_file").first().alias("source_file"),
        pl.col("source_file").n_unique().alias("n_source_files"),
        pl.col("line_number").min().alias("line_number"),
        pl.len().alias("n_rows"),
    )
    if anchors is not None:  # the frame's keys are categories here
        anchors = anchors.with_columns(pl.col(k).cast(pl.Categorical) for k in [*PLATE_KEYS[:3], "control_id"])
    shifts = plate_control_shifts(frame, anchors).select(
        [*PLATE_KEYS, pl.col("shift").abs().alias("control_shift_abs")]
    )
    out = base.join(cvs, on=PLATE_KEYS, how="left").join(shifts, on=PLATE_KEYS, how="left")
    return out.with_columns(pl.col(k).cast(pl.String) for k in PLATE_KEYS).sort(PLATE_KEYS)


def release_checks(intervals: pl.DataFrame, quantiles: pl.DataFrame, *, extra_columns: list[str]) -> pl.DataFrame:
    """One row per reference group with the derived columns the `release` suite checks.

    ``extra_columns`` are the columns of the interval table beyond the release contract (a privacy check:
    none may look like per-person values or extremes).
    """
    keys = schema.GROUP_KEYS
    steps = (
        quantiles.sort([*keys, "p"], nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("value").diff().min().fill_null(0.0).alias("quantile_min_step"),
            pl.col("p").min().alias("p_min"),
            pl.col("p").max().alias("p_max"),
        )
    )
    lo, hi, med = pl.col("lower_limit"), pl.col("upper_limit"), pl.col("median")
    gaps = [
        lo - pl.col("lower_ci_low"),
        pl.col("lower_ci_high") - lo,
        hi - pl.col("upper_ci_low"),
        pl.col("upper_ci_high") - hi,
    ]
    suspicious = [c for c in extra_columns if any(tok in c.lower() for tok in ("min", "max", "sample", "subject"))]
    n1 = pl.col("n") + 1
    out = intervals.join(steps, on=keys, how="left", nulls_equal=True).with_columns(
        pl.when(pl.col("lower_limit_censored")).then(None).otherwise(med - lo).alias("median_minus_lower"),
        (hi - med).alias("upper_minus_median"),
        pl.when(pl.col("method") == "nonparametric").then(pl.col("n")).alias("nonparametric_n"),
        pl.when(pl.col("lower_limit_censored"))
        .then(pl.min_horizontal(gaps[2:]))
        .otherwise(pl.min_horizontal(gaps))
        .alias("ci_bracket_gap"),
        pl.min_horizontal((pl.col("p_min") * n1).floor(), pl.col("n") - (pl.col("p_max") * n1).ceil() + 1)
        .cast(pl.Int64)
        .alias("grid_min_tail"),
        pl.lit(len(suspicious)).alias("n_individual_columns"),
    )
    return out
