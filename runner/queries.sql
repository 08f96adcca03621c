-- Every query the engine issues, by name. ledger.py loads this file once. (A study's own queries
-- and views live in its package.)

-- name: insert_run
-- A runner process starts driving the ledger.
INSERT INTO runs (started_at, host, user, pid, argv, runner_version, git_commit, slots, study, root)
VALUES (:started_at, :host, :user, :pid, :argv, :runner_version, :git_commit, :slots, :study, :root);

-- name: study_root
-- Where the study's root is from the ledger's folder, as the latest run that said so recorded it.
SELECT root FROM runs WHERE root IS NOT NULL ORDER BY run_id DESC LIMIT 1;

-- name: relative_paths
-- Paths recorded absolute under the study's root (by older runners) made relative to it.
UPDATE jobs SET cwd = CASE WHEN cwd = :root THEN '.' WHEN substr(cwd, 1, :n) = :prefix
                           THEN substr(cwd, :n + 1) ELSE cwd END,
    output_dir = CASE WHEN output_dir = :root THEN '.' WHEN substr(output_dir, 1, :n) = :prefix
                      THEN substr(output_dir, :n + 1) ELSE output_dir END
WHERE substr(cwd, 1, :n) = :prefix OR substr(output_dir, 1, :n) = :prefix OR :root IN (cwd, output_dir);

-- name: relative_logs
-- The same for attempts' logs.
UPDATE attempts SET stdout_log = substr(stdout_log, :n + 1), stderr_log = substr(stderr_log, :n + 1)
WHERE substr(stdout_log, 1, :n) = :prefix AND substr(stderr_log, 1, :n) = :prefix;

-- name: file_hashes
-- The content hashes known (inputs.ContentHashes).
SELECT path, size, mtime_ns, ctime_ns, inode, sha256 FROM file_hashes;

-- name: remember_hash
-- A content hash learned, kept for the next run.
INSERT INTO file_hashes (path, size, mtime_ns, ctime_ns, inode, sha256)
VALUES (:path, :size, :mtime_ns, :ctime_ns, :inode, :sha256)
ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
    ctime_ns = excluded.ctime_ns, inode = excluded.inode, sha256 = excluded.sha256;

-- name: restamp_success
-- A success recorded under an older fingerprint whose inputs are unchanged: stamped anew.
UPDATE attempts SET fingerprint = :fingerprint, basis = :basis
WHERE job_id = :job_id AND state = 'succeeded';

-- name: end_run
-- A run ends; outcome is completed or interrupted.
UPDATE runs SET ended_at = :ended_at, outcome = :outcome WHERE run_id = :run_id;

-- name: mark_unfinished_runs_crashed
-- Runs that never recorded an end died without cleaning up.
UPDATE runs SET outcome = 'crashed' WHERE ended_at IS NULL AND outcome IS NULL AND run_id != :run_id;

-- name: upsert_kind
-- A kind of job of the study, with the heading `status` gives its jobs.
INSERT INTO kinds (name, title) VALUES (:name, :title)
ON CONFLICT (name) DO UPDATE SET title = excluded.title;

-- name: upsert_job
-- Record a planned job; its state is left alone when it already exists.
INSERT INTO jobs (key, plan_order, kind, labels, argv, cwd, output_dir, fingerprint, state,
                  blocked_reason, last_run_id, updated_at)
VALUES (:key, :plan_order, :kind, :labels, :argv, :cwd, :output_dir, :fingerprint, 'pending', NULL,
        :run_id, :now)
ON CONFLICT (key) DO UPDATE SET
    plan_order = excluded.plan_order, kind = excluded.kind, labels = excluded.labels,
    argv = excluded.argv, cwd = excluded.cwd, output_dir = excluded.output_dir,
    fingerprint = excluded.fingerprint, last_run_id = excluded.last_run_id,
    updated_at = excluded.updated_at;

-- name: forget_needs
-- A planned job's dependencies are replaced by the plan's.
DELETE FROM job_needs WHERE job_id = (SELECT job_id FROM jobs WHERE key = :key);

-- name: insert_need
-- The job `key` reads what the job `needs` produces.
INSERT OR IGNORE INTO job_needs (job_id, needs_job_id)
SELECT j.job_id, n.job_id FROM jobs j, jobs n WHERE j.key = :key AND n.key = :needs;

-- name: planned_jobs
-- Every job a run planned, with the fingerprint and basis of its current success (NULL when
-- none), its latest attempt's failure class and its number of attempts.
SELECT j.key, j.job_id, j.state, a.fingerprint, a.basis, l.failure_class, l.number
FROM jobs j
LEFT JOIN attempts a ON a.job_id = j.job_id AND a.state = 'succeeded'
LEFT JOIN attempts l ON l.attempt_id = (SELECT MAX(attempt_id) FROM attempts m WHERE m.job_id = j.job_id)
WHERE j.last_run_id = :run_id;

-- name: known_jobs
-- The same for every job of the ledger (a dry run: nothing is recorded).
SELECT j.key, j.job_id, j.state, a.fingerprint, a.basis, l.failure_class, l.number
FROM jobs j
LEFT JOIN attempts a ON a.job_id = j.job_id AND a.state = 'succeeded'
LEFT JOIN attempts l ON l.attempt_id = (SELECT MAX(attempt_id) FROM attempts m WHERE m.job_id = j.job_id);

-- name: set_job_state
-- A job moves to a new state (blocked_reason says why when it is blocked).
UPDATE jobs SET state = :state, blocked_reason = :blocked_reason, updated_at = :now
WHERE job_id = :job_id;

-- name: next_attempt_number
-- The job's next attempt number (1 for its first); the ledger skips numbers whose logs exist.
SELECT COALESCE(MAX(number), 0) + 1 FROM attempts WHERE job_id = :job_id;

-- name: insert_attempt
-- Written before the process is spawned.
INSERT INTO attempts (job_id, run_id, number, state, token, argv, fingerprint, basis, slot, device,
                      gpu_uuid, started_at, stdout_log, stderr_log, backend, metrics_before)
VALUES (:job_id, :run_id, :number, 'running', :token, :argv, :fingerprint, :basis, :slot, :device,
        :gpu_uuid, :started_at, :stdout_log, :stderr_log, :backend, :metrics_before);

-- name: record_launch
-- What identifies the launched attempt: its process (local) or its SLURM job id.
UPDATE attempts SET pid = :pid, pgid = :pgid, process_start = :process_start,
       slurm_job_id = :slurm_job_id
WHERE attempt_id = :attempt_id;

-- name: record_slurm_state
-- What SLURM last said about an attempt's job; a state change is recorded as it is seen.
UPDATE attempts SET slurm_state = :slurm_state, slurm_node = COALESCE(:slurm_node, slurm_node),
       slurm_exit = COALESCE(:slurm_exit, slurm_exit)
WHERE attempt_id = :attempt_id;

-- name: supersede_success
-- An older success of the job makes room for a newer one.
UPDATE attempts SET state = 'superseded' WHERE job_id = :job_id AND state = 'succeeded';

-- name: insert_metric
-- One row of a succeeded attempt's metrics (its metrics table, or its result file's numbers).
INSERT INTO metrics (attempt_id, model, metric, amplitude, phase, value)
VALUES (:attempt_id, :model, :metric, :amplitude, :phase, :value);

-- name: finish_attempt
-- An attempt ends with its outcome; only a running attempt can end, and only once.
UPDATE attempts SET state = :state, ended_at = :ended_at, duration_s = :duration_s,
       exit_code = :exit_code, signal = :signal, failure_class = :failure_class,
       failure_detail = :failure_detail, start_step = :start_step, end_step = :end_step
WHERE attempt_id = :attempt_id AND state = 'running';

-- name: running_attempts
-- Attempts some runner left running: the candidates for reconciliation.
-- Its columns are the fields of jobs.Attempt, by name.
SELECT a.attempt_id, a.job_id, j.key AS job_key, a.number, a.token, a.argv, a.stdout_log,
       a.stderr_log, a.started_at, a.backend, a.metrics_before, a.pid, a.pgid, a.process_start,
       a.slurm_job_id
FROM attempts a JOIN jobs j USING (job_id)
WHERE a.state = 'running'
ORDER BY a.attempt_id;

-- name: expected_durations
-- Per job key, the duration of its latest successful attempt: how long a run (or a dry run)
-- expects it to take. (SQLite takes the bare columns from the row that holds the MAX.)
SELECT j.key, a.duration_s, MAX(a.attempt_id)
FROM attempts a JOIN jobs j USING (job_id)
WHERE a.state IN ('succeeded', 'superseded') AND a.duration_s IS NOT NULL
GROUP BY a.job_id;

-- name: run_results
-- Each job planned by a run with its attempt of that run, or else its standing success, or else
-- its latest attempt: what the run's files report.
SELECT j.key, j.kind, j.labels, j.state, j.blocked_reason, a.exit_code, a.signal, a.failure_class,
       a.failure_detail, a.stdout_log, a.stderr_log, a.number, a.run_id = :run_id AS executed
FROM jobs j
LEFT JOIN attempts a
       ON a.attempt_id = COALESCE(
            (SELECT MAX(attempt_id) FROM attempts m WHERE m.job_id = j.job_id AND m.run_id = :run_id),
            (SELECT attempt_id FROM attempts s WHERE s.job_id = j.job_id AND s.state = 'succeeded'),
            (SELECT MAX(attempt_id) FROM attempts l WHERE l.job_id = j.job_id))
WHERE j.last_run_id = :run_id
ORDER BY j.plan_order;

-- name: status_jobs
-- One line per job for `runner status`, with its latest attempt (status.py adds a running job's
-- time so far: the same CASE as in status_jobs_json would cost a third of this query); log paths
-- recorded under the study's root made absolute against :root, where the root is now.
SELECT key, kind, state, latest_attempt, device, started_at, duration_s, exit_code, failure_class,
       detail,
       CASE WHEN :root IS NULL OR substr(stdout_log, 1, 1) = '/' THEN stdout_log
            ELSE :root || '/' || stdout_log END AS stdout_log,
       CASE WHEN :root IS NULL OR substr(stderr_log, 1, 1) = '/' THEN stderr_log
            ELSE :root || '/' || stderr_log END AS stderr_log,
       backend, slurm_job_id, slurm_node, slurm_state, start_step, end_step,
       resume_step
FROM job_grid
ORDER BY plan_order;

-- name: status_jobs_json
-- The rows of status_jobs as one JSON array, each job's labels beside them (json_set: a field of
-- the engine wins over a label of the same name), built by SQLite (a running job's duration is its
-- time so far): at 10,000 jobs, twice as fast as making Python objects and encoding them.
SELECT json_group_array(json_set(labels,
    '$.key', key, '$.kind', kind, '$.state', state, '$.latest_attempt', latest_attempt,
    '$.device', device, '$.started_at', started_at,
    '$.duration_s', CASE WHEN state = 'running' AND started_at IS NOT NULL
                         THEN ROUND((julianday('now') - julianday(started_at)) * 86400.0, 1)
                         ELSE duration_s END,
    '$.exit_code', exit_code, '$.failure_class', failure_class, '$.detail', detail,
    '$.stdout_log', CASE WHEN :root IS NULL OR substr(stdout_log, 1, 1) = '/' THEN stdout_log
                         ELSE :root || '/' || stdout_log END,
    '$.stderr_log', CASE WHEN :root IS NULL OR substr(stderr_log, 1, 1) = '/' THEN stderr_log
                         ELSE :root || '/' || stderr_log END, '$.backend', backend,
    '$.slurm_job_id', slurm_job_id, '$.slurm_node', slurm_node, '$.slurm_state', slurm_state,
    '$.start_step', start_step, '$.end_step', end_step, '$.resume_step', resume_step))
FROM (SELECT * FROM job_grid ORDER BY plan_order);

-- name: kind_titles
-- The heading of each kind of job (status).
SELECT name, title FROM kinds;

-- name: job_totals
-- How many jobs are in each state (status).
SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state;

-- name: latest_run
-- The most recent run, for status's header.
SELECT run_id, started_at, ended_at, outcome, host, user, pid, runner_version, git_commit, slots
FROM runs ORDER BY run_id DESC LIMIT 1;
