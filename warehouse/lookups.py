"""Reference data files shipped with the code (read here so that transforms stay free of I/O)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

ANALYTE_DICTIONARY = Path(__file__).resolve().parent.parent / "transforms" / "analytes.csv"


def read_analyte_dictionary(path: Path = ANALYTE_DICTIONARY, extra: Path | None = None) -> tuple[pl.DataFrame, str]:
    """The curated analyte dictionary and the sha256 of its content (recorded in release manifests).

    ``extra``: a lab's own additions in the same CSV layout (setting ``analyte_dictionary_extra``), for
    panels the curated file does not cover; an analyte in both must not appear twice.
    """
    data = path.read_bytes()
    frames = [_parse(data)]
    digest = hashlib.sha256(data)
    if extra is not None:
        added = extra.read_bytes()
        frames.append(_parse(added))
        digest.update(added)
        both = set(frames[0]["hgnc"]) & set(frames[1]["hgnc"])
        if both:
            msg = f"{extra}: analytes already in the curated dictionary: {', '.join(sorted(both)[:10])}"
            raise ValueError(msg)
    return pl.concat(frames, how="diagonal_relaxed"), digest.hexdigest()


def _parse(data: bytes) -> pl.DataFrame:
    frame = pl.read_csv(data, comment_prefix="#", schema_overrides={"mw_kda": pl.Float64}, infer_schema=False)
    return frame.with_columns(pl.col("mw_kda").cast(pl.Float64))
