"""Olink Target 48 / 96 NPX files in the wide layout, as NPX Manager and NPX Signature's wide export write them.

One column per assay. Down the first column, rows are labelled: a few title rows (the head: "NPX data", the
project), then ``Panel``, ``Assay``, ``Uniprot ID`` and ``OlinkID`` (the top), then one row per sample (the
middle: the sample id, its NPX per assay, and per panel its ``Plate ID`` and ``QC Warning``), then below an
empty row ``LOD``, ``Missing Data freq.``, ``Normalization`` and perhaps ``Assay warning`` (the bottom), one
value per assay.

The file is turned into Olink's long table (one row per sample and assay, with ``SampleID``, ``Assay``,
``OlinkID``, ``UniProt``, ``Panel``, ``PlateID``, ``QC_Warning``, ``Assay_Warning``, ``LOD``, ``NPX``) and read
by the long reader (:func:`transforms.readers.olink.read_olink`), so both layouts of the same data give the
same rows. Every row is one cell of the middle, on the line of its sample.

Wide files of Ct values or of absolute quantification are refused with what to export instead.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from transforms.readers.common import fold_header
from transforms.text import Table, UnreadableFileError

#: The labels of the top rows (folded), in the order Olink writes them; ``Unit`` comes with quantified data.
TOP_LABELS = ("panel", "assay", "uniprot_id", "uniprot", "olinkid", "unit")
#: The labels of the bottom rows (folded) and the long table's column each becomes.
BOTTOM_COLUMNS = {
    "lod": "LOD",
    "missing_data_freq": "MissingFreq",
    "normalization": "Normalization",
    "assay_warning": "Assay_Warning",
}
#: Bottom rows of quantified files: a file with one of these is no NPX file.
NOT_NPX_BOTTOM = {"lloq", "uloq", "lowest_quantifiable_level"}
#: A bottom row per plate (it names no plate): refused.
PER_PLATE_LOD = "plate_lod"
#: Every label that starts the bottom (ends the sample rows).
BOTTOM_LABELS = {*BOTTOM_COLUMNS, *NOT_NPX_BOTTOM, PER_PLATE_LOD}
#: A wide file is recognised by these labels down its first column (folded).
LABELS = {"assay", "olinkid"}

LONG_COLUMNS = [
    "SampleID",
    "Assay",
    "OlinkID",
    "UniProt",
    "Panel",
    "PlateID",
    "QC_Warning",
    "Assay_Warning",
    "LOD",
    "MissingFreq",
    "Normalization",
    "NPX",
]


def is_wide(first_cells: list[str]) -> bool:
    """Whether the first cells of a file's rows are labelled as Olink's wide layout labels them."""
    return {fold_header(c) for c in first_cells} >= LABELS


def _cell(row: list[str], j: int) -> str:
    return row[j].strip() if j < len(row) else ""


def _product(panels: list[str]) -> str | None:
    """Target 48 or Target 96 from the panel names ("Olink Target 96 Inflammation(v.3022)")."""
    found = {m.group(1) for p in panels if (m := re.search(r"(?i)target\s*(48|96)", p))}
    return f"Target {found.pop()}" if len(found) == 1 else None


def _refuse_other_data(head: list[list[str]], top: dict[str, list[str]], bottom: set[str], where: str) -> None:
    """Refuse a wide file of Ct values or of absolute quantification: its numbers are no NPX."""
    said = {c.strip().lower() for row in head for c in row}
    kind = None
    if said & {"ct", "ct data"}:
        kind = "Ct values (before NPX normalisation)"
    elif said & {"quantified", "quantified data"} or "unit" in top or bottom & NOT_NPX_BOTTOM:
        kind = "absolute quantification (Quantified data)"
    if kind is not None:
        msg = (
            f"{where}: an Olink file in the wide layout holding {kind}, which is not read; export the NPX data "
            "from Olink's software (NPX Manager or NPX Signature) and drop that file instead"
        )
        raise UnreadableFileError(msg)


def wide_to_long(
    rows: list[list[str]], lines: list[int], *, separator: str, where: str
) -> tuple[Table, dict[str, object]]:
    """Olink's long table of a wide file (``rows``: every row's cells, ``lines``: each row's line or spreadsheet
    row), and what the file says of itself for the ledger (product, software, project, what was not read).
    Raises UnreadableFileError for a wide file this cannot read, naming the row or column."""
    labels = [fold_header(r[0]) if r else "" for r in rows]
    at = labels.index("assay")
    start = at
    while start > 0 and labels[start - 1] in TOP_LABELS:
        start -= 1
    end = at
    while end + 1 < len(rows) and labels[end + 1] in TOP_LABELS:
        end += 1
    top = {labels[i]: rows[i] for i in range(start, end + 1)}
    if "olinkid" not in top:
        msg = f"{where}: an Olink wide file whose Assay row (line {lines[at]}) is not followed by its OlinkID row"
        raise UnreadableFileError(msg)
    head = [r for r in rows[:start] if any(c.strip() for c in r)]

    # the middle: sample rows from after the top to the first bottom label (an empty row between blocks of
    # samples, one per plate say, does not end it: no sample row is left out of the ledger)
    i = end + 1
    middle: list[int] = []
    while i < len(rows) and labels[i] not in BOTTOM_LABELS:
        if any(c.strip() for c in rows[i]):
            middle.append(i)
        i += 1
    _refuse_other_data(head, top, set(labels[i:]), where)
    bottom: dict[str, list[str]] = {}
    not_read: list[str] = []
    for k in range(i, len(rows)):
        if not any(c.strip() for c in rows[k]):
            continue
        if labels[k] == PER_PLATE_LOD or labels[k] in bottom:  # a second LOD row, say: one per plate
            msg = (
                f"{where}: an Olink wide file with a {rows[k][0].strip()} row per plate (line {lines[k]}), which names "
                "no plate, so whose values are whose cannot be known; export the NPX data in Olink's long format (one "
                "row per sample and assay, with its plate's LOD) and drop that file instead"
            )
            raise UnreadableFileError(msg)
        if labels[k] in BOTTOM_COLUMNS:
            bottom[labels[k]] = rows[k]
        else:
            not_read.append(f"line {lines[k]} ({rows[k][0].strip() or 'no label'})")

    width = max(len(r) for r in [*top.values(), *(rows[m] for m in middle)])
    assays: list[int] = []
    plates: list[int] = []
    warnings: list[int] = []
    others: list[str] = []
    panel_of: dict[int, str] = {}
    last_panel = ""
    for j in range(1, width):
        named = {fold_header(_cell(row, j)) for row in top.values()}
        panel = _cell(top.get("panel", []), j)
        if _cell(top["olinkid"], j):
            last_panel = panel or last_panel  # a merged panel cell is written once, over its columns
            panel_of[j] = last_panel
            assays.append(j)
        elif "plate_id" in named or "plateid" in named:
            plates.append(j)
        elif "qc_warning" in named:
            warnings.append(j)
        elif any(_cell(row, j) for row in [*top.values(), *(rows[m] for m in middle)]):
            others.append(" ".join(_cell(row, j) for row in top.values() if _cell(row, j)) or f"column {j + 1}")
    if not assays:
        msg = f"{where}: an Olink wide file without assay columns (no OlinkID in its OlinkID row, line {lines[end]})"
        raise UnreadableFileError(msg)
    panels = list(dict.fromkeys(panel_of.values()))
    plate_for = _per_panel(plates, panels, top, "Plate ID", where)
    warning_for = _per_panel(warnings, panels, top, "QC Warning", where)

    def per_assay(row: list[str] | None) -> list[str | None]:
        return [None if row is None else _cell(row, j) for j in assays]

    # the sample rows as columns, then one row per sample and assay, row by row (in polars and numpy: a panel of
    # 1,000 assays on 2,000 samples is 2 million cells)
    padded = [r + [""] * (width - len(r)) for r in (rows[m] for m in middle)]
    names = [f"c{j}" for j in range(width)]
    cells = pl.DataFrame(padded, schema=dict.fromkeys(names, pl.String), orient="row").select(
        pl.all().str.strip_chars()
    )
    n_rows, n = len(middle), len(assays)
    row_of = np.repeat(np.arange(n_rows), n)  # long row -> sample row
    pos_of = np.tile(np.arange(n), n_rows)  # long row -> assay
    npx = cells.select(pl.concat_list([f"c{j}" for j in assays])).to_series().explode()
    panel_index = {p: k for k, p in enumerate(panels)}
    panel_of_pos = np.array([panel_index[panel_of[j]] for j in assays], dtype=np.int64)

    def of_panel(by_panel: dict[str, int]) -> pl.Series:
        """Each long row's cell in the column (Plate ID, QC Warning) of its assay's panel; null without one."""
        if not by_panel:
            return pl.repeat(None, n_rows * n, dtype=pl.String, eager=True)
        per_panel = [
            cells.get_column(f"c{by_panel[p]}")
            if p in by_panel
            else pl.repeat(None, n_rows, dtype=pl.String, eager=True)
            for p in panels
        ]
        flat = (
            pl.DataFrame(per_panel, schema=[str(k) for k in range(len(panels))])
            .select(pl.concat_list(pl.all()))
            .to_series()
            .explode()
        )
        return flat.gather(row_of * len(panels) + panel_of_pos[pos_of])

    fixed: dict[str, list[str | None]] = {
        "Assay": per_assay(top["assay"]),
        "OlinkID": per_assay(top["olinkid"]),
        "UniProt": per_assay(top.get("uniprot_id", top.get("uniprot"))),
        "Panel": [panel_of[j] for j in assays],
        **{name: per_assay(bottom.get(label)) for label, name in BOTTOM_COLUMNS.items()},
    }
    long = pl.DataFrame(
        {
            "SampleID": cells.get_column("c0").gather(row_of),
            "NPX": npx,
            "PlateID": of_panel(plate_for),
            "QC_Warning": of_panel(warning_for),
            **{name: pl.Series(values, dtype=pl.String).gather(pos_of) for name, values in fixed.items()},
        }
    )
    line_numbers = pl.Series([lines[m] for m in middle], dtype=pl.Int64).gather(row_of)
    absent = [name for label, name in BOTTOM_COLUMNS.items() if label not in bottom]  # as a long file without them
    frame = long.select([c for c in LONG_COLUMNS if c not in absent])
    info: dict[str, object] = {
        "olink_layout": "wide",
        "product": _product(panels),
        "data_file_type": "NPX File (wide)",
        "software_version": next(
            (c for row in head for c in row if re.search(r"(?i)npx\s*(manager|signature)", c)), None
        ),
        "title": " / ".join(c.strip() for row in head for c in row if c.strip()) or None,
        "lod_source": "row LOD"
        if "lod" in bottom
        else "none: the file has no LOD row, so no value is flagged below the LOD",
        "columns_not_read": others or None,
        "rows_not_read": not_read or None,
    }
    table = Table(frame, line_numbers.alias("line_number"), separator, lines[end])
    return table, {k: v for k, v in info.items() if v is not None}


def _per_panel(
    columns: list[int], panels: list[str], top: dict[str, list[str]], what: str, where: str
) -> dict[str, int]:
    """Which of the ``columns`` (Plate ID or QC Warning) belongs to which panel: by the panel named above it,
    else in the order of the panels; one column serves every panel."""
    if not columns:
        return {}
    if len(columns) == 1:
        return dict.fromkeys(panels, columns[0])
    named = {_cell(top.get("panel", []), j): j for j in columns}
    if set(panels) <= set(named):
        return {p: named[p] for p in panels}
    if len(columns) == len(panels):
        return dict(zip(panels, columns, strict=True))
    msg = (
        f"{where}: an Olink wide file with {len(columns)} {what} columns for {len(panels)} panels, whose panels "
        "cannot be told apart; export the NPX data in Olink's long format instead"
    )
    raise UnreadableFileError(msg)
