"""Vendor layouts from real-shaped files in tests/data, checked against golden canonical rows."""

from __future__ import annotations

import hashlib
import io
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SHARED_EXAMPLES
from transforms.demo import generate_demo
from transforms.readers import UnreadableFileError, read_file
from transforms.readers.common import instrument_date

DATA = Path(__file__).resolve().parents[1] / "data"
SHOWN = [
    "line_number",
    "platform",
    "panel",
    "plate_id",
    "well",
    "run_date",
    "sample_id",
    "sample_type",
    "analyte_raw",
    "value_text",
    "value",
    "unit_raw",
    "censoring",
    "limit_value",
]


def read_path(name: str):
    data = (DATA / name).read_bytes()
    return read_file(data, source=name, sha256=hashlib.sha256(data).hexdigest())


def test_luminex_xponent_result_section(golden) -> None:
    r = read_path("luminex_xponent_result.csv")
    assert r.layout == "luminex"
    golden("luminex_xponent_result", r.rows.select(SHOWN))
    assert r.rows_read == 6 * 4  # one canonical row per (well, analyte) cell of the Result section
    reasons = r.quarantine.sort("line_number")["reason"].to_list()
    assert len(reasons) == 5  # the background row has four NaN cells, one cell is 'abc'
    assert reasons[0] == "luminex_xponent_result.csv: line 28: no value reported for IL-6 (cell 'NaN'); nothing to load"
    assert reasons[-1] == (
        "luminex_xponent_result.csv: line 31: value 'abc' for IL-6 is not a number; correct the cell or re-export"
    )


def test_a_luminex_file_without_concentrations_is_read_as_mfi_only_when_the_setting_names_a_section() -> None:
    """Many cytokine studies on Luminex analyse MFI, as most healthy values fall below the standard curve. A
    file with MFI sections only is refused (no concentrations), saying which setting reads it; with
    luminex_mfi_section it is read from that section in the unit MFI, with a note on what MFI can be compared
    with; a section the file lacks is named."""
    import re

    text = (DATA / "luminex_xponent_result.csv").read_text()
    data = re.sub(r'"DataType:","Result"\n.*?\n\n', "", text, flags=re.S).encode()  # the Median section is left
    with pytest.raises(UnreadableFileError, match="or set luminex_mfi_section to read its Median or Net MFI"):
        read_file(data, source="m.csv", sha256="x")
    r = read_file(data, source="m.csv", sha256="x", options={"luminex_mfi_section": "Median"})
    assert r.layout == "luminex" and r.rows_read == 4 * 4 and r.quarantine.height == 0
    assert r.rows["unit_raw"].unique().to_list() == ["MFI"]
    assert r.rows["unit_note"].unique().to_list() == [
        "MFI from the Median section, no standard curve (setting luminex_mfi_section): comparable within one kit "
        "lot and instrument only"
    ]
    cell = r.rows.filter((pl.col("sample_id") == "0100002") & (pl.col("analyte_raw") == "IFN-g"))
    assert cell["value"].to_list() == [140.0]  # the Median section's cell, as written
    with pytest.raises(UnreadableFileError, match="setting luminex_mfi_section is 'Net MFI', and the file has no"):
        read_file(data, source="m.csv", sha256="x", options={"luminex_mfi_section": "Net MFI"})
    full = read_file(text.encode(), source="r.csv", sha256="x", options={"luminex_mfi_section": "Median"})
    assert "MFI" not in full.rows["unit_raw"].to_list()  # concentrations, when the file has them, come first


@pytest.mark.parametrize(
    ("stamp", "day"),
    [
        ("2024-10-18 11:36", date(2024, 10, 18)),  # INTELLIFLEX writes ISO: it was read as no date at all
        ("18.05.2023 14:02:10", date(2023, 5, 18)),
        ("18/05/2023 14:02:10", date(2023, 5, 18)),  # as xPONENT writes it on a European computer
        ("05/01/2026 14:00", None),  # 1 May or 5 January: read as 1 May before
    ],
)
def test_luminex_run_date_is_read_only_when_it_can_be_known(stamp: str, day: date | None) -> None:
    text = (DATA / "luminex_xponent_result.csv").read_text().replace("9/14/2026 10:12:29 AM", stamp)
    data = text.encode()
    r = read_file(data, source="l.csv", sha256=hashlib.sha256(data).hexdigest())
    assert r.rows["run_date"].unique().to_list() == [day]


@given(
    day=st.dates(min_value=date(1990, 1, 1), max_value=date(2099, 12, 31)),
    style=st.sampled_from(
        ["%m/%d/%Y %I:%M:%S %p", "%d/%m/%Y %H:%M", "%d.%m.%Y", "%Y-%m-%d %H:%M", "%d-%m-%Y", "%m/%d/%Y"]
    ),
)
def test_an_instrument_date_is_the_date_or_none_never_another(day: date, style: str) -> None:
    read = instrument_date(day.strftime(style))
    assert read in (day, None)
    if style.startswith("%Y") or "." in style or day.day > 12 or day.day == day.month:
        assert read == day  # nothing left to guess


def test_bioplex_report(golden) -> None:
    r = read_path("bioplex_report.csv")
    assert r.layout == "bioplex"
    golden("bioplex_report", r.rows.select(SHOWN))
    reasons = r.quarantine.sort("line_number")["reason"].to_list()
    assert reasons == [
        "bioplex_report.csv: line 7: no value reported for IL-6 (cell ''); nothing to load",
        "bioplex_report.csv: line 18: value '***' for TNF-a is not a number; correct the cell or re-export",
    ]


@pytest.mark.skipif(not SHARED_EXAMPLES.exists(), reason="../shared/data/examples not present")
def test_real_luminex_mfi_only_exports_are_refused_with_a_clear_reason() -> None:
    for path in sorted((SHARED_EXAMPLES / "luminex").glob("*.csv")):
        with pytest.raises(UnreadableFileError, match="MFI sections only") as info:
            read_file(path.read_bytes(), source=path.name, sha256="x")
        assert path.name in str(info.value)


def test_olink_excel_and_parquet_variants_match_the_csv() -> None:
    demo = generate_demo(seed=3, n_healthy=20, n_patients=5)
    csv = demo.files["olink_npx_batch2.csv"]
    from_csv = read_file(csv, source="o.csv", sha256="x").rows
    frame = pl.read_csv(csv, infer_schema=False)
    buf = io.BytesIO()
    frame.write_parquet(buf)
    from_parquet = read_file(buf.getvalue(), source="o.parquet", sha256="x").rows
    xbuf = io.BytesIO()
    frame.write_excel(xbuf, worksheet="NPX Data")
    from_excel = read_file(xbuf.getvalue(), source="o.xlsx", sha256="x").rows
    cols = ["line_number", "sample_id", "sample_type", "analyte_raw", "value", "censoring", "limit_value", "plate_id"]
    assert from_parquet.select(cols).equals(from_csv.select(cols))
    assert from_excel.select(cols).equals(from_csv.select(cols))


def test_manifest_from_excel_with_bad_rows() -> None:
    frame = pl.DataFrame(
        {
            "sample_id": ["A1", "A2", "A3", "A4"],
            "subject_id": ["s1", "s2", "s3", "s4"],
            "cohort": ["healthy", "Patient", "control", "healthy"],
            "matrix": ["serum", "Plasma", "serum", "serum"],
            "sex": ["female", "M", "F", "x"],
            "age": ["34", "51", "40", "29"],
            "collection_date": ["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"],
            "severity": ["", "moderate", "", ""],
        }
    )
    buf = io.BytesIO()
    frame.write_excel(buf)
    r = read_file(buf.getvalue(), source="manifest.xlsx", sha256="x")
    assert r.layout == "manifest"
    assert r.samples.select("sample_id", "cohort", "matrix", "sex", "severity_label").rows() == [
        ("A1", "healthy", "serum", "F", None),
        ("A2", "patient", "plasma", "M", "moderate"),
    ]
    reasons = r.quarantine.sort("line_number")["reason"].to_list()
    assert reasons == [
        "manifest.xlsx: line 4: cohort 'control' is not one of healthy, patient; write healthy for a person of the "
        "reference group (a healthy control) or patient (other groups are not compared here)",
        "manifest.xlsx: line 5: sex 'x' is not F/M (female/male); write F or M (a code such as 1/2 is never guessed)",
    ]


def test_a_workbook_with_tables_on_two_sheets_is_refused_not_read_in_part() -> None:
    """A study workbook with the manifest on one sheet and the results on another: the first sheet with a
    known header was read and the other dropped without a word. One table per file is read; a workbook
    with more is refused, naming each. A workbook with one table and other sheets (a chart) reads as before."""
    import xlsxwriter

    manifest = pl.DataFrame(
        {
            "sample_id": ["S1"],
            "subject_id": ["P1"],
            "cohort": ["healthy"],
            "matrix": ["serum"],
            "sex": ["F"],
            "age": [40],
        }
    )
    results = pl.DataFrame(
        {"sample_id": ["S1"], "analyte": ["IL-6"], "value": [1.5], "unit": ["pg/mL"], "plate_id": ["P1"]}
    )
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    manifest.write_excel(book, worksheet="who")
    book.add_worksheet("notes").write(0, 0, "plates run on 2 June")
    results.write_excel(book, worksheet="results")
    book.close()
    with pytest.raises(UnreadableFileError) as refused:
        read_file(buf.getvalue(), source="study.xlsx", sha256="x")
    assert str(refused.value) == (
        "study.xlsx: this workbook holds 2 tables (a sample manifest on sheet who, a generic tidy table on sheet "
        "results), and a file is read as one table; save each sheet as a file of its own (CSV or .xlsx) in the "
        "landing folder"
    )
    one = io.BytesIO()
    book = xlsxwriter.Workbook(one)
    book.add_worksheet("notes").write(0, 0, "plates run on 2 June")
    results.write_excel(book, worksheet="results")
    book.close()
    read = read_file(one.getvalue(), source="results.xlsx", sha256="x")
    assert read.layout == "tidy" and read.rows.height == 1


def test_a_manifest_value_held_back_is_quoted_as_written_with_what_to_write() -> None:
    """The reasons quoted the lower-cased value ('hc' for HC) and did not say what to write instead."""
    text = (
        "sample_id,subject_id,cohort,matrix,sex,age,collection_date\n"
        "A1,s1,HC,serum,F,40,2026-01-02\nA2,s2,healthy,EDTA Plasma,F,41,2026-01-02\n"
        "A3,s3,Healthy,Serum,2,42,2026-01-02\nA4,s4,healthy,serum,F,40 years,2026-01-02\n"
        "A5,s5,healthy,serum,F,,2026-01-02\n"
    )
    r = read_file(text.encode(), source="m.csv", sha256="x")
    assert r.samples.height == 0
    assert r.quarantine.sort("line_number")["reason"].to_list() == [
        "m.csv: line 2: cohort 'HC' is not one of healthy, patient; write healthy for a person of the reference "
        "group (a healthy control) or patient (other groups are not compared here)",
        "m.csv: line 3: matrix 'EDTA Plasma' is not one of serum, plasma; write serum or plasma (the two are never "
        "pooled in one reference)",
        "m.csv: line 4: sex '2' is not F/M (female/male); write F or M (a code such as 1/2 is never guessed)",
        "m.csv: line 5: age '40 years' is not a number of years in 0-120; write the age in years as a number, such "
        "as 41 or 41.5",
        "m.csv: line 6: no age (an empty cell, or no age column); write the age in years as a number, such as 41 or "
        "41.5",
    ]


@pytest.mark.skipif(not SHARED_EXAMPLES.exists(), reason="../shared/data/examples not present")
def test_real_msd_workbench_excel_and_methodical_mind_text() -> None:
    data = (SHARED_EXAMPLES / "msd" / "test_msd_workbench_xlsx.xlsx").read_bytes()
    r = read_file(data, source="wb.xlsx", sha256="x")
    assert r.layout == "msd" and r.rows["plate_id"].unique().to_list() == ["Plate_TEST_PLATE_001"]
    assert r.rows["line_number"].min() == 3  # spreadsheet row numbers: plate name, header, then data
    assert r.rows_read == r.rows.height + r.quarantine.height == 24
    assert r.quarantine["reason"].str.contains("no value reported for TEST_ASSAY").all()
    with pytest.raises(UnreadableFileError, match="Methodical Mind signal export"):
        read_file((SHARED_EXAMPLES / "msd" / "methodical_test_1.txt").read_bytes(), source="mm.txt", sha256="x")


# --- Olink Target 48 / 96 NPX files in the wide layout (NPX Manager, NPX Signature's wide export) ---------------

WIDE_SHOWN = [*SHOWN, "lod", "vendor_qc"]


def test_olink_npx_manager_wide_file_reads_as_one_row_per_sample_and_assay(golden) -> None:
    """Two panels side by side, each with its own Plate ID and QC Warning column, the QC deviation columns, an
    IPC on both plates, a negative control, a warning on one panel of one sample, a value below the LOD row's
    limit, a NaN and an empty cell: as NPX Manager writes it on a European computer (';', decimal commas,
    CRLF). It was refused whole with what to export instead."""
    r = read_path("olink_npx_manager_wide.csv")
    assert r.layout == "olink_wide"
    golden("olink_npx_manager_wide", r.rows.select(WIDE_SHOWN))
    assert r.rows_read == r.rows.height + r.quarantine.height == 8 * 5  # one row per cell: 8 sample rows x 5 assays
    assert r.quarantine.sort("line_number")["reason"].to_list() == [
        "olink_npx_manager_wide.csv: line 13: no value reported for TNF (cell 'NaN'); nothing to load",
        "olink_npx_manager_wide.csv: line 14: no value reported for IL10 (cell ''); nothing to load",
    ]
    by_panel = r.rows.group_by("panel").agg(pl.col("plate_id").unique().sort()).sort("panel")
    assert by_panel.rows() == [
        ("Olink Target 96 Cardiometabolic(v.3603)", ["CM_Plate1", "CM_Plate2"]),
        ("Olink Target 96 Inflammation(v.3022)", ["INF_Plate1", "INF_Plate2"]),
    ]
    warned = r.rows.filter(pl.col("vendor_qc").is_not_null())
    assert set(warned["sample_id"]) == {"S003"} and set(warned["panel"]) == {"Olink Target 96 Inflammation(v.3022)"}
    assert r.info == {
        "olink_layout": "wide",
        "product": "Target 96",
        "data_file_type": "NPX File (wide)",
        "software_version": "Olink NPX Manager 3.1.0.5",
        "title": "NPX data / Olink NPX Manager 3.1.0.5",
        "lod_source": "row LOD",
        "columns_not_read": [
            "Olink Target 96 Inflammation(v.3022) QC Deviation from median Inc Ctrl 2",
            "Olink Target 96 Inflammation(v.3022) QC Deviation from median Det Ctrl",
        ],
    }
    held = read_file(
        (DATA / "olink_npx_manager_wide.csv").read_bytes(),
        source="w.csv",
        sha256="x",
        options={"hold_vendor_warnings": True},
    )
    assert held.quarantine.filter(pl.col("check") == "vendor_qc_warning")["reason"].to_list()[0] == (
        "w.csv: line 10: sample S003 on plate INF_Plate1, IL6: Olink flagged QC_Warning=Warning; held back because "
        "hold_vendor_warnings is on"
    )


def test_olink_wide_samples_after_an_empty_row_are_read_not_left_out() -> None:
    """An empty row between two plates' samples ended the samples: the second plate's rows were neither read
    nor counted. The samples run to the first bottom row (LOD, Missing Data freq., ...)."""
    lines = (DATA / "olink_npx_manager_wide.csv").read_text().splitlines()
    lines.insert(12, ";" * 11)  # before S004, the first sample of plate 2
    r = read_file("\r\n".join(lines).encode(), source="w.csv", sha256="x")
    assert r.rows_read == 8 * 5 and r.rows.filter(pl.col("plate_id") == "INF_Plate2")["sample_id"].n_unique() == 3


def _wide_workbook(rows: list[list[str]]) -> bytes:
    """The rows as NPX Manager's Excel export writes them: numbers as number cells, at the same rows."""
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    sheet = book.add_worksheet("NPX Data")
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            number = cell.replace(",", ".")
            try:
                sheet.write_number(i, j, float(number)) if cell and number != "NaN" else sheet.write_string(i, j, cell)
            except ValueError:
                sheet.write_string(i, j, cell)
    book.close()
    return buf.getvalue()


def test_olink_npx_manager_wide_workbook_matches_the_csv() -> None:
    text = (DATA / "olink_npx_manager_wide.csv").read_text()
    rows = [line.split(";") for line in text.splitlines()]
    from_csv = read_path("olink_npx_manager_wide.csv")
    from_excel = read_file(_wide_workbook(rows), source="olink_npx_manager_wide.xlsx", sha256="x")
    assert from_excel.layout == "olink_wide"
    cols = [c for c in WIDE_SHOWN if c != "value_text"]  # '3,41' in the CSV, 3.41 in a number cell
    assert from_excel.rows.select(cols).equals(from_csv.rows.select(cols))  # spreadsheet rows are the CSV's lines
    assert from_excel.quarantine["line_number"].to_list() == from_csv.quarantine["line_number"].to_list()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda rows: [["Ct data"], *rows[1:]], r"holding Ct values \(before NPX normalisation\), which is not read"),
        (lambda rows: [["Quantified data"], *rows[1:]], r"holding absolute quantification \(Quantified data\)"),
        (lambda rows: [*rows[:7], ["Unit", "pg/mL"], *rows[7:]], r"absolute quantification"),
        (lambda rows: [*rows[:5], [], *rows[5:]], r"whose Assay row \(line 5\) is not followed by its OlinkID row"),
        (lambda rows: [*rows, ["LOD", "0,6", "1,2", "0,9", "2,2", "1,5"]], r"with a LOD row per plate \(line 20\)"),
        (lambda rows: [*rows, ["Plate LOD", "0,6"]], r"with a Plate LOD row per plate"),
        (lambda rows: [*rows, ["LLOQ", "0,6"]], r"absolute quantification"),
        (lambda rows: [["OlinkID"] if r[0] == "OlinkID" else r for r in rows], "without assay columns"),
    ],
)
def test_olink_wide_files_this_reader_cannot_read_are_refused_with_the_reason(change, match) -> None:
    text = (DATA / "olink_npx_manager_wide.csv").read_text()
    rows = change([line.split(";") for line in text.splitlines()])
    data = "\n".join(";".join(r) for r in rows).encode()
    with pytest.raises(UnreadableFileError, match=match) as refused:
        read_file(data, source="w.csv", sha256="x")
    assert str(refused.value).startswith("w.csv: ")


def test_olink_wide_plate_columns_that_cannot_be_told_apart_are_refused() -> None:
    """Two Plate ID columns without their panels named above them, for three panels: which is whose cannot
    be known, so the file is refused rather than given another panel's plates."""
    rows = [
        ["NPX data"],
        ["Panel", "A", "B", "C", "", ""],
        ["Assay", "IL6", "TNF", "CRP", "Plate ID", "Plate ID"],
        ["OlinkID", "OID1", "OID2", "OID3", "", ""],
        ["S1", "1.0", "2.0", "3.0", "P1", "P2"],
    ]
    data = "\n".join(",".join(r) for r in rows).encode()
    with pytest.raises(UnreadableFileError, match="2 Plate ID columns for 3 panels, whose panels cannot be told apart"):
        read_file(data, source="w.csv", sha256="x")


ASSAYS = [
    ("IL6", "OID00482", "P05231"),
    ("TNF", "OID00504", "P01375"),
    ("IL10", "OID00513", "P22301"),
    ("CRP", "OID00789", "P02741"),
]


@st.composite
def npx_projects(draw):
    """A random Olink NPX project: panels of assays, sample rows (controls among them) on plates, NPX cells
    (numbers, NaN, empty, below the LOD), QC warnings per sample and panel, and an LOD per assay."""
    n_panels = draw(st.integers(1, 2))
    assays = draw(st.lists(st.sampled_from(ASSAYS), min_size=n_panels, max_size=4, unique=True))
    panel = {a[0]: f"Olink Target 96 Panel{1 + i % n_panels}(v.30{i % n_panels})" for i, a in enumerate(assays)}
    samples = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["S1", "S2", "S3", "S4", "IPC", "Negative Control"]),
                st.sampled_from(["Plate1", "Plate2"]),
                st.lists(st.sampled_from(["Pass", "Warning"]), min_size=n_panels, max_size=n_panels),
                st.lists(
                    st.one_of(
                        st.floats(-3, 15, allow_nan=False).map(lambda x: f"{x:.3f}"),
                        st.sampled_from(["NaN", ""]),
                    ),
                    min_size=len(assays),
                    max_size=len(assays),
                ),
            ),
            min_size=1,
            max_size=6,
        )
    )
    lods = draw(
        st.lists(st.floats(0, 3, allow_nan=False).map(lambda x: f"{x:.2f}"), min_size=len(assays), max_size=len(assays))
    )
    return assays, panel, samples, lods


@given(project=npx_projects(), european=st.booleans())
def test_an_olink_wide_file_reads_as_its_long_export(project, european: bool) -> None:
    """The same NPX data written in Olink's long layout and in the wide layout give the same rows (but their
    line numbers, and the cell text where the wide file writes decimal commas)."""
    assays, panel, samples, lods = project
    panels = list(dict.fromkeys(panel[a[0]] for a in assays))

    def num(cell: str) -> str:
        return cell.replace(".", ",") if european else cell

    long_lines = ["SampleID,Assay,OlinkID,UniProt,Panel,PlateID,QC_Warning,LOD,NPX"]
    for sample, plate, warnings, values in samples:
        for (name, oid, uniprot), value, lod in zip(assays, values, lods, strict=True):
            warning = warnings[panels.index(panel[name])]
            long_lines.append(
                f"{sample},{name},{oid},{uniprot},{panel[name]},{plate} {panel[name][-6:]},{warning},{lod},{value}"
            )
    sep = ";" if european else ","
    wide = [
        ["NPX data"],
        [],
        ["Panel", *(panel[a[0]] for a in assays), *panels, *panels],
        ["Assay", *(a[0] for a in assays), *["Plate ID"] * len(panels), *["QC Warning"] * len(panels)],
        ["Uniprot ID", *(a[2] for a in assays)],
        ["OlinkID", *(a[1] for a in assays)],
    ]
    for sample, plate, warnings, values in samples:
        wide.append([sample, *map(num, values), *(f"{plate} {p[-6:]}" for p in panels), *warnings])
    wide += [[], ["LOD", *map(num, lods)], ["Missing Data freq.", *["0"] * len(assays)]]
    from_long = read_file("\n".join(long_lines).encode() + b"\n", source="npx.csv", sha256="x")
    from_wide = read_file("\r\n".join(sep.join(r) for r in wide).encode(), source="npx.csv", sha256="x")
    assert from_wide.layout == "olink_wide" and from_wide.rows_read == from_long.rows_read == len(samples) * len(assays)
    left_out = ["line_number", "value_text"]
    assert from_wide.rows.drop(left_out).equals(from_long.rows.drop(left_out))
    checks = ["check", "sample_id", "analyte_raw"]
    assert from_wide.quarantine.select(checks).equals(from_long.quarantine.select(checks))
