"""Olink NPX long exports (Target 48/96, Explore): CSV with ';' + decimal commas or ',', Excel, Parquet.

NPX is log2 relative and stays NPX: no conversion to a concentration here or later. Values below LOD
are kept as numbers and flagged ``below_lod`` with the LOD as the limit.
"""

from __future__ import annotations

import polars as pl

from transforms.readers.common import finish, text_col, value_checks, with_lines
from transforms.text import Table, uses_decimal_comma, with_numbers

CONTROL_PATTERN = r"(?i)(control|ipc|^neg|negative)"
CONTROL_TYPES = ["sample_control", "plate_control", "negative_control", "control"]


def read_olink(table: Table, *, source: str, sha256: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = with_lines(table)
    npx_name = next(c for c in frame.columns if c.lower() == "npx")
    decimal_comma = uses_decimal_comma(frame[npx_name], table.separator)
    sample = text_col(table, "SampleID")
    plate = text_col(table, "PlateID")
    stype = text_col(table, "Sample_Type").str.to_lowercase()
    frame = with_numbers(frame, pl.col(npx_name), decimal_comma=decimal_comma)
    frame = with_numbers(frame, text_col(table, "LOD"), decimal_comma=decimal_comma, prefix="lod_")
    frame = frame.with_columns(
        sample.alias("sample_id"),
        plate.alias("plate_id"),
        text_col(table, "Assay").alias("analyte_raw"),
        text_col(table, "Panel").alias("panel"),
        pl.col(npx_name).alias("value_text"),
        pl.lit("NPX").alias("unit_raw"),
        pl.lit("olink").alias("platform"),
        pl.lit(None, dtype=pl.String).alias("well"),
        pl.concat_str(
            [
                pl.when(text_col(table, "QC_Warning").str.to_lowercase().is_in(["pass", "ok"]).not_()).then(
                    pl.lit("QC_Warning=") + text_col(table, "QC_Warning")
                ),
                pl.when(text_col(table, "Assay_Warning").str.to_lowercase().is_in(["pass", "ok"]).not_()).then(
                    pl.lit("Assay_Warning=") + text_col(table, "Assay_Warning")
                ),
            ],
            separator="; ",
            ignore_nulls=True,
        ).alias("vendor_qc"),
    )
    on_plates = frame.group_by("sample_id").agg(pl.col("plate_id").n_unique().alias("__plates"))
    frame = frame.join(on_plates, on="sample_id", how="left", nulls_equal=True)
    is_control = stype.is_in(CONTROL_TYPES) | (stype.is_null() & sample.str.contains(CONTROL_PATTERN))
    frame = frame.with_columns(
        pl.when(is_control)
        .then(pl.lit("control"))
        .when(sample.str.contains("(?i)bridge") | (pl.col("__plates") > 1))
        .then(pl.lit("bridge"))
        .otherwise(pl.lit("sample"))
        .alias("sample_type"),
        pl.col("lod_value").alias("lod"),
        pl.when(pl.col("censoring").is_null() & (pl.col("value") < pl.col("lod_value")))
        .then(pl.lit("below_lod"))
        .otherwise(pl.col("censoring"))
        .alias("censoring"),
    ).with_columns(
        pl.when((pl.col("censoring") == "below_lod") & pl.col("limit_value").is_null())
        .then(pl.col("lod"))
        .otherwise(pl.col("limit_value"))
        .alias("limit_value"),
        pl.col("vendor_qc").replace("", None),
    )
    label = pl.col("analyte_raw").fill_null("?")
    return finish(frame, source=source, sha256=sha256, checks=value_checks(label))
