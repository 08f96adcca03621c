"""`runner report` on the tiny study run end to end by the real compare script, and the page it
writes opened in a real headless Chromium."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
METRICS = {"mae", "mse", "psnr", "ssim", "ms_ssim", "frc50", "frc1over7"}


@pytest.fixture(scope="module")
def tiny_report(tiny_run) -> tuple[Path, subprocess.CompletedProcess]:
    study, run = tiny_run
    assert run.returncode == 0, run.stdout + run.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "runner", "report", "--artifact-root", str(study / "analysis")],
                            cwd=study, env=env, capture_output=True, text=True, timeout=300)
    return study, result


def test_the_report_of_the_tiny_study_holds_every_condition_model_and_metric(tiny_report):
    study, result = tiny_report
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning: every plot and the montage were drawn
    out = study / "analysis/report"
    summary = json.loads((out / "metrics_summary.json").read_text())
    assert (summary["n_jobs"], summary["n_success"], summary["n_failed"]) == (12, 12, 0)
    ledger = sqlite3.connect(study / "analysis/ledger.db")
    for model in ("PtychoPINN", "Baseline", "PtyChi"):
        for metric in ("ms_ssim", "mae"):
            mean_amp, mean_phase = ledger.execute(
                "SELECT AVG(amplitude), AVG(phase) FROM study_metrics WHERE model = ? AND metric = ?",
                (model, metric)).fetchone()
            entry = summary["aggregate"][model][metric]
            assert entry["mean_amplitude"] == pytest.approx(mean_amp) and entry["mean_phase"] == pytest.approx(mean_phase)
    with open(out / "study_table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 * 4 * len(METRICS) and {r["metric"] for r in rows} == METRICS  # 3 arms + the floor
    assert {r["model"] for r in rows} == {"PtychoPINN", "Baseline", "PtyChi", "FlatFloor"}
    assert {p.name for p in (out / "plots").glob("*.png")} == {f"{m}.png" for m in METRICS} | {"montage.png"} | {
        f"montage_frc_{m}.png" for m in ("ptychopinn", "baseline", "ptychi")} | {  # one FRC plot per arm
        "training_curves.png"}  # the generator's trainings are in the study's ledger
    assert "dose_100000/dense/test" in (out / "report.html").read_text()  # the montage's default condition
    headline = result.stdout.splitlines()[:8]
    assert headline[0].startswith("MS-SSIM phase, test split: the mean over the replicate seeds")
    assert headline[1].split() == ["dose", "view", "seeds", "PtychoPINN", "Baseline", "PtyChi", "FlatFloor"]
    assert [line.split()[:3] for line in headline[2:8]] == [  # the tiny preset trains one seed
        [dose, view, "1"] for view in ("dense", "sparse") for dose in ("1000", "10000", "100000")]
    assert f"report: {out / 'report.html'}" in result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_report_page_loads_without_errors_in_headless_chromium(tiny_report, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from PIL import Image, ImageStat

    study, result = tiny_report
    assert result.returncode == 0, result.stderr
    page_path = study / "analysis/report/report.html"
    errors: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 2000})
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda req: requests.append(req.url))
        page.goto(page_path.as_uri(), wait_until="load")
        images = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
        tables = page.evaluate("document.querySelectorAll('table').length")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests)  # self-contained: no network
    # Every plot is on the page: 7 metrics, the montage, one FRC plot per arm and the training
    # curves (the generator's trainings are in the study's ledger).
    plots = sorted((study / "analysis/report/plots").glob("*.png"))
    assert len(plots) == 12 and len([p for p in plots if p.name.startswith("montage_frc_")]) == 3
    assert len(images) == len(plots) and all(images)
    assert tables >= 5
    shot = Image.open(tmp_path / "report.png").convert("L")
    assert shot.height > 2000
    assert ImageStat.Stat(shot).stddev[0] > 10  # not a blank page


def test_the_floor_stands_beside_every_condition_and_pty_chi_rises_above_it(tiny_report):
    """The gates that make sense on the tiny study, whose networks train for seconds: every
    condition has the trivial floor beside the three arms, in the ledger and on the page, and
    Pty-Chi, which needs no training, rises with dose in the dense view to well above the floor.
    (The networks' gates are measured on the demo: docs/synthetic_study.md.)"""
    study, result = tiny_report
    ledger = sqlite3.connect(study / "analysis/ledger.db")
    rows = ledger.execute("SELECT view, split, dose, model, phase FROM study_metrics WHERE metric = 'ms_ssim'").fetchall()
    phase = {(view, split, dose, model): value for view, split, dose, model, value in rows}
    conditions = {row[:3] for row in rows}
    assert len(conditions) == 12 and all(phase.get((*c, "FlatFloor")) is not None for c in conditions)
    for split in ("train", "test"):
        ptychi = [phase[("dense", split, dose, "PtyChi")] for dose in (1000, 10000, 100000)]
        assert ptychi == sorted(ptychi), ptychi
        assert ptychi[-1] > phase[("dense", split, 100000, "FlatFloor")] + 0.1
    assert "FlatFloor" in (study / "analysis/report/report.html").read_text()
    root_summary = json.loads((study / "analysis/metrics_summary.json").read_text())
    # PtychoPINN's own summary mirrors the comparison CSVs: the three arms, not the floor
    assert {e["model"] for job in root_summary["jobs"] for e in job["metrics"]} == {"PtychoPINN", "Baseline", "PtyChi"}
