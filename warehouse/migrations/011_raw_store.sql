-- grain: files = one row per distinct input file content (sha256); raw_file names its parsed rows
-- Raw rows live in the raw store beside the warehouse file (raw/<sha256>.parquet, one per loaded file) and
-- raw_measurements becomes a view over the files the ledger lists as loaded; warehouse/loads.py moves the
-- rows of an older warehouse there (ensure_raw_store) when it is opened for writing.
alter table files add column if not exists raw_file varchar;  -- name in raw/; null when the file has no rows
