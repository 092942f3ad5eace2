-- grain: files = one row per distinct input file content (sha256), now with what a whole-file quarantine was
-- decided under. A file quarantined whole used to be known by its hash for good: raising a threshold, a new
-- analyte dictionary or a newer refranges never read it again. A run now reads such a file again when the
-- fingerprint of its settings, dictionary and code (flows/pipeline.py: decision_fingerprint) differs from the
-- one it was quarantined under; null (quarantined before this column) differs from every fingerprint.
alter table files add column if not exists decided_under varchar;

create or replace view raw.files as select * from main.files;
create or replace view marts.files as select * from main.files;
