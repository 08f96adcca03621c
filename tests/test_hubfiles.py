"""The hub files PtychoPINN's artifact verifier looks for: metrics_summary.md in its summariser's
format, the artifact inventory, and the per-command logs in HUB/cli under its orchestrator's names."""

import json
import os

from runner.ptycho.hubfiles import cli_log_name, inventory, metrics_summary_md, write_cli_logs, write_inventory

SUMMARY = {
    "n_jobs": 2, "n_success": 1, "n_failed": 1,
    "jobs": [{"dose": 1000, "view": "dense", "split": "train", "metrics": [
        {"model": "PtychoPINN", "metric": "mae", "amplitude": 0.05, "phase": 0.1},
        {"model": "PtychoPINN", "metric": "ms_ssim", "amplitude": 0.9, "phase": 0.85},
        {"model": "Baseline", "metric": "ms_ssim", "amplitude": 0.8, "phase": None},
        {"model": "Baseline", "metric": "computation_time_s", "value": 1.5}]}],
    "aggregate_metrics": {
        "PtychoPINN": {"ms_ssim": {"mean_amplitude": 0.9, "best_amplitude": 0.9, "mean_phase": 0.85,
                                   "best_phase": 0.85},
                       "mae": {"mean_amplitude": 0.05, "mean_phase": 0.1}},
        "Baseline": {"ms_ssim": {"mean_amplitude": 0.8, "best_amplitude": 0.8, "mean_phase": None,
                                 "best_phase": None}}},
    "phase_c_metadata_compliance": {"dose_1000": {
        "train": {"npz_path": "phase_c/dose_1000/patched_train.npz", "has_metadata": True,
                  "has_canonical_transform": True, "compliant": True,
                  "data_transformations": ["transpose_rename_convert"]},
        "test": {"npz_path": "phase_c/dose_1000/patched_test.npz", "has_metadata": False,
                 "has_canonical_transform": False, "compliant": False, "error": "File not found"}}},
    "not_succeeded": [{"dose": 1000, "view": "dense", "split": "test", "state": "failed"}],
    "generated_at": "2025-01-01T00:00:00Z", "source": "runner ledger",
}

EXPECTED_MD = """\
# Phase G Metrics Summary

**Total Jobs:** 2  
**Successful:** 1  
**Failed:** 1  

---

## Aggregate Metrics

Summary statistics across all jobs per model.

### Baseline

**MS-SSIM:**

| Statistic | Amplitude | Phase |
|-----------|-----------|-------|
| Mean | 0.800 |  |
| Best | 0.800 |  |

### PtychoPINN

**MS-SSIM:**

| Statistic | Amplitude | Phase |
|-----------|-----------|-------|
| Mean | 0.900 | 0.850 |
| Best | 0.900 | 0.850 |

**MAE:**

| Statistic | Amplitude | Phase |
|-----------|-----------|-------|
| Mean | 0.050 | 0.100 |

---

## Job: dense/train (dose=1000)

### PtychoPINN

| Metric | Amplitude | Phase | Value |
|--------|-----------|-------|-------|
| mae | 0.0500 | 0.1000 |  |
| ms_ssim | 0.9000 | 0.8500 |  |

### Baseline

| Metric | Amplitude | Phase | Value |
|--------|-----------|-------|-------|
| ms_ssim | 0.8000 |  |  |
| computation_time_s |  |  | 1.5000 |

---

## Phase C Metadata Compliance

Validation of Phase C NPZ files for _metadata and canonical transformations.

| Dose | Split | Compliant | Has Metadata | Has Canonical Transform | Path |
|------|-------|-----------|--------------|-------------------------|------|
| dose_1000 | test | ✗ | ✗ | ✗ | phase_c/dose_1000/patched_test.npz (File not found) |
| dose_1000 | train | ✓ | ✓ | ✓ | phase_c/dose_1000/patched_train.npz |

"""


def test_metrics_summary_md_is_their_summarisers_markdown():
    # Models sorted by name in the aggregates, in the job's order per job; null is an empty cell.
    assert metrics_summary_md(SUMMARY) == EXPECTED_MD


def test_metrics_summary_md_writes_their_phase_c_error_line():
    md = metrics_summary_md({**SUMMARY, "phase_c_metadata_compliance": {"error": "Phase C root not found: /x"}})
    assert md.endswith("## Phase C Metadata Compliance\n\nValidation of Phase C NPZ files for _metadata and "
                       "canonical transformations.\n\n**Error:** Phase C root not found: /x\n\n")


def make_hub(tmp_path):
    hub = tmp_path / "hub"
    files = ["analysis/metrics_summary.json", "analysis/ledger.db", "analysis/dose_1000/dense/train/comparison_metrics.csv",
             "phase_c/dose_1000/patched_train.npz", "notes.lock",
             # transient while a runner or a reader holds the ledger: never listed
             "analysis/ledger.db-wal", "analysis/ledger.db-shm", "analysis/other.db-journal", "analysis/ledger.db.lock",
             "analysis/.runner-write-test-4242", "analysis/.metrics_summary.md.4242.tmp"]
    for name in files:
        (hub / name).parent.mkdir(parents=True, exist_ok=True)
        (hub / name).write_text("x\n")
    (hub / "analysis/metrics_summary.json").write_text(json.dumps(SUMMARY))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "big.npz").write_text("x")
    os.symlink(outside, hub / "linked_folder")  # not entered
    return hub


def test_inventory_lists_every_lasting_file_relative_sorted_and_itself(tmp_path):
    hub = make_hub(tmp_path)
    expected = ["analysis/artifact_inventory.txt", "analysis/dose_1000/dense/train/comparison_metrics.csv",
                "analysis/ledger.db", "analysis/metrics_summary.json", "notes.lock",
                "phase_c/dose_1000/patched_train.npz"]
    assert inventory(hub) == "".join(f"{line}\n" for line in expected)
    path = write_inventory(hub)
    assert path == hub / "analysis/artifact_inventory.txt"
    assert path.read_text() == inventory(hub)  # listing itself, it is the same once written


def test_cli_log_names_are_their_orchestrators():
    assert cli_log_name("E", {"phase": "E", "dose": 1000, "model": "baseline"}) == "phase_e_baseline_gs1_dose1000.log"
    assert cli_log_name("E", {"phase": "E", "dose": 1000, "model": "dense"}) == "phase_e_dense_gs2_dose1000.log"
    assert cli_log_name("E", {"phase": "E", "dose": 10000, "model": "sparse"}) == "phase_e_sparse_gs2_dose10000.log"
    assert cli_log_name("F", {"phase": "F", "dose": 1000, "view": "dense", "split": "test"}) == "phase_f_dense_test.log"
    assert cli_log_name("G", {"phase": "G", "dose": 1000, "view": "sparse", "split": "train"}) == \
        "phase_g_sparse_train.log"
    assert cli_log_name("G", {"dose": 1000, "view": "dense"}) is None  # no split: no such log
    assert cli_log_name("C", {"dose": 1000}) is None


def test_cli_logs_hold_each_ran_jobs_logs_and_several_doses_in_dose_order(tmp_path):
    hub = make_hub(tmp_path)
    logs = hub / "analysis/logs"
    logs.mkdir()

    def log(name, text):
        (logs / name).write_text(text)
        return logs / name

    f = {"phase": "F", "view": "dense", "split": "train"}
    entries = [
        ("E/1000/baseline", "E", {"phase": "E", "dose": 1000, "model": "baseline"},
         log("e.out", "epoch 1\ntraining complete\n"), log("e.err", "warning\n")),
        ("F/10000/dense/train", "F", {**f, "dose": 10000}, log("f2.out", "high dose\n"), None),
        ("F/1000/dense/train", "F", {**f, "dose": 1000}, log("f1.out", "low dose"), log("f1.err", "")),
        ("G/1000/dense/test", "G", {"phase": "G", "dose": 1000, "view": "dense", "split": "test"},
         logs / "missing.out", None),  # no log left: no file
        ("X/1", "X", {"dose": 1000}, log("x.out", "not theirs\n"), None),  # no such log in their hub
    ]
    written = write_cli_logs(hub, entries)
    assert [p.name for p in written] == ["phase_e_baseline_gs1_dose1000.log", "phase_f_dense_train.log"]
    assert (hub / "cli/phase_e_baseline_gs1_dose1000.log").read_text() == "epoch 1\ntraining complete\nwarning\n"
    assert (hub / "cli/phase_f_dense_train.log").read_text() == (
        "# job F/1000/dense/train: analysis/logs/f1.out + analysis/logs/f1.err\nlow dose\n"
        "# job F/10000/dense/train: analysis/logs/f2.out\nhigh dose\n")
    assert not (hub / "cli/phase_g_dense_test.log").exists()
