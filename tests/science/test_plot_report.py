"""scripts/plot_report.py: the FRC plots of the montage's condition, one per arm, from the curves and
resolutions the comparison wrote."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

from ptychokit.image_metrics import frc_rings

REPO = Path(__file__).resolve().parents[2]


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_one_frc_plot_per_arm_of_the_montage_condition(tmp_path):
    condition = tmp_path / "dose_1000/dense/test"
    condition.mkdir(parents=True)
    rng = np.random.default_rng(0)
    truth = {part: rng.normal(size=(60, 90)) for part in ("amplitude", "phase")}
    images = {f"ground_truth_{part}": image for part, image in truth.items()}
    metrics = []
    for model, name in (("PtychoPINN", "pinn"), ("Baseline", "baseline"), ("PtyChi", "ptychi")):
        curves = {}
        for part in truth:
            image = images[f"{model.lower()}_{part}"] = truth[part] + rng.normal(scale=0.5, size=truth[part].shape)
            curves[part] = frc_rings(image, truth[part])
        write_csv(condition / f"{name}_frc_curves.csv", ["model", "frequency_bin", "amplitude_frc", "phase_frc"],
                  [[model, i, a, p] for i, (a, p) in enumerate(zip(curves["amplitude"].frc, curves["phase"].frc))])
        for metric, threshold in (("frc50", 0.5), ("frc1over7", 1 / 7)):
            metrics.append([model, metric, curves["amplitude"].resolution(threshold),
                            curves["phase"].resolution(threshold), ""])
    write_csv(condition / "comparison_metrics.csv", ["model", "metric", "amplitude", "phase", "value"], metrics)
    np.savez(condition / "reconstructions_aligned.npz", **images)
    table = tmp_path / "study_table.csv"
    write_csv(table, ["dose", "view", "split", "model", "metric", "amplitude", "phase", "attempt"],
              [[1000, "dense", "test", "PtychoPINN", "frc50", 0.2, 0.1, 1]])
    out = tmp_path / "plots"
    result = subprocess.run([sys.executable, str(REPO / "scripts/plot_report.py"), "--table", str(table),
                             "--out", str(out), "--montage-npz", str(condition / "reconstructions_aligned.npz"),
                             "--montage-title", "dose_1000/dense/test"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    frc_plots = [out / f"montage_frc_{m}.png" for m in ("ptychopinn", "baseline", "ptychi")]
    assert all(str(p) in result.stdout.splitlines() and p.stat().st_size > 0 for p in frc_plots)


def test_the_training_curves_of_every_model_of_a_study(tiny_study, tmp_path):
    """scripts/plot_training.py reads every checkpoint's training_log.csv (the PINNs' NLL excess, the
    baselines' loss) into one picture; a folder without models is one line and exit 1."""
    from PIL import Image

    out = tmp_path / "curves.png"
    done = subprocess.run([sys.executable, str(REPO / "scripts/plot_training.py"), "--study", str(tiny_study / "data"),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and Image.open(out).size[0] > 500
    from scripts.plot_training import read_curves
    curves = read_curves(tiny_study / "data")  # the hub's folder of phase_c .. phase_f
    assert sorted((c["kind"], c["view"]) for c in curves if c["dose"] == 1000) == [
        ("baseline", "baseline"), ("pinn", "dense"), ("pinn", "sparse")]
    assert len(curves) == 9 and all("nll_excess" in c["rows"][-1] for c in curves if c["kind"] == "pinn")
    empty = subprocess.run([sys.executable, str(REPO / "scripts/plot_training.py"), "--study", str(tmp_path),
                            "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1 and empty.stderr.startswith("plot_training: error: no phase_e")
    assert len(empty.stderr.strip().splitlines()) == 1


SUMMARY_HEADER = ["dose", "view", "split", "train_size", "model", "metric", "n", "amplitude_mean",
                  "amplitude_ci_low", "amplitude_ci_high", "phase_mean", "phase_ci_low", "phase_ci_high", "n_train"]


def write_study(tmp_path: Path) -> tuple[Path, Path]:
    """A study_table.csv and a study_summary.csv: PtychoPINN with intervals, Baseline from one seed (no
    interval), the reference arms without n_train, two training-set sizes besides the default."""
    rows = []
    for dose in (1000, 100000):
        rows += [[dose, "dense", "test", "", "PtychoPINN", "ms_ssim", 3, 0.8, 0.75, 0.86, 0.6, 0.5, 0.7, 4000],
                 [dose, "dense", "test", "", "Baseline", "ms_ssim", 1, 0.7, "", "", 0.5, "", "", 4000],
                 [dose, "dense", "test", "", "PtyChi", "ms_ssim", 1, 0.9, "", "", 0.8, "", "", ""],
                 [dose, "dense", "test", "", "FlatFloor", "ms_ssim", 1, 0.3, "", "", 0.1, "", "", ""]]
        for size, n_train in ((256, 250), (1024, 1000)):
            rows += [[dose, "dense", "test", size, "PtychoPINN", "ms_ssim", 3, 0.6, 0.55, 0.66, 0.4, 0.3, 0.5, n_train],
                     [dose, "dense", "test", size, "Baseline", "ms_ssim", 3, 0.5, 0.4, 0.6, 0.3, 0.2, 0.4, n_train]]
    summary = tmp_path / "study_summary.csv"
    write_csv(summary, SUMMARY_HEADER, rows)
    table = tmp_path / "study_table.csv"
    write_csv(table, ["dose", "view", "split", "model", "metric", "amplitude", "phase", "attempt"],
              [[dose, "dense", "test", "PtychoPINN", "ms_ssim", 0.8, 0.6, 1] for dose in (1000, 100000)])
    return table, summary


def test_summary_draws_means_with_intervals_and_the_training_size_figure(tmp_path):
    table, summary = write_study(tmp_path)
    out = tmp_path / "plots"
    script = [sys.executable, str(REPO / "scripts/plot_report.py"), "--table", str(table), "--out", str(out)]
    result = subprocess.run(script + ["--summary", str(summary)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("ms_ssim.png", "train_size.png"):
        assert str(out / name) in result.stdout.splitlines() and (out / name).stat().st_size > 0
    missing = subprocess.run(script + ["--summary", str(tmp_path / "none.csv")], capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 1 and missing.stderr.startswith("plot_report: error: cannot read")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_summary_series_error_bars_are_the_csv_intervals(tmp_path):
    from scripts.plot_report import read_summary, summary_series

    _, summary = write_study(tmp_path)
    rows = [r for r in read_summary(summary) if r["train_size"] is None]
    x, y, yerr = summary_series([r for r in rows if r["model"] == "PtychoPINN"], "amplitude")
    assert x.tolist() == [1000, 100000] and np.allclose(y, 0.8)
    assert np.allclose(y - yerr[0], 0.75) and np.allclose(y + yerr[1], 0.86)
    _, y, yerr = summary_series([r for r in rows if r["model"] == "Baseline"], "phase")
    assert np.allclose(y, 0.5) and np.isnan(yerr).all()  # one seed: no interval, no bar
    sized = [r for r in read_summary(summary) if r["model"] == "Baseline" and r["dose"] == 1000 and r["train_size"]]
    x, y, yerr = summary_series(sized, "phase", x="n_train")
    assert x.tolist() == [250, 1000] and np.allclose(y - yerr[0], 0.2) and np.allclose(y + yerr[1], 0.4)
