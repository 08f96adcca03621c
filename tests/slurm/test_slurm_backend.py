"""`runner run --backend slurm` against a real one-node SLURM cluster with two fake GPUs:
real slurmctld and slurmd, real sbatch/squeue/scancel, the fake compare script as the job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixture_study import make_study
from helpers import ledger_rows, run_runner, runner_env, start_runner, wait_for

SLURM = ("--backend", "slurm")
ONE = ("--dose", "1000", "--view", "dense", "--split", "train")
DOSE = ("--dose", "1000")  # four jobs


@pytest.fixture
def study(tmp_path: Path, slurm_conf: Path) -> Path:
    return make_study(tmp_path / "study", doses=(1000,))


def ledger(study: Path) -> Path:
    return study / "analysis/ledger.db"


def attempts(study: Path) -> list:
    return ledger_rows(ledger(study), "SELECT j.key, a.* FROM attempts a JOIN jobs j USING (job_id) "
                                      "ORDER BY a.attempt_id")


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def squeue_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True,
                         text=True, timeout=60).stdout.strip()
    return out


def recorded_job_ids(study: Path, count: int, state: str = "RUNNING") -> list[str]:
    """Wait until `count` attempts have a SLURM job id and the ledger has recorded `state` for each."""
    def ready():
        rows = [r for r in attempts(study) if r["slurm_job_id"]]
        return [r["slurm_job_id"] for r in rows] if len(rows) >= count and all(
            r["slurm_state"] == state for r in rows) else None
    return wait_for(ready, timeout=90, interval=0.3)


def test_a_study_runs_to_completion_through_slurm_with_the_same_ledger_rows_as_locally(study, tmp_path):
    local_study = make_study(tmp_path / "local", doses=(1000,))
    assert run_runner(local_study, *DOSE, "--max-parallel", "2").returncode == 0
    result = run_runner(study, *DOSE, *SLURM, "--max-parallel", "2", timeout=180)
    assert result.returncode == 0, result.stderr
    columns = ("key", "number", "state", "exit_code", "signal", "failure_class", "run_id")
    local_rows = [tuple(r[c] for c in columns) for r in attempts(local_study)]
    slurm_rows = attempts(study)
    assert sorted(tuple(r[c] for c in columns) for r in slurm_rows) == sorted(local_rows)
    assert len(slurm_rows) == 4
    for row in slurm_rows:
        assert (row["backend"], row["slurm_node"], row["slurm_state"], row["slurm_exit"]) == \
            ("slurm", "localhost", "COMPLETED", "0:0")
        assert row["slurm_job_id"].isdigit() and row["pid"] is None
        assert (study / row["stdout_log"]).read_text().startswith("fake compare")  # the job's own log
        assert "cuda warning noise" in (study / row["stderr_log"]).read_text()
    metric_counts = [ledger_rows(ledger(s), "SELECT COUNT(*) FROM study_metrics")[0][0] for s in (study, local_study)]
    assert metric_counts[0] == metric_counts[1] == 4 * 12
    states = ledger_rows(ledger(study), "SELECT DISTINCT state FROM jobs")
    assert [r[0] for r in states] == ["succeeded"]


def test_two_concurrent_jobs_get_different_gpus_and_max_parallel_caps_the_queue(study, tmp_path):
    record = tmp_path / "calls.jsonl"
    result = run_runner(study, *DOSE, *SLURM, "--max-parallel", "2", behaviour={"*": {"sleep": 3}},
                        record=record, timeout=180)
    assert result.returncode == 0, result.stderr
    calls = records(record)
    assert len(calls) == 4 and {c["cvd"] for c in calls} == {"0", "1"}
    overlapping = [(a, b) for i, a in enumerate(calls) for b in calls[i + 1:]
                   if a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping  # two really ran at once...
    assert all(a["cvd"] != b["cvd"] for a, b in overlapping)  # ...each on its own GPU
    # --max-parallel 2: never more than two of our jobs queued or running at once.
    spans = [(r["started_at"], r["ended_at"]) for r in attempts(study)]
    assert max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans) == 2


def test_a_failing_job_lands_failed_with_its_exit_code(study):
    result = run_runner(study, *ONE, *SLURM, behaviour={"*": {"exit": 5}}, timeout=120)
    assert result.returncode == 1
    (row,) = attempts(study)
    assert (row["state"], row["failure_class"], row["exit_code"]) == ("failed", "exit_code", 5)
    assert (row["slurm_state"], row["slurm_exit"]) == ("FAILED", "5:0")


def test_a_job_past_its_slurm_time_limit_lands_timed_out(study):
    # SLURM's limits are whole minutes: this job is stopped after about a minute.
    result = run_runner(study, *ONE, *SLURM, "--time", "1", behaviour={"*": {"hang": True}}, timeout=240)
    assert result.returncode == 1
    (row,) = attempts(study)
    assert (row["state"], row["failure_class"], row["slurm_state"]) == ("failed", "timeout", "TIMEOUT")
    assert "time limit" in row["failure_detail"]


def test_a_job_cancelled_by_hand_lands_cancelled_and_is_not_retried(study):
    runner = start_runner(study, *ONE, *SLURM, "--retries", "2", behaviour={"*": {"hang": True}})
    try:
        (job_id,) = recorded_job_ids(study, 1)
        subprocess.run(["scancel", job_id], check=True, timeout=60)
        out, err = runner.communicate(timeout=120)
    finally:
        runner.kill()
    assert runner.returncode == 1, err
    (row,) = attempts(study)  # not relaunched: someone meant to stop it
    assert (row["state"], row["failure_class"], row["slurm_state"]) == ("failed", "cancelled", "CANCELLED")


def test_ctrl_c_cancels_the_slurm_jobs_by_default(study):
    runner = start_runner(study, *DOSE, *SLURM, "--max-parallel", "2", behaviour={"*": {"hang": True}})
    try:
        ids = recorded_job_ids(study, 2)
        runner.send_signal(signal.SIGINT)
        runner.communicate(timeout=120)
    finally:
        runner.kill()
    assert runner.returncode == 130
    assert {squeue_state(i) for i in ids} == {"CANCELLED"}
    rows = attempts(study)
    assert len(rows) == 2 and {(r["state"], r["failure_class"]) for r in rows} == {("interrupted", "interrupted")}


def test_with_on_interrupt_leave_the_jobs_keep_running_and_the_next_run_re_attaches(study, tmp_path):
    record = tmp_path / "calls.jsonl"
    runner = start_runner(study, *ONE, *SLURM, "--on-interrupt", "leave", behaviour={"*": {"sleep": 8}},
                          record=record)
    try:
        (job_id,) = recorded_job_ids(study, 1)
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=60)
    finally:
        runner.kill()
    assert runner.returncode == 143
    assert squeue_state(job_id) == "RUNNING"
    assert attempts(study)[0]["state"] == "running"
    shown = subprocess.run([sys.executable, "-m", "runner", "status", "--ledger", str(ledger(study))],
                           env=runner_env(), capture_output=True, text=True, timeout=60)
    line = next(x for x in shown.stdout.splitlines() if x.startswith("dose_1000/dense/train "))
    assert "running" in line and "localhost" in line and f"RUNNING {job_id}" in line
    again = run_runner(study, *ONE, *SLURM, behaviour={"*": {"sleep": 8}}, record=record, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "still running on SLURM" in again.stdout
    (row,) = attempts(study)
    assert (row["state"], row["slurm_job_id"]) == ("succeeded", job_id)
    assert len(records(record)) == 1


def test_a_runner_killed_mid_run_re_attaches_on_restart_without_resubmitting(study, tmp_path):
    record = tmp_path / "calls.jsonl"
    behaviour = {"*": {"sleep": 6}}
    runner = start_runner(study, *DOSE, *SLURM, "--max-parallel", "2", behaviour=behaviour, record=record)
    try:
        ids = recorded_job_ids(study, 2)
        runner.send_signal(signal.SIGKILL)  # no clean-up at all
        runner.wait(timeout=30)
    finally:
        runner.kill()
    assert {squeue_state(i) for i in ids} == {"RUNNING"}  # SLURM's jobs outlive the runner
    again = run_runner(study, *DOSE, *SLURM, "--max-parallel", "2", behaviour=behaviour, record=record,
                       timeout=180)
    assert again.returncode == 0, again.stderr
    assert "2 still running on SLURM" in again.stdout
    rows = attempts(study)
    # Four jobs, four attempts, four submissions: the two re-attached ones were not submitted again.
    assert len(rows) == 4 and {r["state"] for r in rows} == {"succeeded"}
    assert len({r["slurm_job_id"] for r in rows}) == 4 and set(ids) <= {r["slurm_job_id"] for r in rows}
    assert sorted(c["condition"] for c in records(record)) == sorted(r["key"] for r in rows)
    reattached = [r for r in rows if r["slurm_job_id"] in ids]
    assert {r["run_id"] for r in reattached} == {1} and all(r["number"] == 1 for r in reattached)


def test_a_re_attached_job_that_wrote_no_metrics_is_refused_despite_an_earlier_file(study):
    """Re-attach judges freshness by the metrics file's identity stored with the attempt row, not
    by comparing the file's mtime with the recorded start: here the earlier run's file carries a
    time after the launch, and the re-attached job writes none."""
    assert run_runner(study, *ONE, *SLURM, timeout=180).returncode == 0
    csv = study / "analysis/dose_1000/dense/train/comparison_metrics.csv"
    future = time.time() + 600
    os.utime(csv, (future, future))
    runner = start_runner(study, *ONE, *SLURM, "--force", behaviour={"*": {"sleep": 4, "no_metrics": True}})
    try:
        wait_for(lambda: len(rows := attempts(study)) == 2 and rows[1]["slurm_state"] == "RUNNING",
                 timeout=90, interval=0.3)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
    finally:
        runner.kill()
    again = run_runner(study, *ONE, *SLURM, behaviour={"*": {"no_metrics": True}}, timeout=180)
    assert "still running on SLURM" in again.stdout
    last = attempts(study)[-1]
    assert (last["number"], last["failure_class"]) == (2, "no_metrics")
    assert "not written by this attempt" in last["failure_detail"]


def test_a_local_run_refuses_a_ledger_with_attempts_still_on_slurm(study):
    runner = start_runner(study, *ONE, *SLURM, behaviour={"*": {"sleep": 5}})
    try:
        recorded_job_ids(study, 1)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
    finally:
        runner.kill()
    result = run_runner(study, *ONE)
    assert result.returncode == 2
    assert "rerun with --backend slurm" in result.stderr and "Traceback" not in result.stderr


def test_a_controller_outage_is_waited_out(study, slurm_conf):
    pid_file = slurm_conf.parent / "slurmctld.pid"
    runner = start_runner(study, *ONE, *SLURM, behaviour={"*": {"sleep": 6}})
    try:
        recorded_job_ids(study, 1)
        subprocess.run(["kill", pid_file.read_text().strip()], check=True)
        # squeue itself retries for about 18 s: a longer outage makes it fail at least once.
        time.sleep(25)
    finally:
        wait_for(lambda: not _controller_alive(pid_file), timeout=30)
        subprocess.run([shutil.which("slurmctld") or "/usr/sbin/slurmctld", "-f", str(slurm_conf)], check=True)
    try:
        out, err = runner.communicate(timeout=180)
    finally:
        runner.kill()
    assert runner.returncode == 0, err
    assert "does not answer" in err and "answers again" in err
    (row,) = attempts(study)
    assert (row["state"], row["slurm_state"]) == ("succeeded", "COMPLETED")


def _controller_alive(pid_file: Path) -> bool:
    try:
        return Path(f"/proc/{pid_file.read_text().strip()}").exists()
    except (OSError, ValueError):
        return False


def test_paths_with_spaces_quotes_and_dollars_reach_the_job_unchanged(tmp_path, slurm_conf):
    odd = make_study(tmp_path / "it's a \"study\" $(touch pwned) `x` 100%j", doses=(1000,))
    record = tmp_path / "calls.jsonl"
    result = run_runner(odd, *ONE, *SLURM, record=record, timeout=120)
    assert result.returncode == 0, result.stderr
    (call,) = records(record)
    (row,) = attempts(odd)
    assert call["argv"] == json.loads(row["argv"])[2:]  # after the interpreter and script
    assert str(odd / "analysis/dose_1000/dense/train") in call["argv"]
    assert (odd / row["stdout_log"]).read_text().startswith("fake compare")  # %j not expanded
    assert not list(tmp_path.rglob("pwned"))


def test_a_submission_slurm_refuses_is_a_launch_error_and_not_retried(study):
    result = run_runner(study, *ONE, *SLURM, "--partition", "nosuchpartition", "--retries", "2", timeout=120)
    assert result.returncode == 1
    (row,) = attempts(study)
    assert (row["state"], row["failure_class"], row["slurm_job_id"]) == ("failed", "launch_error", None)
    assert "sbatch refused the job" in row["failure_detail"] and "partition" in row["failure_detail"].lower()


def test_an_attempt_whose_job_id_was_never_recorded_is_found_by_its_job_name(study, tmp_path):
    record = tmp_path / "calls.jsonl"
    runner = start_runner(study, *ONE, *SLURM, behaviour={"*": {"sleep": 5}}, record=record)
    try:
        (job_id,) = recorded_job_ids(study, 1)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
    finally:
        runner.kill()
    # As if the runner had died after sbatch answered but before the id reached the ledger.
    conn = sqlite3.connect(ledger(study))
    conn.execute("UPDATE attempts SET slurm_job_id = NULL")
    conn.commit()
    conn.close()
    again = run_runner(study, *ONE, *SLURM, behaviour={"*": {"sleep": 5}}, record=record, timeout=120)
    assert again.returncode == 0, again.stderr
    (row,) = attempts(study)
    assert (row["state"], row["slurm_job_id"]) == ("succeeded", job_id)
    assert len(records(record)) == 1


def test_the_job_graph_runs_on_slurm_and_a_failed_training_leaves_nothing_queued(tmp_path, slurm_conf):
    """The runner submits each job once its needs have succeeded: a job behind a failure is never
    submitted, so nothing of the study can wait in the queue for ever (an afterok chain would)."""
    study = make_study(tmp_path / "study", doses=(1000,), upstream=False)
    fake = Path(__file__).resolve().parent.parent / "fake_upstream.py"
    env = runner_env(None, None, FAKE_UPSTREAM_BEHAVIOUR=json.dumps({"E/dose_1000/dense": {"exit": 1}}))
    result = run_runner(study, *SLURM, "--phases", "E,F,G", *DOSE, "--max-parallel", "4",
                        "--train-cmd", f"{sys.executable} {fake}", "--recon-cmd", f"{sys.executable} {fake}",
                        env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    states = {r["key"]: r["state"] for r in ledger_rows(ledger(study), "SELECT key, state FROM jobs")}
    assert states.pop("E/dose_1000/dense") == "failed"
    assert states.pop("dose_1000/dense/train") == states.pop("dose_1000/dense/test") == "blocked"
    assert set(states.values()) == {"succeeded"}
    rows = attempts(study)
    assert len(rows) == 9 and all(r["backend"] == "slurm" and r["slurm_job_id"] for r in rows)
    assert not {"dose_1000/dense/train", "dose_1000/dense/test"} & {r["key"] for r in rows}  # never submitted
    ended = {r["key"]: r["ended_at"] for r in rows}
    for key in ("dose_1000/sparse/train", "dose_1000/sparse/test"):  # submitted after its needs ended
        started = next(r["started_at"] for r in rows if r["key"] == key)
        assert started >= max(ended["E/dose_1000/sparse"], ended["E/dose_1000/baseline"])
    for row in rows:
        assert squeue_state(row["slurm_job_id"]) in ("", "COMPLETED", "FAILED")


def test_nodes_that_mount_the_study_at_another_path_are_handed_their_paths(tmp_path, slurm_conf):
    """[run] node_root: the nodes see the study at another path (here a link, node_mount -> study).
    The batch script, the working folder and the log paths SLURM gets name the nodes' paths; the
    job writes its outputs through them and the runner checks them at the host's."""
    study = make_study(tmp_path / "study", doses=(1000,))
    node = tmp_path / "node_mount"
    node.symlink_to(study, target_is_directory=True)
    config = tmp_path / "runner.toml"
    config.write_text(f'[run]\nnode_root = "{node}"\n')
    record = tmp_path / "calls.jsonl"
    result = run_runner(study, *ONE, *SLURM, "--config", str(config), record=record, timeout=120)
    assert result.returncode == 0, result.stderr
    (row,) = attempts(study)
    assert (row["state"], row["slurm_state"]) == ("succeeded", "COMPLETED")
    (call,) = records(record)
    out_dir = "analysis/dose_1000/dense/train"
    assert str(node / out_dir) in call["argv"]  # the job was given the nodes' path...
    assert (study / out_dir / "comparison_metrics.csv").is_file()  # ...and wrote through it
    assert not any(str(study) in arg for arg in call["argv"])
    stdout_log, stderr_log = study / row["stdout_log"], study / row["stderr_log"]  # recorded under the root
    assert stdout_log.read_text().startswith("fake compare")  # the runner's own reads: at the host's paths
    script = Path(str(stdout_log).replace(".stdout.log", ".sbatch")).read_text()
    exec_line = script.splitlines()[-1]
    assert str(node / out_dir) in exec_line and str(study) not in exec_line
    shown = subprocess.run(["scontrol", "show", "job", row["slurm_job_id"]], capture_output=True, text=True,
                           timeout=60).stdout  # SLURM remembers a finished job for MinJobAge (300 s)
    fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
    assert fields["WorkDir"] == str(node)
    assert fields["StdOut"] == str(node / row["stdout_log"])
    assert fields["StdErr"] == str(node / row["stderr_log"])
    assert fields["Command"] == str(stdout_log).replace(".stdout.log", ".sbatch")  # read here, by sbatch


def test_a_training_at_its_time_limit_saves_on_the_warning_signal_and_the_next_attempt_continues(tmp_path, slurm_conf):
    """The real train_model on the tiny study's data (the demo preset's network, so that it outlasts
    its attempts), under SLURM's smallest limit (--time 1) with the warning 20 s before it: an
    attempt saves on SIGUSR1 and exits 138 (timeout), the next continues from its step without using
    a retry, and the last finishes the planned steps. SLURM sends the warning up to a minute early
    (its event resolution), so on a one-minute limit an attempt may be warned while still setting
    up, with nothing saved: such an attempt uses a retry (--retries 2)."""
    repo = Path(__file__).resolve().parents[2]
    study = tmp_path / "study"
    env = runner_env()
    made = subprocess.run([sys.executable, str(repo / "scripts/make_synthetic_study.py"), "--out", str(study),
                           "--preset", "tiny", "--phases", "C,D", "--doses", "100000"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    steps = 1200
    result = subprocess.run(
        [sys.executable, "-m", "runner", "run", "--config", str(study / "runner.toml"), "--phases", "E",
         "--dose", "100000", "--view", "dense", *SLURM, "--time", "1", "--signal-before", "20", "--retries", "2",
         "--train-arg=--preset=demo", "--train-arg=--seed=42", f"--train-arg=--steps={steps}",
         "--train-arg=--checkpoint_every=5"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    for key in ("E/dose_100000/dense", "E/dose_100000/baseline"):
        rows = [r for r in attempts(study) if r["key"] == key]
        assert len(rows) >= 2, [dict(r) for r in rows]
        saved = 0
        for row in rows:  # each attempt continued where the last one that saved left off
            assert row["start_step"] in (None, saved)  # None: warned in set-up, it recorded nothing
            saved = row["end_step"] if row["end_step"] is not None else saved
        assert all((r["state"], r["failure_class"]) == ("failed", "timeout") for r in rows[:-1])
        advanced = [r for r in rows[:-1] if r["end_step"] and r["end_step"] > r["start_step"]]
        assert advanced and len(rows) - 1 - len(advanced) <= 2  # only the set-up ones used a retry
        assert any(r["exit_code"] == 138 for r in rows[:-1])  # saved on SLURM's SIGUSR1, before the limit
        assert (rows[0]["start_step"], rows[-1]["state"], rows[-1]["end_step"]) == (0, "succeeded", steps)
    assert "not counted against --retries" in result.stdout
