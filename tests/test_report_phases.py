"""`runner report` on ledgers of the whole study (trainings, reconstructions and comparisons), written
by real runs of the fake Phase E/F and compare scripts: the trainings and reconstructions get their
own sections and file, and never change what the report says about the comparisons."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fixture_study import make_study
from helpers import ledger_rows, run_runner, runner_env

FAKE_UPSTREAM = Path(__file__).resolve().parent / "fake_upstream.py"


@pytest.fixture
def bare_study(tmp_path: Path) -> Path:
    """Phase C and D data only: the models and reconstructions are made by the run."""
    return make_study(tmp_path / "study", doses=(1000,), upstream=False)


def run_all_phases(study: Path, upstream: dict, compare: dict | None = None) -> subprocess.CompletedProcess:
    fake = f"{sys.executable} {FAKE_UPSTREAM}"
    return run_runner(study, "--phases", "E,F,G", "--dose", "1000", "--max-parallel", "2",
                      "--train-cmd", fake, "--recon-cmd", fake,
                      env=runner_env(compare, FAKE_UPSTREAM_BEHAVIOUR=json.dumps(upstream)))


def report(study: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", "report", "--artifact-root", str(study / "analysis")],
                          env=runner_env(), capture_output=True, text=True, timeout=120)


def line_of(stdout: str, key: str) -> str:
    return next(line for line in stdout.splitlines() if line.split()[:1] == [key])


def test_trainings_and_reconstructions_are_reported_beside_the_comparisons(bare_study):
    study = bare_study
    assert run_all_phases(study, {"E/dose_1000/sparse": {"exit": 1}}).returncode == 1
    ledger = study / "analysis/ledger.db"
    log = ledger_rows(ledger, "SELECT a.stderr_log FROM attempts a JOIN jobs j USING (job_id) "
                              "WHERE j.key = 'E/dose_1000/sparse'")[0][0]
    dense_wall = ledger_rows(ledger, "SELECT a.duration_s FROM attempts a JOIN jobs j USING (job_id) "
                                     "WHERE j.key = 'E/dose_1000/dense'")[0][0]

    result = report(study)
    assert result.returncode == 0, result.stderr
    out = study / "analysis/report"
    # The text: one line per training and reconstruction, a failed one with its log.
    assert "Phase E: 3 trainings, 2 succeeded, 1 failed" in result.stdout
    dense = line_of(result.stdout, "E/dose_1000/dense")
    assert "loss 0.25" in dense and "held-out n/a" in dense and "2 steps" in dense and dense.endswith("cpu")
    assert line_of(result.stdout, "E/dose_1000/sparse").endswith(f"failed (exit_code) {study / log}")
    assert "Phase F: 4 reconstructions, 4 succeeded" in result.stdout
    assert "final cost 1.5  3 iterations  0.5 s" in line_of(result.stdout, "F/dose_1000/sparse/test")
    assert result.stdout.splitlines()[-1] == f"trainings and reconstructions: {out / 'phase_summary.json'}"

    phases = json.loads((out / "phase_summary.json").read_text())
    training = {t["key"]: t for t in phases["training"]}
    assert list(training) == ["E/dose_1000/baseline", "E/dose_1000/dense", "E/dose_1000/sparse"]
    assert {k: training["E/dose_1000/dense"][k] for k in ("model", "state", "loss", "final_loss", "steps", "device")} \
        == {"model": "dense", "state": "succeeded", "loss": "loss", "final_loss": 0.25, "steps": 2, "device": "cpu"}
    assert training["E/dose_1000/dense"]["wall_time_s"] == dense_wall
    assert training["E/dose_1000/dense"]["model_dir"] == str(study / "phase_e/dose_1000/dense/gs2")
    failed = training["E/dose_1000/sparse"]
    assert (failed["state"], failed["failure_class"], failed["log_path"], failed["final_loss"]) == \
        ("failed", "exit_code", str(study / log), None)
    assert {(r["view"], r["split"], r["state"], r["final_cost"], r["n_iterations"], r["computation_time_s"])
            for r in phases["reconstructions"]} == {(v, s, "succeeded", 1.5, 3, 0.5)
                                                    for v in ("dense", "sparse") for s in ("train", "test")}

    # The comparisons' files hold the comparisons alone, as before: the sparse ones are blocked
    # behind the failed training, the dense ones reported.
    summary = json.loads((out / "metrics_summary.json").read_text())
    assert (summary["n_jobs"], summary["n_success"], summary["n_blocked"]) == (4, 2, 2)
    assert "training" not in summary and "reconstructions" not in summary
    assert {job["key"] for job in summary["jobs"]} == {"dose_1000/dense/train", "dose_1000/dense/test"}
    with open(out / "study_table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["view"], r["split"]) for r in rows} == {("dense", "train"), ("dense", "test")}
    assert not {r["metric"] for r in rows} & {"final_loss", "final_cost", "steps", "n_iterations"}

    # The page: both sections after the conditions, the failure with its log, the curves drawn.
    html = (out / "report.html").read_text()
    order = [html.index(h) for h in ("<h2>Conditions</h2>", "<h2>Phase E: training</h2>",
                                     "<h2>Phase F: Pty-Chi reconstruction</h2>", "<h2>Failed, blocked")]
    assert order == sorted(order)
    phase_e = html[order[1]:order[2]]
    assert log in phase_e and "exit_code" in phase_e and "<td>0.25</td>" in phase_e
    assert '<img alt="training curves"' in phase_e
    assert "<td>1.5</td><td>3</td><td>0.5</td>" in html[order[2]:order[3]]
    assert phases["training_curves"] == str(out / "plots/training_curves.png")
    assert (out / "plots/training_curves.png").is_file()

    # Curves that cannot be drawn are one warning; the report is still written.
    (study / "phase_e/dose_1000/dense/gs2/training_log.csv").unlink()
    result = report(study)
    assert result.returncode == 0, result.stderr
    assert "runner: warning: no training curves: plot_training: error: cannot read the training logs" \
        in result.stderr
    html = (out / "report.html").read_text()
    assert "no training curves" in html and 'alt="training curves"' not in html
    assert not (out / "plots/training_curves.png").exists()
    assert json.loads((out / "phase_summary.json").read_text())["training_curves"] is None


def test_trainings_without_a_succeeded_comparison_are_nothing_to_report(bare_study):
    assert run_all_phases(bare_study, {}, compare={"*": {"exit": 4}}).returncode == 1
    result = report(bare_study)
    ledger = bare_study / "analysis/ledger.db"
    # The trainings and reconstructions succeeded, but only the 4 comparisons are conditions.
    assert [tuple(r) for r in ledger_rows(ledger, "SELECT phase, state, COUNT(*) FROM condition_grid GROUP BY phase, state")] \
        == [("E", "succeeded", 3), ("F", "succeeded", 4), ("G", "failed", 4)]
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"runner: error: the ledger {ledger} holds no succeeded comparison yet "
        "(4 conditions); run `python -m runner run` first"]
    assert not (bare_study / "analysis/report/report.html").exists()
