"""The tiny study run end to end by `runner run` on the real compare script, resumed, and
reported: the artifact root holds every file PtychoPINN's downstream tools read, with the fields
they check, recomputed here from the comparison_metrics.csv files alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from downstream_check import check_artifact_root

REPO = Path(__file__).resolve().parents[2]


def runner(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tiny_run) -> tuple[Path, dict, subprocess.CompletedProcess, dict]:
    """The files after the first run, the resumed run, and the files after it and a report."""
    study, first_run = tiny_run
    assert first_run.returncode == 0, first_run.stdout + first_run.stderr
    first = check_artifact_root(study / "analysis")
    resumed = runner("run", "--study-root", str(study), "--gpus", "none", cwd=REPO)
    report = runner("report", "--artifact-root", str(study / "analysis"), cwd=study)
    assert report.returncode == 0, report.stderr
    return study, first, resumed, check_artifact_root(study / "analysis")


def test_the_first_run_writes_every_downstream_file(runs):
    study, first, _, _ = runs
    manifest, summary = first["manifest"], first["summary"]
    assert (manifest["n_jobs"], manifest["n_success"], manifest["n_failed"], manifest["n_executed"]) == (12, 12, 0, 12)
    assert manifest["filters"] == {"dose": None, "view": None, "split": None}
    job = manifest["jobs"][0]
    assert job["phase_c_npz"] == str(study / "data/phase_c/dose_1000/patched_train.npz")
    # Without a legacy per-split Phase F manifest, the reconstruction itself is named.
    assert job["phase_f_manifest"] == job["tike_recon_path"] == \
        str(study / "data/phase_f/dose_1000/dense/train/ptychi_reconstruction.npz")
    assert (summary["n_jobs"], summary["n_success"], summary["n_failed"]) == (12, 12, 0)
    assert set(summary["aggregate_metrics"]) == {"PtychoPINN", "Baseline", "PtyChi"}


def test_a_resumed_run_leaves_the_counts_of_the_finished_study(runs):
    _, first, resumed, after = runs
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "0 to run, 12 already done" in resumed.stdout
    manifest = after["manifest"]
    assert (manifest["n_jobs"], manifest["n_success"], manifest["n_failed"], manifest["n_executed"]) == (12, 12, 0, 0)
    assert after["summary"]["aggregate_metrics"] == first["summary"]["aggregate_metrics"]
    assert after["deltas"]["deltas"] == first["deltas"]["deltas"]


def test_phase_c_compliance_is_what_the_synthetic_metadata_says(runs):
    _, _, _, after = runs
    compliance = after["summary"]["phase_c_metadata_compliance"]
    assert set(compliance) == {"dose_1000", "dose_10000", "dose_100000"}
    for dose, splits in compliance.items():
        for split, entry in splits.items():
            assert entry["npz_path"] == f"data/phase_c/{dose}/patched_{split}.npz"  # relative to the hub
            # The simulation writes PtychoPINN's canonical keys directly; no transpose/rename/convert
            # step ever ran, so none is claimed and the file is reported not compliant.
            assert (entry["has_metadata"], entry["has_canonical_transform"], entry["compliant"]) == (True, False, False)
            assert entry["data_transformations"][-1] == "ptychokit.scan.split_masks"
