"""Launch order and the relaxed success rule, end to end: real runner, real ledger, fake compare."""

import json
from pathlib import Path

from fixture_study import make_study
from helpers import ledger_rows, run_runner

from runner.graph import launch_order
from runner.jobs import Job


def started_order(record: Path) -> list[str]:
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    return [c["condition"] for c in sorted(calls, key=lambda c: c["start"])]


def set_durations(ledger: Path, seconds: dict[str, float]) -> None:
    """Give the earlier successes known durations (what a real run would have measured)."""
    import sqlite3
    conn = sqlite3.connect(ledger)
    with conn:
        for key, duration in seconds.items():
            conn.execute("UPDATE attempts SET duration_s = ? WHERE job_id = (SELECT job_id FROM jobs WHERE key = ?)",
                         (duration, key))
    conn.close()


def test_without_needs_unknown_jobs_go_first_then_the_longest():
    jobs = [Job(key, (), Path("."), Path(".")) for key in "abcde"]
    ordered = launch_order(jobs, {"a": 5.0, "b": 60.0, "d": 5.0}, {})
    assert [job.key for job in ordered] == ["c", "e", "b", "a", "d"]


def test_a_rerun_launches_never_run_jobs_first_then_the_longest_by_the_ledger(tmp_path):
    study = make_study(tmp_path / "study", doses=(1000, 10000))
    assert run_runner(study, "--dose", "1000").returncode == 0
    set_durations(study / "analysis/ledger.db", {"dose_1000/dense/train": 5.0, "dose_1000/dense/test": 60.0,
                                                 "dose_1000/sparse/train": 30.0, "dose_1000/sparse/test": 1.0})
    record = tmp_path / "calls.jsonl"
    assert run_runner(study, "--force", record=record).returncode == 0  # one slot: launch order is visible
    assert started_order(record) == [
        "dose_10000/dense/train", "dose_10000/dense/test", "dose_10000/sparse/train", "dose_10000/sparse/test",
        "dose_1000/dense/test", "dose_1000/sparse/train", "dose_1000/dense/train", "dose_1000/sparse/test"]


def test_order_plan_keeps_the_study_order(tmp_path):
    study = make_study(tmp_path / "study", doses=(1000,))
    assert run_runner(study).returncode == 0
    set_durations(study / "analysis/ledger.db", {"dose_1000/sparse/test": 99.0})
    record = tmp_path / "calls.jsonl"
    assert run_runner(study, "--force", "--order", "plan", record=record).returncode == 0
    assert started_order(record) == ["dose_1000/dense/train", "dose_1000/dense/test",
                                     "dose_1000/sparse/train", "dose_1000/sparse/test"]


def test_success_exit_code_accepts_a_command_that_writes_no_metrics(tmp_path):
    study = make_study(tmp_path / "study", doses=(1000,))
    strict = run_runner(study, behaviour={"*": {"no_metrics": True}})
    assert strict.returncode == 1
    relaxed = run_runner(study, "--success", "exit-code", behaviour={"*": {"no_metrics": True}})
    assert relaxed.returncode == 0, relaxed.stdout
    rows = ledger_rows(study / "analysis/ledger.db", "SELECT state, run_id FROM attempts WHERE run_id = 2")
    assert [r["state"] for r in rows] == ["succeeded"] * 4
    # A success by exit code alone is not a success by the metrics rule: the default reruns them.
    again = run_runner(study)
    assert again.returncode == 0
    assert len(ledger_rows(study / "analysis/ledger.db", "SELECT 1 FROM attempts WHERE run_id = 3")) == 4


def test_success_exit_code_still_fails_a_non_zero_exit(tmp_path):
    study = make_study(tmp_path / "study", doses=(1000,))
    result = run_runner(study, "--success", "exit-code", "--dose", "1000", "--view", "dense",
                        behaviour={"dose_1000/dense/test": {"exit": 4}})
    assert result.returncode == 1
    states = dict((r["key"], r["state"]) for r in ledger_rows(study / "analysis/ledger.db", "SELECT key, state FROM jobs"))
    assert states == {"dose_1000/dense/train": "succeeded", "dose_1000/dense/test": "failed"}
