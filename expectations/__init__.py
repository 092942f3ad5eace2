"""Great Expectations suites (JSON files under ``suites/``) and the code that runs them.

The same suite file drives two things: GX validation (the reported result, stored in ``qc_results``)
and the polars row masks that decide which rows are quarantined. ``tests/expectations`` checks that
both find the same rows. GX is imported only inside :func:`expectations.runner.validate_with_gx`.
"""
