-- grain: raw_measurements = one row per value as parsed from an export (file x line)
-- grain: samples = one row per sample_id per manifest file; subject ids are stored only as keyed hashes
-- grain: quarantine_rows = one row per held-back input row at parse or qc stage (file x line x check)
create table if not exists raw_measurements (
    source_file varchar not null,
    source_sha256 varchar not null,
    line_number bigint not null,
    platform varchar not null,
    panel varchar,
    plate_id varchar,
    well varchar,
    run_date date,
    sample_id varchar,
    sample_type varchar,
    analyte_raw varchar,
    value_text varchar,
    value double,                   -- in unit_raw
    unit_raw varchar,
    unit_note varchar,
    censoring varchar,
    limit_value double,             -- in unit_raw
    lod double,                     -- in unit_raw
    vendor_qc varchar
);

create table if not exists samples (
    sample_id varchar not null,
    subject_key varchar not null,
    cohort varchar not null,
    matrix varchar not null,
    sex varchar not null,
    age double,                     -- years
    collection_date date,
    severity double,                -- 0-100
    severity_label varchar,
    illness_duration_years double,
    source_file varchar not null,
    source_sha256 varchar not null,
    line_number bigint not null
);

create table if not exists quarantine_rows (
    source_file varchar,
    source_sha256 varchar,
    line_number bigint,
    stage varchar not null,         -- parse | qc
    "check" varchar not null,
    reason varchar not null,
    sample_id varchar,
    analyte_raw varchar,
    value_text varchar
);
