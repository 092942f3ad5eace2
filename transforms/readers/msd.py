"""MSD Discovery Workbench plate exports (plate CSV with a plate-name first line, Workbench 4 tables).

MSD files rarely carry a unit: V-PLEX and U-PLEX cytokine kits report pg/mL, which is assumed unless the
export has a unit column or configuration says otherwise; the assumption is recorded in ``unit_note``.
Detection Range decides censoring: below ranges -> ``below_lod`` (limit = Calc. Low when present), above
ranges -> ``above_uloq``; "Fit Curve" ranges carry no number.
"""

from __future__ import annotations

import polars as pl

from transforms.readers.common import column, finish, text_col, value_checks, with_lines
from transforms.text import Table, sniff_separator, split_fields, with_numbers

UNIT_NOTE = "MSD export carries no unit; assumed the kit's reporting unit"


def _plate_from_preamble(preamble: list[str]) -> str | None:
    for line in preamble:
        fields = [f.strip() for f in split_fields(line, sniff_separator(line)) if f.strip()]
        if len(fields) == 1 and fields[0].lower().startswith("plate"):
            return fields[0]
        if len(fields) >= 2 and fields[0].lower().rstrip(":").strip() in {"plate", "plate name", "barcode1"}:
            return fields[1].strip("<>*")
    return None


def censoring_source(table: Table) -> str:
    """Where an MSD file's censoring comes from, for the ledger (``censoring_source`` in ``file_info_json``): a
    Workbench export without a Detection Range column flags no value below or above the detection range."""
    if column(table, "Detection Range") is None:
        return "none: the file has no Detection Range column, so no value is flagged outside the detection range"
    limits = column(table, "Detection Limits: Calc. Low") is not None
    return "column Detection Range" + (", limits from Detection Limits: Calc. Low / High" if limits else "")


def read_msd(
    table: Table, *, preamble: list[str], source: str, sha256: str, default_unit: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = with_lines(table)
    plate_name = _plate_from_preamble(preamble)
    conc = column(table, "Calc. Concentration")
    assert conc is not None, "layout detection guarantees a Calc. Concentration column"
    detection = text_col(table, "Detection Range").str.to_lowercase()
    group = text_col(table, "Sample Group").str.to_lowercase()
    sample = text_col(table, "Sample")
    unit_col = column(table, "Units", "Unit")
    plate = text_col(table, "Plate Name", "Plate")
    frame = with_numbers(frame, pl.col(conc))
    frame = with_numbers(frame, text_col(table, "Detection Limits: Calc. Low"), prefix="low_")
    frame = with_numbers(frame, text_col(table, "Detection Limits: Calc. High"), prefix="high_")
    frame = with_numbers(frame, text_col(table, "% Recovery"), prefix="recovery_")
    frame = frame.with_columns(
        sample.alias("sample_id"),
        text_col(table, "Assay").alias("analyte_raw"),
        text_col(table, "Well").alias("well"),
        pl.col(conc).alias("value_text"),
        (plate.fill_null(pl.lit(plate_name or source))).alias("plate_id"),
        pl.lit("msd").alias("platform"),
        pl.lit("MSD").alias("panel"),
        (pl.col(unit_col) if unit_col else pl.lit(default_unit)).alias("unit_raw"),
        pl.lit(None if unit_col else f"{UNIT_NOTE} ({default_unit})", dtype=pl.String).alias("unit_note"),
        pl.when(group.is_not_null())
        .then(
            pl.when(group.str.contains("standard|calibrator"))
            .then(pl.lit("calibrator"))
            .when(group.str.contains("control"))
            .then(pl.lit("control"))
            .when(group.str.contains("blank"))
            .then(pl.lit("blank"))
            .otherwise(pl.lit("sample"))
        )
        .when(sample.str.contains(r"^(?i)s\d{2,3}$|^(?i)std|^(?i)standard"))
        .then(pl.lit("calibrator"))
        .when(sample.str.contains(r"^(?i)c\d{1,2}$|^(?i)control"))
        .then(pl.lit("control"))
        .when(sample.str.contains(r"^(?i)b\d{0,2}$|^(?i)blank"))
        .then(pl.lit("blank"))
        .otherwise(pl.lit("sample"))
        .alias("sample_type"),
    )
    below = detection.str.starts_with("below")
    above = detection.str.starts_with("above")
    fit_curve = detection.str.contains("fit curve")
    frame = frame.with_columns(
        pl.col("low_value").alias("lod"),
        pl.col("recovery_value").alias("recovery_pct"),
        pl.when(below)
        .then(pl.lit("below_lod"))
        .when(above)
        .then(pl.lit("above_uloq"))
        .otherwise(pl.col("censoring"))
        .alias("censoring"),
        pl.when(below)
        .then(pl.col("low_value"))
        .when(above)
        .then(pl.col("high_value"))
        .otherwise(pl.col("limit_value"))
        .alias("limit_value"),
        # "Fit Curve" ranges: the instrument gives no usable number even when a cell is filled
        pl.when(fit_curve).then(None).otherwise(pl.col("value")).alias("value"),
        pl.when(fit_curve).then(True).otherwise(pl.col("is_number_ok")).alias("is_number_ok"),
    )
    label = pl.col("analyte_raw").fill_null("?")
    return finish(frame, source=source, sha256=sha256, checks=value_checks(label))
