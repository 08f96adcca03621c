-- A job that checkpoints (a training) keeps a progress file; the runner records, per attempt, the
-- step it started from and the step whose work it left saved, as the command wrote them there.
-- An attempt that saved progress before a time limit or a preemption is continued, not counted
-- against --retries. NULL for jobs that keep no progress file and for attempts before schema 10.
ALTER TABLE attempts ADD COLUMN start_step INTEGER;
ALTER TABLE attempts ADD COLUMN end_step INTEGER;

UPDATE failure_classes SET meaning = 'the attempt ran past its time limit (--timeout; SLURM''s --time, or a training that saved on SLURM''s warning signal and exited 138)' WHERE name = 'timeout';
UPDATE failure_classes SET meaning = 'the job was preempted (SLURM PREEMPTED, or a training that saved on a SIGTERM the runner did not send and exited 143)' WHERE name = 'preempted';

-- `status` says where an unfinished training resumes: job_grid gains the latest attempt's steps and
-- `resume_step`, the step that attempt saved when it did not succeed and ran the job's current
-- command and inputs (its checkpoint is the one the next attempt continues from).
DROP VIEW job_grid;
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
