"""The replicate axes on the tiny preset, end to end with the real scripts: two training seeds and
two training-set sizes of the dense view, the real trainings, Pty-Chi and comparisons, then the
report's summary over the seeds and its score-against-size figure."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_seeds_and_training_set_sizes_of_the_tiny_study(generator, tmp_path):
    study = tmp_path / "study"
    made = generator("--out", str(study), "--preset", "tiny", "--phases", "C,D", "--replicates", "2",
                     "--train-sizes", "16,all")
    assert made.returncode == 0, made.stderr
    assert 'replicates = "2"' in (study / "runner.toml").read_text()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-m", "runner", "run", "--config", str(study / "runner.toml"),
                          "--dose", "100000", "--view", "dense", "--split", "test", "--gpus", "none",
                          "--max-parallel", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    phase_e = study / "data/phase_e/dose_100000"
    # The study's seed at the whole split keeps the one-seed folders; the others get their level.
    for folder in ("dense/gs2", "dense/seed_43/gs2", "dense/n_16/seed_42/gs2", "baseline/n_16/seed_43/gs1"):
        assert (phase_e / folder / "model.pt").is_file(), folder
    sized = json.loads((phase_e / "dense/n_16/seed_43/gs2/model.json").read_text())["provenance"]
    whole = json.loads((phase_e / "dense/seed_43/gs2/model.json").read_text())["provenance"]
    assert (sized["n_train"], sized["n_subsample"], sized["seed"]) == (16, 16, 43)
    assert whole["n_train"] == whole["n_available"] > 16 and whole["n_subsample"] is None

    report = subprocess.run([sys.executable, "-m", "runner", "report", "--artifact-root", str(study / "analysis")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr
    out = study / "analysis/report"
    with open(out / "study_summary.csv", newline="") as f:
        rows = {(r["train_size"], r["model"]): r for r in csv.DictReader(f) if r["metric"] == "ms_ssim"}
    for size, n_train in (("16", 16.0), ("", float(whole["n_train"]))):
        pinn = rows[size, "PtychoPINN"]
        assert pinn["n"] == "2" and float(pinn["n_train"]) == n_train
        low, mean, high = (float(pinn[f"phase_{k}"]) for k in ("ci_low", "mean", "ci_high"))
        assert low <= mean <= high and high > low  # two seeds, two different networks
        assert rows[size, "PtyChi"]["n"] == "1" and rows[size, "PtyChi"]["phase_ci_low"] == ""
    assert float(rows["16", "Baseline"]["n_train"]) == 16.0
    assert (out / "plots/train_size.png").stat().st_size > 10_000
    headline = report.stdout.splitlines()
    assert any(line.split()[:3] == ["100000", "dense", "2"] and "±" in line for line in headline), report.stdout
