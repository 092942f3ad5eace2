"""Retests from real-shaped vendor exports scored on a release's scale (warehouse.client.score).

The release is built from the demo generator's truth (tests/retest_release.py), so the frozen anchors are
known independently of the code under test; the exports are new Olink and MSD plates written by
transforms.demo.generate_retest with planted plate shifts and planted true changes.
"""

from __future__ import annotations

import io
import subprocess
import sys

import polars as pl
import pytest

from tests.retest_release import RCV_LOG, synthetic_release
from transforms.demo import generate_retest
from transforms.retest import Person, PersonError
from warehouse.client import Scored, ScoreError, score


def _later(scored: Scored) -> pl.DataFrame:
    """The results of the second visit (those with a change from the first)."""
    return scored.results.filter(pl.col("collection_date") == scored.results["collection_date"].max())


def test_a_planted_plate_shift_is_removed_by_the_frozen_anchors_and_a_true_change_is_kept() -> None:
    release = synthetic_release()
    without = {k: v for k, v in release.items() if k != "normalisation_anchors"}
    same_person = generate_retest(plate_shifts=(0.0, 1.5), true_change=0.0)
    corrected = _later(score(same_person.files, release))
    assert corrected.height == 30 and (corrected["status"] == "placed").all()  # 20 Olink + 10 MSD markers
    assert corrected["batch_method"].str.starts_with("plate_control (frozen to release 2026.01.01-1)").all()
    assert (corrected["plate_shift"] - 1.5).abs().max() < 0.3  # the shift the anchors saw is the planted one
    assert corrected["change_log"].abs().max() < 0.55
    assert corrected["change_vs_rcv"].str.starts_with("within the reference change value").all()

    raw = _later(score(same_person.files, without))  # the same exports placed without the anchors
    assert raw["batch_method"].str.starts_with("none: release 2026.01.01-1 has no plate-control anchors").all()
    assert ((raw["change_log"] - 1.5).abs() < 0.6).all()
    assert raw["change_vs_rcv"].str.starts_with("larger than the reference change value").all()

    changed = generate_retest(plate_shifts=(0.0, 1.5), true_change=1.6)  # a real change, not seen by controls
    detected = _later(score(changed.files, release))
    assert ((detected["change_log"] - 1.6).abs() < 0.55).all()
    assert (detected["change_log"] > detected["platform"].replace_strict(RCV_LOG)).all()
    assert detected["change_vs_rcv"].str.starts_with("larger than the reference change value").all()


def test_the_json_names_the_release_and_shows_censored_values_as_text_never_as_numbers() -> None:
    demo = generate_retest(plate_shifts=(0.0, 0.4), platforms=("msd",))
    report = score(demo.files, synthetic_release()).to_json()
    assert report["release"] == "2026.01.01-1" and report["manifest_sha256"] == "0" * 64
    assert "not a diagnosis" in report["disclaimer"]
    (person,) = report["people"]
    assert person["subject_id"] == "RETEST-PERSON-1" and person["sex"] == "F"
    assert [s["collection_date"] for s in person["samples"]] == ["2026-03-02", "2026-06-01"]
    assert report["other_samples_rows"] == 2 * 6 * 10 * 2  # visits x other samples x assays x duplicate wells
    il4 = [r for r in person["results"] if r["analyte"] == "IL4"]  # 0.035 pg/mL median, LLOD 0.02
    for r in person["results"]:
        if r["censoring"] in ("below_lod", "below_lloq"):
            assert r["value"] is None and r["shown"].startswith("<") and r["limit_value"] is not None
            assert r["percentile"].startswith("<")
        else:
            assert r["shown"].endswith(r["unit"]) and isinstance(r["value"], float)
    assert il4 and all(r["status"] == "placed" for r in il4)


def _csv(data: bytes) -> pl.DataFrame:
    return pl.read_csv(io.BytesIO(data), infer_schema=False)


def _bytes(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode()


def test_bad_input_gets_its_reason_per_marker_and_the_rest_is_still_scored() -> None:
    demo = generate_retest(plate_shifts=(0.0, 0.5))
    files = dict(demo.files)
    # visit 1 Olink: an assay the dictionary does not know (without a UniProt accession, which would name it),
    # and one NPX cell that is not a number
    olink = _csv(files["olink_npx_retest_visit1.csv"])
    olink = olink.with_columns(
        pl.when(pl.col("Assay") == "IL6").then(pl.lit("")).otherwise(pl.col("UniProt")).alias("UniProt"),
        pl.when(pl.col("Assay") == "IL6").then(pl.lit("IL-99x")).otherwise(pl.col("Assay")).alias("Assay"),
        pl.when((pl.col("Assay") == "TNF") & (pl.col("SampleID") == "RT011-1"))
        .then(pl.lit("n.a.x"))
        .otherwise(pl.col("NPX"))
        .alias("NPX"),
    )
    files["olink_npx_retest_visit1.csv"] = _bytes(olink)
    # visit 2 Olink: the plate controls were not run
    plate2 = _csv(files["olink_npx_retest_visit2.csv"]).filter(pl.col("Sample_Type") == "SAMPLE")
    files["olink_npx_retest_visit2.csv"] = _bytes(plate2)
    # a hand-typed file for the same person: another platform, and values in an unknown unit
    files["typed.csv"] = (
        b"sample_id,analyte,value,unit,plate_id,platform\n"
        + b"".join(
            b"RT011-2,%s,3.1,pg/mL,P9,luminex\n" % a for a in (b"IL-6", b"IL-10", b"IL-8", b"IFN-gamma", b"IL-2")
        )
        + b"RT011-2,TNF-alpha,2.0,furlongs/mL,P9,msd\n"
    )
    scored = score(files, synthetic_release())
    report = scored.to_json()
    reasons = {(p["source_file"], p["analyte_raw"]): p["reason"] for p in report["not_scored"] if p["sample_id"]}
    assert "IL-99x" in reasons[("olink_npx_retest_visit1.csv", "IL-99x")]
    assert "analyte" in reasons[("olink_npx_retest_visit1.csv", "IL-99x")].lower()
    assert "n.a.x" in reasons[("olink_npx_retest_visit1.csv", "TNF")]
    refused = reasons[("olink_npx_retest_visit2.csv", "IL6")]
    assert "plate OLINK_RETEST_11_2 has no plate control" in refused and "CONTROL_SAMPLE_1" in refused
    assert "only known concentration units" in reasons[("typed.csv", "TNF-alpha")]
    results = scored.results
    luminex = results.filter(pl.col("platform") == "luminex")
    assert luminex.height == 5
    assert luminex["status"].str.starts_with("not placed: measured on luminex in pg/mL; the release has").all()
    assert luminex["batch_method"].str.starts_with("as given").all()
    # the rest is still scored: MSD on both visits, Olink visit 1 except the two broken assays
    placed = results.filter(pl.col("status") == "placed")
    assert placed.filter(pl.col("platform") == "msd").height == 20
    first_olink = placed.filter(pl.col("platform") == "olink")
    assert first_olink.height == 18 and first_olink["collection_date"].n_unique() == 1


def test_a_whole_file_the_raw_suite_rejects_is_not_scored_and_says_why() -> None:
    demo = generate_retest(plate_shifts=(0.0, 0.2), platforms=("olink",))
    files = dict(demo.files)
    broken = _csv(files["olink_npx_retest_visit2.csv"]).with_columns(pl.lit("-").alias("NPX"))
    files["olink_npx_retest_visit2.csv"] = _bytes(broken)
    scored = score(files, synthetic_release())
    problem = next(f for f in scored.files if f["name"] == "olink_npx_retest_visit2.csv")["problem"]
    assert "rows unusable" in problem and "nothing of it is scored" in problem
    assert scored.results["collection_date"].n_unique() == 1 and (scored.results["status"] == "placed").all()
    with pytest.raises(ScoreError, match="no export with measurements could be used"):
        score({"olink_npx_retest_visit2.csv": files["olink_npx_retest_visit2.csv"]}, synthetic_release())


def test_another_matrix_than_the_release_has_is_refused_per_marker() -> None:
    demo = generate_retest(plate_shifts=(0.0,), platforms=("msd",))
    files = {k: v for k, v in demo.files.items() if k != "retest_manifest.csv"}
    with pytest.raises(PersonError, match="holds 7 study samples"):
        score(files, synthetic_release())
    scored = score(files, synthetic_release(), person=Person(matrix="plasma"), sample_ids=["RT011-1"])
    assert (scored.results["status"].str.starts_with("not placed: no plasma reference group")).all()
    assert scored.results.height == 10 and scored.people[0]["subject_id"] == "person"


def test_the_person_described_without_a_manifest_is_checked_as_a_manifest_row_is() -> None:
    """A sex of 'X' and an age of -3 were printed back on the person's results, and 'female' matched no
    sex-specific group; each is now read as the manifest reads it or refused naming the field."""
    demo = generate_retest(plate_shifts=(0.0,), platforms=("msd",))
    files = {k: v for k, v in demo.files.items() if k != "retest_manifest.csv"}
    spelled = score(
        files, synthetic_release(), person=Person(sex=" female", age=41, matrix="Serum"), sample_ids=["RT011-1"]
    )
    assert (spelled.people[0]["sex"], spelled.people[0]["age"], spelled.people[0]["matrix"]) == ("F", 41, "serum")
    for person, field in [(Person(sex="X"), "sex 'X'"), (Person(age=-3), "age -3"), (Person(matrix="urine"), "matrix")]:
        with pytest.raises(PersonError, match=f"^{field}"):
            score(files, synthetic_release(), person=person, sample_ids=["RT011-1"])


def test_the_client_needs_no_prefect_great_expectations_or_duckdb() -> None:
    code = (
        "import sys; from tests.retest_release import synthetic_release; from transforms.demo import generate_retest;"
        "from warehouse.client import score; d = generate_retest(platforms=('msd',));"
        "score(d.files, synthetic_release());"
        "bad = [m for m in ('prefect', 'great_expectations', 'duckdb') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_release_that_bridged_or_used_combat_says_what_the_frozen_correction_leaves_out() -> None:
    release = synthetic_release()
    release["manifest"]["parameters"]["batch_methods"] = {
        "default": "plate_control",
        "olink": "combat",
        "msd": "bridge",
    }
    scored = score(generate_retest(plate_shifts=(0.3,)).files, release)
    methods = dict(scored.results.group_by("platform").agg(pl.col("batch_method").first()).iter_rows())
    assert methods["olink"].endswith("; ComBat not repeated: the release kept no ComBat fit for this marker")
    assert methods["msd"].endswith(
        "on the scale of the release's bridge reference run (its other runs were bridged onto it)"
    )


def _combat_release() -> dict:
    """The synthetic release as a ComBat release of Olink: ComBat's standardisation taken from the
    generator's truth (grand mean = assay centre, pooled variance = between-person SD squared, no covariate
    effect), as anchors of kind combat beside the plate-control ones."""
    from transforms.demo import OLINK_ASSAYS

    release = synthetic_release()
    plate = pl.DataFrame(pl.from_arrow(release["normalisation_anchors"])).with_columns(
        pl.lit("plate_control").alias("kind")
    )
    terms = []
    for _, h, _, _, centre, sd in OLINK_ASSAYS:
        for term, value in (
            ("grand_mean", centre),
            ("var_pooled", sd**2),
            ("cohort=patient", 0.0),
            ("__sex=M", 0.0),
            ("__age", 0.0),
        ):
            terms.append(("olink", "Olink Target 96 Inflammation", h, f"combat:{term}", "NPX", value, 12, "combat"))
    fit = pl.DataFrame(terms, schema=plate.columns, orient="row")
    release["normalisation_anchors"] = pl.concat([plate, fit]).to_arrow()
    release["manifest"]["parameters"] |= {
        "batch_methods": {"default": "plate_control", "olink": "combat"},
        "combat_min_batch": 10,
    }
    return release


def test_frozen_combat_brings_a_new_run_of_enough_people_onto_the_release_scale() -> None:
    from transforms.demo import OLINK_ASSAYS

    centre = {a[0]: a[4] for a in OLINK_ASSAYS}  # the assay as Olink names it -> its centre NPX
    demo = generate_retest(plate_shifts=(0.4,), n_others=14, platforms=("olink",))
    export = _csv(demo.files["olink_npx_retest_visit1.csv"]).with_columns(pl.col("NPX").cast(pl.Float64))
    study = pl.col("Sample_Type") == "SAMPLE"
    mid = pl.col("Assay").replace_strict(centre, return_dtype=pl.Float64) + 0.4
    # a run that reads every study sample's distance from the centre at half its size (no LOD reached)
    spread = export.with_columns(
        pl.when(study).then(mid + 0.5 * (pl.col("NPX") - mid)).otherwise(pl.col("NPX")).alias("NPX")
    )
    ids = spread.filter(study)["SampleID"].unique().sort().to_list()
    manifest = pl.DataFrame(
        {
            "sample_id": ids,
            "subject_id": [f"P{i}" for i in range(len(ids))],
            "cohort": ["healthy"] * len(ids),
            "matrix": ["serum"] * len(ids),
            "sex": ["F", "M"] * (len(ids) // 2) + ["F"] * (len(ids) % 2),
            "age": [40.0] * len(ids),
            "collection_date": ["2026-03-02"] * len(ids),
        }
    )
    files = {"run.csv": _bytes(spread), "manifest.csv": _bytes(manifest)}

    def spread_ratio(release: dict) -> tuple[float, pl.DataFrame]:
        results = score(files, release).results
        sds = results.group_by("analyte").agg(pl.col("value").std().alias("sd"))
        truth = {a[1]: a[5] for a in OLINK_ASSAYS}
        ratios = sds.with_columns(
            (pl.col("sd") / pl.col("analyte").replace_strict(truth, return_dtype=pl.Float64)).alias("r")
        )
        return float(ratios["r"].median()), results  # type: ignore[arg-type]

    frozen, results = spread_ratio(_combat_release())
    assert results["subject_id"].n_unique() == 15
    assert results["batch_method"].str.ends_with("+combat (frozen, a batch of 15)").all()
    plain, _ = spread_ratio(synthetic_release())  # plate controls alone cannot undo a compressed spread
    assert abs(frozen - 1.0) < 0.25 and plain < 0.6, (frozen, plain)
    alone = score({"run.csv": files["run.csv"]}, _combat_release(), sample_ids=[ids[0]]).results
    assert (
        alone["batch_method"]
        .str.ends_with("; ComBat not repeated: this batch has 1 study samples, frozen ComBat needs 10")
        .all()
    )


def test_a_dictionary_other_than_the_release_was_built_with_is_named() -> None:
    from warehouse.lookups import read_analyte_dictionary

    files = generate_retest(plate_shifts=(0.0,), platforms=("msd",)).files
    release = synthetic_release()
    release["manifest"]["parameters"]["analyte_dictionary_sha256"] = read_analyte_dictionary()[1]
    assert score(files, release).notes == []
    release["manifest"]["parameters"]["analyte_dictionary_sha256"] = "f" * 64
    (note,) = score(files, release).to_json()["notes"]
    assert "is not the one release 2026.01.01-1 was built with (ffffffffffff)" in note


def test_a_missing_release_or_an_empty_store_says_what_to_do(tmp_path) -> None:
    from warehouse.client import ReleaseNotFoundError, load_release

    with pytest.raises(ReleaseNotFoundError, match="no release published yet; `refranges run` publishes one"):
        load_release(tmp_path)
    (tmp_path / "index.json").write_text('{"releases": []}')
    with pytest.raises(ReleaseNotFoundError, match="no release published yet"):
        load_release(tmp_path)
    with pytest.raises(ReleaseNotFoundError, match=r"no release 1999\.01\.01-1; `refranges releases list`"):
        load_release(tmp_path, "1999.01.01-1")


def test_the_persons_page_opens_with_what_lies_outside_and_what_changed_beyond_the_rcv() -> None:
    """A page of many markers listed them in name order, the few outside their interval or changed beyond the
    reference change value anywhere among them (thousands on Olink Explore HT). It now opens with both, each
    linked to its row, beside how many results outside an interval healthy people have by construction."""
    import re

    from warehouse.person_page import outside_interval, render_person_page

    release = synthetic_release()
    grid = pl.DataFrame(pl.from_arrow(release["reference_quantiles"]))
    changed = score(generate_retest(plate_shifts=(0.0, 1.5), true_change=1.6).files, release)
    report = changed.to_json()
    (person,) = report["people"]
    page = render_person_page(person, changed.results, report, grid, coverage=0.95)
    glance = page[page.index("<h2>At a glance</h2>") : page.index("<table>")]
    latest = _later(changed)
    outside = [p for p in latest["position"] if outside_interval(p)]
    assert f"<b>{len(outside)} of 30</b> markers" in glance and "about 1.5 of 30 results outside" in glance
    assert "larger than the reference change value: <b>30 of 30</b>" in glance  # every planted change
    for anchor in re.findall(r"href='#(m\d+)'", glance):  # each link leads to a row of the page
        assert f"<tr id='{anchor}'>" in page
    assert page.index("not a diagnosis") < page.index("<h2>At a glance</h2>")

    same = score(generate_retest(plate_shifts=(0.0, 1.5), true_change=0.0).files, release)
    quiet = render_person_page(same.to_json()["people"][0], same.results, same.to_json(), grid)
    assert "larger than the reference change value: <b>0 of 30</b>." in quiet
    no_rcv = {k: v for k, v in release.items() if k != "retest_variation"}
    unassessed = score(generate_retest(plate_shifts=(0.0, 0.0), true_change=0.0).files, no_rcv)
    page = render_person_page(unassessed.to_json()["people"][0], unassessed.results, unassessed.to_json(), grid)
    assert "30 markers have an earlier result; none of their changes could be set against" in page


def test_a_position_outside_the_interval_is_told_from_one_inside() -> None:
    from warehouse.person_page import outside_interval

    outside = [
        "below the reference interval",
        "above the reference interval",
        "above the reference interval, which lies below the LOD",
        "above the upper limit of quantification, above the reference interval",
        "below the LOD",
    ]
    inside = [
        "inside the reference interval",
        "below the LOD (interval starts below the LOD)",
        "below the LOD, as is the whole reference interval",
        "above the upper limit of quantification",
    ]
    assert all(outside_interval(p) for p in outside) and not any(outside_interval(p) for p in inside)


def test_a_reader_failing_on_one_export_leaves_the_others_scored(monkeypatch) -> None:
    """As in a run: a reader's failure on one export (a polars error) stopped `score` with a traceback; that
    export is named as not scored, with the error, and the person's other exports are placed."""
    from transforms.readers import detect

    demo = generate_retest(plate_shifts=(0.0, 0.4))
    odd = next(name for name in demo.files if name.startswith("msd"))
    original = detect.read_file

    def failing(data: bytes, *, source: str, **kwargs: object):
        if source == odd:
            raise pl.exceptions.ComputeError("cannot cast categorical types to Float64")
        return original(data, source=source, **kwargs)

    monkeypatch.setattr(detect, "read_file", failing)
    scored = score(demo.files, synthetic_release())
    problem = scored.not_scored.filter(pl.col("source_file") == odd)["reason"].to_list()
    assert problem == [
        f"{odd}: refranges' reader failed on this file (ComputeError: cannot cast categorical types to Float64), "
        "a refranges defect: report it with the file"
    ]
    assert scored.results.filter(pl.col("status") == "placed").height > 0  # the other exports are scored
