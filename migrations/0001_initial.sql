-- The ledger of a study: one row per run of the runner, per job (one study condition),
-- and per attempt (one launch of a job's command). Timestamps are UTC ISO-8601 text,
-- durations are seconds.
PRAGMA application_id = 1347705170;  -- 'PTYR': marks the file as a runner ledger

CREATE TABLE runs (
    run_id          INTEGER PRIMARY KEY,
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    outcome         TEXT CHECK (outcome IN ('completed', 'interrupted', 'crashed')),
    host            TEXT NOT NULL,
    user            TEXT NOT NULL,
    pid             INTEGER NOT NULL,
    argv            TEXT NOT NULL,          -- JSON list: how the runner was invoked
    runner_version  TEXT NOT NULL,
    git_commit      TEXT,                   -- commit of the compare script's checkout, if any
    slots           TEXT                    -- JSON list of {slot, device, gpu_uuid}
);

CREATE TABLE jobs (
    job_id              INTEGER PRIMARY KEY,
    key                 TEXT NOT NULL UNIQUE,   -- e.g. 'dose_1000/dense/train'
    plan_order          INTEGER NOT NULL,       -- position in the study's deterministic order
    dose                INTEGER,
    view                TEXT,
    split               TEXT,
    argv                TEXT NOT NULL,          -- JSON list, the planned command
    cwd                 TEXT NOT NULL,
    output_dir          TEXT NOT NULL,
    fingerprint         TEXT NOT NULL,          -- hash of argv, input files (size, mtime), script
    selection_strategy  TEXT,                   -- Phase D metadata, NULL when absent
    acceptance_rate     REAL,
    spacing_threshold   REAL,
    n_accepted          INTEGER,
    n_rejected          INTEGER,
    state               TEXT NOT NULL CHECK (state IN
                          ('pending', 'running', 'succeeded', 'failed', 'blocked', 'interrupted')),
    blocked_reason      TEXT,
    last_run_id         INTEGER REFERENCES runs (run_id),
    updated_at          TEXT NOT NULL
);

-- Why an attempt did not succeed; later migrations add classes with an INSERT.
CREATE TABLE failure_classes (
    name        TEXT PRIMARY KEY,
    retryable   INTEGER NOT NULL,   -- 1: relaunched by --retries
    meaning     TEXT NOT NULL
);
INSERT INTO failure_classes (name, retryable, meaning) VALUES
    ('exit_code', 1, 'the command exited with a non-zero status'),
    ('signal', 1, 'the command was killed by a signal the runner did not send'),
    ('timeout', 1, 'the attempt ran past --timeout and its process group was killed'),
    ('no_metrics', 1, 'exit 0, but the metrics file is missing, stale or lacks a numeric value for a model'),
    ('launch_error', 0, 'the command could not be started'),
    ('interrupted', 1, 'the runner was stopped or died while the attempt ran'),
    ('blocked', 0, 'an input of the job is missing');

CREATE TABLE attempts (
    attempt_id      INTEGER PRIMARY KEY,
    job_id          INTEGER NOT NULL REFERENCES jobs (job_id),
    run_id          INTEGER NOT NULL REFERENCES runs (run_id),
    number          INTEGER NOT NULL,           -- 1, 2, ... per job, across runs
    state           TEXT NOT NULL CHECK (state IN
                      ('running', 'succeeded', 'failed', 'interrupted', 'superseded')),
    token           TEXT NOT NULL UNIQUE,       -- RUNNER_ATTEMPT_TOKEN in the child's environment
    argv            TEXT NOT NULL,              -- JSON list, exactly what was launched
    fingerprint     TEXT NOT NULL,
    slot            TEXT,
    device          TEXT,                       -- CUDA_VISIBLE_DEVICES given to the child ('' = CPU)
    gpu_uuid        TEXT,
    pid             INTEGER,
    pgid            INTEGER,
    process_start   TEXT,                       -- '<boot id>:<start time in clock ticks>'
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    duration_s      REAL,
    exit_code       INTEGER,
    signal          INTEGER,
    failure_class   TEXT REFERENCES failure_classes (name),
    failure_detail  TEXT,
    stdout_log      TEXT NOT NULL,
    stderr_log      TEXT NOT NULL,
    UNIQUE (job_id, number)
);

-- A condition never has two succeeded attempts: an older success is superseded first.
CREATE UNIQUE INDEX attempts_one_success_per_job ON attempts (job_id) WHERE state = 'succeeded';
CREATE INDEX attempts_by_state ON attempts (state);
CREATE INDEX attempts_by_run ON attempts (run_id);

-- Attempt states only move forward.
CREATE TRIGGER attempts_state_moves_forward
BEFORE UPDATE OF state ON attempts
WHEN NOT (OLD.state = NEW.state
          OR (OLD.state = 'running' AND NEW.state IN ('succeeded', 'failed', 'interrupted'))
          OR (OLD.state = 'succeeded' AND NEW.state = 'superseded'))
BEGIN
    SELECT RAISE(ABORT, 'attempt state may only move forward');
END;

-- The condition grid: every job with its current state and latest attempt.
CREATE VIEW condition_grid AS
SELECT j.dose, j.view, j.split, j.state,
       (SELECT COUNT(*) FROM attempts c WHERE c.job_id = j.job_id) AS n_attempts,
       a.number AS latest_attempt, a.device, a.started_at, a.duration_s, a.exit_code,
       a.failure_class,
       CASE WHEN j.state = 'blocked' THEN j.blocked_reason ELSE a.failure_detail END AS detail,
       a.stdout_log, a.stderr_log,
       j.selection_strategy, j.acceptance_rate, j.spacing_threshold, j.n_accepted, j.n_rejected,
       j.key, j.job_id, j.plan_order
FROM jobs j
LEFT JOIN attempts a
       ON a.attempt_id = (SELECT MAX(attempt_id) FROM attempts m WHERE m.job_id = j.job_id)
ORDER BY j.plan_order;

-- Every attempt that did not succeed, with where to read why.
CREATE VIEW failed_attempts AS
SELECT j.dose, j.view, j.split, a.number AS attempt, a.state, a.failure_class,
       a.exit_code, a.signal, a.failure_detail, a.device, a.started_at, a.duration_s,
       a.stdout_log, a.stderr_log, a.run_id, j.key
FROM attempts a
JOIN jobs j USING (job_id)
WHERE a.state IN ('failed', 'interrupted')
ORDER BY a.attempt_id;
