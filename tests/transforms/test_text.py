from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.text import UnreadableFileError, decode, read_table, with_numbers


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
