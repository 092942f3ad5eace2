"""Layout detection and dispatch to the vendor readers."""

from __future__ import annotations

import io
from dataclasses import dataclass

import polars as pl

from transforms import schema
from transforms.readers import manifest, msd, olink, tidy
from transforms.text import Table, UnreadableFileError, decode, read_table, sniff_separator, split_fields

#: Header fields (lower case) that identify a layout; the first layout whose fields are all present wins.
SIGNATURES: list[tuple[str, set[str]]] = [
    ("manifest", {"sample_id", "subject_id", "cohort"}),
    ("olink", {"sampleid", "assay", "npx"}),
    ("msd", {"sample", "assay", "well", "calc. concentration"}),
    ("tidy", {"sample_id", "analyte", "value", "unit", "plate_id"}),
]
HEADER_SCAN_LINES = 200


@dataclass(frozen=True)
class ReadResult:
    """What a reader made of one file."""

    layout: str
    rows: pl.DataFrame  # MEASUREMENT rows (empty for a manifest)
    quarantine: pl.DataFrame  # QUARANTINE rows
    samples: pl.DataFrame | None = None  # manifest rows (raw subject_id still present)

    @property
    def rows_read(self) -> int:
        kept = self.samples.height if self.samples is not None else self.rows.height
        return kept + self.quarantine.height


def _layout_of(fields: list[str]) -> str | None:
    low = {f.strip().strip('"').strip().lower() for f in fields}
    for name, required in SIGNATURES:
        if required <= low:
            return name
    return None


def detect_layout(lines: list[str]) -> tuple[str, int] | None:
    """The layout and header line index of a text export, or None when no reader knows it."""
    for i, line in enumerate(lines[:HEADER_SCAN_LINES]):
        if not line.strip():
            continue
        layout = _layout_of(split_fields(line, sniff_separator(line)))
        if layout is not None:
            return layout, i
    return None


def _frame_table(frame: pl.DataFrame) -> Table:
    """A binary table (Parquet, Excel) as an all-text Table; rows are numbered as in a spreadsheet."""
    text = frame.select(pl.all().cast(pl.String).str.strip_chars())
    return Table(text, list(range(2, text.height + 2)), ",", 1)


def _binary_table(data: bytes, *, source: str) -> Table:
    if data[:4] == b"PAR1":
        try:
            frame = pl.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow/polars raise several types for a damaged file
            msg = f"{source}: Parquet file cannot be read ({exc}); ask for a fresh export"
            raise UnreadableFileError(msg) from exc
        return _frame_table(frame)
    try:
        sheets = pl.read_excel(io.BytesIO(data), sheet_id=0, infer_schema_length=0)
    except Exception as exc:
        msg = f"{source}: Excel workbook cannot be read ({exc}); save it again as .xlsx or CSV"
        raise UnreadableFileError(msg) from exc
    for frame in sheets.values():
        if _layout_of(frame.columns) is not None:
            return _frame_table(frame)
    msg = f"{source}: no sheet of this workbook has a known header (sheets: {', '.join(sheets)})"
    raise UnreadableFileError(msg)


def read_file(data: bytes, *, source: str, sha256: str, options: dict[str, object] | None = None) -> ReadResult:
    """Read one export or manifest. Raises UnreadableFileError when the file cannot be read at all."""
    opts = options or {}
    if data[:4] == b"PAR1" or data[:4] == b"PK\x03\x04":
        table = _binary_table(data, source=source)
        layout = _layout_of(table.frame.columns)
        preamble: list[str] = []
    else:
        text = decode(data, source=source)
        lines = text.split("\n")
        found = detect_layout(lines)
        if found is None:
            if any("DataType:" in line for line in lines[: HEADER_SCAN_LINES * 5]):
                msg = (
                    f"{source}: Luminex xPONENT export recognised, but this version has no Luminex reader yet; "
                    "export the results as the generic tidy CSV (see docs/input-formats.md)"
                )
            else:
                msg = (
                    f"{source}: no known export layout in the first {HEADER_SCAN_LINES} lines (expected an "
                    "Olink NPX, MSD Discovery Workbench, generic tidy or manifest header; see docs/input-formats.md)"
                )
            raise UnreadableFileError(msg)
        layout, header_index = found
        table = read_table(lines, header_index=header_index, source=source)
        preamble = lines[:header_index]
    if layout is None:
        msg = f"{source}: columns {table.frame.columns[:8]} match no known layout; see docs/input-formats.md"
        raise UnreadableFileError(msg)
    common = {"source": source, "sha256": sha256}
    if layout == "manifest":
        samples, bad = manifest.read_manifest(table, **common)
        return ReadResult(layout, schema.empty(schema.MEASUREMENT), bad, samples)
    if layout == "olink":
        rows, bad = olink.read_olink(table, **common)
    elif layout == "msd":
        rows, bad = msd.read_msd(table, preamble=preamble, default_unit=str(opts.get("msd_unit", "pg/mL")), **common)
    else:
        rows, bad = tidy.read_tidy(table, **common)
    return ReadResult(layout, rows, bad)
