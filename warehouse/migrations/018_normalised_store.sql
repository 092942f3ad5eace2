-- grain: normalised_parts = one row per Parquet file of the current normalised measurements
-- The normalised measurements live in the normalised store beside the warehouse file
-- (normalised/<run_id>/part-<k>.parquet, one folder per run that rebuilt them) and measurements_normalised
-- becomes a view over the files listed here; warehouse/loads.py moves the rows of an older warehouse there
-- (ensure_normalised_store) when it is opened for writing.
create table if not exists normalised_parts (
    part integer not null,          -- order of the rows: part by part
    file varchar not null,          -- <run_id>/part-<k>.parquet, under normalised/
    run_id varchar not null         -- the run that built them (the generation)
);
