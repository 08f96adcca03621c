-- A job's condition becomes labels: one JSON object the study writes and the engine stores
-- without reading it, so that a new axis of a study (a seed, a training-set size) needs no
-- migration. A job's phase becomes its kind (the engine's word: what shares a GPU, what
-- `status` groups), whose headings the study records in `kinds`. A run records what its study
-- said of itself (its folders), so readers find the study's files from the ledger alone.
-- `job_grid` is every job with its latest attempt: what `status` shows and the study's views
-- build on.
--
-- Until schema 7 the condition had columns of its own: dose, view (a training's model), split,
-- and the Phase D metadata of the views. They move, row by row, into labels with the names the
-- study now writes. The table is rebuilt rather than altered column by column, which needs
-- SQLite 3.35. The study's views name the columns that go: they are dropped here, and the
-- study installs its own when a run opens the ledger.
DROP VIEW condition_grid;
DROP VIEW failed_attempts;
DROP VIEW study_metrics;
DROP VIEW phase_results;

CREATE TABLE jobs_labelled (
    job_id          INTEGER PRIMARY KEY,
    key             TEXT NOT NULL UNIQUE,   -- e.g. 'dose_1000/dense/train'
    plan_order      INTEGER NOT NULL,       -- position in the study's deterministic order
    kind            TEXT NOT NULL DEFAULT '',  -- the study's kind of job (see kinds)
    labels          TEXT NOT NULL DEFAULT '{}',  -- JSON object: the job's condition, in the study's words
    argv            TEXT NOT NULL,          -- JSON list, the planned command
    cwd             TEXT NOT NULL,
    output_dir      TEXT NOT NULL,          -- the job's folder: its logs are in output_dir/logs
    fingerprint     TEXT NOT NULL,          -- hash of argv, input files (size, mtime), identity
    state           TEXT NOT NULL CHECK (state IN
                      ('pending', 'running', 'succeeded', 'failed', 'blocked', 'interrupted')),
    blocked_reason  TEXT,
    last_run_id     INTEGER REFERENCES runs (run_id),
    updated_at      TEXT NOT NULL
);

INSERT INTO jobs_labelled (job_id, key, plan_order, kind, labels, argv, cwd, output_dir, fingerprint,
                           state, blocked_reason, last_run_id, updated_at)
SELECT job_id, key, plan_order, phase,
       CASE WHEN phase = 'E' THEN json_object('phase', phase, 'dose', dose, 'model', view)
            ELSE json_object('phase', phase, 'dose', dose, 'view', view, 'split', split,
                             'selection_strategy', selection_strategy,
                             -- 17 digits: json_object writes a real with 15, which loses the last bits
                             'acceptance_rate', CASE WHEN acceptance_rate IS NOT NULL
                                                     THEN json(printf('%!.17g', acceptance_rate)) END,
                             'spacing_threshold', CASE WHEN spacing_threshold IS NOT NULL
                                                       THEN json(printf('%!.17g', spacing_threshold)) END,
                             'n_accepted', n_accepted, 'n_rejected', n_rejected) END,
       argv, cwd, output_dir, fingerprint, state, blocked_reason, last_run_id, updated_at
FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_labelled RENAME TO jobs;
CREATE INDEX jobs_by_run ON jobs (last_run_id, plan_order);
CREATE INDEX jobs_by_plan_order ON jobs (plan_order);

CREATE TABLE kinds (
    name    TEXT PRIMARY KEY,   -- a job's kind
    title   TEXT NOT NULL       -- the heading `status` gives its jobs
);

ALTER TABLE runs ADD COLUMN study TEXT;   -- JSON: what the study said of itself for this run

CREATE VIEW job_grid AS
SELECT j.job_id, j.key, j.plan_order, j.kind, j.labels, j.state, j.blocked_reason,
       a.number AS latest_attempt, a.device, a.started_at, a.duration_s, a.exit_code, a.failure_class,
       CASE WHEN j.state = 'blocked' THEN j.blocked_reason ELSE a.failure_detail END AS detail,
       a.stdout_log, a.stderr_log, a.backend, a.slurm_job_id, a.slurm_node, a.slurm_state, a.slurm_exit
FROM jobs j
LEFT JOIN attempts a
       ON a.attempt_id = (SELECT m.attempt_id FROM attempts m WHERE m.job_id = j.job_id
                          ORDER BY m.number DESC LIMIT 1);
