"""Limit of detection of Olink's NGS products (Explore 3072, Explore HT, Reveal) from their negative controls.

Olink does not report an LOD in Explore and Reveal customer files. Its public description of the
negative-control method (OlinkAnalyze's "Calculating LOD from Olink Explore data" tutorial) is the rule
implemented here, in our own code; docs/normalisation.md states it with its source:

* at least :data:`MIN_NEGATIVE_CONTROLS` negative controls must pass QC. A negative control does not count
  when every one of its assays carries an AssayQC warning (internal control assays aside), or when it
  fails or warns Olink's sample QC in all of its rows (every block or panel measured);
* per assay, from the passing negative controls: when one of them has more than :data:`COUNT_SWITCH`
  counts, LOD = median(PC-normalised NPX) + max(:data:`MIN_SPREAD_NPX`, 3 SD);
* when every one has at most :data:`COUNT_SWITCH` counts the LOD is taken on the count scale and carried
  to NPX per well through that well's own count, so each well has its own LOD. Olink's text does not give
  the count formula; refranges uses the same form, median + 3 SD of the counts (at least 1 count), and
  carries it to the row as ``NPX + log2(LOD_count / count)`` (a well with 0 counts is taken as 1 count);
* the result is on the plate-control (PC) normalised scale. For rows that Olink intensity-normalised the
  LOD is moved by the plate's adjustment: the median over the plate's study samples of
  (PCNormalizedNPX - NPX) for that assay, as Olink's tutorial describes.

The SD is the sample SD (n - 1); medians are the midpoint of the two middle values for an even count.
Pure functions: frames in, frames out.
"""

from __future__ import annotations

import polars as pl

MIN_NEGATIVE_CONTROLS = 10
COUNT_SWITCH = 150
MIN_SPREAD_NPX = 0.2
SPREAD_SDS = 3.0
STUDY_ROLES = ["sample", "bridge"]

#: The columns :func:`negative_control_lod` reads: ``assay`` (one key per assay, panels apart), ``plate_id``,
#: ``sample_id``, ``role`` (negative_control | sample or bridge: a study sample | other), ``npx``, ``pc_npx``
#: (null: same as npx), ``read_count`` (null when the export has no counts), ``is_intensity``, ``sample_qc``
#: and ``assay_qc`` (upper case; null counts as PASS) and ``is_internal`` (internal control assays, never used).
COLUMNS = [
    "assay",
    "plate_id",
    "sample_id",
    "role",
    "npx",
    "pc_npx",
    "read_count",
    "is_intensity",
    "sample_qc",
    "assay_qc",
    "is_internal",
]


def passing_negative_controls(rows: pl.DataFrame) -> list[str]:
    """The negative controls (sample ids) that count towards the minimum, in sorted order."""
    nc = rows.filter((pl.col("role") == "negative_control") & ~pl.col("is_internal"))
    per = nc.group_by("sample_id").agg(
        (pl.col("assay_qc").fill_null("PASS") == "WARN").all().alias("all_assays_warn"),
        (pl.col("sample_qc").fill_null("PASS") != "PASS").all().alias("never_passes"),
    )
    return sorted(per.filter(~pl.col("all_assays_warn") & ~pl.col("never_passes"))["sample_id"].to_list())


def assay_limits(rows: pl.DataFrame, controls: list[str]) -> pl.DataFrame:
    """Per assay, from the rows of ``controls``: ``lod_pc`` (NPX branch, PC-normalised scale) or
    ``lod_count`` (count branch), ``n_controls`` and ``branch`` (npx | count)."""
    nc = rows.filter(pl.col("sample_id").is_in(controls) & ~pl.col("is_internal"))
    pc = pl.coalesce("pc_npx", "npx")
    spread = pl.max_horizontal(pl.lit(MIN_SPREAD_NPX), SPREAD_SDS * pc.std(ddof=1))
    count_lod = pl.max_horizontal(pl.col("read_count").median() + SPREAD_SDS * pl.col("read_count").std(ddof=1), 1.0)
    per = nc.group_by("assay").agg(
        (pl.col("read_count").max() > COUNT_SWITCH).fill_null(True).alias("__npx_branch"),
        (pc.median() + spread).alias("__lod_pc"),
        count_lod.alias("__lod_count"),
        pl.col("sample_id").n_unique().alias("n_controls"),
    )
    return per.select(
        "assay",
        pl.when(pl.col("__npx_branch")).then(pl.col("__lod_pc")).alias("lod_pc"),
        pl.when(~pl.col("__npx_branch")).then(pl.col("__lod_count")).alias("lod_count"),
        "n_controls",
        pl.when(pl.col("__npx_branch")).then(pl.lit("npx")).otherwise(pl.lit("count")).alias("branch"),
    )


def intensity_adjustments(rows: pl.DataFrame) -> pl.DataFrame:
    """Per assay and plate: the median over study samples of PCNormalizedNPX - NPX (``adjustment``), for
    the assays and plates that hold intensity-normalised rows."""
    study = rows.filter(
        pl.col("is_intensity")
        & pl.col("role").is_in(STUDY_ROLES)
        & ~pl.col("is_internal")
        & pl.col("pc_npx").is_not_null()
    )
    return study.group_by("assay", "plate_id").agg((pl.col("pc_npx") - pl.col("npx")).median().alias("adjustment"))


def negative_control_lod(rows: pl.DataFrame) -> tuple[pl.Series, dict[str, object]]:
    """The LOD of every row of ``rows`` (in the row's own NPX scale; null for internal controls, rows
    without NPX and assays without enough passing negative controls), and what was done (``controls``:
    the number of passing negative controls, ``method``: a sentence for the ledger). ``rows`` has
    :data:`COLUMNS`."""
    controls = passing_negative_controls(rows)
    if len(controls) < MIN_NEGATIVE_CONTROLS:
        method = (
            f"none: {len(controls)} negative controls pass QC and Olink's negative-control LOD needs "
            f"{MIN_NEGATIVE_CONTROLS}; values are loaded without an LOD"
        )
        return pl.Series("lod", [None] * rows.height, dtype=pl.Float64), {"controls": len(controls), "method": method}
    limits = assay_limits(rows, controls)
    keyed = rows.select("assay", "plate_id", "npx", "read_count", "is_intensity", "is_internal")
    keyed = keyed.join(limits.select("assay", "lod_pc", "lod_count"), on="assay", how="left", maintain_order="left")
    adjustment = pl.lit(0.0)
    if rows.select(pl.col("is_intensity").any()).item():
        adjust = intensity_adjustments(rows)
        keyed = keyed.join(adjust, on=["assay", "plate_id"], how="left", maintain_order="left")
        adjustment = pl.when(pl.col("is_intensity")).then(pl.col("adjustment")).otherwise(0.0)
    lod_pc, lod_count = pl.col("lod_pc"), pl.col("lod_count")
    from_count = pl.col("npx") + (lod_count / pl.max_horizontal(pl.col("read_count"), 1)).log(2)
    lod = (
        pl.when(pl.col("is_internal") | pl.col("npx").is_null())
        .then(None)
        .otherwise(pl.coalesce(lod_pc - adjustment, from_count))  # an assay has one branch: the other is null
    )
    out = keyed.select(lod.cast(pl.Float64).alias("lod")).to_series()
    n_count = int((limits["branch"] == "count").sum())
    method = (
        f"negative controls: {len(controls)} pass QC; LOD per assay from their NPX "
        f"({limits.height - n_count} assays) or counts ({n_count} assays, per well)"
    )
    return out, {"controls": len(controls), "method": method}
