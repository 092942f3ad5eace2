"""Run a suite: polars masks decide quarantine, GX (SUMMARY mode) reports results.

GX validates pandas, not polars; the frame is converted once here. GX is imported lazily (2 s).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import polars as pl

from expectations.suites import Suite, apply_suite, failing_mask
from transforms import schema
from transforms.text import display_text

MAX_SAMPLE = 20


@dataclass(frozen=True)
class SuiteOutcome:
    passed: pl.DataFrame  # rows that passed every 'quarantine' expectation
    quarantine: pl.DataFrame  # schema.QUARANTINE
    failed: pl.DataFrame  # the held rows with their own columns plus `check` and `why`
    results: pl.DataFrame  # one row per expectation: suite, expectation, why, success, counts, sample


RESULT_SCHEMA = {
    "suite": pl.String(),
    "expectation": pl.String(),
    "action": pl.String(),
    "why": pl.String(),
    "success": pl.Boolean(),
    "element_count": pl.Int64(),
    "unexpected_count": pl.Int64(),
    "unexpected_sample": pl.String(),
    "engine": pl.String(),
}


def sample_text(value: object) -> str:
    """An unexpected value as the QC results and report show it (a share of 1/95 reads 0.01052631579, not
    0.010526315789473684; see display_text), a missing value as "null"."""
    return "null" if value is None else display_text(value)


SHOWN_VALUES = ("expect_column_values_to_be_in_set", "expect_column_values_to_be_between")


def _the_value(expectation: Any, rows: pl.DataFrame) -> pl.Expr:
    """ ": unit_raw 'PG/ML'" before a held row's reason, for an expectation on the value of one column (a set
    or a range), so that the reason names what to correct; nothing for a derived 0/1 flag or a null."""
    column = expectation.kwargs.get("column")
    if expectation.type not in SHOWN_VALUES or column not in rows.columns or rows.schema[column].is_integer():
        return pl.lit("")
    return (pl.lit(f": {column} '") + pl.col(column).cast(pl.String) + pl.lit("'")).fill_null("")


def quarantine_rows(frame: pl.DataFrame, suite: Suite) -> SuiteOutcome:
    """Split ``frame`` by the suite's masks; each held row carries the first failed expectation's why."""
    marked = apply_suite(frame, suite)
    held: list[pl.DataFrame] = []
    failed: list[pl.DataFrame] = []
    results: list[dict[str, Any]] = []
    remaining = marked
    for i, e in enumerate(suite.expectations):
        col = f"__fail_{i}"
        n_bad = int(marked[col].sum())
        column = e.kwargs.get("column")
        sample = marked.filter(pl.col(col)).get_column(column).head(MAX_SAMPLE).to_list() if column and n_bad else []
        results.append(
            {
                "suite": suite.name,
                "expectation": e.label,
                "action": e.action,
                "why": e.why,
                "success": n_bad == 0,
                "element_count": marked.height,
                "unexpected_count": n_bad,
                "unexpected_sample": ", ".join(sample_text(s) for s in sample) or None,
                "engine": "polars",
            }
        )
        if e.action != "quarantine" or n_bad == 0:
            continue  # reported (warn) or gating a release (block), never removing rows; or nothing to remove
        bad = remaining.filter(pl.col(col))
        if bad.height:
            failed.append(
                bad.with_columns(pl.lit(f"{suite.name}.{e.label}").alias("check"), pl.lit(e.why).alias("why"))
            )
            where = pl.col("source_file") if "source_file" in bad.columns else pl.lit("(derived)")
            if "line_number" in bad.columns:
                where = where + pl.lit(": line ") + pl.col("line_number").cast(pl.String)
            held.append(
                schema.conform(
                    bad.with_columns(
                        pl.lit("qc").alias("stage"),
                        pl.lit(f"{suite.name}.{e.label}").alias("check"),
                        (where + _the_value(e, bad) + pl.lit(f": {e.why}")).alias("reason"),
                    ),
                    schema.QUARANTINE,
                )
            )
        remaining = remaining.filter(~pl.col(col))
    fail_cols = [c for c in remaining.columns if c.startswith("__fail_")]
    return SuiteOutcome(
        passed=remaining.drop(fail_cols),
        quarantine=pl.concat(held) if held else schema.empty(schema.QUARANTINE),
        failed=(
            pl.concat(failed).drop([c for c in failed[0].columns if c.startswith("__fail_")])
            if failed
            else marked.clear()
            .drop(fail_cols)
            .with_columns(pl.lit(None, pl.String).alias("check"), pl.lit(None, pl.String).alias("why"))
        ),
        results=pl.DataFrame(results, schema=RESULT_SCHEMA),
    )


def preload_gx() -> None:
    """Import Great Expectations (2 to 4 s) now, e.g. while waiting for a server, not in the first task."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations
    import great_expectations.expectations

    for name in ("great_expectations", "great_expectations.data_context.types.base"):  # GX sets INFO on import
        logging.getLogger(name).setLevel(logging.WARNING)
    # GX fingerprints every in-memory batch under 1 GB (an md5 over pandas' hash of every value, kept only
    # as a batch marker that refranges never reads): about half of its time on a normalisation part. A
    # threshold of 0 skips it; validation itself is untouched (docs/performance.md).
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0
    del great_expectations


NARROW_INTEGERS = [pl.Int8, pl.Int16, pl.Int32, pl.UInt8, pl.UInt16, pl.UInt32]


def _without_constant_keys(frame: pl.DataFrame, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A compound-uniqueness expectation's arguments without the key columns that hold one non-null value in
    every row (a raw part's file hash, a part's platform and unit): rows equal in the rest are equal in all,
    so GX marks the same rows. Such a column also kept every row from being "all values missing", so the
    shorter list ignores no row either (``ignore_row_if="never"`` where the default was asked). GX took 18.6
    of its 22 s on a 20-million-row Explore HT file in this check, 7.5 s of it turning the 64-character hash
    into pandas strings."""
    listed = kwargs["column_list"]
    constant = {c for c, v in schema.constant_columns(frame, listed).items() if v is not None}
    varying = {c for c in listed if c not in constant}
    spare = [c for c in listed if c in constant][: max(0, 2 - len(varying))]  # GX takes two columns at least
    kept = [c for c in listed if c in varying or c in spare]
    if len(kept) == len(listed):
        return kwargs
    ignore = kwargs.get("ignore_row_if", "all_values_are_missing")
    return kwargs | {"column_list": kept, "ignore_row_if": "never" if ignore == "all_values_are_missing" else ignore}


#: GX's objects for a validation, kept per thread: an ephemeral context with one pandas asset per suite, and
#: the expectation suites built so far. Making them for every validation cost about a third of a small one
#: (a context's set-up writes its whole configuration as YAML at each data source added); a thread of the task
#: runner validates file after file. Per thread, since GX's objects are not made to be shared between threads.
_GX_OBJECTS = threading.local()

GX_CLASS_NAMES = {
    "expect_column_values_to_not_be_null": "ExpectColumnValuesToNotBeNull",
    "expect_column_values_to_be_null": "ExpectColumnValuesToBeNull",
    "expect_column_values_to_be_in_set": "ExpectColumnValuesToBeInSet",
    "expect_column_values_to_be_between": "ExpectColumnValuesToBeBetween",
    "expect_compound_columns_to_be_unique": "ExpectCompoundColumnsToBeUnique",
}


def _gx_objects() -> tuple[Any, dict[Any, Any]]:
    """This thread's GX context and its cache (suite name -> batch definition, suite key -> GX suite)."""
    objects = getattr(_GX_OBJECTS, "objects", None)
    if objects is None:
        preload_gx()  # analytics off and GX's loggers quiet before its first use
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        objects = _GX_OBJECTS.objects = (context, {})
    return objects


def _gx_suite(suite: Suite, kwargs: list[dict[str, Any]]) -> tuple[Any, Any]:
    """The batch definition of ``suite``'s asset and the GX suite of its expectations with ``kwargs``, made
    once per thread (thresholds and the key columns left out make the kwargs differ between calls)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context, cache = _gx_objects()
    batch_def = cache.get(("asset", suite.name))
    if batch_def is None:
        batch_def = cache[("asset", suite.name)] = (
            context.data_sources.add_pandas(f"refranges_{suite.name}")
            .add_dataframe_asset(suite.name)
            .add_batch_definition_whole_dataframe("whole")
        )
    key = (
        suite.name,
        json.dumps([[e.type, e.why, k] for e, k in zip(suite.expectations, kwargs, strict=True)], default=str),
    )
    gx_suite = cache.get(key)
    if gx_suite is None:
        gx_suite = cache[key] = gx.ExpectationSuite(
            name=suite.name,
            expectations=[
                getattr(gxe, GX_CLASS_NAMES[e.type])(**k, meta={"why": e.why})
                for e, k in zip(suite.expectations, kwargs, strict=True)
            ],
        )
    return batch_def, gx_suite


def validate_with_gx(frame: pl.DataFrame, suite: Suite) -> pl.DataFrame:
    """Validate ``frame`` with Great Expectations (ephemeral context, SUMMARY results).

    Returns one row per expectation in RESULT_SCHEMA (engine = 'great_expectations').
    """
    kwargs = [
        _without_constant_keys(frame, e.kwargs) if "column_list" in e.kwargs else e.kwargs for e in suite.expectations
    ]
    batch_def, gx_suite = _gx_suite(suite, kwargs)
    columns = sorted(
        {k["column"] for k in kwargs if "column" in k} | {c for k in kwargs for c in k.get("column_list", [])}
    )
    # GX's pandas engine compares int64 and float64 columns as arrays, and every other type value by value
    # in Python (ColumnValuesBetween): a flag as Int8 took half the raw suite's time. Widened, the values and
    # the unexpected samples are the same.
    widened = frame.select(columns).with_columns(
        pl.col(NARROW_INTEGERS).cast(pl.Int64), pl.col(pl.Float32).cast(pl.Float64)
    )
    batch = batch_def.get_batch(batch_parameters={"dataframe": widened.to_pandas()})
    try:
        result = batch.validate(gx_suite, result_format="SUMMARY")
    finally:  # the engine kept the frame until this thread's next validation: a part's rows, after the part
        manager = batch_def.data_asset.datasource.get_execution_engine().batch_manager
        manager.reset_batch_cache()
        manager.batch_data_cache.clear()
        del batch
    rows = []
    for e, r in zip(suite.expectations, result.results, strict=True):
        res = r.result or {}
        sample = res.get("partial_unexpected_list") or []
        rows.append(
            {
                "suite": suite.name,
                "expectation": e.label,
                "action": e.action,
                "why": e.why,
                "success": bool(r.success),
                "element_count": int(res.get("element_count", frame.height) or 0),
                "unexpected_count": int(res.get("unexpected_count", 0) or 0),
                "unexpected_sample": ", ".join(sample_text(s) for s in sample[:MAX_SAMPLE]) or None,
                "engine": "great_expectations",
            }
        )
    return pl.DataFrame(rows, schema=RESULT_SCHEMA)


def merge_results(results: list[pl.DataFrame]) -> pl.DataFrame:
    """Results of the same suites over disjoint parts of the data (one per file, one per partition of
    analytes) as one row per expectation: counts add up, an expectation succeeds only where it succeeded on
    every part, and the unexpected samples are pooled up to MAX_SAMPLE values.

    Exact for every expectation the suites use, because each looks at one row at a time or at keys that
    never span two parts (a file's lines, a sample's analyte)."""
    parts = [r for r in results if r.height]
    if not parts:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    table = pl.concat(parts, how="vertical")
    keys = ["suite", "expectation", "action", "why", "engine"]
    merged = table.group_by(keys, maintain_order=True).agg(
        pl.col("success").all(),
        pl.col("element_count").sum(),
        pl.col("unexpected_count").sum(),
        pl.col("unexpected_sample").drop_nulls().str.split(", ").explode().head(MAX_SAMPLE).alias("__sample"),
    )
    sample = pl.when(pl.col("__sample").list.len() > 0).then(pl.col("__sample").list.join(", "))
    return merged.with_columns(sample.alias("unexpected_sample")).select(list(RESULT_SCHEMA))


__all__ = [
    "SuiteOutcome",
    "display_text",
    "failing_mask",
    "merge_results",
    "preload_gx",
    "quarantine_rows",
    "sample_text",
    "validate_with_gx",
]
