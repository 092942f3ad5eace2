from __future__ import annotations

import polars as pl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from transforms.text import (
    UnreadableFileError,
    clean_head,
    decode,
    read_table,
    read_table_bytes,
    strip_cells,
    with_numbers,
)


def _parse(cells: list[str | None], decimal_comma: bool = False) -> pl.DataFrame:
    return with_numbers(pl.DataFrame({"c": cells}, schema={"c": pl.String}), pl.col("c"), decimal_comma=decimal_comma)


def test_decode_handles_bom_utf16_and_crlf() -> None:
    text = "a,b\r\n1,2\r\n"
    assert decode(b"\xef\xbb\xbf" + text.encode(), source="f") == "a,b\n1,2\n"
    assert decode(text.encode("utf-16"), source="f") == "a,b\n1,2\n"
    assert decode("a;b\r1;µ\r".encode("cp1252"), source="f") == "a;b\n1;µ\n"


@pytest.mark.parametrize("data", [b"", b"  \n\n", b"\x00\x01\x02binary"])
def test_decode_refuses_empty_and_binary_files_with_the_file_name(data: bytes) -> None:
    with pytest.raises(UnreadableFileError, match=r"export\.csv"):
        decode(data, source="export.csv")


def test_censoring_tokens_become_flags_with_limits_never_numbers() -> None:
    out = _parse(["< 0.12", "<LOD", "OOR <", "OOR >", ">ULOQ", "> 500", "*12.3", "<LLOQ"])
    assert out["censoring"].to_list() == [
        "below_lod",
        "below_lod",
        "below_lod",
        "above_uloq",
        "above_uloq",
        "above_uloq",
        "extrapolated",
        "below_lloq",
    ]
    assert out["value"].to_list() == [None, None, None, None, None, None, 12.3, None]
    assert out["limit_value"].to_list() == [0.12, None, None, None, None, 500.0, None, None]
    assert out["is_number_ok"].all()


def test_text_tokens_are_missing_and_junk_is_refused() -> None:
    out = _parse(["NaN", "N/A", "", None, "***", "abc", "=1+2", "@SUM(A1)"])
    assert out["is_missing"].to_list() == [True, True, True, True, False, False, False, False]
    assert out["is_number_ok"].to_list() == [True, True, True, True, False, False, False, False]
    assert out["value"].null_count() == 8


def test_thousands_separators_and_decimal_commas() -> None:
    assert _parse(["1,234.5", "12.5", "-3"])["value"].to_list() == [1234.5, 12.5, -3.0]
    assert _parse(["1.234,5", "12,5", "< 0,12"], decimal_comma=True).select("value", "limit_value").rows() == [
        (1234.5, None),
        (12.5, None),
        (None, 0.12),
    ]


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).map(lambda x: round(x, 6)))
def test_numbers_survive_both_locales(x: float) -> None:
    point = f"{x:.6f}"
    comma = point.replace(".", ",")
    assert _parse([point])["value"][0] == pytest.approx(x)
    assert _parse([comma], decimal_comma=True)["value"][0] == pytest.approx(x)


def test_read_table_skips_comments_blank_lines_repeated_headers_and_keeps_line_numbers() -> None:
    lines = ["# exported by X", "a,b,,", "1,2,,", "", "# note", "a,b,,", "3,4,,", ",,,", "5,6"]
    table = read_table(lines, header_index=1, source="f")
    assert table.frame.columns == ["a", "b"]
    assert table.frame.rows() == [("1", "2"), ("3", "4"), ("5", "6")]
    assert table.line_numbers.to_list() == [3, 7, 9]


@given(
    st.lists(
        st.tuples(st.text("0123456789", min_size=1, max_size=6), st.sampled_from(["x", "y", "NaN", ""])),
        max_size=40,
    )
)
def test_read_table_loses_no_row_and_keeps_leading_zeros(rows: list[tuple[str, str]]) -> None:
    lines = ["id;val", *[f"{a};{b}" for a, b in rows]]
    table = read_table(lines, header_index=0, source="f")
    assert table.frame.height == len(rows)
    assert table.frame["id"].to_list() == [a for a, _ in rows]
    assert table.line_numbers.to_list() == list(range(2, len(rows) + 2))


LINE_PIECES = st.sampled_from(
    [
        *["1,2,x", " 3 , 4 ,y", "5,,", ",,", "", "# note", "a,b,c", '"6","7",z', "8,9,é", "  ", "10,11,12,13"],
        *['" 6 ",7 ,z', "\t1,2,x\t", "1,\u00a02\u00a0,x", "1, 2,x\u3000", "\u2009 4,5,y", "x,y,\u0085z"],
    ]
)


@given(
    st.lists(LINE_PIECES, max_size=25),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
    st.sampled_from(["", "\n", "\n\n", "\n,,\n"]),
    st.integers(0, 2),
    st.sampled_from([None, ("C",), ("b", "c")]),
)
def test_the_bytes_path_reads_what_the_careful_path_reads_or_leaves_the_file_to_it(
    body: list[str], newline: str, bom: bool, tail: str, preamble: int, columns: tuple[str, ...] | None
) -> None:
    lines = [f"# exported by the instrument {i}" for i in range(preamble)] + ["a,b,c", *body]
    data = (b"\xef\xbb\xbf" if bom else b"") + (newline.join(lines) + tail.replace("\n", newline)).encode()
    head = clean_head(data)
    if newline == "\r" and body:
        assert head is None or read_table_bytes(data, head, header_index=preamble, source="f") is None
        return
    careful = read_table(decode(data, source="f").split("\n"), header_index=preamble, source="f")
    assert head is not None
    fast = read_table_bytes(data, head, header_index=preamble, source="f", columns=columns)
    quirky = any(line.startswith("#") or line == "a,b,c" for line in body)
    # with some columns parsed, a row empty in those is a quirk too (blank or not is for the careful path)
    parsed = ["a", *(c for c in "bc" if columns is None or c in {x.lower() for x in columns})]
    index = [i for i, c in enumerate("abc") if c in parsed]
    cells = [[c.strip(' "\t') for c in line.split(",")] + ["", ""] for line in body if not line.startswith("#")]
    some_empty = any(all(not row[i] for i in index) for row in cells)
    if fast is None:
        # only a quirk sends a file to the careful path
        assert quirky or not "".join(body).strip(', "\n') or (columns is not None and some_empty)
        return
    assert fast.frame.equals(careful.frame.select(parsed))
    assert fast.line_numbers.to_list() == careful.line_numbers.to_list()


def test_a_short_first_row_does_not_cut_the_columns_of_the_rows_after_it() -> None:
    lines = ["sample_id,analyte,value,unit", "S1,IL-6", "S2,TNF,3.5,pg/mL"]  # a row missing its last cells
    careful = read_table(lines, header_index=0, source="f")
    data = "\n".join(lines).encode()
    fast = read_table_bytes(data, clean_head(data) or [], header_index=0, source="f")
    for table in (careful, fast):
        assert table is not None
        assert table.frame.rows() == [("S1", "IL-6", "", ""), ("S2", "TNF", "3.5", "pg/mL")]


def test_a_clean_export_is_read_from_its_bytes_and_a_windows_1252_one_is_not() -> None:
    data = b"SampleID;NPX\r\nS1;1,5\r\nS2;2\r\n"
    head = clean_head(data)
    assert head is not None and read_table_bytes(data, head, header_index=0, source="f") is not None
    latin = "SampleID;Assay\nS1;TNF-\xe0\n".encode("cp1252")
    assert clean_head(latin) is None  # not UTF-8: decoded by the careful path


CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-(10**7), 10**7).map(lambda i: f"{i:,}"),
    st.sampled_from(["< 0.12", "<LOD", "OOR <", "> 500", ">ULOQ", "OOR >", "*12.3", "NaN", "N/A", "", " 7 ", "+5"]),
    st.sampled_from(["=1+2", "@x", "-", "abc", "1 234", "1'234.5", "1.234,5", "1,5", "***", "<LLOQ", "inf"]),
    st.tuples(
        st.sampled_from([" ", "\t", "\u00a0", ""]), st.floats(-1e6, 1e6).map(str), st.sampled_from([" ", ""])
    ).map("".join),  # padded numbers
    st.none(),
)


@given(st.lists(CELLS, max_size=30), st.booleans())
def test_the_plain_number_shortcut_reads_every_cell_as_the_token_rules_do(cells: list[str | None], comma: bool):
    from transforms.text import TOKEN_COLUMNS, _read_tokens

    frame = pl.DataFrame({"cell": pl.Series(cells, dtype=pl.String)})
    fast = with_numbers(frame, pl.col("cell"), decimal_comma=comma, prefix="x_")
    rules = _read_tokens(frame, pl.col("cell"), decimal_comma=comma)
    assert fast.columns == ["cell", *[f"x_{c}" for c in TOKEN_COLUMNS]]
    assert fast.drop("cell").rename(lambda c: c[2:]).equals(rules)
    absent = with_numbers(frame, pl.lit(None, dtype=pl.String))  # an export without the column
    assert absent.height == frame.height and absent["is_missing"].all()


SPACES = [" ", "\t", "\u00a0", "\u0085", "\u1680", "\u2003", "\u2028", "\u205f", "\u3000", "\x0b", "\x0c"]


@given(
    st.lists(
        st.lists(st.text(st.sampled_from(["a", "1", "é", *SPACES]), max_size=4), min_size=2, max_size=2), max_size=8
    ),
    st.sampled_from([",", ";", "\t"]),
)
@example([["\ta", "b "]], "\t")  # a tab inside quotes of a tab-separated file
@example([["a\u00a0", "b"]], ",")
def test_cells_are_stripped_of_every_kind_of_whitespace_as_strip_chars_does(rows: list[list[str]], sep: str) -> None:
    # the shortcut only strips columns it finds padded; it must agree with stripping every cell
    frame = pl.DataFrame(
        {"a": [r[0] for r in rows], "b": [r[1] for r in rows]}, schema={"a": pl.String, "b": pl.String}
    )
    payload = "\n".join(f'"{a}"{sep}"{b}"' for a, b in rows).encode()
    assert strip_cells(frame, payload, sep).equals(frame.with_columns(pl.all().str.strip_chars()))


@given(st.lists(st.integers(1, 5), min_size=1, max_size=6))
def test_line_numbers_are_cut_into_the_chunks_of_the_cells(lengths: list[int]) -> None:
    from transforms.text import in_chunks_of

    like = pl.concat([pl.Series("c", ["x"] * n) for n in lengths], rechunk=False)
    numbers = pl.int_range(2, 2 + sum(lengths), eager=True, dtype=pl.Int64)
    cut = in_chunks_of(numbers, like)
    assert [c.len() for c in cut.get_chunks()] == [c.len() for c in like.get_chunks()]
    assert cut.to_list() == numbers.to_list()
