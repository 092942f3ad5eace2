"""A person's retest as the lab exports it, brought onto a release's scale (frozen normalisation).

Pure functions: the canonical rows of the exports (``transforms.readers``) and the release's tables in, the
person's normalised values out. :func:`person_samples` decides which study samples are the person's and
when they were taken; :func:`frozen_normalise` applies the release's plate-control anchors
(``normalisation_anchors``) to the new plates, plate by plate, and combines replicates as the pipeline
does. A plate without the controls the anchors need is refused with its reason, never scored uncorrected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from transforms import schema
from transforms.batches import combat_new_batch_frame
from transforms.normalise import (
    COMBAT_COVARIATES,
    COMBAT_PREFIX,
    LOG_SCALE_UNITS,
    MEASURED_TYPES,
    PLATE_KEYS,
    combine_replicates,
    correct_plates_frozen,
    held_rows,
    ids_alike,
)

#: batch_method of values read from the generic tidy format: someone has already normalised them.
TIDY_METHOD = "as given: generic tidy values are taken as already on the release's scale"

#: Layouts whose values are taken as they are (no plates, no controls of their own).
AS_GIVEN_LAYOUTS = {"tidy"}


#: The cohort of a person scored without a manifest.
RETEST_COHORT = "retest"


class PersonError(ValueError):
    """The exports and the options do not say whose samples these are; the message says what to add."""


@dataclass(frozen=True)
class Person:
    """One person as the command line describes them (when no manifest does)."""

    subject: str = "person"
    sex: str | None = None
    age: float | None = None
    matrix: str = "serum"


#: An age a person can have, in years (as the manifest checks it).
AGE_YEARS = (0.0, 120.0)


def described_person(
    subject: str = "person", sex: str | None = None, age: float | None = None, matrix: str = "serum"
) -> Person:
    """The person the command line (or an app) describes, checked as a manifest row is (the manifest reader):
    sex F or M (female, male, w and any case read as such), an age of 0 to 120 years, a matrix the pipeline
    knows. PersonError names the field to correct: an unknown sex was printed back on the person's page
    and matched no sex-specific group, and an age of -3 was shown as it was given."""
    from transforms.readers.manifest import MATRICES, SEX

    coded = None
    if sex is not None:
        coded = SEX.get(sex.strip().lower())
        if coded is None:
            msg = f"sex {sex!r}: write F or M (female or male)"
            raise PersonError(msg)
    if age is not None and not AGE_YEARS[0] <= age <= AGE_YEARS[1]:  # NaN fails the test: refused too
        msg = f"age {age:g}: write the age in years, 0 to 120"
        raise PersonError(msg)
    if matrix.strip().lower() not in MATRICES:
        msg = f"matrix {matrix!r}: write one of {', '.join(MATRICES)}"
        raise PersonError(msg)
    return Person(subject=subject, sex=coded, age=age, matrix=matrix.strip().lower())


def _check_named(sample_ids: Sequence[str], found: pl.DataFrame, held: pl.DataFrame | None) -> None:
    """Raise PersonError for a named sample with no study row in the exports: with the reason its rows were
    held back, when they were."""
    missing = sorted(set(sample_ids) - set(found["sample_id"]))
    if not missing:
        return
    why = held.filter(pl.col("sample_id").is_in(missing)) if held is not None else None
    if why is not None and why.height:
        msg = f"sample {', '.join(missing)} has no row that can be scored: {why['reason'][0]}"
    else:
        msg = f"sample {', '.join(missing)} is in none of the exports; check --sample" + _alike_note(
            missing, found["sample_id"].to_list(), "the exports hold"
        )
    raise PersonError(msg)


def _alike_note(ids: Sequence[str], among: Sequence[str], where: str) -> str:
    """ " (the exports hold 0100042 ...)": the ids of ``among`` that differ from ``ids`` only by leading zeros
    or letter case, as a spreadsheet leaves an id (:func:`transforms.normalise.ids_alike`); else nothing."""
    alike = ids_alike(ids, among)
    return f" ({where} {', '.join(alike[i] for i in ids if i in alike)})" if alike else ""


def person_samples(
    rows: pl.DataFrame,
    *,
    manifest: pl.DataFrame | None = None,
    person: Person | None = None,
    sample_ids: Sequence[str] = (),
    dates: Sequence[date] = (),
    as_given: Sequence[str] = (),
    held: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The study samples of the exports that belong to the people being scored, as SAMPLE rows with
    ``subject_id`` (cohort ``retest``).

    With a ``manifest`` (rows of a sample manifest, as the ingest reads it), every study sample of the
    exports that the manifest lists is scored, each under its own subject; ``person.subject`` (when not the
    default) keeps one subject, and ``sample_ids`` keep those samples (a plate holds dozens of people).
    Without one, the person is ``person`` and their samples are ``sample_ids``, or, when none are named, the
    only study sample of each export (every sample of an ``as_given`` file: a generic tidy file is one
    person's own results); a vendor export holding several study samples needs
    ``sample_ids`` or a manifest. The collection date is the manifest's, else ``dates`` (one per export, in
    the order of ``source_file``'s first appearance), else the run date of the sample's rows. ``held``
    (schema.QUARANTINE rows already held back) lets the message for a named sample without usable rows
    give the reason.
    """
    study = rows.filter(pl.col("sample_type").is_in(MEASURED_TYPES))
    seen = study.group_by("source_file", maintain_order=True).agg(pl.col("sample_id").unique(maintain_order=True))
    if dates and len(dates) != seen.height:
        msg = f"{len(dates)} dates for {seen.height} exports with study samples; give one date per export, in order"
        raise PersonError(msg)
    date_of = dict(zip(seen["source_file"], dates, strict=True)) if dates else {}
    found = study.group_by("sample_id", "source_file", maintain_order=True).agg(pl.col("run_date").drop_nulls().first())
    if manifest is not None:
        listed = manifest.select(
            "sample_id",
            "subject_id",
            "cohort",
            "matrix",
            "sex",
            "age",
            pl.col("collection_date").alias("__manifest_date"),
        ).unique("sample_id", keep="first", maintain_order=True)
        out = found.join(listed, on="sample_id", how="inner", maintain_order="left")
        if sample_ids:
            unlisted = sorted(set(sample_ids) & set(found["sample_id"]) - set(out["sample_id"]))
            if unlisted:
                msg = f"the manifest does not list sample {', '.join(unlisted)}; check --sample or the manifest"
                msg += _alike_note(unlisted, listed["sample_id"].to_list(), "it lists")
                raise PersonError(msg)
            _check_named(sample_ids, found, held)
            out = out.filter(pl.col("sample_id").is_in(list(sample_ids)))
        if person is not None and person.subject != Person().subject:
            out = out.filter(pl.col("subject_id") == person.subject)
        if out.height == 0:
            wanted = f" for subject {person.subject}" if person is not None and person.subject != "person" else ""
            msg = f"the manifest lists none of the exports' study samples{wanted}; check the sample ids"
            raise PersonError(msg)
    else:
        person = person or Person()
        if sample_ids:
            _check_named(sample_ids, found, held)
            out = found.filter(pl.col("sample_id").is_in(list(sample_ids)))
        else:
            for file, ids in zip(seen["source_file"], seen["sample_id"], strict=True):
                if len(ids) > 1 and file not in as_given:
                    shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
                    msg = (
                        f"{file} holds {len(ids)} study samples ({shown}); name the person's with --sample, "
                        "or give the manifest that says whose each sample is"
                    )
                    raise PersonError(msg)
            out = found
        out = out.with_columns(
            pl.lit(person.subject).alias("subject_id"),
            pl.lit(RETEST_COHORT).alias("cohort"),
            pl.lit(person.matrix).alias("matrix"),
            pl.lit(person.sex, pl.String).alias("sex"),
            pl.lit(person.age, pl.Float64).alias("age"),
            pl.lit(None, pl.Date).alias("__manifest_date"),
        )
    file_date = pl.col("source_file").replace_strict(date_of, default=None, return_dtype=pl.Date)
    dated = out.with_columns(pl.coalesce("__manifest_date", file_date, "run_date").alias("collection_date"))
    return (  # one row per sample, however many exports measured it (Olink and MSD on the same draw)
        dated.group_by("sample_id", maintain_order=True)
        .agg(
            *(pl.col(c).first() for c in ("subject_id", "cohort", "matrix", "sex", "age", "collection_date")),
            pl.col("source_file").str.join(", "),
        )
        .with_columns(pl.col("cohort").fill_null(RETEST_COHORT))
    )


def frozen_normalise(
    prepared: pl.DataFrame, anchors: pl.DataFrame, *, release: str, as_given: Sequence[str] = ()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bring the log-scale rows of new exports (``normalise.prepare_measurements``, controls included) onto
    a release's scale; one row per sample x analyte (``schema.NORMALISED`` plus ``plate_shift`` and
    ``plate_controls``), and the rows refused.

    Per platform: when the release has plate-control anchors for it, every plate is corrected onto them
    (``normalise.correct_plates_frozen``; a plate without an anchored control is refused). When it has none
    (its cohort was not plate-corrected), values stay as they are and ``batch_method`` says why. Rows from
    ``as_given`` files (the generic tidy format) are taken as already normalised."""
    version = f"frozen to release {release}"
    anchors = plate_levels(anchors)
    given = pl.col("source_file").is_in(list(as_given))
    anchored = set(anchors["platform"].unique().to_list()) if anchors.height else set()
    parts, refused = [], []
    tidy = prepared.filter(given)
    if tidy.height:
        parts.append(tidy.with_columns(pl.lit(TIDY_METHOD).alias("batch_method")))
    rest = prepared.filter(~given)
    for (platform,), part in rest.group_by(["platform"], maintain_order=True):
        if platform in anchored:
            corrected, held = correct_plates_frozen(part, anchors.filter(pl.col("platform") == platform), label=version)
            parts.append(corrected)
            refused.append(held)
        else:
            parts.append(
                part.with_columns(
                    pl.lit(f"none: release {release} has no plate-control anchors for {platform}").alias("batch_method")
                )
            )
    if not parts:
        return schema.empty(NORMALISED_RETEST), schema.empty(schema.QUARANTINE)
    rows = pl.concat(parts, how="diagonal_relaxed")
    study = rows.filter(pl.col("sample_type").is_in(MEASURED_TYPES))
    keys = ["sample_id", "analyte", "platform", "panel", "unit"]
    shifts = study.group_by(keys).agg(
        pl.col("plate_shift").mean()
        if "plate_shift" in study.columns
        else pl.lit(None, pl.Float64).alias("plate_shift"),
        pl.col("plate_controls").min()
        if "plate_controls" in study.columns
        else pl.lit(None, pl.Int64).alias("plate_controls"),
    )
    combined = combine_replicates(study).join(shifts, on=keys, how="left", nulls_equal=True)
    held = pl.concat(refused, how="vertical") if refused else schema.empty(schema.QUARANTINE)
    return schema.conform(combined, NORMALISED_RETEST), held


#: The normalised rows of a retest: the pipeline's grain plus the plate shift applied and its controls.
NORMALISED_RETEST: dict[str, pl.DataType] = {
    **schema.NORMALISED,
    "plate_shift": pl.Float64(),
    "plate_controls": pl.Int64(),
}


def plate_levels(anchors: pl.DataFrame) -> pl.DataFrame:
    """The plate-control anchors of a release (releases before the ``kind`` column hold only those)."""
    if "kind" not in anchors.columns:
        return anchors
    return anchors.filter(pl.col("kind").fill_null("plate_control") == "plate_control")


def frozen_combat(
    normalised: pl.DataFrame,
    anchors: pl.DataFrame,
    samples: pl.DataFrame,
    *,
    platforms: Sequence[str],
    min_batch: int,
) -> pl.DataFrame:
    """Frozen ComBat for the ``platforms`` a release corrected with ComBat: each new batch (the ``batch`` of
    a row: an Olink run, another platform's plate) with at least ``min_batch`` study samples is brought
    onto the release's ComBat scale with the standardisation the release kept (anchors of kind
    ``combat``; ``transforms.batches.combat_new_batch_frame``), protecting cohort, sex and age as the
    release did; values, limits and LODs move together. A smaller batch keeps its frozen plate-control
    values, and ``batch_method`` says why."""
    if not platforms:
        return normalised
    fits = anchors.filter(pl.col("kind") == "combat") if "kind" in anchors.columns else anchors.clear()
    people = samples.select("sample_id", "cohort", pl.col("sex").alias("__sex"), pl.col("age").alias("__age"))
    rows = normalised.join(people, on="sample_id", how="left")
    keys = ["platform", "panel", "unit", "batch"]
    out = []
    for key, part in rows.group_by(keys, maintain_order=True):
        platform, panel, unit, _ = key
        fit = fits.filter(
            (pl.col("platform") == platform) & _same(pl.col("panel"), panel) & (pl.col("unit") == unit)
        ).select(
            "analyte",
            pl.col("control_id").str.strip_prefix(COMBAT_PREFIX).alias("term"),
            pl.col("level").alias("value"),
        )
        if platform not in platforms:
            out.append(part)
            continue
        n = part["sample_id"].n_unique()
        if fit.height == 0 or n < min_batch:
            why = (
                "the release kept no ComBat fit for this marker"
                if fit.height == 0
                else f"this batch has {n} study samples, frozen ComBat needs {min_batch}"
            )
            out.append(part.with_columns(pl.col("batch_method") + pl.lit(f"; ComBat not repeated: {why}")))
            continue
        fixed = combat_new_batch_frame(part, fit, covariates=COMBAT_COVARIATES)
        delta = pl.col("corrected") - pl.col("log_value")
        npx = pl.col("unit").is_in(list(LOG_SCALE_UNITS))
        moved = fixed.with_columns(
            pl.col("corrected").alias("log_value"),
            pl.when(npx).then(pl.col("value") + delta).otherwise(pl.col("value") * delta.exp()).alias("value"),
            pl.when(npx)
            .then(pl.col("limit_value") + delta)
            .otherwise(pl.col("limit_value") * delta.exp())
            .alias("limit_value"),
            pl.when(npx).then(pl.col("lod") + delta).otherwise(pl.col("lod") * delta.exp()).alias("lod"),
            pl.when(delta.abs() > 0)
            .then(pl.col("batch_method") + pl.lit(f"+combat (frozen, a batch of {n})"))
            .otherwise(
                pl.col("batch_method") + pl.lit("; ComBat not repeated: the release kept no fit for this marker")
            )
            .alias("batch_method"),
        ).drop("corrected")
        out.append(moved)
    if not out:
        return normalised
    return pl.concat(out, how="diagonal_relaxed").select(normalised.columns)


def _same(column: pl.Expr, value: object) -> pl.Expr:
    return column.is_null() if value is None else column.eq(value)


def unscored(rows: pl.DataFrame, reason: str, *, check: str) -> pl.DataFrame:
    """Every row of ``rows`` (canonical measurement rows) held back with one reason, in schema.QUARANTINE."""
    return held_rows(rows, stage="score", check=check, reason=pl.lit(reason))


__all__ = [
    "AS_GIVEN_LAYOUTS",
    "NORMALISED_RETEST",
    "PLATE_KEYS",
    "TIDY_METHOD",
    "Person",
    "PersonError",
    "described_person",
    "frozen_combat",
    "frozen_normalise",
    "person_samples",
    "unscored",
]
