"""The generic tidy hand-in format: sample_id, analyte, value, unit, plate_id (+ optional columns).

Optional: lod, lloq, uloq, well, run_date (ISO date), sample_type, platform, panel, uniprot (the analyte's UniProt
accession: a name the analyte dictionary does not know is identified by it, as for Olink's files). A numeric value under
``lod`` is kept and flagged ``below_lod`` (under ``lloq``: ``below_lloq``), over ``uloq``: ``above_uloq``.
"""

from __future__ import annotations

import polars as pl

from transforms.readers.common import finish, iso_date, iso_date_check, text_col, value_checks, with_lines
from transforms.text import Table, uses_decimal_comma, with_numbers

SAMPLE_TYPES = ["sample", "control", "bridge", "calibrator", "blank"]


def read_tidy(table: Table, *, source: str, sha256: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = with_lines(table)
    decimal_comma = uses_decimal_comma(frame["value"], table.separator)
    frame = frame.with_columns(pl.col("value").alias("value_text"))
    for prefix, col in (
        ("", pl.col("value_text")),
        ("lod_", text_col(table, "lod")),
        ("lloq_", text_col(table, "lloq")),
        ("uloq_", text_col(table, "uloq")),
    ):
        frame = with_numbers(frame, col, decimal_comma=decimal_comma, prefix=prefix)
    frame = frame.with_columns(
        text_col(table, "sample_id").alias("sample_id"),
        text_col(table, "analyte").alias("analyte_raw"),
        text_col(table, "uniprot").alias("uniprot_raw"),
        text_col(table, "plate_id").alias("plate_id"),
        text_col(table, "well").alias("well"),
        text_col(table, "unit").alias("unit_raw"),
        text_col(table, "platform").fill_null("tidy").str.to_lowercase().alias("platform"),
        text_col(table, "panel").fill_null("generic").alias("panel"),
        text_col(table, "sample_type").str.to_lowercase().fill_null("sample").alias("sample_type"),
        iso_date(text_col(table, "run_date")).alias("run_date"),
        text_col(table, "run_date").alias("__run_date_text"),
    )
    v = pl.col("value")
    frame = frame.with_columns(
        pl.col("lod_value").alias("lod"),
        pl.when(pl.col("censoring").is_not_null())
        .then(pl.col("censoring"))
        .when(v < pl.col("lod_value"))
        .then(pl.lit("below_lod"))
        .when(v < pl.col("lloq_value"))
        .then(pl.lit("below_lloq"))
        .when(v > pl.col("uloq_value"))
        .then(pl.lit("above_uloq"))
        .alias("censoring"),
        pl.when(pl.col("limit_value").is_not_null())
        .then(pl.col("limit_value"))
        .when(v < pl.col("lod_value"))
        .then(pl.col("lod_value"))
        .when(v < pl.col("lloq_value"))
        .then(pl.col("lloq_value"))
        .when(v > pl.col("uloq_value"))
        .then(pl.col("uloq_value"))
        .alias("limit_value"),
    )
    label = pl.col("analyte_raw").fill_null("?")
    checks = value_checks(label)
    checks.append(
        (
            "sample_type_known",
            ~pl.col("sample_type").is_in(SAMPLE_TYPES),
            pl.lit("sample_type '") + pl.col("sample_type") + pl.lit(f"' is not one of {', '.join(SAMPLE_TYPES)}"),
        )
    )
    # a retest without a manifest date is dated by its run_date (transforms.retest): never a guess
    checks.append(iso_date_check("run_date", "__run_date_text"))
    checks.append(
        (
            "unit_present",
            pl.col("unit_raw").is_null(),
            pl.lit("no unit for ") + label + pl.lit("; fill the unit column"),
        )
    )
    return finish(frame, source=source, sha256=sha256, checks=checks)
