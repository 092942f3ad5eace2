"""Client for downstream apps: load a published release with checksum verification, and score a person's
retest exports against it.

:func:`load_release` needs only pyarrow (and the standard library). :func:`score` adds polars and the
project's own readers, suites and transforms; neither imports Prefect, Great Expectations or DuckDB. A
release store on an object store is read through fsspec (``load_release("s3://bucket/releases")`` needs
fsspec and s3fs).

>>> tables = load_release("data/releases")                      # doctest: +SKIP
>>> tables["reference_intervals"].num_rows                        # doctest: +SKIP
>>> scored = score({"plate7.csv": export_bytes}, tables, sample_ids=["S-0042"])   # doctest: +SKIP
>>> scored.to_json()["people"][0]["results"][0]["percentile"]     # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


class ReleaseIntegrityError(RuntimeError):
    """A release file is missing or differs from its manifest: do not use the release."""


class ReleaseNotFoundError(FileNotFoundError):
    """No such release in the store (or none published yet); the message says what to do."""


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_release(root: str | Path, version: str = "latest") -> dict[str, Any]:
    """The tables of a release as pyarrow Tables, plus its ``manifest`` (a dict) and ``manifest_sha256`` (of
    the manifest file as published), after verifying every checksum.

    ``version="latest"`` takes the newest entry of ``index.json``. Raises ReleaseNotFoundError when the
    store has no such release (or none yet), ReleaseIntegrityError when a listed file is missing or its
    sha256 differs from the manifest.
    """
    read = _reader(root)
    if version == "latest":
        try:
            index = json.loads(read("index.json"))["releases"]
        except FileNotFoundError:
            index = []
        except (ValueError, TypeError, KeyError):  # not JSON, or no list of releases in it
            msg = f"{root}/index.json: damaged (not a release index); name the version to load instead of 'latest'"
            raise ReleaseIntegrityError(msg) from None
        if not index:
            msg = f"{root}: no release published yet; `refranges run` publishes one"
            raise ReleaseNotFoundError(msg)
        version = index[-1]["version"]
    try:
        manifest_bytes = read(f"{version}/manifest.json")
    except FileNotFoundError:
        msg = f"{root}: no release {version}; `refranges releases list` shows the published ones"
        raise ReleaseNotFoundError(msg) from None
    try:
        manifest = json.loads(manifest_bytes)
        files = manifest["files"].items()
    except (ValueError, TypeError, KeyError, AttributeError):  # not JSON, or no file list in it
        msg = (
            f"{root}/{version}/manifest.json: damaged (not a manifest with a file list); the release cannot be verified"
        )
        raise ReleaseIntegrityError(msg) from None
    out: dict[str, Any] = {"manifest": manifest, "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest()}
    for name, meta in files:
        where = f"{root}/{version}/{name}"
        try:
            data = read(f"{version}/{name}")
        except FileNotFoundError:
            msg = f"{where}: listed in the manifest but missing"
            raise ReleaseIntegrityError(msg) from None
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            msg = f"{where}: sha256 differs from the manifest; the release is damaged or was changed"
            raise ReleaseIntegrityError(msg)
        if name.endswith(".parquet"):
            table: pa.Table = pq.read_table(pa.BufferReader(data))
            out[name.removesuffix(".parquet")] = table
    return out


def _reader(root: str | Path) -> Callable[[str], bytes]:
    """A function reading ``<root>/<relative path>`` as bytes: local files, or fsspec for URLs."""
    if isinstance(root, str) and "://" in root:
        from fsspec.core import url_to_fs

        fs, base = url_to_fs(root)
        return lambda rel: bytes(fs.cat_file(f"{base.rstrip('/')}/{rel}"))
    base_path = Path(root)
    return lambda rel: (base_path / rel).read_bytes()


class ScoreError(ValueError):
    """Nothing can be scored: no export could be read, or the person's samples are not in the exports."""


@dataclass
class Scored:
    """A person's (or several people's) results placed against one release."""

    release: str
    manifest_sha256: str
    people: list[dict[str, Any]]  # subject_id, sex, age, matrix, samples (dates), per person
    results: Any  # polars DataFrame, transforms.score.SCORE: one row per marker and collection date
    not_scored: Any  # polars DataFrame: source_file, sample_id, analyte_raw, check, reason, n_rows
    other_samples: int = 0  # study rows of other people's samples on the same plates (never scored)
    files: list[dict[str, Any]] = field(default_factory=list)  # per export: name, sha256, layout, rows
    notes: list[str] = field(default_factory=list)  # what differs from how the release was built

    def to_json(self) -> dict[str, Any]:
        """The whole result as JSON-ready dicts (dates as ISO text), for apps."""
        from transforms.score import DISCLAIMER

        def rows(frame: Any) -> list[dict[str, Any]]:
            return [
                {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in frame.to_dicts()
            ]

        people = []
        for p in self.people:
            mine = self.results.filter(self.results["subject_id"] == p["subject_id"])
            people.append({**p, "results": rows(mine.drop("subject_id"))})
        return {
            "disclaimer": DISCLAIMER,
            "release": self.release,
            "manifest_sha256": self.manifest_sha256,
            "files": self.files,
            "people": people,
            "notes": self.notes,
            "not_scored": rows(self.not_scored),
            "other_samples_rows": self.other_samples,
        }


def score(
    exports: Mapping[str, bytes],
    release: dict[str, Any],
    *,
    person: Any = None,
    sample_ids: Sequence[str] = (),
    dates: Sequence[date] = (),
    dictionary: Any = None,
    dictionary_sha256: str | None = None,
) -> Scored:
    """Score retest exports against a release (:func:`load_release`) on that release's scale.

    ``exports`` maps file names to bytes: vendor exports as the lab sends them (any layout the ingest
    reads) and optionally a sample manifest saying whose each sample is. Every export goes through the
    pipeline's readers and raw suite, with the release's own thresholds and reading options; its plates
    through the plate suite, with control drift measured from the release's anchors; its values through the
    release's frozen plate-control correction (``transforms.retest.frozen_normalise``). Each marker is then
    placed against the release's most specific group (``transforms.score.score_person``), and changes
    between collection dates are compared with the release's reference change values.

    Without a manifest, ``person`` (``transforms.retest.Person``: subject, sex, age, matrix) describes the
    one person, whose samples are ``sample_ids`` (or the only study sample of each export), taken on
    ``dates`` (one per export) or the export's run date. What cannot be scored is in ``not_scored`` with a
    reason per marker; the rest is still scored. ``dictionary`` (with its ``dictionary_sha256``) replaces
    the packaged analyte dictionary; a dictionary other than the release's is named in ``notes``. Never
    changes the release or any warehouse.
    """
    import polars as pl

    from expectations.runner import quarantine_rows
    from expectations.suites import DEFAULT_THRESHOLDS, load_suite, prepare_raw
    from transforms import schema
    from transforms.normalise import MEASURED_TYPES, dictionary_lookup, hold_plates, prepare_measurements
    from transforms.qc import file_statistics, plate_statistics, vendor_held
    from transforms.readers import UnreadableFileError, read_or_refuse
    from transforms.retest import (
        AS_GIVEN_LAYOUTS,
        Person,
        described_person,
        frozen_combat,
        frozen_normalise,
        person_samples,
    )
    from transforms.score import score_person
    from warehouse.lookups import read_analyte_dictionary

    # checked before any export is read: a sex, age or matrix that cannot be used (PersonError)
    person = Person() if person is None else described_person(person.subject, person.sex, person.age, person.matrix)
    manifest = release["manifest"]
    version = manifest["version"]
    params = manifest.get("parameters", {})
    thresholds = {**DEFAULT_THRESHOLDS, **params.get("quality_thresholds", {})}
    per_platform = params.get("platform_thresholds", {})
    options = {
        "msd_unit": params.get("msd_unit", "pg/mL"),
        "hold_vendor_warnings": params.get("hold_vendor_warnings", False),
        "luminex_mfi_section": params.get("luminex_mfi_section", ""),
    }
    rows, held, manifests, as_given, files = [], [], [], [], []
    for name, data in exports.items():
        sha = hashlib.sha256(data).hexdigest()
        try:
            result = read_or_refuse(data, source=name, sha256=sha, options=options)
        except UnreadableFileError as exc:  # the file's own reason, or a reader's failure (ReaderFailure)
            held.append(_file_problem(name, sha, "readable", str(exc)))
            files.append({"name": name, "sha256": sha, "layout": None, "rows_read": 0, "problem": str(exc)})
            continue
        files.append({"name": name, "sha256": sha, "layout": result.layout, "rows_read": result.rows_read})
        held.append(result.quarantine)
        if result.samples is not None:
            manifests.append(result.samples)
            continue
        checked = quarantine_rows(prepare_raw(result.rows), load_suite("raw_measurements", thresholds=thresholds))
        bad = result.quarantine.height + checked.quarantine.height
        vendor = vendor_held(result.quarantine)  # the vendor's QC verdicts: read right, held on purpose
        gate = quarantine_rows(
            file_statistics(result.rows_read, bad, vendor).with_columns(pl.lit(name).alias("file")),
            load_suite("files", thresholds=thresholds),
        )
        held.append(checked.quarantine)
        if gate.failed.height:  # the pipeline would quarantine the whole file: nothing of it is scored
            why = (
                f"{name}: {gate.failed['why'][0]} ({bad - vendor} of {result.rows_read} rows unusable); nothing of it "
                "is scored"
            )
            held.append(_file_problem(name, sha, "file_usable", why))
            files[-1]["problem"] = why
            continue
        rows.append(schema.conform(checked.passed, schema.MEASUREMENT))
        if result.layout in AS_GIVEN_LAYOUTS:
            as_given.append(name)
    if not rows:
        reasons = "; ".join(str(f.get("problem", f"{f['name']}: a manifest, no measurements")) for f in files)
        raise ScoreError(f"no export with measurements could be used: {reasons}")
    measured = pl.concat(rows, how="vertical")
    # Olink's internal control assays are kept for QC by the ingest and never normalised: the same here
    measured = measured.filter(pl.col("assay_type").is_null() | pl.col("assay_type").is_in(schema.ANALYTE_ASSAY_TYPES))
    samples = person_samples(
        measured,
        manifest=pl.concat(manifests, how="diagonal_relaxed") if manifests else None,
        person=person,
        sample_ids=sample_ids,
        dates=dates,
        as_given=as_given,
        held=pl.concat(held, how="vertical_relaxed"),
    )
    mine = samples["sample_id"].to_list()
    theirs = ~measured["sample_type"].is_in(MEASURED_TYPES) | measured["sample_id"].is_in(mine)
    other_samples = int((~theirs).sum())
    if dictionary is None:
        dictionary, dictionary_sha256 = read_analyte_dictionary()
    lookup = dictionary_lookup(dictionary)
    notes = []
    built_with = params.get("analyte_dictionary_sha256")
    if built_with and dictionary_sha256 and built_with != dictionary_sha256:
        notes.append(
            f"the analyte dictionary used here ({dictionary_sha256[:12]}) is not the one release {version} was "
            f"built with ({built_with[:12]}): a name the two dictionaries map differently may land on another marker"
        )
    prepared, held_prepare = prepare_measurements(measured.filter(theirs), samples, lookup)
    held.append(held_prepare)
    anchors = _table(release, "normalisation_anchors", pl)
    if anchors is None:
        anchors = pl.DataFrame(schema={"platform": pl.String(), "panel": pl.String(), "analyte": pl.String()})
    stats = plate_statistics(prepared, anchors if anchors.height else None)
    failed = []
    for platform in stats["platform"].unique().sort().to_list():
        limits = thresholds | per_platform.get(platform.split("_", 1)[0], {}) | per_platform.get(platform, {})
        plates = quarantine_rows(stats.filter(pl.col("platform") == platform), load_suite("plates", thresholds=limits))
        failed.append(plates.failed)
    kept, held_plates = hold_plates(prepared, pl.concat(failed, how="diagonal_relaxed") if failed else stats.clear())
    held.append(held_plates)
    normalised, refused = frozen_normalise(kept, anchors, release=version, as_given=as_given)
    methods = params.get("batch_methods", {})
    by_combat = [p for p in normalised["platform"].unique().to_list() if _method(methods, p) == "combat"]
    normalised = frozen_combat(
        normalised, anchors, samples, platforms=by_combat, min_batch=int(params.get("combat_min_batch", 10))
    )
    checked = quarantine_rows(normalised, load_suite("normalised_measurements", thresholds=thresholds))
    normalised = checked.passed.select(normalised.columns)
    held += [refused, checked.quarantine]
    normalised = _release_method_notes(normalised, methods, pl)
    intervals = pl.DataFrame(pl.from_arrow(release["reference_intervals"]))
    grid = pl.DataFrame(pl.from_arrow(release["reference_quantiles"]))
    variation = _table(release, "retest_variation", pl)
    visits = normalised.join(
        samples.select("sample_id", "subject_id", "matrix", "sex", "age", "collection_date"), on="sample_id"
    )
    scored, people = [], []
    for (subject, matrix), mine in visits.group_by(["subject_id", "matrix"], maintain_order=True):
        sexes = mine["sex"].drop_nulls()
        sex = str(sexes[0]) if sexes.len() else None
        out = score_person(mine, intervals, grid, matrix=str(matrix), sex=sex, variation=variation)
        scored.append(out)
        dated = samples.filter((pl.col("subject_id") == subject) & (pl.col("matrix") == matrix)).sort(
            "collection_date", nulls_last=True
        )
        people.append(
            {
                "subject_id": subject,
                "matrix": matrix,
                "sex": sex,
                "age": dated["age"].drop_nulls().last(),
                "samples": [
                    {
                        "sample_id": r["sample_id"],
                        "collection_date": _iso(r["collection_date"]),
                        "file": r["source_file"],
                    }
                    for r in dated.iter_rows(named=True)
                ],
            }
        )
    results = pl.concat(scored, how="vertical") if scored else schema.conform(pl.DataFrame(), _score_schema())
    results = results.sort("subject_id", "platform", "analyte", "collection_date", nulls_last=True, maintain_order=True)
    return Scored(
        release=version,
        manifest_sha256=release.get("manifest_sha256", ""),
        people=people,
        results=results,
        not_scored=_summarise_held(pl.concat(held, how="vertical_relaxed"), pl),
        other_samples=other_samples,
        files=files,
        notes=notes,
    )


#: What a frozen plate-control correction means for the release's own method, per method (ComBat:
#: transforms.retest.frozen_combat says per batch whether it was repeated).
METHOD_NOTES = {
    "bridge": "; on the scale of the release's bridge reference run (its other runs were bridged onto it)",
}


def _method(methods: dict[str, str], platform: str) -> str:
    """The batch method a release used for ``platform`` (its manifest's ``batch_methods``)."""
    default = methods.get("default", "plate_control")
    return methods.get(platform, methods.get(platform.split("_", 1)[0], default))


def _release_method_notes(frame: Any, methods: dict[str, str], pl: Any) -> Any:
    """Append to ``batch_method`` what the release did beyond plate controls for the row's platform."""
    platforms = frame["platform"].unique().to_list()
    notes = {p: METHOD_NOTES[_method(methods, p)] for p in platforms if _method(methods, p) in METHOD_NOTES}
    if not notes:
        return frame
    frozen = pl.col("batch_method").str.starts_with("plate_control (frozen")
    note = pl.col("platform").replace_strict(notes, default="", return_dtype=pl.String)
    return frame.with_columns(
        pl.when(frozen).then(pl.col("batch_method") + note).otherwise("batch_method").alias("batch_method")
    )


def _score_schema() -> dict[str, Any]:
    from transforms.score import SCORE

    return SCORE


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None else None


def _table(release: dict[str, Any], name: str, pl: Any) -> Any:
    """A release table as a polars frame, or None when the release has no such table (older releases)."""
    return pl.DataFrame(pl.from_arrow(release[name])) if name in release else None


def _file_problem(name: str, sha: str, check: str, reason: str) -> Any:
    import polars as pl

    from transforms import schema

    row = {"source_file": name, "source_sha256": sha, "stage": "score", "check": check, "reason": reason}
    return schema.conform(pl.DataFrame([row]), schema.QUARANTINE)


def _summarise_held(held: Any, pl: Any) -> Any:
    """One row per file, sample, analyte name and check held back: the first reason and the rows it covers."""
    return (
        held.group_by(["source_file", "sample_id", "analyte_raw", "check"], maintain_order=True)
        .agg(pl.col("reason").first(), pl.len().cast(pl.Int64).alias("n_rows"))
        .sort("source_file", "sample_id", "analyte_raw", nulls_last=True, maintain_order=True)
    )
