"""Pseudonymisation: the raw subject id never leaves ingestion; a keyed hash stands in for it."""

from __future__ import annotations

import hashlib
import hmac

import polars as pl


def subject_hash(subject_id: str, key: bytes) -> str:
    """HMAC-SHA256 of the subject id, first 16 hex characters (stable for one key, useless without it)."""
    return hmac.new(key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def pseudonymise_subjects(samples: pl.DataFrame, key: bytes) -> pl.DataFrame:
    """Replace ``subject_id`` with ``subject_key``; the input frame is not changed."""
    ids = samples["subject_id"].unique().drop_nulls().to_list()
    mapping = {s: subject_hash(s, key) for s in ids}
    return samples.with_columns(
        pl.col("subject_id").replace_strict(mapping, default=None, return_dtype=pl.String).alias("subject_key")
    ).drop("subject_id")
