from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import schema
from transforms.normalise import (
    combine_replicates,
    convert_units,
    correct_plates,
    dictionary_lookup,
    fold_name,
    groups_of,
    ids_alike,
    link_samples,
    resolve_analytes,
    to_log,
    unit_factor,
)
from warehouse.lookups import read_analyte_dictionary


@pytest.fixture(scope="module")
def lookup() -> pl.DataFrame:
    return dictionary_lookup(read_analyte_dictionary()[0])


def raw(**cols) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    base = {"source_file": ["f.csv"] * n, "line_number": list(range(2, n + 2))}
    return schema.conform(pl.DataFrame(base | cols), schema.MEASUREMENT)


@pytest.mark.parametrize(
    ("names", "hgnc"),
    [
        (["TNF-alpha", "TNFa", "TNF-α", "TNF", "TNF alpha"], "TNF"),
        (["IL-1b", "IL1B", "IL-1β", "IL-1 beta"], "IL1B"),
        (["IL-8", "IL8", "CXCL8"], "CXCL8"),
        (["IFN-γ", "IFN-gamma", "IFNG", "Interferon gamma"], "IFNG"),
        (["IL-6 (Human)", "IL-6", "il6"], "IL6"),
        (["IL-12p70"], "IL12A"),
        (["MCP-1", "CCL2"], "CCL2"),
    ],
)
def test_vendor_names_land_on_one_hgnc_symbol(lookup: pl.DataFrame, names: list[str], hgnc: str) -> None:
    rows = raw(analyte_raw=names, sample_id=["S"] * len(names))
    known, held = resolve_analytes(rows, lookup)
    assert held.height == 0
    assert set(known["analyte"]) == {hgnc}


def test_unknown_analyte_is_held_with_closest_names(lookup: pl.DataFrame) -> None:
    rows = raw(analyte_raw=["IL-6", "IL-66", "Zorbin"], sample_id=["S1", "S2", "S3"])
    known, held = resolve_analytes(rows, lookup)
    assert known["analyte"].to_list() == ["IL6"]
    reasons = held.sort("line_number")["reason"].to_list()
    assert reasons[0].startswith("f.csv: line 3: analyte 'IL-66' is not in the analyte dictionary (closest: ")
    assert "IL6" in reasons[0]
    assert "(closest: none)" in reasons[1]


def test_an_unknown_olink_assay_is_identified_by_the_uniprot_accession_its_export_gives(lookup: pl.DataFrame) -> None:
    """An Explore HT panel holds some 5,400 assays, the curated dictionary about 130 markers: every other assay's
    rows were held back as 'not in the analyte dictionary' unless the lab wrote thousands of dictionary rows.
    Olink's files give each assay's UniProt accession: a known accession is its marker (a new name for it), an
    unknown one an analyte under Olink's own name; a name without one, or with two, or with no accession
    (`X00001`) is held as before, and the reason says which."""
    named = ["ADM", "ADM", "Interleukin-6 receptor X", "IL6new", "Zorbin", "TwoIDs", "TwoIDs", "IL12", "NoID"]
    rows = raw(
        analyte_raw=[*named, "NAid"],
        uniprot_raw=["P35318", "P35318", None, "P05231", "X00001", "P01375", "P01579", "P29459_P29460", None, " NA "],
        sample_id=["S1", "S2", "S1", "S1", "S1", "S1", "S2", "S1", "S1", "S1"],
        platform=["olink_explore_ht"] * 10,
        panel=["Explore_HT"] * 10,
    )
    known, held = resolve_analytes(rows, lookup)
    got = known.select("analyte_raw", "analyte", "uniprot", "analyte_label").unique(maintain_order=True).rows()
    assert got == [
        ("ADM", "ADM", "P35318", "ADM"),  # not in the dictionary: Olink's name and accession
        ("IL6new", "IL6", "P05231", "IL-6"),  # IL-6's accession: the dictionary's IL6
        ("IL12", "IL12", "P29459_P29460", "IL12"),  # a complex, as Olink writes its two accessions
    ]
    reasons = dict(zip(held["analyte_raw"], held["reason"], strict=False))
    assert set(reasons) == {"Interleukin-6 receptor X", "Zorbin", "TwoIDs", "NoID", "NAid"}
    assert reasons["Zorbin"].endswith(
        "(closest: none); its UniProt accession 'X00001' is not one; add it to transforms/analytes.csv if it is a new "
        "name for a known marker"
    )
    assert "the export gives it several UniProt accessions (P01375, P01579)" in reasons["TwoIDs"]
    assert "(closest: none); add it to" in reasons["NoID"] and "(closest: ADA, TNF); add it to" in reasons["NAid"]
    assert known.height + held.height == rows.height


def test_the_normalisation_plan_resolves_names_as_the_parts_do(lookup: pl.DataFrame) -> None:
    """A name identified by its accession shares its marker's unit of the plan (normalisation steps work
    within one analyte of a platform and panel, so all of an analyte's names must be in one part)."""
    from transforms.partitions import plan_normalise

    names = pl.DataFrame(
        {
            "platform": ["olink"] * 4,
            "panel": ["P"] * 4,
            "analyte_raw": ["IL-6", "IL6new", "ADM", "TNF"],
            "uniprot_raw": ["P05231", "P05231", "P35318", "P01375"],
            "n": [1_000, 1_000, 1_000, 1_000],
        }
    )
    plan = plan_normalise(names, lookup, max_rows=2_000)
    part = dict(zip(plan["analyte_raw"], plan["part"], strict=True))
    assert part["IL-6"] == part["IL6new"] and len(set(part.values())) == 3  # IL6's 2,000 rows fill a part


def test_dictionary_has_no_ambiguous_alias_and_folds_greek() -> None:
    assert fold_name("TNF-α") == fold_name("TNF alpha") == "tnfalpha"
    frame = read_analyte_dictionary()[0]
    dictionary_lookup(frame)  # raises on clashes
    clash = pl.concat([frame, frame.head(1).with_columns(pl.lit("XYZ").alias("hgnc"))])
    with pytest.raises(ValueError, match="ambiguous"):
        dictionary_lookup(clash)


@pytest.mark.parametrize(
    ("unit", "factor"),
    [("pg/mL", 1.0), ("ng/L", 1.0), ("ng/mL", 1000.0), ("fg/mL", 0.001), ("µg/L", 1000.0), ("ug/L", 1000.0)],
)
def test_mass_units_convert_to_pg_per_ml(unit: str, factor: float) -> None:
    assert unit_factor(unit) == (factor, "mass")


# Every lab spelling of a concentration, written in the case pint reads as meant
LAB_UNITS = [
    f"{prefix}{base}/{volume}L"
    for prefix in ["", "f", "p", "n", "u", "m"]
    for base in ["g", "mol"]
    for volume in ["", "d", "m", "u"]
] + [f"{prefix}M" for prefix in ["", "f", "p", "n", "u", "m"]]


@settings(max_examples=300, deadline=None)
@given(unit=st.sampled_from(LAB_UNITS), flips=st.lists(st.booleans(), min_size=8, max_size=8), spaced=st.booleans())
def test_a_lab_unit_means_the_same_in_any_case(unit: str, flips: list[bool], spaced: bool) -> None:
    written = "".join(c.swapcase() if flip else c for c, flip in zip(unit, flips + [False] * len(unit), strict=False))
    if spaced:
        written = written.replace("/", " per ")
    assert unit_factor(written) == unit_factor(unit)
    assert unit_factor(unit)[0] is not None


@pytest.mark.parametrize(
    ("unit", "factor", "kind"),
    [
        ("pg/ML", 1.0, "mass"),  # pint as written: a picogram per megalitre, 1e-9 pg/mL
        ("Pg/mL", 1.0, "mass"),  # a petagram per millilitre, 1e27 pg/mL
        ("Mg/L", 1e6, "mass"),  # a megagram per litre
        ("PG/ML", 1.0, "mass"),
        ("NG/ML", 1000.0, "mass"),
        ("MG/DL", 1e7, "mass"),
        ("PMOL/L", 1.0, "molar"),
        ("PM", 1.0, "molar"),  # picomolar, not a picometre
        ("NM", 1000.0, "molar"),
    ],
)
def test_units_as_a_lab_writes_them_whatever_the_case(unit: str, factor: float, kind: str) -> None:
    assert unit_factor(unit) == (factor, kind)


@pytest.mark.parametrize("unit", ["Tg/L", "Eg/mL", "fg/kL", "pg/ML3"])
def test_a_unit_no_immunoassay_reports_is_held_with_what_to_write(unit: str) -> None:
    factor, why = unit_factor(unit)
    assert factor is None
    assert unit in why


def test_an_upper_case_unit_is_converted_not_scaled_by_a_prefix(lookup: pl.DataFrame) -> None:
    rows = raw(analyte_raw=["IL-6", "IL-6"], sample_id=["S1", "S2"], unit_raw=["pg/ML", "NG/ML"], value=[2.5, 1.5])
    named, _ = resolve_analytes(rows, lookup)
    good, held = convert_units(named)
    assert held.height == 0
    assert dict(zip(good["sample_id"], good["value"], strict=True)) == {"S1": 2.5, "S2": 1500.0}
    assert good["unit"].unique().to_list() == ["pg/mL"]


def test_molar_units_use_molecular_weight_and_unknown_units_are_held(lookup: pl.DataFrame) -> None:
    rows = raw(
        analyte_raw=["IL-6", "IL-6", "IL-6", "IL-6"],
        sample_id=["S1", "S2", "S3", "S4"],
        unit_raw=["pmol/L", "ng/mL", "U/mL", "NPX"],
        value=[2.0, 1.5, 3.0, 4.2],
    )
    named, _ = resolve_analytes(rows, lookup)
    good, held = convert_units(named)
    got = dict(zip(good["sample_id"], zip(good["value"], good["unit"], strict=True), strict=True))
    assert got["S1"] == (pytest.approx(2.0 * 21.0), "pg/mL")  # 2 pmol/L x 21 kDa = 42 pg/mL
    assert got["S2"] == (pytest.approx(1500.0), "pg/mL")
    assert got["S4"] == (4.2, "NPX")
    assert held["line_number"].to_list() == [4]
    assert "unit 'U/mL' is not a mass or molar concentration for IL6" in held["reason"][0]


def _plate_frame(values: dict[tuple[str, str], float]) -> pl.DataFrame:
    rows = [
        {
            "platform": "msd",
            "panel": "MSD",
            "analyte": "IL6",
            "plate_id": p,
            "sample_id": s,
            "sample_type": "control" if s.startswith("C") else "sample",
            "value": v,
            "unit": "pg/mL",
            "limit_value": None,
            "lod": None,
            "censoring": None,
        }
        for (p, s), v in values.items()
    ]
    return to_log(
        pl.DataFrame(rows, schema_overrides={"limit_value": pl.Float64, "lod": pl.Float64, "censoring": pl.String})
    )


def test_plate_control_correction_removes_a_multiplicative_plate_effect() -> None:
    truth = {"S1": 2.0, "S2": 5.0, "C1": 10.0, "C2": 40.0}
    vals = {("P1", s): v for s, v in truth.items()} | {("P2", s + "b"): v * 1.8 for s, v in truth.items()}
    vals |= {("P3", s + "c"): v / 1.3 for s, v in truth.items()}
    frame = _plate_frame({(p, s.rstrip("bc") if s.startswith("C") else s): v for (p, s), v in vals.items()})
    out = correct_plates(frame).with_columns(pl.col("log_value").exp().alias("corrected"))
    samples = out.filter(pl.col("sample_type") == "sample").sort("plate_id", "sample_id")
    # the median control offset is removed: P1 is the middle plate, so all plates land on P1's scale
    assert samples["corrected"].to_list() == pytest.approx([2.0, 5.0, 2.0, 5.0, 2.0, 5.0])
    assert set(out["batch_method"]) == {"plate_control"}


@settings(max_examples=30, deadline=None)
@given(st.floats(-3, 3), st.permutations(range(6)))
def test_plate_correction_is_order_invariant_and_removes_any_constant(shift: float, order: list[int]) -> None:
    base = {
        ("P1", "C1"): 10.0,
        ("P1", "S1"): 3.0,
        ("P2", "C1"): 10.0,
        ("P2", "S2"): 4.0,
        ("P3", "C1"): 10.0,
        ("P3", "S3"): 5.0,
    }
    shifted = {k: (v * math.exp(shift) if k[0] == "P2" else v) for k, v in base.items()}
    frame = _plate_frame(shifted)
    a = correct_plates(frame).sort("sample_id", "plate_id")
    b = correct_plates(frame[order]).sort("sample_id", "plate_id")
    assert a["log_value"].to_list() == pytest.approx(b["log_value"].to_list())
    ref = correct_plates(_plate_frame(base)).sort("sample_id", "plate_id")
    assert a["log_value"].to_list() == pytest.approx(ref["log_value"].to_list(), abs=1e-9)


def test_replicates_average_on_log_scale_and_censoring_needs_half() -> None:
    frame = pl.DataFrame(
        {
            "sample_id": ["S1", "S1", "S2", "S2", "S3", "S3"],
            "analyte": ["IL6"] * 6,
            "uniprot": ["P05231"] * 6,
            "analyte_label": ["IL-6"] * 6,
            "platform": ["msd"] * 6,
            "panel": ["MSD"] * 6,
            "unit": ["pg/mL"] * 6,
            "value": [2.0, 8.0, 0.05, 3.0, 0.05, 0.04],
            "censoring": [None, None, "below_lod", None, "below_lod", "below_lod"],
            "limit_value": [None, None, 0.1, None, 0.1, 0.12],
            "lod": [0.1] * 6,
            "plate_id": ["P1"] * 6,
            "batch": ["P1"] * 6,
            "batch_method": ["plate_control"] * 6,
            "source_file": ["f"] * 6,
            "sample_type": ["sample"] * 6,
        }
    )
    out = combine_replicates(to_log(frame)).sort("sample_id")
    assert out["value"][0] == pytest.approx(4.0)  # geometric mean of 2 and 8
    assert out["replicate_cv"][0] == pytest.approx(np.std([2.0, 8.0], ddof=1) / 5.0)
    assert out.select("censoring", "limit_value").rows()[1:] == [
        ("below_lod", pytest.approx(0.1)),
        ("below_lod", pytest.approx(0.12)),
    ]
    assert out["n_replicates"].to_list() == [2, 2, 2]


WELL = st.tuples(
    st.sampled_from(["S1", "S2", "S3", "S4"]),
    st.sampled_from(["IL6", "TNF"]),
    st.sampled_from(["pg/mL", "NPX"]),
    st.floats(-3, 5),
    st.sampled_from([None, None, "below_lod", "below_lloq", "above_uloq", "extrapolated"]),
    st.sampled_from([None, 0.5, 2.0]),
    st.sampled_from([None, "P1", "P2"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(WELL, max_size=25))
def test_single_wells_skip_the_group_by_and_get_what_the_group_by_gives(wells: list[tuple]) -> None:
    frame = to_log(
        pl.DataFrame(
            wells,
            schema={
                "sample_id": pl.String,
                "analyte": pl.String,
                "unit": pl.String,
                "value": pl.Float64,
                "censoring": pl.String,
                "limit_value": pl.Float64,
                "plate_id": pl.String,
            },
            orient="row",
        ).with_columns(
            pl.lit("P05231").alias("uniprot"),
            pl.col("analyte").alias("analyte_label"),
            pl.lit("msd").alias("platform"),
            pl.lit("MSD").alias("panel"),
            pl.lit(0.1).alias("lod"),
            pl.col("plate_id").alias("batch"),
            pl.lit("plate_control").alias("batch_method"),
            pl.lit("f.csv").alias("source_file"),
            pl.lit("sample").alias("sample_type"),
        )
    )
    keys = ["sample_id", "analyte", "unit"]
    fast = combine_replicates(frame).sort(keys)
    full = combine_replicates(frame, one_row_shortcut=False).sort(keys)
    assert fast.equals(full)


@given(
    st.lists(
        st.tuples(st.sampled_from(["olink", "msd", None]), st.sampled_from(["p1", "p2"]), st.floats(-5, 5)),
        max_size=30,
    ),
    st.booleans(),
)
def test_groups_of_gives_what_the_group_by_gives_with_or_without_a_copy(rows: list[tuple], one: bool) -> None:
    frame = pl.DataFrame(rows, schema={"platform": pl.String, "panel": pl.String, "value": pl.Float64}, orient="row")
    if one:  # the fast path: every row in one group
        frame = frame.with_columns(pl.lit("olink").alias("platform"), pl.lit("p1").alias("panel"))
    keys = ["platform", "panel"]
    got = list(groups_of(frame, keys))
    want = list(frame.group_by(keys, maintain_order=True))
    assert [k for k, _ in got] == [k for k, _ in want]
    assert all(g.equals(w) for (_, g), (_, w) in zip(got, want, strict=True))


def test_an_unknown_sample_that_a_manifest_lists_with_its_leading_zeros_is_named_in_the_reason() -> None:
    """An export saved from a spreadsheet loses the leading zeros of numeric-looking ids (0100042 becomes
    100042), and a retyped id its letter case: its rows wait for a manifest that never comes. The reason
    names the manifest's id that differs only so; the rows are never linked to it by guess."""
    rows = raw(
        sample_id=["100042", "s-7", "0100042", "X9", "12", "CAL1"],
        sample_type=["sample", "sample", "sample", "sample", "sample", "calibrator"],
        analyte_raw=["IL-6"] * 6,
        value=[1.0] * 6,
        unit_raw=["pg/mL"] * 6,
    )
    samples = pl.DataFrame(
        {
            "sample_id": ["0100042", "S-7", "012", "0012", "Z1"],
            "cohort": ["healthy"] * 5,
            "matrix": ["serum"] * 5,
            "sex": ["F"] * 5,
            "age": [40.0] * 5,
        }
    )
    linked, held = link_samples(rows, samples)
    assert sorted(linked.filter(pl.col("sample_type") == "sample")["sample_id"].to_list()) == ["0100042"]
    reasons = dict(zip(held["sample_id"].to_list(), held["reason"].to_list(), strict=True))
    assert reasons["100042"] == (
        "f.csv: line 2: sample 100042 is in no manifest, but a manifest lists 0100042 (leading zeros or letter "
        "case lost, as a spreadsheet can do?); correct the id in the export or the manifest (the rows load on "
        "the next run)"
    )
    assert "but a manifest lists S-7 " in reasons["s-7"]
    # alike to no listed id, or to two (012 and 0012): the plain reason, naming none
    for alone in ("X9", "12"):
        assert reasons[alone].endswith(
            f"sample {alone} is in no manifest; send a manifest that lists it (the rows load on the next run)"
        )
    assert held["line_number"].to_list() == [2, 3, 5, 6]  # in the rows' order
    # a sample whose own manifest row is held back is told that, before any likeness
    why = pl.DataFrame(
        {"sample_id": ["100042"], "reason": ["m.csv: line 9: collection_date '1/2/26' is not an ISO date"]}
    )
    _, held = link_samples(rows, samples, why)
    assert held["reason"][0] == (
        "f.csv: line 2: sample 100042 is in a manifest, but its row there is held back (m.csv: line 9: "
        "collection_date '1/2/26' is not an ISO date); correct that row (the rows load on the next run)"
    )
    assert held["reason"][1:].to_list() == list(reasons.values())[1:]


@given(
    st.lists(st.text("0aAbB1-", max_size=4), max_size=8),
    st.lists(st.text("0aAbB1-", max_size=4), max_size=8),
)
def test_ids_alike_names_the_one_listed_id_that_differs_only_by_leading_zeros_or_case(
    ids: list[str], among: list[str]
) -> None:
    """Oracle: a plain reimplementation of the rule on Python strings."""

    def fold(i: str) -> str:
        return i.lstrip("0").lower()

    expected = {}
    for i in ids:
        candidates = {a for a in among if fold(a) == fold(i)}
        if i not in among and len(candidates) == 1:
            expected[i] = candidates.pop()
    assert ids_alike(ids, among) == expected


def test_an_empty_frame_normalises_to_an_empty_table(lookup: pl.DataFrame) -> None:
    from transforms.normalise import normalise

    samples = schema.empty(schema.SAMPLE).drop("subject_key")
    rows = raw(
        analyte_raw=["IL-6"],
        sample_id=["NOT-IN-MANIFEST"],
        unit_raw=["pg/mL"],
        value=[1.0],
        sample_type=["sample"],
        platform=["tidy"],
        plate_id=["P1"],
    )
    out, held = normalise(rows, samples, lookup)
    assert out.height == 0 and list(out.schema) == list(schema.NORMALISED)
    assert held["check"].to_list() == ["sample_in_manifest"]


# names as they appear in Olink Target 96 Inflammation, MSD V-PLEX and Luminex cytokine panel exports
PANEL_NAMES = [
    "IL8",
    "VEGFA",
    "CD8A",
    "MCP-3",
    "GDNF",
    "CDCP1",
    "CD244",
    "IL7",
    "OPG",
    "LAP TGF-beta-1",
    "uPA",
    "IL6",
    "IL-17C",
    "MCP-1",
    "IL-17A",
    "CXCL11",
    "AXIN1",
    "TRAIL",
    "IL-20RA",
    "CXCL9",
    "CST5",
    "IL-2RB",
    "IL-1 alpha",
    "OSM",
    "IL2",
    "CXCL1",
    "TSLP",
    "CCL4",
    "CD6",
    "SCF",
    "IL18",
    "SLAMF1",
    "TGF-alpha",
    "MCP-4",
    "CCL11",
    "TNFSF14",
    "FGF-23",
    "IL-10RA",
    "FGF-5",
    "MMP-1",
    "LIF-R",
    "FGF-21",
    "CCL19",
    "IL-15RA",
    "IL-10RB",
    "IL-22 RA1",
    "IL-18R1",
    "PD-L1",
    "Beta-NGF",
    "CXCL5",
    "TRANCE",
    "HGF",
    "IL-12B",
    "IL-24",
    "IL13",
    "ARTN",
    "MMP-10",
    "IL10",
    "TNF",
    "CCL23",
    "CD5",
    "CCL3",
    "Flt3L",
    "CXCL6",
    "CXCL10",
    "4E-BP1",
    "IL-20",
    "SIRT2",
    "CCL28",
    "DNER",
    "EN-RAGE",
    "CD40",
    "IL33",
    "IFN-gamma",
    "FGF-19",
    "IL4",
    "LIF",
    "NRTN",
    "MCP-2",
    "CASP-8",
    "CCL25",
    "CX3CL1",
    "TNFRSF9",
    "NT-3",
    "TWEAK",
    "CCL20",
    "ST1A1",
    "STAMBP",
    "IL5",
    "ADA",
    "TNFB",
    "CSF-1",
    "IFN-γ",
    "IL-1β",
    "IL-12p70",
    "TNF-α",
    "IL-12/IL-23p40",
    "TNF-β",
    "Eotaxin-3",
    "MDC",
    "TARC",
    "MIP-1α",
    "RANTES",
    "FGF-basic",
    "SDF-1a",
    "MIF",
    "CTACK",
    "PDGF-BB",
    "IL-9",
    "IL-16",
    "IL-21",
    "IL-22",
    "IL-23",
    "IL-27",
    "IL-31",
    "IL-3",
    "IL-29",
    "G-CSF",
    "GM-CSF",
    "IP-10",
    "MIG",
    "IL-1ra",
    "IL-2Ra",
    "EGF",
]


def test_the_dictionary_covers_the_common_panels(lookup: pl.DataFrame) -> None:
    rows = raw(analyte_raw=PANEL_NAMES, sample_id=["S"] * len(PANEL_NAMES))
    known, held = resolve_analytes(rows, lookup)
    assert held["analyte_raw"].to_list() == []
    got = dict(zip(known["analyte_raw"], known["analyte"], strict=True))
    assert {got[n] for n in ("IL8", "IFN-gamma", "IFN-γ", "TNF-α", "TNFB", "IL-12/IL-23p40", "LAP TGF-beta-1")} == {
        "CXCL8",
        "IFNG",
        "TNF",
        "LTA",
        "IL12B",
        "TGFB1",
    }
    assert known["uniprot"].null_count() == 0
