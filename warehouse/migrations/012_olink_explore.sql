-- grain: files = one row per distinct input file content (sha256), now with what the file says of itself
-- grain: sample_handling = one row per study sample x plate x file with Olink Explore HT sample-handling (OSI) fields
-- Olink's NGS products (Explore 3072, Explore HT, Reveal) name their product, file type, software version and
-- data analysis reference in the Parquet metadata and columns; the LOD rule used for a file is recorded too.
alter table files add column if not exists product varchar;               -- e.g. ExploreHT, Explore3072, Reveal
alter table files add column if not exists data_file_type varchar;        -- Olink DataFileType, e.g. NPX File
alter table files add column if not exists software_version varchar;      -- Olink ExploreVersion
alter table files add column if not exists data_analysis_ref_id varchar;  -- Olink DataAnalysisRefID (lot reference)
alter table files add column if not exists file_info_json varchar;        -- every recorded fact, as JSON

create table if not exists sample_handling (
    source_sha256 varchar not null,
    sample_id varchar not null,
    plate_id varchar,
    osi_time_to_centrifugation varchar,   -- as Olink writes it (minutes, or a category)
    osi_preparation_temperature varchar,
    osi_summary varchar,
    osi_category varchar
);

create or replace view raw.files as select * from main.files;
create or replace view marts.files as select * from main.files;
create or replace view raw.sample_handling as select * from main.sample_handling;
