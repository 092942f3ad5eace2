"""Reference data files shipped with the code (read here so that transforms stay free of I/O)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

ANALYTE_DICTIONARY = Path(__file__).resolve().parent.parent / "transforms" / "analytes.csv"


def read_analyte_dictionary(path: Path = ANALYTE_DICTIONARY) -> tuple[pl.DataFrame, str]:
    """The curated analyte dictionary and the sha256 of its file (recorded in release manifests)."""
    data = path.read_bytes()
    frame = pl.read_csv(data, comment_prefix="#", schema_overrides={"mw_kda": pl.Float64}, infer_schema=False)
    return frame.with_columns(pl.col("mw_kda").cast(pl.Float64)), hashlib.sha256(data).hexdigest()
