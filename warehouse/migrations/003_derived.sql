-- grain: measurements_normalised = one row per sample x analyte x platform x panel x unit (rebuilt each run)
-- grain: held_rows = one row per raw row held back at link or normalise stage (rebuilt each run)
-- grain: qc_results = one row per run x suite x expectation x engine
create table if not exists measurements_normalised (
    sample_id varchar not null,
    analyte varchar not null,
    uniprot varchar,
    analyte_label varchar,
    platform varchar not null,
    panel varchar,
    unit varchar not null,
    value double,                   -- in unit
    log_value double,               -- natural log of value (NPX: as is)
    censoring varchar,
    limit_value double,             -- in unit
    lod double,                     -- in unit
    n_replicates bigint,
    replicate_cv double,            -- fraction
    plate_id varchar,
    batch varchar,
    batch_method varchar,
    source_file varchar,
    run_id varchar not null
);

create table if not exists held_rows (
    source_file varchar,
    source_sha256 varchar,
    line_number bigint,
    stage varchar not null,         -- link | normalise
    "check" varchar not null,
    reason varchar not null,
    sample_id varchar,
    analyte_raw varchar,
    value_text varchar,
    run_id varchar not null
);

create table if not exists qc_results (
    run_id varchar not null,
    suite varchar not null,
    expectation varchar not null,
    why varchar,
    success boolean not null,
    element_count bigint,
    unexpected_count bigint,
    unexpected_sample varchar,
    engine varchar not null,        -- great_expectations | polars
    checked_at timestamp not null
);
