"""scripts/train_model.py: one real Phase E training per kind of model, and its exit codes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ptychokit.checkpoint import load_model
from ptychokit.npz_io import write_ptycho_npz

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "scripts/train_model.py"), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def npzs(tiny_train, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("train")
    data = replace(tiny_train, metadata={"dose": 100000, "overlap_view": "dense"})
    write_ptycho_npz(folder / "train.npz", data.subset(np.arange(60)))
    write_ptycho_npz(folder / "test.npz", data.subset(np.arange(60, 90)))
    write_ptycho_npz(folder / "no_truth.npz", replace(data.subset(np.arange(60, 90)), patches=None))
    return folder / "train.npz", folder / "test.npz"


@pytest.mark.parametrize("gridsize, kind, curve", [("1", "baseline", "loss"), ("2", "pinn", "nll_excess")])
def test_a_training_writes_a_checkpoint_with_its_curve_and_held_out_score(npzs, tmp_path, gridsize, kind, curve):
    train, test = npzs
    done = run("--train_data_file", str(train), "--test_data_file", str(test), "--output_dir", str(tmp_path / "m"),
               "--gridsize", gridsize, "--preset", "tiny", "--nphotons", "100000", "--n_groups", "120",
               "--steps", "12", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    model, info = load_model(tmp_path / "m")
    assert info.kind == kind and info.gridsize == int(gridsize)
    assert info.provenance["steps"] == 12 and info.provenance["dose"] == 100000
    held_out = info.provenance["held_out_" + curve]
    assert np.isfinite(held_out) and held_out > 0
    with open(tmp_path / "m/training_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["step"] == "12" and float(rows[-1][curve]) > 0
    if kind == "pinn":
        assert info.preprocessing["training_groups"] == 120 and info.preprocessing["partner_min_distance"] > 0


@pytest.mark.parametrize("args, code, message", [
    (["--gridsize", "3"], 2, "argument --gridsize: invalid choice: 3"),
    (["--gridsize", "2", "--preset", "huge"], 2, "unknown preset 'huge'"),
    (["--gridsize", "2", "--steps", "0"], 2, "argument --steps: '0' must be positive"),
    (["--gridsize", "2", "--nphotons", "1000"], 1, "--nphotons 1000 but"),
    (["--gridsize", "2", "--train_data_file", "/nonexistent/train.npz"], 1, "training data /nonexistent/train.npz does not exist"),
    (["--gridsize", "1", "--test_data_file", "NO_TRUTH"], 1, "has no ground-truth patches (Y)"),
], ids=["gridsize", "preset", "steps", "dose", "missing", "test-without-Y"])
def test_bad_input_is_one_line_and_the_right_exit_code(npzs, tmp_path, args, code, message):
    train, _ = npzs
    base = ["--train_data_file", str(train), "--output_dir", str(tmp_path / "m"), "--preset", "tiny", "--steps", "2"]
    done = run(*base, *[str(train.parent / "no_truth.npz") if a == "NO_TRUTH" else a for a in args])
    assert done.returncode == code
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train_model: error: ") and message in lines[0], done.stderr
    assert not (tmp_path / "m/model.json").exists()
