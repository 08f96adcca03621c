"""Security: no shell anywhere (hostile paths and arguments reach the child unchanged), SQL values
always bound (a hostile value stored in the ledger round-trips), files created readable by the
user only, manifests and NPZ metadata size-limited and checked before use."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fixture_study import make_study
from helpers import FAKE_COMPARE, ledger_rows, run_runner, runner_env

pytestmark = pytest.mark.reliability

ONE = ("--dose", "1000", "--view", "dense", "--split", "train")
HOSTILE = "'); DROP TABLE jobs;--"
AWKWARD = "-n it's \"odd\" $(touch pwned) `id` ; x\nnew line"


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hostile_folder_names_and_arguments_reach_the_child_unchanged(tmp_path):
    study = make_study(tmp_path / AWKWARD / "study", doses=(1000,))
    artifacts = tmp_path / f"-{AWKWARD} out"
    workdir = tmp_path / f"-w {AWKWARD}"
    workdir.mkdir()
    script = tmp_path / f"-s {AWKWARD}" / "compare.py"  # the compare command's own path
    script.parent.mkdir()
    script.write_bytes(FAKE_COMPARE.read_bytes())
    config = tmp_path / "study.toml"
    config.write_text(
        f"study_root = {json.dumps(str(study))}\nartifact_root = {json.dumps(str(artifacts))}\n"
        f"workdir = {json.dumps(str(workdir))}\n"
        f"compare_cmd = {json.dumps([sys.executable, str(script)])}\n"
        f"compare_args = ['--console-level', '-$(id) `id` \"; rm -rf /']\n")
    record = tmp_path / "calls.jsonl"
    result = subprocess.run([sys.executable, "-m", "runner", "run", "--config", str(config), *ONE,
                             "--gpus", "none"], env=runner_env({}, record), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (call,) = records(record)
    argv = call["argv"]
    assert argv[argv.index("--output_dir") + 1] == str(artifacts / "dose_1000/dense/train")
    assert argv[argv.index("--pinn_dir") + 1] == str(study / "phase_e/dose_1000/dense/gs2")
    assert argv[-2:] == ["--console-level", '-$(id) `id` "; rm -rf /']
    assert call["cwd"] == str(workdir)
    assert not list(tmp_path.rglob("pwned")) and not (Path.cwd() / "pwned").exists()


def test_hostile_values_are_stored_in_the_ledger_as_data(tmp_path):
    study = make_study(tmp_path / HOSTILE / "study", doses=(1000,))
    meta = {"selection_strategy": HOSTILE, "acceptance_rate": 0.5, "n_accepted": 1, "n_rejected": 1}
    np.savez(study / "phase_d/dose_1000/dense/dense_train.npz", _metadata=np.array(json.dumps(meta)))
    result = run_runner(study, *ONE, "--compare-arg", f"--console-level={HOSTILE}")
    assert result.returncode == 0, result.stderr
    ledger = study / "analysis/ledger.db"
    (job,) = ledger_rows(ledger, "SELECT * FROM jobs")
    assert job["output_dir"] == "analysis/dose_1000/dense/train"  # relative to the study's root
    assert json.loads(job["labels"])["selection_strategy"] == HOSTILE
    (grid,) = ledger_rows(ledger, "SELECT selection_strategy FROM condition_grid")
    assert grid["selection_strategy"] == HOSTILE
    assert json.loads(job["argv"])[-1] == f"--console-level={HOSTILE}"
    names = {r["name"] for r in ledger_rows(ledger, "SELECT name FROM sqlite_schema")}
    assert {"jobs", "attempts", "runs", "metrics"} <= names
    status = subprocess.run([sys.executable, "-m", "runner", "status", "--ledger", str(ledger), "--json"],
                            env=runner_env(), capture_output=True, text=True, timeout=30)
    assert status.returncode == 0 and json.loads(status.stdout)["jobs"][0]["state"] == "succeeded"
    assert json.loads(status.stdout)["jobs"][0]["selection_strategy"] == HOSTILE


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ledger_logs_and_outputs_are_readable_by_the_user_only(study):
    previous = os.umask(0o022)  # the usual umask: the runner must not depend on the user's
    try:
        result = run_runner(study, *ONE)
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    analysis = study / "analysis"
    job = analysis / "dose_1000/dense/train"
    files = [analysis / "ledger.db", analysis / "ledger.db-wal", analysis / "ledger.db-shm",
             analysis / "ledger.db.lock", analysis / "comparison_manifest.json",
             analysis / "metrics_summary.json", analysis / "metrics_delta_summary.json",
             analysis / "metrics_delta_highlights.txt", analysis / "metrics_delta_highlights_preview.txt",
             job / "logs/attempt-1.stdout.log", job / "logs/attempt-1.stderr.log",
             job / "comparison_metrics.csv"]  # the last one written by the command itself
    folders = [analysis, analysis / "dose_1000", analysis / "dose_1000/dense", job, job / "logs"]
    assert {str(p.relative_to(study)): oct(mode(p)) for p in files if p.exists() and mode(p) != 0o600} == {}
    assert {str(p.relative_to(study)): oct(mode(p)) for p in folders if mode(p) != 0o700} == {}


def test_an_oversized_manifest_is_refused_before_it_is_read(study):
    manifest = study / "phase_f/reconstruction_manifest.json"
    with open(manifest, "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MB of nothing, never parsed
    result = run_runner(study, *ONE)
    assert result.returncode == 2
    assert "byte limit" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("meta, message", [
    ({"acceptance_rate": float("nan")}, "not a finite number"),
    ({"n_accepted": 10 ** 30}, "out of range"),
    ({"selection_strategy": "x" * 10_000}, "longer than"),
])
def test_npz_metadata_is_checked_before_it_reaches_the_ledger(study, meta, message):
    np.savez(study / "phase_d/dose_1000/dense/dense_train.npz", _metadata=np.array(json.dumps(meta)))
    result = run_runner(study, *ONE)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert not (study / "analysis/ledger.db").exists()


def test_status_reads_a_ledger_whose_path_holds_uri_characters(tmp_path):
    study = make_study(tmp_path / "run?mode=rw#1 %41" / "study", doses=(1000,))
    assert run_runner(study, *ONE).returncode == 0
    status = subprocess.run([sys.executable, "-m", "runner", "status", "--ledger",
                             str(study / "analysis/ledger.db"), "--json"],
                            env=runner_env(), capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["totals"] == {"succeeded": 1}


def test_an_oversized_metrics_file_is_not_parsed(tmp_path):
    from runner.jobs import MetricsCheck
    from runner.results import MAX_METRICS_BYTES, PriorFile, read_metrics
    path = tmp_path / "comparison_metrics.csv"
    with open(path, "wb") as f:
        f.truncate(MAX_METRICS_BYTES + 1)  # sparse
    rows, problem = read_metrics(MetricsCheck(path, ("PtychoPINN",)), PriorFile(None))
    assert rows == [] and "too large to be a metrics table" in problem
