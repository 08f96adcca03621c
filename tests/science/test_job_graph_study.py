"""The tiny study's Phases E, F and G run by the runner as one graph of jobs, with the real
training, reconstruction and compare scripts: what `make demo` does, at the tiny preset."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptychokit.checkpoint import load_model

REPO = Path(__file__).resolve().parents[2]


def runner(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def graph_study(tmp_path_factory, generator) -> Path:
    root = tmp_path_factory.mktemp("graph") / "study"
    made = generator("--out", str(root), "--preset", "tiny", "--doses", "1000", "--phases", "C,D")
    assert made.returncode == 0, made.stderr
    assert not (root / "data/phase_e").exists() and (root / "runner.toml").is_file()
    result = runner("run", "--config", str(root / "runner.toml"), "--max-parallel", "2", "--gpus", "none")
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def rows(root: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(root / "analysis/ledger.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_the_runner_trains_reconstructs_and_compares_the_study(graph_study):
    assert rows(graph_study, "SELECT phase, COUNT(*), MIN(state), MAX(state) FROM condition_grid GROUP BY phase") == [
        ("E", 3, "succeeded", "succeeded"), ("F", 4, "succeeded", "succeeded"), ("G", 4, "succeeded", "succeeded")]
    # Every success check holds for real: the models load, the reconstructions hold what Phase G reads.
    for model in ("baseline/gs1", "dense/gs2", "sparse/gs2"):
        loaded = load_model(graph_study / "data/phase_e/dose_1000" / model)
        assert loaded is not None
    with np.load(graph_study / "data/phase_f/dose_1000/sparse/test/ptychi_reconstruction.npz") as npz:
        assert {"reconstructed_object", "reconstructed_probe"} <= set(npz.files)
        final_cost = float(npz["cost_history"][-1])
    recorded = dict(rows(graph_study, "SELECT metric, value FROM phase_results WHERE key = 'F/dose_1000/sparse/test'"))
    assert recorded["final_cost"] == pytest.approx(final_cost)  # read by the runner without numpy
    provenance = json.loads((graph_study / "data/phase_e/dose_1000/dense/gs2/model.json").read_text())["provenance"]
    pinn = dict(rows(graph_study, "SELECT metric, value FROM phase_results WHERE key = 'E/dose_1000/dense'"))
    assert pinn["final_nll_excess"] == pytest.approx(provenance["final_nll_excess"])
    assert pinn["held_out_nll_excess"] == pytest.approx(provenance["held_out_nll_excess"])
    # Each comparison scored the models and reconstruction its needs made, beside the floor.
    assert rows(graph_study, "SELECT COUNT(DISTINCT key), COUNT(DISTINCT model) FROM study_metrics "
                             "WHERE metric = 'ms_ssim'") == [(4, 4)]
    manifest = json.loads((graph_study / "data/phase_f/reconstruction_manifest.json").read_text())
    assert {e["status"] for e in manifest["execution_results"]} == {"success"}
    assert all(e["selection_strategy"] for e in manifest["execution_results"])


def test_a_second_run_has_nothing_to_do(graph_study):
    result = runner("run", "--config", str(graph_study / "runner.toml"), "--max-parallel", "2", "--gpus", "none")
    assert result.returncode == 0
    assert "11 jobs planned, 0 to run, 11 already done" in result.stdout


def test_the_graph_picture_and_the_makespan_figures_come_from_the_ledger(graph_study, tmp_path):
    ledger = graph_study / "analysis/ledger.db"
    drawn = subprocess.run([sys.executable, str(REPO / "scripts/plot_job_graph.py"), "--ledger", str(ledger),
                            "--out", str(tmp_path / "graph.png"), "--run", "1"], capture_output=True, text=True,
                           timeout=120)
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sys.path.insert(0, str(REPO))
    from benchmarks.graph_makespan import figures

    found = figures(ledger, 1)
    durations = rows(graph_study, "SELECT SUM(duration_s) FROM attempts WHERE run_id = 1")[0][0]
    assert found["attempts"] == 11 and found["work_s"] == pytest.approx(durations, abs=0.1)
    assert found["bound_s"] == pytest.approx(max(found["critical_path_s"], found["work_s"] / 2), abs=0.1)
    assert 0.98 <= found["ratio"] < 1.5  # two slots kept busy; the demo's own figure is in the README
