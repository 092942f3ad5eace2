"""Luminex xPONENT / INTELLIFLEX multi-section CSV and Bio-Rad Bio-Plex Manager reports.

xPONENT: a header block of key/value lines, then ``DataType:`` sections, each a table
``Location, Sample, <analyte>..., Total Events``. Concentrations come only from the ``Result`` section (or
``Avg Result`` when Result is absent), with units from the ``Units`` section. A file with MFI sections only
cannot give concentrations and is refused as a whole, unless the setting luminex_mfi_section names the MFI
section to read (unit ``MFI``). One canonical row per (well, analyte) cell, so the
ledger counts cells.

Bio-Plex: per analyte a table ``Type, Well, Description, FI, FI - Bkgd, Exp Conc, Obs Conc, ...`` under a
line naming the analyte. ``OOR <`` / ``OOR >`` are censored, ``*12.3`` is extrapolated.
"""

from __future__ import annotations

import re

import polars as pl

from transforms.readers.common import finish, instrument_date, value_checks
from transforms.text import UnreadableFileError, read_table, sniff_separator, split_fields, with_numbers

CONCENTRATION_SECTIONS = ("Result", "Avg Result")
MFI_UNIT = "MFI"  # the unit of a file read from an MFI section (setting luminex_mfi_section)
LOCATION = r"^(\d+)\((\d+),([A-Z]+\d+)\)$"
BIOPLEX_UNIT_NOTE = "Bio-Plex report carries no unit; assumed the kit's reporting unit"


def _fields(line: str) -> list[str]:
    return [f.strip() for f in split_fields(line, sniff_separator(line))]


def _sample_type(sample: pl.Expr) -> pl.Expr:
    return (
        pl.when(sample.str.contains(r"(?i)^(standard|std|s)\d+$"))
        .then(pl.lit("calibrator"))
        .when(sample.str.contains(r"(?i)^(background|blank|b)\d*$"))
        .then(pl.lit("blank"))
        .when(sample.str.contains(r"(?i)^(control|ctrl|c)\d+$"))
        .then(pl.lit("control"))
        .otherwise(pl.lit("sample"))
    )


def _sections(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Section name -> (header line index, end index) for every DataType: section."""
    starts = [i for i, line in enumerate(lines) if line.lstrip('"').startswith("DataType:")]
    out: dict[str, tuple[int, int]] = {}
    for k, i in enumerate(starts):
        fields = _fields(lines[i])
        name = fields[1] if len(fields) > 1 else ""
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        header = i + 1
        while header < end and not lines[header].strip(' ,"'):
            header += 1
        stop = header + 1
        while stop < end and lines[stop].strip(' ,"'):
            stop += 1
        out.setdefault(name, (header, stop))
    return out


def read_xponent(
    lines: list[str], *, source: str, sha256: str, mfi_section: str = ""
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The cells of the Result section (or Avg Result), in the units of the Units section. ``mfi_section``
    (setting luminex_mfi_section: ``Median`` or ``Net MFI``): a file without concentrations is read from that
    MFI section instead, in the unit ``MFI``; without it such a file is refused, saying what to do."""
    meta: dict[str, str] = {}
    for line in lines[:200]:
        fields = _fields(line)
        if len(fields) >= 2 and fields[0] and fields[0] not in meta:
            meta[fields[0]] = fields[1]
        if fields and fields[0] == "Results":
            break
    sections = _sections(lines)
    found = next((s for s in CONCENTRATION_SECTIONS if s in sections), None)
    mfi = found is None and bool(mfi_section) and mfi_section in sections
    if found is None and not mfi:
        msg = (
            f"{source}: Luminex export has MFI sections only ({', '.join(sections) or 'none'}), no Result section "
            "with concentrations; run the protocol's standard-curve analysis and export again"
            + (
                f" (setting luminex_mfi_section is {mfi_section!r}, and the file has no such section)"
                if mfi_section
                else ", or set luminex_mfi_section to read its Median or Net MFI intensities (docs/input-formats.md)"
            )
        )
        raise UnreadableFileError(msg)
    if mfi:
        found = mfi_section
    units: dict[str, str] = {}
    if "Units" in sections and not mfi:
        h, e = sections["Units"]
        block = [_fields(line) for line in lines[h:e]]
        names = next((r[1:] for r in block if r and r[0].rstrip(":") == "Analyte"), [])
        unit_row = next((r[1:] for r in block if r and r[0].rstrip(":") == "Units"), [])
        units = {n: u for n, u in zip(names, unit_row, strict=False) if n}
    assert found is not None
    header, end = sections[found]
    table = read_table(lines, header_index=header, end_index=end, source=source)
    frame = table.frame.with_columns(pl.Series("line_number", table.line_numbers, dtype=pl.Int64))
    analytes = [c for c in frame.columns if c not in {"Location", "Sample", "Total Events", "line_number"}]
    batch = meta.get("Batch") or source
    run_date = instrument_date(meta.get("BatchStartTime") or meta.get("Date"))
    if "Sample" not in frame.columns:
        msg = (
            f"{source}: line {header + 1}: the {found} section's header has no Sample column "
            f"({', '.join(frame.columns[:6])}); export the file again from xPONENT"
        )
        raise UnreadableFileError(msg)
    index = [c for c in ("Location", "Sample", "line_number") if c in frame.columns]
    long = frame.unpivot(index=index, on=analytes, variable_name="analyte_raw", value_name="value_text")
    if "Location" not in frame.columns:
        long = long.with_columns(pl.lit(None, pl.String).alias("Location"))
    loc = pl.col("Location").str.extract_groups(LOCATION)
    long = with_numbers(long, pl.col("value_text"))
    long = long.with_columns(
        pl.col("Sample").replace("", None).alias("sample_id"),
        (pl.lit(f"{batch}-P") + loc.struct.field("2").fill_null("1")).alias("plate_id"),
        loc.struct.field("3").alias("well"),
        pl.lit("luminex").alias("platform"),
        pl.lit(meta.get("ProtocolName") or "Luminex").alias("panel"),
        pl.lit(run_date, pl.Date).alias("run_date"),
        pl.col("analyte_raw").str.replace(r"\s*\(\d+\)$", "").alias("analyte_raw"),
        (
            pl.lit(MFI_UNIT)
            if mfi
            else pl.col("analyte_raw").replace_strict(units, default=None, return_dtype=pl.String)
        ).alias("unit_raw"),
    ).with_columns(_sample_type(pl.col("sample_id").fill_null("")).alias("sample_type"))
    if mfi:
        note = (
            f"MFI from the {found} section, no standard curve (setting luminex_mfi_section): comparable within one "
            "kit lot and instrument only"
        )
        long = long.with_columns(pl.lit(note).alias("unit_note"))
    label = pl.col("analyte_raw").fill_null("?")
    checks = value_checks(label)
    checks.append(
        (
            "unit_present",
            pl.col("unit_raw").is_null() | (pl.col("unit_raw") == ""),
            pl.lit("no unit for ") + label + pl.lit(" in the Units section; export with units"),
        )
    )
    return finish(long, source=source, sha256=sha256, checks=checks)


def read_bioplex(lines: list[str], *, source: str, sha256: str, default_unit: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    headers = [i for i, line in enumerate(lines) if {"type", "well", "obs conc"} <= {f.lower() for f in _fields(line)}]
    frames = []
    for k, h in enumerate(headers):
        end = headers[k + 1] if k + 1 < len(headers) else len(lines)
        title = next((lines[j] for j in range(h - 1, -1, -1) if lines[j].strip(' ,"\t')), "")
        name = [f for f in _fields(title) if f]
        analyte = re.sub(r"^analyte:?\s*", "", " ".join(name[-1:]), flags=re.IGNORECASE).strip()
        analyte = re.sub(r"\s*\(\d+\)$", "", analyte)
        # the next block's title line sits just above its header: stop before it
        stop = end - 1 if k + 1 < len(headers) else end
        table = read_table(lines, header_index=h, end_index=max(stop, h + 1), source=source)
        frames.append(
            table.frame.with_columns(
                pl.Series("line_number", table.line_numbers, dtype=pl.Int64), pl.lit(analyte).alias("analyte_raw")
            )
        )
    frame = pl.concat(frames, how="diagonal_relaxed")
    plate = source
    for line in lines[: headers[0]]:
        fields = [f for f in _fields(line) if f]
        if fields and fields[0].lower().startswith("plate"):
            plate = (fields[0].split(":", 1)[1].strip() if ":" in fields[0] else "") or (fields[1:] or [source])[0]
            break
    col = {c.lower(): c for c in frame.columns}
    kind = pl.col(col["type"]).str.to_uppercase()
    frame = with_numbers(frame, pl.col(col["obs conc"]))
    frame = frame.with_columns(
        pl.col(col.get("description", col["type"])).replace("", None).alias("sample_id"),
        pl.col(col["well"]).alias("well"),
        pl.col(col["obs conc"]).alias("value_text"),
        pl.lit("bioplex").alias("platform"),
        pl.lit("Bio-Plex").alias("panel"),
        pl.lit(plate).alias("plate_id"),
        pl.lit(default_unit).alias("unit_raw"),
        pl.lit(f"{BIOPLEX_UNIT_NOTE} ({default_unit})").alias("unit_note"),
        pl.when(kind.str.starts_with("S"))
        .then(pl.lit("calibrator"))
        .when(kind.str.starts_with("C"))
        .then(pl.lit("control"))
        .when(kind.str.starts_with("B"))
        .then(pl.lit("blank"))
        .otherwise(pl.lit("sample"))
        .alias("sample_type"),
    )
    return finish(frame, source=source, sha256=sha256, checks=value_checks(pl.col("analyte_raw").fill_null("?")))
