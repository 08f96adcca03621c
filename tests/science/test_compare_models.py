"""scripts/compare_models.py on the tiny synthetic study, alone and driven by the runner."""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = ("comparison_metrics.csv", "floor_metrics.csv", "pinn_frc_curves.csv", "baseline_frc_curves.csv", "ptychi_frc_curves.csv",
           "reconstructions.npz", "reconstructions_aligned.npz", "comparison_plot.png")
ARMS = {"PtychoPINN", "Baseline", "PtyChi"}


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "CUDA_VISIBLE_DEVICES": ""}


def compare_args(study: Path, out: Path, dose=1000, view="dense", split="test") -> list[str]:
    return ["--pinn_dir", str(study / f"data/phase_e/dose_{dose}/{view}/gs2"),
            "--baseline_dir", str(study / f"data/phase_e/dose_{dose}/baseline/gs1"),
            "--test_data", str(study / f"data/phase_c/dose_{dose}/patched_{split}.npz"),
            "--output_dir", str(out), "--ms-ssim-sigma", "1.0",
            "--tike_recon_path", str(study / f"data/phase_f/dose_{dose}/{view}/{split}/ptychi_reconstruction.npz"),
            "--register-ptychi-only"]


def compare(*args: str, cwd: Path = REPO, as_file: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "scripts/compare_models.py")] if as_file else \
        [sys.executable, "-m", "scripts.compare_models"]
    return subprocess.run([*command, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=300)


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_one_comparison_writes_every_output_and_nothing_in_the_current_folder(tiny_study, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = tmp_path / "out"
    result = compare(*compare_args(tiny_study, out), cwd=cwd, as_file=True)
    assert result.returncode == 0, result.stderr
    assert all((out / name).is_file() for name in OUTPUTS)
    assert list(cwd.iterdir()) == []
    rows = read_metrics(out / "comparison_metrics.csv")
    assert {r["model"] for r in rows} == ARMS
    for model in ARMS:
        scores = {r["metric"]: r for r in rows if r["model"] == model}
        assert {"mae", "mse", "psnr", "ssim", "ms_ssim", "frc50", "frc1over7", "registration_offset_dy",
                "registration_offset_dx", "computation_time_s"} <= scores.keys()
        assert 0 < float(scores["ms_ssim"]["amplitude"]) <= 1 and math.isfinite(float(scores["mae"]["phase"]))
    # --register-ptychi-only: the networks are not shifted
    assert float(next(r for r in rows if r["model"] == "Baseline" and r["metric"] == "registration_offset_dx")["value"]) == 0
    frc = read_metrics(out / "pinn_frc_curves.csv")
    assert list(frc[0]) == ["model", "frequency_bin", "amplitude_frc", "phase_frc"]
    with np.load(out / "reconstructions_aligned.npz") as aligned:
        assert aligned["ptychi_amplitude"].shape == aligned["ground_truth_amplitude"].shape
        images = {key: aligned[key] for key in aligned.files}
    # Every arm's curve is saved, and it is the curve its frc50 and frc1over7 were read from.
    from ptychokit.image_metrics import frc_rings
    for model, name in (("PtychoPINN", "pinn"), ("Baseline", "baseline"), ("PtyChi", "ptychi")):
        saved = read_metrics(out / f"{name}_frc_curves.csv")
        scores = {r["metric"]: r for r in rows if r["model"] == model}
        for part in ("amplitude", "phase"):
            curve = frc_rings(images[f"{model.lower()}_{part}"], images[f"ground_truth_{part}"])
            assert [int(r["frequency_bin"]) for r in saved] == list(range(len(curve.frc)))
            assert np.allclose([float(r[f"{part}_frc"]) for r in saved], curve.frc)
            assert float(scores["frc50"][part]) == pytest.approx(curve.resolution(0.5))
            assert float(scores["frc1over7"][part]) == pytest.approx(curve.resolution(1 / 7))


def test_the_floor_is_a_flat_image_scored_by_the_arms_code_in_its_own_file(tiny_study, tmp_path):
    """FlatFloor (flat phase, constant amplitude) goes through the same cropping, amplitude scaling,
    phase alignment and metrics as the arms; comparison_metrics.csv keeps exactly the three arms."""
    from ptychokit.image_metrics import all_metrics
    out = tmp_path / "out"
    assert compare(*compare_args(tiny_study, out, dose=100000)).returncode == 0
    assert {r["model"] for r in read_metrics(out / "comparison_metrics.csv")} == ARMS
    floor = {r["metric"]: r for r in read_metrics(out / "floor_metrics.csv")}
    assert {r["model"] for r in floor.values()} == {"FlatFloor"}
    with np.load(out / "reconstructions_aligned.npz") as aligned:
        amplitude, phase = aligned["ground_truth_amplitude"], aligned["ground_truth_phase"]
    flat_amplitude = np.full_like(amplitude, amplitude.mean())  # a constant, scaled to the target's mean
    expected_amplitude = all_metrics(flat_amplitude, amplitude, 1.0)
    expected_phase = all_metrics(np.zeros_like(phase), phase, 0.0)
    for metric in ("ms_ssim", "ssim", "mae", "mse"):
        assert float(floor[metric]["amplitude"]) == pytest.approx(expected_amplitude[metric], rel=1e-5)
        assert float(floor[metric]["phase"]) == pytest.approx(expected_phase[metric], rel=1e-5)
    assert float(floor["registration_offset_dx"]["value"]) == 0.0  # a flat image is never shifted
    # At the highest dose every arm that learned anything scores above the floor's phase.
    arms = {r["model"]: r for r in read_metrics(out / "comparison_metrics.csv") if r["metric"] == "ms_ssim"}
    assert float(arms["PtyChi"]["phase"]) > float(floor["ms_ssim"]["phase"]) + 0.1


def test_a_rerun_keeps_the_previous_debug_log(tiny_study, tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        assert compare(*compare_args(tiny_study, out), "--no-save-npz", "--no-save-npz-aligned").returncode == 0
    assert len(list(out.glob("compare_models_*.log"))) == 2
    assert not (out / "reconstructions.npz").exists()


def test_the_ptychi_arm_is_named_ptychi_and_logged_with_the_method_its_npz_records(tiny_study, tmp_path):
    result = compare(*compare_args(tiny_study, tmp_path / "out"), "--no-save-npz", "--no-save-npz-aligned")
    assert result.returncode == 0, result.stderr
    assert "PtyChi (pty-chi LSQML (20 epochs, poisson noise)): ms_ssim" in result.stderr
    assert "would name it Tike" not in result.stderr


def test_an_npz_that_says_tike_is_still_the_ptychi_arm_with_a_warning(tiny_study, tmp_path):
    args = compare_args(tiny_study, tmp_path / "out")
    at = args.index("--tike_recon_path") + 1
    with np.load(args[at]) as npz:
        np.savez(tmp_path / "tike.npz", **{**{k: npz[k] for k in npz.files}, "algorithm": np.array("tike")})
    args[at] = str(tmp_path / "tike.npz")
    result = compare(*args, "--no-save-npz", "--no-save-npz-aligned")
    assert result.returncode == 0, result.stderr
    assert "says its algorithm is 'tike'" in result.stderr and "would name it Tike" in result.stderr
    assert {r["model"] for r in read_metrics(tmp_path / "out" / "comparison_metrics.csv")} == ARMS


def _without(src: Path, dst: Path, key: str) -> Path:
    with np.load(src) as npz:
        np.savez(dst, **{k: npz[k] for k in npz.files if k != key})
    return dst


@pytest.mark.parametrize("case, code, message", [
    ("missing model folder", 1, "PINN model folder"),
    ("test data missing a key", 1, "lacks the key 'probeGuess'"),
    ("no ground truth", 1, "has no ground truth (objectGuess)"),
    ("reconstruction without object", 1, "lacks the key 'reconstructed_object'"),
    ("crop size out of range", 2, "--stitch-crop-size 40 must satisfy 0 < M <= 32"),
    ("unknown flag", 2, "unrecognized arguments: --frobnicate"),
])
def test_bad_input_is_one_line_and_the_right_exit_code(tiny_study, tmp_path, case, code, message):
    args = compare_args(tiny_study, tmp_path / "out")
    at = args.index
    if case == "missing model folder":
        args[at("--pinn_dir") + 1] = str(tmp_path / "nowhere")
    elif case == "test data missing a key":
        args[at("--test_data") + 1] = str(_without(Path(args[at("--test_data") + 1]), tmp_path / "t.npz", "probeGuess"))
    elif case == "no ground truth":
        args[at("--test_data") + 1] = str(_without(Path(args[at("--test_data") + 1]), tmp_path / "t.npz", "objectGuess"))
    elif case == "reconstruction without object":
        recon = Path(args[at("--tike_recon_path") + 1])
        args[at("--tike_recon_path") + 1] = str(_without(recon, tmp_path / "r.npz", "reconstructed_object"))
    elif case == "crop size out of range":
        args += ["--stitch-crop-size", "40"]
    else:
        args += ["--frobnicate"]
    result = compare(*args)
    assert result.returncode == code
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"compare_models: error: {errors[0].split('error: ', 1)[1]}"] and message in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "comparison_metrics.csv").exists()


def test_out_of_gpu_memory_exits_3_naming_the_chunk_flags(tiny_study, tmp_path, monkeypatch, capsys):
    import torch

    from ptychokit import inference
    from scripts import compare_models

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(inference, "predict_patches", out_of_memory)
    assert compare_models.main(compare_args(tiny_study, tmp_path / "out")) == 3
    assert "--pinn-chunk-size and --baseline-chunk-size" in capsys.readouterr().err


def test_the_runner_drives_the_real_script_over_the_whole_tiny_study(tiny_run):
    study, result = tiny_run
    assert result.returncode == 0, result.stdout + result.stderr
    for dose in (1000, 10000, 100000):
        for view in ("dense", "sparse"):
            for split in ("train", "test"):
                out = study / f"analysis/dose_{dose}/{view}/{split}"
                assert all((out / name).is_file() for name in OUTPUTS), out
    ledger = sqlite3.connect(study / "analysis/ledger.db")
    rows = ledger.execute("SELECT dose, view, split, model, amplitude, phase FROM study_metrics "
                          "WHERE metric = 'ms_ssim'").fetchall()
    # the three arms and, beside them, the trivial floor of every condition
    assert len(rows) == 12 * 4 and {r[3] for r in rows} == ARMS | {"FlatFloor"}
    assert all(r[4] is not None for r in rows)
    strategies = dict(ledger.execute("SELECT view, selection_strategy FROM condition_grid WHERE dose = 1000 AND split = 'test'"))
    assert set(strategies) == {"dense", "sparse"} and all(strategies.values())
    manifest = json.loads((study / "analysis/comparison_manifest.json").read_text())
    assert manifest["n_success"] == 12


def test_an_arm_that_cannot_be_scored_is_an_error_with_empty_cells_not_zeros(tiny_study, tmp_path):
    args = compare_args(tiny_study, tmp_path / "out")
    recon = Path(args[args.index("--tike_recon_path") + 1])
    with np.load(recon) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["reconstructed_object"] = np.full_like(arrays["reconstructed_object"], np.nan)
    np.savez(tmp_path / "nan.npz", **arrays)
    args[args.index("--tike_recon_path") + 1] = str(tmp_path / "nan.npz")
    result = compare(*args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ("compare_models: error: metrics could not be computed "
                                                      "for PtyChi (its image holds NaN or infinite values)")
    rows = read_metrics(tmp_path / "out/comparison_metrics.csv")
    ptychi = [r for r in rows if r["model"] == "PtyChi" and r["metric"] == "ms_ssim"][0]
    assert ptychi["amplitude"] == "" and ptychi["phase"] == ""
    baseline = [r for r in rows if r["model"] == "Baseline" and r["metric"] == "ms_ssim"][0]
    assert float(baseline["amplitude"]) > 0
