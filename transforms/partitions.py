"""Partitions of the work by analyte: normalisation and reference building run part by part, so that memory
follows the largest part and not the whole history, and parts can run on any worker of the task runner.

Each rule here keeps together what a step computes jointly, so the result does not depend on the parts.
"""

from __future__ import annotations

import polars as pl

from transforms.normalise import NAME_KEYS, resolve_names

WHOLE_PLATFORM_METHODS = {"bridge", "combat"}  # they pool a platform's analytes (ComBat priors) and samples


def pack(sizes: list[int], max_rows: int) -> list[int]:
    """Part numbers for units of the given sizes, in order: a part is closed before it would pass
    ``max_rows``; a unit larger than ``max_rows`` gets a part of its own. Units are never split."""
    part, filled, out = 0, 0, []
    for n in sizes:
        if filled and filled + n > max_rows:
            part, filled = part + 1, 0
        out.append(part)
        filled += n
    return out


def plan_normalise(
    names: pl.DataFrame, lookup: pl.DataFrame, methods: dict[str, str] | None = None, *, max_rows: int = 2_000_000
) -> pl.DataFrame:
    """Parts of normalisation. ``names`` has platform, panel, analyte_raw, n (raw rows) and optionally
    uniprot_raw (its rows may repeat a name); ``lookup`` is :func:`transforms.normalise.dictionary_lookup`.
    Names resolve to analytes as a part resolves them (:func:`transforms.normalise.resolve_names`).

    Every step of normalisation works within one analyte of one platform and panel (plate shifts, plate
    checks, replicates), so that is a unit (with every raw name that resolves to it). Bridging and ComBat
    pool a platform's analytes and samples, so a platform corrected by them is one unit. Returns platform,
    panel, analyte_raw and part.
    """
    methods = methods or {}
    sizes_of = names.group_by(NAME_KEYS).agg(pl.col("n").sum())
    resolved = resolve_names(names, lookup).select(*NAME_KEYS, "analyte", "key")
    keyed = sizes_of.join(resolved, on=NAME_KEYS, how="left", nulls_equal=True)
    whole = pl.col("platform").replace_strict(methods, default="plate_control").is_in(list(WHOLE_PLATFORM_METHODS))
    analyte = pl.coalesce("analyte", pl.lit("?") + pl.col("key"))  # an unknown name is held: any part will do
    unit = (
        pl.when(whole)
        .then(pl.col("platform"))
        .otherwise(pl.concat_str([pl.col("platform"), pl.col("panel").fill_null(""), analyte], separator="\x1f"))
    )
    units = keyed.with_columns(unit.alias("unit"))
    sizes = units.group_by("unit").agg(pl.col("n").sum()).sort("unit")
    parts = sizes.with_columns(pl.Series("part", pack(sizes["n"].to_list(), max_rows), dtype=pl.Int64))
    return units.join(parts.select("unit", "part"), on="unit").select("platform", "panel", "analyte_raw", "part")


def plan_reference(sizes: pl.DataFrame, *, max_rows: int = 2_000_000) -> pl.DataFrame:
    """Parts of the reference build. ``sizes`` has analyte and n (measurements), and optionally file (where
    the analyte's rows are: one row per analyte and file). Reference groups, retest variation and cohort
    comparisons never span analytes, so an analyte is a unit. Analytes are packed in the order of the first
    file that holds them, then by name, so that a part reads few files. Returns analyte and part."""
    if "file" not in sizes.columns:
        sizes = sizes.with_columns(pl.lit("").alias("file"))
    ordered = sizes.group_by("analyte").agg(pl.col("file").min(), pl.col("n").sum()).sort("file", "analyte")
    return ordered.select("analyte", pl.Series("part", pack(ordered["n"].to_list(), max_rows), dtype=pl.Int64))


__all__ = ["pack", "plan_normalise", "plan_reference"]
