"""The Phase G artifact root that PtychoPINN's downstream tools read, written by real runs of the
fake compare script (real runner processes, real SQLite ledger) and refreshed by `runner report`."""

import json
import subprocess
import sys

import numpy as np

from downstream_check import check_artifact_root
from helpers import run_runner, runner_env

ONE_DOSE = ("--dose", "1000")


def report(*args):
    return subprocess.run([sys.executable, "-m", "runner", "report", *args], env=runner_env(),
                          capture_output=True, text=True, timeout=120)


def test_a_resumed_run_with_nothing_to_do_still_counts_every_success(study):
    assert run_runner(study).returncode == 0
    first = check_artifact_root(study / "analysis")
    assert (first["manifest"]["n_success"], first["manifest"]["n_failed"], first["manifest"]["n_executed"]) == (12, 0, 12)
    again = run_runner(study)
    assert again.returncode == 0 and "0 to run, 12 already done" in again.stdout
    resumed = check_artifact_root(study / "analysis")
    manifest = resumed["manifest"]
    assert (manifest["n_jobs"], manifest["n_success"], manifest["n_failed"], manifest["n_executed"]) == (12, 12, 0, 0)
    assert all(r["returncode"] == 0 and not r["executed"] for r in manifest["execution_results"])
    assert (resumed["summary"]["n_success"], len(resumed["summary"]["jobs"])) == (12, 12)
    assert resumed["summary"]["aggregate_metrics"] == first["summary"]["aggregate_metrics"]


def test_a_failed_and_a_blocked_condition_are_counted_and_the_rest_summarised(study):
    missing = study / "phase_f/dose_10000/sparse/train/ptychi_reconstruction.npz"
    missing.unlink()
    behaviour = {"*": {"ms_ssim": {"PtychoPINN": [0.9, 0.6]}},
                 "dose_1000/dense/train": {"ms_ssim": {"PtychoPINN": [0.5, 0.3]}},
                 "dose_1000/sparse/test": {"nan_cell": True, "ms_ssim": {"PtychoPINN": [0.5, 0.2]}},
                 "dose_1000/dense/test": {"exit": 4},
                 "dose_100000/dense/test": {"no_metrics": True}}
    assert run_runner(study, behaviour=behaviour).returncode == 1
    files = check_artifact_root(study / "analysis")
    manifest, summary = files["manifest"], files["summary"]
    assert (manifest["n_jobs"], manifest["n_success"], manifest["n_failed"], manifest["n_executed"]) == (12, 9, 3, 11)
    entries = {(r["dose"], r["view"], r["split"]): r for r in manifest["execution_results"]}
    blocked = entries[(10000, "sparse", "train")]
    assert blocked["returncode"] == -1 and not blocked["executed"] and str(missing) in blocked["error"]
    assert entries[(1000, "dense", "test")]["returncode"] == 4
    assert entries[(1000, "dense", "test")]["error"].startswith("exit_code")
    no_metrics = entries[(100000, "dense", "test")]  # exit 0, but no metrics: not a success downstream
    assert no_metrics["returncode"] == -1 and no_metrics["error"].startswith("no_metrics")
    assert (summary["n_jobs"], summary["n_success"], summary["n_failed"], len(summary["jobs"])) == (12, 9, 3, 9)
    assert {(p["dose"], p["view"], p["split"]) for p in summary["not_succeeded"]} == \
        {(10000, "sparse", "train"), (1000, "dense", "test"), (100000, "dense", "test")}
    pinn = summary["aggregate_metrics"]["PtychoPINN"]["ms_ssim"]
    assert abs(pinn["mean_phase"] - (7 * 0.6 + 0.3 + 0.2) / 9) < 1e-12 and pinn["best_phase"] == 0.6
    assert summary["aggregate_metrics"]["PtyChi"]["ms_ssim"]["mean_phase"] == 0.7  # 8 values: the NaN cell skipped
    assert set(summary["aggregate_metrics"]["PtyChi"]["mae"]) == {"mean_amplitude", "mean_phase"}
    # Our report keeps its paired deltas and shows the difference of means beside them where the
    # empty cell makes them differ (PtyChi's phase of dose_1000/sparse/test).
    result = report("--artifact-root", str(study / "analysis"))
    assert result.returncode == 0, result.stderr
    paired = json.loads((study / "analysis/report/metrics_summary.json").read_text())["deltas"]
    vs_ptychi = paired["PtychoPINN - PtyChi"]["ms_ssim"]["all"]
    assert abs(vs_ptychi["phase"] - ((7 * 0.6 + 0.3) / 8 - 0.7)) < 1e-12 and vs_ptychi["n_phase"] == 8
    assert abs(vs_ptychi["difference_of_means_phase"] - files["deltas"]["deltas"]["vs_PtyChi"]["ms_ssim"]["phase"]) < 1e-12
    text = (study / "analysis/report/deltas.txt").read_text()
    assert "difference of the arms' means" in text
    line = next(l for l in text.splitlines() if l.startswith("PtychoPINN - PtyChi [all]"))
    assert f"phase {vs_ptychi['phase']:+.3f} (difference of means {vs_ptychi['difference_of_means_phase']:+.3f})" in line
    baseline_line = next(l for l in text.splitlines() if l.startswith("PtychoPINN - Baseline [all]"))
    assert "difference of means" not in baseline_line  # no empty cell: the two agree


def test_a_metric_no_condition_has_is_n_a_in_the_highlights(study):
    assert run_runner(study, *ONE_DOSE, behaviour={"*": {"nan_cell": True}}).returncode == 0
    files = check_artifact_root(study / "analysis")
    assert files["deltas"]["deltas"]["vs_PtyChi"]["ms_ssim"]["phase"] is None
    lines = (study / "analysis/metrics_delta_highlights.txt").read_text().splitlines()
    assert lines[1] == "MS-SSIM Δ (PtychoPINN - PtyChi)    : amplitude +0.000  phase N/A"
    assert lines[2] == "MAE Δ (PtychoPINN - Baseline)      : amplitude +0.000000  phase +0.000000"
    preview = (study / "analysis/metrics_delta_highlights_preview.txt").read_text().splitlines()
    assert preview[1] == "MS-SSIM Δ (PtychoPINN - PtyChi): N/A"


def test_the_manifest_lists_each_jobs_inputs_and_the_filters_as_given(study):
    legacy = study / "phase_f/dose_1000_dense_test/manifest.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"dose": 1000, "view": "dense", "split": "test", "output_dir": "dose_1000/dense/test"}))
    assert run_runner(study, *ONE_DOSE, "--view", "dense").returncode == 0
    files = check_artifact_root(study / "analysis")
    manifest = files["manifest"]
    assert manifest["filters"] == {"dose": 1000, "view": "dense", "split": None}
    train, test = manifest["jobs"]
    assert train["phase_c_npz"] == str(study / "phase_c/dose_1000/patched_train.npz")
    assert train["pinn_checkpoint"] == str(study / "phase_e/dose_1000/dense/gs2")
    assert train["baseline_checkpoint"] == str(study / "phase_e/dose_1000/baseline/gs1")
    recon = study / "phase_f/dose_1000/dense/train/ptychi_reconstruction.npz"
    assert train["phase_f_manifest"] == train["tike_recon_path"] == str(recon)  # no legacy manifest: the NPZ
    assert test["phase_f_manifest"] == str(legacy)
    assert test["tike_recon_path"] == str(study / "phase_f/dose_1000/dense/test/ptychi_reconstruction.npz")
    assert files["summary"]["n_jobs"] == 2 and set(files["summary"]["phase_c_metadata_compliance"]) == {"dose_1000"}


def test_a_dry_run_manifest_lists_the_jobs_and_filters_too(study):
    assert run_runner(study, "--dry-run", "--split", "test", "--split", "train").returncode == 0
    manifest = json.loads((study / "analysis/dry_run/comparison_manifest.json").read_text())
    assert manifest["filters"] == {"dose": None, "view": None, "split": ["test", "train"]}
    assert len(manifest["jobs"]) == 12 and all(job["phase_c_npz"] and job["command"] for job in manifest["jobs"])


def test_phase_c_compliance_reports_what_the_metadata_holds(study):
    def rewrite(path, metadata):
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if metadata is not None:
            arrays["_metadata"] = np.array(json.dumps(metadata))
        np.savez(path, **arrays)

    canonical = {"data_transformations": [{"tool": "transpose_rename_convert", "operation": "canonicalise"}]}
    rewrite(study / "phase_c/dose_1000/patched_train.npz", canonical)
    rewrite(study / "phase_c/dose_1000/patched_test.npz", {"dose": 1000, "data_transformations": [{"tool": "simulate"}]})
    (study / "phase_c/dose_10000/patched_test.npz").write_bytes(b"not a zip")
    assert run_runner(study, *ONE_DOSE).returncode == 0
    assert run_runner(study, "--dose", "10000", "--split", "train").returncode == 0
    assert check_artifact_root(study / "analysis")["summary"]["n_jobs"] == 2
    result = report("--artifact-root", str(study / "analysis"))  # the report covers every condition
    assert result.returncode == 0, result.stderr
    compliance = json.loads((study / "analysis/report/metrics_summary.json").read_text())["phase_c_metadata_compliance"]
    assert compliance["dose_1000"]["train"] == {
        "npz_path": "phase_c/dose_1000/patched_train.npz", "has_metadata": True,
        "has_canonical_transform": True, "compliant": True, "data_transformations": ["transpose_rename_convert"]}
    assert compliance["dose_1000"]["test"]["has_metadata"] is True
    assert (compliance["dose_1000"]["test"]["has_canonical_transform"], compliance["dose_1000"]["test"]["compliant"]) == (False, False)
    assert compliance["dose_10000"]["train"]["has_metadata"] is False and "error" not in compliance["dose_10000"]["train"]
    assert compliance["dose_10000"]["test"]["has_metadata"] is False and "not an NPZ" in compliance["dose_10000"]["test"]["error"]


def test_report_refreshes_the_downstream_files_from_the_ledger(study):
    assert run_runner(study).returncode == 0
    root = study / "analysis"
    before = json.loads((root / "metrics_summary.json").read_text())
    for name in ("metrics_summary.json", "metrics_delta_summary.json", "metrics_delta_highlights.txt",
                 "metrics_delta_highlights_preview.txt"):
        (root / name).unlink()
    result = report("--ledger", str(root / "ledger.db"), "--out", str(study / "elsewhere"))
    assert result.returncode == 0, result.stderr
    after = check_artifact_root(root)["summary"]
    assert {k: v for k, v in after.items() if k != "generated_at"} == {k: v for k, v in before.items() if k != "generated_at"}
    ours = json.loads((study / "elsewhere/metrics_summary.json").read_text())
    assert ours["aggregate_metrics"] == after["aggregate_metrics"]
    assert ours["phase_c_metadata_compliance"] == after["phase_c_metadata_compliance"]
    assert isinstance(ours["jobs"][0]["metrics"], list) and "metrics_by_model" in ours["jobs"][0]
