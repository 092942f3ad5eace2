"""Property tests: whatever text a lab's export puts in a name (analyte, unit, sample id, file name), the HTML
pages the product writes gain no element or attribute from it and show it back as text, and the CSV cells it
writes never start a spreadsheet formula."""

from __future__ import annotations

from html.parser import HTMLParser

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from expectations.report import render_report
from flows.cli import spreadsheet_safe
from tests.warehouse.test_report import GROUP, _grid
from transforms import schema
from warehouse.report import render_release_report

# markup, quotes, formula starts, entities, unicode; control characters other than tab are left out
# (they never survive a CSV or Excel reader as part of a name)
HOSTILE = st.lists(
    st.one_of(
        st.sampled_from([*"<>&\"'/=+-@;:()!# \t", "<script>", "</b>", "onerror=", "&amp;", "javascript:"]),
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
    ),
    min_size=1,
    max_size=20,
).map("".join)


class _Structure(HTMLParser):
    """The page's elements and attribute names in document order, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, tuple(name for name, _ in attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _structure(page: str) -> _Structure:
    parser = _Structure()
    parser.feed(page)
    parser.close()
    return parser


def _release_page(analyte: str, unit: str) -> str:
    group = GROUP | {"analyte": analyte, "unit": unit, "age_min": None, "age_max": None, "n": 120}
    group |= {"method": "nonparametric", "median": 3.0, "uniprot": None, "panel": None, "n_below_lod": 0}
    group |= {"n_outliers_excluded": 0, "lower_limit_censored": False}
    intervals = pl.DataFrame([group])
    keys = [k for k in schema.GROUP_KEYS if k in intervals.columns]
    return render_release_report("v1", intervals, _grid().join(intervals.select(keys), how="cross"), None)


def _qc_page(name: str) -> str:
    results = pl.DataFrame(
        {
            "suite": ["plates"],
            "expectation": ["control_cv"],
            "action": ["warn"],
            "why": ["control CV above 0.2"],
            "success": [False],
            "element_count": [3],
            "unexpected_count": [1],
            "unexpected_sample": [name],
        }
    )
    return render_report(
        run_id="r1",
        results=results,
        quarantine=pl.DataFrame({"stage": ["qc"], "check": ["x"], "n": [3], "example": [name]}),
        files=pl.DataFrame({"file": [f"{name}.csv"]}),
        release=name,
    )


BENIGN_RELEASE = _structure(_release_page("IL6", "NPX")).tags
BENIGN_QC = _structure(_qc_page("S1")).tags


@settings(max_examples=60, deadline=None)
@given(analyte=HOSTILE, unit=HOSTILE)
def test_a_name_in_the_release_report_is_text_and_never_markup(analyte: str, unit: str) -> None:
    page = _release_page(analyte, unit)
    parsed = _structure(page)
    assert parsed.tags == BENIGN_RELEASE  # no element or attribute came from the data
    assert analyte.strip() in "".join(parsed.text)  # and the person sees the name as it was written


@settings(max_examples=60, deadline=None)
@given(name=HOSTILE)
def test_a_name_in_the_qc_report_is_text_and_never_markup(name: str) -> None:
    parsed = _structure(_qc_page(name))
    assert parsed.tags == BENIGN_QC
    assert name.strip() in "".join(parsed.text)


@given(cells=st.lists(st.one_of(st.none(), HOSTILE), min_size=1, max_size=20))
def test_no_csv_cell_starts_a_formula_and_each_cell_keeps_its_text(cells: list[str | None]) -> None:
    out = spreadsheet_safe(pl.DataFrame({"sample_id": cells}, schema={"sample_id": pl.String}))["sample_id"]
    for before, after in zip(cells, out.to_list(), strict=True):
        if before is None:
            assert after is None
            continue
        assert after is not None and not after.startswith(("=", "+", "-", "@", "\t", "\r"))
        assert after in (before, "'" + before)  # only an apostrophe is ever added
