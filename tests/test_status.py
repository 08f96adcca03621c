"""`runner status`: the table, JSON and totals, from a real ledger."""

import json
import signal
import subprocess
import sys
import time

from helpers import ledger_rows, run_runner, runner_env, start_runner, wait_for


def status(*args):
    return subprocess.run([sys.executable, "-m", "runner", "status", *args], env=runner_env(),
                          capture_output=True, text=True, timeout=30)


def test_status_lists_every_job_with_totals(study):
    run_runner(study, behaviour={"dose_1000/dense/test": {"exit": 4}})
    (study / "phase_e/dose_100000/baseline/gs1/model.pt").unlink()
    run_runner(study, "--dose", "100000")
    result = status("--artifact-root", str(study / "analysis"))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ledger ") and "run 2" in lines[0]
    failed = next(line for line in lines if line.startswith("dose_1000/dense/test "))
    assert "failed" in failed and "exit_code" in failed and "attempt-1.stderr.log" in failed
    blocked = next(line for line in lines if line.startswith("dose_100000/dense/train "))
    assert "blocked" in blocked and "baseline model folder" in blocked
    assert lines[-1] == "12 jobs: 4 blocked, 1 failed, 7 succeeded"


def test_status_json_is_machine_readable(study):
    run_runner(study, "--dose", "1000")
    snap = json.loads(status("--ledger", str(study / "analysis/ledger.db"), "--json").stdout)
    assert snap["totals"] == {"succeeded": 4}
    assert [j["key"] for j in snap["jobs"]][:2] == ["dose_1000/dense/train", "dose_1000/dense/test"]
    assert snap["run"]["outcome"] == "completed" and snap["jobs"][0]["device"] == ""
    # The same fields as the query the text table is rendered from (SLURM's among them), and the
    # job's labels beside them: the study's words for its condition.
    from runner.ledger import QUERIES
    rows = ledger_rows(study / "analysis/ledger.db", QUERIES["status_jobs"], {"root": None})
    assert set(snap["jobs"][0]) == set(rows[0].keys()) | {"phase", "dose", "view", "split", "seed", "train_size",
                                                          "selection_strategy",
                                                          "acceptance_rate", "spacing_threshold", "n_accepted",
                                                          "n_rejected"}
    assert snap["jobs"][0]["backend"] == "local" and snap["jobs"][0]["slurm_job_id"] is None
    assert (snap["jobs"][0]["kind"], snap["jobs"][0]["phase"], snap["jobs"][0]["dose"]) == ("G", "G", 1000)


def test_status_watch_refreshes_until_interrupted(study):
    run_runner(study, "--dose", "1000")
    watcher = subprocess.Popen([sys.executable, "-m", "runner", "status", "--watch", "0.2", "--ledger",
                                str(study / "analysis/ledger.db")], env=runner_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, _ = watcher.communicate(timeout=3)
    except subprocess.TimeoutExpired:
        watcher.send_signal(2)
        out, _ = watcher.communicate(timeout=10)
    assert watcher.returncode == 0
    assert out.count("4 jobs: 4 succeeded") >= 3


def test_status_shows_the_time_so_far_of_a_running_job_while_the_run_goes_on(study):
    runner = start_runner(study, "--dose", "1000", "--view", "dense", "--split", "train",
                          behaviour={"*": {"sleep": 30}})
    ledger = study / "analysis/ledger.db"
    try:
        def running_line():
            if not ledger.exists():
                return None
            result = status("--ledger", str(ledger))
            lines = [line for line in result.stdout.splitlines() if line.startswith("dose_1000/dense/train ")]
            return lines[0] if lines and " running " in lines[0] else None
        wait_for(running_line, timeout=30)
        time.sleep(1.2)
        columns = running_line().split()
        assert columns[1] == "running" and columns[4].endswith("s") and float(columns[4][:-1]) >= 1.0
        snap = json.loads(status("--ledger", str(ledger), "--json").stdout)
        (job,) = [j for j in snap["jobs"] if j["key"] == "dose_1000/dense/train"]
        assert job["state"] == "running" and job["duration_s"] >= 1.0
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=60)
