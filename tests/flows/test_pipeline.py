"""End-to-end: the Prefect flow over a generated landing folder, twice, plus bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from flows.config import load_settings
from flows.landing import copy_demo
from transforms.demo import OLINK_ASSAYS, generate_demo
from warehouse import releases

pytestmark = pytest.mark.slow

INTERVAL_COLUMNS = [
    "analyte",
    "uniprot",
    "platform",
    "panel",
    "matrix",
    "unit",
    "sex",
    "age_min",
    "age_max",
    "n",
    "n_below_lod",
    "n_outliers_excluded",
    "method",
    "lower_limit",
    "upper_limit",
    "lower_ci_low",
    "lower_ci_high",
    "upper_ci_low",
    "upper_ci_high",
    "median",
    "coverage",
    "ci_level",
    "lod",
]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, prefect_backend):
    from flows.pipeline import run_pipeline

    home = tmp_path_factory.mktemp("home")
    settings = load_settings(env={}, home=home, subject_key="test-key", rcv_min_subjects=15)
    demo = generate_demo(seed=5, n_healthy=200, n_patients=40)
    copy_demo(demo.files, settings.landing)
    (settings.landing / "empty_export.csv").write_bytes(b"")
    summary = run_pipeline(settings)
    return settings, demo, summary


def q(settings, sql: str):
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_first_run_loads_every_file_and_publishes_a_release(first_run) -> None:
    settings, demo, summary = first_run
    loaded = [f for f in summary.files if f.status == "loaded"]
    assert len(loaded) == len(demo.files)
    assert summary.status == "completed_with_problems"  # the empty file
    assert summary.release_version is not None and summary.groups_published >= 30
    folder = settings.releases / summary.release_version
    assert sorted(p.name for p in folder.iterdir()) == [
        "cohort_comparison.parquet",
        "manifest.json",
        "normalisation_anchors.parquet",
        "reference_intervals.parquet",
        "reference_quantiles.parquet",
        "report.html",
        "retest_variation.parquet",
    ]
    intervals = pl.read_parquet(folder / "reference_intervals.parquet")
    report = (folder / "report.html").read_text(encoding="utf-8")
    assert report.count("<svg class='plot'") == intervals.height  # one plot per reference group
    assert "http://" not in report and "https://" not in report and "<script" not in report
    assert "not a diagnosis" in report
    assert intervals.columns[: len(INTERVAL_COLUMNS)] == INTERVAL_COLUMNS
    everyone = intervals.filter((pl.col("sex") == "all") & pl.col("age_min").is_null() & pl.col("age_max").is_null())
    assert everyone.height == 30 and set(intervals["matrix"]) == {"serum"}
    assert set(intervals["sex"]) <= {"all", "F", "M"}
    assert (intervals.filter(pl.col("method") == "nonparametric")["n"] >= 120).all() and (intervals["n"] >= 40).all()

    assert set(intervals.filter(pl.col("platform") == "olink")["unit"]) == {"NPX"}
    assert set(intervals.filter(pl.col("platform") == "msd")["unit"]) == {"pg/mL"}
    ok = intervals.filter(~pl.col("lower_limit_censored"))
    assert (ok["lower_limit"] <= ok["median"]).all() and (intervals["median"] <= intervals["upper_limit"]).all()
    quantiles = pl.read_parquet(folder / "reference_quantiles.parquet")
    assert quantiles.columns == [*INTERVAL_COLUMNS[:9], "p", "value", "censored"]
    assert quantiles.group_by(INTERVAL_COLUMNS[:9]).agg(pl.col("value").is_sorted())["value"].all()


def test_repeat_visits_give_the_reference_change_value_and_count_once_in_reference_groups(first_run) -> None:
    settings, demo, summary = first_run
    folder = settings.releases / summary.release_version
    variation = pl.read_parquet(folder / "retest_variation.parquet")
    assert set(variation["matrix"]) == {"serum"} and variation.height == 30
    assert (variation["n_subjects"] >= 15).all()
    # planted within-person SD: WITHIN_SUBJECT_SD x the marker's between-person SD, plus the measurement
    # noise (0.12 NPX per value) and what plate correction leaves
    planted = {h: sd for _, h, _, _, _, sd in OLINK_ASSAYS}
    olink = variation.filter(pl.col("platform") == "olink")
    for row in olink.iter_rows(named=True):
        expected = math.hypot(demo.truth["within_subject_sd"] * planted[row["analyte"]], 0.12)
        assert row["sd_total_log"] == pytest.approx(expected, rel=0.45), row["analyte"]
    ratio = olink["sd_total_log"] / olink["analyte"].replace_strict(planted)
    assert ratio.median() == pytest.approx(demo.truth["within_subject_sd"], rel=0.2)
    msd = variation.filter(pl.col("platform") == "msd")
    assert (msd["cv_analytical_pct"].is_between(2, 10)).all()  # duplicate wells: 5 % CV planted
    # every reference group counts a person once: n never exceeds the number of healthy people
    intervals = pl.read_parquet(folder / "reference_intervals.parquet")
    people = q(settings, "select count(distinct subject_key) from measurements where cohort = 'healthy'")[0][0]
    assert people == demo.truth["n_healthy"]
    assert intervals["n"].max() <= people
    assert q(settings, "select count(*) from retest_variation") == [(30,)]


def test_every_published_file_matches_its_manifest_checksum(first_run) -> None:
    settings, demo, summary = first_run
    manifest = releases.read_manifest(settings.releases, summary.release_version)
    assert releases.verify(settings.releases, summary.release_version) == []
    assert {i["file"] for i in manifest["inputs"]} == set(demo.files)
    assert manifest["files"]["reference_intervals.parquet"]["rows"] == summary.groups_published
    assert manifest["files"]["cohort_comparison.parquet"]["rows"] > 0
    assert {c["name"] for c in manifest["files"]["reference_quantiles.parquet"]["schema"]} >= {"p", "value"}
    assert manifest["parameters"]["min_n"] == 120 and manifest["code_version"]
    index = json.loads((settings.releases / "index.json").read_text())
    assert [r["version"] for r in index["releases"]] == [summary.release_version]


def test_the_ledger_balances_and_the_warehouse_holds_the_rows(first_run) -> None:
    settings, demo, _ = first_run
    rows = q(settings, "select file_name, rows_read, rows_loaded, rows_quarantined, status from files")
    assert all(r[1] == r[2] + r[3] for r in rows)
    assert ("empty_export.csv", 0, 0, 0, "quarantined") in rows
    assert (settings.quarantine / "empty_export.csv.reason.txt").read_text().startswith("empty_export.csv: the file")
    n_samples = 240 + len(demo.truth["repeat_samples"])
    assert q(settings, "select count(distinct sample_id) from measurements") == [(n_samples,)]
    assert q(settings, "select count(*) from measurements") == [(n_samples * 30,)]
    assert q(settings, "select count(*) from samples where subject_key like 'SUBJ%'") == [(0,)]
    qc = q(settings, "select suite, count(*), bool_and(success) from qc_results group by suite order by suite")
    assert qc == [
        ("files", 2, True),
        ("normalised_measurements", 4, True),
        ("plates[msd]", 8, True),
        ("plates[olink]", 8, True),
        ("raw_measurements", 9, True),
        ("release", 8, True),
    ]
    assert q(settings, "select distinct engine from qc_results") == [("great_expectations",)]
    assert q(settings, "select count(*) from quarantine where stage = 'file'") == [(1,)]


def test_a_second_run_publishes_nothing_and_loads_nothing_twice(first_run) -> None:
    from flows.pipeline import run_pipeline

    settings, _, _ = first_run
    before = q(settings, "select (select count(*) from raw_measurements), (select count(*) from files)")
    built = q(settings, "select distinct run_id from measurements_normalised")
    again = run_pipeline(settings)
    assert again.release_version is None and "inputs unchanged" in again.release_message
    assert {f.status for f in again.files} == {"skipped"}
    assert q(settings, "select (select count(*) from raw_measurements), (select count(*) from files)") == before
    assert len(releases.read_index(settings.releases)) == 1
    # nothing new: the normalised tables are left as the first run built them (no part normalised)
    assert again.parts["normalise"] == 0 and again.normalised_rows > 0
    assert q(settings, "select distinct run_id from measurements_normalised") == built
    # a setting that changes numbers does rebuild them
    analyst = duckdb.connect(str(settings.warehouse), read_only=True)  # opened before the rebuild
    try:
        changed = run_pipeline(dataclasses.replace(settings, combat_min_batch=settings.combat_min_batch + 1))
        # the open session still reads the rows of its snapshot: their generation is kept for it
        assert analyst.execute("select count(*) from measurements_normalised").fetchall() == [(again.normalised_rows,)]
        assert analyst.execute("select distinct run_id from measurements_normalised").fetchall() == built
    finally:
        analyst.close()  # DuckDB shares one instance per file in a process: q would read the session's snapshot
    assert changed.parts["normalise"] >= 1 and changed.normalised_rows == again.normalised_rows
    assert q(settings, "select distinct run_id from measurements_normalised") == [(changed.run_id,)]
    store = settings.warehouse.parent / "normalised"
    assert sorted(p.name for p in store.iterdir()) == sorted([built[0][0], changed.run_id])
    # a second rebuild removes the generation nobody reads any more
    third = run_pipeline(dataclasses.replace(settings, combat_min_batch=settings.combat_min_batch + 2))
    assert third.parts["normalise"] >= 1
    assert sorted(p.name for p in store.iterdir()) == sorted([changed.run_id, third.run_id])
    assert q(settings, "select count(*) from measurements_normalised") == [(again.normalised_rows,)]


def test_unknown_samples_wait_in_quarantine_until_a_manifest_names_them(first_run) -> None:
    from flows.pipeline import run_pipeline

    settings, _, _ = first_run
    export = (
        "sample_id,analyte,value,unit,plate_id,sample_type\n"
        "LATE-1,IL-6,2.5,pg/mL,PX,sample\nLATE-1,TNF,1.5,pg/mL,PX,sample\n"
    )
    (settings.landing / "late_export.csv").write_text(export)
    run_pipeline(settings)
    held = q(settings, "select reason from quarantine where sample_id = 'LATE-1'")
    assert len(held) == 2 and "is in no manifest" in held[0][0]
    header = "sample_id,subject_id,cohort,matrix,sex,age,collection_date\n"
    (settings.landing / "late_manifest.csv").write_text(header + "LATE-1,SUBJ-X,patient,serum,F,40,01/05/2026\n")
    run_pipeline(settings)  # the manifest lists it, but its row is held back: the export's rows say so
    held = q(settings, "select reason from quarantine where sample_id = 'LATE-1' and stage = 'link' order by 1")
    assert held == [
        (
            "late_export.csv: line 2: sample LATE-1 is in a manifest, but its row there is held back "
            "(late_manifest.csv: line 2: collection_date '01/05/2026' is not an ISO date (YYYY-MM-DD); write it as "
            "YYYY-MM-DD (a date such as 01/05/2026 is 1 May in some countries and 5 January in others, so it is "
            "never guessed)); correct that row (the rows load on the next run)",
        ),
        (
            "late_export.csv: line 3: sample LATE-1 is in a manifest, but its row there is held back "
            "(late_manifest.csv: line 2: collection_date '01/05/2026' is not an ISO date (YYYY-MM-DD); write it as "
            "YYYY-MM-DD (a date such as 01/05/2026 is 1 May in some countries and 5 January in others, so it is "
            "never guessed)); correct that row (the rows load on the next run)",
        ),
    ]
    (settings.landing / "late_manifest.csv").write_text(header + "LATE-1,SUBJ-X,patient,serum,F,40,2026-05-01\n")
    run_pipeline(settings)
    assert q(settings, "select count(*) from quarantine where sample_id = 'LATE-1'") == [(0,)]
    assert q(settings, "select count(*) from measurements where sample_id = 'LATE-1' and platform = 'tidy'") == [(2,)]


def test_move_mode_archives_read_only_and_a_bad_file_marks_the_run_state(tmp_path, prefect_backend) -> None:
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k", landing_mode="move", min_n=1000)
    settings.landing.mkdir(parents=True)
    good = "sample_id,analyte,value,unit,plate_id\nS1,IL-6,2.5,pg/mL,P1\n"
    (settings.landing / "good.csv").write_text(good)
    (settings.landing / "junk.bin").write_bytes(b"\x00\x01\x02junk")
    state = run_pipeline(settings, return_state=True)
    assert state.name == "CompletedWithProblems" and "junk.bin" in state.message
    summary = state.result()
    assert {f.name: f.status for f in summary.files} == {"good.csv": "loaded", "junk.bin": "quarantined"}
    assert list(settings.landing.iterdir()) == []
    archived = list(settings.archive.rglob("*.csv"))
    assert len(archived) == 1 and archived[0].read_text() == good and not (archived[0].stat().st_mode & 0o222)
    assert (settings.quarantine / "junk.bin.reason.txt").read_text().startswith("junk.bin: the file is binary")
    assert summary.release_version is None and "minimum n" in summary.release_message


def test_an_open_analyst_session_never_blocks_a_run_and_sees_old_or_new_never_a_mix(first_run) -> None:
    """A read-only DuckDB session stays open during a full run; the run succeeds and swaps the warehouse."""
    from flows.pipeline import run_pipeline

    settings, _, _ = first_run
    analyst = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        before = analyst.execute("select count(*) from files").fetchall()
        (settings.landing / "analyst_test.csv").write_text(
            "sample_id,subject_id,cohort,matrix,sex,age,collection_date\nNEW-1,SUBJ-N,healthy,serum,F,33,2026-05-02\n"
        )
        summary = run_pipeline(settings)
        assert any(f.name == "analyst_test.csv" and f.status == "loaded" for f in summary.files)
        # the open session keeps its consistent snapshot of the old state
        assert analyst.execute("select count(*) from files").fetchall() == before
        assert analyst.execute("select count(*) from runs where finished_at is null").fetchall() == [(0,)]
    finally:
        analyst.close()
    after = q(settings, "select count(*) from files")
    assert after[0][0] == before[0][0] + 1
    assert not list(settings.warehouse.parent.glob(".warehouse.duckdb.work*"))


def test_layers_are_schemas_of_views_that_analysts_can_attach(first_run, tmp_path) -> None:
    settings, _, _ = first_run
    layers = q(
        settings,
        "select schema_name, count(*) from duckdb_views() where not internal "
        "and schema_name in ('raw', 'staging', 'marts') group by all order by all",
    )
    assert layers == [("marts", 9), ("raw", 6), ("staging", 3)]  # raw.sample_handling since migration 012
    same = [
        ("raw.measurements", "raw_measurements"),
        ("staging.measurements", "measurements_normalised"),
        ("marts.measurements", "measurements"),
        ("marts.retest_variation", "retest_variation"),
    ]
    for layered, plain in same:
        assert q(settings, f"select count(*) from {layered}") == q(settings, f"select count(*) from {plain}")
    # an analyst who attaches the file under another name still gets the layer views
    con = duckdb.connect()
    try:
        con.execute(f"attach '{settings.warehouse}' as wh (read_only)")
        n = con.execute("select count(*) from wh.marts.measurements").fetchall()
    finally:
        con.close()
    assert n == q(settings, "select count(*) from measurements") and n[0][0] > 0


def test_landing_archive_and_releases_on_an_object_store(tmp_path, prefect_backend) -> None:
    import fsspec

    from flows.pipeline import run_pipeline
    from warehouse import releases, storage
    from warehouse.client import load_release

    bucket = f"memory://lab-bucket-{os.urandom(4).hex()}"  # fsspec's object store: no rename, no folders
    env = {f"REFRANGES_{k.upper()}": f"{bucket}/{k}" for k in ("landing", "archive", "releases")}
    settings = load_settings(env=env, home=tmp_path, subject_key="k", landing_mode="move")
    demo = generate_demo(seed=8, n_healthy=150, n_patients=20)
    copy_demo(demo.files, settings.landing)
    assert len(storage.list_files(f"{bucket}/landing")) == len(demo.files)
    store = f"{bucket}/releases"
    try:
        summary = run_pipeline(settings)
        assert sum(f.status == "loaded" for f in summary.files) == len(demo.files)
        assert summary.release_version is not None and summary.release_path == f"{store}/{summary.release_version}"
        assert releases.verify(store, summary.release_version) == []
        assert load_release(store)["reference_intervals"].num_rows == summary.groups_published
        assert storage.list_files(f"{bucket}/landing") == []  # moved: loaded files leave the landing area
        archived = storage.list_files(f"{bucket}/archive")
        assert len(archived) == len(demo.files)
        assert {storage.name_of(p).split(".")[0] for p in archived} == {f.sha256 for f in summary.files}
        assert not (tmp_path / "releases").exists() and not (tmp_path / "archive").exists()
        copy_demo(demo.files, settings.landing)  # the same files again: nothing new
        again = run_pipeline(settings)
        assert {f.status for f in again.files} == {"skipped"}
        assert again.release_version is None and "inputs unchanged" in again.release_message
    finally:
        fsspec.filesystem("memory").rm(bucket.removeprefix("memory://"), recursive=True)


def test_an_explore_ht_parquet_file_runs_end_to_end_into_npx_reference_groups(tmp_path, prefect_backend) -> None:
    from flows.pipeline import run_pipeline
    from transforms.demo_explore import generate_explore

    settings = load_settings(
        env={}, home=tmp_path, subject_key="test-key", min_n=120, comparison_covariates=["osi_time_to_centrifugation"]
    )
    demo = generate_explore(seed=8, n_healthy=140, n_patients=30)
    copy_demo(demo.files, settings.landing)
    # IL6 under a name the dictionary does not know: found by the UniProt accession the file gives for it
    import pyarrow.parquet as pq

    landed = settings.landing / "explore_ht_npx.parquet"
    table = pq.read_table(landed)
    renamed = pl.DataFrame(pl.from_arrow(table)).with_columns(
        pl.when(pl.col("Assay") == "IL6").then(pl.lit("IL6 (Explore)")).otherwise(pl.col("Assay")).alias("Assay")
    )
    pq.write_table(renamed.to_arrow().replace_schema_metadata(table.schema.metadata), landed)
    summary = run_pipeline(settings)
    assert summary.release_version is not None and summary.groups_published == 20
    assert summary.analytes_by_uniprot == ["IL6 (Explore) as IL6 (P05231)"]
    from flows.summary import summary_text

    told = " ".join(summary_text(summary, width=400).split())
    assert "analytes named by UniProt │ 1 │ not in the analyte dictionary; identified by the UniProt" in told
    assert "IL6 (Explore) as IL6 (P05231)" in told
    npx = next(f for f in summary.files if f.name == "explore_ht_npx.parquet")
    assert npx.status == "loaded" and npx.rows_read == npx.rows_loaded + npx.rows_quarantined
    assert npx.rows_quarantined == demo.truth["n_assays"]  # the one failed sample, nothing else
    assert q(settings, "select distinct platform, unit from reference_intervals") == [("olink_explore_ht", "NPX")]
    internal = q(settings, "select count(*) from raw_measurements where assay_type <> 'assay'")[0][0]
    assert internal > 0
    held = q(settings, 'select "check", count(*) from quarantine group by 1')
    assert held == [("vendor_sample_qc", demo.truth["n_assays"])]  # no internal control held at normalise
    in_study = q(settings, "select count(distinct sample_id) from measurements")[0][0]
    assert in_study == 140 + 30 - 1  # every study sample but the failed one; no control, no negative control
    assert q(settings, "select product, data_file_type from files where product is not null") == [
        ("ExploreHT", "NPX File")
    ]
    assert q(settings, "select count(*) from sample_handling")[0][0] == 140 + 30
    adjusted = q(
        settings,
        "select count(*), count(p_shift_adjusted), min(n_adjusted), any_value(adjusted_for) from cohort_comparison "
        "where cohort = 'patient'",
    )
    assert adjusted == [(20, 20, 140 + 30 - 1, "osi_time_to_centrifugation")]

    # a retest on a new Explore HT plate (its controls named after it, everything read 0.7 NPX high)
    import io

    from warehouse.client import load_release, score

    table = pq.read_table(io.BytesIO(demo.files["explore_ht_npx.parquet"]))
    rows = pl.DataFrame(pl.from_arrow(table))
    first = rows["PlateID"].unique().sort()[0]
    retest = rows.filter(pl.col("PlateID") == first).with_columns(
        pl.col("NPX") + 0.7,
        pl.col("PlateID") + "_RETEST",
        pl.when(pl.col("SampleType") == "SAMPLE")
        .then(pl.col("SampleID"))
        .otherwise(pl.col("SampleID") + "_RETEST")
        .alias("SampleID"),
    )
    person = retest.filter((pl.col("SampleType") == "SAMPLE") & (pl.col("SampleQC") == "PASS"))["SampleID"][0]
    buffer = io.BytesIO()
    pq.write_table(retest.to_arrow().replace_schema_metadata(table.schema.metadata), buffer)
    scored = score({"retest.parquet": buffer.getvalue()}, load_release(settings.releases), sample_ids=[person])
    assert scored.results.height == 20 and (scored.results["status"] == "placed").all()
    assert ((scored.results["plate_shift"] - 0.7).abs() < 0.15).all()  # pooled per-plate controls found it
    measured = q(settings, f"select analyte, value from measurements where sample_id = '{person}'")
    again = dict(scored.results.select("analyte", "value").iter_rows())
    assert max(abs(again[a] - v) for a, v in measured) < 0.15  # the person lands where the cohort run put them

    # the retests `refranges generate --retest --platform explore-ht` writes: a new plate per visit, the second
    # read 0.7 NPX high, then the same person 1.2 NPX higher on every assay (a real change)
    from transforms.demo_explore import generate_explore_retest

    for change in (0.0, 1.2):
        person_retest = generate_explore_retest(plate_shifts=(0.0, 0.7), true_change=change)
        placed = score(person_retest.files, load_release(settings.releases)).results
        assert placed.height == 2 * 20 and (placed["status"] == "placed").all()
        assert placed["batch_method"].str.starts_with("plate_control (frozen to release").all()
        first, second = (placed.filter(pl.col("sample_id") == s) for s in person_retest.truth["samples"])
        shifts = second["plate_shift"] - first["plate_shift"]
        assert ((shifts - 0.7).abs() < 0.35).all()  # each plate's noise is on its controls too
        assert ((second["change_log"] - change).abs() < 0.6).all() and abs(second["change_log"].mean() - change) < 0.15
        planted = person_retest.truth["level_npx"]  # the person's NPX per marker, where the first visit lands
        assert max(abs(v - planted[a]) for a, v in first.select("analyte", "value").iter_rows()) < 0.35


# Figures whose last digits depend on the processor, whatever the code: a parametric group's Box-Cox lambda
# is scipy's maximum-likelihood search (brent, tolerance 1.5e-8) over a sum whose SIMD rounding differs
# between CPUs, so its limits and CIs agree to about 1e-8 (seen: 2e-9 between an Intel and an AMD EPYC
# machine); the severity slope is a LAPACK least-squares fit, and its p- and q-values follow it (4e-14).
# Every other figure must match to the last digit.
CPU_DEPENDENT = {
    "reference_intervals": (
        ("lower_limit", "upper_limit", "lower_ci_low", "lower_ci_high", "upper_ci_low", "upper_ci_high"),
        1e-7,
    ),
    "cohort_comparison": (("severity_slope_log_per_100", "p_severity", "q_severity"), 1e-10),
}


#: Columns a release table gained after the golden tables were made, and nothing else.
ADDED_SINCE_THE_GOLDEN = {"reference_intervals": {"upper_limit_censored", "median_censored"}}


def test_the_release_tables_equal_those_the_code_before_the_speed_work_published(first_run) -> None:
    """The figures in tests/golden/release were made by commit 19991a1 (make_release_golden.py says how):
    every speed change since must publish the same groups, limits, CIs, grids and comparisons to the last
    bit, but for the few figures that differ between processors (CPU_DEPENDENT), which must agree to their
    stated relative tolerance."""
    import importlib.util
    from pathlib import Path

    from polars.testing import assert_frame_equal, assert_series_equal

    folder = Path(__file__).parents[1] / "golden" / "release"
    spec = importlib.util.spec_from_file_location("make_release_golden", folder / "make_release_golden.py")
    assert spec is not None and spec.loader is not None
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    settings, _, summary = first_run
    tables = maker.release_tables(settings.releases / summary.release_version)
    for name, frame in tables.items():
        assert frame.height > 0 or name == "retest_variation", name
        expected = pl.read_csv(folder / f"{name}.csv", infer_schema=False)
        actual = pl.read_csv(frame.write_csv().encode(), infer_schema=False)  # the text of every number
        # columns the release gained after 19991a1 are checked by their own tests; every golden one is compared
        assert set(actual.columns) - set(expected.columns) == ADDED_SINCE_THE_GOLDEN.get(name, set()), name
        actual = actual.select(expected.columns)
        loose, rtol = CPU_DEPENDENT.get(name, ((), 0.0))
        # only parametric groups have a lambda; a non-parametric limit is an order statistic, exact anywhere
        near = (
            actual["method"].str.starts_with("parametric")
            if name == "reference_intervals"
            else pl.Series([True] * actual.height)
        )
        try:
            assert_frame_equal(actual.drop(loose), expected.drop(loose))
            for column in loose:
                assert_series_equal(actual[column].filter(~near), expected[column].filter(~near))
                assert_series_equal(
                    actual[column].filter(near).cast(pl.Float64),
                    expected[column].filter(near).cast(pl.Float64),
                    rel_tol=rtol,
                    abs_tol=0.0,
                )
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_a_symlink_in_the_landing_folder_to_a_file_outside_it_is_refused_unread(tmp_path, prefect_backend) -> None:
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path / "home", subject_key="k")
    settings.landing.mkdir(parents=True)
    outside = tmp_path / "elsewhere" / "export.csv"
    outside.parent.mkdir()
    outside.write_text("sample_id,analyte,value,unit,plate_id\nS1,IL-6,2.5,pg/mL,P1\n")  # a valid export
    (settings.landing / "linked.csv").symlink_to(outside)
    inside = settings.landing / "real.csv"
    inside.write_text("sample_id,analyte,value,unit,plate_id\nS2,IL-6,1.5,pg/mL,P1\n")
    (settings.landing / "alias.csv").symlink_to(inside)  # a link within the landing folder is read
    summary = run_pipeline(settings)
    by_name = {f.name: f for f in summary.files}
    linked = by_name["linked.csv"]
    assert linked.status == "quarantined" and linked.rows_read == 0
    assert f"a symbolic link to {outside.resolve()}, outside the landing folder; it was not read" in linked.reason
    # the link within the folder is read like its file: one of the two loads, the other is the same content
    assert {by_name["real.csv"].status, by_name["alias.csv"].status} == {"loaded", "skipped"}
    assert not (settings.quarantine / "linked.csv").exists()  # its content was never copied anywhere
    assert (settings.quarantine / "linked.csv.reason.txt").read_text().startswith("linked.csv: a symbolic link")
    assert q(settings, "select status, rows_read from files where file_name = 'linked.csv'") == [("quarantined", 0)]


def test_a_dangling_link_or_a_named_pipe_in_the_landing_folder_is_quarantined_by_name_never_read(
    tmp_path, prefect_backend
) -> None:
    """Links to exports on a share that is not mounted (their targets gone) and named pipes were passed over
    without a word: the run said nothing was new. A pipe read would have kept the run waiting for a writer.
    Each is now quarantined unread, with what it is; a second run tells them as quarantined before, not as
    "the same content as an earlier file of this run"; once the share is back, the link is refused as any link
    out of the landing folder is."""
    import os

    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path / "home", subject_key="k")
    (settings.landing / "run1").mkdir(parents=True)
    share = tmp_path / "share"  # not mounted: nothing there
    (settings.landing / "run1" / "plate1.csv").symlink_to(share / "plate1.csv")
    os.mkfifo(settings.landing / "pipe.csv")
    os.mkfifo(settings.landing / "run1" / "pipe.csv")  # a second pipe is a problem of its own
    (settings.landing / "real.csv").write_text("sample_id,analyte,value,unit,plate_id\nS2,IL-6,1.5,pg/mL,P1\n")
    first = {f.name: f for f in run_pipeline(settings).files}
    link, pipe = first["run1/plate1.csv"], first["pipe.csv"]
    assert first["run1/pipe.csv"].status == "quarantined"
    assert link.status == pipe.status == "quarantined" and link.rows_read == pipe.rows_read == 0
    assert link.reason.startswith(f"run1/plate1.csv: a symbolic link to {share / 'plate1.csv'}, which does not exist")
    assert pipe.reason == "pipe.csv: a named pipe, not a file; drop exports as files; it was not read"
    assert first["real.csv"].status == "loaded"
    assert (settings.quarantine / "run1" / "plate1.csv.reason.txt").is_file()

    again = {f.name: f for f in run_pipeline(settings).files}
    assert again["pipe.csv"].status == again["run1/plate1.csv"].status == "skipped"
    assert again["pipe.csv"].earlier == "quarantined" and "earlier file of this run" not in again["pipe.csv"].reason

    share.mkdir()  # the share is back
    (share / "plate1.csv").write_text("sample_id,analyte,value,unit,plate_id\nS3,IL-6,2.5,pg/mL,P2\n")
    (settings.landing / "pipe.csv").unlink()
    back = {f.name: f for f in run_pipeline(settings).files}
    # the link now leads to a file outside the landing folder: refused as such links are, with that reason
    assert back["run1/plate1.csv"].status == "quarantined"
    assert "outside the landing folder; it was not read" in back["run1/plate1.csv"].reason


def test_exports_of_one_name_in_two_run_folders_are_two_files_and_a_new_version_replaces_only_its_own(
    tmp_path, prefect_backend
) -> None:
    """Labs keep one folder per run with the vendor's default file name in each: the second run's export
    replaced the first one (same file name), and the first run's rows left the warehouse without a word."""
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path / "home", subject_key="k", landing_mode="move", min_n=1000)
    header = "sample_id,analyte,value,unit,plate_id\n"
    run1, run2 = settings.landing / "run1" / "export.csv", settings.landing / "run2" / "export.csv"
    for path, body in [(run1, "S1,IL-6,2.5,pg/mL,P1\n"), (run2, "S2,IL-6,4.0,pg/mL,P2\n")]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + body)
    (settings.landing / ".sync").mkdir()
    (settings.landing / ".sync" / "export.csv").write_text(header + "S9,IL-6,9.9,pg/mL,P9\n")  # a tool's copy
    first = run_pipeline(settings)
    loaded = [("run1/export.csv", "loaded"), ("run2/export.csv", "loaded")]
    assert sorted((f.name, f.status) for f in first.files) == loaded
    assert q(settings, "select source_file, sample_id from raw_measurements order by 1") == [
        ("run1/export.csv", "S1"),
        ("run2/export.csv", "S2"),
    ]
    assert not run1.exists() and not run2.exists()  # move mode empties the run folders too
    assert (settings.landing / ".sync" / "export.csv").exists()  # a hidden folder is not read, nor moved
    run1.write_text(header + "S1,IL-6,3.5,pg/mL,P1\n")  # the lab corrected run 1 and exported it again
    second = run_pipeline(settings)
    assert second.files[0].name == "run1/export.csv" and second.files[0].replaced == [first.files[0].sha256]
    assert q(settings, "select source_file, value from raw_measurements order by 1") == [
        ("run1/export.csv", 3.5),
        ("run2/export.csv", 4.0),
    ]


def test_a_skipped_file_says_what_became_of_its_content_before(tmp_path, prefect_backend, monkeypatch) -> None:
    """Every skipped file was "already ingested (same content)", in the run summary and in `ingest --dry-run`:
    also a file quarantined under the same settings (never ingested), a second copy landed in the same run,
    and an old version of a file that a newer one replaced. Each now says which, and what would change it."""
    import flows.pipeline as pipeline
    from flows.pipeline import dry_run, run_pipeline
    from flows.summary import summary_text

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    settings.landing.mkdir(parents=True)
    monkeypatch.setattr(pipeline, "RACY_NS", 0)  # written a moment ago: trust its times here
    header = "sample_id,analyte,value,unit,plate_id\n"
    first_version = header + "S1,IL-6,2.5,pg/mL,P1\nS2,IL-6,3.5,pg/mL,P1\n"
    (settings.landing / "a.csv").write_text(first_version)
    (settings.landing / "b_copy.csv").write_text(first_version)  # the same export landed twice
    (settings.landing / "c_bad.csv").write_text(header + "S3,IL-6,n/a?,pg/mL,P1\n")  # every row unusable

    first = {f.name: f for f in run_pipeline(settings).files}
    assert first["a.csv"].status == "loaded" and first["c_bad.csv"].status == "quarantined"
    copy = first["b_copy.csv"]
    assert (copy.status, copy.earlier, copy.reason) == (
        "skipped",
        "this run",
        "same content as a.csv, read earlier in this run",
    )

    again = run_pipeline(settings)
    by = {f.name: f for f in again.files}
    assert {f.status for f in again.files} == {"skipped"}
    assert (by["a.csv"].earlier, by["a.csv"].reason) == ("loaded", "already loaded (same content)")
    assert (by["b_copy.csv"].earlier, by["b_copy.csv"].reason) == ("loaded", "already loaded as a.csv (same content)")
    bad = by["c_bad.csv"]
    assert bad.earlier == "quarantined"
    assert bad.reason.startswith("quarantined before under the same settings and code (same content): c_bad.csv: ")
    assert first["c_bad.csv"].reason in bad.reason  # the reason it was held back, as the first run gave it
    text = " ".join(summary_text(again, width=400).split())
    assert "2 already loaded (same content); 1 quarantined before under the same settings: c_bad.csv" in text
    assert "same content already ingested" not in text

    (settings.landing / "a.csv").write_text(header + "S1,IL-6,2.7,pg/mL,P1\nS2,IL-6,3.5,pg/mL,P1\n")  # corrected
    assert {f.name: f.status for f in run_pipeline(settings).files}["a.csv"] == "loaded"  # replaces the first
    (settings.landing / "a.csv").write_text(first_version)  # the old export lands again
    old = {f.name: f for f in run_pipeline(settings).files}["a.csv"]
    assert (old.status, old.earlier) == ("skipped", "replaced")
    assert old.reason == (
        "an earlier version of a.csv, replaced by a newer file of that name (same content): it stays out of use. "
        f"To go back to it, `refranges files retract a.csv` the loaded version, then `refranges files restore a.csv "
        f"--sha {old.sha256[:12]}`"
    )
    assert q(settings, "select value from raw_measurements where sample_id = 'S1'") == [(2.7,)]

    # the dry run tells the same, and a copy of a new file within the dry run as a second copy
    (settings.landing / "d_new.csv").write_text(header + "S4,IL-6,1.5,pg/mL,P1\n")
    (settings.landing / "e_new_copy.csv").write_text(header + "S4,IL-6,1.5,pg/mL,P1\n")
    names = ["c_bad.csv", "d_new.csv", "e_new_copy.csv", "a.csv"]
    outcomes, _ = dry_run([settings.landing / n for n in names], settings)
    assert [(o.name, o.status, o.earlier) for o in outcomes] == [
        ("c_bad.csv", "skipped", "quarantined"),
        ("d_new.csv", "loaded", None),
        ("e_new_copy.csv", "skipped", "this run"),
        ("a.csv", "skipped", "replaced"),
    ]
    assert outcomes[2].reason == "same content as d_new.csv, read earlier in this run"


@pytest.mark.parametrize("landing_mode", ["keep", "move"])
def test_a_corrected_export_supersedes_the_quarantined_version_of_its_name(
    tmp_path, prefect_backend, landing_mode
) -> None:
    """A lab's export was quarantined whole, then the lab sent a corrected one under the same name, which
    loaded: the quarantine folder kept the bad copy and its reason, and the `quarantine` view kept listing
    its problems, as if they were still open. The loaded version now supersedes it: the ledger marks it
    replaced (its reason kept), its held rows leave the view, and its copy leaves the quarantine folder for
    the archive (in move mode, and once the lab overwrote the landing file, the only copy of its bytes)."""
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000, landing_mode=landing_mode)
    settings.landing.mkdir(parents=True)
    (settings.landing / "manifest.csv").write_text(
        "sample_id,subject_id,cohort,matrix,sex,age,collection_date\n"
        "S1,P1,healthy,serum,F,40,2026-01-02\nS2,P2,healthy,serum,M,50,2026-01-02\n"
    )
    header = "sample_id,analyte,value,unit,plate_id\n"
    bad = header + "S1,IL-6,n/a?,pg/mL,P1\nS2,IL-6,zz,pg/mL,P1\n"
    (settings.landing / "a.csv").write_text(bad)
    first = {f.name: f for f in run_pipeline(settings).files}
    assert first["a.csv"].status == "quarantined" and (settings.quarantine / "a.csv").read_text() == bad
    old = first["a.csv"].sha256
    assert q(settings, f"select count(*) from quarantine where source_sha256 = '{old}'") == [(3,)]  # 2 rows, 1 file
    # its bytes are archived when it is quarantined: the copy in quarantine/ goes by its name, and in move mode
    # (which removes the landing file) a later bad version of the name overwrote the only copy of this one
    (kept,) = q(settings, f"select archive_path from files where sha256 = '{old}'")[0]
    assert Path(kept).read_text() == bad
    assert (settings.landing / "a.csv").exists() == (landing_mode == "keep")

    (settings.landing / "a.csv").write_text(header + "S1,IL-6,1.5,pg/mL,P1\nS2,IL-6,2.5,pg/mL,P1\n")
    second = {f.name: f for f in run_pipeline(settings).files}
    new = second["a.csv"]
    assert new.status == "loaded" and new.replaced == [old]
    assert not (settings.quarantine / "a.csv").exists() and not (settings.quarantine / "a.csv.reason.txt").exists()
    assert q(settings, "select count(*) from quarantine") == [(0,)]  # nothing open is left
    ((status, replaced_by, reason, archive),) = q(
        settings, f"select status, replaced_by, reason, archive_path from files where sha256 = '{old}'"
    )
    assert (status, replaced_by) == ("replaced", new.sha256)
    assert reason.startswith("a newer file with the same name was loaded in its place; it had been quarantined: a.csv:")
    assert Path(archive).read_text() == bad  # its bytes are kept
    assert q(settings, "select value from raw_measurements order by value") == [(1.5,), (2.5,)]
    assert q(settings, "select count(*) from files where rows_read <> rows_loaded + rows_quarantined") == [(0,)]


def _a_bad_and_b_good(tmp_path: Path) -> tuple[Any, str, str]:
    """A home whose landing folder holds a.csv, quarantined whole by its one unusable row, and b.csv, good:
    its settings, the tidy header and a.csv's text."""
    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    settings.landing.mkdir(parents=True)
    header = "sample_id,analyte,value,unit,plate_id\n"
    bad = header + "S1,IL-6,n/a?,pg/mL,P1\n"
    (settings.landing / "a.csv").write_text(bad)
    (settings.landing / "b.csv").write_text(header + "S2,IL-6,2.5,pg/mL,P1\n")
    return settings, header, bad


def test_a_run_supersedes_the_fixed_quarantines_an_older_refranges_left(tmp_path, prefect_backend, monkeypatch) -> None:
    """A warehouse written before loaded files superseded the quarantined versions of their name still
    lists them as quarantined (and the folder keeps their copies): the next run supersedes those quarantined
    before the loaded version, never one quarantined after it (a problem still open)."""
    from flows.pipeline import run_pipeline
    from warehouse import loads

    settings, header, bad = _a_bad_and_b_good(tmp_path)
    first = {f.name: f.sha256 for f in run_pipeline(settings).files}
    with monkeypatch.context() as older:  # as refranges did before: the corrected a.csv supersedes nothing
        older.setattr(loads, "superseded_quarantines", lambda con: [])
        (settings.landing / "a.csv").write_text(header + "S1,IL-6,1.5,pg/mL,P1\n")
        (settings.landing / "b.csv").write_text(header + "S2,IL-6,zz,pg/mL,P1\n")  # b's new version is bad
        run_pipeline(settings)
    stale = "select file_name, status from files where status <> 'loaded' order by file_name"
    assert q(settings, stale) == [("a.csv", "quarantined"), ("b.csv", "quarantined")]
    assert (settings.quarantine / "a.csv").exists()

    run_pipeline(settings)  # nothing new: it tidies up what the older code left
    assert q(settings, stale) == [("a.csv", "replaced"), ("b.csv", "quarantined")]  # b's problem is still open
    assert not (settings.quarantine / "a.csv").exists() and (settings.quarantine / "b.csv").exists()
    archived = q(settings, f"select archive_path from files where sha256 = '{first['a.csv']}'")[0][0]
    assert Path(archived).read_text() == bad
    assert q(settings, f"select count(*) from quarantine where source_sha256 = '{first['a.csv']}'") == [(0,)]
    assert q(settings, "select count(*) from quarantine where source_file = 'b.csv' and stage = 'file'") == [(1,)]


def test_a_file_an_older_refranges_quarantined_without_archiving_is_archived_before_a_new_version_overwrites_its_copy(
    tmp_path, prefect_backend
) -> None:
    """Before quarantined files were archived, a file quarantined whole kept one copy: quarantine/<name>, which
    the next quarantined version of the name overwrote. A run first archives such copies (when their content
    is the ledger's version), so the older version's bytes survive the newer one's quarantine."""
    from flows.pipeline import run_pipeline

    settings, header, first_bad = _a_bad_and_b_good(tmp_path)
    (first,) = [f.sha256 for f in run_pipeline(settings).files if f.name == "a.csv"]
    (kept,) = q(settings, f"select archive_path from files where sha256 = '{first}'")[0]
    Path(kept).chmod(0o644)
    Path(kept).unlink()  # as an older refranges left it: no archived copy, no path in the ledger
    con = duckdb.connect(str(settings.warehouse))
    con.execute("update files set archive_path = null where sha256 = ?", [first])
    con.close()
    (settings.landing / "a.csv").write_text(header + "S1,IL-6,still wrong,pg/mL,P1\n")
    summary = run_pipeline(settings)
    (second,) = [f.sha256 for f in summary.files if f.name == "a.csv" and f.status == "quarantined"]
    rows = q(settings, "select sha256, archive_path from files where file_name = 'a.csv' order by ingested_at")
    assert [sha for sha, _ in rows] == [first, second] and all(path for _, path in rows)
    assert Path(rows[0][1]).read_text() == first_bad  # the first version's bytes, which its copy alone held
    assert (settings.quarantine / "a.csv").read_text().endswith("still wrong,pg/mL,P1\n")
    run_pipeline(settings)  # nothing left to archive: the ledger is as it was
    assert q(settings, "select sha256, archive_path from files where file_name = 'a.csv' order by ingested_at") == rows


def test_a_landing_file_still_being_written_is_left_for_a_later_run(tmp_path, prefect_backend) -> None:
    """A lab's sync tool copying an export into the landing folder while a scheduled run lists it: the run read
    the half-written file (a truncated last line quarantined, the rest loaded), and a release could carry it
    until the complete copy replaced it. With ``landing_min_age_seconds``, a file changed more recently than
    that waits for a later run; files a download or a copy is still writing under a temporary name
    (``.part``, ``.crdownload``, ``.filepart`` ...) are never read."""
    from flows.pipeline import run_pipeline
    from flows.summary import summary_text

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000, landing_min_age_seconds=60)
    (settings.landing / "run1").mkdir(parents=True)
    header = "sample_id,analyte,value,unit,plate_id\n"
    (settings.landing / "run1" / "a.csv").write_text(header + "S1,IL-6,2.5,pg/mL,P1\nS2,IL-6,3.")  # mid-copy
    (settings.landing / "b.csv.part").write_text(header + "S3,IL-6,1.5,pg/mL,P1\n")
    (settings.landing / "c.csv.crdownload").write_text(header)
    first = run_pipeline(settings)
    assert first.files == [] and len(first.landing_waiting) == 1
    assert first.landing_waiting[0].startswith("run1/a.csv (changed ") and first.status == "completed"
    assert "landing files waiting" in summary_text(first, width=400) and "run1/a.csv" in summary_text(first, width=400)
    assert q(settings, "select count(*) from files") == [(0,)]  # not read, not in the ledger

    (settings.landing / "run1" / "a.csv").write_text(header + "S1,IL-6,2.5,pg/mL,P1\nS2,IL-6,3.5,pg/mL,P1\n")
    time.sleep(1.1)  # the copy is complete, and has settled for the shorter age this run asks
    second = run_pipeline(dataclasses.replace(settings, landing_min_age_seconds=1.0))
    assert [(f.name, f.status, f.rows_loaded) for f in second.files] == [("run1/a.csv", "loaded", 2)]
    assert second.landing_waiting == []
    third = run_pipeline(settings)  # loaded a moment ago and unchanged since: skipped, never "waiting"
    assert [(f.name, f.status) for f in third.files] == [("run1/a.csv", "skipped")] and third.landing_waiting == []
    # a file named on the command line is read as it is: the person who named it knows it is complete
    named = settings.landing / "d.csv"
    named.write_text(header + "S4,IL-6,4.5,pg/mL,P1\n")
    assert [f.status for f in pipeline_ingest(settings, [named]).files] == ["loaded"]


def pipeline_ingest(settings, paths):
    from flows.pipeline import ingest_paths

    return ingest_paths(settings, paths)


def test_a_loaded_file_removed_from_the_landing_folder_by_hand_is_told_once(tmp_path, prefect_backend) -> None:
    """Removing an export from the landing folder (keep mode) left its rows in every later release without a
    word: a person who removed it to take it out could not know. The run that finds it gone says so, once,
    with the command that takes it out of use; a file only renamed or moved within the folder is not gone."""
    from flows.pipeline import run_pipeline
    from flows.summary import summary_text

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    (settings.landing / "run1").mkdir(parents=True)
    header = "sample_id,analyte,value,unit,plate_id\n"
    (settings.landing / "a.csv").write_text(header + "S1,IL-6,2.5,pg/mL,P1\n")
    (settings.landing / "run1" / "b.csv").write_text(header + "S2,IL-6,3.5,pg/mL,P1\n")
    (settings.landing / "c.csv").write_text(header + "S3,IL-6,4.5,pg/mL,P1\n")
    assert [f.status for f in run_pipeline(settings).files] == ["loaded"] * 3
    (settings.landing / "run1" / "b.csv").unlink()
    (settings.landing / "c.csv").rename(settings.landing / "run1" / "c_renamed.csv")
    told = run_pipeline(settings)
    assert told.landing_gone == ["run1/b.csv"]
    text = " ".join(summary_text(told, width=400).split())
    assert "loaded files gone from landing" in text and "`refranges files retract NAME --reason TEXT`" in text
    assert q(settings, "select count(*) from raw_measurements where source_file = 'run1/b.csv'") == [(1,)]
    assert run_pipeline(settings).landing_gone == []  # told once


def test_a_loaded_file_the_run_may_not_remove_from_the_landing_folder_is_reported_not_a_failed_run(
    tmp_path, prefect_backend, monkeypatch
) -> None:
    """Move mode on a share the run may read but not change: the removal's PermissionError came after the
    warehouse was swapped in, failed the run and had the CLI say that nothing had changed."""
    from flows.pipeline import run_pipeline
    from flows.summary import summary_text
    from warehouse import storage

    settings = load_settings(env={}, home=tmp_path, subject_key="k", landing_mode="move", min_n=1000)
    settings.landing.mkdir(parents=True)
    header = "sample_id,analyte,value,unit,plate_id\n"
    (settings.landing / "a.csv").write_text(header + "S1,IL-6,2.5,pg/mL,P1\n")
    (settings.landing / "b.csv").write_text(header + "S2,IL-6,3.5,pg/mL,P1\n")
    removing = storage.remove

    def remove(path):
        if str(path).endswith("a.csv"):
            raise PermissionError(13, "Permission denied", str(path))
        removing(path)

    monkeypatch.setattr(storage, "remove", remove)
    summary = run_pipeline(settings)
    assert [f.status for f in summary.files] == ["loaded", "loaded"]
    assert summary.landing_kept == [f"{settings.landing / 'a.csv'} (Permission denied)"]
    assert (settings.landing / "a.csv").exists() and not (settings.landing / "b.csv").exists()
    assert q(settings, "select count(*) from files where status = 'loaded'") == [(2,)]  # the run's work is in
    assert "landing files kept" in summary_text(summary, width=300)
    monkeypatch.setattr(storage, "remove", removing)
    again = run_pipeline(settings)  # skipped by its hash, and removed now that it may be
    assert [f.status for f in again.files] == ["skipped"] and not (settings.landing / "a.csv").exists()


def test_a_file_quarantined_whole_is_read_again_when_the_settings_change_and_loads_if_they_allow_it(
    tmp_path, prefect_backend, monkeypatch
) -> None:
    """A file quarantined whole was known by its hash for good: after raising max_bad_row_share (or a newer
    refranges, or a completed analyte dictionary) every run skipped it as "same content already ingested". It
    is read again when the decision fingerprint changed, and only then."""
    import flows.pipeline as pipeline
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    settings.landing.mkdir(parents=True)
    rows = [f"S{i},IL-6,{1.5 + i},pg/mL,P1" for i in range(7)] + [f"S{i},IL-6,n/a?,pg/mL,P1" for i in (7, 8, 9)]
    lab = settings.landing / "lab.csv"
    lab.write_text("sample_id,analyte,value,unit,plate_id\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(pipeline, "RACY_NS", 0)  # written a moment ago: trust its times here
    read: list[str] = []
    reading = pipeline.read_input
    monkeypatch.setattr(pipeline, "read_input", lambda path, **kw: (read.append(str(path)), reading(path, **kw))[1])

    first = run_pipeline(settings)  # 3 of 10 rows unusable: over the default share of 0.2
    assert [f.status for f in first.files] == ["quarantined"] and (settings.quarantine / "lab.csv").exists()
    again = run_pipeline(settings)  # the same settings: not read again
    assert [f.status for f in again.files] == ["skipped"] and len(read) == 1

    raised = dataclasses.replace(settings, max_bad_row_share=0.5)
    loaded = run_pipeline(raised)
    assert len(read) == 2 and [(f.status, f.rows_loaded, f.rows_quarantined) for f in loaded.files] == [
        ("loaded", 7, 3)
    ]
    assert q(raised, "select status, rows_loaded, decided_under from files") == [("loaded", 7, None)]
    held = q(raised, 'select stage, "check", count(*) from quarantine group by all order by all')
    assert held == [("link", "sample_in_manifest", 7), ("parse", "value_is_number", 3)]  # no file-level row left
    assert not (settings.quarantine / "lab.csv").exists()  # the stale copy and reason are gone
    assert not (settings.quarantine / "lab.csv.reason.txt").exists()
    assert q(raised, "select count(*) from raw_measurements") == [(7,)]
    assert [f.status for f in run_pipeline(settings).files] == ["skipped"] and len(read) == 2  # loaded stays


def test_in_move_mode_a_quarantined_file_put_back_from_the_quarantine_folder_loads_under_new_settings(
    tmp_path, prefect_backend
) -> None:
    """Move mode takes a quarantined file out of the landing folder (its copy is in quarantine/). Put back
    and read under a raised threshold, it loads, and neither its copy nor its reason stays in quarantine/."""
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000, landing_mode="move")
    settings.landing.mkdir(parents=True)
    rows = [f"S{i},IL-6,{1.5 + i},pg/mL,P1" for i in range(7)] + [f"S{i},IL-6,n/a?,pg/mL,P1" for i in (7, 8, 9)]
    (settings.landing / "lab.csv").write_text("sample_id,analyte,value,unit,plate_id\n" + "\n".join(rows) + "\n")
    assert [f.status for f in run_pipeline(settings).files] == ["quarantined"]
    assert not (settings.landing / "lab.csv").exists()
    (settings.quarantine / "lab.csv").rename(settings.landing / "lab.csv")
    loaded = run_pipeline(dataclasses.replace(settings, max_bad_row_share=0.5))
    assert [f.status for f in loaded.files] == ["loaded"] and not (settings.landing / "lab.csv").exists()
    assert sorted(p.name for p in settings.quarantine.iterdir()) == []


def test_a_file_quarantined_whole_under_other_settings_and_quarantined_again_keeps_one_ledger_row(
    tmp_path, prefect_backend
) -> None:
    """Read again under new settings that still hold it back, a file is quarantined once more: one ledger row
    (its sha256 is the key), with the new reason and fingerprint, and its held rows once."""
    from flows.pipeline import decision_fingerprint, run_pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    settings.landing.mkdir(parents=True)
    rows = [f"S{i},IL-6,{1.5 + i},pg/mL,P1" for i in range(5)] + [f"S{i},IL-6,n/a?,pg/mL,P1" for i in range(5, 10)]
    (settings.landing / "lab.csv").write_text("sample_id,analyte,value,unit,plate_id\n" + "\n".join(rows) + "\n")
    run_pipeline(settings)
    stricter = dataclasses.replace(settings, max_bad_row_share=0.3)
    assert decision_fingerprint(stricter) != decision_fingerprint(settings)
    second = run_pipeline(stricter)
    assert [f.status for f in second.files] == ["quarantined"]
    ledger = q(stricter, "select status, decided_under from files")
    assert ledger == [("quarantined", decision_fingerprint(stricter))]
    assert q(stricter, "select count(*) from quarantine_rows where stage = 'parse'") == [(5,)]


def test_an_unchanged_landing_file_is_not_read_again_and_a_rewritten_one_is_even_with_its_old_size_and_mtime(
    tmp_path, prefect_backend, monkeypatch
) -> None:
    """Keep mode: every scheduled run read and hashed the whole landing folder again (6 GB at 20,000 x 3,000)
    to find it known. A file is now read only when its size, times or inode moved since a run read it."""
    import os

    import flows.pipeline as pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    (settings.landing / "run1").mkdir(parents=True)
    header = "sample_id,analyte,value,unit,plate_id\n"
    first, second = settings.landing / "run1" / "a.csv", settings.landing / "b.csv"
    first.write_text(header + "S1,IL-6,2.5,pg/mL,P1\n")
    second.write_text(header + "S2,IL-6,3.5,pg/mL,P1\n")
    old = time.time() - 60
    for path in (first, second):
        os.utime(path, (old, old))
    read: list[str] = []
    reading = pipeline.read_input
    monkeypatch.setattr(pipeline, "read_input", lambda path: read.append(os.path.basename(path)) or reading(path))
    monkeypatch.setattr(pipeline, "RACY_NS", 0)  # the files were written a moment ago: trust their times here
    tasks: list[str] = []  # the files a parse task was started for (each is a task run Prefect's server records)
    mapping = pipeline.parse_files.map
    monkeypatch.setattr(
        pipeline.parse_files,
        "map",
        lambda groups, *a: tasks.extend(os.path.basename(p) for g in groups for p in g) or mapping(groups, *a),
    )
    assert [f.status for f in pipeline.run_pipeline(settings).files] == ["loaded", "loaded"]
    assert sorted(read) == ["a.csv", "b.csv"] and sorted(tasks) == ["a.csv", "b.csv"]
    read.clear()
    tasks.clear()
    assert [f.status for f in pipeline.run_pipeline(settings).files] == ["skipped", "skipped"]
    assert read == []  # known by what the last run saw, not read again
    assert tasks == []  # and found so by the run itself: no task started (229 of them took 11.8 s at 20,000 x 3,000)
    # the lab rewrites a.csv in place: same size, and its mtime set back; ctime moves all the same
    first.write_text(header + "S1,IL-6,3.5,pg/mL,P1\n")
    os.utime(first, (old, old))
    outcomes = {f.name: f for f in pipeline.run_pipeline(settings).files}
    assert read == ["a.csv"] and outcomes["run1/a.csv"].status == "loaded" and outcomes["run1/a.csv"].replaced
    assert tasks == ["a.csv"] and list(outcomes) == ["b.csv", "run1/a.csv"]  # in landing order
    assert q(settings, "select value from raw_measurements where sample_id = 'S1'") == [(3.5,)]
    # a file changed within the racy window of the run that read it is read again the next time
    monkeypatch.setattr(pipeline, "RACY_NS", 10 * 60 * 1_000_000_000)
    read.clear()
    assert [f.status for f in pipeline.run_pipeline(settings).files] == ["skipped", "skipped"]
    assert sorted(read) == ["a.csv", "b.csv"]
    second.unlink()
    pipeline.run_pipeline(settings)
    assert q(settings, "select count(*) from landing_seen where path like '%b.csv'") == [(0,)]  # forgotten


def test_small_files_are_parsed_in_groups_with_one_validation_that_counts_what_per_file_ones_did(
    tmp_path, prefect_backend, monkeypatch
) -> None:
    """105 MSD plate files of 150 kB took 0.5 s each, mostly a task run and a GX validation per file; small
    files are now parsed in groups (parse_groups). The GX results are those of one validation per file, also
    when the same export lands twice in one run, in the same group or in two."""
    import os

    import flows.pipeline as pipeline

    header = "sample_id,analyte,value,unit,plate_id\n"
    exports = {
        f"e{k}.csv": header + "".join(f"S{k}{i},IL-6,{1.5 + i},pg/mL,P{k}\n" for i in range(3)) for k in range(5)
    }
    exports["e5.csv"] = header + "S50,IL-6,abc,pg/mL,P5\nS51,IL-6,2,mg/dL,P5\n" + "S52,IL-6,2,pg/mL,P5\n" * 8
    exports["e6.csv"] = exports["e1.csv"]  # the same export twice: in another group than e1 with two a group
    exports["e7.csv"] = exports["e6.csv"]  # and twice within a group
    exports["e8.csv"] = header + "S80,IL-6,4.5,pg/mL,P8\n"  # ... a group validated again without e6 and e7

    def qc_of(files_per_group: int) -> tuple[list[tuple], list[list[str]]]:
        home = tmp_path / f"home{files_per_group}"
        settings = load_settings(env={}, home=home, subject_key="k", min_n=1000)
        settings.landing.mkdir(parents=True)
        for name, text in exports.items():
            (settings.landing / name).write_text(text)
        monkeypatch.setattr(pipeline, "GROUP_FILES", files_per_group)
        started: list[list[str]] = []
        mapping = pipeline.parse_files.map
        monkeypatch.setattr(
            pipeline.parse_files, "map", lambda groups, *a: started.extend(groups) or mapping(groups, *a)
        )
        outcomes = {f.name: f.status for f in pipeline.run_pipeline(settings).files}
        assert outcomes["e6.csv"] == outcomes["e7.csv"] == "skipped" and outcomes["e1.csv"] == "loaded"
        monkeypatch.setattr(pipeline.parse_files, "map", mapping)
        qc = q(
            settings,
            "select suite, expectation, element_count, unexpected_count, unexpected_sample from qc_results "
            "where suite in ('raw_measurements', 'files') order by all",
        )
        return qc, [[os.path.basename(p) for p in g] for g in started]

    alone, one_each = qc_of(1)
    assert len(one_each) == len(exports) and all(len(g) == 1 for g in one_each)  # one file a task, as before
    grouped, threes = qc_of(3)
    assert [len(g) for g in threes] == [3, 3, 3]  # e1 in the first group, e6 and e7 with e8 in the last
    assert grouped == alone
    raw = [r for r in alone if r[0] == "raw_measurements"]
    assert {r[2] for r in raw} == {3 * 5 + 1}  # e0 to e4 and e8; e6, e7 skipped; e5 held whole (files suite)
    assert [r[3] for r in alone if r[0] == "files" and "bad_row_share" in r[1]] == [1]


def test_a_group_validated_again_leaves_out_a_file_the_ledger_already_held(
    tmp_path, prefect_backend, monkeypatch
) -> None:
    """A group that holds the same export twice is validated again without the copy; a file of that group
    whose content the ledger held before the run (read again because its times moved) stays out, as it did in
    the task's own validation."""
    import os

    import flows.pipeline as pipeline

    monkeypatch.setattr(pipeline, "RACY_NS", 0)
    monkeypatch.setattr(pipeline, "GROUP_FILES", 3)
    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    settings.landing.mkdir(parents=True)
    header = "sample_id,analyte,value,unit,plate_id\n"

    def export(name: str, rows: int) -> os.PathLike[str]:
        path = settings.landing / name
        path.write_text(header + "".join(f"{name[:2]}{i},IL-6,{1.5 + i},pg/mL,P{name[:2]}\n" for i in range(rows)))
        old = time.time() - 60
        os.utime(path, (old, old))
        return path

    export("f0.csv", 2)
    f1 = export("f1.csv", 3)
    export("f2.csv", 4)
    pipeline.run_pipeline(settings)
    os.utime(f1, (time.time() - 30, time.time() - 30))  # read again: the ledger knows its content
    export("f3.csv", 5)
    (settings.landing / "f4.csv").write_bytes((settings.landing / "f3.csv").read_bytes())  # f3 again
    second = pipeline.run_pipeline(settings)
    assert {f.name: f.status for f in second.files} == {
        "f0.csv": "skipped",
        "f1.csv": "skipped",
        "f2.csv": "skipped",
        "f3.csv": "loaded",
        "f4.csv": "skipped",
    }
    counts = q(
        settings,
        "select distinct element_count from qc_results "
        f"where suite = 'raw_measurements' and run_id = '{second.run_id}'",
    )
    assert counts == [(5,)]  # f3's rows only


def test_both_demos_in_one_landing_folder_keep_both_studies(tmp_path, prefect_backend) -> None:
    """`refranges demo --platform explore-ht` in a home with the mixed demo wrote its own manifest.csv over the
    mixed one: the mixed demo's samples left the warehouse (26,160 measurements held as not in a manifest)."""
    from flows.pipeline import run_pipeline
    from transforms.demo import generate_demo
    from transforms.demo_explore import generate_explore

    mixed, explore = (
        generate_demo(seed=5, n_healthy=30, n_patients=6),
        generate_explore(seed=5, n_healthy=12, n_patients=2),
    )
    assert not set(mixed.files) & set(explore.files)
    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    copy_demo(mixed.files, settings.landing)
    run_pipeline(settings)
    before = q(settings, "select count(*) from samples")[0][0]
    copy_demo(explore.files, settings.landing)
    run_pipeline(settings)
    assert q(settings, "select count(*) from files where status = 'replaced'") == [(0,)]
    assert q(settings, "select count(*) from samples")[0][0] > before
    assert q(settings, "select count(*) from quarantine where \"check\" = 'sample_in_manifest'") == [(0,)]


def test_links_in_sub_folders_that_lead_outside_the_landing_folder_are_refused_unread(
    tmp_path, prefect_backend
) -> None:
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path / "home", subject_key="k")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "export.csv").write_text("sample_id,analyte,value,unit,plate_id\nS1,IL-6,2.5,pg/mL,P1\n")
    (settings.landing / "run1").mkdir(parents=True)
    (settings.landing / "run1" / "linked.csv").symlink_to(outside / "export.csv")
    (settings.landing / "share").symlink_to(outside, target_is_directory=True)  # a linked folder is not walked
    summary = run_pipeline(settings)
    by_name = {f.name: f for f in summary.files}
    assert sorted(by_name) == ["run1/linked.csv", "share"]
    assert all(f.status == "quarantined" and f.rows_read == 0 for f in summary.files)
    assert by_name["run1/linked.csv"].reason.startswith(
        f"run1/linked.csv: a symbolic link to {(outside / 'export.csv').resolve()}, outside the landing folder"
    )
    assert by_name["share"].reason.endswith("Copy the exports in it into the landing folder")
    assert (settings.quarantine / "run1" / "linked.csv.reason.txt").exists()
    assert not (settings.quarantine / "run1" / "linked.csv").exists()  # never copied
    assert q(settings, "select count(*) from files where status = 'loaded'") == [(0,)]


def test_a_second_manifest_never_overrides_a_sample_another_one_lists_and_a_new_version_of_it_does(
    tmp_path, prefect_backend
) -> None:
    """manifest_b said healthy S1 was a patient of another age: the manifest loaded last won, and S1 left the
    healthy reference without a word. Now the contradicting row is held back; a corrected manifest_a (the
    same name) still replaces its own rows."""
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    settings.landing.mkdir(parents=True)
    head = "sample_id,subject_id,cohort,matrix,sex,age,collection_date\n"
    (settings.landing / "manifest_a.csv").write_text(head + "S1,P1,healthy,serum,F,40,2026-05-01\n")
    (settings.landing / "manifest_b.csv").write_text(
        head + "S1,P9,patient,serum,M,60,2026-05-03\nS2,P2,healthy,serum,M,41,2026-05-01\n"
    )
    first = {f.name: f for f in run_pipeline(settings).files}
    b = first["manifest_b.csv"]
    assert (b.status, b.rows_read, b.rows_loaded, b.rows_quarantined) == ("loaded", 2, 1, 1)
    assert q(settings, "select sample_id, cohort, age from samples order by 1") == [
        ("S1", "healthy", 40.0),
        ("S2", "healthy", 41.0),
    ]
    (reason,) = q(settings, "select reason from quarantine where \"check\" = 'sample_listed_alike'")[0]
    assert reason.startswith("manifest_b.csv: line 2: sample S1 is listed by manifest_a.csv (line 2) differently")
    assert q(settings, "select sum(rows_read) = sum(rows_loaded) + sum(rows_quarantined) from files") == [(True,)]
    (settings.landing / "manifest_a.csv").write_text(head + "S1,P1,healthy,serum,F,42,2026-05-01\n")  # age corrected
    second = run_pipeline(settings).files
    assert [(f.name, f.status, f.rows_loaded) for f in second if f.status != "skipped"] == [
        ("manifest_a.csv", "loaded", 1)
    ]
    assert q(settings, "select sample_id, age, source_file from samples order by 1") == [
        ("S1", 42.0, "manifest_a.csv"),
        ("S2", 41.0, "manifest_b.csv"),
    ]


def test_a_file_changed_in_place_after_ingest_replaces_its_rows_and_keeps_history(tmp_path, prefect_backend) -> None:
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k", min_n=1000)
    settings.landing.mkdir(parents=True)
    export = settings.landing / "plate1.csv"
    header = "sample_id,analyte,value,unit,plate_id\n"
    export.write_text(header + "S1,IL-6,2.5,pg/mL,P1\nS2,IL-6,4.0,pg/mL,P1\n")
    first = run_pipeline(settings).files[0]
    export.write_text(header + "S1,IL-6,3.5,pg/mL,P1\nS2,IL-6,4.0,pg/mL,P1\n")  # the lab corrected a value
    second = run_pipeline(settings).files[0]
    assert second.status == "loaded" and second.replaced == [first.sha256]
    assert q(settings, "select sha256, status, replaced_by from files order by status") == [
        (second.sha256, "loaded", None),
        (first.sha256, "replaced", second.sha256),
    ]
    assert q(settings, "select sample_id, value from raw_measurements order by 1") == [("S1", 3.5), ("S2", 4.0)]
    assert len(list(settings.archive.rglob("*.csv"))) == 2  # both versions kept

    export.write_text(header)  # then overwritten by a broken export: held back, the corrected rows stay
    third = run_pipeline(settings).files[0]
    assert third.status == "quarantined" and "plate1.csv" in (third.reason or "")
    assert q(settings, "select sample_id, value from raw_measurements order by 1") == [("S1", 3.5), ("S2", 4.0)]
    assert f"the loaded version of plate1.csv ({second.sha256[:12]}) stays in use" in (third.reason or "")
    assert q(settings, "select count(*) from files where status = 'loaded'") == [(1,)]


def test_a_release_carries_the_plate_control_anchors_of_its_cohort(first_run) -> None:
    """The levels every plate was aligned to, per platform, panel, analyte and control, are published with
    the release (for frozen normalisation of a later plate) and recorded in the warehouse."""
    settings, _, summary = first_run
    published = pl.read_parquet(settings.releases / summary.release_version / "normalisation_anchors.parquet")
    version = summary.release_version
    recorded = q(settings, f"select count(*) from release_normalisation_anchors where version = '{version}'")
    assert recorded == [(published.height,)] and published.height > 0
    raw = q(  # every plate of the demo passes its checks: each control's plates are all its plates
        settings,
        "select platform, sample_id, count(distinct plate_id) from raw_measurements "
        "where sample_type = 'control' group by all",
    )
    plates = {(p, s): n for p, s, n in raw}
    assert set(published["platform"].to_list()) == {"olink", "msd"}
    assert published["kind"].unique().to_list() == ["plate_control"]  # no ComBat in this run
    for row in published.iter_rows(named=True):
        assert row["n_plates"] == plates[(row["platform"], row["control_id"])]
        assert row["unit"] == ("NPX" if row["platform"] == "olink" else "pg/mL")


def _png_is_drawn(path) -> bool:
    """True when a PNG has many distinct pixel rows (a page was drawn, not a blank or error screen)."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width = struct.unpack(">I", body[:4])[0]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * 4 if len(raw) % (1 + width * 4) == 0 else 1 + width * 3
    rows = {raw[i : i + stride] for i in range(0, len(raw), stride)}
    return len(rows) > 200


def test_a_retest_sent_as_one_folder_per_visit_with_the_same_file_names_is_scored_whole(first_run, tmp_path) -> None:
    """Each visit's folder holds olink.csv and msd.csv: scored by folder, both visits count (by file name
    alone, the second visit's files took the place of the first's)."""
    from typer.testing import CliRunner

    from flows.cli import app
    from transforms.demo import generate_retest

    settings, _, summary = first_run
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{settings.home}"\n')
    retest = generate_retest(plate_shifts=(0.0, 0.5))
    flat = tmp_path / "flat"
    flat.mkdir()
    for name, data in retest.files.items():
        (flat / name).write_bytes(data)
        visit = next((v for v in ("visit1", "visit2") if v in name), None)
        target = tmp_path / visit / f"{name.split('_')[0]}.csv" if visit else tmp_path / name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(data)
    pinned = ["--release", summary.release_version, "--config", str(cfg), "--format", "json"]
    runner = CliRunner()
    by_file = runner.invoke(app, ["score", *sorted(map(str, flat.iterdir())), *pinned], catch_exceptions=False)
    by_folder = runner.invoke(
        app,
        ["score", str(tmp_path / "visit1"), str(tmp_path / "visit2"), str(tmp_path / "retest_manifest.csv"), *pinned],
        catch_exceptions=False,
    )
    assert by_folder.exit_code == 0, by_folder.output
    ((expected,), (got,)) = (json.loads(r.stdout)["people"] for r in (by_file, by_folder))
    assert len(got["results"]) == 60 and sum(r["change"] is not None for r in got["results"]) == 30
    keep = ("marker", "platform", "date", "value", "percentile", "position", "change", "change_vs_rcv")
    assert [{k: r.get(k) for k in keep} for r in got["results"]] == [
        {k: r.get(k) for k in keep} for r in expected["results"]
    ]


def test_a_retest_exported_by_the_lab_is_scored_on_the_release_scale_as_json_and_as_a_page(
    first_run, tmp_path, golden
) -> None:
    """Two new Olink plates and two new MSD plates of one person (the second visit's plates shifted by 0.5 on
    the log scale), scored with the command line against the pipeline's own release."""
    import shutil
    import subprocess

    from typer.testing import CliRunner

    from flows.cli import app
    from transforms.demo import generate_retest

    settings, _, summary = first_run
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{settings.home}"\n')
    retest = generate_retest(plate_shifts=(0.0, 0.5))
    for name, data in retest.files.items():
        (tmp_path / name).write_bytes(data)
    files = [str(tmp_path / n) for n in sorted(retest.files)]
    before = sorted(p.name for p in (settings.releases / summary.release_version).iterdir())
    runner = CliRunner()
    pinned = ["--release", summary.release_version, "--config", str(cfg)]  # later tests publish more releases
    result = runner.invoke(app, ["score", *files, "--format", "json", *pinned], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["release"] == summary.release_version
    manifest = settings.releases / summary.release_version / "manifest.json"
    assert report["manifest_sha256"] == __import__("hashlib").sha256(manifest.read_bytes()).hexdigest()
    (person,) = report["people"]
    later = [r for r in person["results"] if r["change"] is not None]
    assert len(later) == 30 and all(r["status"] == "placed" for r in person["results"])
    assert all(r["change_vs_rcv"].startswith("within the reference change value") for r in later)
    assert all(r["batch_method"].startswith("plate_control (frozen to release") for r in person["results"])
    for platform in ("olink", "msd"):  # the golden files: one per platform, without the release's own identity
        mine = {**report, "release": "<release>", "manifest_sha256": "<sha256>"}
        mine["people"] = [{**person, "results": [r for r in person["results"] if r["platform"] == platform]}]
        for r in mine["people"][0]["results"]:
            r["batch_method"] = r["batch_method"].replace(summary.release_version, "<release>")
        golden(f"retest/{platform}_scored", mine)
    assert sorted(p.name for p in (settings.releases / summary.release_version).iterdir()) == before
    assert q(settings, "select count(*) from person_scores") == [(0,)]  # nothing written unless asked
    recorded = runner.invoke(app, ["score", *files, "--record", *pinned])
    assert recorded.exit_code == 0 and "recorded 60 results in person_scores" in " ".join(recorded.output.split())
    rows = q(
        settings, "select distinct subject_key, release_version, manifest_sha256, count(*) over () from person_scores"
    )
    assert rows == [(rows[0][0], summary.release_version, report["manifest_sha256"], 60)]
    assert len(rows[0][0]) == 16 and "RETEST" not in rows[0][0]  # pseudonymised, as in samples

    page = tmp_path / "person.html"
    shown = runner.invoke(app, ["score", *files, "--format", "html", "--out", str(page), *pinned])
    assert shown.exit_code == 0, shown.output
    text = page.read_text(encoding="utf-8")
    assert "not a diagnosis" in text and text.index("not a diagnosis") < text.index("<h1>")
    assert (
        "<script" not in text
        and "http://" not in text
        and "https://" not in text
        and "url(" not in text.replace("url(#lod)", "")
    )
    assert text.count("<svg class='strip'") == 30 and "RETEST-PERSON-1" in text
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium here: the page's screenshot check is skipped")
    shot = tmp_path / "person.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",  # the page must render with no host to reach
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--screenshot={shot}",
            "--window-size=1250,1600",
            f"file://{page}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert _png_is_drawn(shot)


def test_a_run_with_nothing_new_reports_a_latest_release_whose_files_no_longer_match_its_manifest(
    tmp_path, prefect_backend
) -> None:
    """Downstream apps keep pulling the latest release: a file of it edited or truncated after publication is
    reported by every run until the folder is restored, and the run ends with problems; nothing is
    published over it (the inputs did not change)."""
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="test-key")
    copy_demo(generate_demo(seed=9, n_healthy=150, n_patients=20).files, settings.landing)
    first = run_pipeline(settings)
    assert first.release_version is not None and first.status == "completed"
    damaged = settings.releases / first.release_version / "reference_intervals.parquet"
    original = damaged.read_bytes()
    damaged.chmod(0o644)  # published read-only
    damaged.write_bytes(original[:-10])
    again = run_pipeline(settings)
    assert again.release_version is None and again.release_damaged
    assert again.status == "completed_with_problems"
    assert "reference_intervals.parquet: sha256 differs from the manifest" in again.release_message
    assert f"refranges releases verify {first.release_version}" in again.release_message
    assert len(releases.read_index(settings.releases)) == 1
    manifest = damaged.parent / "manifest.json"
    listed = manifest.read_bytes()
    manifest.chmod(0o644)
    manifest.write_text('{"files')  # the manifest itself damaged: named, never a traceback
    unreadable = run_pipeline(settings)
    assert unreadable.release_damaged and "manifest.json: not valid JSON" in unreadable.release_message
    manifest.write_bytes(listed)
    damaged.write_bytes(original)  # restored from a backup
    restored = run_pipeline(settings)
    assert restored.status == "completed" and not restored.release_damaged
    assert restored.release_message == f"inputs unchanged since release {first.release_version}: nothing published"


def _luminex_mfi_study(n_healthy: int, n_patients: int, seed: int = 4) -> dict[str, bytes]:
    """A manifest and one xPONENT export of one plate with MFI sections only (Median, Net MFI; no standard
    curve), two plate controls among the study samples."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = [f"LX{i:04d}" for i in range(n_healthy + n_patients)]
    cohort = ["healthy"] * n_healthy + ["patient"] * n_patients
    wells = [f"{r}{c}" for c in range(1, 13) for r in "ABCDEFGH"]
    names = ["Control1", "Control2", *ids]
    assays = {"IL-6 (19)": 4.0, "TNF-a (36)": 4.6, "IL-10 (27)": 3.5}  # log MFI centres
    median = {a: np.exp(c + 0.4 * rng.standard_normal(len(names))) for a, c in assays.items()}
    head = [
        '"Program","xPONENT","","FlexMAP 3D"',
        '"Batch","MFI_PLATE_1"',
        '"ProtocolName","Human Cytokine 3-plex"',
        '"BatchStartTime","2026-09-14 10:12"',
        "",
        '"Results"',
        "",
    ]

    def section(name: str, values: dict[str, object]) -> list[str]:
        rows = [
            f'"{k + 1}(1,{wells[k]})","{sample}",' + ",".join(f'"{values[a][k]:.1f}"' for a in assays) + ',"800"'
            for k, sample in enumerate(names)
        ]
        header = '"Location","Sample",' + ",".join(f'"{a}"' for a in assays) + ',"Total Events"'
        return [f'"DataType:","{name}"', header, *rows, ""]

    net = {a: v - 25.0 for a, v in median.items()}  # background subtracted: the lowest wells go below 0
    export = "\n".join(head + section("Median", median) + section("Net MFI", net)) + "\n"
    manifest = pl.DataFrame(
        {
            "sample_id": ids,
            "subject_id": [f"P-{i}" for i in ids],
            "cohort": cohort,
            "matrix": ["serum"] * len(ids),
            "sex": ["F", "M"] * (len(ids) // 2) + ["F"] * (len(ids) % 2),
            "age": [30 + i % 30 for i in range(len(ids))],
            "collection_date": ["2026-09-01"] * len(ids),
        }
    )
    return {"luminex_mfi_plate1.csv": export.encode(), "manifest.csv": manifest.write_csv().encode()}


def test_a_luminex_study_without_concentrations_publishes_reference_groups_in_mfi(tmp_path, prefect_backend) -> None:
    """A Luminex study exported without its standard-curve analysis is refused whole, the reason naming the
    setting; once `luminex_mfi_section` names the section, the next run reads the file again and publishes
    reference groups in MFI, apart from any concentration (never pooled with pg/mL)."""
    from flows.pipeline import run_pipeline

    copy_demo(_luminex_mfi_study(70, 10), (tmp_path / "landing"))
    plain = load_settings(env={}, home=tmp_path, subject_key="k")
    refused = run_pipeline(plain)
    (export,) = [f for f in refused.files if f.name == "luminex_mfi_plate1.csv"]
    assert export.status == "quarantined" and "set luminex_mfi_section" in export.reason
    settings = load_settings(env={}, home=tmp_path, subject_key="k", luminex_mfi_section="Median")
    summary = run_pipeline(settings)
    (export,) = [f for f in summary.files if f.name == "luminex_mfi_plate1.csv"]
    assert export.status == "loaded" and export.rows_quarantined == 0, export
    assert summary.release_version is not None and summary.groups_published == 3
    groups = q(
        settings, "select analyte, platform, unit, n + n_outliers_excluded from reference_intervals order by analyte"
    )
    assert groups == [
        ("IL10", "luminex", "MFI", 70),
        ("IL6", "luminex", "MFI", 70),
        ("TNF", "luminex", "MFI", 70),
    ]
    logs = q(settings, "select count(*) from measurements where unit = 'MFI' and abs(log_value - ln(value)) > 1e-9")
    assert logs == [(0,)]  # on the log scale, as concentrations are

    net = load_settings(env={}, home=tmp_path / "net", subject_key="k", luminex_mfi_section="Net MFI")
    copy_demo(_luminex_mfi_study(70, 10), net.landing)
    held = run_pipeline(net)
    (export,) = [f for f in held.files if f.name == "luminex_mfi_plate1.csv"]
    reasons = q(net, "select distinct \"check\" from quarantine where source_file = 'luminex_mfi_plate1.csv'")
    assert reasons == [("raw_measurements.expect_column_values_to_be_between(mfi_value)",)]
    assert export.status == "loaded" and export.rows_quarantined > 0  # the wells at or below the background


def test_a_release_store_that_lost_what_the_warehouse_registered_gets_no_new_release(tmp_path, prefect_backend) -> None:
    """The release folder moved, emptied, or a share not mounted under its mount point: a run found an empty
    store and published there again, under the same version as the release it lost, and the warehouse's
    record of that version was replaced by the new one. Now nothing is built or published into such a store,
    the run ends with problems saying what to do, and `status` says so; a new store (another folder) gets a
    version the warehouse never used."""
    import shutil

    from typer.testing import CliRunner

    from flows.cli import app
    from flows.pipeline import run_pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k")
    copy_demo(generate_demo(seed=9, n_healthy=150, n_patients=20).files, settings.landing)
    first = run_pipeline(settings)
    assert first.release_version is not None
    recorded = q(settings, "select version, created_at, path from releases")
    shutil.move(settings.releases, tmp_path / "moved")
    lost = run_pipeline(settings)
    assert lost.release_version is None and lost.release_damaged and lost.status == "completed_with_problems"
    assert f"no longer lists 1 release(s) that the warehouse registered there ({first.release_version})" in (
        lost.release_message
    )
    assert not settings.releases.exists()  # nothing written under the missing store
    assert q(settings, "select version, created_at, path from releases") == recorded
    status = CliRunner().invoke(app, ["status", "--format", "json"], env={"REFRANGES_HOME": str(tmp_path)})
    assert json.loads(status.stdout)["releases"]["missing_from_store"] == [first.release_version]

    elsewhere = load_settings(env={}, home=tmp_path, subject_key="k", releases=tmp_path / "new-store")
    fresh = run_pipeline(elsewhere)  # a new store on purpose: a version of its own
    assert fresh.release_version not in (None, first.release_version)
    assert {v for (v,) in q(settings, "select version from releases")} == {first.release_version, fresh.release_version}

    shutil.move(tmp_path / "moved", settings.releases)  # the share is back
    back = run_pipeline(settings)
    assert back.status == "completed" and back.release_message.startswith("inputs unchanged since release")
