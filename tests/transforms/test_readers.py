from __future__ import annotations

import hashlib
import io
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_EXAMPLES
from transforms import schema
from transforms.demo import generate_demo
from transforms.readers import UnreadableFileError, read_file


def read(data: bytes, name: str = "f.csv"):
    return read_file(data, source=name, sha256=hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def demo():
    return generate_demo(seed=7, n_healthy=50, n_patients=10)


def test_every_demo_file_is_detected_and_balances(demo) -> None:
    layouts = {}
    for name, data in demo.files.items():
        r = read(data, name)
        layouts[name] = r.layout
        assert r.rows_read == (r.samples.height if r.samples is not None else r.rows.height) + r.quarantine.height
        assert dict(r.rows.schema) == schema.MEASUREMENT
        assert r.quarantine.height == 0
    assert layouts["manifest.csv"] == "manifest"
    assert layouts["olink_npx_batch1.csv"] == layouts["olink_npx_batch2.csv"] == "olink"
    assert {v for k, v in layouts.items() if k.startswith("msd")} == {"msd"}


def test_olink_semicolon_decimal_comma_export(demo) -> None:
    r = read(demo.files["olink_npx_batch1.csv"], "olink_npx_batch1.csv")
    text = demo.files["olink_npx_batch1.csv"].decode()
    first = text.splitlines()[1].split(";")
    row = r.rows.row(0, named=True)
    assert row["sample_id"] == first[0] and row["line_number"] == 2
    assert row["value"] == pytest.approx(float(first[11].replace(",", ".")))
    assert row["unit_raw"] == "NPX" and row["platform"] == "olink"
    controls = r.rows.filter(pl.col("sample_id").str.contains("CONTROL"))
    assert controls.height > 0 and set(controls["sample_type"]) == {"control"}
    below = r.rows.filter(pl.col("censoring") == "below_lod")
    assert (below["value"] < below["limit_value"]).all() and below["value"].null_count() == 0


def test_olink_types_samples_by_their_plates_and_names() -> None:
    header = "SampleID,Assay,PlateID,NPX,LOD\n"
    lines = [
        "S1,IL6,P1,3.1,0.5",  # on two plates of the file: a bridge
        "S1,IL6,P2,3.2,0.5",
        "S2,IL6,P1,2.0,0.5",  # one plate: a sample
        "S2,TNF,P1,2.1,0.5",
        "S3,IL6,P2,1.0,0.5",  # one plate and a row without plate id (held back by the raw suite)
        "S3,TNF,,1.1,0.5",
        "Bridge_7,IL6,P1,4.0,0.5",  # a bridge by name
        "IPC_1,IL6,P1,4.0,0.5",  # a control by name, though on two plates
        "IPC_1,IL6,P2,4.0,0.5",
    ]
    r = read((header + "\n".join(lines) + "\n").encode(), "olink_types.csv")
    types = dict(zip(r.rows["sample_id"], r.rows["sample_type"], strict=True))
    assert types == {"S1": "bridge", "S2": "sample", "S3": "sample", "Bridge_7": "bridge", "IPC_1": "control"}
    assert r.rows.height == len(lines)


@pytest.mark.parametrize(
    ("lod_header", "source"),
    [
        ("LOD", "column LOD"),
        ("PlateLOD", "column PlateLOD"),
        ("MaxLOD", "column MaxLOD"),
        ("Limit", "none: the file has no LOD column, so no value is flagged below the LOD"),
    ],
)
def test_olink_target_lod_from_the_lod_column_the_file_has_and_the_ledger_says_which(lod_header: str, source: str):
    """A Target file whose LOD column is PlateLOD or MaxLOD (later Olink software) was read without an LOD, so no
    value was flagged below it, without a word. The first LOD column present is read, and `file_info_json`
    says where the LOD came from, or that the file has none."""
    text = f"SampleID,Assay,PlateID,{lod_header},NPX\nS1,IL6,P1,1.5,0.7\nS2,IL6,P1,1.5,2.1\n"
    r = read(text.encode(), "target.csv")
    assert r.info["lod_source"] == source
    flagged = r.rows.filter(pl.col("censoring") == "below_lod")["sample_id"].to_list()
    assert flagged == ([] if source.startswith("none") else ["S1"])


def test_olink_target_samples_in_two_panels_are_on_two_plates_without_being_bridges() -> None:
    """Olink Target runs each panel on plates of its own: a sample measured in two panels names two plates.
    Every sample of a two-panel project was typed a bridge; a bridge is a sample on two plates of one panel."""
    header = "SampleID,Assay,Panel,PlateID,NPX,LOD\n"
    lines = [
        "S1,IL6,Inflammation,INF_1,3.1,0.5",
        "S1,CRP,Cardiometabolic,CM_1,9.2,0.5",
        "S2,IL6,Inflammation,INF_1,2.0,0.5",
        "S2,IL6,Inflammation,INF_2,2.2,0.5",  # on both Inflammation plates: a bridge
        "S2,CRP,Cardiometabolic,CM_1,8.1,0.5",
    ]
    r = read((header + "\n".join(lines) + "\n").encode(), "two_panels.csv")
    types = dict(zip(r.rows["sample_id"], r.rows["sample_type"], strict=False))
    assert types == {"S1": "sample", "S2": "bridge"}


@pytest.mark.parametrize(
    ("qc", "assay", "expected"),
    [
        (["Pass", "Pass", "Pass"], ["Pass", "Pass", "Pass"], [None, None, None]),
        (["PASS", "ok", ""], ["OK", "Pass", "pass"], [None, None, None]),
        (
            ["Pass", "WARN", ""],
            ["Warning", "Pass", "pass"],
            ["Assay_Warning=Warning", "QC_Warning=WARN", None],
        ),
        (
            ["WARN", "WARN", "WARN"],
            ["Pass", "Pass", "EXCLUDED"],
            ["QC_Warning=WARN"] * 2 + ["QC_Warning=WARN; Assay_Warning=EXCLUDED"],
        ),
    ],
)
def test_olink_warnings_become_vendor_qc_flags(qc: list[str], assay: list[str], expected: list[str | None]) -> None:
    body = "".join(f"S{i},IL6,P1,3.{i},0.5,{q},{a}\n" for i, (q, a) in enumerate(zip(qc, assay, strict=True)))
    r = read(("SampleID,Assay,PlateID,NPX,LOD,QC_Warning,Assay_Warning\n" + body).encode(), "olink_qc.csv")
    assert r.rows.sort("line_number")["vendor_qc"].to_list() == expected


def test_msd_plate_export_flags_detection_ranges_and_assumes_unit(demo) -> None:
    name = next(n for n in demo.files if n.startswith("msd"))
    r = read(demo.files[name], name)
    assert r.rows["plate_id"].unique().to_list() == [
        name.removeprefix("msd_vplex_proinflammatory_").removesuffix(".csv")
    ]
    assert set(r.rows["sample_type"]) == {"calibrator", "control", "sample"}
    assert r.rows["unit_raw"].unique().to_list() == ["pg/mL"]
    assert r.rows["unit_note"].drop_nulls().str.contains("assumed").all()
    below = r.rows.filter(pl.col("censoring") == "below_lod")
    assert below.height > 0 and (below["limit_value"] > 0).all()


def test_bad_rows_are_held_alone_with_file_line_and_reason() -> None:
    data = (
        b"sample_id,analyte,value,unit,plate_id\n"
        b"S1,IL-6,1.5,pg/mL,P1\n"
        b"S2,IL-6,abc,pg/mL,P1\n"
        b"S3,IL-6,NaN,pg/mL,P1\n"
        b",IL-6,2.0,pg/mL,P1\n"
        b"S5,IL-6,< 0.12,pg/mL,P1\n"
    )
    r = read(data, "lab.csv")
    assert r.rows["sample_id"].to_list() == ["S1", "S5"]
    reasons = dict(zip(r.quarantine["line_number"], r.quarantine["reason"], strict=True))
    assert reasons[3] == "lab.csv: line 3: value 'abc' for IL-6 is not a number; correct the cell or re-export"
    assert "no value reported" in reasons[4] and "no sample id" in reasons[5]
    assert r.rows_read == 5


@pytest.mark.parametrize("kind", ["csv", "xlsx", "parquet"])
def test_a_header_close_to_the_tidy_format_is_refused_with_the_renames_it_needs(kind: str) -> None:
    """A LIMS export with Sample ID, Analyte, Result, Unit, Plate was refused as "no known export layout"
    (see docs): the reason now says which columns to rename or add. Common names are never read in place
    of the documented ones."""
    frame = pl.DataFrame(
        {"Sample ID": ["S1"], "Analyte": ["IL-6"], "Result": ["2.5"], "Unit": ["pg/mL"], "Plate": ["P1"]}
    )
    buf = io.BytesIO()
    {"csv": frame.write_csv, "xlsx": frame.write_excel, "parquet": frame.write_parquet}[kind](buf)
    where = "sheet Sheet1: " if kind == "xlsx" else ""
    with pytest.raises(UnreadableFileError) as refused:
        read_file(buf.getvalue(), source=f"lims.{kind}", sha256="x")
    assert str(refused.value) == (
        f"lims.{kind}: {where}no known export layout; its header (Sample ID, Analyte, Result, Unit, Plate) is close "
        "to the generic tidy format (columns sample_id, analyte, value, unit, plate_id): rename Result to value, "
        "Plate to plate_id (docs/input-formats.md)"
    )


@pytest.mark.parametrize(
    ("header", "advice"),
    [
        ("sample_id;analyte;value", "add unit, plate_id"),
        (
            "Sample,Analyte,Concentration,Units,Run",
            "rename Sample to sample_id, Concentration to value, Units to unit; add plate_id",
        ),
        ("sample_id,Result,Concentration,unit,plate_id", "add analyte, value"),  # two candidates for value: neither
    ],
)
def test_the_tidy_hint_names_renames_and_missing_columns(header: str, advice: str) -> None:
    with pytest.raises(UnreadableFileError, match=f": {advice} \\(docs/input-formats.md\\)$"):
        read_file(f"{header}\nS1,IL-6,2.5\n".encode(), source="f.csv", sha256="x")


@pytest.mark.parametrize("header", ["foo,bar,baz", "Sample,Assay,Well,Signal", "analyte"])
def test_a_header_unlike_the_tidy_format_gets_the_general_reason(header: str) -> None:
    with pytest.raises(UnreadableFileError, match="no known export layout in the first 200 lines"):
        read_file(f"{header}\n1,2,3,4\n".encode(), source="f.csv", sha256="x")


def test_tidy_uniprot_column_identifies_an_analyte_the_dictionary_does_not_know() -> None:
    """A tool handing in a marker outside the curated dictionary can name its UniProt accession, as Olink's
    files do; without it the rows are held back at normalisation."""
    from transforms.normalise import dictionary_lookup, resolve_analytes
    from warehouse.lookups import read_analyte_dictionary

    data = b"sample_id,analyte,value,unit,plate_id,uniprot\nS1,Adrenomedullin,5.1,pg/mL,P1,P35318\n"
    data += b"S2,IL-6,1,pg/mL,P1,\n"
    r = read(data, "tidy.csv")
    assert r.rows["uniprot_raw"].to_list() == ["P35318", None]
    known, held = resolve_analytes(r.rows, dictionary_lookup(read_analyte_dictionary()[0]))
    assert known.select("analyte", "uniprot").rows() == [("Adrenomedullin", "P35318"), ("IL6", "P05231")]
    assert held.height == 0


def test_tidy_limits_set_censoring_flags() -> None:
    data = (
        b"sample_id,analyte,value,unit,plate_id,lod,uloq,sample_type\n"
        b"S1,IL-6,0.05,pg/mL,P1,0.1,100,sample\n"
        b"S2,IL-6,500,pg/mL,P1,0.1,100,sample\n"
        b"S3,IL-6,5,pg/mL,P1,0.1,100,control\n"
    )
    r = read(data)
    assert r.rows.select("censoring", "limit_value").rows() == [
        ("below_lod", 0.1),
        ("above_uloq", 100.0),
        (None, None),
    ]
    assert r.rows["sample_type"].to_list() == ["sample", "sample", "control"]


def test_a_tidy_run_date_is_read_only_as_an_iso_date() -> None:
    # polars' inference took the first row's reading for the column: 05/01 became 5 January, 05/13 nothing
    data = (
        b"sample_id,analyte,value,unit,plate_id,run_date\n"
        b"S1,IL-6,1.5,pg/mL,P1,2026-05-01\n"
        b"S2,IL-6,2.5,pg/mL,P1,05/01/2026\n"
        b"S3,IL-6,3.5,pg/mL,P1,05/13/2026\n"
        b"S4,IL-6,4.5,pg/mL,P1,2026-05-13 00:00:00\n"
        b"S5,IL-6,5.5,pg/mL,P1,\n"
    )
    r = read(data)
    assert r.rows.select("sample_id", "run_date").rows() == [
        ("S1", date(2026, 5, 1)),
        ("S4", date(2026, 5, 13)),
        ("S5", None),
    ]
    assert r.quarantine["check"].to_list() == ["run_date_valid", "run_date_valid"]
    assert r.quarantine["reason"][0].startswith("f.csv: line 3: run_date '05/01/2026' is not an ISO date (YYYY-MM-DD)")
    assert r.rows_read == r.rows.height + r.quarantine.height


def test_quirky_tidy_file_bom_crlf_comments_trailing_columns_repeated_header() -> None:
    body = (
        "# exported 2026-10-01 by LIMS\r\n"
        "sample_id;analyte;value;unit;plate_id;;\r\n"
        "00123;IL-6;1,5;pg/mL;P1;;\r\n"
        "sample_id;analyte;value;unit;plate_id;;\r\n"
        "00124;TNF-α;1.234,5;pg/mL;P1;;\r\n"
        ";;;;;;\r\n"
    )
    r = read(b"\xef\xbb\xbf" + body.encode())
    assert r.rows.select("sample_id", "analyte_raw", "value", "line_number").rows() == [
        ("00123", "IL-6", 1.5, 3),
        ("00124", "TNF-α", 1234.5, 5),
    ]
    r16 = read(body.replace(";", "\t").encode("utf-16"))
    assert r16.rows["value"].to_list() == [1.5, 1234.5]


def test_formula_cells_are_text_not_formulas() -> None:
    r = read(b"sample_id,analyte,value,unit,plate_id\n=HYPERLINK(1),IL-6,=1+1,pg/mL,P1\n")
    assert r.rows.height == 0 and "'=1+1'" in r.quarantine["reason"][0]


def test_parquet_and_excel_variants_read_like_csv() -> None:
    frame = pl.DataFrame(
        {
            "sample_id": ["S1", "S2"],
            "analyte": ["IL-6", "TNF"],
            "value": [1.5, 2.5],
            "unit": ["pg/mL", "pg/mL"],
            "plate_id": ["P1", "P1"],
        }
    )
    buf = io.BytesIO()
    frame.write_parquet(buf)
    r = read(buf.getvalue(), "x.parquet")
    assert r.layout == "tidy" and r.rows["value"].to_list() == [1.5, 2.5] and r.rows["line_number"].to_list() == [2, 3]


def test_a_workbook_names_rows_by_their_spreadsheet_row_numbers_with_empty_rows_above_and_between() -> None:
    """polars drops a sheet's leading and empty rows by default, so every line number after an empty row named
    the wrong row (the bad value on row 6 was reported on line 4): a lab opening the workbook found another
    row. Rows are now numbered as the spreadsheet numbers them."""
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    sheet = book.add_worksheet()
    sheet.write_row(2, 1, ["Lab export, cytokines"])  # B3: two empty rows above, one empty column left of it
    sheet.write_row(4, 1, ["sample_id", "analyte", "value", "unit", "plate_id"])
    sheet.write_row(5, 1, ["S1", "IL-6", 1.5, "pg/mL", "P1"])
    sheet.write_row(7, 1, ["S2", "IL-6", "abc", "pg/mL", "P1"])  # after an empty row 7
    book.close()
    r = read(buf.getvalue(), "lab.xlsx")
    assert r.rows["line_number"].to_list() == [6]
    assert r.quarantine["reason"].to_list() == [
        "lab.xlsx: line 8: value 'abc' for IL-6 is not a number; correct the cell or re-export"
    ]


def test_a_workbook_with_an_empty_sheet_beside_its_table_is_read() -> None:
    """Excel's empty Sheet2 and Sheet3 refused the whole workbook ("Excel workbook cannot be read (empty Excel
    sheet ...)"); a table on a hidden sheet is named as hidden when it is the second table of a workbook."""
    import xlsxwriter

    def book(hidden_table: bool) -> bytes:
        buf = io.BytesIO()
        workbook = xlsxwriter.Workbook(buf)
        data = workbook.add_worksheet("Results")
        workbook.add_worksheet("Sheet2")
        workbook.add_worksheet("Notes").write(0, 0, "checked by AB")
        for sheet in [data] + ([workbook.add_worksheet("old run")] if hidden_table else []):
            sheet.write_row(0, 0, ["sample_id", "analyte", "value", "unit", "plate_id"])
            sheet.write_row(1, 0, ["S1", "IL-6", 1.5, "pg/mL", "P1"])
        if hidden_table:
            workbook.worksheets()[-1].hide()
        workbook.close()
        return buf.getvalue()

    r = read(book(hidden_table=False), "lab.xlsx")
    assert r.layout == "tidy" and r.rows["value"].to_list() == [1.5]
    with pytest.raises(UnreadableFileError, match=r"on sheet old run \(a hidden sheet: unhide it to see it\)"):
        read(book(hidden_table=True), "lab.xlsx")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"\x00\x00\x00garbage", "binary"),
        (b"foo,bar\n1,2\n", "no known export layout"),
        (b'"Program","xPONENT"\n"DataType:","Median"\n', "Luminex"),
        (b"PAR1 truncated", "Parquet"),
    ],
)
def test_unreadable_files_raise_a_reason_naming_the_file(data: bytes, match: str) -> None:
    with pytest.raises(UnreadableFileError, match=match) as info:
        read(data, "broken.csv")
    assert "broken.csv" in str(info.value)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(["1.5", "abc", "NaN", "< 0.1", "", "*3", ">ULOQ", "-2", "1,000"]),
        min_size=1,
        max_size=30,
    )
)
def test_no_row_is_ever_lost(values: list[str]) -> None:
    lines = ["sample_id,analyte,value,unit,plate_id"] + [f'S{i},IL-6,"{v}",pg/mL,P1' for i, v in enumerate(values)]
    r = read("\n".join(lines).encode())
    assert r.rows.height + r.quarantine.height == len(values)
    assert sorted(r.rows["line_number"].to_list() + r.quarantine["line_number"].to_list()) == list(
        range(2, len(values) + 2)
    )


@pytest.mark.skipif(not SHARED_EXAMPLES.exists(), reason="../shared/data/examples not present")
@pytest.mark.parametrize(
    ("name", "n_above", "held_lines"),
    [("msd_workbench_test_1.csv", 4, []), ("msd_workbench_test_2.csv", 0, [47, 48])],
)
def test_real_msd_workbench_exports(name: str, n_above: int, held_lines: list[int]) -> None:
    """... and the ledger says where censoring came from: an export without a Detection Range column (the second)
    flags no value outside the detection range, which nothing said before (`file_info_json.censoring_source`)."""
    data = (SHARED_EXAMPLES / "msd" / name).read_bytes()
    r = read(data, name)
    assert r.layout == "msd"
    assert r.info["censoring_source"] == (
        "column Detection Range"
        if n_above
        else "none: the file has no Detection Range column, so no value is flagged outside the detection range"
    )
    n_lines = sum(1 for line in data.decode().splitlines()[2:] if line.strip(", "))
    assert r.rows_read == n_lines
    assert r.rows["plate_id"].str.starts_with("Plate_").all()
    assert r.rows.filter(pl.col("censoring") == "above_uloq").height == n_above
    assert r.quarantine["line_number"].to_list() == held_lines
    assert r.quarantine["reason"].str.contains("no value reported").all()
    assert {"calibrator", "sample"} >= set(r.rows["sample_type"]) and "calibrator" in set(r.rows["sample_type"])


@pytest.mark.skipif(not SHARED_EXAMPLES.exists(), reason="../shared/data/examples not present")
def test_real_luminex_exports_are_refused_with_a_clear_reason() -> None:
    for path in sorted((SHARED_EXAMPLES / "luminex").glob("*.csv")):
        with pytest.raises(UnreadableFileError, match="Luminex"):
            read(path.read_bytes(), path.name)


def test_reader_keeps_input_unchanged(tmp_path: Path) -> None:
    data = b"sample_id,analyte,value,unit,plate_id\nS1,IL-6,1,pg/mL,P1\n"
    before = bytes(data)
    read(data)
    assert data == before


OLINK_WIDE = (
    "SampleID,Index,OlinkID,UniProt,Assay,MissingFreq,Panel,Panel_Lot_Nr,PlateID,QC_Warning,LOD,NPX,"
    "Normalization,Assay_Warning\n"
)


def _olink_wide_rows(n: int) -> list[str]:
    return [
        f"S{i % 7},{i % 88 + 1},OID{i % 5:05d},P05231,{['IL6', 'TNF', 'IL10', 'IL8', 'CCL2'][i % 5]},0.02,"
        f"Olink Explore,B04414,PLATE{i // 35},{'Pass' if i % 11 else 'WARN'},0.5,{(i % 9) / 3 - 0.4:.5f},"
        f"Intensity,{'Pass' if i % 13 else 'Warning'}"
        for i in range(n)
    ]


def test_olink_clean_export_parsed_for_its_read_columns_matches_the_careful_path() -> None:
    lines = _olink_wide_rows(70)
    fast = read((OLINK_WIDE + "\n".join(lines) + "\n").encode(), "olink_wide.csv")
    # a comment line sends the file down the careful path, which parses every column; at the end it
    # leaves every other line number as it is
    careful = read((OLINK_WIDE + "\n".join(lines) + "\n# end of export\n").encode(), "olink_wide.csv")
    assert fast.rows.height == 70 and fast.rows["vendor_qc"].null_count() < 70
    assert fast.rows.drop("source_sha256").equals(careful.rows.drop("source_sha256"))
    assert fast.quarantine.height == careful.quarantine.height == 0


def test_olink_row_with_only_unread_cells_is_held_back_not_dropped() -> None:
    lines = _olink_wide_rows(5)
    lines.insert(2, ",,OID00009,,,,,,,,,,,")  # no sample, assay or value, but not an empty row either
    lines.insert(4, ",,,,,,,,,,,,,")  # an empty row: dropped, as the careful path drops it
    r = read((OLINK_WIDE + "\n".join(lines) + "\n").encode(), "olink_wide.csv")
    assert r.rows.height == 5 and r.rows_read == 6
    assert r.quarantine["reason"].str.contains("line 4:").all() and r.quarantine.height == 1


def test_manifest_rows_that_contradict_each_other_or_lie_in_the_future_are_held_back_with_reasons() -> None:
    from transforms.readers.manifest import read_manifest
    from transforms.text import read_table

    text = (
        "sample_id,subject_id,cohort,matrix,sex,age,collection_date\n"
        "S1,P1,healthy,serum,F,40,2026-05-01\n"
        "S2,P1,healthy,serum,M,40,2026-08-01\n"  # P1: F and M
        "S3,P2,healthy,serum,F,30,2026-05-01\n"
        "S4,P2,patient,serum,F,30,2026-06-01\n"  # P2: healthy and patient
        "S5,P3,patient,serum,M,-3,2026-05-01\n"
        "S6,P4,patient,serum,M,121,2026-05-01\n"
        "S7,P5,healthy,serum,F,50,2027-01-15\n"  # after today
        "S8,P6,healthy,serum,F,50,2026-12-03\n"  # today: fine
        "S8,P6,healthy,serum,F,50,2026-12-03\n"  # twice
        "S9,P7,patient,plasma,M,61,2026-04-01\n"
    )
    lines = text.split("\n")
    samples, held = read_manifest(
        read_table(lines, header_index=0, source="m.csv"), source="m.csv", sha256="x", today=date(2026, 12, 3)
    )
    assert samples["sample_id"].to_list() == ["S9"]
    assert samples.height + held.height == 10  # every row accounted for, none fixed
    why = dict(zip(held["line_number"].to_list(), held["reason"].to_list(), strict=True))
    assert "subject P1 is listed with sex F and M in this manifest" in why[2] and why[2] == why[3].replace("3:", "2:")
    assert "subject P2 is listed with cohort healthy and patient" in why[4]
    assert "age '-3' is not a number of years in 0-120" in why[6] and "age '121'" in why[7]
    assert "collection_date 2027-01-15 is after today (2026-12-03); correct the date" in why[8]
    assert "listed more than once" in why[9] and "listed more than once" in why[10]


def test_manifest_dates_are_read_as_iso_only_and_a_day_month_date_is_held_not_guessed() -> None:
    """polars' inference read a whole column the way its first row fitted: 05/01/2026 (a US 1 May) became
    5 January, and 05/13/2026 in the next row was "not an ISO date". Excel date cells arrive with a time."""
    from transforms.readers.manifest import read_manifest
    from transforms.text import read_table

    text = (
        "sample_id,subject_id,cohort,matrix,sex,age,collection_date\n"
        "S1,P1,healthy,serum,F,40,05/01/2026\n"
        "S2,P2,healthy,serum,F,40,05/13/2026\n"
        "S3,P3,healthy,serum,F,40,2026-05-01 00:00:00\n"  # an Excel date cell as the workbook reader gives it
        "S4,P4,healthy,serum,F,40,2026-05-02T09:30:00\n"
        "S5,P5,healthy,serum,F,40, 2026-05-03 \n"
        "S6,P6,healthy,serum,F,40,\n"  # no date: allowed
        "S7,P7,healthy,serum,F,40,01.05.2026\n"
    )
    samples, held = read_manifest(
        read_table(text.split("\n"), header_index=0, source="m.csv"),
        source="m.csv",
        sha256="x",
        today=date(2026, 12, 3),
    )
    assert dict(zip(samples["sample_id"], samples["collection_date"], strict=True)) == {
        "S3": date(2026, 5, 1),
        "S4": date(2026, 5, 2),
        "S5": date(2026, 5, 3),
        "S6": None,
    }
    why = dict(zip(held["line_number"].to_list(), held["reason"].to_list(), strict=True))
    assert sorted(why) == [2, 3, 8]
    assert "collection_date '05/01/2026' is not an ISO date (YYYY-MM-DD); write it as YYYY-MM-DD" in why[2]


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)), st.sampled_from(["", " 00:00:00", "T13:45"]))
def test_an_iso_date_with_or_without_a_time_is_read_and_no_other_order_is(day: date, time_part: str) -> None:
    from transforms.readers.common import iso_date

    texts = [day.isoformat() + time_part, day.strftime("%d/%m/%Y"), day.strftime("%m/%d/%Y"), day.strftime("%Y/%m/%d")]
    read = pl.select(iso_date(pl.Series(texts))).to_series().to_list()
    assert read == [day, None, None, None]


def _manifest_samples(rows: list[tuple], source: str) -> pl.DataFrame:
    from transforms import schema

    cols = ["sample_id", "subject_key", "cohort", "matrix", "sex", "age", "collection_date"]
    frame = pl.DataFrame([dict(zip(cols, r, strict=True)) for r in rows])
    frame = frame.with_columns(
        pl.lit(source).alias("source_file"),
        pl.lit("sha-" + source).alias("source_sha256"),
        pl.Series("line_number", range(2, len(rows) + 2), dtype=pl.Int64),
    )
    return schema.conform(frame, schema.SAMPLE)


def test_a_manifest_that_contradicts_a_loaded_one_is_held_back_row_by_row_with_both_sides() -> None:
    from transforms.readers.manifest import against_loaded

    loaded = _manifest_samples(
        [
            ("S1", "k1", "healthy", "serum", "F", 40.0, date(2026, 5, 1)),
            ("S2", "k2", "healthy", "serum", "M", 41.0, date(2026, 5, 1)),
        ],
        "manifest_a.csv",
    )
    new = _manifest_samples(
        [
            ("S1", "k9", "patient", "serum", "M", 60.0, date(2026, 5, 3)),  # another person under S1
            ("S2", "k2", "healthy", "serum", "M", 41.0, date(2026, 5, 1)),  # listed alike: fine
            ("S3", "k1", "healthy", "serum", "M", 40.0, date(2026, 6, 1)),  # k1 is F in manifest_a
            ("S4", "k2", "patient", "serum", "M", 41.0, date(2026, 6, 1)),  # k2 is healthy in manifest_a
            ("S5", "k5", "patient", "plasma", "F", 33.0, None),  # new sample, new person
        ],
        "run2/manifest.csv",
    )
    kept, held = against_loaded(new, loaded)
    assert kept["sample_id"].to_list() == ["S2", "S5"]
    assert kept.height + held.height == new.height  # every row accounted for
    why = dict(zip(held["sample_id"], held["reason"], strict=True))
    assert why["S1"] == (
        "run2/manifest.csv: line 2: sample S1 is listed by manifest_a.csv (line 2) differently: another subject; "
        "cohort healthy there, patient here; sex F there, M here; age 40 there, 60 here; collection_date "
        "2026-05-01 there, 2026-05-03 here. One of them is wrong: correct it (a new version of a manifest, under "
        "the same name, replaces it)"
    )
    assert "listed by manifest_a.csv (line 2, sample S1) with sex F, here M" in why["S3"]
    assert "listed by manifest_a.csv (line 3, sample S2) with cohort healthy, here patient" in why["S4"]
    assert held["check"].to_list() == ["sample_listed_alike", "subject_sex_consistent", "subject_cohort_consistent"]
    assert against_loaded(new, loaded.clear())[0].equals(new)


def test_archives_and_documents_sent_beside_exports_are_named_with_what_to_do() -> None:
    """A zip of exports was "Excel workbook cannot be read (calamine error ...)", a gzip "binary", a PDF "no
    known export layout"."""
    import gzip
    import zipfile

    from transforms.readers import UnreadableFileError, read_file

    export = b"sample_id,analyte,value,unit,plate_id\nS1,IL-6,2.5,pg/mL,P1\n"
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("run1/plate1.csv", export)
        archive.writestr("run1/plate2.csv", export)
    cases = {
        "exports.zip": (
            packed.getvalue(),
            "a zip archive of 2 file(s) (run1/plate1.csv, run1/plate2.csv), not an export",
        ),
        "export.csv.gz": (gzip.compress(export), "a gzip-compressed file, not an export; unpack it (gunzip)"),
        "report.pdf": (b"%PDF-1.7\n%\xe2\xe3\n1 0 obj", "a PDF document, not a data export"),
        "exports.7z": (b"7z\xbc\xaf\x27\x1c\x00\x04", "a 7-Zip archive, not an export"),
    }
    for name, (data, said) in cases.items():
        with pytest.raises(UnreadableFileError) as caught:
            read_file(data, source=name, sha256="x")
        assert str(caught.value).startswith(f"{name}: {said}"), str(caught.value)
    assert read_file(export, source="plate1.csv", sha256="x").rows.height == 1  # an export still reads


def test_hand_made_manifests_and_tidy_files_are_read_with_the_headers_people_write() -> None:
    """ "Sample ID, Subject ID, Cohort, ..., Age (years)" was "no known export layout" until renamed."""
    from transforms.readers import read_file
    from transforms.readers.common import fold_header

    assert [fold_header(h) for h in ["Sample ID", "Age (years)", " Collection-Date ", "plate_id", "Value [pg/mL]"]] == [
        "sample_id",
        "age",
        "collection_date",
        "plate_id",
        "value",
    ]
    manifest = (
        "Sample ID,Subject ID,Cohort,Matrix,Sex,Age (years),Collection Date,Notes\n"
        "S1,P1,Healthy,Serum,Female,40,2026-05-01,fine\n"
        "S2,P2,healthy,serum,M,41.5,2026-05-02,\n"
    )
    read = read_file(manifest.encode(), source="manifest.csv", sha256="x")
    assert read.layout == "manifest" and read.quarantine.height == 0
    assert read.samples.select("sample_id", "cohort", "sex", "age").rows() == [
        ("S1", "healthy", "F", 40.0),
        ("S2", "healthy", "M", 41.5),
    ]
    tidy = "Sample ID,Analyte,Value,Unit,Plate ID\nS1,IL-6,2.5,pg/mL,P1\n"
    rows = read_file(tidy.encode(), source="values.csv", sha256="x")
    assert rows.layout == "tidy" and rows.rows.select("sample_id", "plate_id", "value").rows() == [("S1", "P1", 2.5)]


def test_a_european_manifest_reads_decimal_commas_and_an_unreadable_duration_is_held_not_dropped() -> None:
    """age 40,5 in a ';' manifest was "not a number" (exports read decimal commas, manifests did not), and an
    illness duration of 2,5 or "about 3" was loaded as no duration at all, without a word."""
    from transforms.readers import read_file

    european = (
        "sample_id;subject_id;cohort;matrix;sex;age;collection_date;severity;illness_duration_years\n"
        "S1;P1;healthy;serum;F;40,5;2026-05-01;;\n"
        "S2;P2;patient;serum;M;41;2026-05-02;62,5;2,5\n"
    )
    read = read_file(european.encode(), source="m.csv", sha256="x")
    assert read.quarantine.height == 0
    assert read.samples.select("age", "severity", "illness_duration_years").rows() == [
        (40.5, None, None),
        (41.0, 62.5, 2.5),
    ]
    plain = (
        "sample_id,subject_id,cohort,matrix,sex,age,collection_date,illness_duration_years\n"
        "S1,P1,patient,serum,F,40,2026-05-01,about 3\n"
        "S2,P2,patient,serum,F,40,2026-05-01,3.5\n"
        "S3,P3,patient,serum,F,40,2026-05-01,-1\n"
    )
    read = read_file(plain.encode(), source="m.csv", sha256="x")
    assert read.samples["sample_id"].to_list() == ["S2"]
    assert read.quarantine["reason"].to_list() == [
        "m.csv: line 2: illness_duration_years 'about 3' is not a number of years in 0-120; write one, such as 2.5, "
        "or leave the cell empty",
        "m.csv: line 4: illness_duration_years '-1' is not a number of years in 0-120; write one, such as 2.5, or "
        "leave the cell empty",
    ]


def test_a_workbook_that_is_a_damaged_zip_or_a_zip_bomb_is_refused_before_it_is_unpacked() -> None:
    import zipfile

    from transforms.readers import detect

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/worksheets/sheet1.xml", b"0" * 300_000_000)  # 300 MB of zeros: about 0.3 MB zipped
    data = bomb.getvalue()
    assert len(data) < 1_000_000
    with pytest.raises(UnreadableFileError, match=r"would unpack to 300 MB, far beyond any export; it was not opened"):
        detect.check_workbook_size(data, source="bomb.xlsx")
    # the reader refuses it the same way, before polars or fastexcel see it
    with pytest.raises(UnreadableFileError, match=r"bomb.xlsx: this .xlsx"):
        read_file(data, source="bomb.xlsx", sha256="x")
    small = io.BytesIO()
    with zipfile.ZipFile(small, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", "<sheetData>" + "<row><c><v>1</v></c></row>" * 500 + "</sheetData>")
    whole = small.getvalue()
    for damaged in (whole[: len(whole) // 2], whole[:60] + bytes(40) + whole[100:]):  # cut short; bytes overwritten
        with pytest.raises(UnreadableFileError, match=r"broken.xlsx: not a readable .xlsx"):
            read_file(b"PK\x03\x04" + damaged[4:], source="broken.xlsx", sha256="x")


@pytest.mark.parametrize("separator", [",", ";"])
def test_a_quote_that_opens_a_cell_and_never_closes_is_refused_naming_its_line(separator: str) -> None:
    """A stray quote at the start of a cell (a sample name typed with a quote) made polars fail with "invalid
    csv file" in a traceback, and a header line with one made the csv module fail: found by fuzzing the demo
    exports. The file is refused with the line of the quote."""
    s = separator
    rows = [f"sample_id{s}analyte{s}value{s}unit{s}plate_id"] + [f"S{i}{s}IL-6{s}1{s}pg/mL{s}P1" for i in range(6)]
    rows[4] = f'"S3{s}IL-6{s}1{s}pg/mL{s}P1'
    with pytest.raises(UnreadableFileError, match=r"^bad.csv: line 5: a quote \(\"\) opens a cell that no quote"):
        read_file("\n".join(rows).encode(), source="bad.csv", sha256="0" * 64)
    header = [f'"sample_id{s}analyte{s}value{s}unit{s}plate_id', *rows[1:4]]
    with pytest.raises(UnreadableFileError):  # refused with a reason, never a csv.Error
        read_file("\n".join(header).encode(), source="bad.csv", sha256="0" * 64)


def test_an_xponent_section_without_a_sample_column_is_refused() -> None:
    """A section whose header lost its Sample column stopped the reader with '"Location" not found'."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "data" / "luminex_xponent_result.csv").read_text(encoding="utf-8")
    broken = text.replace('"Location","Sample"', '"Location","Sampel"')
    with pytest.raises(UnreadableFileError, match=r"^x.csv: line \d+: the Result section's header has no Sample"):
        read_file(broken.encode(), source="x.csv", sha256="0" * 64)


_DAMAGE = [b"NaN", b"-inf", b"1e400", b"<", b'"', b"", b"-", b"1,2,3", b"NA", b"< LOD", b"OOR <", b"***", b"\x00"]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_damaged_exports_are_read_or_refused_never_a_crash(demo, data) -> None:
    """Exports damaged as files get damaged (a line lost or doubled, a cut, a stray quote or NUL, a cell
    replaced, a BOM, separators changed) are read with their rows accounted for, or refused with a reason
    (UnreadableFileError): never another exception. Fuzzing this way found the unbalanced-quote and the
    missing Sample column failures."""
    wide = Path(__file__).parent.parent / "data" / "olink_npx_manager_wide.csv"  # Olink's wide layout too
    files = {**demo.files, wide.name: wide.read_bytes()}
    name = data.draw(st.sampled_from(sorted(n for n in files if n.endswith(".csv"))))
    body = files[name]
    for _ in range(data.draw(st.integers(1, 3))):
        lines = body.split(b"\n")
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "double", "cut", "cell", "quote", "bom", "tabs"]))
        if op == "drop" and len(lines) > 2:
            del lines[i]
        elif op == "double":
            lines.insert(i, lines[i])
        elif op == "cut":
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: data.draw(st.integers(0, len(lines[-1])))]
        elif op == "cell":
            sep = b";" if lines[i].count(b";") > lines[i].count(b",") else b","
            cells = lines[i].split(sep)
            cells[data.draw(st.integers(0, len(cells) - 1))] = data.draw(st.sampled_from(_DAMAGE))
            lines[i] = sep.join(cells)
        elif op == "quote":
            lines[i] = b'"' + lines[i]
        body = b"\n".join(lines)
        if op == "bom":
            body = b"\xef\xbb\xbf" + body
        elif op == "tabs":
            body = body.replace(b",", b"\t")
    try:
        r = read_file(body, source=name, sha256="0" * 64)
    except UnreadableFileError as exc:
        assert str(exc).startswith(f"{name}: "), exc
        return
    held = r.quarantine.height + (r.samples.height if r.samples is not None else r.rows.height)
    assert r.rows_read == held  # a manifest's rows are its samples
