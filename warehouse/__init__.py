"""warehouse package."""

#: The folders beside the warehouse file (here, not in warehouse.loads, so that the configuration's checks
#: can name them without loading DuckDB): the raw store, ``raw/<sha256>.parquet``, and the normalised
#: store, ``normalised/<run_id>/part-<k>.parquet``.
RAW_DIR = "raw"
NORMALISED_DIR = "normalised"
