"""Olink Explore HT / Explore 3072 / Reveal NPX files: roles, internal controls, vendor QC, LOD, products.

The files are written here from Olink's public column specification (OlinkAnalyze's read_NPX documentation
and its LOD tutorial), not copied from anywhere.
"""

from __future__ import annotations

import io
import statistics

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import lod as nclod
from transforms.demo_explore import generate_explore
from transforms.readers import UnreadableFileError, read_file

SHA = "0" * 64


def read(data: bytes, name: str = "f.csv", **options: object):
    r = read_file(data, source=name, sha256=SHA, options=options)
    assert r.rows_read == r.rows.height + r.quarantine.height  # the ledger balances for every file
    return r


def parquet(frame: pl.DataFrame, metadata: dict[str, str]) -> bytes:
    table = frame.to_arrow()
    table = table.replace_schema_metadata(metadata)
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def ht():
    demo = generate_explore(seed=3, n_healthy=300, n_patients=40)
    return demo, read(demo.files["explore_ht_npx.parquet"], "explore_ht_npx.parquet")


def test_explore_ht_parquet_loads_study_rows_controls_and_internal_controls(ht) -> None:
    demo, r = ht
    assert r.layout == "olink_explore"
    assert set(r.rows["platform"]) == {"olink_explore_ht"} and set(r.rows["unit_raw"]) == {"NPX"}
    assert r.info["product"] == "ExploreHT" and r.info["data_file_type"] == "NPX File"
    assert r.info["software_version"] == "2.1.0" and r.info["data_analysis_ref_id"] == "D00012"
    internal = r.rows.filter(pl.col("assay_type") != "assay")
    # internal control assays are kept (loaded, with their counts and no NPX), never held as unusable rows
    assert set(internal["assay_type"]) == {"inc_ctrl", "ext_ctrl", "amp_ctrl"}
    assert internal["value"].null_count() == internal.height and internal["read_count"].null_count() == 0
    assert r.quarantine.filter(pl.col("analyte_raw").str.contains("control")).height == 0
    types = dict(r.rows.filter(pl.col("assay_type") == "assay").group_by("sample_type").len().iter_rows())
    n_plates = demo.truth["n_plates"]
    per_plate = demo.truth["n_assays"]
    assert types["negative_control"] == 3 * n_plates * per_plate
    assert types["control"] == 5 * n_plates * per_plate  # 2 sample controls + 3 plate controls per plate
    assert r.rows.select(pl.col("ext_npx").is_not_null().sum()).item() == sum(types.values())


def test_explore_ht_sample_qc_fail_is_held_with_sample_plate_and_flag_warn_loads_flagged(ht) -> None:
    demo, r = ht
    fail, warn = demo.truth["fail_sample"], demo.truth["warn_sample"]
    held = r.quarantine.filter(pl.col("sample_id") == fail)
    assert held.height == demo.truth["n_assays"] and set(held["check"]) == {"vendor_sample_qc"}
    assert "sample EHT0200000 on plate HT_PLATE_1: Olink SampleQC FAIL" in held["reason"][0]
    assert r.rows.filter((pl.col("sample_id") == fail) & (pl.col("assay_type") == "assay")).height == 0
    warned = r.rows.filter((pl.col("sample_id") == warn) & (pl.col("assay_type") == "assay"))
    assert warned.height == demo.truth["n_assays"]
    assert set(warned["vendor_qc"].cast(pl.String).str.split("; ").explode()) >= {"SampleQC=WARN"}
    flagged = r.rows.filter(pl.col("vendor_qc").cast(pl.String).str.contains("AssayQC=WARN", literal=True))
    assert set(flagged["assay_id"]) == {demo.truth["warn_assay"]} and set(flagged["plate_id"]) == {"HT_PLATE_1"}
    summary = r.extras["assays"].filter(pl.col("assay_qc_warning").is_not_null())
    assert summary["assay_qc_warning"].to_list() == ["IL6 (Explore_HT) on plate HT_PLATE_1"]


def test_hold_vendor_warnings_holds_the_warned_rows_with_a_reason(ht) -> None:
    demo, _ = ht
    r = read(demo.files["explore_ht_npx.parquet"], "explore_ht_npx.parquet", hold_vendor_warnings=True)
    held = r.quarantine.filter(pl.col("check") == "vendor_qc_warning")
    assert set(held["sample_id"]) >= {demo.truth["warn_sample"]}
    reason = (
        "explore_ht_npx.parquet: line {}: sample EHT0200001 on plate HT_PLATE_1, TNF: Olink flagged "
        "SampleQC=WARN; held back because hold_vendor_warnings is on"
    )
    tnf = held.filter((pl.col("sample_id") == demo.truth["warn_sample"]) & (pl.col("analyte_raw") == "TNF"))
    assert tnf["reason"].to_list() == [reason.format(tnf["line_number"][0])]
    assert r.rows.filter(pl.col("vendor_qc").is_not_null()).height == 0


def test_explore_ht_without_lod_column_gets_the_negative_control_lod(ht) -> None:
    _, r = ht
    assert r.info["negative_controls"] == 12 and r.info["lod_source"].startswith("negative controls: 12 pass QC")
    study = r.rows.filter((pl.col("assay_type") == "assay") & (pl.col("sample_type") == "sample"))
    assert study["lod"].null_count() == 0
    below = study.filter(pl.col("censoring") == "below_lod")
    assert below.height > 0 and (below["value"] < below["lod"]).all() and (below["limit_value"] == below["lod"]).all()
    assert study.filter(pl.col("censoring").is_null() & (pl.col("value") < pl.col("lod"))).height == 0


def test_the_parquet_path_reads_typed_columns_like_the_csv_path(ht) -> None:
    demo, r = ht
    frame = pl.read_parquet(io.BytesIO(demo.files["explore_ht_npx.parquet"]))
    text = read(frame.write_csv(separator=";").encode(), "explore_ht_npx.csv")
    keep = [c for c in r.rows.columns if c not in ("source_file", "value_text")]
    assert text.layout == "olink_explore" and text.rows.height == r.rows.height
    # Parquet text stays dictionary-coded (Categorical); the values are those of the CSV path
    assert text.rows.select(keep).equals(
        r.rows.select(keep).with_columns(pl.col(pl.Categorical, pl.Enum).cast(pl.String))
    )
    assert r.rows.schema["sample_id"] == pl.Categorical and text.rows.schema["sample_id"] == pl.String
    assert r.rows["value_text"].null_count() == r.rows.height  # Parquet numbers have no text form


HEADER_3072 = (
    "SampleID;SampleType;WellID;PlateID;DataAnalysisRefID;OlinkID;UniProt;Assay;AssayType;Panel;Block;Count;"
    "ExtNPX;NPX;Normalization;PCNormalizedNPX;AssayQC;SampleQC;ExploreVersion;LOD"
)
EXPLORE_3072 = (
    HEADER_3072
    + """
S001;SAMPLE;A1;P1;D10;OID20001;P05231;IL6;assay;Inflammation;1;1200;-1,2;0,85;Intensity;1,05;PASS;PASS;6.4.0;0,1
S001;SAMPLE;A1;P1;D10;OID30001;P05231;IL6;assay;Oncology;3;1180;-1,3;0,80;Plate control;0,80;PASS;PASS;6.4.0;0,1
S001;SAMPLE;A1;P1;D10;OID20002;P01375;TNF;assay;Inflammation;1;900;-1,6;-0,40;Intensity;-0,2;PASS;PASS;6.4.0;0,2
S001;SAMPLE;A1;P1;D10;OID29001;;Extension control 1;ext_ctrl;Inflammation;1;10000;;;Intensity;;NA;NA;6.4.0;
S002;SAMPLE;A2;P1;D10;OID20001;P05231;IL6;assay;Inflammation;1;800;-1,9;-0,35;Intensity;-0,1;PASS;WARN;6.4.0;0,1
S002;SAMPLE;A2;P1;D10;OID30001;P05231;IL6;assay;Oncology;3;790;-2,0;0,30;Plate control;0,30;PASS;WARN;6.4.0;0,1
S002;SAMPLE;A2;P1;D10;OID20002;P01375;TNF;assay;Inflammation;1;950;-1,5;NA;Intensity;NA;PASS;WARN;6.4.0;0,2
S002;SAMPLE;A2;P1;D10;OID29001;;Extension control 1;ext_ctrl;Inflammation;1;9800;;;Intensity;;NA;NA;6.4.0;
PC1;PLATE_CONTROL;H1;P1;D10;OID20001;P05231;IL6;assay;Inflammation;1;3000;0,1;1,5;Intensity;0,0;PASS;PASS;6.4.0;0,1
NC1;NEGATIVE_CONTROL;H4;P1;D10;OID20001;P05231;IL6;assay;Inflammation;1;12;-6,0;-4,8;Intensity;-4,9;PASS;PASS;6.4.0;0,1
SC1;SAMPLE_CONTROL;H7;P1;D10;OID20001;P05231;IL6;assay;Inflammation;1;2500;0,0;1,2;Intensity;1,3;PASS;FAIL;6.4.0;0,1
"""
)


def test_explore_3072_semicolon_csv_with_lod_column_and_overlapping_assays(golden) -> None:
    r = read(EXPLORE_3072.encode(), "explore3072_npx.csv")
    assert r.layout == "olink_explore" and set(r.rows["platform"]) == {"olink_explore_3072"}
    assert r.info["product"] == "Explore3072" and r.info["lod_source"] == "column LOD"
    # IL6 is measured in two panels: both rows of each sample load (no false duplicate)
    il6 = r.rows.filter((pl.col("analyte_raw") == "IL6") & (pl.col("sample_id") == "S001"))
    assert sorted(il6["panel"]) == ["Inflammation", "Oncology"]
    assert r.rows.filter(pl.col("sample_id") == "NC1")["sample_type"].to_list() == ["negative_control"]
    # an NPX below the LOD keeps its number, flagged with the LOD as its limit
    nc = r.rows.filter(pl.col("sample_id") == "NC1").row(0, named=True)
    assert nc["censoring"] == "below_lod" and nc["value"] == -4.8 and nc["limit_value"] == 0.1
    reasons = dict(r.quarantine.select("check", "reason").iter_rows())
    assert set(reasons) == {"value_reported", "vendor_sample_qc"}
    assert reasons["vendor_sample_qc"].startswith(
        "explore3072_npx.csv: line 12: sample SC1 on plate P1: Olink SampleQC FAIL"
    )
    mixed = r.extras["assays"].filter(pl.col("mixed_normalization").is_not_null())["mixed_normalization"]
    assert mixed.to_list() == []  # each assay (panel x OlinkID) has one normalisation here
    golden("olink_explore_3072", r.rows.drop("source_sha256"))


def test_a_file_mixing_normalisations_flags_the_assay() -> None:
    body = EXPLORE_3072.replace(
        "S002;SAMPLE;A2;P1;D10;OID20001;P05231;IL6;assay;Inflammation;1;800;-1,9;-0,35;Intensity",
        "S002;SAMPLE;A2;P1;D10;OID20001;P05231;IL6;assay;Inflammation;1;800;-1,9;-0,35;Plate control",
    )
    r = read(body.encode(), "mixed.csv")
    mixed = r.extras["assays"].filter(pl.col("mixed_normalization").is_not_null())["mixed_normalization"]
    assert mixed.to_list() == ["IL6 (Inflammation): Intensity and Plate control"]


def _reveal_rows() -> pl.DataFrame:
    rows = []
    for i in range(12):
        for assay, oid, npx in (("IL6", "OID70001", 1.5 + i * 0.1), ("CXCL10", "OID70002", 3.0 - i * 0.05)):
            rows.append(
                (f"R{i:03d}", "SAMPLE", f"A{i + 1}", "RP1", "D77", oid, assay, "assay", "Reveal", 2000 + 10 * i, npx)
            )
        rows.append(
            (
                f"R{i:03d}",
                "SAMPLE",
                f"A{i + 1}",
                "RP1",
                "D77",
                "OID79001",
                "Extension control",
                "ext_ctrl",
                "Reveal",
                9000,
                None,
            )
        )
    columns = [
        "SampleID",
        "SampleType",
        "WellID",
        "PlateID",
        "DataAnalysisRefID",
        "OlinkID",
        "Assay",
        "AssayType",
        "Panel",
        "Count",
        "NPX",
    ]
    return pl.DataFrame(rows, schema=columns, orient="row").with_columns(
        pl.lit("Plate control").alias("Normalization"),
        pl.lit("PASS").alias("SampleQC"),
        pl.lit("PASS").alias("AssayQC"),
    )


def test_a_reveal_parquet_file_is_its_own_platform_without_enough_negative_controls_for_an_lod() -> None:
    meta = {"Product": "Reveal", "DataFileType": "NPX File", "FileVersion": "1.0.0", "ExploreVersion": "1.1.0"}
    r = read(parquet(_reveal_rows(), meta), "reveal.parquet")
    assert set(r.rows["platform"]) == {"olink_reveal"} and r.quarantine.height == 0
    assert r.info["negative_controls"] == 0 and r.info["lod_source"].startswith("none: 0 negative controls pass QC")
    assert r.rows["lod"].null_count() == r.rows.height and r.rows["censoring"].null_count() == r.rows.height


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (
            {"Product": "ExploreHT", "DataFileType": "Counts File"},
            "DataFileType 'Counts File' is not an NPX file.*export the 'NPX File'",
        ),
        (
            {"Product": "Explore9999", "DataFileType": "NPX File"},
            "Olink Product 'Explore9999' is not one refranges reads",
        ),
    ],
)
def test_a_parquet_file_that_is_not_an_npx_file_is_refused_with_what_to_export(meta, match) -> None:
    with pytest.raises(UnreadableFileError, match=match):
        read_file(parquet(_reveal_rows(), meta), source="counts.parquet", sha256=SHA)
    counts_only = _reveal_rows().drop("NPX", "AssayType")
    with pytest.raises(UnreadableFileError, match=r"not an NPX file|not one refranges reads"):
        read_file(parquet(counts_only, meta), source="counts.parquet", sha256=SHA)


def test_target_96_files_still_read_as_before() -> None:
    body = "SampleID,Assay,PlateID,NPX,LOD,QC_Warning,Panel\nS1,IL6,P1,3.2,1.0,Pass,Olink Target 96 Inflammation\n"
    r = read(body.encode(), "target.csv")
    assert r.layout == "olink" and r.rows["platform"].to_list() == ["olink"]


def test_hold_vendor_warnings_holds_target_96_qc_and_assay_warnings_too() -> None:
    """`hold_vendor_warnings = true` held Explore files' WARN rows only: a Target 96 file's QC_Warning and
    Assay_Warning rows (most published cytokine panels) still loaded, flagged, whatever the setting said."""
    body = (
        b"SampleID;PlateID;Assay;Panel;QC_Warning;Assay_Warning;LOD;NPX\n"
        b"S1;P1;IL6;Olink Target 96 Inflammation;Pass;Pass;0,5;3,2\n"
        b"S2;P1;IL6;Olink Target 96 Inflammation;Warning;Pass;0,5;3,4\n"
        b"S3;P1;IL6;Olink Target 96 Inflammation;Pass;Warning;0,5;3,6\n"
    )
    loaded = read(body, "target.csv")
    assert loaded.rows.select("sample_id", "vendor_qc").rows() == [
        ("S1", None), ("S2", "QC_Warning=Warning"), ("S3", "Assay_Warning=Warning"),
    ]  # fmt: skip
    held = read(body, "target.csv", hold_vendor_warnings=True)
    assert held.rows["sample_id"].to_list() == ["S1"]
    assert held.quarantine.select("check", "reason").rows() == [
        ("vendor_qc_warning", "target.csv: line 3: sample S2 on plate P1, IL6: Olink flagged QC_Warning=Warning; "
         "held back because hold_vendor_warnings is on"),
        ("vendor_qc_warning", "target.csv: line 4: sample S3 on plate P1, IL6: Olink flagged Assay_Warning=Warning; "
         "held back because hold_vendor_warnings is on"),
    ]  # fmt: skip


# ---- the negative-control LOD against a straightforward reimplementation of the published rule ------------


def _oracle(rows: list[dict]) -> dict[tuple[str, str, str], float | None]:
    """Olink's rule, one assay and one row at a time, in plain Python (module docstring of transforms.lod)."""
    ncs: dict[str, list[dict]] = {}
    for r in rows:
        if r["role"] == "negative_control" and not r["is_internal"]:
            ncs.setdefault(r["sample_id"], []).append(r)
    passing = [
        s
        for s, rs in ncs.items()
        if not all((x["assay_qc"] or "PASS") == "WARN" for x in rs)
        and not all((x["sample_qc"] or "PASS") != "PASS" for x in rs)
    ]
    out: dict[tuple[str, str, str], float | None] = {}
    for r in rows:
        key = (r["sample_id"], r["assay"], r["plate_id"])
        if len(passing) < nclod.MIN_NEGATIVE_CONTROLS or r["is_internal"] or r["npx"] is None:
            out[key] = None
            continue
        nc = [x for x in rows if x["sample_id"] in passing and x["assay"] == r["assay"] and not x["is_internal"]]
        pcs = [x["pc_npx"] if x["pc_npx"] is not None else x["npx"] for x in nc]
        pcs = [v for v in pcs if v is not None]
        counts = [x["read_count"] for x in nc if x["read_count"] is not None]
        if not counts or max(counts) > 150:
            lod = statistics.median(pcs) + max(0.2, 3 * statistics.stdev(pcs))
            if r["is_intensity"]:
                diffs = [
                    x["pc_npx"] - x["npx"]
                    for x in rows
                    if x["is_intensity"]
                    and x["role"] in ("sample", "bridge")
                    and x["assay"] == r["assay"]
                    and x["plate_id"] == r["plate_id"]
                    and not x["is_internal"]
                    and x["pc_npx"] is not None
                    and x["npx"] is not None
                ]
                lod -= statistics.median(diffs)
        else:
            lod_count = max(statistics.median(counts) + 3 * statistics.stdev(counts), 1.0)
            import math

            lod = r["npx"] + math.log2(lod_count / max(r["read_count"], 1))
        out[key] = lod
    return out


@st.composite
def _nc_data(draw):
    n_nc = draw(st.integers(8, 13))
    assays = ["A", "B"]
    plates = ["P1", "P2"]
    rows = []
    intensity = draw(st.booleans())
    for a in assays:
        low = draw(st.booleans())  # an assay whose negative controls all stay at or below 150 counts
        for i in range(n_nc):
            rows.append(
                {
                    "assay": a,
                    "plate_id": plates[i % 2],
                    "sample_id": f"NC{i}",
                    "role": "negative_control",
                    "npx": draw(st.floats(-6, 0)),
                    "pc_npx": draw(st.floats(-6, 0)),
                    "read_count": draw(st.integers(0, 150 if low else 400)),
                    "is_intensity": intensity,
                    "sample_qc": draw(st.sampled_from(["PASS", "PASS", "WARN", None])),
                    "assay_qc": draw(st.sampled_from(["PASS", "PASS", "WARN"])),
                    "is_internal": False,
                }
            )
        for j in range(6):
            npx = draw(st.floats(-2, 6))
            rows.append(
                {
                    "assay": a,
                    "plate_id": plates[j % 2],
                    "sample_id": f"S{j}",
                    "role": ["sample", "bridge"][j % 2],
                    "npx": npx,
                    "pc_npx": npx + draw(st.floats(-1, 1)),
                    "read_count": draw(st.integers(0, 5000)),
                    "is_intensity": intensity,
                    "sample_qc": "PASS",
                    "assay_qc": "PASS",
                    "is_internal": False,
                }
            )
    return rows


@settings(max_examples=60, deadline=None)
@given(_nc_data())
def test_negative_control_lod_equals_a_plain_reimplementation_of_the_rule(rows) -> None:
    frame = pl.DataFrame(
        rows,
        schema={
            c: t
            for c, t in zip(
                nclod.COLUMNS,
                [
                    pl.String,
                    pl.String,
                    pl.String,
                    pl.String,
                    pl.Float64,
                    pl.Float64,
                    pl.Int64,
                    pl.Boolean,
                    pl.String,
                    pl.String,
                    pl.Boolean,
                ],
                strict=True,
            )
        },
    )
    got, done = nclod.negative_control_lod(frame)
    expected = _oracle(rows)
    assert done["controls"] == len(nclod.passing_negative_controls(frame))
    for r, value in zip(rows, got.to_list(), strict=True):
        want = expected[(r["sample_id"], r["assay"], r["plate_id"])]
        if want is None:
            assert value is None
        else:
            assert value == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_parquet_metadata_of_the_demo_names_the_product() -> None:
    demo = generate_explore(seed=1, n_healthy=12, n_patients=2)
    meta = pq.read_schema(pa.BufferReader(demo.files["explore_ht_npx.parquet"])).metadata
    assert meta[b"Product"] == b"ExploreHT" and meta[b"DataFileType"] == b"NPX File"


def _zipped(members: dict[str, bytes]) -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_an_npx_file_in_olinks_zip_is_read_once_it_matches_its_checksum(ht) -> None:
    """Olink's software delivers an NPX file in a zip, beside a checksum file (MD5_checksum.txt or
    checksum_sha256.txt) and a README: such a zip was refused as "a zip archive ... not an export"."""
    import hashlib

    demo, bare = ht
    npx = demo.files["explore_ht_npx.parquet"]
    sha = _zipped(
        {"explore_ht_npx.parquet": npx, "checksum_sha256.txt": hashlib.sha256(npx).hexdigest(), "README.txt": b"x"}
    )
    r = read(sha, "Q-00001_NPX.zip")
    assert r.layout == "olink_explore" and r.info["product"] == "ExploreHT"
    assert r.rows.drop("source_file").equals(bare.rows.drop("source_file"))
    assert set(r.rows["source_file"]) == {"Q-00001_NPX.zip"}
    csv = EXPLORE_3072.encode()
    md5 = _zipped({"run1/explore3072_npx.csv": csv, "MD5_checksum.txt": f"{hashlib.md5(csv).hexdigest()}  npx.csv\n"})
    assert (
        read(md5, "delivery.zip")
        .rows.drop("source_file")
        .equals(read(csv, "explore3072_npx.csv").rows.drop("source_file"))
    )

    damaged = _zipped({"explore3072_npx.csv": csv + b"\n", "MD5_checksum.txt": hashlib.md5(csv).hexdigest()})
    with pytest.raises(
        UnreadableFileError, match=r"delivery.zip: its data file explore3072_npx.csv differs from the MD5"
    ):
        read(damaged, "delivery.zip")
    two = _zipped({"a.csv": csv, "b.csv": csv, "MD5_checksum.txt": hashlib.md5(csv).hexdigest()})
    with pytest.raises(
        UnreadableFileError, match=r"should hold one data file beside MD5_checksum.txt.*holds 2 \(a.csv"
    ):
        read(two, "delivery.zip")
    blank = _zipped({"explore3072_npx.csv": csv, "checksum_sha256.txt": b"to be filled in"})
    with pytest.raises(UnreadableFileError, match="holds no SHA256 checksum"):
        read(blank, "delivery.zip")
    plain = _zipped({"explore3072_npx.csv": csv})  # any other zip: unpack it, as before
    with pytest.raises(
        UnreadableFileError, match=r"a zip archive of 1 file\(s\) \(explore3072_npx.csv\), not an export"
    ):
        read(plain, "delivery.zip")


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=2_000), st.sampled_from(["MD5_checksum.txt", "checksum_sha256.txt"]))
def test_olinks_zip_gives_back_exactly_the_bytes_its_checksum_names(content: bytes, checksum: str) -> None:
    import hashlib

    from transforms.readers.detect import olink_delivery

    digest = hashlib.md5 if checksum.startswith("MD5") else hashlib.sha256
    packed = _zipped({"data.csv": content, checksum: digest(content).hexdigest().upper()})
    assert olink_delivery(packed, source="z.zip") == content
    changed = _zipped({"data.csv": content + b"!", checksum: digest(content).hexdigest()})
    with pytest.raises(UnreadableFileError, match="differs from the"):
        olink_delivery(changed, source="z.zip")


def test_a_parquet_file_with_numbers_as_text_or_an_all_empty_column_reads_as_the_typed_one(ht) -> None:
    """Parquet files re-saved from R or a spreadsheet store NPX and counts as text ("NA" cells), and an unused
    column as nulls only: NPX as text failed with "cannot cast categorical types to Float64" and an all-empty
    SampleQC with "Series of type Null does not have eq operator", which stopped the run."""
    demo, bare = ht
    table = pq.read_table(io.BytesIO(demo.files["explore_ht_npx.parquet"]))

    def written(changed: pa.Table) -> bytes:
        out = io.BytesIO()
        pq.write_table(changed.replace_schema_metadata(table.schema.metadata), out)
        return out.getvalue()

    def with_column(name: str, values: pa.Array) -> pa.Table:
        return table.set_column(table.schema.get_field_index(name), name, values)

    kept = ["sample_id", "analyte_raw", "value", "read_count", "ext_npx", "pc_normalized_npx"]
    text = table
    for name in ("NPX", "ExtNPX", "PCNormalizedNPX", "Count"):
        cells = pl.Series(text[name].to_pylist()).cast(pl.String).fill_null("NA")
        text = text.set_column(text.schema.get_field_index(name), name, cells.to_arrow())
    as_text = read(written(text), "explore_ht_npx.parquet")
    assert as_text.rows.select(kept).equals(bare.rows.select(kept))
    assert as_text.quarantine.select("check", "line_number").equals(bare.quarantine.select("check", "line_number"))
    empty = read(written(with_column("SampleQC", pa.nulls(table.num_rows))), "explore_ht_npx.parquet")
    assert empty.quarantine.filter(pl.col("check") == "vendor_sample_qc").height == 0  # no verdict: none held
    assert empty.rows.height == bare.rows.height + bare.quarantine.height


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=5))
def test_a_damaged_parquet_file_is_read_or_refused_never_a_crash(flips) -> None:
    """Bytes of an Explore HT Parquet file changed (a damaged download): polars panicked ("assertion failed:
    i < self.len()", a PanicException, which is no Exception and passed every handler) and the run stopped.
    Found by fuzzing; the file is read, or refused with a reason."""
    data = bytearray(_small_ht())
    for where, value in flips:
        data[int(where * len(data))] = value
    try:
        r = read_file(bytes(data), source="ht.parquet", sha256="0" * 64)
    except UnreadableFileError as exc:
        assert str(exc).startswith("ht.parquet: ")
        return
    assert r.rows_read == r.rows.height + r.quarantine.height


_SMALL_HT: list[bytes] = []


def _small_ht() -> bytes:
    if not _SMALL_HT:
        _SMALL_HT.append(generate_explore(seed=3, n_healthy=40, n_patients=5).files["explore_ht_npx.parquet"])
    return _SMALL_HT[0]


def test_a_count_that_is_no_finite_number_is_no_count() -> None:
    """A Count cell of "1e999" (inf) failed the whole file: "conversion from f64 to i64 failed"."""
    frame = pl.from_arrow(pq.read_table(io.BytesIO(_small_ht())))
    assert isinstance(frame, pl.DataFrame)
    text = frame.head(400).with_columns(pl.col("Count").cast(pl.String)).with_row_index()
    text = text.with_columns(pl.when(pl.col("index") == 30).then(pl.lit("1e999")).otherwise("Count").alias("Count"))
    r = read(text.drop("index").write_csv(separator=";").encode(), "ht.csv")
    assert r.rows.filter(pl.col("line_number") == 32)["read_count"].to_list() == [None]  # line 32: index 30
