"""Crash-resume: SIGKILL the runner at seeded random moments of a run on the fake compare script,
run again, and check that the ledger never lies and nothing is lost.

Each trial draws, from its seed, what every condition's command does (succeed after a while,
leave a grandchild, fail, exit 0 without metrics, fail once, die by a signal) and one or two
crashes: a SIGKILL after a random delay, or at a named moment (runner/faults.py: inside a
migration, between an attempt's row and its spawn, between spawn and the pid's record, between a
child's exit and the commit of its outcome), or by the command itself killing the runner after it
wrote its metrics. Then a last run goes to the end and the guarantees are checked.

CI runs a few trials; the full suite is `pytest tests/test_reliability_crash.py --trials 50`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fixture_study import make_study
from helpers import pid_alive, processes_with_env, runner_cmd, runner_env
from runner import ledger as ledger_module
from runner.jobs import MetricsCheck
from runner.results import PriorFile, read_metrics
from runner.ptycho.arms import EXPECTED_MODELS
from runner.ptycho.layout import METRICS_FILE

pytestmark = pytest.mark.reliability

CONDITIONS = [f"dose_1000/{v}/{s}" for v in ("dense", "sparse") for s in ("train", "test")]
ARGS = ("--dose", "1000", "--max-parallel", "2", "--grace", "1", "--retries", "1")
# What a condition's command may do, and whether the job ends succeeded.
BEHAVIOURS = [
    (lambda rng: {"sleep": round(rng.uniform(0, 0.8), 2)}, True),
    (lambda rng: {"sleep": round(rng.uniform(0, 0.5), 2), "grandchild": 60}, True),
    (lambda rng: {"sleep": round(rng.uniform(0, 1.5), 2), "grandchild": 60}, True),
    (lambda rng: {"fail_times": 1}, True),  # the first attempt fails; its retry succeeds
    (lambda rng: {"exit": 1}, False),
    (lambda rng: {"no_metrics": True}, False),
    (lambda rng: {"signal": "SIGSEGV"}, False),
]
PAUSE_POINTS = ("attempt_row", "spawned", "exited")


@dataclass
class Trial:
    seed: int
    behaviour: dict
    succeeds: dict  # condition -> True when the job must end succeeded
    crashes: list  # ('delay', seconds) | ('pause', point, n) | ('command',)
    from_version_1: bool
    log: list = field(default_factory=list)


def draw(seed: int) -> Trial:
    rng = random.Random(seed)
    behaviour, succeeds = {}, {}
    for condition in CONDITIONS:
        make, ok = rng.choice(BEHAVIOURS)
        behaviour[condition] = make(rng)
        succeeds[condition] = ok
    from_version_1 = rng.random() < 0.2
    # One or two kills; a trial that starts from a version-1 ledger is first killed inside its upgrade.
    crashes = [("pause", "migrate", rng.randint(1, len(ledger_module.MIGRATIONS) - 1))] if from_version_1 else []
    for _ in range(rng.randint(1, 2) - len(crashes)):
        kind = rng.random()
        if kind < 0.45:
            crashes.append(("delay", round(rng.uniform(0.0, 3.0), 2)))
        elif kind < 0.85:
            crashes.append(("pause", rng.choice(PAUSE_POINTS), rng.randint(1, 4)))
        else:
            crashes.append(("command",))
    return Trial(seed, behaviour, succeeds, crashes, from_version_1)


def version_1_ledger(path: Path) -> None:
    """A ledger written by the first schema version, with a run of its own."""
    saved = ledger_module.MIGRATIONS, ledger_module.SCHEMA_VERSION
    ledger_module.MIGRATIONS, ledger_module.SCHEMA_VERSION = saved[0][:1], 1
    try:
        ledger_module.prepare(path)
    finally:
        ledger_module.MIGRATIONS, ledger_module.SCHEMA_VERSION = saved
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO runs (started_at, host, user, pid, argv, runner_version, outcome) "
                 "VALUES ('2020-01-01T00:00:00+00:00', 'old', 'u', 1, '[]', '0.0', 'completed')")
    conn.commit()
    conn.close()


def process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def crash_run(trial: Trial, study: Path, env: dict, crash: tuple, out: Path) -> None:
    """One run of the runner, SIGKILLed as `crash` says."""
    env = dict(env)
    if crash[0] == "pause":
        env["RUNNER_FAULT_PAUSE"] = f"{crash[1]}:{crash[2]}"
    if crash[0] == "command":  # the first command to finish kills the runner, metrics written
        behaviour = {c: dict(b) for c, b in trial.behaviour.items()}
        for b in behaviour.values():
            b["kill_runner"] = True
        env["FAKE_COMPARE_BEHAVIOUR"] = json.dumps(behaviour)
    with open(out, "w") as sink:
        runner = subprocess.Popen(runner_cmd(study, *ARGS), env=env, cwd=study, stdout=sink, stderr=sink)
        try:
            if crash[0] == "delay":
                try:
                    runner.wait(timeout=crash[1])
                except subprocess.TimeoutExpired:
                    pass
            elif crash[0] == "pause":
                deadline = time.monotonic() + 120
                while runner.poll() is None and process_state(runner.pid) != "T":
                    assert time.monotonic() < deadline, "the runner neither paused nor ended"
                    time.sleep(0.005)
            else:
                runner.wait(timeout=120)
            reached = runner.poll() is None
        finally:
            runner.kill()
            runner.wait(timeout=60)
    trial.log.append(f"{crash}: {'killed' if reached else 'ended by itself'}, exit {runner.returncode}")


def check_guarantees(trial: Trial, ledger: Path, launches: Path, mark: str) -> list[str]:
    """Every broken guarantee, as a sentence."""
    problems = []
    study = ledger.parent.parent  # paths under the study's root are recorded relative to it
    conn = sqlite3.connect(ledger)
    conn.row_factory = sqlite3.Row
    try:
        if (result := conn.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            problems.append(f"integrity_check: {result}")
        if conn.execute("PRAGMA foreign_key_check").fetchall():
            problems.append("foreign_key_check found dangling references")
        if conn.execute("PRAGMA user_version").fetchone()[0] != ledger_module.SCHEMA_VERSION:
            problems.append("the ledger was not upgraded to the current schema")
        jobs = {r["key"]: r for r in conn.execute("SELECT * FROM jobs")}
        attempts = conn.execute("SELECT j.key, j.output_dir, a.* FROM attempts a JOIN jobs j USING (job_id) "
                                "ORDER BY attempt_id").fetchall()
        runs = conn.execute("SELECT * FROM runs ORDER BY run_id").fetchall()
        metrics = dict(conn.execute("SELECT attempt_id, COUNT(*) FROM metrics GROUP BY attempt_id").fetchall())
    finally:
        conn.close()

    by_token = {a["token"]: a for a in attempts}
    for key in CONDITIONS:
        mine = [a for a in attempts if a["key"] == key]
        succeeded = [a for a in mine if a["state"] == "succeeded"]
        if len(succeeded) > 1:
            problems.append(f"{key}: {len(succeeded)} succeeded attempts")
        if [a["number"] for a in mine] != list(range(1, len(mine) + 1)):
            problems.append(f"{key}: attempt numbers {[a['number'] for a in mine]} are not 1..n")
        state = jobs[key]["state"] if key in jobs else None
        if state != ("succeeded" if trial.succeeds[key] else "failed"):
            problems.append(f"{key}: ends {state}, expected {'succeeded' if trial.succeeds[key] else 'failed'}")
        if state == "succeeded" and not succeeded:
            problems.append(f"{key}: job succeeded without a succeeded attempt")
        for a in succeeded:
            rows, problem = read_metrics(MetricsCheck(study / a["output_dir"] / METRICS_FILE, EXPECTED_MODELS),
                                         PriorFile(None))
            if problem:
                problems.append(f"{key}: attempt {a['number']} succeeded but {problem}")
            elif metrics.get(a["attempt_id"]) != len(rows):
                problems.append(f"{key}: attempt {a['number']} has {metrics.get(a['attempt_id'])} metric rows, "
                                f"its file {len(rows)}")
    for a in attempts:
        if a["state"] == "running":
            problems.append(f"{a['key']}: attempt {a['number']} still running after the last run")
        if a["pid"] is not None and not ((study / a["stdout_log"]).is_file() and (study / a["stderr_log"]).is_file()):
            problems.append(f"{a['key']}: attempt {a['number']} ran but its logs are missing")
        if a["state"] in ("succeeded", "superseded") and a["failure_class"]:
            problems.append(f"{a['key']}: success with failure class {a['failure_class']}")
        if a["state"] not in ("succeeded", "superseded") and metrics.get(a["attempt_id"]):
            problems.append(f"{a['key']}: attempt {a['number']} ({a['state']}) has metric rows")
    for line in launches.read_text().splitlines() if launches.exists() else []:
        launch = json.loads(line)
        attempt = by_token.get(launch["token"])
        if attempt is None:
            problems.append(f"{launch['condition']}: process {launch['pid']} ran without an attempt row")
        elif attempt["pid"] is not None and attempt["pid"] != launch["pid"]:
            problems.append(f"{launch['condition']}: attempt records pid {attempt['pid']}, ran as {launch['pid']}")
        elif not ((study / attempt["stdout_log"]).is_file() and (study / attempt["stderr_log"]).is_file()):
            problems.append(f"{launch['condition']}: attempt {attempt['number']} ran but its logs are missing")
    if not runs or runs[-1]["outcome"] != "completed":
        problems.append(f"the last run did not complete: {runs[-1]['outcome'] if runs else 'no run'}")
    if any(r["outcome"] is None for r in runs):
        problems.append("a run has no outcome (neither completed, interrupted nor crashed)")
    if trial.from_version_1 and runs[0]["host"] != "old":
        problems.append("the run recorded by the version-1 ledger was lost in the upgrade")
    alive = processes_with_env("TEST_MARK", mark)
    if alive:
        problems.append(f"processes of the trial still alive: {alive}")
    return problems


def run_trial(seed: int, root: Path) -> tuple[Trial, list[str]]:
    trial = draw(seed)
    study = make_study(root / "study", doses=(1000,))
    ledger = study / "analysis/ledger.db"
    if trial.from_version_1:
        ledger.parent.mkdir(parents=True)
        version_1_ledger(ledger)
    mark = uuid.uuid4().hex
    launches = root / "launches.jsonl"
    env = runner_env(trial.behaviour, TEST_MARK=mark, FAKE_COMPARE_LAUNCHES=str(launches))
    try:
        for number, crash in enumerate(trial.crashes):
            crash_run(trial, study, env, crash, root / f"run{number}.out")
        final = subprocess.run(runner_cmd(study, *ARGS), env=env, cwd=study, capture_output=True,
                               text=True, timeout=180)
        expected = 0 if all(trial.succeeds.values()) else 1
        problems = [] if final.returncode == expected else [
            f"last run exited {final.returncode}, expected {expected}: {final.stderr[-500:]}"]
        problems += check_guarantees(trial, ledger, launches, mark)
    finally:
        for pid in processes_with_env("TEST_MARK", mark):  # never leave a trial's processes behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return trial, problems


def test_crash_resume_trial(trial_seed, tmp_path):
    trial, problems = run_trial(trial_seed, tmp_path)
    assert not problems, (f"seed {trial_seed}: {trial.behaviour}\n" + "\n".join(trial.log) + "\n"
                          + "\n".join(problems))


def test_a_kill_inside_a_migration_leaves_the_old_version_intact(tmp_path):
    """Deterministic: stopped inside the upgrade of a version-1 ledger, before its commit."""
    study = make_study(tmp_path / "study", doses=(1000,))
    ledger = study / "analysis/ledger.db"
    ledger.parent.mkdir(parents=True)
    version_1_ledger(ledger)
    trial = Trial(0, {}, dict.fromkeys(CONDITIONS, True), [], True)
    crash_run(trial, study, runner_env({}), ("pause", "migrate", 1), tmp_path / "run.out")
    assert trial.log[0].endswith("killed, exit -9")
    conn = sqlite3.connect(ledger)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'metrics'").fetchone()[0] == 0
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT host FROM runs").fetchall() == [("old",)]
    conn.close()
    final = subprocess.run(runner_cmd(study, *ARGS), env=runner_env({}), cwd=study, capture_output=True,
                           text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    conn = sqlite3.connect(ledger)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == ledger_module.SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM study_metrics").fetchone()[0] > 0


def test_a_kill_between_a_childs_exit_and_its_commit_reruns_the_job(tmp_path):
    """Deterministic: the child has exited and written its metrics; its success is not recorded."""
    study = make_study(tmp_path / "study", doses=(1000,))
    ledger = study / "analysis/ledger.db"
    one = ("--view", "dense", "--split", "train")
    env = runner_env({}, RUNNER_FAULT_PAUSE="exited")
    runner = subprocess.Popen(runner_cmd(study, *ARGS, *one), env=env, cwd=study,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while process_state(runner.pid) != "T":
            assert runner.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        (attempt,) = sqlite3.connect(ledger).execute("SELECT state, pid FROM attempts").fetchall()
        assert attempt[0] == "running" and not pid_alive(attempt[1])
        assert (study / "analysis/dose_1000/dense/train" / METRICS_FILE).is_file()
    finally:
        runner.kill()
        runner.wait()
    result = subprocess.run(runner_cmd(study, *ARGS, *one), env=runner_env({}), cwd=study,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = sqlite3.connect(ledger).execute("SELECT number, state, failure_class FROM attempts").fetchall()
    assert rows == [(1, "interrupted", "interrupted"), (2, "succeeded", None)]


def test_the_attempt_row_is_committed_before_its_process_starts(tmp_path):
    """Deterministic: stopped after the spawn, before the pid is recorded. The row is there with
    the token the process carries, and the next run finds that process by its token."""
    study = make_study(tmp_path / "study", doses=(1000,))
    ledger = study / "analysis/ledger.db"
    launches = tmp_path / "launches.jsonl"
    one = ("--view", "dense", "--split", "train")
    mark = uuid.uuid4().hex
    env = runner_env({"*": {"sleep": 60}}, TEST_MARK=mark, FAKE_COMPARE_LAUNCHES=str(launches),
                     RUNNER_FAULT_PAUSE="spawned")
    runner = subprocess.Popen(runner_cmd(study, *ARGS, *one), env=env, cwd=study,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while process_state(runner.pid) != "T" or not launches.exists() or not launches.read_text():
            assert runner.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        (launch,) = [json.loads(line) for line in launches.read_text().splitlines()]
        rows = sqlite3.connect(ledger).execute("SELECT state, pid, token FROM attempts").fetchall()
        assert rows == [("running", None, launch["token"])]
    finally:
        runner.kill()
        runner.wait()
    assert pid_alive(launch["pid"])  # the orphan runs on, its pid unknown to the ledger
    result = subprocess.run(runner_cmd(study, *ARGS, *one), env=runner_env({}, TEST_MARK=mark), cwd=study,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "(its processes were killed)" in result.stdout
    assert not pid_alive(launch["pid"]) and processes_with_env("TEST_MARK", mark) == []
