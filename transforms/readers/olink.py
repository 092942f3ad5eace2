"""Olink NPX long exports (Target 48/96, Explore): CSV with ';' + decimal commas or ',', Excel, Parquet.

NPX is log2 relative and stays NPX: no conversion to a concentration here or later. Values below LOD
are kept as numbers and flagged ``below_lod`` with the LOD as the limit.
"""

from __future__ import annotations

import polars as pl

from transforms.readers.common import column, finish, text_col, value_checks, with_lines
from transforms.text import Table, uses_decimal_comma, with_numbers

#: The LOD columns a Target file may carry, the first present read: NPX Manager writes LOD; later software a
#: plate's LOD or the highest of its plates' (docs/input-formats.md).
LOD_COLUMNS = ("LOD", "PlateLOD", "Plate_LOD", "MaxLOD")
#: Every column read_olink reads (any case): a clean export is parsed for these alone (OlinkID, MissingFreq,
#: Normalization and the like are not parsed; the file itself stays in the archive).
COLUMNS = (
    "SampleID",
    "Sample_Type",
    "SampleType",
    "NPX",
    *LOD_COLUMNS,
    "QC_Warning",
    "Assay_Warning",
    "PlateID",
    "Assay",
    "UniProt",
    "Panel",
)

CONTROL_PATTERN = r"(?i)(control|ipc|^neg|negative)"
CONTROL_TYPES = ["sample_control", "plate_control", "negative_control", "control"]


def read_olink(
    table: Table, *, source: str, sha256: str, hold_warnings: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read an Olink Target 48 / 96 long NPX table. ``QC_Warning`` and ``Assay_Warning`` cells that are not a
    pass load as ``vendor_qc``, or, with ``hold_warnings`` (the setting ``hold_vendor_warnings``), are held
    back (``vendor_qc_warning``) with the sample, plate and flag, as Explore files' WARN rows are."""
    frame = with_lines(table)
    npx_name = next(c for c in frame.columns if c.lower() == "npx")
    decimal_comma = uses_decimal_comma(frame[npx_name], table.separator)
    sample = text_col(table, "SampleID")
    stype = text_col(table, "Sample_Type", "SampleType").str.to_lowercase()
    frame = with_numbers(frame, pl.col(npx_name), decimal_comma=decimal_comma)
    frame = with_numbers(frame, text_col(table, *LOD_COLUMNS), decimal_comma=decimal_comma, prefix="lod_")
    flags = [f for f in (_warning(table, "QC_Warning"), _warning(table, "Assay_Warning")) if f is not None]
    frame = frame.with_columns(
        sample.alias("sample_id"),
        text_col(table, "PlateID").alias("plate_id"),
        text_col(table, "Assay").alias("analyte_raw"),
        text_col(table, "UniProt").alias("uniprot_raw"),
        text_col(table, "Panel").alias("panel"),
        pl.col(npx_name).alias("value_text"),
        pl.lit("NPX").alias("unit_raw"),
        pl.lit("olink").alias("platform"),
        pl.lit(None, dtype=pl.String).alias("well"),
        (pl.concat_str(flags, separator="; ", ignore_nulls=True) if flags else pl.lit(None, pl.String)).alias(
            "vendor_qc"
        ),
    )
    # sample-level facts from the distinct sample ids (far fewer than rows): on more than one plate, and
    # what the id says (control, bridge)
    per_sample = plates_per_sample(frame, by_panel=True)
    ids = per_sample.get_column("sample_id")
    on_plates = per_sample.filter(pl.col("several")).get_column("sample_id")
    named_control = ids.filter(ids.str.contains(CONTROL_PATTERN))
    named_bridge = ids.filter(ids.str.contains("(?i)bridge"))
    is_control = stype.is_in(CONTROL_TYPES) | (stype.is_null() & pl.col("sample_id").is_in(named_control.implode()))
    frame = frame.with_columns(
        pl.when(is_control)
        .then(pl.lit("control"))
        .when(pl.col("sample_id").is_in(named_bridge.implode()) | pl.col("sample_id").is_in(on_plates.implode()))
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
    checks = value_checks(label)
    if hold_warnings:
        checks.append(warning_held(pl.col("vendor_qc").is_not_null(), label))
    return finish(frame, source=source, sha256=sha256, checks=checks)


def lod_source(table: Table) -> str:
    """Where a Target file's LOD comes from, for the ledger (``lod_source`` in ``files.file_info_json``)."""
    found = column(table, *LOD_COLUMNS)
    return f"column {found}" if found else "none: the file has no LOD column, so no value is flagged below the LOD"


def sample_on_plate() -> pl.Expr:
    """ "sample S on plate P" of a held row, for its reason (text or dictionary-coded columns)."""
    return (
        pl.lit("sample ")
        + pl.col("sample_id").cast(pl.String).fill_null("?")
        + pl.lit(" on plate ")
        + pl.col("plate_id").cast(pl.String).fill_null("?")
    )


def warning_held(flagged: pl.Expr, label: pl.Expr) -> tuple[str, pl.Expr, pl.Expr]:
    """The row check that holds back the ``flagged`` rows Olink's software warned about (``vendor_qc``) when
    the setting hold_vendor_warnings is on, for Target and Explore files alike."""
    reason = (
        sample_on_plate()
        + pl.lit(", ")
        + label
        + pl.lit(": Olink flagged ")
        + pl.col("vendor_qc")
        + pl.lit("; held back because hold_vendor_warnings is on")
    )
    return "vendor_qc_warning", flagged, reason


def plates_per_sample(frame: pl.DataFrame, *, by_panel: bool = False) -> pl.DataFrame:
    """Each distinct sample id, and whether its rows name more than one plate (a row without a plate id is
    held back by the raw suite and says nothing of a second plate). Two plain aggregates on two columns:
    ``n_unique`` per group on the whole frame took four times as long (1.8 s at 10 M rows).

    ``by_panel``: more than one plate of one panel. Olink Target runs each panel on plates of its own, so a
    sample measured in two panels is on two plates without being run twice (a bridge)."""
    plate = pl.col("plate_id")
    several = (plate.min() != plate.max()).fill_null(False)
    panels = frame.get_column("panel") if by_panel else None
    if panels is None or panels.min() == panels.max():  # one panel (or none named): the plain group-by
        return frame.select("sample_id", "plate_id").group_by("sample_id").agg(several.alias("several"))
    per_panel = frame.select("sample_id", "panel", "plate_id").group_by("sample_id", "panel").agg(several)
    return per_panel.group_by("sample_id").agg(pl.col("plate_id").any().alias("several"))


PASSED = ["pass", "ok"]  # Olink QC_Warning / Assay_Warning values that are no warning (any case)


def _warning(table: Table, name: str) -> pl.Expr | None:
    """``<name>=<value>`` where the warning column holds something else than a pass, else null; None when
    no row has a warning (the common case, found by its lowest and highest cell, or by exact comparisons,
    instead of lower-casing)."""
    found = column(table, name)
    if found is None:
        return None
    cells = table.frame.get_column(found)
    quiet = [*PASSED, *(p.upper() for p in PASSED), *(p.title() for p in PASSED), ""]
    lowest, highest = cells.min(), cells.max()
    if lowest is None or (lowest == highest and lowest in quiet):  # one value in every row: no set lookup
        return None
    if (cells.is_in(quiet) | cells.is_null()).all():
        return None
    cell = text_col(table, name)
    return pl.when(cell.str.to_lowercase().is_in(PASSED).not_()).then(pl.lit(f"{name}=") + cell)
