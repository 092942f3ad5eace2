"""Load suite files and turn each expectation into a polars row mask."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from transforms import schema

SUITE_DIR = Path(__file__).parent / "suites"

#: Thresholds used when none are passed (the configuration defaults; see flows/config.py and README).
DEFAULT_THRESHOLDS: dict[str, Any] = {
    "max_bad_row_share": 0.2,
    "control_cv_max": 0.20,
    "replicate_cv_max": 0.20,
    "max_control_shift": 2.0,  # log scale: e^2 = 7.4-fold for concentrations, 4-fold in NPX
    "below_lod_share_max": 0.5,
    "calibrator_recovery_max_dev": 20.0,  # percentage points: recovery outside 80-120 %
    "min_n": 120,
    "min_n_small": 40,
    "quantile_k": 5,
}


ACTIONS = ("quarantine", "warn", "block")


@dataclass(frozen=True)
class Expectation:
    type: str
    kwargs: dict[str, Any]
    why: str
    action: str = "quarantine"  # quarantine the failing rows | warn (report only) | block (stop a release)

    @property
    def label(self) -> str:
        target = self.kwargs.get("column") or ",".join(self.kwargs.get("column_list", []))
        return f"{self.type}({target})"


@dataclass(frozen=True)
class Suite:
    name: str
    grain: str
    level: str
    expectations: list[Expectation]


def _resolve(value: Any, thresholds: dict[str, Any], where: str) -> Any:
    """Replace ``{"config": "key"}`` with the configured threshold (thresholds live in configuration)."""
    if isinstance(value, dict) and set(value) == {"config"}:
        key = value["config"]
        if key not in thresholds:
            msg = f"{where}: threshold '{key}' is not in the configuration"
            raise ValueError(msg)
        return thresholds[key]
    return value


def load_suite(name: str, directory: Path = SUITE_DIR, thresholds: dict[str, Any] | None = None) -> Suite:
    """Read ``<directory>/<name>.json``, filling ``{"config": key}`` values from ``thresholds``.

    Raises ValueError naming the file for a malformed suite.
    """
    path = directory / f"{name}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    items = []
    for i, e in enumerate(data.get("expectations", [])):
        where = f"{path}: expectation {i} ({e.get('type')})"
        if not e.get("why"):
            msg = f"{where} has no 'why'; every failure must explain itself"
            raise ValueError(msg)
        action = e.get("action", "quarantine")
        if action not in ACTIONS:
            msg = f"{where}: action {action!r} is not one of {ACTIONS}"
            raise ValueError(msg)
        kwargs = {k: _resolve(v, thresholds or DEFAULT_THRESHOLDS, where) for k, v in e.get("kwargs", {}).items()}
        items.append(Expectation(e["type"], kwargs, e["why"], action))
    return Suite(data["name"], data.get("grain", ""), data.get("level", "row"), items)


def suite_names(directory: Path = SUITE_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


def raw_units(directory: Path = SUITE_DIR) -> list[str]:
    """The units the raw suite lets through (``unit_read``'s value set), as refranges spells them.

    >>> "pg/mL" in raw_units() and "IU/mL" not in raw_units()
    True
    """
    suite = load_suite("raw_measurements", directory)
    return next(
        list(e.kwargs["value_set"])
        for e in suite.expectations
        if e.type == "expect_column_values_to_be_in_set" and e.kwargs.get("column") == "unit_read"
    )


def unit_read(units: list[str]) -> pl.Expr:
    """``unit_raw`` as the raw suite checks it: as refranges spells it (transforms.normalise.standard_spelling:
    ``PG/ML`` and ``pg per mL`` as ``pg/mL``, ``µg/l`` as ``ug/L``, ``npx`` as ``NPX``, ``mfi`` as ``MFI``), as
    normalisation reads units whatever their case; any other unit as written, so that a held row names it.
    ``units``: the distinct units of the frame (a few; each is looked up once)."""
    from transforms.normalise import standard_spelling

    read = {u: standard_spelling(u) or u for u in units}
    col = pl.col("unit_raw")  # compared as it is: a dictionary-coded column (Explore HT) is never spelled out
    out: pl.Expr = pl.lit(None, pl.String)
    for u, shown in read.items():  # a when-chain: a few comparisons, cheap on a dictionary-coded column
        out = pl.when(col == u).then(pl.lit(shown)).otherwise(out)
    return out


def prepare_raw(frame: pl.DataFrame) -> pl.DataFrame:
    """Derived columns the raw suite checks: the unit as read (:func:`unit_read`) and the value split by scale
    (concentration, NPX, MFI)."""
    units = frame.get_column("unit_raw").unique().drop_nulls().cast(pl.String).to_list()
    frame = frame.with_columns(unit_read(units).alias("unit_read"))
    is_npx = pl.col("unit_read") == "NPX"
    is_mfi = pl.col("unit_read") == "MFI"
    below = pl.col("censoring").is_in(["below_lod", "below_lloq"]) & (pl.col("value") > pl.col("limit_value"))
    above = (pl.col("censoring") == "above_uloq") & (pl.col("value") < pl.col("limit_value"))
    return frame.with_columns(
        pl.when(is_npx | is_mfi).then(None).otherwise(pl.col("value")).alias("concentration_value"),
        pl.when(is_mfi).then(pl.col("value")).otherwise(None).alias("mfi_value"),
        pl.when(is_npx).then(pl.col("value")).otherwise(None).alias("npx_value"),
        (below | above).fill_null(False).cast(pl.Int8).alias("censoring_conflict"),
    )


def failing_mask(expectation: Expectation) -> pl.Expr:
    """A polars expression that is True on the rows GX counts as unexpected for this expectation."""
    kw = expectation.kwargs
    if expectation.type == "expect_column_values_to_not_be_null":
        return pl.col(kw["column"]).is_null()
    if expectation.type == "expect_column_values_to_be_null":
        return pl.col(kw["column"]).is_not_null()
    if expectation.type == "expect_column_values_to_be_in_set":
        col = pl.col(kw["column"])
        return col.is_not_null() & ~col.is_in(list(kw["value_set"]))
    if expectation.type == "expect_column_values_to_be_between":
        col = pl.col(kw["column"])
        bad = pl.lit(False)
        if kw.get("min_value") is not None:
            bad = bad | (col < kw["min_value"]) if not kw.get("strict_min") else bad | (col <= kw["min_value"])
        if kw.get("max_value") is not None:
            bad = bad | (col > kw["max_value"]) if not kw.get("strict_max") else bad | (col >= kw["max_value"])
        return col.is_not_null() & bad
    if expectation.type == "expect_compound_columns_to_be_unique":
        return pl.struct(kw["column_list"]).is_duplicated()
    msg = f"no polars mask for {expectation.type}; add one in expectations/suites.py"
    raise NotImplementedError(msg)


def apply_suite(frame: pl.DataFrame, suite: Suite) -> pl.DataFrame:
    """Add ``__fail_<i>`` columns (one per expectation) to ``frame``."""
    masks: list[pl.Expr] = []
    for i, e in enumerate(suite.expectations):
        if e.type == "expect_compound_columns_to_be_unique":
            masks.append(duplicated_rows(frame, e.kwargs["column_list"]).alias(f"__fail_{i}"))
        else:
            masks.append(failing_mask(e).fill_null(False).alias(f"__fail_{i}"))
    return frame.with_columns(masks)


def duplicated_rows(frame: pl.DataFrame, columns: list[str]) -> pl.Expr:
    """``failing_mask`` of a compound-unique expectation, at less cost: when the rows' hashes of ``columns``
    are all distinct, so are the rows (counting distinct hashes is several times cheaper than marking
    duplicates); otherwise the exact mask. An expression, not a Series: a Series in other chunks than the
    frame's would make every later step on the frame realign all of its columns."""
    constant = schema.constant_columns(frame, columns)
    varying = [c for c in columns if c not in constant]  # equal in every row: no help
    if not varying:
        return pl.lit(frame.height > 1)
    # a Categorical column hashes by its codes (one mapping per column: equal values, equal codes), not by
    # its text, which is several times slower
    key = pl.struct(
        [
            pl.col(c).to_physical() if isinstance(frame.schema[c], (pl.Categorical, pl.Enum)) else pl.col(c)
            for c in varying
        ]
    )
    # the hashes taken out, then counted: n_unique inside the select took twice as long (10 M rows: 1.4 s)
    if frame.height == 0 or frame.select(key.hash()).to_series().n_unique() == frame.height:
        return pl.lit(False)
    return key.is_duplicated()
