"""Test helper: read every file of a generated demo data set with the real readers."""

from __future__ import annotations

import hashlib

import polars as pl

from transforms.demo import DemoData
from transforms.readers import read_file


def read_demo(demo: DemoData) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All measurement rows and the manifest's samples of a demo data set."""
    rows, samples = [], None
    for name, data in sorted(demo.files.items()):
        r = read_file(data, source=name, sha256=hashlib.sha256(data).hexdigest())
        if r.samples is not None:
            samples = r.samples
        else:
            rows.append(r.rows)
    assert samples is not None
    return pl.concat(rows), samples
