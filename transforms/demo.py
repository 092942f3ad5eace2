"""Deterministic demo data set that looks like what labs send: a manifest plus vendor exports.

:func:`generate_demo` returns file names mapped to bytes (the caller writes them) and the planted
truth, so tests can check the pipeline recovers what was put in. Everything is drawn from one
``numpy.random.default_rng(seed)``.

Planted truth (all on the log scale, in units of the marker's between-person SD):

* severity trend in patients: value shifts by ``SEVERITY_SLOPE_SD[marker] * severity / 100``;
* early illness (duration < 3 years) only: ``EARLY_SHIFT_SD[marker]``;
* a sex difference in healthy people: ``SEX_SHIFT_SD`` (men higher);
* plate effects: Olink additive NPX offsets per plate and analyte, MSD multiplicative factors per plate
  and analyte; ``PLATE_EFFECTS`` in the returned truth holds every one;
* outliers: a few healthy values multiplied by 15 (MSD) or raised by 4 NPX (Olink);
* repeat visits: ``repeat_share`` of healthy people give a second sample 60-180 days later; every sample
  varies around its person's level by ``WITHIN_SUBJECT_SD`` (within-person variation, for the reference
  change value). Repeat samples come last, so they sit on the last plates, as retests do.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

#: (name as Olink writes it, HGNC, OlinkID, UniProt, centre NPX, between-person SD in NPX)
OLINK_ASSAYS: list[tuple[str, str, str, str, float, float]] = [
    ("IL6", "IL6", "OID00482", "P05231", 3.2, 1.0),
    ("TNF", "TNF", "OID00541", "P01375", 2.6, 0.7),
    ("IFN-gamma", "IFNG", "OID00528", "P01579", 7.1, 1.1),
    ("IL10", "IL10", "OID00510", "P22301", 3.9, 0.8),
    ("IL-1 alpha", "IL1A", "OID00520", "P01583", 1.1, 0.6),
    ("IL8", "CXCL8", "OID00471", "P10145", 6.0, 0.9),
    ("CXCL10", "CXCL10", "OID00474", "P02778", 9.4, 0.9),
    ("MCP-1", "CCL2", "OID00484", "P13500", 11.2, 0.6),
    ("CCL11", "CCL11", "OID00481", "P51671", 7.9, 0.6),
    ("CXCL1", "CXCL1", "OID00475", "P09341", 8.6, 0.9),
    ("IL7", "IL7", "OID00491", "P13232", 3.3, 0.8),
    ("IL-12B", "IL12B", "OID00503", "P29460", 5.3, 0.9),
    ("IL-17A", "IL17A", "OID00501", "Q16552", 2.0, 0.9),
    ("IL18", "IL18", "OID00514", "Q14116", 8.4, 0.6),
    ("OSM", "OSM", "OID00494", "P13725", 4.1, 0.8),
    ("HGF", "HGF", "OID00486", "P14210", 8.0, 0.5),
    ("FGF-21", "FGF21", "OID00498", "Q9NSA1", 5.0, 1.3),
    ("CCL4", "CCL4", "OID00530", "P13236", 6.4, 0.7),
    ("TNFSF14", "TNFSF14", "OID00517", "O43557", 4.5, 0.8),
    ("LIF", "LIF", "OID00526", "P15018", 1.2, 0.5),
]

#: (name as MSD V-PLEX writes it, HGNC, healthy median pg/mL, geometric SD, kit LLOD pg/mL)
MSD_ASSAYS: list[tuple[str, str, float, float, float]] = [
    ("IFN-γ", "IFNG", 6.0, 2.0, 0.37),
    ("IL-1β", "IL1B", 0.12, 2.0, 0.05),
    ("IL-2", "IL2", 0.2, 1.8, 0.09),
    ("IL-4", "IL4", 0.035, 1.8, 0.02),
    ("IL-6", "IL6", 1.0, 1.9, 0.06),
    ("IL-8", "CXCL8", 9.0, 1.7, 0.07),
    ("IL-10", "IL10", 0.35, 1.8, 0.04),
    ("IL-12p70", "IL12A", 0.2, 1.7, 0.11),
    ("IL-13", "IL13", 2.0, 1.7, 0.24),
    ("TNF-α", "TNF", 2.0, 1.5, 0.04),
]

SEVERITY_SLOPE_SD: dict[str, float] = {"IL6": 1.8, "TNF": 1.8, "IFNG": 1.8}  # patients: +0.9 SD on average
EARLY_SHIFT_SD: dict[str, float] = {"CXCL10": 0.6}
SEX_SHIFT_SD: dict[str, float] = {"CCL11": 0.8}
EARLY_YEARS = 3.0
WITHIN_SUBJECT_SD = 0.4  # within-person SD between visits, in units of the between-person SD

OLINK_PLATE_SIZE = 80  # study samples per Olink plate (plus controls)
MSD_PLATE_SIZE = 38  # study samples per MSD plate: (7 standards + 2 controls + 38) x 2 wells <= 96
N_BRIDGE = 8


@dataclass
class DemoData:
    """Files of a demo data set (name -> bytes) and the truth planted in them."""

    files: dict[str, bytes]
    truth: dict[str, object] = field(default_factory=dict)


def _rows(n: int) -> list[str]:
    letters = "ABCDEFGH"
    return [f"{letters[(i // 12) % 8]}{(i % 12) + 1:02d}" for i in range(n)]


OLINK_COLUMNS = [
    "SampleID",
    "Index",
    "OlinkID",
    "UniProt",
    "Assay",
    "MissingFreq",
    "Panel",
    "Panel_Lot_Nr",
    "PlateID",
    "QC_Warning",
    "LOD",
    "NPX",
    "Normalization",
    "Assay_Warning",
    "Sample_Type",
]
OLINK_CONTROLS = {"CONTROL_SAMPLE_1": 0.5, "CONTROL_SAMPLE_2": -0.3}  # NPX above the assay's centre
MSD_CONTROLS = {"C1": 3.0, "C2": 30.0}  # times the assay's healthy median
MSD_COLUMNS = [
    "Sample",
    "Assay",
    "Well",
    "Spot",
    "Detection Range",
    "Dilution",
    "Concentration",
    "Signal",
    "% Recovery",
    "Calc. Concentration",
    "Calc. Conc. Mean",
    "Calc. Conc. CV",
    "Detection Limits: Calc. Low",
    "Detection Limits: Calc. High",
]


def _olink_plate(
    records: dict[str, list[object]],
    rng: np.random.Generator,
    plate_id: str,
    ids: list[str],
    study: dict[str, np.ndarray],
    effects: dict[str, float],
    lot: str,
) -> None:
    """Append one Olink Target 96 plate to ``records``: the study samples ``ids`` at ``study`` NPX (per HGNC
    symbol, before the plate effect) and the two sample controls, with the plate's ``effects`` and 0.12 NPX
    of measurement noise."""
    names = [*ids, *OLINK_CONTROLS]
    types = ["SAMPLE"] * len(ids) + ["SAMPLE_CONTROL"] * len(OLINK_CONTROLS)
    for name, h, oid, uni, centre, sd in OLINK_ASSAYS:
        lod = centre - 2.2 * sd
        ctrl = np.array([centre + offset for offset in OLINK_CONTROLS.values()])
        vals = np.concatenate([study[h], ctrl]) + effects[h] + rng.normal(0, 0.12, size=len(names))
        for j, sid in enumerate(names):
            records["SampleID"].append(sid)
            records["Index"].append(j + 1)
            records["OlinkID"].append(oid)
            records["UniProt"].append(uni)
            records["Assay"].append(name)
            records["MissingFreq"].append(0.02)
            records["Panel"].append("Olink Target 96 Inflammation")
            records["Panel_Lot_Nr"].append(lot)
            records["PlateID"].append(plate_id)
            records["QC_Warning"].append("Pass")
            records["LOD"].append(round(lod + effects[h], 4))
            records["NPX"].append(round(float(vals[j]), 5))
            records["Normalization"].append("Intensity")
            records["Assay_Warning"].append("Pass")
            records["Sample_Type"].append(types[j])


def _msd_plate(
    rng: np.random.Generator, plate: str, ids: list[str], study: dict[str, np.ndarray], effects: dict[str, float]
) -> bytes:
    """One MSD V-PLEX plate export (Discovery Workbench CSV, duplicate wells): 7 standards, the two controls
    and the study samples ``ids`` at ``study`` pg/mL (per HGNC symbol, before the plate's multiplicative
    ``effects``, natural log), with 5 % well noise."""
    rows: dict[str, list[object]] = {k: [] for k in MSD_COLUMNS}
    names = [f"S00{k}" for k in range(1, 8)] + list(MSD_CONTROLS) + ids
    wells = _rows(2 * len(names))
    for spot, (name, h, median, _gsd, llod) in enumerate(MSD_ASSAYS, start=1):
        uloq = median * 2000
        std_expected = [median * 4 ** (3 - k) * 10 for k in range(7)]
        controls = np.array([median * factor for factor in MSD_CONTROLS.values()])
        true = np.concatenate([np.array(std_expected), controls, study[h]])
        for j, sample in enumerate(names):
            # standards define the plate's curve: they read back near their expected values, no plate effect
            plate_factor = 1.0 if j < 7 else np.exp(effects[h])
            calc = true[j] * plate_factor * np.exp(rng.normal(0, 0.05, size=2))
            mean = float(np.mean(calc))
            cv = float(np.std(calc, ddof=1) / mean * 100)
            for r in range(2):
                c = float(calc[r])
                if c < llod * 0.3:
                    rng_text, calc_text = "Below Fit Curve Range", "NaN"
                elif c < llod:
                    rng_text, calc_text = "Below Detection Range", f"{c:.4g}"
                elif c > uloq:
                    rng_text, calc_text = "Above Detection Range", f"{c:.4g}"
                else:
                    rng_text, calc_text = "In Detection Range", f"{c:.4g}"
                rows["Sample"].append(sample)
                rows["Assay"].append(name)
                rows["Well"].append(wells[2 * j + r])
                rows["Spot"].append(spot)
                rows["Detection Range"].append(rng_text)
                rows["Dilution"].append(2 if j >= 9 else 1)
                rows["Concentration"].append(f"{std_expected[j]:.4g}" if j < 7 else "")
                rows["% Recovery"].append(f"{100 * c / std_expected[j]:.4g}" if j < 7 else "")
                rows["Signal"].append(int(200 + 40 * c / max(llod, 1e-9)))
                rows["Calc. Concentration"].append(calc_text)
                rows["Calc. Conc. Mean"].append(f"{mean:.4g}")
                rows["Calc. Conc. CV"].append(f"{cv:.3g}")
                rows["Detection Limits: Calc. Low"].append(f"{llod:.4g}")
                rows["Detection Limits: Calc. High"].append(f"{uloq:.4g}")
    table = pl.DataFrame(rows)
    text = plate + "," * (table.width - 1) + "\n" + table.write_csv()
    return text.replace("\n", "\r\n").encode()


def generate_demo(
    *,
    seed: int = 2026,
    n_healthy: int = 400,
    n_patients: int = 200,
    plate_effects: bool = True,
    repeat_share: float = 0.125,
) -> DemoData:
    """Build the demo data set. Deterministic for a seed.

    ``plate_effects=False`` gives the same people and the same measurement noise without plate and batch
    effects (the draws still happen, multiplied by 0), so tests can compare a correction with the truth.

    >>> d = generate_demo(seed=1, n_healthy=30, n_patients=10)
    >>> sorted(d.files)[0]
    'manifest.csv'
    """
    rng = np.random.default_rng(seed)
    n_people = n_healthy + n_patients
    cohort_p = np.array(["healthy"] * n_healthy + ["patient"] * n_patients)
    order = rng.permutation(n_people)  # healthy and patient samples share plates
    cohort_p = cohort_p[order]
    subject_p = np.array([f"SUBJ-{rng.integers(10**6, 10**7)}-{i}" for i in range(n_people)])
    sex_p = rng.choice(["F", "M"], size=n_people)
    age_p = np.round(rng.uniform(18, 70, size=n_people), 1)
    matrix_p = np.where(rng.random(n_people) < 0.85, "serum", "plasma")
    patient_p = cohort_p == "patient"
    severity_p = np.where(patient_p, np.round(rng.uniform(5, 95, size=n_people)), np.nan)
    duration_p = np.where(patient_p, np.round(rng.gamma(2.0, 3.0, size=n_people), 1), np.nan)
    start = date(2025, 9, 1)  # every visit (up to 300 days later) lies before the release of this code
    first_day = rng.integers(0, 120, size=n_people)
    # each person's own level of each marker (shared by platforms measuring the same protein)
    hgncs = sorted({a[1] for a in OLINK_ASSAYS} | {a[1] for a in MSD_ASSAYS})
    person_level = {h: rng.standard_normal(n_people) for h in hgncs}

    # samples: one per person, then a second visit for some healthy people
    repeaters = rng.choice(np.flatnonzero(~patient_p), size=round(repeat_share * n_healthy), replace=False)
    person = np.concatenate([np.arange(n_people), np.sort(repeaters)])
    n = person.size
    revisit = np.arange(n) >= n_people
    day = first_day[person] + np.where(revisit, rng.integers(60, 180, size=n), 0)
    cohort, subject_ids, sex, matrix = cohort_p[person], subject_p[person].tolist(), sex_p[person], matrix_p[person]
    age = np.round(age_p[person] + (day - first_day[person]) / 365.25, 1)
    is_patient, severity, duration = patient_p[person], severity_p[person], duration_p[person]
    early = is_patient & (duration < EARLY_YEARS)
    sample_ids = [f"{100000 + i:07d}" for i in range(n)]  # leading zeros: ids are text, not numbers
    collection = [start + timedelta(days=int(d)) for d in day]

    # the latent level of a sample: the person's level plus this visit's within-person variation
    latent = {h: person_level[h][person] + WITHIN_SUBJECT_SD * rng.standard_normal(n) for h in hgncs}
    for h in hgncs:
        shift = np.zeros(n)
        if h in SEVERITY_SLOPE_SD:
            shift += np.where(is_patient, SEVERITY_SLOPE_SD[h] * np.nan_to_num(severity) / 100.0, 0.0)
        if h in EARLY_SHIFT_SD:
            shift += np.where(early, EARLY_SHIFT_SD[h], 0.0)
        if h in SEX_SHIFT_SD:
            shift += np.where(sex == "M", SEX_SHIFT_SD[h], 0.0)
        latent[h] = latent[h] + shift
    healthy_idx = np.flatnonzero(~is_patient & ~revisit)
    outlier_idx = rng.choice(healthy_idx, size=min(3, len(healthy_idx)), replace=False)

    files: dict[str, bytes] = {}
    planted_effects: dict[str, dict[str, float]] = {}

    # ---- manifest ---------------------------------------------------------------------------
    sev_text = [("" if np.isnan(s) else f"{s:.0f}") for s in severity]
    dur_text = [("" if np.isnan(d) else f"{d:.1f}") for d in duration]
    manifest = pl.DataFrame(
        {
            "sample_id": sample_ids,
            "subject_id": subject_ids,
            "cohort": cohort.tolist(),
            "matrix": matrix.tolist(),
            "sex": sex.tolist(),
            "age": age.tolist(),
            "collection_date": [d.isoformat() for d in collection],
            "severity": sev_text,
            "illness_duration_years": dur_text,
        }
    )
    files["manifest.csv"] = manifest.write_csv().encode()

    # ---- Olink NPX: two batches, bridge samples measured in both -----------------------------
    bridge = rng.choice(healthy_idx, size=min(N_BRIDGE, len(healthy_idx)), replace=False)
    batch_of = np.where(np.arange(n) < n // 2 + n // 4, 1, 2)  # first ~75 % in batch 1
    for batch in (1, 2):
        members = np.flatnonzero(batch_of == batch)
        if batch == 2:
            members = np.concatenate([members, bridge[~np.isin(bridge, members)]])
        else:
            members = np.concatenate([members, bridge[~np.isin(bridge, members)]])
        n_plates = max(1, int(np.ceil(len(members) / OLINK_PLATE_SIZE)))
        scale = 1.0 if plate_effects else 0.0
        batch_shift = {a[1]: scale * rng.normal(0, 0.4) for a in OLINK_ASSAYS}
        records: dict[str, list[object]] = {k: [] for k in OLINK_COLUMNS}
        for p in range(n_plates):
            plate_id = f"OLINK_B{batch}_P{p + 1}"
            on_plate = members[p * OLINK_PLATE_SIZE : (p + 1) * OLINK_PLATE_SIZE]
            effects = {a[1]: batch_shift[a[1]] + scale * rng.normal(0, 0.25) for a in OLINK_ASSAYS}
            planted_effects[plate_id] = effects
            study = {
                a[1]: a[4] + a[5] * latent[a[1]][on_plate] + np.where(np.isin(on_plate, outlier_idx), 4.0, 0.0)
                for a in OLINK_ASSAYS
            }
            lot = "B04414" if batch == 1 else "B11207"
            _olink_plate(records, rng, plate_id, [sample_ids[i] for i in on_plate], study, effects, lot)
        frame = pl.DataFrame(records)
        if batch == 1:
            # European locale export: semicolons and decimal commas, no Sample_Type column
            frame = frame.drop("Sample_Type").with_columns(
                pl.col(c).cast(pl.String).str.replace(".", ",", literal=True) for c in ("MissingFreq", "LOD", "NPX")
            )
            files["olink_npx_batch1.csv"] = frame.write_csv(separator=";").encode()
        else:
            files["olink_npx_batch2.csv"] = frame.write_csv().encode()

    # ---- MSD V-PLEX: one plate CSV per plate, duplicate wells --------------------------------
    n_msd = int(np.ceil(n / MSD_PLATE_SIZE))
    for p in range(n_msd):
        plate = f"Plate_2B{p + 1:03d}AW{4000 + 7 * p}"
        on_plate = np.arange(p * MSD_PLATE_SIZE, min(n, (p + 1) * MSD_PLATE_SIZE))
        effects = {a[1]: float(rng.normal(0, 0.15)) * (1.0 if plate_effects else 0.0) for a in MSD_ASSAYS}
        planted_effects[plate] = effects
        study = {
            a[1]: a[2]
            * np.exp(np.log(a[3]) * latent[a[1]][on_plate])
            * np.where(np.isin(on_plate, outlier_idx), 15.0, 1.0)
            for a in MSD_ASSAYS
        }
        files[f"msd_vplex_proinflammatory_{plate}.csv"] = _msd_plate(
            rng, plate, [sample_ids[i] for i in on_plate], study, effects
        )

    truth: dict[str, object] = {
        "severity_slope_sd": SEVERITY_SLOPE_SD,
        "early_shift_sd": EARLY_SHIFT_SD,
        "early_years": EARLY_YEARS,
        "sex_shift_sd": SEX_SHIFT_SD,
        "plate_effects": planted_effects,
        "outlier_samples": [sample_ids[i] for i in outlier_idx],
        "bridge_samples": [sample_ids[i] for i in bridge],
        "n_healthy": n_healthy,
        "n_patients": n_patients,
        "within_subject_sd": WITHIN_SUBJECT_SD,
        "repeat_samples": [sample_ids[i] for i in np.flatnonzero(revisit)],
    }
    return DemoData(files=files, truth=truth)


def generate_retest(
    *,
    seed: int = 11,
    plate_shifts: tuple[float, ...] = (0.0, 0.8),
    true_change: float = 0.0,
    n_others: int = 6,
    platforms: tuple[str, ...] = ("olink", "msd"),
    start: date = date(2026, 3, 2),
) -> DemoData:
    """One person's retests as a lab sends them: per visit an Olink Target 96 NPX export and an MSD plate
    export, each a new plate holding the person's sample, ``n_others`` other people's samples and the plate
    controls of the demo data set, plus a manifest of the person's samples. Deterministic for a seed.

    Planted truth: visit ``v`` is measured on a plate whose every assay is shifted by ``plate_shifts[v]``
    (NPX for Olink, natural log for MSD: a plate effect, also seen by its controls); from the second visit
    on, the person's own level is ``true_change`` higher (same units; a real change, not seen by the
    controls). The person's level is otherwise the same at every visit (no within-person variation), so a
    scored change is the plate shift left uncorrected, the true change and measurement noise."""
    rng = np.random.default_rng(seed)
    level = {h: 0.5 * rng.standard_normal() for h in sorted({a[1] for a in OLINK_ASSAYS} | {a[1] for a in MSD_ASSAYS})}
    subject, files = "RETEST-PERSON-1", {}
    samples = [f"RT{seed:03d}-{v + 1}" for v in range(len(plate_shifts))]
    dates = [start + timedelta(days=91 * v) for v in range(len(plate_shifts))]
    for v, shift in enumerate(plate_shifts):
        change = true_change if v > 0 else 0.0
        others = rng.standard_normal((n_others, len(level)))
        ids = [samples[v]] + [f"RT{seed:03d}-OTHER-{v + 1}-{k + 1}" for k in range(n_others)]
        person = {h: np.concatenate([[level[h]], others[:, i]]) for i, h in enumerate(level)}
        if "olink" in platforms:
            records: dict[str, list[object]] = {k: [] for k in OLINK_COLUMNS}
            study = {a[1]: a[4] + a[5] * person[a[1]] + np.r_[change, np.zeros(n_others)] for a in OLINK_ASSAYS}
            effects = dict.fromkeys(level, shift)
            _olink_plate(records, rng, f"OLINK_RETEST_{seed}_{v + 1}", ids, study, effects, "B20001")
            files[f"olink_npx_retest_visit{v + 1}.csv"] = pl.DataFrame(records).write_csv().encode()
        if "msd" in platforms:
            study = {
                a[1]: a[2] * np.exp(np.log(a[3]) * person[a[1]] + np.r_[change, np.zeros(n_others)]) for a in MSD_ASSAYS
            }
            plate = f"Plate_RT{seed:03d}V{v + 1}"
            files[f"msd_vplex_retest_visit{v + 1}.csv"] = _msd_plate(
                rng, plate, ids, study, dict.fromkeys(level, shift)
            )
    files["retest_manifest.csv"], truth = retest_person(subject, samples, dates, plate_shifts, true_change)
    return DemoData(files=files, truth=truth | {"level_sd": level})


def retest_person(
    subject: str, samples: list[str], dates: list[date], plate_shifts: tuple[float, ...], true_change: float
) -> tuple[bytes, dict[str, object]]:
    """The manifest of one person's retest samples (a woman of 41, a patient, serum; a quarter of a year
    older at each visit) and the planted truth common to the retest generators."""
    manifest = pl.DataFrame(
        {
            "sample_id": samples,
            "subject_id": [subject] * len(samples),
            "cohort": ["patient"] * len(samples),
            "matrix": ["serum"] * len(samples),
            "sex": ["F"] * len(samples),
            "age": [41.0 + 0.25 * v for v in range(len(samples))],
            "collection_date": [d.isoformat() for d in dates],
        }
    )
    truth: dict[str, object] = {
        "subject_id": subject,
        "samples": samples,
        "dates": dates,
        "plate_shifts": list(plate_shifts),
        "true_change": true_change,
    }
    return manifest.write_csv().encode(), truth


def describe(demo: DemoData) -> str:
    """One line per file with its size, for logs."""
    out = io.StringIO()
    for name, data in sorted(demo.files.items()):
        out.write(f"{name}\t{len(data)} bytes\n")
    return out.getvalue()
