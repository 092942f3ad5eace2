-- grain: person_scores = one row per result placed by `refranges score --record`: a person's marker at one
-- collection date, scored against one release. Never derived from raw rows, never rebuilt: the record of
-- what was shown to whom against which release. The subject is pseudonymised with the home's key, as in
-- samples (the same person has the same subject_key in both).
create table if not exists person_scores (
    scored_at timestamp not null,
    release_version varchar not null,
    manifest_sha256 varchar not null,     -- of the release's manifest.json: exactly what was compared against
    subject_key varchar not null,
    sample_id varchar,
    collection_date date,
    analyte varchar not null,
    platform varchar not null,
    panel varchar,
    matrix varchar,
    unit varchar,
    value double,                         -- null when censored (see censoring and limit_value)
    censoring varchar,
    limit_value double,
    percentile varchar,
    percentile_value double,
    position varchar,
    reference_group varchar,
    change varchar,
    change_log double,
    rcv_log double,
    change_vs_rcv varchar,
    batch_method varchar,
    plate_shift double,
    source_file varchar,
    status varchar not null
);
