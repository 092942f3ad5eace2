"""A deterministic Olink Explore HT data set shaped like Olink's NPX Parquet export: a manifest plus one
NPX file with Olink's key-value metadata, controls, internal control assays and vendor QC.

Layout per plate (96 wells): 88 study samples, 2 SAMPLE_CONTROL, 3 PLATE_CONTROL, 3 NEGATIVE_CONTROL.
Per block, three internal control assays (incubation, extension, amplification; AssayType inc_ctrl, ext_ctrl,
amp_ctrl) carry counts and no NPX. Values are made the way Olink describes them:

* ExtNPX = log2(count / extension-control count of the well);
* NPX (Normalization "Plate control") = PCNormalizedNPX = ExtNPX - median ExtNPX of the plate's plate
  controls, per assay;
* negative controls are buffer: background counts per assay, some assays above 150 counts and some below,
  so both branches of the negative-control LOD occur.

Planted: one sample fails Olink's sample QC (SampleQC FAIL), one warns (WARN), one assay warns on one plate
(AssayQC WARN); OSI sample-handling columns are filled. Everything comes from one
``numpy.random.default_rng(seed)``; :func:`generate_explore` returns file names mapped to bytes (no I/O).
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import numpy as np
import polars as pl

from transforms.demo import OLINK_ASSAYS, DemoData, retest_person

PLATE_STUDY = 88
N_SAMPLE_CONTROLS, N_PLATE_CONTROLS, N_NEGATIVE_CONTROLS = 2, 3, 3
BLOCKS = 8
INTERNAL = [
    ("Incubation control", "inc_ctrl"),
    ("Extension control", "ext_ctrl"),
    ("Amplification control", "amp_ctrl"),
]
METADATA = {
    "FileVersion": "5.0.0",
    "ExploreVersion": "2.1.0",
    "ProjectName": "refranges demo",
    "SampleMatrix": "SERUM",
    "Product": "ExploreHT",
    "DataFileType": "NPX File",
}
WELLS = [f"{r}{c}" for r in "ABCDEFGH" for c in range(1, 13)]


def _assays(n_assays: int | None) -> list[tuple[str, str, str, float, float, float]]:
    """(Assay, OlinkID, UniProt, centre ExtNPX, between-person SD, negative-control background ExtNPX): the
    demo's curated assays first, then numbered filler assays (not in the analyte dictionary) up to ``n_assays``."""
    out = []
    for i, (name, _h, oid, uni, centre, sd) in enumerate(OLINK_ASSAYS):
        background = centre - 3.5 - 1.5 * (i % 3)  # some assays' negative controls above 150 counts, some below
        out.append((name, oid.replace("OID00", "OID4"), uni, centre - 4.0, sd, background - 4.0))
    k = 0
    while n_assays is not None and len(out) < n_assays:
        k += 1
        out.append((f"FILLER{k:05d}", f"OID9{k:05d}", f"X{k:05d}", 0.5 + (k % 7) * 0.4, 0.8, -4.0 - (k % 5) * 0.5))
    return out[:n_assays] if n_assays is not None else out


def generate_explore(
    *, seed: int = 2026, n_healthy: int = 400, n_patients: int = 200, n_assays: int | None = None
) -> DemoData:
    """Build the Explore HT demo data set: ``explore_ht_manifest.csv`` and ``explore_ht_npx.parquet``.

    >>> d = generate_explore(seed=1, n_healthy=20, n_patients=5)
    >>> sorted(d.files)
    ['explore_ht_manifest.csv', 'explore_ht_npx.parquet']
    """
    rng = np.random.default_rng(seed)
    n = n_healthy + n_patients
    cohort = np.array(["healthy"] * n_healthy + ["patient"] * n_patients)[rng.permutation(n)]
    sex = rng.choice(["F", "M"], size=n)
    age = np.round(rng.uniform(18, 70, size=n), 1)
    sample_ids = [f"EHT{200000 + i:07d}" for i in range(n)]
    patient = cohort == "patient"
    severity = np.where(patient, np.round(rng.uniform(5, 95, size=n)), np.nan)
    duration = np.where(patient, np.round(rng.gamma(2.0, 3.0, size=n), 1), np.nan)
    start = date(2026, 5, 4)
    manifest = pl.DataFrame(
        {
            "sample_id": sample_ids,
            "subject_id": [f"SUBJ-HT-{rng.integers(10**6, 10**7)}-{i}" for i in range(n)],
            "cohort": cohort.tolist(),
            "matrix": ["serum"] * n,
            "sex": sex.tolist(),
            "age": age.tolist(),
            "collection_date": [(start + timedelta(days=int(d))).isoformat() for d in rng.integers(0, 90, size=n)],
            "severity": ["" if np.isnan(s) else f"{s:.0f}" for s in severity],
            "illness_duration_years": ["" if np.isnan(d) else f"{d:.1f}" for d in duration],
        }
    )
    assays = _assays(n_assays)
    n_plates = max(1, int(np.ceil(n / PLATE_STUDY)))
    frames = []
    fail_sample, warn_sample = sample_ids[0], sample_ids[min(1, n - 1)]
    warn_assay = assays[0][1]
    for p in range(n_plates):
        frames.append(
            _plate(
                rng, p, sample_ids[p * PLATE_STUDY : (p + 1) * PLATE_STUDY], assays, patient, severity, p * PLATE_STUDY
            )
        )
    table = _with_vendor_qc(
        pl.concat(frames, how="vertical"),
        sample=pl.when(pl.col("SampleID") == fail_sample)
        .then(pl.lit("FAIL"))
        .when(pl.col("SampleID") == warn_sample)
        .then(pl.lit("WARN"))
        .otherwise(pl.lit("PASS")),
        assay=pl.when((pl.col("OlinkID") == warn_assay) & (pl.col("PlateID") == "HT_PLATE_1"))
        .then(pl.lit("WARN"))
        .otherwise(pl.lit("PASS")),
    )
    truth: dict[str, object] = {
        "fail_sample": fail_sample,
        "warn_sample": warn_sample,
        "warn_assay": warn_assay,
        "n_plates": n_plates,
        "n_assays": len(assays),
        "n_healthy": n_healthy,
        "n_patients": n_patients,
    }
    return DemoData(
        # a name of its own: the mixed demo's manifest.csv in the same landing folder is another study's (the same
        # name replaced it, and the mixed demo's samples left the warehouse)
        files={"explore_ht_manifest.csv": manifest.write_csv().encode(), "explore_ht_npx.parquet": _npx_file(table)},
        truth=truth,
    )


def _plate(
    rng: np.random.Generator,
    p: int,
    ids: list[str],
    assays: list[tuple[str, str, str, float, float, float]],
    patient: np.ndarray,
    severity: np.ndarray,
    offset: int,
    *,
    name: str | None = None,
    scores: np.ndarray | None = None,
) -> pl.DataFrame:
    """One plate: every well x every assay of every block, internal controls included (vectorised).
    ``name``: the plate's id (its controls are named after it; default ``HT_PLATE_<p + 1>``); ``scores``: the
    study samples' levels per assay in between-person SDs (default: drawn, patients shifted by severity)."""
    plate_id = name or f"HT_PLATE_{p + 1}"
    suffix = name or f"P{p + 1}"
    k = len(ids)
    sample_ids = ids + [f"SC_{i + 1}_{suffix}" for i in range(N_SAMPLE_CONTROLS)]
    sample_ids += [f"PC_{i + 1}_{suffix}" for i in range(N_PLATE_CONTROLS)]
    sample_ids += [f"NC_{i + 1}_{suffix}" for i in range(N_NEGATIVE_CONTROLS)]
    types = (
        ["SAMPLE"] * k
        + ["SAMPLE_CONTROL"] * N_SAMPLE_CONTROLS
        + ["PLATE_CONTROL"] * N_PLATE_CONTROLS
        + ["NEGATIVE_CONTROL"] * N_NEGATIVE_CONTROLS
    )
    w = len(sample_ids)
    a = len(assays)
    centre = np.array([x[3] for x in assays])
    sd = np.array([x[4] for x in assays])
    background = np.array([x[5] for x in assays])
    effect = rng.normal(0, 0.2, size=a)  # the plate's effect on every assay (plate-control normalisation removes it)
    if scores is None:
        sev = np.nan_to_num(severity[offset : offset + k]) / 100.0
        shift = np.where(patient[offset : offset + k], 0.9 * sev, 0.0)
        scores = rng.standard_normal((k, a)) + shift[:, None] * (np.arange(a) < 3)
    study = centre + sd * scores
    sc = np.repeat((centre + 0.3)[None, :], N_SAMPLE_CONTROLS, axis=0)
    pc = np.repeat((centre + 1.0)[None, :], N_PLATE_CONTROLS, axis=0)
    nc = background + rng.normal(0, 0.35, size=(N_NEGATIVE_CONTROLS, a))
    ext = np.vstack([study, sc, pc, nc]) + effect + rng.normal(0, 0.1, size=(w, a))
    ext_count = rng.integers(8_000, 14_000, size=(w, BLOCKS))
    block = np.arange(a) % BLOCKS
    counts = np.maximum(np.round(ext_count[:, block] * np.exp2(ext)), 0).astype(np.int64)
    ext_npx = np.log2(np.maximum(counts, 1) / ext_count[:, block])
    pc_rows = slice(k + N_SAMPLE_CONTROLS, k + N_SAMPLE_CONTROLS + N_PLATE_CONTROLS)
    npx = ext_npx - np.median(ext_npx[pc_rows], axis=0)
    wells = WELLS[:w]
    assay_part = pl.DataFrame(
        {
            "SampleID": np.repeat(sample_ids, a),
            "SampleType": np.repeat(types, a),
            "WellID": np.repeat(wells, a),
            "PlateID": plate_id,
            "DataAnalysisRefID": "D00012",
            "OlinkID": np.tile([x[1] for x in assays], w),
            "UniProt": np.tile([x[2] for x in assays], w),
            "Assay": np.tile([x[0] for x in assays], w),
            "AssayType": "assay",
            "Panel": "Explore_HT",
            "Block": np.tile((block + 1).astype(str), w),
            "Count": counts.ravel(),
            "ExtNPX": np.round(ext_npx.ravel(), 4),
            "NPX": np.round(npx.ravel(), 4),
            "Normalization": "Plate control",
            "PCNormalizedNPX": np.round(npx.ravel(), 4),
        }
    )
    internal_names = [
        (f"{name} {b + 1}", kind, f"OID5{b}{j:03d}", b)
        for b in range(BLOCKS)
        for j, (name, kind) in enumerate(INTERNAL)
    ]
    m = len(internal_names)
    internal_counts = np.repeat(ext_count, len(INTERNAL), axis=1)  # each control reads about the extension count
    internal = pl.DataFrame(
        {
            "SampleID": np.repeat(sample_ids, m),
            "SampleType": np.repeat(types, m),
            "WellID": np.repeat(wells, m),
            "PlateID": plate_id,
            "DataAnalysisRefID": "D00012",
            "OlinkID": np.tile([x[2] for x in internal_names], w),
            "UniProt": None,
            "Assay": np.tile([x[0] for x in internal_names], w),
            "AssayType": np.tile([x[1] for x in internal_names], w),
            "Panel": "Explore_HT",
            "Block": np.tile([str(x[3] + 1) for x in internal_names], w),
            "Count": internal_counts.ravel().astype(np.int64),
            "ExtNPX": None,
            "NPX": None,
            "Normalization": "Plate control",
            "PCNormalizedNPX": None,
        },
        schema_overrides={"UniProt": pl.String, "ExtNPX": pl.Float64, "NPX": pl.Float64, "PCNormalizedNPX": pl.Float64},
    )
    out = pl.concat([assay_part, internal], how="vertical")
    minutes = rng.integers(20, 240, size=w)
    osi = pl.DataFrame(
        {
            "SampleID": sample_ids,
            "OSITimeToCentrifugation": [f"{m}" for m in minutes],
            "OSIPreparationTemperature": rng.choice(["RT", "4C"], size=w).tolist(),
            "OSISummary": np.where(minutes > 180, "Deviation", "Within spec").tolist(),
            "OSICategory": np.where(minutes > 180, "2", "1").tolist(),
        }
    )
    out = out.join(osi, on="SampleID", how="left", maintain_order="left")
    return out.with_columns(pl.lit(METADATA["ExploreVersion"]).alias("ExploreVersion"))


def _with_vendor_qc(table: pl.DataFrame, *, sample: pl.Expr, assay: pl.Expr) -> pl.DataFrame:
    """Olink's SampleQC and AssayQC columns: ``NA`` on internal control assays, else the flags given."""
    internal = pl.col("AssayType") != "assay"
    return table.with_columns(
        pl.when(internal).then(pl.lit("NA")).otherwise(sample).alias("SampleQC"),
        pl.when(internal).then(pl.lit("NA")).otherwise(assay).alias("AssayQC"),
    )


def _npx_file(table: pl.DataFrame) -> bytes:
    """The NPX Parquet file's bytes, with Olink's key-value metadata (zstd, as Olink's software writes it)."""
    import pyarrow.parquet as pq

    arrow = table.to_arrow()
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **METADATA})
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer, compression="zstd")
    return buffer.getvalue()


def generate_explore_retest(
    *,
    seed: int = 11,
    plate_shifts: tuple[float, ...] = (0.0, 0.7),
    true_change: float = 0.0,
    n_others: int = 6,
    start: date = date(2026, 9, 7),
) -> DemoData:
    """One person's retests on Olink Explore HT, for ``refranges score`` against a release built from the
    Explore HT demo: per visit an NPX Parquet file of a new plate (named ``HT_RETEST_<seed>_<visit>``, its
    sample, plate and negative controls named after it) holding the person's sample and ``n_others`` other
    people's, plus ``explore_ht_retest_manifest.csv`` listing the person's samples. Deterministic for a seed.

    Planted truth: visit ``v``'s plate reads every assay ``plate_shifts[v]`` NPX high in every well, controls
    included (a plate effect that the release's frozen plate-control anchors see and remove); from the second
    visit on the person's own level is ``true_change`` NPX higher (a real change, not seen by the controls).
    The person is otherwise the same at every visit.

    >>> sorted(generate_explore_retest(seed=1).files)
    ['explore_ht_retest_manifest.csv', 'explore_ht_retest_visit1.parquet', 'explore_ht_retest_visit2.parquet']
    """
    rng = np.random.default_rng(seed)
    assays = _assays(None)
    sd = np.array([x[4] for x in assays])
    level = 0.5 * rng.standard_normal(len(assays))  # the person, in between-person SDs: near the middle
    subject, files = "RETEST-PERSON-1", {}
    samples = [f"RTHT{seed:03d}-{v + 1}" for v in range(len(plate_shifts))]
    dates = [start + timedelta(days=91 * v) for v in range(len(plate_shifts))]
    none = np.zeros(n_others + 1, dtype=bool)
    for v, shift in enumerate(plate_shifts):
        person = level + (true_change / sd if v > 0 else 0.0)
        scores = np.vstack([person, rng.standard_normal((n_others, len(assays)))])
        ids = [samples[v]] + [f"RTHT{seed:03d}-OTHER-{v + 1}-{k + 1}" for k in range(n_others)]
        plate = _plate(
            rng, v, ids, assays, none, np.full(n_others + 1, np.nan), 0, name=f"HT_RETEST_{seed}_{v + 1}", scores=scores
        )
        plate = plate.with_columns(pl.col("NPX") + shift, pl.col("PCNormalizedNPX") + shift)
        files[f"explore_ht_retest_visit{v + 1}.parquet"] = _npx_file(
            _with_vendor_qc(plate, sample=pl.lit("PASS"), assay=pl.lit("PASS"))
        )
    files["explore_ht_retest_manifest.csv"], truth = retest_person(subject, samples, dates, plate_shifts, true_change)
    # a study sample's NPX is its level less the plate controls' (which read 1 NPX above an average person)
    truth["level_npx"] = dict(zip([a[1] for a in OLINK_ASSAYS], (level * sd - 1.0).tolist(), strict=True))
    return DemoData(files=files, truth=truth)
