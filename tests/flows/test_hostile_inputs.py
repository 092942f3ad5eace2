"""A corpus of hostile inputs through the parse-and-check step of a run (flows.pipeline.plan_file): each ends
with a clear outcome, a balanced ledger and no traceback. Figures in docs/operations.md."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from flows.config import load_settings
from flows.pipeline import plan_file

HEAD = b"sample_id,analyte,value,unit,plate_id\n"


def _bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b"0" * 300_000_000)
    return out.getvalue()


CORPUS: dict[str, tuple[bytes, str, str | None]] = {  # name: (bytes, expected status, words of the reason)
    "nul_bytes.csv": (HEAD + b"S1,IL-6,2.5,pg/mL,P1\nS2,IL\x00-6,1.5,pg/mL,P1\n", "quarantined", "NUL bytes"),
    "wide_100k_columns.csv": (
        (",".join(f"c{i}" for i in range(100_000)) + "\n" + ",".join("1" * 100_000) + "\n").encode(),
        "quarantined",
        "no known export layout",
    ),
    "one_200MB_line.csv": (HEAD + b"S1,IL-6," + b"9" * 200_000_000 + b",pg/mL,P1\n", "quarantined", None),
    "html_in_names.csv": (
        HEAD + b"<script>alert(1)</script>,<img src=x onerror=alert(2)>,2.5,pg/mL,P1\n",
        "loaded",
        None,
    ),
    "formula_ids.csv": (
        HEAD + b"=cmd|calc,IL-6,2.5,pg/mL,P1\n+41,IL-6,1,pg/mL,P1\n@SUM(A1),IL-6,1,pg/mL,P1\n",
        "loaded",
        None,
    ),
    "zip_bomb.xlsx": (_bomb(), "quarantined", "far beyond any export"),
    "damaged.xlsx": (b"PK\x03\x04" + b"\x00" * 200, "quarantined", "not a readable .xlsx"),
    "empty.csv": (b"", "quarantined", "the file is empty"),
    "only_header.csv": (HEAD, "quarantined", "no data rows"),
    "utf16_after_an_utf8_header.csv": (HEAD + "S1,IFN-\u03b3,2.5,pg/mL,P1\n".encode("utf-16"), "quarantined", None),
    "name with spaces and \u00fcnicode.csv": (HEAD + b"S1,IL-6,2.5,pg/mL,P1\n", "loaded", None),
    "-leading-dash.csv": (HEAD + b"S1,IL-6,2.5,pg/mL,P1\n", "loaded", None),
    "new\nline.csv": (HEAD + b"S1,IL-6,2.5,pg/mL,P1\n", "loaded", None),
    # a manifest without a matrix column loaded its rows with no matrix, and the run died on the warehouse's
    # NOT NULL constraint with a traceback; an empty cohort cell the same
    "manifest_without_matrix.csv": (
        b"sample_id,subject_id,cohort,sex,age\nS1,P1,healthy,F,40\nS2,P2,patient,M,41\n",
        "quarantined",
        "(2 of 2 rows unusable, 100%; 2 of them: no matrix (an empty cell, or no matrix column); write serum or",
    ),
    "manifest_with_an_empty_cohort.csv": (
        b"sample_id,subject_id,cohort,matrix,sex,age\n"
        + b"".join(b"S%d,P%d,healthy,serum,F,40\n" % (i, i) for i in range(20))
        + b"S99,P99,,serum,F,40\n",
        "loaded",
        None,
    ),
}

#: The columns of a manifest row that the warehouse's samples table declares NOT NULL.
SAMPLE_NOT_NULL = ["sample_id", "subject_key", "cohort", "matrix", "sex", "source_file", "source_sha256", "line_number"]


@pytest.mark.parametrize("name", list(CORPUS))
def test_every_hostile_input_ends_with_a_reason_and_a_balanced_ledger(name: str, tmp_path: Path) -> None:
    data, status, words = CORPUS[name]
    settings = load_settings(env={}, home=tmp_path, subject_key="k")
    plan = plan_file(data, name, settings, set(), b"k")  # raises on a reader bug, never on bad input
    o = plan.outcome
    assert o.rows_read == o.rows_loaded + o.rows_quarantined  # no row lost
    assert o.status == status, o.reason
    if plan.samples is not None:  # what loads must fit the table: a null there failed the run, not the row
        assert plan.samples.select(SAMPLE_NOT_NULL).null_count().sum_horizontal().item() == 0
    if name == "manifest_with_an_empty_cohort.csv":
        assert plan.quarantine["reason"].to_list() == [
            f"{name}: line 22: no cohort (an empty cell, or no cohort column); write healthy for a person of the "
            "reference group (a healthy control) or patient (other groups are not compared here)"
        ]
    if status == "quarantined":
        assert o.reason and o.reason.startswith(f"{name}: "), o.reason  # the reason names the file
        assert words is None or words in o.reason, o.reason


def test_the_run_summary_names_each_quarantined_file_once(tmp_path: Path) -> None:
    """The summary's detail read ``empty.csv: empty.csv: the file is empty``: it put the file's name before a
    reason that begins with it. A reason that does not (a file-level reason made elsewhere) still gets it."""
    from flows.pipeline import FileOutcome, RunSummary
    from flows.summary import summary_text

    settings = load_settings(env={}, home=tmp_path, subject_key="k")
    empty = plan_file(CORPUS["empty.csv"][0], "run1/empty.csv", settings, set(), b"k").outcome
    outcomes = [empty, FileOutcome("b.csv", "0" * 64, "quarantined", reason="held back by hand")]
    text = summary_text(RunSummary("r1", files=outcomes), width=400)
    assert "run1/empty.csv: the file is empty" in text and text.count("run1/empty.csv") == 1, text
    assert "b.csv: held back by hand" in text and text.count("b.csv") == 1, text


def test_an_olink_file_whose_qc_failed_on_most_plates_loads_its_good_plate(tmp_path: Path) -> None:
    """Olink's SampleQC FAIL rows counted as unusable rows: a file whose run failed QC on two of its four
    plates (35 % of its rows held) was quarantined whole as "probably damaged or in a layout variant we
    misread", its good plates with it. The vendor's verdict is read right and held on purpose: it no longer
    counts towards max_bad_row_share, while rows that cannot be used still do."""
    import polars as pl
    import pyarrow.parquet as pq

    from transforms.demo_explore import generate_explore

    demo = generate_explore(seed=3, n_healthy=300, n_patients=40)
    table = pq.read_table(io.BytesIO(demo.files["explore_ht_npx.parquet"]))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    failed = pl.col("PlateID").is_in(["HT_PLATE_2", "HT_PLATE_3"])

    def written(rows: pl.DataFrame) -> bytes:
        out = io.BytesIO()
        pq.write_table(rows.to_arrow().replace_schema_metadata(table.schema.metadata), out)
        return out.getvalue()

    data = written(frame.with_columns(pl.when(failed).then(pl.lit("FAIL")).otherwise("SampleQC").alias("SampleQC")))
    settings = load_settings(env={}, home=tmp_path, subject_key="k")
    plan = plan_file(data, "npx.parquet", settings, set(), b"k")
    o = plan.outcome
    assert o.status == "loaded", o.reason
    assert o.rows_quarantined / o.rows_read > settings.max_bad_row_share  # more than the share, all vendor QC
    assert set(plan.quarantine["check"]) == {"vendor_sample_qc"}
    assert plan.file_stats.select("rows_held_by_vendor_qc", "bad_row_share").row(0) == (o.rows_quarantined, 0.0)
    assert {"HT_PLATE_1", "HT_PLATE_4"} <= set(plan.rows.filter(pl.col("sample_type") == "sample")["plate_id"])

    # the same file with its NPX cells emptied on those plates instead: unusable rows, quarantined whole
    blank = frame.with_columns(pl.when(failed).then(None).otherwise(pl.col("NPX")).alias("NPX"))
    damaged = plan_file(written(blank), "npx.parquet", settings, set(), b"k").outcome
    assert damaged.status == "quarantined" and "rows unusable" in (damaged.reason or ""), damaged.reason


def test_a_reader_that_fails_on_a_file_quarantines_that_file_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    """A reader's failure on input it did not foresee (a polars error, a KeyError) stopped the whole run, and
    every scheduled run after it, until someone removed the file: the file is quarantined with what failed
    and what to do, and the other files load."""
    import polars as pl

    from transforms.readers import detect

    settings = load_settings(env={}, home=tmp_path, subject_key="k")
    original = detect.read_file

    def failing(data: bytes, *, source: str, **kwargs: object):
        if source == "odd.csv":
            raise pl.exceptions.ComputeError("cannot cast categorical types to Float64\n\nmore lines")
        return original(data, source=source, **kwargs)

    monkeypatch.setattr(detect, "read_file", failing)
    odd = plan_file(b"sample_id,analyte,value,unit,plate_id\nS1,IL-6,1,pg/mL,P1\n", "odd.csv", settings, set(), b"k")
    assert odd.outcome.status == "quarantined"
    assert odd.outcome.reason.startswith(
        "odd.csv: refranges' reader failed on this file (ComputeError: cannot cast categorical types to Float64), "
        "a refranges defect"
    )
    fine = plan_file(b"sample_id,analyte,value,unit,plate_id\nS1,IL-6,1,pg/mL,P1\n", "fine.csv", settings, set(), b"k")
    assert fine.outcome.status == "loaded"
    monkeypatch.setattr(detect, "read_file", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(MemoryError):  # not a file's fault: the run stops as before
        plan_file(b"x", "big.csv", settings, set(), b"k")
