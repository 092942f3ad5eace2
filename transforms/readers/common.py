"""Pieces every vendor reader shares: column lookup, numeric cells, splitting good rows from bad."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date

import polars as pl

from transforms import schema
from transforms.text import Table


def fold_header(name: str) -> str:
    """A column name as people write it, folded to the documented one: "Sample ID" -> sample_id,
    "Age (years)" -> age, "Collection-Date" -> collection_date (a trailing unit in brackets is dropped)."""
    text = re.sub(r"\s*[\(\[][^\)\]]*[\)\]]\s*$", "", name.strip().strip('"').strip())
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def column(table: Table, *names: str) -> str | None:
    """The first column of ``table`` whose name matches one of ``names`` (case-insensitive)."""
    lookup = {c.lower(): c for c in table.frame.columns}
    for n in names:
        if n.lower() in lookup:
            return lookup[n.lower()]
    return None


def with_folded_names(table: Table) -> Table:
    """``table`` with its columns named as :func:`fold_header` folds them (for the layouts people write by
    hand), unless two of them fold alike: then as written."""
    names = table.frame.columns
    folded = [fold_header(c) for c in names]
    if len(set(folded)) < len(folded) or folded == names:
        return table
    return replace(table, frame=table.frame.rename(dict(zip(names, folded, strict=True))))


def text_col(table: Table, *names: str) -> pl.Expr:
    """A text column by any of its names, or typed nulls when the export does not carry it."""
    name = column(table, *names)
    if name is None:
        return pl.lit(None, dtype=pl.String)
    if not table.frame.get_column(name).eq("").any():  # the common case: the column itself, not a copy
        return pl.col(name)
    return pl.when(pl.col(name) == "").then(None).otherwise(pl.col(name))


#: A date as YYYY-MM-DD, optionally with the time a spreadsheet writes after a date cell ("2026-05-01 00:00:00").
ISO_DATE = r"^(\d{4}-\d{2}-\d{2})(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$"


def iso_date(text: pl.Expr) -> pl.Expr:
    """The date of a cell written as YYYY-MM-DD (a time after it, as Excel date cells arrive, is dropped), else
    null. Nothing else is guessed: 01/05/2026 is 1 May in some countries and 5 January in others, and
    polars' own inference took the first row's reading for the whole column."""
    return text.str.strip_chars().str.extract(ISO_DATE, 1).str.to_date("%Y-%m-%d", strict=False)


def iso_date_check(field: str, text: str) -> tuple[str, pl.Expr, pl.Expr]:
    """The row check ``<field>_valid`` of a date column read by :func:`iso_date` (``field``) from the cell text
    kept in ``text``: a cell that holds something other than an ISO date, named with what to write."""
    return (
        f"{field}_valid",
        pl.col(field).is_null() & pl.col(text).is_not_null(),
        pl.lit(f"{field} '")
        + pl.col(text)
        + pl.lit(
            "' is not an ISO date (YYYY-MM-DD); write it as YYYY-MM-DD (a date such as 01/05/2026 is 1 May in "
            "some countries and 5 January in others, so it is never guessed)"
        ),
    )


#: A date and time as an instrument's software writes it in its computer's format: day, month and year
#: joined by ``/``, ``.`` or ``-`` (in an order to be found), then perhaps a time (with AM or PM).
INSTRUMENT_DATE = re.compile(
    r"(?P<a>\d{1,2})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P=sep)(?P<year>\d{4})(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp][Mm])?)?"
)


def instrument_date(text: str | None) -> date | None:
    """The date of an instrument's run stamp (xPONENT's ``BatchStartTime``), when it can be known: an ISO date;
    day first with dots (``18.05.2023``); else month or day first where one of the two is over 12
    (``5/18/2023 11:03:56 AM``) or both are equal. Otherwise (``5/1/2023 11:03 AM``: 1 May as a US computer
    writes it, 5 January as an Australian one does, both with AM and PM) None: never a guess."""
    if not text:
        return None
    text = text.strip()
    iso = re.match(ISO_DATE, text)
    try:
        if iso:
            return date.fromisoformat(iso[1])
        m = INSTRUMENT_DATE.fullmatch(text)
        if m is None:
            return None
        a, b, year = int(m["a"]), int(m["b"]), int(m["year"])
        if b > 12 or a == b:
            return date(year, a, b)  # month first
        if m["sep"] == "." or a > 12:
            return date(year, b, a)  # day first
    except ValueError:  # 2/30/2026
        return None
    return None


def with_lines(table: Table) -> pl.DataFrame:
    return table.frame.with_columns(pl.Series("line_number", table.line_numbers, dtype=pl.Int64))


def split_bad(
    frame: pl.DataFrame,
    *,
    bad: pl.Expr,
    reason: pl.Expr,
    check: str,
    source: str,
    sha256: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows where ``bad`` holds become quarantine rows with ``reason``; the rest are returned."""
    flagged = frame.with_columns(bad.fill_null(False).alias("__bad"))
    if not flagged["__bad"].any():  # the common case: no copy of the frame
        return frame, schema.empty(schema.QUARANTINE)
    held = flagged.filter(pl.col("__bad")).with_columns(
        pl.lit(source).alias("source_file"),
        pl.lit(sha256).alias("source_sha256"),
        pl.lit("parse").alias("stage"),
        pl.lit(check).alias("check"),
        (pl.lit(f"{source}: line ") + pl.col("line_number").cast(pl.String) + pl.lit(": ") + reason).alias("reason"),
    )
    return flagged.filter(~pl.col("__bad")).drop("__bad"), schema.conform(held, schema.QUARANTINE)


def finish(
    frame: pl.DataFrame,
    *,
    source: str,
    sha256: str,
    checks: list[tuple[str, pl.Expr, pl.Expr]],
    categorical_text: bool = False,
):
    """Apply row checks in order (each row is quarantined for the first check it fails) and conform
    (``categorical_text``: see :func:`transforms.schema.conform`)."""
    held: list[pl.DataFrame] = []
    for check, bad, reason in checks:
        frame, q = split_bad(frame, bad=bad, reason=reason, check=check, source=source, sha256=sha256)
        held.append(q)
    rows = schema.conform(
        frame.with_columns(pl.lit(source).alias("source_file"), pl.lit(sha256).alias("source_sha256")),
        schema.MEASUREMENT,
        categorical_text=categorical_text,
    )
    quarantine = pl.concat(held) if held else schema.empty(schema.QUARANTINE)
    return rows, quarantine


def value_checks(label: pl.Expr) -> list[tuple[str, pl.Expr, pl.Expr]]:
    """The row checks every measurement reader applies to its value cell."""
    return [
        (
            "value_is_number",
            ~pl.col("is_number_ok"),
            pl.lit("value '")
            + pl.col("value_text")
            + pl.lit("' for ")
            + label
            + pl.lit(" is not a number; correct the cell or re-export"),
        ),
        (
            "value_reported",
            pl.col("is_missing") & pl.col("censoring").is_null(),
            pl.lit("no value reported for ")
            + label
            + pl.lit(" (cell '")
            + pl.col("value_text").fill_null("")
            + pl.lit("'); nothing to load"),
        ),
        (
            "sample_id_present",
            pl.col("sample_id").is_null(),
            pl.lit("no sample id; add it in the export"),
        ),
        (
            "analyte_present",
            pl.col("analyte_raw").is_null(),
            pl.lit("no analyte name; add it in the export"),
        ),
    ]
