-- The ledger's schema at version 10: what the migrations build in a new ledger, with
-- the study's views (runner/ptycho/views.sql), which every run installs.
-- Generated from migrations/ and views.sql by `make schema` (python scripts/make_schema.py);
-- do not edit it: change the engine's schema with a new migration, or the study's views in
-- views.sql, then regenerate it.
PRAGMA application_id = 1347705170;
PRAGMA user_version = 10;

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
,
    study TEXT,
    root TEXT);

CREATE TABLE failure_classes (
    name        TEXT PRIMARY KEY,
    retryable   INTEGER NOT NULL,   -- 1: relaunched by --retries
    meaning     TEXT NOT NULL
);

INSERT INTO failure_classes (name, retryable, meaning) VALUES
    ('exit_code', 1, 'the command exited with a non-zero status'),
    ('signal', 1, 'the command was killed by a signal the runner did not send'),
    ('timeout', 1, 'the attempt ran past its time limit (--timeout; SLURM''s --time, or a training that saved on SLURM''s warning signal and exited 138)'),
    ('no_metrics', 1, 'exit 0, but its outputs (metrics file, model folder, reconstruction) are missing, stale or incomplete'),
    ('launch_error', 0, 'the command could not be started'),
    ('interrupted', 1, 'the runner was stopped or died while the attempt ran'),
    ('blocked', 0, 'an input of the job is missing'),
    ('cuda_oom', 1, 'the command ran out of GPU memory (exit 3); retried with halved chunk sizes'),
    ('disk_full', 0, 'the log or output folder ran out of space, or a log reached the file-size limit'),
    ('node_fail', 1, 'SLURM: the node failed (NODE_FAIL) or never booted (BOOT_FAIL)'),
    ('preempted', 1, 'the job was preempted (SLURM PREEMPTED, or a training that saved on a SIGTERM the runner did not send and exited 143)'),
    ('out_of_memory', 1, 'SLURM: the job used more memory than --mem and was killed'),
    ('cancelled', 0, 'SLURM: the job was cancelled outside the runner (scancel by hand, an administrator)'),
    ('slurm_unknown', 1, 'SLURM no longer reports the job and has no accounting record; how it ended is unknown');

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
    backend TEXT NOT NULL DEFAULT 'local'
    CHECK (backend IN ('local', 'slurm')),
    slurm_job_id TEXT,
    slurm_node TEXT,
    slurm_state TEXT,
    slurm_exit TEXT,
    metrics_before TEXT,
    basis TEXT,
    start_step INTEGER,
    end_step INTEGER,
    UNIQUE (job_id, number)
);

CREATE UNIQUE INDEX attempts_one_success_per_job ON attempts (job_id) WHERE state = 'succeeded';

CREATE INDEX attempts_by_state ON attempts (state);

CREATE INDEX attempts_by_run ON attempts (run_id);

CREATE TRIGGER attempts_state_moves_forward
BEFORE UPDATE OF state ON attempts
WHEN NOT (OLD.state = NEW.state
          OR (OLD.state = 'running' AND NEW.state IN ('succeeded', 'failed', 'interrupted'))
          OR (OLD.state = 'succeeded' AND NEW.state = 'superseded'))
BEGIN
    SELECT RAISE(ABORT, 'attempt state may only move forward');
END;

CREATE INDEX attempts_by_slurm_job ON attempts (slurm_job_id) WHERE slurm_job_id IS NOT NULL;

CREATE INDEX attempts_by_job_run ON attempts (job_id, run_id);

CREATE TABLE metrics (
    attempt_id  INTEGER NOT NULL REFERENCES attempts (attempt_id),
    model       TEXT NOT NULL,      -- PtychoPINN, Baseline, PtyChi
    metric      TEXT NOT NULL,      -- mae, mse, psnr, ssim, ms_ssim, frc50, frc1over7, ...
    amplitude   REAL,               -- NULL where the cell was empty or NaN
    phase       REAL,
    value       REAL,               -- scalar rows: registration offsets, computation time
    PRIMARY KEY (attempt_id, model, metric)
);

CREATE TABLE job_needs (
    job_id        INTEGER NOT NULL REFERENCES jobs (job_id),
    needs_job_id  INTEGER NOT NULL REFERENCES jobs (job_id),
    PRIMARY KEY (job_id, needs_job_id)
);

CREATE INDEX job_needs_by_need ON job_needs (needs_job_id);

CREATE TABLE "jobs" (
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

CREATE INDEX jobs_by_run ON jobs (last_run_id, plan_order);

CREATE INDEX jobs_by_plan_order ON jobs (plan_order);

CREATE TABLE kinds (
    name    TEXT PRIMARY KEY,   -- a job's kind
    title   TEXT NOT NULL       -- the heading `status` gives its jobs
);

CREATE TABLE file_hashes (
    path      TEXT PRIMARY KEY,   -- as recorded: relative to the study's root when under it
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    ctime_ns  INTEGER NOT NULL,
    inode     INTEGER NOT NULL,
    sha256    TEXT NOT NULL
);

CREATE VIEW job_grid AS
SELECT j.job_id, j.key, j.plan_order, j.kind, j.labels, j.state, j.blocked_reason,
       a.number AS latest_attempt, a.device, a.started_at, a.duration_s, a.exit_code, a.failure_class,
       CASE WHEN j.state = 'blocked' THEN j.blocked_reason ELSE a.failure_detail END AS detail,
       a.stdout_log, a.stderr_log, a.backend, a.slurm_job_id, a.slurm_node, a.slurm_state, a.slurm_exit,
       a.start_step, a.end_step,
       CASE WHEN a.state IN ('failed', 'interrupted') AND a.fingerprint = j.fingerprint
            THEN a.end_step END AS resume_step
FROM jobs j
LEFT JOIN attempts a
       ON a.attempt_id = (SELECT m.attempt_id FROM attempts m WHERE m.job_id = j.job_id
                          ORDER BY m.number DESC LIMIT 1);

CREATE VIEW condition_grid AS
SELECT json_extract(g.labels, '$.phase') AS phase, json_extract(g.labels, '$.dose') AS dose,
       COALESCE(json_extract(g.labels, '$.view'), json_extract(g.labels, '$.model')) AS view,
       json_extract(g.labels, '$.split') AS split, json_extract(g.labels, '$.seed') AS seed,
       json_extract(g.labels, '$.train_size') AS train_size, g.state,
       (SELECT COUNT(*) FROM attempts c WHERE c.job_id = g.job_id) AS n_attempts,
       g.latest_attempt, g.device, g.started_at, g.duration_s, g.exit_code, g.failure_class, g.detail,
       g.stdout_log, g.stderr_log,
       json_extract(g.labels, '$.selection_strategy') AS selection_strategy,
       json_extract(g.labels, '$.acceptance_rate') AS acceptance_rate,
       json_extract(g.labels, '$.spacing_threshold') AS spacing_threshold,
       json_extract(g.labels, '$.n_accepted') AS n_accepted,
       json_extract(g.labels, '$.n_rejected') AS n_rejected,
       g.key, g.job_id, g.plan_order,
       g.backend, g.slurm_job_id, g.slurm_node, g.slurm_state, g.slurm_exit
FROM job_grid g
ORDER BY g.plan_order;

CREATE VIEW failed_attempts AS
SELECT json_extract(j.labels, '$.phase') AS phase, json_extract(j.labels, '$.dose') AS dose,
       COALESCE(json_extract(j.labels, '$.view'), json_extract(j.labels, '$.model')) AS view,
       json_extract(j.labels, '$.split') AS split, a.number AS attempt, a.state, a.failure_class,
       a.exit_code, a.signal, a.failure_detail, a.device, a.started_at, a.duration_s,
       a.stdout_log, a.stderr_log, a.run_id, j.key
FROM attempts a
JOIN jobs j USING (job_id)
WHERE a.state IN ('failed', 'interrupted')
ORDER BY a.attempt_id;

CREATE VIEW study_metrics AS
SELECT json_extract(j.labels, '$.dose') AS dose, json_extract(j.labels, '$.view') AS view,
       json_extract(j.labels, '$.split') AS split, json_extract(j.labels, '$.seed') AS seed,
       json_extract(j.labels, '$.train_size') AS train_size, m.model, m.metric, m.amplitude, m.phase, m.value,
       a.number AS attempt, a.attempt_id, j.key
FROM metrics m
JOIN attempts a USING (attempt_id)
JOIN jobs j USING (job_id)
WHERE a.state = 'succeeded' AND json_extract(j.labels, '$.phase') = 'G'
ORDER BY j.plan_order, m.model, m.metric;

CREATE VIEW replicate_values AS
SELECT DISTINCT dose, view, split, train_size, model AS quantity, metric,
       CASE WHEN model IN ('PtychoPINN', 'Baseline') THEN seed END AS seed, amplitude, phase
FROM study_metrics
WHERE amplitude IS NOT NULL OR phase IS NOT NULL
UNION ALL
SELECT p.dose, p.view, p.split, p.train_size, 'PtychoPINN - ' || o.model, p.metric, p.seed,
       p.amplitude - o.amplitude, p.phase - o.phase
FROM study_metrics p
JOIN study_metrics o ON o.attempt_id = p.attempt_id AND o.metric = p.metric
WHERE p.model = 'PtychoPINN' AND o.model IN ('Baseline', 'PtyChi')
  AND (p.amplitude - o.amplitude IS NOT NULL OR p.phase - o.phase IS NOT NULL);

CREATE VIEW replicate_stats AS
WITH t95(df, t) AS (VALUES (1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (5, 2.5706), (6, 2.4469),
       (7, 2.3646), (8, 2.3060), (9, 2.2622), (10, 2.2281), (11, 2.2010), (12, 2.1788), (13, 2.1604),
       (14, 2.1448), (15, 2.1314), (16, 2.1199), (17, 2.1098), (18, 2.1009), (19, 2.0930), (20, 2.0860),
       (21, 2.0796), (22, 2.0739), (23, 2.0687), (24, 2.0639), (25, 2.0595), (26, 2.0555), (27, 2.0518),
       (28, 2.0484), (29, 2.0452), (30, 2.0423), (40, 2.0211), (60, 2.0003), (120, 1.9799)),
means AS (
    SELECT dose, view, split, train_size, quantity, metric, COUNT(*) AS n,
           COUNT(amplitude) AS n_amplitude, AVG(amplitude) AS amplitude_mean,
           COUNT(phase) AS n_phase, AVG(phase) AS phase_mean
    FROM replicate_values
    GROUP BY dose, view, split, train_size, quantity, metric),
spread AS (
    SELECT m.*,
           (SELECT t FROM t95 WHERE df <= m.n_amplitude - 1 ORDER BY df DESC LIMIT 1)
             * sqrt(SUM((v.amplitude - m.amplitude_mean) * (v.amplitude - m.amplitude_mean))
                    / (m.n_amplitude - 1) / m.n_amplitude) AS amplitude_half,
           (SELECT t FROM t95 WHERE df <= m.n_phase - 1 ORDER BY df DESC LIMIT 1)
             * sqrt(SUM((v.phase - m.phase_mean) * (v.phase - m.phase_mean))
                    / (m.n_phase - 1) / m.n_phase) AS phase_half
    FROM means m
    JOIN replicate_values v ON v.dose IS m.dose AND v.view IS m.view AND v.split IS m.split
         AND v.train_size IS m.train_size AND v.quantity = m.quantity AND v.metric = m.metric
    GROUP BY m.dose, m.view, m.split, m.train_size, m.quantity, m.metric)
SELECT dose, view, split, train_size, quantity, metric, n,
       amplitude_mean, amplitude_mean - amplitude_half AS amplitude_ci_low,
       amplitude_mean + amplitude_half AS amplitude_ci_high,
       phase_mean, phase_mean - phase_half AS phase_ci_low, phase_mean + phase_half AS phase_ci_high
FROM spread;

CREATE VIEW study_summary AS
SELECT dose, view, split, train_size, quantity AS model, metric, n, amplitude_mean, amplitude_ci_low,
       amplitude_ci_high, phase_mean, phase_ci_low, phase_ci_high
FROM replicate_stats
WHERE quantity NOT LIKE 'PtychoPINN - %'
ORDER BY dose, view, split, train_size, model, metric;

CREATE VIEW study_deltas AS
SELECT dose, view, split, train_size, substr(quantity, length('PtychoPINN - ') + 1) AS versus, metric, n,
       amplitude_mean, amplitude_ci_low, amplitude_ci_high, phase_mean, phase_ci_low, phase_ci_high
FROM replicate_stats
WHERE quantity LIKE 'PtychoPINN - %'
ORDER BY dose, view, split, train_size, versus, metric;

CREATE VIEW phase_results AS
SELECT json_extract(j.labels, '$.phase') AS phase, json_extract(j.labels, '$.dose') AS dose,
       COALESCE(json_extract(j.labels, '$.view'), json_extract(j.labels, '$.model')) AS view,
       json_extract(j.labels, '$.split') AS split, m.model, m.metric, m.value, a.duration_s, a.device,
       a.number AS attempt, a.attempt_id, j.key
FROM metrics m
JOIN attempts a USING (attempt_id)
JOIN jobs j USING (job_id)
WHERE a.state = 'succeeded' AND json_extract(j.labels, '$.phase') IN ('E', 'F')
ORDER BY j.plan_order, m.model, m.metric;
