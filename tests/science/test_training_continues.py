"""A training stopped half-way under the runner continues from its checkpoint: the real
train_model on the tiny study, stopped by the runner's --timeout (continued at once, without
counting against --retries) and by a Ctrl-C of the runner (continued by the next run). The ledger
records each attempt's steps, `status` says where it resumes, the report lists the steps by
attempt, and the weights equal those of one uninterrupted training."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from helpers import wait_for  # noqa: E402

STEPS = "400"
KEY = "E/dose_100000/dense"
ATTEMPTS = ("SELECT a.number, a.state, a.failure_class, a.start_step, a.end_step, a.argv, a.exit_code "
            "FROM attempts a JOIN jobs j USING (job_id) WHERE j.key = ? ORDER BY a.number")


def env() -> dict:
    # One thread everywhere, so that the uninterrupted reference runs exactly as the attempts did.
    return {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def runner(study: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runner", "run", "--config", str(study / "runner.toml"), "--phases", "E",
            "--dose", "100000", "--view", "dense", "--gpus", "none", "--max-parallel", "1",
            # The demo's network on the tiny data: steps long enough to stop half-way.
            "--train-arg=--preset=demo", "--train-arg=--seed=42", f"--train-arg=--steps={STEPS}", "--train-arg=--checkpoint_every=1", *extra]


def attempts(study: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(study / "analysis/ledger.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(ATTEMPTS, (KEY,)).fetchall()
    finally:
        conn.close()


@pytest.fixture
def study(generator, tmp_path) -> Path:
    root = tmp_path / "study"
    made = generator("--out", str(root), "--preset", "tiny", "--phases", "C,D", "--doses", "100000")
    assert made.returncode == 0, made.stderr
    return root


def assert_same_weights_as_one_uninterrupted_training(argv: list[str], folder: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    argv = list(argv)
    argv[argv.index("--output_dir") + 1] = str(reference)
    done = subprocess.run(argv, cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ours = torch.load(folder / "model.pt", weights_only=True)["weights"]
    theirs = torch.load(reference / "model.pt", weights_only=True)["weights"]
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_training_past_its_timeout_continues_from_its_checkpoint_without_using_a_retry(study, tmp_path):
    run = subprocess.run(runner(study, "--timeout", "15", "--retries", "0"), cwd=REPO, env=env(),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = attempts(study)
    assert len(rows) >= 2, [dict(r) for r in rows]  # 400 steps do not fit in 15 s, startup included
    for before, after in zip(rows, rows[1:]):
        assert (before["state"], before["failure_class"]) == ("failed", "timeout")
        assert before["end_step"] > before["start_step"]  # each stopped attempt saved more ...
        assert after["start_step"] == before["end_step"]  # ... and the next began where it ended
    assert rows[0]["start_step"] == 0
    assert (rows[-1]["state"], rows[-1]["end_step"]) == ("succeeded", int(STEPS))
    assert f"resume  {KEY}  at step {rows[0]['end_step']} after timeout" in run.stdout
    model_dir = study / "data/phase_e/dose_100000/dense/gs2"
    assert not (model_dir / "training_state.pt").exists()  # the finished training keeps no state
    log_steps = [int(line.split(",")[0]) for line in (model_dir / "training_log.csv").read_text().splitlines()[1:]]
    assert log_steps == sorted(set(log_steps)) and log_steps[-1] == int(STEPS)  # one row per step logged
    assert_same_weights_as_one_uninterrupted_training(json.loads(rows[-1]["argv"]), model_dir, tmp_path)

    # The report's Phase E section (what `runner report` prints) lists the steps by attempt.
    from runner.ptycho.report.build import phase_sections
    from runner.ptycho.report.snapshot import read
    from runner.ptycho.report.text import phase_text

    text = phase_text(phase_sections(read(study / "analysis/ledger.db")))
    chain = ", ".join(f"{r['start_step']}→{r['end_step']} ({r['failure_class'] or r['state']})" for r in rows)
    assert f"steps by attempt: {chain}" in text


def test_a_stopped_run_leaves_a_training_that_the_next_run_continues(study, tmp_path):
    from runner.executors import Ended
    from runner.jobs import Job, OutputsCheck
    from runner.results import Ending, Facts, PriorFile, judge

    model_dir = study / "data/phase_e/dose_100000/dense/gs2"
    progress = model_dir / "training_progress.json"
    first = subprocess.Popen(runner(study), cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        wait_for(lambda: progress.exists() and json.loads(progress.read_text())["step"] > 0, timeout=300)
        first.send_signal(signal.SIGINT)  # Ctrl-C of the runner: it stops the training, which saves
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, out + err
    (stopped,) = attempts(study)
    assert (stopped["state"], stopped["failure_class"], stopped["start_step"]) == ("interrupted", "interrupted", 0)
    saved = stopped["end_step"]
    assert 0 < saved < int(STEPS) and json.loads(progress.read_text())["step"] == saved

    # The folder of the unfinished training is no success, whatever its exit status said.
    made = (model_dir / "model.pt", model_dir / "model.json")
    outcome = judge(Facts(Ending.EXITED, Ended(0)), Job("k", (), REPO, tmp_path, check=OutputsCheck(made)),
                    PriorFile(None))
    assert not outcome.succeeded and outcome.failure_class.value == "no_metrics"

    status = subprocess.run([sys.executable, "-m", "runner", "status", "--ledger", str(study / "analysis/ledger.db")],
                            cwd=REPO, env=env(), capture_output=True, text=True, timeout=60)
    line = next(line for line in status.stdout.splitlines() if line.startswith(KEY))
    assert f"resumes at step {saved}" in line

    again = subprocess.run(runner(study), cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = attempts(study)
    assert [(r["state"], r["start_step"], r["end_step"]) for r in rows] == [
        ("interrupted", 0, saved), ("succeeded", saved, int(STEPS))]
    log = (study / "analysis").rglob("attempt-2.stdout.log")
    assert any("resuming from" in path.read_text() and f"at step {saved}" in path.read_text() for path in log)
    assert_same_weights_as_one_uninterrupted_training(json.loads(rows[-1]["argv"]), model_dir, tmp_path)
