"""The quality issue's 'done when': demo data plus deliberately broken files, end to end."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows.config import load_settings
from flows.landing import copy_demo
from transforms.demo import generate_demo

pytestmark = pytest.mark.slow


def _edit_msd(data: bytes, fn) -> bytes:
    text = data.decode()
    lines = text.split("\r\n")
    return "\r\n".join(fn(lines)).encode()


@pytest.fixture(scope="module")
def run(tmp_path_factory, prefect_backend):
    from flows.pipeline import run_pipeline

    home = tmp_path_factory.mktemp("gates")
    settings = load_settings(env={}, home=home, subject_key="k")
    demo = generate_demo(seed=9, n_healthy=200, n_patients=40)
    files = dict(demo.files)
    msd = sorted(n for n in files if n.startswith("msd_"))
    # duplicated wells: two data lines repeated at the end of a plate file
    files[msd[0]] = _edit_msd(files[msd[0]], lambda ls: [*ls[:-1], ls[20], ls[21], ls[-1]])

    # drifting controls: the IL-6 controls of one plate read 20 times too high
    def drift(lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            cells = line.split(",")
            if len(cells) > 9 and cells[1] == "IL-6" and cells[0] in {"C1", "C2"}:
                cells[9] = f"{float(cells[9]) * 20:.4g}"  # Calc. Concentration
            out.append(",".join(cells))
        return out

    files[msd[1]] = _edit_msd(files[msd[1]], drift)
    sample_ids = pl.read_csv(files["manifest.csv"], infer_schema=False)["sample_id"].to_list()
    wrong_units = "sample_id,analyte,value,unit,plate_id\n" + "".join(
        f"{s},IL-6,{1.5 + i},{'mg/dL' if i < 2 else 'pg/mL'},LAB-7\n" for i, s in enumerate(sample_ids[:10])
    )
    files["lab7_tidy.csv"] = wrong_units.encode()
    half = "sample_id,analyte,value,unit,plate_id\n" + "".join(
        f"{s},TNF,{'abc' if i % 2 == 0 else '2.5'},pg/mL,LAB-8\n" for i, s in enumerate(sample_ids[:10])
    )
    files["lab8_half_broken.csv"] = half.encode()
    copy_demo(files, settings.landing)
    summary = run_pipeline(settings)
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    yield settings, summary, con, msd
    con.close()


def test_good_data_loads_and_a_release_is_published(run) -> None:
    _, summary, con, _ = run
    assert summary.release_version is not None and summary.groups_published >= 30
    olink_samples = con.execute("select count(distinct sample_id) from measurements where platform = 'olink'")
    assert olink_samples.fetchall() == [(240 + 25,)]  # 240 people, 25 healthy people's second visits


def test_wrong_units_are_quarantined_row_by_row_with_the_suite_why(run) -> None:
    _, _, con, _ = run
    rows = con.execute(
        "select line_number, \"check\", reason from quarantine where source_file = 'lab7_tidy.csv' order by 1"
    ).fetchall()
    assert [r[0] for r in rows] == [2, 3]
    assert all(r[1] == "raw_measurements.expect_column_values_to_be_in_set(unit_read)" for r in rows)
    assert "only known concentration units" in rows[0][2]
    loaded = con.execute("select rows_read, rows_loaded, rows_quarantined from files where file_name = 'lab7_tidy.csv'")
    assert loaded.fetchall() == [(10, 8, 2)]


def test_duplicated_wells_hold_back_both_copies(run) -> None:
    _, _, con, msd = run
    rows = con.execute(
        'select count(*), count(distinct line_number) from quarantine where source_file = ? and "check" like '
        "'%compound_columns_to_be_unique%'",
        [msd[0]],
    ).fetchall()
    assert rows == [(4, 4)]


def test_a_plate_whose_controls_drift_is_held_back_for_that_analyte(run) -> None:
    _, _, con, msd = run
    plate = msd[1].removeprefix("msd_vplex_proinflammatory_").removesuffix(".csv")
    held = con.execute(
        "select count(*), any_value(reason) from quarantine where stage = 'qc' and source_file = ? "
        "and reason like '%drift%'",
        [msd[1]],
    ).fetchall()
    n_il6_rows = held[0][0]
    assert n_il6_rows > 50 and f"plate {plate}, IL6" in held[0][1]
    assert con.execute(
        "select count(*) from measurements where plate_id = ? and analyte = 'IL6'", [plate]
    ).fetchall() == [(0,)]
    assert con.execute(
        "select count(*) > 0 from measurements where plate_id = ? and analyte = 'TNF'", [plate]
    ).fetchall() == [(True,)]
    failed = con.execute(
        "select unexpected_count from qc_results where suite = 'plates[msd]' and expectation like '%control_shift_abs%'"
    ).fetchall()
    assert failed == [(1,)]


def test_a_file_with_half_its_values_unparseable_is_quarantined_whole(run) -> None:
    settings, summary, con, _ = run
    outcome = next(f for f in summary.files if f.name == "lab8_half_broken.csv")
    assert outcome.status == "quarantined" and "5 of 10 rows unusable" in outcome.reason
    assert con.execute("select status, rows_loaded from files where file_name = 'lab8_half_broken.csv'").fetchall() == [
        ("quarantined", 0)
    ]
    assert (settings.quarantine / "lab8_half_broken.csv.reason.txt").exists()
    assert con.execute(
        "select count(*) from raw_measurements where source_file = 'lab8_half_broken.csv'"
    ).fetchall() == [(0,)]
    assert summary.status == "completed_with_problems"
    # GX reports the files suite over every file with a parse ledger (validated once for the run's files):
    # the half-broken file is the one unexpected share, shown as it reads
    checked = [f for f in summary.files if f.rows_read or f.status == "loaded"]
    gx = con.execute(
        "select element_count, unexpected_count, unexpected_sample from qc_results "
        "where suite = 'files' and expectation like '%bad_row_share%'"
    ).fetchall()
    assert gx == [(len(checked), 1, "0.5")]


def test_the_run_writes_an_offline_qc_report(run) -> None:
    _, summary, _, _ = run
    page = Path(summary.report_path).read_text(encoding="utf-8")
    assert "control_shift_abs" in page and "lab8_half_broken.csv" in page
    assert "http://" not in page and "https://" not in page


def test_the_release_gate_refuses_a_candidate_that_breaks_its_suite(tmp_path, monkeypatch, prefect_backend) -> None:
    """A bug upstream that produced lower > median must stop publication, and the run must say why."""
    import flows.pipeline as pipeline

    settings = load_settings(env={}, home=tmp_path, subject_key="k")
    copy_demo(generate_demo(seed=2, n_healthy=150, n_patients=10).files, settings.landing)
    real = pipeline.build_reference

    def broken(*args, **kwargs):
        build = real(*args, **kwargs)
        bad = build.intervals.with_columns((pl.col("median") * 10).alias("lower_limit"))
        return type(build)(bad, build.quantiles, build.outliers, build.skipped)

    monkeypatch.setattr(pipeline, "build_reference", broken)
    state = pipeline.run_pipeline(settings, return_state=True)
    summary = state.result()
    assert summary.release_version is None and summary.release_blocked
    assert "release blocked by the release suite: the lower limit must not exceed the median" in summary.release_message
    assert state.name == "CompletedWithProblems"
    assert not settings.releases.exists() or not any(p.is_dir() for p in settings.releases.iterdir())
