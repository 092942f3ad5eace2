"""Sample manifests: sample_id -> subject, cohort, matrix, sex, age, dates, severity, illness duration.

Values are normalised only where the meaning is unambiguous (``female`` -> ``F``, ``Serum`` -> ``serum``);
anything else is held back with the row's line and the field to fix, never guessed.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from transforms import schema
from transforms.readers.common import iso_date, iso_date_check, split_bad, text_col, with_lines
from transforms.text import Table, display_text, uses_decimal_comma, with_numbers

COHORTS = ["healthy", "patient"]
MATRICES = ["serum", "plasma"]
SEX = {"f": "F", "female": "F", "w": "F", "m": "M", "male": "M"}
SEVERITY_LABELS = ["mild", "moderate", "severe", "very severe"]


def _written(name: str, otherwise: str) -> pl.Expr:
    """The start of a reason for a ``name`` cell that cannot be used: the value as written with ``otherwise``,
    or that there is none (an empty cell, or a manifest without the column, which failed its load with a
    database error before it was held back)."""
    return (
        pl.when(pl.col(f"__{name}_text").is_null())
        .then(pl.lit(f"no {name} (an empty cell, or no {name} column)"))
        .otherwise(pl.lit(f"{name} '") + pl.col(f"__{name}_text") + pl.lit(f"' {otherwise}"))
    )


def _not_one_of(name: str, allowed: list[str]) -> pl.Expr:
    """The start of a reason for a ``name`` cell that is not one of ``allowed`` (:func:`_written`)."""
    return _written(name, f"is not one of {', '.join(allowed)}")


def read_manifest(
    table: Table, *, source: str, sha256: str, today: date | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Manifest rows, and the rows held back with a reason (never fixed silently). ``today`` bounds the
    collection dates (a date after it is a typing error; default: the machine's date)."""
    today = today or date.today()
    frame = with_lines(table)
    sev_text = text_col(table, "severity")
    numbers = {"age_": text_col(table, "age"), "sev_": sev_text, "dur_": text_col(table, "illness_duration_years")}
    # a ';' or tab manifest from a European spreadsheet writes 40,5: read as the exports are (docs/input-formats.md)
    cells = pl.concat([frame.select(e.alias("c"))["c"] for e in numbers.values()])
    comma = uses_decimal_comma(cells, table.separator)
    for prefix, cell in numbers.items():
        frame = with_numbers(frame, cell, prefix=prefix, decimal_comma=comma)
    frame = frame.with_columns(
        text_col(table, "sample_id").alias("sample_id"),
        text_col(table, "subject_id").alias("subject_id"),
        text_col(table, "cohort").str.to_lowercase().alias("cohort"),
        text_col(table, "matrix").str.to_lowercase().alias("matrix"),
        text_col(table, "sex").str.to_lowercase().replace_strict(SEX, default=None).alias("sex"),
        text_col(table, "sex").alias("__sex_text"),
        text_col(table, "cohort").alias("__cohort_text"),
        text_col(table, "matrix").alias("__matrix_text"),
        text_col(table, "age").alias("__age_text"),
        text_col(table, "illness_duration_years").alias("__dur_text"),
        iso_date(text_col(table, "collection_date")).alias("collection_date"),
        text_col(table, "collection_date").alias("__date_text"),
        sev_text.str.to_lowercase().alias("__sev_text"),
    ).with_columns(
        pl.col("age_value").alias("age"),
        pl.col("sev_value").alias("severity"),
        pl.when(pl.col("__sev_text").is_in(SEVERITY_LABELS)).then(pl.col("__sev_text")).alias("severity_label"),
        pl.col("dur_value").alias("illness_duration_years"),
    )
    checks: list[tuple[str, pl.Expr, pl.Expr]] = [
        ("sample_id_present", pl.col("sample_id").is_null(), pl.lit("no sample_id")),
        (
            "subject_id_present",
            pl.col("subject_id").is_null(),
            pl.lit("no subject_id for sample ") + pl.col("sample_id"),
        ),
        (
            "cohort_known",
            ~pl.col("cohort").is_in(COHORTS).fill_null(False),  # an empty cell or no column: held, not loaded
            _not_one_of("cohort", COHORTS)
            + pl.lit(
                "; write healthy for a person of the reference group (a healthy control) or patient (other groups "
                "are not compared here)"
            ),
        ),
        (
            "matrix_known",
            ~pl.col("matrix").is_in(MATRICES).fill_null(False),
            _not_one_of("matrix", MATRICES)
            + pl.lit("; write serum or plasma (the two are never pooled in one reference)"),
        ),
        (
            "sex_known",
            pl.col("sex").is_null(),
            pl.lit("sex '")
            + pl.col("__sex_text").fill_null("")
            + pl.lit("' is not F/M (female/male); write F or M (a code such as 1/2 is never guessed)"),
        ),
        (
            "age_plausible",
            pl.col("age").is_null() | (pl.col("age") < 0) | (pl.col("age") > 120),
            _written("age", "is not a number of years in 0-120")
            + pl.lit("; write the age in years as a number, such as 41 or 41.5"),
        ),
        iso_date_check("collection_date", "__date_text"),
        (
            "collection_date_not_future",
            pl.col("collection_date") > pl.lit(today),
            pl.lit("collection_date ")
            + pl.col("__date_text")
            + pl.lit(f" is after today ({today.isoformat()}); correct the date"),
        ),
        (
            "severity_valid",
            (pl.col("__sev_text").is_not_null() & pl.col("severity").is_null() & pl.col("severity_label").is_null())
            | (pl.col("severity") < 0)
            | (pl.col("severity") > 100),
            pl.lit("severity '")
            + pl.col("__sev_text").fill_null("")
            + pl.lit(f"' is neither 0-100 nor one of {', '.join(SEVERITY_LABELS)}; write one, or leave the cell empty"),
        ),
        (
            "illness_duration_valid",  # was loaded as no duration, without a word
            (pl.col("__dur_text").is_not_null() & pl.col("illness_duration_years").is_null())
            | (pl.col("illness_duration_years") < 0)
            | (pl.col("illness_duration_years") > 120),
            pl.lit("illness_duration_years '")
            + pl.col("__dur_text").fill_null("")
            + pl.lit("' is not a number of years in 0-120; write one, such as 2.5, or leave the cell empty"),
        ),
    ]
    held: list[pl.DataFrame] = []
    for check, bad, reason in checks:
        frame, q = split_bad(frame, bad=bad, reason=reason, check=check, source=source, sha256=sha256)
        held.append(q)
    # a sample listed twice with different content is ambiguous: hold back every copy
    dup = pl.col("sample_id").is_duplicated()
    frame, q = split_bad(
        frame,
        bad=dup,
        reason=pl.lit("sample ") + pl.col("sample_id") + pl.lit(" is listed more than once in this manifest"),
        check="sample_id_unique",
        source=source,
        sha256=sha256,
    )
    held.append(q)
    # one person has one sex and one cohort: a subject listed with two is ambiguous, hold back all its rows
    for column, check in (("sex", "subject_sex_consistent"), ("cohort", "subject_cohort_consistent")):
        values = pl.col(column).unique().sort().over("subject_id", mapping_strategy="join")
        frame = frame.with_columns(values.list.join(" and ").alias("__values"))
        frame, q = split_bad(
            frame,
            bad=pl.col(column).n_unique().over("subject_id") > 1,
            reason=pl.lit("subject ")
            + pl.col("subject_id")
            + pl.lit(f" is listed with {column} ")
            + pl.col("__values")
            + pl.lit(" in this manifest; one person has one: correct the rows"),
            check=check,
            source=source,
            sha256=sha256,
        )
        held.append(q)
    samples = frame.with_columns(pl.lit(source).alias("source_file"), pl.lit(sha256).alias("source_sha256")).select(
        [*[c for c in schema.SAMPLE if c != "subject_key"], "subject_id"]
    )
    samples = samples.with_columns([pl.col(c).cast(t) for c, t in schema.SAMPLE.items() if c in samples.columns])
    return samples, pl.concat(held)


#: What two manifests must say alike of one sample: a later manifest never overrides another one silently.
SAMPLE_FIELDS = [
    "subject_key",
    "cohort",
    "matrix",
    "sex",
    "age",
    "collection_date",
    "severity",
    "severity_label",
    "illness_duration_years",
]


def _differences(new: dict[str, object], old: dict[str, object]) -> str:
    """'cohort healthy there, patient here; age 40 there, 60 here' (the subject by name only: it is a keyed hash)."""
    out = []
    for field in SAMPLE_FIELDS:
        if new[field] != old[field]:
            there, here = (display_text(v) if v is not None else "none" for v in (old[field], new[field]))
            out.append("another subject" if field == "subject_key" else f"{field} {there} there, {here} here")
    return "; ".join(out)


def against_loaded(samples: pl.DataFrame, loaded: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A manifest's samples (schema.SAMPLE, subjects pseudonymised) checked against the samples other loaded
    manifests list (``loaded``, same schema). A sample listed there with other fields, or a subject listed
    there with another sex or cohort, is held back with a reason naming the other manifest and its line; what
    is loaded stays as it is. The same sample listed alike is kept. Returns (kept, held in schema.QUARANTINE).

    Before, the manifest loaded last won: a healthy sample a second manifest called a patient's left the
    reference without a word."""
    if samples.height == 0 or loaded.height == 0:
        return samples, schema.empty(schema.QUARANTINE)
    old_by_sample: dict[object, dict[str, object]] = {}
    old_by_subject: dict[object, list[dict[str, object]]] = {}
    for r in loaded.to_dicts():
        old_by_sample[r["sample_id"]] = r
        old_by_subject.setdefault(r["subject_key"], []).append(r)
    reasons: list[tuple[int, str, str]] = []  # row index, check, reason
    for i, new in enumerate(samples.to_dicts()):
        old = old_by_sample.get(new["sample_id"])
        if old is not None:
            diff = _differences(new, old)
            if diff:
                reasons.append(
                    (
                        i,
                        "sample_listed_alike",
                        f"sample {new['sample_id']} is listed by {old['source_file']} (line {old['line_number']}) "
                        f"differently: {diff}. One of them is wrong: correct it (a new version of a manifest, under "
                        "the same name, replaces it)",
                    )
                )
            continue
        for column in ("sex", "cohort"):
            other = next((r for r in old_by_subject.get(new["subject_key"], []) if r[column] != new[column]), None)
            if other is not None:
                reasons.append(
                    (
                        i,
                        f"subject_{column}_consistent",
                        f"the subject of sample {new['sample_id']} is listed by {other['source_file']} (line "
                        f"{other['line_number']}, sample {other['sample_id']}) with {column} {other[column]}, here "
                        f"{new[column]}; one person has one: correct the rows",
                    )
                )
                break
    if not reasons:
        return samples, schema.empty(schema.QUARANTINE)
    index = pl.Series("__i", [r[0] for r in reasons], dtype=pl.UInt32)
    held = (
        samples[index]
        .with_columns(
            pl.lit("parse").alias("stage"),
            pl.Series("check", [r[1] for r in reasons], dtype=pl.String),
            pl.Series("__why", [r[2] for r in reasons], dtype=pl.String),
        )
        .with_columns(
            (
                pl.col("source_file")
                + pl.lit(": line ")
                + pl.col("line_number").cast(pl.String)
                + pl.lit(": ")
                + pl.col("__why")
            ).alias("reason")
        )
    )
    kept = samples.with_row_index("__i").filter(~pl.col("__i").is_in(index.implode())).drop("__i")
    return kept, schema.conform(held, schema.QUARANTINE)
