-- grain: releases = one row per published release version
-- grain: release_intervals = one row per release x reference group
-- grain: release_quantiles = one row per release x reference group x p
-- grain: release_outliers = one row per release x reference group x excluded sample (never published)
create table if not exists releases (
    version varchar primary key,
    created_at timestamp not null,
    input_fingerprint varchar not null,
    previous_version varchar,
    path varchar not null,
    n_groups bigint not null,
    run_id varchar not null
);

create table if not exists release_intervals (
    version varchar not null,
    analyte varchar not null,
    uniprot varchar,
    platform varchar not null,
    panel varchar,
    matrix varchar not null,
    unit varchar not null,
    sex varchar not null,
    age_min double,                 -- years
    age_max double,                 -- years
    n bigint not null,
    n_below_lod bigint not null,
    n_outliers_excluded bigint not null,
    method varchar not null,
    lower_limit double,             -- in unit
    upper_limit double,
    lower_ci_low double,
    lower_ci_high double,
    upper_ci_low double,
    upper_ci_high double,
    median double,
    coverage double not null,
    ci_level double not null,
    lod double,
    lower_limit_censored boolean not null
);

create table if not exists release_quantiles (
    version varchar not null,
    analyte varchar not null,
    uniprot varchar,
    platform varchar not null,
    panel varchar,
    matrix varchar not null,
    unit varchar not null,
    sex varchar not null,
    age_min double,
    age_max double,
    p double not null,
    value double,                   -- in unit
    censored boolean not null
);

create table if not exists release_outliers (
    version varchar not null,
    analyte varchar not null,
    uniprot varchar,
    platform varchar not null,
    panel varchar,
    matrix varchar not null,
    unit varchar not null,
    sex varchar not null,
    age_min double,
    age_max double,
    sample_id varchar not null,
    value double                    -- in unit
);
