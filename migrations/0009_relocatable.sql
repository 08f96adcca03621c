-- A study that moves keeps its results. Paths under the study's root are recorded relative to it
-- (jobs.cwd and output_dir, attempts' logs: older rows are made relative by the next run), and
-- each run records where the root is from the ledger's folder (runs.root, e.g. '..'): a reader
-- finds every file from where the ledger is now.
ALTER TABLE runs ADD COLUMN root TEXT;

-- What an attempt's fingerprint hashed (JSON: the command with the root written $STUDY, each input
-- file's path under the root, size and SHA-256, the identity), so a rerun says what changed.
-- NULL for attempts recorded before.
ALTER TABLE attempts ADD COLUMN basis TEXT;

-- The SHA-256 of input files, valid while size, mtime, ctime and inode are these: a file is read
-- once per version. A cache: deleting its rows costs only time.
CREATE TABLE file_hashes (
    path      TEXT PRIMARY KEY,   -- as recorded: relative to the study's root when under it
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    ctime_ns  INTEGER NOT NULL,
    inode     INTEGER NOT NULL,
    sha256    TEXT NOT NULL
);
