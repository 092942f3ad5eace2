"""Bytes of a delimited export -> clean text lines that keep their original line numbers.

Handles what real lab files carry: UTF-8 BOM, UTF-16 with BOM (Excel "Unicode text"), Windows line
endings, comment lines, blank lines, trailing empty columns and repeated header lines. Numeric cells are
read by :func:`with_numbers`, which keeps censoring tokens ("< 0.12", "OOR >", "*12.3") as flags.
No I/O here: callers hand in bytes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import polars as pl


def display_text(value: object) -> str:
    """A value as people read it: a float to 10 significant digits (an interpolated limit reads -2.4824, not
    -2.4823999999999997), anything else as it is. Files and JSON carry every digit; this is for display."""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


class UnreadableFileError(ValueError):
    """The file as a whole cannot be read; the message says why and what to do."""


def decode(data: bytes, *, source: str) -> str:
    """Decode an export to text: BOMs honoured, UTF-8 first, then Windows-1252 (old Excel exports)."""
    if not data.strip():
        msg = f"{source}: the file is empty; ask the lab to export it again"
        raise UnreadableFileError(msg)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    elif data.startswith(b"\xef\xbb\xbf"):
        text = data[3:].decode("utf-8", errors="strict")
    else:
        if b"\x00" in data[:4096]:
            msg = f"{source}: the file is binary, not a text export (NUL bytes in the first 4 kB)"
            raise UnreadableFileError(msg)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def sniff_separator(line: str) -> str:
    """The field separator of a header line: tab, semicolon or comma, whichever occurs most."""
    counts = {sep: line.count(sep) for sep in ("\t", ";", ",")}
    return max(counts, key=lambda s: counts[s])


@dataclass(frozen=True)
class Table:
    """A table cut out of a text export: all cells as text, plus the 1-based source line of each row."""

    frame: pl.DataFrame
    line_numbers: pl.Series  # Int64, one per row of frame
    separator: str
    header_line: int


def split_fields(line: str, separator: str) -> list[str]:
    """Fields of one line, honouring double quotes (used for header lines only); a line whose quote is never
    closed (csv: "new-line character seen in unquoted field") is split at every separator, quotes dropped."""
    import csv

    try:
        return next(csv.reader([line], delimiter=separator))
    except csv.Error:
        return [cell.strip('"') for cell in line.split(separator)]


def _column_names(header: str, sep: str, *, source: str, header_index: int) -> list[str]:
    """Column names of a header line: trailing empty names dropped, repeated names numbered."""
    names = [n.strip() for n in split_fields(header, sep)]
    while names and names[-1] == "":
        names.pop()
    if not names:
        msg = f"{source}: line {header_index + 1}: empty header"
        raise UnreadableFileError(msg)
    seen: dict[str, int] = {}
    unique: list[str] = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return unique


def _empty_rows(table: Table) -> pl.Series | None:
    """The mask of rows whose cells are all empty (blank lines, lines of separators), or None when none is."""
    first = table.frame.get_column(table.frame.columns[0])
    if not first.eq("").any():  # an empty row starts with an empty cell: one column tells most files apart
        return None
    empty = table.frame.select(pl.all_horizontal(pl.all() == "").alias("e")).to_series()
    return empty if empty.any() else None


def _without_empty_rows(table: Table, empty: pl.Series | None) -> Table:
    """``table`` without the rows of ``empty`` (:func:`_empty_rows`)."""
    if empty is None:
        return table
    return Table(table.frame.filter(~empty), table.line_numbers.filter(~empty), table.separator, table.header_line)


HEAD_BYTES = 256 * 1024  # what is decoded to find the header of a clean UTF-8 export


def clean_head(data: bytes) -> list[str] | None:
    """The first lines of an export that :func:`read_table_bytes` may read straight from its bytes: UTF-8
    (with or without BOM), LF or CRLF line ends, no NUL bytes. None when the careful path must read it."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096] or not data or data.isspace():
        return None
    head = data[:HEAD_BYTES]
    if len(data) > HEAD_BYTES:
        head = head[: head.rfind(b"\n") + 1]  # whole lines only
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    lines = text.replace("\r\n", "\n").split("\n")
    return lines[:-1] if len(data) > HEAD_BYTES else lines


def read_table_bytes(
    data: bytes,
    head: list[str],
    *,
    header_index: int,
    source: str,
    comment_prefixes: tuple[str, ...] = ("#",),
    columns: Collection[str] | None = None,
) -> Table | None:
    """:func:`read_table` for the common clean export, straight from its bytes: the body goes to polars
    without decoding, splitting or joining lines. ``head`` is :func:`clean_head`. ``columns`` (names, any
    case) are the columns the caller reads: only those and the first are parsed (None: all). Returns None
    when the file needs the careful path: a lone CR, comment lines, a repeated header, text that is not
    UTF-8, a row count that differs from the line count (quoted line breaks), or, when only some columns are
    parsed, a row whose parsed cells are all empty (whether its other cells are empty too decides if it is
    a blank row or a row to hold back, and only the careful path sees them)."""
    if header_index >= len(head) - 1:
        return None
    if data.find(b"\r") != -1 and data.count(b"\r") != data.count(b"\r\n"):
        return None  # a lone CR ends lines on old Macs
    header = head[header_index]
    sep = sniff_separator(header)
    names = _column_names(header, sep, source=source, header_index=header_index)
    keep = None
    if columns is not None:  # the first column always: comment lines and repeated headers show there
        wanted = {c.lower() for c in columns}
        keep = [i for i, n in enumerate(names) if i == 0 or n.lower() in wanted]
    pos = 0
    for _ in range(header_index + 1):  # the byte where the body starts
        pos = data.find(b"\n", pos) + 1
        if pos == 0:
            return None
    end = len(data)
    blank = (sep + '" \t\r').encode()
    while True:  # a file may end in line breaks and rows of empty cells (Excel's trailing rows)
        while end > pos and data[end - 1 : end] in (b"\n", b"\r", b" ", b"\t"):
            end -= 1
        last = data.rfind(b"\n", pos, end) + 1
        if end <= pos or last <= pos or data[last:end].strip(blank):
            break
        end = last
    if end <= pos:
        return None
    # a row per line unless a quoted cell holds a line break: without a quote there is nothing to count
    # (blank lines are rows of empty cells, dropped below with their line numbers kept)
    n_lines = data.count(b"\n", pos, end) + 1 if data.find(b'"', pos, end) != -1 else None
    payload = data if data[end:] in (b"", b"\n", b"\r\n") else data[:end]  # a copy only for blank tails
    try:
        table = _parse_body(
            payload,
            n_lines,
            header_index + 2,
            names,
            sep,
            source,
            header_index,
            skip_lines=header_index + 1,
            keep=keep,
        )
    except (UnreadableFileError, pl.exceptions.ComputeError):
        return None  # not UTF-8 after all, or quoted line breaks: the careful path reads it
    frame = table.frame
    first = frame.get_column(frame.columns[0])
    if any(first.str.starts_with(p).any() for p in comment_prefixes):
        return None  # comment lines
    header_cells = dict(zip(names, (c.strip() for c in split_fields(header, sep)), strict=False))
    if (
        first.eq(header_cells[names[0]]).any()
        and frame.select(pl.all_horizontal(pl.col(c) == header_cells[c] for c in frame.columns).any()).item()
    ):
        return None  # the header repeated (exports appended to each other)
    empty = _empty_rows(table)
    if keep is not None and len(keep) < len(names) and empty is not None:
        return None  # empty in the parsed columns: blank, or a row with only other cells (held back)
    return _without_empty_rows(table, empty)  # blank and empty rows, as the careful path drops them


def read_table(
    lines: list[str],
    *,
    header_index: int,
    source: str,
    end_index: int | None = None,
    separator: str | None = None,
    comment_prefixes: tuple[str, ...] = ("#",),
) -> Table:
    """Read the table whose header is ``lines[header_index]`` into an all-text frame.

    Blank lines, comment lines and repeated copies of the header are skipped; each kept row remembers
    its source line. Trailing unnamed columns are dropped.
    """
    header = lines[header_index]
    sep = separator or sniff_separator(header)
    unique = _column_names(header, sep, source=source, header_index=header_index)
    stop = len(lines) if end_index is None else end_index
    first = header_index + 1
    while stop > first and not lines[stop - 1].strip(sep + '" '):
        stop -= 1  # trailing empty rows
    joined = "\n".join(lines[first:stop])
    padded = "\n" + joined + "\n"
    quirks = any(("\n" + p) in padded for p in comment_prefixes) or ("\n" + header + "\n") in padded
    if not quirks and stop > first:  # the common case: one pass over the body, then drop empty rows
        try:
            table = _parse_body(joined.encode("utf-8"), stop - first, first + 1, unique, sep, source, header_index)
        except UnreadableFileError:
            pass  # blank lines made the row count differ: take the careful path below
        else:
            return _without_empty_rows(table, _empty_rows(table))
    body = pl.DataFrame({"line": pl.Series(lines[first:stop], dtype=pl.String)}).with_row_index("i")
    stripped = pl.col("line").str.strip_chars()
    keep = (
        (stripped.str.strip_chars(sep + '"').str.strip_chars() != "")
        & ~pl.any_horizontal([stripped.str.starts_with(p) for p in comment_prefixes] or [pl.lit(False)])
        & (stripped != header.strip())
    )
    kept = body.filter(keep)
    numbers = (kept["i"].cast(pl.Int64) + (first + 1)).alias("line_number")
    if kept.height == 0:
        frame = pl.DataFrame(schema=dict.fromkeys(unique, pl.String))
        return Table(frame, numbers, sep, header_index + 1)
    body_text = kept["line"].str.join("\n").item()
    return _parse_body(body_text.encode("utf-8"), kept.height, numbers, unique, sep, source, header_index)


def _parse_body(
    payload: bytes,
    n_lines: int | None,
    numbers: pl.Series | int,
    names: list[str],
    sep: str,
    source: str,
    header_index: int,
    *,
    skip_lines: int = 0,
    keep: list[int] | None = None,
) -> Table:
    """Parse data lines (already filtered; after ``skip_lines`` lines of ``payload``) into an all-text frame
    with the given column names. ``numbers`` are the lines' numbers, or the number of the first line when
    they follow each other: the parser then counts them itself, in the same chunks as the cells (a Series
    in other chunks would make every later operation on the frame realign all of its columns). ``n_lines``
    is the number of lines, checked against the rows parsed, or None when no quote can join lines.
    ``keep``: the indices of the columns to parse (None: all). A quote that opens a cell and is never closed
    raises UnreadableFileError naming its line (polars said "invalid csv file" in a traceback)."""
    width = len(names)
    try:
        raw = pl.read_csv(
            payload,  # bytes: twice as fast as a StringIO
            skip_lines=skip_lines,
            has_header=False,
            separator=sep,
            # the header gives the width: a short first row must not cut the columns of every later row
            schema={f"__c{i}": pl.String for i in range(width)},
            missing_columns="insert",
            extra_columns="ignore",
            truncate_ragged_lines=True,
            empty_string_is_null=False,
            row_index_name="__line" if isinstance(numbers, int) else None,
            row_index_offset=numbers if isinstance(numbers, int) else 0,
            columns=keep,
        )
    except pl.exceptions.ComputeError as exc:  # an unbalanced quote
        where = _open_quote(payload, skip_lines, numbers)
        msg = (
            f'{source}: {where}a quote (") opens a cell that no quote closes; correct that cell (a quote inside '
            "a cell is written twice) or export the file again"
        )
        raise UnreadableFileError(msg) from exc
    if isinstance(numbers, int):
        numbers = in_chunks_of(
            raw.drop_in_place("__line").cast(pl.Int64).alias("line_number"), raw.get_column(raw.columns[0])
        )
    if n_lines is not None and raw.height != n_lines:
        msg = (
            f"{source}: {n_lines} data lines but {raw.height} rows after parsing; a quoted cell spans "
            "lines. Re-export without line breaks inside cells."
        )
        raise UnreadableFileError(msg)
    frame = raw.rename({f"__c{i}": name for i, name in enumerate(names) if f"__c{i}" in raw.columns})
    return Table(strip_cells(frame, payload, sep), numbers, sep, header_index + 1)


def _open_quote(payload: bytes, skip_lines: int, numbers: pl.Series | int) -> str:
    """ "line N: " for the first data line with an odd number of quotes (where an unclosed quote opens), or
    nothing when none has one."""
    for i, line in enumerate(payload.split(b"\n")[skip_lines:]):
        if line.count(b'"') % 2:
            number = numbers + i if isinstance(numbers, int) else numbers[i] if i < numbers.len() else None
            return "" if number is None else f"line {number}: "
    return ""


def in_chunks_of(series: pl.Series, like: pl.Series) -> pl.Series:
    """``series`` cut into the chunks of ``like`` (zero-copy slices). A projected read returns its row index
    in one chunk and the cells in hundreds: every later step on a frame with both realigned all of its
    columns (10 M rows: about 0.5 s per step)."""
    if series.n_chunks() == like.n_chunks():
        return series
    pieces, offset = [], 0
    for chunk in like.get_chunks():
        pieces.append(series.slice(offset, chunk.len()))
        offset += chunk.len()
    return pl.concat(pieces, rechunk=False)


# bytes that start or are whitespace other than ' ' (tab, VT, FF, and the UTF-8 lead bytes of U+0085,
# U+00A0, U+1680, U+2000-U+205F and U+3000); finding one is fast (memchr), unlike a two-byte pattern
_OTHER_SPACE_BYTES = (b"\t", b"\x0b", b"\x0c", b"\xc2", b"\xe1", b"\xe2", b"\xe3")


def strip_cells(frame: pl.DataFrame, payload: bytes, sep: str) -> pl.DataFrame:
    """Cells without leading or trailing whitespace, as ``str.strip_chars()`` makes them, at less cost:
    when the bytes hold no whitespace but ' ' (and the separator), only the columns with a cell that starts
    or ends with ' ' are stripped. Most exports have none."""
    others = [b for b in _OTHER_SPACE_BYTES if b != sep.encode()] + ([b'"'] if sep == "\t" else [])  # '"\tx"'
    if payload.isascii():  # one pass instead of one per multi-byte lead byte
        others = [b for b in others if b < b"\x80"]
    if any(payload.find(b) != -1 for b in others):
        return frame.with_columns(pl.all().str.strip_chars())
    padded = frame.select((pl.col(c).str.starts_with(" ") | pl.col(c).str.ends_with(" ")).any() for c in frame.columns)
    names = [c for c, hit in zip(frame.columns, padded.row(0), strict=True) if hit]
    return frame.with_columns(pl.col(names).str.strip_chars()) if names else frame


#: Cells that mean "no value reported".
MISSING_TOKENS = ["", "na", "n/a", "nan", "none", "null", "-", "--", "n.a."]


def with_numbers(frame: pl.DataFrame, cells: pl.Expr, *, decimal_comma: bool = False, prefix: str = "") -> pl.DataFrame:
    """Read numeric cells with censoring tokens, vectorised.

    Adds ``<prefix>value`` (Float64), ``<prefix>censoring``, ``<prefix>limit_value``, ``<prefix>is_number_ok``
    (False where the cell is neither a number, a known token nor missing) and ``<prefix>is_missing``.
    Recognised forms: ``12.3``, ``1,234.5`` (or ``1.234,5`` with decimal commas), ``< 0.12`` / ``<LOD`` /
    ``OOR <`` (below, limit when given), ``> 500`` / ``>ULOQ`` / ``OOR >`` (above), ``*12.3`` (extrapolated).
    A cell that starts with '=', '+', '@' is never evaluated: it is text unless it is a plain number.

    Most cells of an export are plain numbers: they are read by one cast, and only the other cells go
    through the token rules (:func:`_read_tokens`), whose results are put back in place.
    """
    names = [f"{prefix}{c}" for c in ("value", "censoring", "limit_value", "is_number_ok", "is_missing")]
    text = frame.with_columns(cells.alias("__c"))["__c"]  # with_columns: a literal broadcasts
    # padded cells fail this cast and take the token rules, which strip them
    plain = None if decimal_comma else text.cast(pl.Float64, strict=False)
    if plain is None:  # with decimal commas '1.234' is a thousand: every cell takes the token rules
        rest = _read_tokens(pl.DataFrame({"__c": text}), pl.col("__c"), decimal_comma=True)
        return frame.with_columns([rest[c].alias(n) for c, n in zip(TOKEN_COLUMNS, names, strict=True)])
    ok = plain.is_finite().fill_null(False)
    if ok.all():  # columns in the frame's own chunks (new Series in other chunks would realign every column)
        lits = [pl.lit(None, pl.String), pl.lit(None, pl.Float64), pl.lit(True), pl.lit(False)]
        return frame.with_columns(plain.alias(names[0]), *(e.alias(n) for e, n in zip(lits, names[1:], strict=True)))
    n = frame.height
    value = plain.set(~ok, None)
    censoring = pl.repeat(None, n, dtype=pl.String, eager=True)
    limit = pl.repeat(None, n, dtype=pl.Float64, eager=True)
    number_ok = pl.repeat(True, n, dtype=pl.Boolean, eager=True)
    missing = pl.repeat(False, n, dtype=pl.Boolean, eager=True)
    out = [value, censoring, limit, number_ok, missing]
    where = (~ok).arg_true()
    rest = _read_tokens(pl.DataFrame({"__c": text.filter(~ok)}), pl.col("__c"), decimal_comma=False)
    for series, column in zip(out, TOKEN_COLUMNS, strict=True):
        series.scatter(where, rest[column])
    # the new columns are one chunk each: one copy of the frame now beats realigning it in every later step
    return frame.with_columns([series.alias(name) for series, name in zip(out, names, strict=True)]).rechunk()


TOKEN_COLUMNS = ["value", "censoring", "limit_value", "is_number_ok", "is_missing"]


def _read_tokens(frame: pl.DataFrame, cells: pl.Expr, *, decimal_comma: bool = False) -> pl.DataFrame:
    """The token rules of :func:`with_numbers` for every cell, in stages (each step computed once):
    returns the TOKEN_COLUMNS."""
    t, low, num = pl.col("__nt"), pl.col("__nl"), pl.col("__nn")
    if decimal_comma:
        numeric_text = t.str.replace_all(r"[\s'.]", "").str.replace(",", ".", literal=True)
    else:
        numeric_text = t.str.replace_all(r"[\s']", "").str.replace_all(r",(\d{3})", "$1")
    staged = (
        frame.with_columns(cells.str.strip_chars().alias("__nt"))
        .with_columns(t.str.to_lowercase().alias("__nl"), numeric_text.alias("__nn"))
        .with_columns(
            num.cast(pl.Float64, strict=False).alias("__plain"),
            num.str.replace(r"^[<>*]+", "")
            .str.replace(r"^(?i)(oor|lod|lloq|uloq)$", "")
            .cast(pl.Float64, strict=False)
            .alias("__number"),
            (low.is_in(MISSING_TOKENS) | t.is_null()).alias("__missing"),
            (low.str.starts_with("<") | low.str.starts_with("oor <") | low.str.starts_with("oor<")).alias("__below"),
            (low.str.starts_with(">") | low.str.starts_with("oor >") | low.str.starts_with("oor>")).alias("__above"),
            low.str.contains("lloq", literal=True).alias("__lloq"),
            low.str.starts_with("*").alias("__star"),
        )
        .with_columns(
            # 'inf' or 'NaN' written as numbers are not readings
            pl.when(pl.col("__plain").is_finite()).then(pl.col("__plain")).alias("__plain"),
            pl.when(pl.col("__number").is_finite()).then(pl.col("__number")).alias("__number"),
        )
        .with_columns((pl.col("__star") & pl.col("__number").is_not_null()).alias("__extrap"))
    )
    below, above, extrap = pl.col("__below"), pl.col("__above"), pl.col("__extrap")
    out = staged.with_columns(
        pl.when(extrap)
        .then(pl.col("__number"))
        .when(below | above)
        .then(None)
        .otherwise(pl.col("__plain"))
        .alias("value"),
        pl.when(below & pl.col("__lloq"))
        .then(pl.lit("below_lloq"))
        .when(below)
        .then(pl.lit("below_lod"))
        .when(above)
        .then(pl.lit("above_uloq"))
        .when(extrap)
        .then(pl.lit("extrapolated"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("censoring"),
        pl.when(below | above).then(pl.col("__number")).otherwise(None).alias("limit_value"),
        (pl.col("__missing") | pl.col("__plain").is_not_null() | below | above | extrap).alias("is_number_ok"),
        pl.col("__missing").alias("is_missing"),
    )
    return out.select(TOKEN_COLUMNS)


def uses_decimal_comma(cells: pl.Series, separator: str) -> bool:
    """True when a non-comma-separated file writes numbers with decimal commas ('1,5', '1.234,5')."""
    if separator == ",":
        return False
    return bool(cells.drop_nulls().str.contains(r"^[<>*]?\s*-?[\d.]*\d,\d+$").any())
