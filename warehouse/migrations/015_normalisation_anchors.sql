-- grain: normalisation_anchors = one row per platform x panel x analyte x plate control (control_id): the
-- long-run level of that control over the plates that passed the plate checks, on the log scale the
-- correction works on (NPX, or natural log of pg/mL). Rebuilt with measurements_normalised, in the same
-- transaction. release_normalisation_anchors keeps each release's copy (its normalisation_anchors.parquet).
create table if not exists normalisation_anchors (
    platform varchar not null,
    panel varchar,
    analyte varchar not null,
    control_id varchar not null,
    unit varchar,                 -- canonical unit: level is NPX as is, else the natural log of this unit
    level double not null,        -- median over plates of the control's per-plate mean log value
    n_plates bigint not null,     -- plates it was measured on
    run_id varchar not null
);

create table if not exists release_normalisation_anchors (
    platform varchar not null,
    panel varchar,
    analyte varchar not null,
    control_id varchar not null,
    unit varchar,
    level double not null,
    n_plates bigint not null,
    version varchar not null
);
