"""Olink's NGS products (Explore 3072, Explore HT, Reveal): long NPX files as Olink's software writes them,
Parquet with key-value metadata or CSV (``;`` with decimal commas, or ``,``).

One row per sample x assay, internal control assays included. What each column means and how it is used is
in docs/input-formats.md; in short:

* ``SampleType`` gives the role: SAMPLE is a study sample, SAMPLE_CONTROL / PLATE_CONTROL are controls,
  NEGATIVE_CONTROL is a negative control (``negative_control``: the LOD comes from them, never a study row);
* ``AssayType`` other than ``assay`` (ext_ctrl, inc_ctrl, amp_ctrl) is an internal control: its rows are
  kept (loaded into the raw store for QC) with ``assay_type`` set, never analytes, never unusable rows;
* ``SampleQC`` FAIL rows are held back with a reason; WARN (and ``AssayQC`` WARN) load with ``vendor_qc``,
  or are held back when the caller asks (``hold_warnings``);
* NPX is the value; ``ExtNPX``, ``PCNormalizedNPX``, ``Count``, ``Normalization``, ``Block`` and ``OlinkID``
  are kept beside it. An LOD column is read when present, else the LOD comes from the negative controls
  (:mod:`transforms.lod`).

Pure: the caller hands in a frame (typed from Parquet, or text from a CSV) and the file's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from transforms import lod as nclod
from transforms.readers.common import finish, value_checks
from transforms.readers.olink import CONTROL_PATTERN, plates_per_sample, sample_on_plate, warning_held
from transforms.text import UnreadableFileError, in_chunks_of, uses_decimal_comma, with_numbers

#: Parquet metadata ``Product`` -> platform. A reference group never mixes products: the platform keeps them apart.
PRODUCTS = {
    "ExploreHT": "olink_explore_ht",
    "Explore3072": "olink_explore_3072",
    "Explore384": "olink_explore_384",
    "Reveal": "olink_reveal",
}
#: ``DataFileType`` values of an NPX file (anything else, such as a counts file, is refused).
NPX_FILE_TYPES = {
    "NPX File",
    "Extended NPX File",
    "CLI Data Export File",
    "Internal CLI Data Export File",
    "R Package Export File",
}
#: Metadata keys recorded per file (the rest is kept as JSON).
METADATA_KEYS = ("Product", "DataFileType", "FileVersion", "ExploreVersion", "ProjectName", "SampleMatrix")
#: LOD columns in order of preference: Olink's own, then those OlinkAnalyze adds.
LOD_COLUMNS = ("LOD", "NCLOD", "PlateLOD", "MaxLOD", "FixedLOD", "LODNPX", "PCNormalizedLOD")
#: Columns that hold numbers: a Parquet file that stores one as text (re-saved from R or a spreadsheet, with
#: "NA" cells) has it read as text and parsed by the CSV rules, never dictionary-coded.
NUMBER_COLUMNS = ("NPX", "ExtNPX", "PCNormalizedNPX", "Count", *LOD_COLUMNS)
#: Explore HT sample-handling (OSI) columns, kept per sample.
HANDLING_COLUMNS = ("OSITimeToCentrifugation", "OSIPreparationTemperature", "OSISummary", "OSICategory")
#: Every column the reader reads (any case); a Parquet file is read for these alone.
COLUMNS = (
    "SampleID",
    "SampleType",
    "WellID",
    "PlateID",
    "DataAnalysisRefID",
    "OlinkID",
    "Assay",
    "UniProt",
    "AssayType",
    "Panel",
    "Block",
    "Count",
    "ExtNPX",
    "NPX",
    "Normalization",
    "PCNormalizedNPX",
    "AssayQC",
    "SampleQC",
    "ExploreVersion",
    *LOD_COLUMNS,
    *HANDLING_COLUMNS,
)
#: Header fields (lower case) that tell an NGS-product file from a Target 48 / 96 file.
SIGNATURE = {"sampleid", "assay", "npx", "assaytype"}

CONTROL_TYPES = ["SAMPLE_CONTROL", "CONTROL", "PLATE_CONTROL", "INTERPLATE_CONTROL"]
NEGATIVE_TYPES = ["NEGATIVE_CONTROL"]
STUDY_TYPES = ["SAMPLE"]
PASS = ["PASS", "NA"]  # QC cells that are no warning (internal controls carry NA)


ASSAY_TYPES = ["assay", "ext_ctrl", "inc_ctrl", "amp_ctrl"]
#: sample_type of this reader's rows, as an Enum: set by comparisons, no text written per row
ROLE = pl.Enum(["sample", "bridge", "control", "negative_control", "unknown"])
QC_VALUES = ["PASS", "WARN", "FAIL", "NA"]


def any_case(*values: str) -> list[str]:
    """``values`` as Olink's software and spreadsheets write them (upper, lower, title case): cells are
    compared with these instead of being case-folded, which would rewrite every row's text."""
    return sorted({w for v in values for w in (v.upper(), v.lower(), v.title(), v.capitalize())})


@dataclass(frozen=True)
class ExploreRead:
    """What the reader made of one file."""

    rows: pl.DataFrame  # schema.MEASUREMENT
    quarantine: pl.DataFrame  # schema.QUARANTINE
    info: dict[str, object] = field(default_factory=dict)  # per-file facts for the ledger (FILE_INFO keys)
    assays: pl.DataFrame | None = None  # one row per assay: what the olink_assays suite checks
    handling: pl.DataFrame | None = None  # one row per sample x plate with the OSI columns, when present


def product_of(metadata: dict[str, str], panels: list[str], *, source: str) -> tuple[str, str]:
    """(Olink product name, platform) from the Parquet metadata, else from the panel names. Raises
    UnreadableFileError for a Parquet file that says it is not an NPX file or names an unknown product."""
    kind = metadata.get("DataFileType")
    if kind is not None and kind not in NPX_FILE_TYPES:
        msg = (
            f"{source}: Olink DataFileType '{kind}' is not an NPX file (it carries no NPX values); export the "
            "'NPX File' (or 'Extended NPX File') from Olink's software and send that"
        )
        raise UnreadableFileError(msg)
    product = metadata.get("Product")
    if product is not None:
        if product not in PRODUCTS:
            msg = f"{source}: Olink Product '{product}' is not one refranges reads ({', '.join(PRODUCTS)})"
            raise UnreadableFileError(msg)
        return product, PRODUCTS[product]
    text = " ".join(panels).lower()
    if "reveal" in text:
        return "Reveal", PRODUCTS["Reveal"]
    if "explore_ht" in text or "explore ht" in text or "exploreht" in text:
        return "ExploreHT", PRODUCTS["ExploreHT"]
    return "Explore3072", PRODUCTS["Explore3072"]


def _lookup(frame: pl.DataFrame) -> dict[str, str]:
    return {c.lower(): c for c in frame.columns}


def _text(frame: pl.DataFrame, name: str | None) -> pl.Expr:
    """A column as text with empty cells null, or typed nulls when the file lacks it."""
    if name is None:
        return pl.lit(None, dtype=pl.String)
    if frame.schema[name] == pl.Categorical:  # from Parquet: kept dictionary-coded (see conform)
        if frame.get_column(name).eq("").any():  # a comparison of codes: cheap
            return pl.when(pl.col(name) == "").then(None).otherwise(pl.col(name))
        return pl.col(name)
    if frame.schema[name] != pl.String:
        return pl.col(name).cast(pl.String)
    if not frame.get_column(name).eq("").any():
        return pl.col(name)
    return pl.when(pl.col(name) == "").then(None).otherwise(pl.col(name))


def _canonical(frame: pl.DataFrame, name: str | None, known: list[str], *, upper: bool) -> pl.Expr:
    """A coded text column (SampleType, AssayType, QC flags) in the case Olink writes it: as it is when every
    cell already is one of ``known`` (one cheap set test), else case-folded (which rewrites every cell)."""
    cells = _text(frame, name)
    if name is None:
        return cells
    values = frame.get_column(name)  # Categorical from Parquet: these tests compare codes
    if (values.is_in(known) | values.is_null() | (values == "")).all():
        return cells
    cells = cells.cast(pl.String)
    return cells.str.to_uppercase() if upper else cells.str.to_lowercase()


def _number(frame: pl.DataFrame, name: str | None, *, decimal_comma: bool) -> pl.Expr:
    """A numeric column as Float64 (NaN and text such as 'NA' as null), or nulls when the file lacks it."""
    if name is None:
        return pl.lit(None, dtype=pl.Float64)
    dtype = frame.schema[name]
    if dtype.is_numeric():
        return pl.col(name).cast(pl.Float64).fill_nan(None)
    cells = pl.col(name).cast(pl.String).str.strip_chars()
    if decimal_comma:
        cells = cells.str.replace(",", ".", literal=True)
    return cells.cast(pl.Float64, strict=False).fill_nan(None)


def _count(frame: pl.DataFrame, name: str | None, *, decimal_comma: bool) -> pl.Expr:
    """Counts as Int64: an integer column as it is, other forms through :func:`_number` and rounding."""
    if name is not None and frame.schema[name].is_integer():
        return pl.col(name).cast(pl.Int64)
    number = _number(frame, name, decimal_comma=decimal_comma)
    # a count that is no finite number ("1e999") is no count: null, as an empty cell is
    return pl.when(number.is_finite()).then(number.round()).cast(pl.Int64, strict=False)


def _with_values(frame: pl.DataFrame, npx: str, *, decimal_comma: bool) -> pl.DataFrame:
    """value, censoring, limit_value, is_number_ok, is_missing and value_text from the NPX column: a typed
    column as it is (no text round trip; value_text stays null), a text column through the token rules."""
    if frame.schema[npx] == pl.String:
        return with_numbers(frame, pl.col(npx), decimal_comma=decimal_comma).with_columns(
            pl.col(npx).alias("value_text")
        )
    value = pl.col(npx).cast(pl.Float64).fill_nan(None)
    return frame.with_columns(
        value.alias("value"),
        pl.lit(None, pl.String).alias("censoring"),
        pl.lit(None, pl.Float64).alias("limit_value"),
        pl.lit(True).alias("is_number_ok"),
        value.is_null().alias("is_missing"),
        pl.lit(None, pl.String).alias("value_text"),
    )


def read_explore(
    frame: pl.DataFrame,
    line_numbers: pl.Series,
    *,
    metadata: dict[str, str],
    source: str,
    sha256: str,
    separator: str = ",",
    hold_warnings: bool = False,
) -> ExploreRead:
    """Read one NPX file of Explore 3072, Explore HT or Reveal (see the module docstring).

    ``frame`` holds the file's columns (Parquet types, or text); ``line_numbers`` one number per row.
    """
    names = _lookup(frame)

    def col(name: str) -> str | None:
        return names.get(name.lower())

    panel_name = col("Panel")
    # distinct first, then text: casting every row of a Categorical column to text took 0.55 s at 20 M rows
    panels = frame.get_column(panel_name).unique().cast(pl.String).drop_nulls().to_list() if panel_name else []
    product, platform = product_of(metadata, panels, source=source)
    npx = col("NPX")
    assert npx is not None  # the signature requires it
    decimal_comma = frame.schema[npx] == pl.String and uses_decimal_comma(frame[npx], separator)
    # every new column in the chunks of the file's own (a column in other chunks makes each later step
    # realign the whole frame)
    lines = in_chunks_of(line_numbers.cast(pl.Int64).alias("line_number"), frame.get_column(npx))
    f = _with_values(frame.with_columns(lines), npx, decimal_comma=decimal_comma)

    stype = _canonical(frame, col("SampleType"), [*STUDY_TYPES, *CONTROL_TYPES, *NEGATIVE_TYPES], upper=True)
    assay_type = _canonical(frame, col("AssayType"), ASSAY_TYPES, upper=False)
    sample_qc = _canonical(frame, col("SampleQC"), QC_VALUES, upper=True)
    assay_qc = _canonical(frame, col("AssayQC"), QC_VALUES, upper=True)
    normalization = _text(frame, col("Normalization"))
    f = f.with_columns(
        _text(frame, col("SampleID")).alias("sample_id"),
        _text(frame, col("PlateID")).alias("plate_id"),
        _text(frame, col("WellID")).alias("well"),
        _text(frame, col("Assay")).alias("analyte_raw"),
        _text(frame, col("UniProt")).alias("uniprot_raw"),
        _text(frame, panel_name).alias("panel"),
        _text(frame, col("OlinkID")).alias("assay_id"),
        assay_type.alias("assay_type"),
        _text(frame, col("Block")).alias("block"),
        _count(frame, col("Count"), decimal_comma=decimal_comma).alias("read_count"),
        _number(frame, col("ExtNPX"), decimal_comma=decimal_comma).alias("ext_npx"),
        _number(frame, col("PCNormalizedNPX"), decimal_comma=decimal_comma).alias("pc_normalized_npx"),
        normalization.alias("normalization"),
        stype.alias("__stype"),
        sample_qc.alias("__sample_qc"),
        assay_qc.alias("__assay_qc"),
        pl.lit("NPX").alias("unit_raw"),
        pl.lit(platform).alias("platform"),
    )
    internal = pl.col("assay_type").is_not_null() & (pl.col("assay_type") != "assay")
    f = f.with_columns(internal.alias("__internal"))
    f = _with_roles(f)
    f = _with_vendor_qc(f)
    f, lod_info = _with_lod(f, frame, col, decimal_comma=decimal_comma)

    # reasons are built on the held rows only: casting there is cheap
    label = pl.col("analyte_raw").cast(pl.String).fill_null("?")
    where = sample_on_plate()
    checks: list[tuple[str, pl.Expr, pl.Expr]] = [
        (
            "vendor_sample_qc",
            ~pl.col("__internal") & (pl.col("__sample_qc") == "FAIL"),
            where
            + pl.lit(f": Olink SampleQC FAIL ({product} sample QC failed this sample), so its value for ")
            + label
            + pl.lit(" is not used; rerun the sample if it is needed"),
        ),
    ]
    if hold_warnings:
        checks.append(warning_held(~pl.col("__internal") & pl.col("vendor_qc").is_not_null(), label))
    checks.append(
        (
            "sample_type_known",
            pl.col("sample_type") == "unknown",
            pl.lit("SampleType '")
            + pl.col("__stype").cast(pl.String)
            + pl.lit(
                "' is not one Olink writes (SAMPLE, SAMPLE_CONTROL, PLATE_CONTROL, NEGATIVE_CONTROL); correct the cell"
            ),
        )
    )
    for check, bad, reason in value_checks(label):  # an internal control carries no NPX: that is not a missing value
        checks.append((check, bad & ~pl.col("__internal") if check == "value_reported" else bad, reason))
    assays = _assay_summary(f)
    handling = _handling(f, frame, col)
    rows, quarantine = finish(f, source=source, sha256=sha256, checks=checks, categorical_text=True)
    info: dict[str, object] = {
        "product": product,
        "data_file_type": metadata.get("DataFileType"),
        "software_version": metadata.get("ExploreVersion") or _first(frame, col("ExploreVersion")),
        "data_analysis_ref_id": _joined(frame, col("DataAnalysisRefID")),
        "project_name": metadata.get("ProjectName"),
        "sample_matrix": metadata.get("SampleMatrix"),
        "file_version": metadata.get("FileVersion"),
        "normalization": _joined(frame, col("Normalization")),
        **lod_info,
    }
    return ExploreRead(rows, quarantine, info, assays, handling)


def _with_roles(f: pl.DataFrame) -> pl.DataFrame:
    """sample_type from SampleType (by id when the column is empty): sample / bridge / control /
    negative_control, or 'unknown' for a value Olink does not write (held back)."""
    stype = pl.col("__stype")
    narrow = run_starts(f.select("sample_id", "plate_id", "__stype"), ["sample_id", "plate_id", "__stype"])
    narrow = narrow.filter(stype.is_in(STUDY_TYPES) | stype.is_null()).with_columns(pl.all().cast(pl.String))
    per_sample = plates_per_sample(narrow)
    ids = per_sample.get_column("sample_id").drop_nulls()
    on_plates = per_sample.filter(pl.col("several")).get_column("sample_id")
    named_control = ids.filter(ids.str.contains(CONTROL_PATTERN))
    named_bridge = ids.filter(ids.str.contains("(?i)bridge"))
    study = stype.is_in(STUDY_TYPES) | (stype.is_null() & ~pl.col("sample_id").is_in(named_control.implode()))
    return f.with_columns(
        pl.when(stype.is_in(CONTROL_TYPES) | (stype.is_null() & pl.col("sample_id").is_in(named_control.implode())))
        .then(pl.lit("control", ROLE))
        .when(stype.is_in(NEGATIVE_TYPES))
        .then(pl.lit("negative_control", ROLE))
        .when(
            study & (pl.col("sample_id").is_in(named_bridge.implode()) | pl.col("sample_id").is_in(on_plates.implode()))
        )
        .then(pl.lit("bridge", ROLE))
        .when(study)
        .then(pl.lit("sample", ROLE))
        .otherwise(pl.lit("unknown", ROLE))
        .alias("sample_type")
    )


def _with_vendor_qc(f: pl.DataFrame) -> pl.DataFrame:
    """``SampleQC=<v>`` and ``AssayQC=<v>`` for cells other than PASS (internal controls: none). The text is
    made once per distinct (SampleQC, AssayQC) pair, a handful, and set by comparisons into an Enum: text
    built per row would write out millions of strings."""
    columns = (("__sample_qc", "SampleQC"), ("__assay_qc", "AssayQC"))
    # the distinct pairs are among the rows where the pair changes (a sample's rows are together): 0.43 s to
    # 0.05 s at 20 M rows
    qc_columns = [c for c, _ in columns]
    pairs = run_starts(f.select(qc_columns), qc_columns).unique().with_columns(pl.all().cast(pl.String)).rows()
    texts = {}
    for pair in pairs:
        text = "; ".join(
            f"{name}={v}" for v, (_, name) in zip(pair, columns, strict=True) if v is not None and v not in PASS
        )
        if text:
            texts[pair] = text
    kind = pl.Enum(sorted(set(texts.values())))
    flags: pl.Expr = pl.lit(None, kind)
    for pair, text in texts.items():
        same = [pl.col(c).is_null() if v is None else pl.col(c) == v for v, (c, _) in zip(pair, columns, strict=True)]
        flags = pl.when(pl.all_horizontal(same)).then(pl.lit(text, kind)).otherwise(flags)
    return f.with_columns(pl.when(pl.col("__internal")).then(None).otherwise(flags).alias("vendor_qc"))


def _with_lod(
    f: pl.DataFrame, frame: pl.DataFrame, col, *, decimal_comma: bool
) -> tuple[pl.DataFrame, dict[str, object]]:
    """lod from the first LOD column present, else from the negative controls; censoring below_lod where
    NPX < LOD (the number is kept, the LOD is its limit)."""
    present = next((c for c in LOD_COLUMNS if col(c) is not None), None)
    if present is not None:
        values = _number(frame, col(present), decimal_comma=decimal_comma)
        if present == "PCNormalizedLOD":  # on the plate-control scale: only for plate-control normalised rows
            values = pl.when(pl.col("normalization").is_in(any_case("Plate control", "Plate Control"))).then(values)
        f = f.with_columns(values.alias("lod"))
        info: dict[str, object] = {"lod_source": f"column {col(present)}", "negative_controls": None}
    else:
        # an OlinkID names one assay of one panel; a file without them is keyed by panel and name
        by_id = f.select(pl.col("assay_id").is_not_null().all()).item()
        key = pl.col("panel").fill_null("") + pl.lit("\x1f") + pl.col("analyte_raw").fill_null("")
        inputs = f.select(
            (pl.col("assay_id") if by_id else key).alias("assay"),
            "plate_id",
            "sample_id",
            pl.col("sample_type").alias("role"),
            pl.col("value").alias("npx"),
            pl.col("pc_normalized_npx").alias("pc_npx"),
            "read_count",
            pl.col("normalization").is_in(any_case("Intensity")).alias("is_intensity"),
            pl.col("__sample_qc").alias("sample_qc"),
            pl.col("__assay_qc").alias("assay_qc"),
            pl.col("__internal").alias("is_internal"),
        )
        lods, done = nclod.negative_control_lod(inputs)
        f = f.with_columns(in_chunks_of(lods.alias("lod"), f.get_column("value")))
        info = {"lod_source": done["method"], "negative_controls": done["controls"]}
    below = pl.col("censoring").is_null() & (pl.col("value") < pl.col("lod"))
    f = f.with_columns(
        pl.when(below).then(pl.lit("below_lod")).otherwise(pl.col("censoring")).alias("censoring"),
        pl.when(below).then(pl.col("lod")).otherwise(pl.col("limit_value")).alias("limit_value"),
    )
    return f, info


def _assay_summary(f: pl.DataFrame) -> pl.DataFrame:
    """One row per assay (panel x OlinkID or name) of the study assays: ``mixed_normalization`` names the
    assay and its normalisations when the file mixes them, ``assay_qc_warning`` names it and the plates
    where Olink's AssayQC warned (both null when fine): what the olink_assays suite checks."""
    key = ["panel", "assay_id", "analyte_raw"]
    label = pl.col("analyte_raw").fill_null("?") + pl.lit(" (") + pl.col("panel").fill_null("?") + pl.lit(")")
    # the distinct (assay, normalisation) and (assay, warned plate) pairs first, internal controls dropped from
    # those (a filter of every row would copy them); one normalisation in the whole file (the common case, by
    # its lowest and highest cell) needs no normalisation in the pairs
    ends = f.select(pl.col("normalization").min().alias("lo"), pl.col("normalization").max().alias("hi")).row(0)
    one = ends[0] == ends[1] and f.get_column("normalization").null_count() in (0, f.height)
    pairs = f.select(*key, "__internal", *([] if one else ["normalization"])).unique()
    norms = pairs.filter(~pl.col("__internal")).with_columns(
        pl.lit(ends[0], pl.String).alias("normalization") if one else pl.col("normalization")
    )
    warned = f.filter((pl.col("__assay_qc") == "WARN") & ~pl.col("__internal")).select(*key, "plate_id").unique()
    norms = norms.with_columns(pl.col(*key, "normalization").cast(pl.String))  # few rows: plain text from here
    warned = warned.with_columns(pl.all().cast(pl.String))
    per = (
        norms.group_by(key)
        .agg(pl.col("normalization").drop_nulls().sort().alias("__norms"))
        .join(
            warned.group_by(key).agg(pl.col("plate_id").drop_nulls().sort().alias("__warned")),
            on=key,
            how="left",
            nulls_equal=True,
        )
        .with_columns(pl.col("__warned").fill_null([]))
    )
    return per.sort(key, nulls_last=True).select(
        *key,
        pl.when(pl.col("__norms").list.len() > 1)
        .then(label + pl.lit(": ") + pl.col("__norms").list.join(" and "))
        .alias("mixed_normalization"),
        pl.when(pl.col("__warned").list.len() > 0)
        .then(label + pl.lit(" on plate ") + pl.col("__warned").list.join(", "))
        .alias("assay_qc_warning"),
    )


def _handling(f: pl.DataFrame, frame: pl.DataFrame, col) -> pl.DataFrame | None:
    """The OSI sample-handling columns, one row per sample x plate, when the file has any."""
    present = [(c, col(c)) for c in HANDLING_COLUMNS if col(c) is not None]
    if not present:
        return None
    cells = f.select(
        "sample_id",
        "plate_id",
        "sample_type",
        *(_text(frame, name).alias(_snake(c)) for c, name in present),
    ).pipe(run_starts, ["sample_id", "plate_id"])
    cells = cells.filter(pl.col("sample_type").is_in(["sample", "bridge"]))
    out = cells.unique(["sample_id", "plate_id"], keep="first", maintain_order=True).drop("sample_type")
    return out.with_columns(pl.lit(None, pl.String).alias(_snake(c)) for c in HANDLING_COLUMNS if col(c) is None)


def run_starts(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The rows of ``frame`` where ``columns`` differ from the row before: a file lists a sample's rows
    together, so this keeps a few rows per sample, and a ``unique`` or ``group_by`` over ``columns`` after it
    gives what it gives over every row (at a fraction of the cost)."""
    changed = pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift()) for c in columns)
    return frame.filter(changed.fill_null(True))


def _snake(name: str) -> str:
    """OSITimeToCentrifugation -> osi_time_to_centrifugation."""
    import re

    return "osi_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name[3:]).lower()


def _first(frame: pl.DataFrame, name: str | None) -> str | None:
    if name is None:
        return None
    values = frame.get_column(name).drop_nulls()
    return None if values.is_empty() else str(values[0])


def _joined(frame: pl.DataFrame, name: str | None) -> str | None:
    """The distinct values of a column, sorted and joined ('; '), or None."""
    if name is None:
        return None
    values = sorted({str(v) for v in frame.get_column(name).drop_nulls().unique().to_list() if str(v) != ""})
    return "; ".join(values) or None


#: The warehouse names of the sample-handling fields (table sample_handling), e.g. osi_time_to_centrifugation.
HANDLING_FIELDS = [_snake(c) for c in HANDLING_COLUMNS]

__all__ = ["COLUMNS", "NUMBER_COLUMNS", "PRODUCTS", "SIGNATURE", "ExploreRead", "product_of", "read_explore"]
