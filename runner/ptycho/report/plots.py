"""The report's pictures, drawn by the science scripts in a separate process (matplotlib and
numpy stay out of the runner): a report without them is still a report."""

from __future__ import annotations

import subprocess
from pathlib import Path

PLOT_TIMEOUT_S = 300


def draw_plots(table: Path, summary: Path, montage: Path, title: str, out: Path, python: str,
               checkout: Path) -> tuple[list[Path], str | None]:
    """Run the plotting script on the study table and its summary over the seeds (the metrics
    against dose with their intervals, against the training-set size) and, for the montage, the
    aligned images of one comparison (`montage`, shown under `title`); return the PNGs it made,
    or why there are none."""
    script = checkout / "scripts" / "plot_report.py"
    if not script.is_file():
        return [], f"no plots: {script} is not here (run the report from a checkout)"
    argv = [python, str(script), "--table", str(table), "--summary", str(summary), "--out", str(out),
            "--montage-npz", str(montage), "--montage-title", title]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PLOT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"no plots: the plotting script did not finish ({exc})"
    made = [Path(line) for line in done.stdout.splitlines() if line.endswith(".png")]
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return made, f"plots incomplete: {last}"
    return made, None


def draw_training_curves(training: list[dict], study: Path, out: Path, python: str,
                         checkout: Path) -> tuple[Path | None, str | None]:
    """Run the training-curve script on the study the trained models are in (`study`: the folder
    holding phase_e); return the PNG, or why there is none. No succeeded training: nothing to
    draw, and nothing to say."""
    if not any(t["success_attempt"] is not None and t["model_dir"] for t in training):
        return None, None
    script = checkout / "scripts" / "plot_training.py"
    if not script.is_file():
        return None, f"no training curves: {script} is not here (run the report from a checkout)"
    target = out / "training_curves.png"
    out.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)  # an earlier report's curves must not pass for this one's
    argv = [python, str(script), "--study", str(study), "--out", str(target)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PLOT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"no training curves: the plotting script did not finish ({exc})"
    if done.returncode != 0 or not target.is_file():
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return None, f"no training curves: {last}"
    return target, None


