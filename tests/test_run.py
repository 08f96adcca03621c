"""`runner run` end to end: real runner processes, real children (the fake compare script),
real SQLite ledger, real signals."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from helpers import (change_content, ledger_rows, pid_alive, processes_with_env, run_runner, runner_cmd, runner_env,
                      start_runner, wait_for)

ONE = ("--dose", "1000", "--view", "dense", "--split", "train")


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def attempts(study: Path) -> list[sqlite3.Row]:
    return ledger_rows(study / "analysis/ledger.db",
                       "SELECT j.key, a.* FROM attempts a JOIN jobs j USING (job_id) ORDER BY attempt_id")


def test_a_full_run_succeeds_records_everything_and_writes_the_manifest(study, tmp_path):
    record = tmp_path / "calls.jsonl"
    result = run_runner(study, "--max-parallel", "2", record=record)
    assert result.returncode == 0, result.stderr
    rows = attempts(study)
    assert len(rows) == 12 and {r["state"] for r in rows} == {"succeeded"}
    assert all(r["pid"] and r["pgid"] == r["pid"] and r["process_start"] for r in rows)
    assert all((study / r["stdout_log"]).read_text().startswith("fake compare") for r in rows)
    assert all("cuda warning noise" in (study / r["stderr_log"]).read_text() for r in rows)
    calls = records(record)
    assert {c["order"] for c in calls} == {"PCI_BUS_ID"} and {c["cvd"] for c in calls} == {""}
    cores = len(os.sched_getaffinity(0))
    assert {c["threads"] for c in calls} == {str(max(1, cores // 2))}  # cores shared by 2 slots
    manifest = json.loads((study / "analysis/comparison_manifest.json").read_text())
    assert (manifest["n_jobs"], manifest["n_executed"], manifest["n_success"], manifest["n_failed"]) == (12, 12, 12, 0)
    first = manifest["execution_results"][0]
    assert (first["dose"], first["view"], first["split"], first["returncode"]) == (1000, "dense", "train", 0)
    assert first["log_path"] == "dose_1000/dense/train/logs/attempt-1.stdout.log"
    run = ledger_rows(study / "analysis/ledger.db", "SELECT * FROM runs")[0]
    assert run["outcome"] == "completed" and json.loads(run["argv"])[1:4] == ["-m", "runner", "run"]


@pytest.mark.parametrize("jobs_per_gpu", [1, 2])
def test_never_more_than_k_jobs_on_a_gpu(study, tmp_path, jobs_per_gpu):
    record = tmp_path / "calls.jsonl"
    result = run_runner(study, "--gpus", "0,1,2", "--jobs-per-gpu", str(jobs_per_gpu),
                        behaviour={"*": {"sleep": 1.0}}, record=record)
    assert result.returncode == 0, result.stderr
    by_device = defaultdict(list)
    for call in records(record):
        by_device[call["cvd"]].append((call["start"], call["end"]))
    assert set(by_device) == {"0", "1", "2"} and sum(map(len, by_device.values())) == 12
    peak = 0
    for intervals in by_device.values():
        for start, _ in intervals:
            overlapping = sum(1 for s, e in intervals if s <= start < e)
            assert overlapping <= jobs_per_gpu
            peak = max(peak, overlapping)
    assert peak == jobs_per_gpu  # the seats were really used in parallel


def test_timeout_kills_the_whole_group_grandchild_included(study):
    mark = uuid.uuid4().hex
    env = runner_env({"*": {"hang": True, "grandchild": 120}}, TEST_MARK=mark)
    result = subprocess.run(runner_cmd(study, *ONE, "--timeout", "1", "--grace", "1"), env=env,
                            cwd=study, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (row,) = attempts(study)
    assert (row["state"], row["failure_class"]) == ("failed", "timeout")
    grandchild = int((study / "analysis/dose_1000/dense/train/grandchild.pid").read_text())
    assert not pid_alive(grandchild)
    assert processes_with_env("TEST_MARK", mark) == []


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(study):
    result = run_runner(study, *ONE, "--timeout", "0.5", "--grace", "0.5",
                        behaviour={"*": {"hang": True, "ignore_term": True}}, timeout=60)
    assert result.returncode == 1
    (row,) = attempts(study)
    assert row["failure_class"] == "timeout" and row["signal"] == signal.SIGKILL
    assert row["duration_s"] < 10


def test_retries_relaunch_until_success(study):
    result = run_runner(study, *ONE, "--retries", "2", behaviour={"*": {"fail_times": 2}})
    assert result.returncode == 0, result.stdout
    assert [(r["number"], r["state"], r["failure_class"]) for r in attempts(study)] == [
        (1, "failed", "exit_code"), (2, "failed", "exit_code"), (3, "succeeded", None)]
    logs = sorted(p.name for p in (study / "analysis/dose_1000/dense/train/logs").iterdir())
    assert len(logs) == 6  # every attempt keeps its own two logs


def test_retries_are_bounded(study):
    result = run_runner(study, *ONE, "--retries", "1", behaviour={"*": {"exit": 1}})
    assert result.returncode == 1
    assert [r["state"] for r in attempts(study)] == ["failed", "failed"]


@pytest.mark.parametrize("behaviour, detail", [
    ({"no_metrics": True}, "no comparison_metrics.csv"),
    ({"nan_model": "Baseline"}, "no numeric metric for Baseline"),
])
def test_exit_zero_without_usable_metrics_is_a_failure(study, behaviour, detail):
    result = run_runner(study, *ONE, behaviour={"*": behaviour})
    assert result.returncode == 1
    (row,) = attempts(study)
    assert (row["state"], row["exit_code"], row["failure_class"]) == ("failed", 0, "no_metrics")
    assert detail in row["failure_detail"]


def test_metrics_left_by_an_earlier_attempt_do_not_count(study):
    assert run_runner(study, *ONE).returncode == 0
    result = run_runner(study, *ONE, "--force", behaviour={"*": {"no_metrics": True}})
    assert result.returncode == 1
    last = attempts(study)[-1]
    assert last["failure_class"] == "no_metrics" and "not written by this attempt" in last["failure_detail"]


@pytest.mark.parametrize("signame", ["SIGSEGV", "SIGKILL"])  # a crash; the kernel's OOM killer
def test_death_by_signal_is_recorded(study, signame):
    result = run_runner(study, *ONE, behaviour={"*": {"signal": signame}})
    assert result.returncode == 1
    (row,) = attempts(study)
    assert (row["failure_class"], row["signal"], row["exit_code"]) == ("signal", getattr(signal, signame), None)


def test_processes_a_successful_job_leaves_behind_are_killed(study):
    mark = uuid.uuid4().hex
    env = runner_env({"*": {"grandchild": 120}}, TEST_MARK=mark)
    result = subprocess.run(runner_cmd(study, *ONE, "--grace", "1"), env=env, cwd=study,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert processes_with_env("TEST_MARK", mark) == []


def test_launch_error_is_recorded_not_raised(study):
    logs = study / "analysis/dose_1000/dense/train/logs"
    logs.parent.mkdir(parents=True)
    logs.write_text("a file where the log folder should be")
    result = run_runner(study, *ONE)
    assert result.returncode == 1
    (row,) = attempts(study)
    assert row["failure_class"] == "launch_error" and "cannot create log" in row["failure_detail"]


def test_resume_skips_successes_and_reruns_failures_and_changed_inputs(study):
    assert run_runner(study, behaviour={"dose_1000/sparse/test": {"exit": 1}}).returncode == 1
    assert len(attempts(study)) == 12
    change_content(study / "phase_c/dose_100000/patched_train.npz")
    result = run_runner(study)
    assert result.returncode == 0, result.stdout
    second = [r for r in attempts(study) if r["run_id"] == 2]
    assert sorted(r["key"] for r in second) == sorted(["dose_100000/dense/train", "dose_100000/sparse/train",
                                                       "dose_1000/sparse/test"])
    assert run_runner(study).returncode == 0 and len(attempts(study)) == 15  # nothing left to do
    states = ledger_rows(study / "analysis/ledger.db",
                         "SELECT job_id, COUNT(*) AS n FROM attempts WHERE state = 'succeeded' GROUP BY job_id")
    assert len(states) == 12 and {r["n"] for r in states} == {1}


def test_force_and_only_failed_choose_what_reruns(study):
    assert run_runner(study, behaviour={"dose_1000/dense/test": {"exit": 3}}).returncode == 1
    assert run_runner(study, "--only-failed").returncode == 0
    assert [r["key"] for r in attempts(study) if r["run_id"] == 2] == ["dose_1000/dense/test"]
    assert run_runner(study, "--force", "--dose", "1000").returncode == 0
    assert len([r for r in attempts(study) if r["run_id"] == 3]) == 4
    superseded = [r for r in attempts(study) if r["state"] == "superseded"]
    assert len(superseded) == 4


def test_blocked_job_is_reported_and_the_others_run(study):
    (study / "phase_f/dose_10000/sparse/train/ptychi_reconstruction.npz").unlink()
    result = run_runner(study)
    assert result.returncode == 1
    assert "blocked dose_10000/sparse/train: missing reconstruction" in result.stdout
    grid = {r["key"]: r for r in ledger_rows(study / "analysis/ledger.db", "SELECT * FROM condition_grid")}
    assert grid["dose_10000/sparse/train"]["state"] == "blocked"
    assert "missing reconstruction" in grid["dose_10000/sparse/train"]["detail"]
    assert sum(r["state"] == "succeeded" for r in grid.values()) == 11
    manifest = json.loads((study / "analysis/comparison_manifest.json").read_text())
    assert (manifest["n_jobs"], manifest["n_executed"], manifest["n_success"]) == (12, 11, 11)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_interrupts_every_attempt_and_leaves_no_process(study, signum, code):
    mark = uuid.uuid4().hex
    env = runner_env({"*": {"sleep": 60, "grandchild": 120}}, TEST_MARK=mark)
    runner = subprocess.Popen(runner_cmd(study, "--max-parallel", "2", "--grace", "2"), env=env, cwd=study,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ledger = study / "analysis/ledger.db"
    wait_for(lambda: ledger.exists() and len(ledger_rows(ledger, "SELECT 1 FROM attempts WHERE pid IS NOT NULL")) == 2)
    runner.send_signal(signum)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == code, err
    rows = attempts(study)
    assert [(r["state"], r["failure_class"]) for r in rows] == [("interrupted", "interrupted")] * 2
    assert ledger_rows(ledger, "SELECT outcome FROM runs")[0]["outcome"] == "interrupted"
    assert processes_with_env("TEST_MARK", mark) == []


def test_a_runner_killed_with_sigkill_is_resumed_cleanly(study):
    mark = uuid.uuid4().hex
    env = runner_env({"*": {"sleep": 1.5, "grandchild": 120}}, TEST_MARK=mark)
    runner = subprocess.Popen(runner_cmd(study, "--max-parallel", "2", "--grace", "1"), env=env, cwd=study,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = study / "analysis/ledger.db"
    wait_for(lambda: ledger.exists() and len(ledger_rows(
        ledger, "SELECT 1 FROM attempts WHERE state = 'succeeded'")) >= 2
        and ledger_rows(ledger, "SELECT 1 FROM attempts WHERE state = 'running' AND pid IS NOT NULL"))
    runner.kill()
    runner.wait()
    assert processes_with_env("TEST_MARK", mark)  # orphans are still running
    result = subprocess.run(runner_cmd(study, "--max-parallel", "2", "--grace", "1"),
                            env=runner_env({}, TEST_MARK=mark), cwd=study, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "now interrupted" in result.stdout
    per_job = ledger_rows(ledger, "SELECT job_id, SUM(state = 'succeeded') AS ok, SUM(state = 'running') AS run "
                                  "FROM attempts GROUP BY job_id")
    assert len(per_job) == 12 and all(r["ok"] == 1 and r["run"] == 0 for r in per_job)
    assert ledger_rows(ledger, "SELECT outcome FROM runs ORDER BY run_id")[0]["outcome"] == "crashed"
    assert processes_with_env("TEST_MARK", mark) == []
    assert ledger_rows(ledger, "PRAGMA integrity_check")[0][0] == "ok"


def test_a_second_runner_on_the_same_ledger_is_refused(study):
    first = start_runner(study, *ONE, behaviour={"*": {"sleep": 30}})
    try:
        ledger = study / "analysis/ledger.db"
        wait_for(lambda: ledger.exists() and ledger_rows(ledger, "SELECT 1 FROM attempts WHERE pid IS NOT NULL"))
        second = run_runner(study, *ONE)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and f"pid {first.pid}" in second.stderr
        status = subprocess.run([sys.executable, "-m", "runner", "status", "--ledger", str(ledger), "--json"],
                                env=runner_env(), capture_output=True, text=True, timeout=30)
        assert status.returncode == 0
        snap = json.loads(status.stdout)
        assert snap["totals"] == {"running": 1} and snap["jobs"][0]["duration_s"] >= 0
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


def test_dry_run_writes_the_plan_and_launches_nothing(study, tmp_path):
    record = tmp_path / "calls.jsonl"
    result = run_runner(study, "--dry-run", record=record)
    assert result.returncode == 0
    assert not record.exists() and not (study / "analysis/ledger.db").exists()
    assert result.stdout.count("--pinn_dir") == 12
    summary = (study / "analysis/dry_run/comparison_summary.txt").read_text()
    assert "  1. dose_1000/dense/train" in summary and " 12. dose_100000/sparse/test" in summary
    manifest = json.loads((study / "analysis/dry_run/comparison_manifest.json").read_text())
    assert manifest["n_jobs"] == 12 and manifest["n_executed"] == 0


def test_awkward_paths_reach_the_child_unchanged(tmp_path):
    from fixture_study import make_study
    study = make_study(tmp_path / "it's a \"study\" $(touch pwned) `id`", doses=(1000,))
    record = tmp_path / "calls.jsonl"
    result = run_runner(study, *ONE, "--compare-arg=--console-level", "--compare-arg=-debug; rm -rf /",
                        record=record)
    assert result.returncode == 0, result.stderr
    (call,) = records(record)
    assert call["argv"][call["argv"].index("--output_dir") + 1] == str(study / "analysis/dose_1000/dense/train")
    assert call["argv"][-2:] == ["--console-level", "-debug; rm -rf /"]
    assert not (Path.cwd() / "pwned").exists() and not (study / "pwned").exists()


def test_large_output_and_long_lines_stream_into_the_logs(study):
    # 100 MB, then a 200 kB line (over asyncio's 64 KiB readline limit) with no newline at all.
    result = run_runner(study, *ONE, behaviour={"*": {"spam_bytes": 100 << 20, "long_line": 200_000}})
    assert result.returncode == 0, result.stderr
    (row,) = attempts(study)
    size = (study / row["stdout_log"]).stat().st_size
    assert size >= (100 << 20) + 200_000
    with open(study / row["stdout_log"], "rb") as log:
        log.seek(-200_001, 2)
        assert log.read() == b"\n" + b"y" * 200_000


def test_on_a_terminal_run_keeps_a_live_status_line(study):
    import pty
    primary, secondary = pty.openpty()
    runner = subprocess.Popen(runner_cmd(study, *ONE), env=runner_env({"*": {"sleep": 2.5}}), cwd=study,
                              stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed: the runner exited
            break
        if not chunk:
            break
        output += chunk
    runner.wait(timeout=60)
    os.close(primary)
    text = output.decode()
    assert runner.returncode == 0
    assert "\r\x1b[K[0/1 done, 1 running, 0 failed, 0m01s]" in text  # ticks while the job runs
    assert "\r\x1b[Kok      dose_1000/dense/train" in text
