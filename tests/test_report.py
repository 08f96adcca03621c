"""`runner report` on ledgers written by real runs of the fake compare script: failures and
blocked conditions are listed and never keep the others out; an empty ledger is refused."""

import csv
import json
import subprocess
import sys

from helpers import run_runner, runner_env

PINN_DEFAULT, PINN_LOW_DOSE = [0.9, 0.6], [0.5, 0.3]


def report(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "runner", "report", *args], env=runner_env(),
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_failed_and_blocked_conditions_are_listed_and_the_others_reported(study):
    (study / "phase_f/dose_10000/sparse/train/ptychi_reconstruction.npz").unlink()
    behaviour = {"*": {"ms_ssim": {"PtychoPINN": PINN_DEFAULT}},
                 "dose_1000/dense/train": {"ms_ssim": {"PtychoPINN": PINN_LOW_DOSE}},
                 "dose_1000/dense/test": {"exit": 4}}
    assert run_runner(study, behaviour=behaviour).returncode == 1
    result = report("--artifact-root", str(study / "analysis"))
    assert result.returncode == 0, result.stderr
    out = study / "analysis/report"
    summary = json.loads((out / "metrics_summary.json").read_text())
    # PtychoPINN's counts (n_failed: every condition that did not succeed), then the report's own.
    assert (summary["n_jobs"], summary["n_success"], summary["n_failed"]) == (12, 10, 2)
    assert (summary["n_reported"], summary["n_failed_or_interrupted"], summary["n_blocked"]) == (10, 1, 1)
    assert len(summary["jobs"]) == 10
    assert all(set(job["metrics_by_model"]) == {"PtychoPINN", "Baseline", "PtyChi"} for job in summary["jobs"])
    assert all({(m["model"], m["metric"]) for m in job["metrics"]} >= {("PtychoPINN", "ms_ssim"), ("PtyChi", "mae")}
               for job in summary["jobs"])
    problems = {p["key"]: p for p in summary["problems"]}
    assert problems["dose_1000/dense/test"]["failure_class"] == "exit_code"
    assert problems["dose_1000/dense/test"]["log_path"].endswith("attempt-1.stderr.log")
    assert problems["dose_10000/sparse/train"]["failure_class"] == "blocked"
    assert "missing reconstruction" in problems["dose_10000/sparse/train"]["detail"]
    # Paired deltas and aggregates from the values the fake wrote: 9 conditions at 0.6, one at 0.3.
    pinn = summary["aggregate"]["PtychoPINN"]["ms_ssim"]
    assert abs(pinn["mean_phase"] - (9 * 0.6 + 0.3) / 10) < 1e-9 and pinn["best_phase"] == 0.6
    assert summary["aggregate"]["Baseline"]["mae"]["best_amplitude"] == 0.1
    delta = summary["deltas"]["PtychoPINN - Baseline"]["ms_ssim"]
    assert abs(delta["all"]["phase"] - ((9 * 0.6 + 0.3) / 10 - 0.7)) < 1e-9
    assert abs(delta["dose_1000"]["phase"] - ((2 * 0.6 + 0.3) / 3 - 0.7)) < 1e-9
    assert delta["dose_1000"]["n_phase"] == 3
    with open(out / "study_table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 * 3 * 3 and {r["model"] for r in rows} == {"PtychoPINN", "Baseline", "PtyChi"}
    html = (out / "report.html").read_text()
    assert "dose_1000/dense/test" in html and "missing reconstruction" in html and "exit_code" in html
    assert "PtychoPINN - Baseline [dose_1000]" in (out / "deltas.txt").read_text()
    assert {p.name for p in (out / "plots").glob("*.png")} == {"mae.png", "ms_ssim.png", "psnr.png"}
    # The fake writes no images, so only the montage is missing, said in one warning line.
    assert result.stderr.count("\n") == 1 and "runner: warning: plots incomplete" in result.stderr
    assert "dose_1000/dense/test: failed (exit_code)" in result.stdout
    assert f"report: {out / 'report.html'}" in result.stdout
    # A ledger of comparisons alone: no trainings or reconstructions, so none of their sections or files.
    assert result.stdout.splitlines()[-1].startswith("also: ") and "Phase E" not in result.stdout
    assert "Phase E" not in html and "Phase F" not in html
    assert sorted(p.name for p in out.iterdir()) == ["deltas.txt", "metrics_summary.json", "plots", "report.html",
                                                     "study_summary.csv", "study_table.csv"]


def test_a_ledger_without_any_success_gives_one_line_and_exit_1(study):
    assert run_runner(study, behaviour={"*": {"exit": 4}}).returncode == 1
    result = report("--ledger", str(study / "analysis/ledger.db"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"runner: error: the ledger {study / 'analysis/ledger.db'} holds no succeeded comparison yet "
        "(12 conditions); run `python -m runner run` first"]
    assert not (study / "analysis/report/report.html").exists()


def test_a_missing_ledger_or_unknown_condition_is_one_line_and_exit_2(study, tmp_path):
    result = report("--ledger", str(tmp_path / "none.db"))
    assert result.returncode == 2 and result.stderr.startswith("runner: error: no ledger at ")
    assert "Traceback" not in result.stderr
    run_runner(study, "--dose", "1000")
    result = report("--artifact-root", str(study / "analysis"), "--condition", "dose_5/dense/test")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--condition dose_5/dense/test has no succeeded attempt; choose one of: dose_1000/dense/train" in result.stderr


def test_the_report_goes_where_out_says(study, tmp_path):
    run_runner(study, "--dose", "1000")
    result = report("--artifact-root", str(study / "analysis"), "--out", str(tmp_path / "my report"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "my report/report.html").is_file()
    assert not (study / "analysis/report").exists()
