-- grain: files = one row per distinct input file content (sha256); runs = one row per pipeline run
create table if not exists schema_version (
    version integer primary key,
    name varchar not null,
    applied_at timestamp not null
);

create table if not exists runs (
    run_id varchar primary key,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar,                 -- running | completed | completed_with_problems | failed
    summary_json varchar
);

create table if not exists files (
    sha256 varchar primary key,
    file_name varchar not null,
    layout varchar,                 -- olink | msd | tidy | manifest | null when unreadable
    size_bytes bigint not null,
    rows_read bigint not null,
    rows_loaded bigint not null,
    rows_quarantined bigint not null,
    status varchar not null,        -- loaded | quarantined | replaced
    reason varchar,                 -- why a whole file was quarantined or replaced
    archive_path varchar,
    run_id varchar not null,
    ingested_at timestamp not null,
    replaced_by varchar             -- sha256 of the newer file with the same name
);
