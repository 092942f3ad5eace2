-- grain: landing_seen = one row per local landing file a run has read, with what it was then
-- A run reads and hashes a landing file only when its size, times or inode differ from what was seen the
-- last time it was read (flows/pipeline.py: unchanged_since); a file unchanged since then is skipped by the
-- hash it had. Keep mode re-read the whole landing folder on every scheduled run.
create table if not exists landing_seen (
    path varchar primary key,       -- as listed by the run (absolute or as configured)
    size_bytes bigint not null,
    mtime_ns bigint not null,
    ctime_ns bigint not null,       -- changes with any write, and cannot be set back by hand (unlike mtime)
    inode bigint not null,
    sha256 varchar not null,        -- the content read then
    seen_at_ns bigint not null      -- when it was looked at (a change in the same clock tick is not trusted)
);
