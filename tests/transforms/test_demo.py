from __future__ import annotations

import hashlib

from transforms.demo import EARLY_SHIFT_SD, SEVERITY_SLOPE_SD, generate_demo


def test_demo_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    a = generate_demo(seed=11, n_healthy=40, n_patients=10)
    b = generate_demo(seed=11, n_healthy=40, n_patients=10)
    c = generate_demo(seed=12, n_healthy=40, n_patients=10)
    digest = {n: hashlib.sha256(d).hexdigest() for n, d in a.files.items()}
    assert digest == {n: hashlib.sha256(d).hexdigest() for n, d in b.files.items()}
    assert digest["manifest.csv"] != hashlib.sha256(c.files["manifest.csv"]).hexdigest()


def test_demo_has_vendor_layouts_plates_and_planted_truth() -> None:
    demo = generate_demo()
    names = sorted(demo.files)
    assert "manifest.csv" in names
    assert sum(n.startswith("olink_npx") for n in names) == 2
    assert sum(n.startswith("msd_") for n in names) >= 10
    manifest = demo.files["manifest.csv"].decode().splitlines()
    assert len(manifest) == 1 + 600 + 50  # header, one sample per person, second visits of 1/8 of healthy people
    repeats = set(demo.truth["repeat_samples"])
    rows = [line.split(",") for line in manifest[1:]]
    repeat_subjects = {r[1] for r in rows if r[0] in repeats}
    assert len(repeat_subjects) == 50 and all(r[2] == "healthy" for r in rows if r[0] in repeats)
    first = {r[1]: r[6] for r in rows if r[0] not in repeats}
    assert all(r[6] > first[r[1]] for r in rows if r[0] in repeats)  # the second visit comes later
    assert manifest[0].startswith("sample_id,subject_id,cohort,matrix,sex,age,collection_date,severity")
    assert demo.truth["severity_slope_sd"] == SEVERITY_SLOPE_SD and demo.truth["early_shift_sd"] == EARLY_SHIFT_SD
    assert len(demo.truth["plate_effects"]) >= 20 and len(demo.truth["bridge_samples"]) == 8
    batch1 = demo.files["olink_npx_batch1.csv"].decode().splitlines()
    assert batch1[0].startswith("SampleID;Index;OlinkID;UniProt;Assay") and "," in batch1[1]
