"""Within-person variation between visits, and the reference change value (RCV) for retests.

Healthy people who gave more than one sample show how much a marker moves between visits without any
change in health. On the analysis scale (natural log for concentrations, NPX as is) the pooled
within-person SD of those repeats, ``s_total``, holds both the analytical variation between runs and the
biological within-person variation: s_total² = s_a² + s_i². The reference change value of two results
of one person is then (Fraser and Harris 1989; Fokkema et al. 2006 for the log-normal form)

    RCV = z · √2 · s_total            on the log scale, z = 1.96 for 95 % two-sided,

which for concentrations is an asymmetric change of exp(±RCV) - 1 and for NPX a difference of ±RCV NPX.
``s_a`` is estimated from duplicate wells (``replicate_cv``) where the platform has them; it is an
intra-assay figure, so ``s_i`` = √(s_total² - s_a²) is an upper bound. The RCV uses ``s_total`` and does not
depend on that split. See docs/statistics.md.
"""

from __future__ import annotations

import math

import polars as pl
from scipy import stats

from transforms import schema
from transforms.normalise import LOG_SCALE_UNITS

KEYS = schema.MARKER_KEYS

RETEST_VARIATION: dict[str, pl.DataType] = {
    "analyte": pl.String(),
    "uniprot": pl.String(),
    "platform": pl.String(),
    "panel": pl.String(),
    "matrix": pl.String(),
    "unit": pl.String(),
    "scale": pl.String(),
    "n_subjects": pl.Int64(),
    "n_samples": pl.Int64(),
    "sd_total_log": pl.Float64(),
    "sd_analytical_log": pl.Float64(),
    "sd_within_subject_log": pl.Float64(),
    "cv_analytical_pct": pl.Float64(),
    "cv_within_subject_pct": pl.Float64(),
    "probability": pl.Float64(),
    "rcv_log": pl.Float64(),
    "rcv_increase_pct": pl.Float64(),
    "rcv_decrease_pct": pl.Float64(),
}


def first_visits(measurements: pl.DataFrame) -> pl.DataFrame:
    """Each subject's earliest sample per marker (ties by sample id); rows without a subject key stay.

    A reference distribution counts every person once; later visits only serve :func:`retest_variation`.
    The rows come back in sample-id order (rows of one sample in their input order).
    """
    if "subject_key" not in measurements.columns or measurements.height == 0:
        return measurements
    keys = [k for k in KEYS if k in measurements.columns]
    order = [c for c in ("collection_date", "sample_id") if c in measurements.columns]
    # only a person measured more than once for a marker has a visit to drop: the dates are sorted for those
    # rows alone (a cohort of single visits sorts nothing), everyone else's rows stay as they are
    indexed = measurements.with_row_index("__row")
    repeated = pl.struct("subject_key", *keys).is_duplicated() & pl.col("subject_key").is_not_null()
    rows = _of_people_seen_twice(indexed).filter(repeated)
    earliest = (
        rows.sort(order, nulls_last=True)
        .unique(subset=["subject_key", *keys], keep="first", maintain_order=True)
        .get_column("__row")
    )
    later = rows.filter(~pl.col("__row").is_in(earliest.implode())).get_column("__row")
    kept = indexed.filter(~pl.col("__row").is_in(later.implode())).drop("__row") if later.len() else measurements
    return kept.sort("sample_id", maintain_order=True)  # free when the input was in sample-id order


def _of_people_seen_twice(rows: pl.DataFrame) -> pl.DataFrame:
    """The rows of people with two or more samples, in their order: only they can be measured twice for a
    marker (one row per sample and marker: the normalised suite quarantines duplicates). Found on two
    columns, not on every marker key: grouping every row by marker and person took 1.5 s of a
    1.9-million-row reference part, in a cohort where nobody had come twice. Without ``sample_id``: every
    row."""
    if "sample_id" not in rows.columns:
        return rows
    again = (
        rows.filter(pl.col("subject_key").is_not_null())
        .group_by("subject_key")
        .agg(pl.col("sample_id").n_unique())
        .filter(pl.col("sample_id") >= 2)
    )
    return rows.filter(pl.col("subject_key").is_in(again["subject_key"].implode()))


def retest_variation(healthy: pl.DataFrame, *, min_subjects: int = 20, probability: float = 0.95) -> pl.DataFrame:
    """One row per marker with at least ``min_subjects`` healthy people measured at two or more visits.

    Censored values and values without a subject key are left out (a difference needs two measured values).
    """
    z = float(stats.norm.ppf(0.5 + probability / 2))
    if healthy.height == 0 or "subject_key" not in healthy.columns:
        return pl.DataFrame(schema=RETEST_VARIATION)
    has_cv = "replicate_cv" in healthy.columns
    measured = healthy.filter(
        pl.col("censoring").is_null() & pl.col("log_value").is_finite() & pl.col("subject_key").is_not_null()
    )
    repeaters = _of_people_seen_twice(measured)
    measured = measured.select(
        *KEYS, "subject_key", "log_value", (pl.col("replicate_cv") if has_cv else pl.lit(None)).alias("rcv")
    )
    # only markers with at least min_subjects people measured twice are published: the rest is never sorted
    # (a hash count finds them; most markers of a cohort without repeat visits have none)
    repeat_subjects = (
        repeaters.group_by([*KEYS, "subject_key"])
        .len()
        .filter(pl.col("len") >= 2)
        .group_by(KEYS)
        .len()
        .filter(pl.col("len") >= min_subjects)
        .select(KEYS)
    )
    if repeat_subjects.height == 0:
        return pl.DataFrame(schema=RETEST_VARIATION)
    measured = measured.join(repeat_subjects, on=KEYS, how="semi", nulls_equal=True)
    # sums of floats in one fixed order, whatever order the rows came in and however many threads group
    # them: the same inputs give the same numbers to the last bit (before, the 16th digit could vary)
    measured = measured.sort([*KEYS, "subject_key", "log_value"], nulls_last=False)
    per_subject = (
        measured.with_columns(
            k=pl.len().over([*KEYS, "subject_key"]),
            dev2=(pl.col("log_value") - pl.col("log_value").mean().over([*KEYS, "subject_key"])) ** 2,
        )
        .filter(pl.col("k") >= 2)
        .group_by([*KEYS, "subject_key"], maintain_order=True)
        .agg(pl.col("dev2").sum(), (pl.len() - 1).alias("df"), pl.len().alias("k"))
    )
    # duplicate-well CV (a fraction of the linear value) -> SD on the natural-log scale
    analytical = measured.group_by(KEYS, maintain_order=True).agg(
        ((1 + pl.col("rcv").cast(pl.Float64) ** 2).log().mean().sqrt()).alias("sd_analytical_ln")
    )
    pooled = (
        per_subject.group_by(KEYS, maintain_order=True)
        .agg(
            pl.len().alias("n_subjects"),
            pl.col("k").sum().alias("n_samples"),
            (pl.col("dev2").sum() / pl.col("df").sum()).sqrt().alias("sd_total_log"),
        )
        .filter(pl.col("n_subjects") >= min_subjects)
        .join(analytical, on=KEYS, how="left", nulls_equal=True)
    )
    is_npx = pl.col("unit").is_in(list(LOG_SCALE_UNITS))
    base = pl.when(is_npx).then(2.0).otherwise(math.e)
    # NPX is log2; a duplicate CV converts to log2 units by dividing by ln 2
    sd_a = pl.when(is_npx).then(pl.col("sd_analytical_ln") / math.log(2)).otherwise(pl.col("sd_analytical_ln"))
    out = (
        pooled.with_columns(
            scale=pl.when(is_npx).then(pl.lit("NPX (log2)")).otherwise(pl.lit("ln")),
            sd_analytical_log=sd_a,
        )
        .with_columns(
            sd_within_subject_log=(
                pl.max_horizontal(pl.col("sd_total_log") ** 2 - pl.col("sd_analytical_log").fill_null(0.0) ** 2, 0.0)
            ).sqrt(),
            probability=pl.lit(probability),
            rcv_log=z * 2**0.5 * pl.col("sd_total_log"),
        )
        .with_columns(
            cv_analytical_pct=pl.when(~is_npx).then(((pl.col("sd_analytical_log") ** 2).exp() - 1).sqrt() * 100),
            cv_within_subject_pct=pl.when(~is_npx).then(
                ((pl.col("sd_within_subject_log") ** 2).exp() - 1).sqrt() * 100
            ),
            rcv_increase_pct=(base.pow(pl.col("rcv_log")) - 1) * 100,
            rcv_decrease_pct=(base.pow(-pl.col("rcv_log")) - 1) * 100,
        )
    )
    return out.select([pl.col(c).cast(t) for c, t in RETEST_VARIATION.items()]).sort(KEYS)
