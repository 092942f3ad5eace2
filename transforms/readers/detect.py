"""Layout detection and dispatch to the vendor readers."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import polars as pl

from transforms import schema
from transforms.readers import luminex, manifest, msd, olink, olink_explore, olink_wide, tidy
from transforms.readers.common import fold_header, with_folded_names
from transforms.text import (
    Table,
    UnreadableFileError,
    clean_head,
    decode,
    read_table,
    read_table_bytes,
    sniff_separator,
    split_fields,
)

#: Layouts as messages name them.
LAYOUT_NAMES = {
    "manifest": "a sample manifest",
    "olink": "an Olink NPX table",
    "olink_explore": "an Olink Explore NPX table",
    "olink_wide": "an Olink NPX table in the wide layout",
    "msd": "an MSD plate",
    "tidy": "a generic tidy table",
    "bioplex": "a Bio-Plex report",
}
#: The required columns of the generic tidy format, in the documented order.
TIDY_COLUMNS = ("sample_id", "analyte", "value", "unit", "plate_id")
#: Header fields (lower case) that identify a layout; the first layout whose fields are all present wins.
SIGNATURES: list[tuple[str, set[str]]] = [
    ("manifest", {"sample_id", "subject_id", "cohort"}),
    ("olink_explore", olink_explore.SIGNATURE),  # before Target 48 / 96, whose fields it shares
    ("olink", {"sampleid", "assay", "npx"}),
    ("msd", {"sample", "assay", "well", "calc. concentration"}),
    ("tidy", set(TIDY_COLUMNS)),
    ("bioplex", {"type", "well", "obs conc"}),
]
HEADER_SCAN_LINES = 200


@dataclass(frozen=True)
class ReadResult:
    """What a reader made of one file."""

    layout: str
    rows: pl.DataFrame  # MEASUREMENT rows (empty for a manifest)
    quarantine: pl.DataFrame  # QUARANTINE rows
    samples: pl.DataFrame | None = None  # manifest rows (raw subject_id still present)
    info: dict[str, object] = field(default_factory=dict)  # per-file facts for the ledger (product, versions, LOD)
    extras: dict[str, pl.DataFrame] = field(default_factory=dict)  # assays (olink_assays suite), handling (OSI)

    @property
    def rows_read(self) -> int:
        kept = self.samples.height if self.samples is not None else self.rows.height
        return kept + self.quarantine.height


#: Layouts people write by hand: their headers are also matched as folded ("Sample ID" is sample_id).
HAND_MADE = {"manifest", "tidy"}


def _layout_of(fields: list[str]) -> str | None:
    low = {f.strip().strip('"').strip().lower() for f in fields}
    folded = low | {fold_header(f) for f in fields}
    for name, required in SIGNATURES:
        if required <= (folded if name in HAND_MADE else low):
            return name
    return None


#: What people call the columns of the generic tidy format in their own files: named in the hint of a file
#: refused for its header (:func:`near_miss`), never read in their place (a "Result" may be a verdict).
TIDY_NAMES_SEEN = {
    "sample": "sample_id",
    "sample_name": "sample_id",
    "result": "value",
    "concentration": "value",
    "conc": "value",
    "units": "unit",
    "plate": "plate_id",
    "plate_name": "plate_id",
    "plate_number": "plate_id",
}


def near_miss(fields: list[str]) -> str | None:
    """What a header that no layout takes lacks of the generic tidy format, when it has at least two of its
    columns (as written or as people commonly name them): "... rename Result to value, Plate to plate_id",
    or the columns still missing. None for a header unlike it."""
    required = set(TIDY_COLUMNS)
    named = {fold_header(f): f.strip().strip('"').strip() for f in fields if f.strip().strip('"').strip()}
    present = required & set(named)
    renames = {
        written: TIDY_NAMES_SEEN[folded]
        for folded, written in named.items()
        if folded in TIDY_NAMES_SEEN and TIDY_NAMES_SEEN[folded] not in present
    }
    renames = {w: c for w, c in renames.items() if list(renames.values()).count(c) == 1}  # one candidate each
    if len(present) + len(renames) < 2 or not present:
        return None
    missing = [c for c in TIDY_COLUMNS if c not in present and c not in renames.values()]
    advice = [f"rename {', '.join(f'{w} to {c}' for w, c in renames.items())}"] if renames else []
    advice += [f"add {', '.join(missing)}"] if missing else []
    return (
        f"its header ({', '.join(named.values())}) is close to the generic tidy format (columns "
        f"{', '.join(TIDY_COLUMNS)}): {'; '.join(advice)}"
    )


def refuse_near_miss(fields: list[str], where: str) -> None:
    """Refuse (UnreadableFileError) a header close to the generic tidy format, saying what to change
    (:func:`near_miss`); nothing for another header, which the caller refuses in its own words."""
    if (hint := near_miss(fields)) is not None:
        raise UnreadableFileError(f"{where}: no known export layout; {hint} (docs/input-formats.md)")


def refuse_with_hint(rows: list[list[str]], where: str) -> None:
    """Refuse (UnreadableFileError) a file no layout takes, when its first rows (``rows``: the cells of its
    first lines, or of a sheet's first rows) are close to the generic tidy format (:func:`refuse_near_miss`);
    nothing otherwise, and the caller refuses the file in its own words."""
    first = next((r for r in rows if any(c.strip() for c in r)), [])
    refuse_near_miss(first, where)


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
    return Table(text, pl.int_range(2, text.height + 2, eager=True).alias("line_number"), ",", 1)


def _excel_table(sheet: pl.DataFrame, where: str) -> tuple[Table, list[str], str, dict[str, object]] | None:
    """Find a known header in the first rows of a header-less sheet (rows above it are the preamble), or
    Olink's wide layout (:func:`transforms.readers.olink_wide.wide_to_long`); rows are numbered as the
    spreadsheet numbers them."""
    text = sheet.select(pl.all().cast(pl.String).str.strip_chars())
    for i, row in enumerate(text.head(HEADER_SCAN_LINES).iter_rows()):
        layout = _layout_of([v for v in row if v])
        if layout is None:
            continue
        keep = [(c, v) for c, v in zip(text.columns, row, strict=True) if v]
        names = [v for _, v in keep]
        body = text.slice(i + 1).select([pl.col(c).fill_null("").alias(v) for c, v in keep])
        non_empty = pl.any_horizontal([pl.col(v) != "" for v in names])
        body = body.with_row_index("__i").filter(non_empty)
        numbers = (body["__i"].cast(pl.Int64) + i + 2).alias("line_number")
        # pandas-written workbooks carry 'Unnamed: n' placeholders in empty header cells
        preamble = [",".join(v for v in r if v and not v.startswith("Unnamed: ")) for r in text.head(i).iter_rows()]
        return Table(body.drop("__i"), numbers, ",", i + 1), preamble, layout, {}
    first_cells = text.get_column(text.columns[0]).head(HEADER_SCAN_LINES).fill_null("").to_list() if text.width else []
    if not olink_wide.is_wide(first_cells):  # Olink's wide layout
        return None
    rows = [[v or "" for v in r] for r in text.iter_rows()]
    table, info = olink_wide.wide_to_long(rows, list(range(1, len(rows) + 1)), separator=",", where=where)
    return table, [], "olink_wide", info


def parquet_metadata(data: bytes, *, source: str) -> tuple[list[str], dict[str, str], set[str]]:
    """Column names, key-value metadata and text columns of a Parquet file (read from its footer only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        found = pq.read_schema(io.BytesIO(data))
    except (Exception, pl.exceptions.PanicException) as exc:  # several types for a damaged file; polars panics
        msg = f"{source}: Parquet file cannot be read ({exc}); ask for a fresh export"
        raise UnreadableFileError(msg) from exc
    meta = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in (found.metadata or {}).items()}
    text = {f.name for f in found if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
    return list(found.names), meta, text


def _read_parquet(data: bytes, *, source: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(io.BytesIO(data))
    except (Exception, pl.exceptions.PanicException) as exc:  # several types for a damaged file; polars panics
        msg = f"{source}: Parquet file cannot be read ({exc}); ask for a fresh export"
        raise UnreadableFileError(msg) from exc


def _explore_parquet(
    data: bytes, names: list[str], metadata: dict[str, str], text_columns: set[str], **kwargs: object
) -> ReadResult:
    """An Olink NGS-product Parquet file, read for the reader's columns in their own types (no text). Text
    columns are read dictionary-coded (Categorical), as Parquet stores them: ids, assays, plates and flags
    repeat across millions of rows, and hashing them as strings took most of the reader's time."""
    import pyarrow.parquet as pq

    wanted = {c.lower() for c in olink_explore.COLUMNS}
    columns = [n for n in names if n.lower() in wanted]
    numbers = {c.lower() for c in olink_explore.NUMBER_COLUMNS}
    text = [n for n in columns if n in text_columns and n.lower() not in numbers]
    try:
        table = pq.read_table(io.BytesIO(data), columns=columns, read_dictionary=text)
        frame = pl.from_arrow(table, rechunk=True)
    except (Exception, pl.exceptions.PanicException) as exc:  # several types for a damaged file; polars panics
        msg = f"{kwargs['source']}: Parquet file cannot be read ({exc}); ask for a fresh export"
        raise UnreadableFileError(msg) from exc
    assert isinstance(frame, pl.DataFrame)
    # a column of nothing but nulls (an all-empty SampleQC) has no type of its own: text, as in a CSV
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Null)
    lines = pl.int_range(2, frame.height + 2, eager=True)  # spreadsheet-style row numbers, as for every table
    return _explore_result(frame, lines, metadata=metadata, **kwargs)


def _explore_result(frame: pl.DataFrame, lines: pl.Series, **kwargs: object) -> ReadResult:
    read = olink_explore.read_explore(frame, lines, **kwargs)  # type: ignore[arg-type]
    extras = {k: v for k, v in (("assays", read.assays), ("handling", read.handling)) if v is not None}
    return ReadResult("olink_explore", read.rows, read.quarantine, info=read.info, extras=extras)


#: An .xlsx is a zip of XML: a workbook whose members expand beyond this (or beyond XLSX_MAX_RATIO times
#: its own size, once past XLSX_RATIO_FROM) is refused before it is unpacked (a "zip bomb" fills memory)
XLSX_MAX_EXPANDED = 2_000_000_000
XLSX_MAX_RATIO = 200
XLSX_RATIO_FROM = 50_000_000


def check_workbook_size(data: bytes, *, source: str) -> None:
    """Refuse a zip that is not a workbook (a zip of exports: .xlsx and .ods hold [Content_Types].xml, xl/ or
    a mimetype), a workbook that is not a readable zip, or one whose declared unpacked size is implausible,
    from its zip directory alone (nothing is unpacked). Raises UnreadableFileError."""
    import zipfile
    import zlib

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            names = [m.filename for m in members if not m.is_dir()]
            workbook = bool({"[Content_Types].xml", "mimetype"} & set(names)) or any(
                n.startswith(("xl/", "_rels/")) for n in names
            )
            expanded = sum(member.file_size for member in members)
            plausible = expanded <= XLSX_MAX_EXPANDED and (
                expanded <= XLSX_RATIO_FROM or expanded <= XLSX_MAX_RATIO * len(data)
            )
            # the CRCs of a small, plausible workbook (streamed: memory stays flat)
            broken = archive.testzip() if workbook and plausible and len(data) < 5_000_000 else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        msg = f"{source}: not a readable .xlsx (a damaged zip: {exc}); save it again from Excel or export CSV"
        raise UnreadableFileError(msg) from exc
    if not workbook:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        msg = (
            f"{source}: a zip archive of {len(names)} file(s) ({shown or 'empty'}), not an export; unzip it into "
            "the landing folder, where its files are read one by one"
        )
        raise UnreadableFileError(msg)
    if broken is not None:
        msg = f"{source}: not a readable .xlsx (member {broken} is damaged); save it again from Excel or export CSV"
        raise UnreadableFileError(msg)
    if not plausible:
        msg = (
            f"{source}: this .xlsx of {len(data) / 1e6:,.1f} MB would unpack to {expanded / 1e6:,.0f} MB, far "
            "beyond any export; it was not opened. Export the sheet as CSV"
        )
        raise UnreadableFileError(msg)


def _binary_table(data: bytes, *, source: str) -> tuple[Table, list[str], str | None, dict[str, object]]:
    """The table of a Parquet file or of the one sheet of a workbook that holds one, its preamble, its
    layout and what the file says of itself (an Olink wide sheet: product, software)."""
    if data[:4] == b"PAR1":
        frame = _read_parquet(data, source=source)
        return _frame_table(frame), [], _layout_of(frame.columns), {}
    check_workbook_size(data, source=source)
    try:
        # every row from the sheet's first, empty ones too, so that row i is the spreadsheet's row i + 1 (by
        # default leading and empty rows are dropped, and every later line number named the wrong row)
        sheets = pl.read_excel(
            io.BytesIO(data),
            sheet_id=0,
            has_header=False,
            infer_schema_length=0,
            drop_empty_rows=False,
            read_options={"skip_rows": 0},
            raise_if_empty=False,  # an empty sheet (Excel's Sheet2) refused the whole workbook
        )
    except (Exception, pl.exceptions.PanicException) as exc:
        msg = f"{source}: Excel workbook cannot be read ({exc}); save it again as .xlsx or CSV"
        raise UnreadableFileError(msg) from exc
    tables = {
        name: found for name, sheet in sheets.items() if (found := _excel_table(sheet, f"{source}: sheet {name}"))
    }
    if len(tables) > 1:  # reading the first alone dropped the others without a word
        hidden = _hidden_sheets(data)
        note = " (a hidden sheet: unhide it to see it)"
        named = ", ".join(
            f"{LAYOUT_NAMES.get(t[2], t[2])} on sheet {name}{note * (name in hidden)}" for name, t in tables.items()
        )
        msg = (
            f"{source}: this workbook holds {len(tables)} tables ({named}), and a file is read as one table; save "
            "each sheet as a file of its own (CSV or .xlsx) in the landing folder"
        )
        raise UnreadableFileError(msg)
    if tables:
        return next(iter(tables.values()))
    for name, sheet in sheets.items():  # a sheet whose first rows say what to do: say it
        rows = [[str(v) if v else "" for v in r] for r in sheet.head(HEADER_SCAN_LINES).iter_rows()]
        refuse_with_hint(rows, f"{source}: sheet {name}")
    msg = f"{source}: no sheet of this workbook has a known header (sheets: {', '.join(sheets)})"
    raise UnreadableFileError(msg)


def _hidden_sheets(data: bytes) -> set[str]:
    """The names of a workbook's hidden sheets (a refusal names them as such: the user sees no such sheet)."""
    import fastexcel

    try:
        book = fastexcel.read_excel(data)
        return {n for n in book.sheet_names if book.load_sheet(n, header_row=None, n_rows=0).visible != "visible"}
    except Exception:  # only a nicer message is lost
        return set()


FAST_LAYOUTS = {
    "manifest",
    "olink",
    "olink_explore",
    "msd",
    "tidy",
}  # one table per file: readable straight from the bytes
#: The columns a reader reads, for layouts whose exports grow large: a clean export is parsed for these alone
READS: dict[str, tuple[str, ...]] = {"olink": olink.COLUMNS, "olink_explore": olink_explore.COLUMNS}


def _clean_text_table(data: bytes, *, source: str) -> tuple[Table, list[str], str] | None:
    """The table of a clean UTF-8 export read from its bytes (transforms.text.read_table_bytes), or None."""
    head = clean_head(data)
    if head is None or any(line.lstrip('"').startswith("DataType:") for line in head[: HEADER_SCAN_LINES * 5]):
        return None
    found = detect_layout(head)
    if found is None or found[0] not in FAST_LAYOUTS:
        return None
    layout, header_index = found
    table = read_table_bytes(data, head, header_index=header_index, source=source, columns=READS.get(layout))
    return None if table is None else (table, head[:header_index], layout)


#: Files that labs send beside exports, or wrap them in, by their first bytes: what each is and what to do.
NOT_EXPORTS = (
    (b"\x1f\x8b", "a gzip-compressed file, not an export; unpack it (gunzip) into the landing folder"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive, not an export; unpack it into the landing folder"),
    (b"Rar!\x1a\x07", "a RAR archive, not an export; unpack it into the landing folder"),
    (b"%PDF", "a PDF document, not a data export; export the data from the instrument software as CSV or .xlsx"),
)


def refuse_non_exports(data: bytes, *, source: str) -> None:
    """Name an archive or document that is not an export (it was reported as a binary file or an unknown
    layout), with what to do. A zip that is not a workbook is named by :func:`check_workbook_size`, which
    reads its directory anyway. Raises UnreadableFileError."""
    for magic, what in NOT_EXPORTS:
        if data.startswith(magic):
            raise UnreadableFileError(f"{source}: {what}")


#: The checksum file Olink's software writes into the zip it delivers an NPX file in, and its digest.
OLINK_CHECKSUM_FILES = {"MD5_checksum.txt": "md5", "checksum_sha256.txt": "sha256"}
#: Other members of such a zip that hold no data.
OLINK_ZIP_NOTES = {"README.txt"}


def olink_delivery(data: bytes, *, source: str) -> bytes | None:
    r"""The data file inside a zip as Olink's software delivers an NPX file (the data file, a checksum file
    ``MD5_checksum.txt`` or ``checksum_sha256.txt`` holding its digest, perhaps a ``README.txt``), after
    checking it against that digest; None when ``data`` is no such zip (a workbook, any other zip). Raises
    UnreadableFileError for such a zip whose data file differs from its checksum (a damaged download), that
    holds several data files, or whose data file would unpack to an implausible size.

    >>> import hashlib, zipfile
    >>> npx = b"SampleID;Assay;NPX\nS1;IL6;1,5\n"
    >>> packed = io.BytesIO()
    >>> with zipfile.ZipFile(packed, "w") as z:
    ...     z.writestr("Q-00001_NPX.csv", npx)
    ...     z.writestr("MD5_checksum.txt", hashlib.md5(npx).hexdigest())
    >>> olink_delivery(packed.getvalue(), source="delivery.zip") == npx
    True
    """
    import hashlib
    import re
    import zipfile
    import zlib

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        return None  # no zip directory to read: check_workbook_size names the damage
    try:
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            named = {m.filename.rsplit("/", 1)[-1]: m for m in members}
            checksum = next((n for n in OLINK_CHECKSUM_FILES if n in named), None)
            if checksum is None:
                return None
            payload = [
                m for m in members if m.filename.rsplit("/", 1)[-1] not in {*OLINK_CHECKSUM_FILES, *OLINK_ZIP_NOTES}
            ]
            if len(payload) != 1:
                shown = ", ".join(m.filename for m in payload[:5]) or "none"
                msg = (
                    f"{source}: an Olink zip should hold one data file beside {checksum}, and this one holds "
                    f"{len(payload)} ({shown}); unzip it into the landing folder, where its files are read one by one"
                )
                raise UnreadableFileError(msg)
            member = payload[0]
            if member.file_size > XLSX_MAX_EXPANDED or (
                member.file_size > XLSX_RATIO_FROM and member.file_size > XLSX_MAX_RATIO * len(data)
            ):
                msg = (
                    f"{source}: its data file {member.filename} would unpack to {member.file_size / 1e6:,.0f} MB, far "
                    "beyond any export; it was not opened"
                )
                raise UnreadableFileError(msg)
            digest = OLINK_CHECKSUM_FILES[checksum]
            written = archive.read(named[checksum]).decode("utf-8", "replace")
            content = archive.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        msg = f"{source}: a damaged zip ({exc}); download the delivery again"
        raise UnreadableFileError(msg) from exc
    width = 32 if digest == "md5" else 64
    expected = re.search(rf"\b[0-9a-fA-F]{{{width}}}\b", written)
    if expected is None:
        msg = (
            f"{source}: its {checksum} holds no {digest.upper()} checksum; the delivery cannot be checked, "
            "download it again"
        )
        raise UnreadableFileError(msg)
    if hashlib.new(digest, content).hexdigest() != expected.group(0).lower():
        msg = (
            f"{source}: its data file {member.filename} differs from the {digest.upper()} checksum Olink's software "
            f"wrote beside it ({checksum}): the delivery is damaged or was changed; download it again"
        )
        raise UnreadableFileError(msg)
    if content[:4] == b"PK\x03\x04" and olink_delivery(content, source=f"{source}: {member.filename}") is not None:
        msg = (
            f"{source}: an Olink zip inside an Olink zip ({member.filename}); unzip the outer one into the "
            "landing folder"
        )
        raise UnreadableFileError(msg)
    return content


def read_file(data: bytes, *, source: str, sha256: str, options: dict[str, object] | None = None) -> ReadResult:
    """Read one export or manifest. Raises UnreadableFileError when the file cannot be read at all. An NPX file
    in the zip Olink's software delivers it in is read from the zip, once it matches the checksum beside it
    (:func:`olink_delivery`)."""
    refuse_non_exports(data, source=source)
    if data[:4] == b"PK\x03\x04" and (unpacked := olink_delivery(data, source=source)) is not None:
        data = unpacked
        refuse_non_exports(data, source=source)
    opts = options or {}
    hold = bool(opts.get("hold_vendor_warnings", False))
    if data[:4] == b"PAR1":
        names, metadata, text_columns = parquet_metadata(data, source=source)
        olink_metadata = {"Product", "DataFileType"} <= set(metadata)  # Olink software writes both
        if _layout_of(names) == "olink_explore" or olink_metadata:
            if _layout_of(names) != "olink_explore":
                olink_explore.product_of(metadata, [], source=source)  # a counts file says so first
                msg = (
                    f"{source}: Olink {metadata.get('Product')} Parquet file without the SampleID, Assay, AssayType "
                    "and NPX columns of an NPX file; export the 'NPX File' from Olink's software"
                )
                raise UnreadableFileError(msg)
            return _explore_parquet(
                data, names, metadata, text_columns, source=source, sha256=sha256, hold_warnings=hold
            )
    info: dict[str, object] = {}
    if data[:4] == b"PAR1" or data[:4] == b"PK\x03\x04":
        table, preamble, layout, info = _binary_table(data, source=source)
    elif (fast := _clean_text_table(data, source=source)) is not None:
        table, preamble, layout = fast
    else:
        text = decode(data, source=source)
        lines = text.split("\n")
        if any(line.lstrip('"').startswith("DataType:") for line in lines[: HEADER_SCAN_LINES * 5]):
            mfi = str(opts.get("luminex_mfi_section") or "")
            rows, bad = luminex.read_xponent(lines, source=source, sha256=sha256, mfi_section=mfi)
            return ReadResult("luminex", rows, bad)
        found = detect_layout(lines)
        if found is None and any(line.startswith("==========Data") for line in lines[:HEADER_SCAN_LINES]):
            msg = (
                f"{source}: MSD Methodical Mind signal export (raw ECL signal per well, no concentrations); "
                "export the plate from Discovery Workbench with calculated concentrations"
            )
            raise UnreadableFileError(msg)
        wide = None if found is not None else _olink_wide_text(lines, source=source)
        if wide is not None:
            (table, info), preamble, layout = wide, [], "olink_wide"
        else:
            if found is None:
                head = [line for line in lines[:HEADER_SCAN_LINES] if line.strip()]
                refuse_with_hint([split_fields(line, sniff_separator(line)) for line in head], source)
                msg = (
                    f"{source}: no known export layout in the first {HEADER_SCAN_LINES} lines (expected a manifest, "
                    "Olink NPX, MSD Discovery Workbench, Luminex xPONENT, Bio-Plex or generic tidy header; "
                    "see docs/input-formats.md)"
                )
                raise UnreadableFileError(msg)
            layout, header_index = found
            if layout == "bioplex":
                unit = str(opts.get("msd_unit", "pg/mL"))
                rows, bad = luminex.read_bioplex(lines, source=source, sha256=sha256, default_unit=unit)
                return ReadResult(layout, rows, bad)
            table = read_table(lines, header_index=header_index, source=source)
            preamble = lines[:header_index]
    if layout == "bioplex":
        msg = f"{source}: Bio-Plex workbook; export the report as CSV (File > Export) and send that"
        raise UnreadableFileError(msg)
    if layout is None:
        refuse_near_miss(table.frame.columns, source)
        msg = f"{source}: columns {table.frame.columns[:8]} match no known layout; see docs/input-formats.md"
        raise UnreadableFileError(msg)
    common = {"source": source, "sha256": sha256}
    if layout in HAND_MADE:  # "Sample ID" is sample_id
        table = with_folded_names(table)
    if layout == "manifest":
        samples, bad = manifest.read_manifest(table, source=source, sha256=sha256)
        return ReadResult(layout, schema.empty(schema.MEASUREMENT), bad, samples)
    if layout == "olink_explore":
        return _explore_result(
            table.frame, table.line_numbers, metadata={}, separator=table.separator, hold_warnings=hold, **common
        )
    if layout in ("olink", "olink_wide"):
        rows, bad = olink.read_olink(table, hold_warnings=hold, **common)
        info = {"lod_source": olink.lod_source(table), **info}  # a wide file names its LOD row itself
    elif layout == "msd":
        rows, bad = msd.read_msd(table, preamble=preamble, default_unit=str(opts.get("msd_unit", "pg/mL")), **common)
        info = {**info, "censoring_source": msd.censoring_source(table)}
    else:
        rows, bad = tidy.read_tidy(table, **common)
    return ReadResult(layout, rows, bad, info=info)


def _olink_wide_text(lines: list[str], *, source: str) -> tuple[Table, dict[str, object]] | None:
    """Olink's long table of a text file in Olink's wide NPX layout, with what the file says of itself
    (:func:`transforms.readers.olink_wide.wide_to_long`; split at the separator of its Assay row), or None."""
    lines = [line.rstrip("\r") for line in lines]
    firsts = [
        split_fields(line, sniff_separator(line))[0] if line.strip() else "" for line in lines[:HEADER_SCAN_LINES]
    ]
    if not olink_wide.is_wide(firsts):
        return None
    separator = sniff_separator(lines[[fold_header(c) for c in firsts].index("assay")])
    rows = [split_fields(line, separator) if line.strip() else [] for line in lines]
    return olink_wide.wide_to_long(rows, list(range(1, len(rows) + 1)), separator=separator, where=source)


class ReaderFailure(UnreadableFileError):
    """A reader failed on input it did not foresee (an error inside refranges, not a reason of the file's own):
    the file is refused all the same, so that one such file never stops a run or a scoring; ``__cause__`` holds
    the error, for the log."""


def read_or_refuse(data: bytes, *, source: str, sha256: str, options: dict[str, object] | None = None) -> ReadResult:
    """:func:`read_file`, with any other failure of a reader than running out of memory or a file system error
    raised as ReaderFailure: its error's name and first line, and "report it with the file"."""
    try:
        return read_file(data, source=source, sha256=sha256, options=options)
    except (UnreadableFileError, MemoryError, OSError):
        raise
    except (Exception, pl.exceptions.PanicException) as exc:  # a polars panic is no Exception
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        msg = (
            f"{source}: refranges' reader failed on this file ({type(exc).__name__}: {first}), a refranges defect: "
            "report it with the file"
        )
        raise ReaderFailure(msg) from exc
