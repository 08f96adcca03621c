-- Attempts run through SLURM: which executor ran each attempt, and what SLURM said about it.
-- An attempt's pid columns stay NULL on SLURM; its job id is the handle a later runner
-- re-attaches to.

ALTER TABLE attempts ADD COLUMN backend TEXT NOT NULL DEFAULT 'local'
    CHECK (backend IN ('local', 'slurm'));
ALTER TABLE attempts ADD COLUMN slurm_job_id TEXT;     -- from `sbatch --parsable`
ALTER TABLE attempts ADD COLUMN slurm_node TEXT;       -- NodeList once it runs
ALTER TABLE attempts ADD COLUMN slurm_state TEXT;      -- PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...
ALTER TABLE attempts ADD COLUMN slurm_exit TEXT;       -- SLURM's ExitCode 'exit:signal'

CREATE INDEX attempts_by_slurm_job ON attempts (slurm_job_id) WHERE slurm_job_id IS NOT NULL;

-- The condition grid, now with where a SLURM attempt runs (new columns at the end).
DROP VIEW condition_grid;
CREATE VIEW condition_grid AS
SELECT j.dose, j.view, j.split, j.state,
       (SELECT COUNT(*) FROM attempts c WHERE c.job_id = j.job_id) AS n_attempts,
       a.number AS latest_attempt, a.device, a.started_at, a.duration_s, a.exit_code,
       a.failure_class,
       CASE WHEN j.state = 'blocked' THEN j.blocked_reason ELSE a.failure_detail END AS detail,
       a.stdout_log, a.stderr_log,
       j.selection_strategy, j.acceptance_rate, j.spacing_threshold, j.n_accepted, j.n_rejected,
       j.key, j.job_id, j.plan_order,
       a.backend, a.slurm_job_id, a.slurm_node, a.slurm_state, a.slurm_exit
FROM jobs j
LEFT JOIN attempts a
       ON a.attempt_id = (SELECT MAX(attempt_id) FROM attempts m WHERE m.job_id = j.job_id)
ORDER BY j.plan_order;

INSERT INTO failure_classes (name, retryable, meaning) VALUES
    ('node_fail', 1, 'SLURM: the node failed (NODE_FAIL) or never booted (BOOT_FAIL)'),
    ('preempted', 1, 'SLURM: the job was preempted by a higher-priority job'),
    ('out_of_memory', 1, 'SLURM: the job used more memory than --mem and was killed'),
    ('cancelled', 0, 'SLURM: the job was cancelled outside the runner (scancel by hand, an administrator)'),
    ('slurm_unknown', 1, 'SLURM no longer reports the job and has no accounting record; how it ended is unknown');
