-- grain: derived_state = one row per derived stage (normalise): the fingerprint of the inputs its tables were
-- last built from (loaded files, settings, dictionary, code), written in the same transaction as the tables.
-- A run whose inputs have the same fingerprint leaves the tables as they are.
create table if not exists derived_state (
    stage varchar primary key,
    input_fingerprint varchar not null,
    run_id varchar not null,
    built_at timestamp not null     -- UTC
);
