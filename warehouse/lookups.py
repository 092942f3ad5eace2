"""Reference data files shipped with the code (read here so that transforms stay free of I/O)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

ANALYTE_DICTIONARY = Path(__file__).resolve().parent.parent / "transforms" / "analytes.csv"


#: The columns of an analyte dictionary (transforms/analytes.csv, and a lab's own in the same layout).
DICTIONARY_COLUMNS = ("hgnc", "uniprot", "label", "mw_kda", "aliases")


class DictionaryError(ValueError):
    """A lab's analyte dictionary (``analyte_dictionary_extra``) that cannot be used; the message names the file,
    the row or column, and what to write."""


def read_analyte_dictionary(path: Path = ANALYTE_DICTIONARY, extra: Path | None = None) -> tuple[pl.DataFrame, str]:
    """The curated analyte dictionary and the sha256 of its content (recorded in release manifests).

    ``extra``: a lab's own additions in the same CSV layout (setting ``analyte_dictionary_extra``), for
    panels the curated file does not cover; an analyte in both must not appear twice. Raises
    DictionaryError for an extra file that is missing, not in the layout, or has a bad cell: it stopped a run
    in a polars traceback ("could not parse `abc` as dtype `f64`").
    """
    data = path.read_bytes()
    frames = [_parse(data, str(path))]
    digest = hashlib.sha256(data)
    if extra is not None:
        named = f"{extra} (analyte_dictionary_extra)"
        try:
            added = extra.read_bytes()
        except OSError as exc:
            msg = f"{named}: {exc.strerror or exc}; give a CSV that exists"
            raise DictionaryError(msg) from exc
        frames.append(_parse(added, named))
        digest.update(added)
        both = set(frames[0]["hgnc"]) & set(frames[1]["hgnc"])
        if both:
            msg = f"{named}: analytes already in the curated dictionary: {', '.join(sorted(both)[:10])}; remove them"
            raise DictionaryError(msg)
    return pl.concat(frames, how="diagonal_relaxed"), digest.hexdigest()


def _parse(data: bytes, source: str) -> pl.DataFrame:
    layout = f"the layout of transforms/analytes.csv: {', '.join(DICTIONARY_COLUMNS)}, separated by commas"
    try:
        frame = pl.read_csv(data, comment_prefix="#", infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        msg = f"{source}: not a CSV table ({str(exc).splitlines()[0]}); write it in {layout}"
        raise DictionaryError(msg) from exc
    missing = [c for c in DICTIONARY_COLUMNS if c not in frame.columns]
    if missing:
        msg = f"{source}: no column {', '.join(missing)} (it has {', '.join(frame.columns[:6])}); write it in {layout}"
        raise DictionaryError(msg)
    mw = pl.col("mw_kda").str.strip_chars().replace("", None)
    checked = frame.with_columns(mw.cast(pl.Float64, strict=False).alias("__mw"))
    unnamed = checked.filter(pl.col("hgnc").is_null() | (pl.col("hgnc").str.strip_chars() == ""))
    if unnamed.height:
        msg = f"{source}: {unnamed.height} row(s) without an hgnc symbol; every analyte needs one"
        raise DictionaryError(msg)
    bad = checked.filter(pl.col("__mw").is_null() & mw.is_not_null())
    if bad.height:
        first = bad.row(0, named=True)
        msg = f"{source}: mw_kda {first['mw_kda']!r} of {first['hgnc']} is not a number (kilodaltons, e.g. 21.0)"
        raise DictionaryError(msg)
    twice = checked.filter(pl.col("hgnc").is_duplicated())["hgnc"].unique().sort().to_list()
    if twice:
        msg = f"{source}: {', '.join(twice[:10])} listed more than once; keep one row per analyte"
        raise DictionaryError(msg)
    return checked.with_columns(pl.col("__mw").alias("mw_kda")).drop("__mw")
