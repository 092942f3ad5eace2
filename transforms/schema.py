"""Column names and dtypes of every frame that crosses a stage boundary, declared once.

Readers, transforms, the warehouse loader and the release writer all import these; nothing else
spells a column list. Must not import anything that does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import polars as pl

#: One row per value as it appears in an export (one well, one analyte), whatever the vendor.
MEASUREMENT: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "source_sha256": pl.String(),
    "line_number": pl.Int64(),  # 1-based line of the row in the source file
    "platform": pl.String(),  # olink | msd | luminex | bioplex | tidy
    "panel": pl.String(),
    "plate_id": pl.String(),
    "well": pl.String(),
    "run_date": pl.Date(),
    "sample_id": pl.String(),
    "sample_type": pl.String(),  # sample | control | negative_control | bridge | calibrator | blank
    "analyte_raw": pl.String(),  # the analyte name as the export writes it
    "value_text": pl.String(),  # the cell as written
    "value": pl.Float64(),  # numeric reading of the cell; null when censored without a number
    "unit_raw": pl.String(),  # unit as written (or assumed, see unit_note)
    "unit_note": pl.String(),  # why a unit was assumed, when the file carries none
    "censoring": pl.String(),  # below_lod | below_lloq | above_uloq | extrapolated | null
    "limit_value": pl.Float64(),  # the limit involved in the censoring, in unit_raw
    "lod": pl.Float64(),  # limit of detection reported by the export, in unit_raw
    "vendor_qc": pl.String(),  # vendor warnings (Olink QC_Warning / Assay_Warning, MSD CV flags ...)
    "recovery_pct": pl.Float64(),  # calibrator recovery (measured / expected x 100) where the export has it
    # Olink's NGS products (Explore 3072, Explore HT, Reveal); null for other exports
    "assay_id": pl.String(),  # the vendor's assay id (OlinkID)
    "assay_type": pl.String(),  # assay | ext_ctrl | inc_ctrl | amp_ctrl: internal controls are never analytes
    "block": pl.String(),  # Explore HT block / Explore 3072 panel block
    "read_count": pl.Int64(),  # sequencing counts behind the NPX
    "ext_npx": pl.Float64(),  # extension-control normalised NPX (Olink ExtNPX)
    "pc_normalized_npx": pl.Float64(),  # plate-control normalised NPX (Olink PCNormalizedNPX)
    "normalization": pl.String(),  # Olink Normalization: Intensity | Plate control
    "uniprot_raw": pl.String(),  # the UniProt accession the export gives for the analyte (Olink), else null
}

#: Rows of these assay types are analytes; every other (Olink's internal controls) is kept for QC only.
ANALYTE_ASSAY_TYPES = ["assay"]

#: One row per row of an export that could not be used, with a reason a person can act on.
QUARANTINE: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "source_sha256": pl.String(),
    "line_number": pl.Int64(),
    "stage": pl.String(),  # parse | qc | link | normalise
    "check": pl.String(),  # the rule that held the row back
    "reason": pl.String(),
    "sample_id": pl.String(),
    "analyte_raw": pl.String(),
    "value_text": pl.String(),
}

#: One row per sample in a manifest. subject_id never leaves ingestion: it becomes subject_key.
SAMPLE: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "subject_key": pl.String(),
    "cohort": pl.String(),  # healthy | patient
    "matrix": pl.String(),  # serum | plasma
    "sex": pl.String(),  # F | M
    "age": pl.Float64(),  # years
    "collection_date": pl.Date(),
    "severity": pl.Float64(),  # 0-100; mild/moderate/severe mapped to 25/50/75
    "severity_label": pl.String(),
    "illness_duration_years": pl.Float64(),
    "source_file": pl.String(),
    "source_sha256": pl.String(),
    "line_number": pl.Int64(),
}

#: Keys of one marker: an analyte measured on one platform + panel, in one matrix and unit.
MARKER_KEYS: list[str] = ["analyte", "uniprot", "platform", "panel", "matrix", "unit"]

#: Keys that define one reference group: a marker, and the sex and age range it describes.
GROUP_KEYS: list[str] = [*MARKER_KEYS, "sex", "age_min", "age_max"]


def same_group(row: Mapping[str, object], keys: list[str] = GROUP_KEYS) -> pl.Expr:
    """Rows whose ``keys`` equal those of ``row`` (a null key matches null)."""
    return pl.all_horizontal([(pl.col(k) == row[k]) if row[k] is not None else pl.col(k).is_null() for k in keys])


#: One row per sample x analyte after normalisation (the analyst's `measurements`).
NORMALISED: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "analyte": pl.String(),  # HGNC symbol
    "uniprot": pl.String(),
    "analyte_label": pl.String(),
    "platform": pl.String(),
    "panel": pl.String(),
    "unit": pl.String(),  # canonical unit: pg/mL, or NPX for log2 relative scales
    "value": pl.Float64(),  # in unit; for censored values the limit (see censoring)
    "log_value": pl.Float64(),  # natural log of value for concentrations, NPX as is
    "censoring": pl.String(),
    "limit_value": pl.Float64(),  # in unit
    "lod": pl.Float64(),  # in unit
    "n_replicates": pl.Int64(),
    "replicate_cv": pl.Float64(),  # CV of replicate values on the linear scale, fraction
    "plate_id": pl.String(),
    "batch": pl.String(),
    "batch_method": pl.String(),
    "source_file": pl.String(),
}

REFERENCE_INTERVAL: dict[str, pl.DataType] = {
    "analyte": pl.String(),
    "uniprot": pl.String(),
    "platform": pl.String(),
    "panel": pl.String(),
    "matrix": pl.String(),
    "unit": pl.String(),
    "sex": pl.String(),
    "age_min": pl.Float64(),
    "age_max": pl.Float64(),
    "n": pl.Int64(),
    "n_below_lod": pl.Int64(),
    "n_outliers_excluded": pl.Int64(),
    "method": pl.String(),
    "lower_limit": pl.Float64(),
    "upper_limit": pl.Float64(),
    "lower_ci_low": pl.Float64(),
    "lower_ci_high": pl.Float64(),
    "upper_ci_low": pl.Float64(),
    "upper_ci_high": pl.Float64(),
    "median": pl.Float64(),
    "coverage": pl.Float64(),
    "ci_level": pl.Float64(),
    "lod": pl.Float64(),
    "lower_limit_censored": pl.Boolean(),
    "upper_limit_censored": pl.Boolean(),
    "median_censored": pl.Boolean(),
}

#: The reference limits of a group and their confidence intervals, in the order reports show them.
LIMITS: list[str] = ["lower_limit", "upper_limit", "lower_ci_low", "lower_ci_high", "upper_ci_low", "upper_ci_high"]

REFERENCE_QUANTILE: dict[str, pl.DataType] = {
    **{k: REFERENCE_INTERVAL[k] for k in GROUP_KEYS},
    "p": pl.Float64(),
    "value": pl.Float64(),
    "censored": pl.Boolean(),
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with exactly these columns and dtypes."""
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType], *, categorical_text: bool = False) -> pl.DataFrame:
    """Select and cast ``frame`` to ``schema``; missing columns become typed nulls.

    Casting is strict: a column that cannot take its declared dtype is a bug in the caller.
    ``categorical_text``: a text column that is Categorical or Enum stays so (the same values, dictionary-coded;
    casting 20 M rows to String would write every value out), as the raw store keeps it.
    """

    def cast(name: str, dtype: pl.DataType) -> pl.Expr:
        if name not in frame.columns:
            return pl.lit(None).cast(dtype, strict=True).alias(name)
        if categorical_text and dtype == pl.String and isinstance(frame.schema[name], (pl.Categorical, pl.Enum)):
            return pl.col(name)
        return pl.col(name).cast(dtype, strict=True).alias(name)

    return frame.select([cast(name, dtype) for name, dtype in schema.items()])


def constant_columns(frame: pl.DataFrame, columns: Iterable[str] | None = None) -> dict[str, Any]:
    """The columns of ``columns`` (default: all) that hold one value in every row, with that value (None for
    a column of nulls only; every column of an empty frame counts). One pass reads the first and last value
    and the null count of every column; only the columns those leave in doubt are compared in full. Never
    takes a column out as a Series: that would write out a literal column (a file name, say) row by row."""
    names = list(frame.columns if columns is None else columns)
    if frame.height == 0 or not names:
        return dict.fromkeys(names)
    ends = frame.select(
        *(pl.col(c).first().alias(f"f{i}") for i, c in enumerate(names)),
        *(pl.col(c).last().alias(f"l{i}") for i, c in enumerate(names)),
        *(pl.col(c).null_count().alias(f"n{i}") for i, c in enumerate(names)),
    ).row(0)
    k = len(names)
    found: dict[str, Any] = {}
    doubt: dict[str, Any] = {}
    for i, name in enumerate(names):
        first, last, nulls = ends[i], ends[k + i], ends[2 * k + i]
        if nulls == frame.height:
            found[name] = None
        elif nulls == 0 and first == last:
            doubt[name] = first
    if doubt:
        same = frame.select((pl.col(c) == pl.lit(v, dtype=frame.schema[c])).all().alias(c) for c, v in doubt.items())
        found |= {c: v for c, v in doubt.items() if same.get_column(c)[0]}
    return {c: found[c] for c in names if c in found}


def sort_rows(frame: pl.DataFrame, keys: list[str], *, max_runs: int = 4096) -> pl.DataFrame:
    """``frame.sort(keys, maintain_order=True)``, the same rows in the same order, made cheaply for the frames
    the pipeline hands between tasks: a frame that is a few runs of rows already in order (a Parquet part is
    a few dozen sorted row groups) is cut into those runs instead of gathering every column row by row. More
    than ``max_runs`` runs (rows written by several threads): polars' own sort, which also marks the first
    key sorted, so a later sort by it is free (a gather of a frame of many chunks took 0.44 s a 2-million-row
    part, the sort 0.18 s)."""
    if frame.height < 2 or not keys:
        return frame
    order = frame.select(pl.arg_sort_by(keys, maintain_order=True)).to_series().to_numpy()
    breaks = np.flatnonzero(np.diff(order) != 1) + 1
    if breaks.size >= max_runs:
        return frame.sort(keys, maintain_order=True)
    starts, ends = np.r_[0, breaks], np.r_[breaks, order.size]
    return pl.concat([frame.slice(int(order[s]), int(e - s)) for s, e in zip(starts, ends, strict=True)], rechunk=False)
