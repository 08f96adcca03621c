-- Indexes that keep the ledger's queries fast on long histories (100,000 attempts and more).

-- An attempt of a given job in a given run (the manifest of a run) without scanning the run.
CREATE INDEX attempts_by_job_run ON attempts (job_id, run_id);

-- The jobs a run planned, in plan order, without a scan and a sort.
CREATE INDEX jobs_by_run ON jobs (last_run_id, plan_order);

-- `runner status` lists every job in plan order.
CREATE INDEX jobs_by_plan_order ON jobs (plan_order);

-- The condition grid finds each job's latest attempt through the (job_id, number) key, one
-- seek per job, instead of reading every attempt of the job (same rows, same columns as 0004).
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
       ON a.attempt_id = (SELECT m.attempt_id FROM attempts m WHERE m.job_id = j.job_id
                          ORDER BY m.number DESC LIMIT 1)
ORDER BY j.plan_order;
