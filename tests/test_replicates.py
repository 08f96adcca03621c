"""Replicate seeds and training-set sizes as axes of the study: one training and one comparison
per seed and size, a reconstruction shared by all, the intervals over seeds in SQL and in the
report, and resume, blocking and relocation per replicate. The real runner and ledger; stand-ins
for the training, reconstruction and compare commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from fixture_study import make_study
from helpers import ledger_rows, plan, run_runner, runner_env

FAKE = Path(__file__).resolve().parent / "fake_upstream.py"
GRAPH = ("--phases", "E,F,G", "--dose", "1000", "--train-cmd", f"{sys.executable} {FAKE}",
         "--recon-cmd", f"{sys.executable} {FAKE}")
SEEDS = ("--seeds", "1,2,3", "--replicates", "dense=3,sparse=1")
# The PINN's phase MS-SSIM per seed on dense/test, the baseline's, and PtyChi's (no training seed).
PINN = {1: 0.60, 2: 0.64, 3: 0.71}
BASELINE = {1: 0.50, 2: 0.66, 3: 0.58}


def scores() -> dict:
    """The compare stand-in's MS-SSIM per comparison key: seed-dependent networks, a constant PtyChi."""
    table = {}
    for seed in PINN:
        table[f"dose_1000/dense/seed_{seed}/test"] = {"ms_ssim": {"PtychoPINN": [0.5, PINN[seed]],
                                                                 "Baseline": [0.5, BASELINE[seed]],
                                                                 "PtyChi": [0.9, 0.80]}}
    return table


def run(study: Path, *extra: str, compare: dict | None = None, upstream: dict | None = None):
    env = runner_env(compare, FAKE_UPSTREAM_BEHAVIOUR=json.dumps(upstream or {}))
    return run_runner(study, *GRAPH, *extra, env=env)


def states(study: Path) -> dict[str, str]:
    return {r["key"]: r["state"] for r in ledger_rows(study / "analysis/ledger.db", "SELECT key, state FROM jobs")}


def attempts(study: Path) -> dict[str, int]:
    rows = ledger_rows(study / "analysis/ledger.db", "SELECT j.key, COUNT(a.attempt_id) AS n FROM jobs j "
                                                     "LEFT JOIN attempts a USING (job_id) GROUP BY j.key")
    return {r["key"]: r["n"] for r in rows}


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval, by scipy."""
    mean = sum(values) / len(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, low, high


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_study(tmp_path / "study", doses=(1000,), upstream=False)


def test_each_seed_trains_and_is_compared_with_its_own_models_and_the_summary_has_its_interval(data):
    result = run(data, *SEEDS, compare=scores())
    assert result.returncode == 0, result.stdout + result.stderr
    found = states(data)
    trainings = sorted(k for k in found if k.startswith("E/"))
    assert trainings == sorted([f"E/dose_1000/{m}/seed_{s}" for m in ("baseline", "dense") for s in (1, 2, 3)]
                               + ["E/dose_1000/sparse/seed_1"])
    assert sorted(k for k in found if k.startswith("F/")) == sorted(
        f"F/dose_1000/{v}/{s}" for v in ("dense", "sparse") for s in ("train", "test"))  # once, for every seed
    comparisons = sorted(k for k in found if k.startswith("dose_"))
    assert comparisons == sorted([f"dose_1000/dense/seed_{s}/{split}" for s in (1, 2, 3) for split in ("train", "test")]
                                 + [f"dose_1000/sparse/seed_1/{split}" for split in ("train", "test")])
    assert set(found.values()) == {"succeeded"}
    # Each seed's training gets its seed; each seed's comparison its own models and the shared reconstruction.
    argv = {r["key"]: json.loads(r["argv"]) for r in ledger_rows(data / "analysis/ledger.db", "SELECT key, argv FROM jobs")}
    training = argv["E/dose_1000/dense/seed_2"]
    assert training[training.index("--seed") + 1] == "2" and training.count("--seed") == 1
    assert training[training.index("--output_dir") + 1] == str(data / "phase_e/dose_1000/dense/seed_2/gs2")
    compare = argv["dose_1000/dense/seed_2/test"]
    assert compare[compare.index("--pinn_dir") + 1] == str(data / "phase_e/dose_1000/dense/seed_2/gs2")
    assert compare[compare.index("--baseline_dir") + 1] == str(data / "phase_e/dose_1000/baseline/seed_2/gs1")
    assert compare[compare.index("--tike_recon_path") + 1] == \
        str(data / "phase_f/dose_1000/dense/test/ptychi_reconstruction.npz")

    ledger = data / "analysis/ledger.db"
    seeds = ledger_rows(ledger, "SELECT DISTINCT seed FROM study_metrics WHERE view = 'dense' ORDER BY seed")
    assert [r["seed"] for r in seeds] == [1, 2, 3]
    summary = {r["model"]: dict(r) for r in ledger_rows(
        ledger, "SELECT * FROM study_summary WHERE view = 'dense' AND split = 'test' AND metric = 'ms_ssim'")}
    for model, values in (("PtychoPINN", PINN), ("Baseline", BASELINE)):
        mean, low, high = interval(list(values.values()))
        row = summary[model]
        assert row["n"] == 3 and row["train_size"] is None
        assert row["phase_mean"] == pytest.approx(mean) and row["phase_ci_low"] == pytest.approx(low, abs=1e-4)
        assert row["phase_ci_high"] == pytest.approx(high, abs=1e-4)
        assert row["amplitude_ci_low"] == pytest.approx(0.5) == row["amplitude_ci_high"]  # no spread
    # PtyChi has no training seed: one reconstruction, one value, no interval.
    assert summary["PtyChi"]["n"] == 1 and summary["PtyChi"]["phase_mean"] == pytest.approx(0.80)
    assert summary["PtyChi"]["phase_ci_low"] is None and summary["PtyChi"]["phase_ci_high"] is None
    sparse = ledger_rows(ledger, "SELECT n, phase_ci_low FROM study_summary WHERE view = 'sparse' "
                                 "AND model = 'PtychoPINN' AND metric = 'ms_ssim'")
    assert [(r["n"], r["phase_ci_low"]) for r in sparse] == [(1, None), (1, None)]
    deltas = {r["versus"]: dict(r) for r in ledger_rows(
        ledger, "SELECT * FROM study_deltas WHERE view = 'dense' AND split = 'test' AND metric = 'ms_ssim'")}
    for versus, other in (("Baseline", BASELINE), ("PtyChi", {s: 0.80 for s in PINN})):
        mean, low, high = interval([PINN[s] - other[s] for s in PINN])
        row = deltas[versus]
        assert row["n"] == 3 and row["phase_mean"] == pytest.approx(mean)
        assert (row["phase_ci_low"], row["phase_ci_high"]) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))

    report = subprocess.run([sys.executable, "-m", "runner", "report", "--artifact-root", str(data / "analysis")],
                            capture_output=True, text=True, timeout=300, env=runner_env())
    assert report.returncode == 0, report.stderr
    pinn_mean, pinn_low, pinn_high = interval(list(PINN.values()))
    dense = next(line for line in report.stdout.splitlines() if line.split()[:2] == ["1000", "dense"])
    assert dense.split()[2] == "3" and f"{pinn_mean:.3f} ± {(pinn_high - pinn_low) / 2:.3f}" in dense
    text = (data / "analysis/report/deltas.txt").read_text()
    # PINN - Baseline: +0.070 on average but its interval holds 0; PINN - PtyChi excludes 0.
    vs_baseline = next(line for line in text.splitlines()
                       if line.startswith("dose_1000/dense/test PtychoPINN - Baseline ms_ssim"))
    assert "phase +0.070 [" in vs_baseline and "no difference (the interval holds 0)" in vs_baseline.split(";")[0]
    vs_ptychi = next(line for line in text.splitlines() if line.startswith("dose_1000/dense/test PtychoPINN - PtyChi ms_ssim"))
    assert "PtychoPINN lower" in vs_ptychi.split(";")[0]
    assert "dose_1000/sparse/test PtychoPINN - PtyChi ms_ssim: phase" in text and "one seed: no interval" in text
    # PtychoPINN's files keep their schema, every replicate among their jobs, the intervals beside.
    metrics = json.loads((data / "analysis/metrics_summary.json").read_text())
    assert metrics["n_jobs"] == 8 and len(metrics["jobs"]) == 8
    assert {(j["view"], j["seed"]) for j in metrics["jobs"]} == {("dense", 1), ("dense", 2), ("dense", 3), ("sparse", 1)}
    assert {"aggregate_metrics", "phase_c_metadata_compliance"} <= metrics.keys()
    assert any(r["model"] == "PtychoPINN" and r["n"] == 3 for r in metrics["intervals"]["study_summary"])
    delta = json.loads((data / "analysis/metrics_delta_summary.json").read_text())
    assert set(delta["deltas"]) == {"vs_Baseline", "vs_PtyChi"} and delta["intervals"]["study_deltas"]


def test_more_seeds_run_only_the_new_seeds_a_failed_seed_blocks_only_its_comparisons_and_a_move_keeps_all(
        data, tmp_path):
    failing = {"E/dose_1000/dense/seed_2": {"exit": 1}}
    first = run(data, "--seeds", "1,2", upstream=failing)
    assert first.returncode != 0
    found = states(data)
    assert found["E/dose_1000/dense/seed_2"] == "failed"
    assert found["dose_1000/dense/seed_2/train"] == found["dose_1000/dense/seed_2/test"] == "blocked"
    assert all(state == "succeeded" for key, state in found.items() if "seed_2" not in key or "baseline" in key)

    second = run(data, "--seeds", "1,2,3")  # the failure is fixed, and one more seed
    assert second.returncode == 0, second.stdout + second.stderr
    counts = attempts(data)
    ran_again = sorted(k for k, n in counts.items() if n == 2)
    assert ran_again == ["E/dose_1000/dense/seed_2"]  # only the failed training, retried
    new = sorted(k for k, n in counts.items() if "seed_3" in k)
    assert all(counts[k] == 1 for k in new) and len(new) == 3 + 4  # its 3 trainings and 4 comparisons
    assert all(n == 1 for k, n in counts.items() if "seed_1" in k or k.startswith("F/"))
    assert set(states(data).values()) == {"succeeded"}

    moved = tmp_path / "moved"
    shutil.copytree(data, moved)  # new times and inodes: content hashes decide
    shutil.rmtree(data)
    again = run(moved, "--seeds", "1,2,3")
    assert again.returncode == 0, again.stdout + again.stderr
    assert attempts(moved) == counts and set(states(moved).values()) == {"succeeded"}  # nothing ran again


def test_the_studys_own_seed_keeps_a_one_seed_studys_jobs_and_other_seeds_replace_it(data):
    base = {"study_root": str(data), "phases": "E,F,G", "dose": ["1000"], "view": ["dense"],
            "train_cmd": f"{sys.executable} {FAKE}", "recon_cmd": f"{sys.executable} {FAKE}",
            "train_args": ["--seed", "42", "--preset", "tiny"]}
    one = {job.key: job for job in plan(base)}
    three = {job.key: job for job in plan({**base, "replicates": "3"})}
    assert set(one) < set(three)
    for key in one:  # the same key, command and fingerprint: adding seeds reruns nothing
        assert three[key].argv == one[key].argv and three[key].fingerprint == one[key].fingerprint
    added = sorted(set(three) - set(one))
    assert added == sorted([f"E/dose_1000/{m}/seed_{s}" for m in ("baseline", "dense") for s in (43, 44)]
                           + [f"dose_1000/dense/seed_{s}/{split}" for s in (43, 44) for split in ("train", "test")])
    argv = three["E/dose_1000/dense/seed_44"].argv
    assert argv[-4:] == ("--preset", "tiny", "--seed", "44") and "42" not in argv
    assert three["E/dose_1000/dense"].labels["seed"] == 42 and three["dose_1000/dense/seed_43/test"].labels["seed"] == 43


def test_training_set_sizes_are_their_own_trainings_and_comparisons(data):
    jobs = {job.key: job for job in plan({"study_root": str(data), "phases": "E,G", "dose": ["1000"],
                                          "view": ["dense"], "split": ["test"], "train_sizes": "64,all",
                                          "seeds": "5,6", "train_cmd": f"{sys.executable} {FAKE}"})}
    assert sorted(k for k in jobs if k.startswith("E/")) == sorted(
        f"E/dose_1000/{m}/{level}" for m in ("baseline", "dense")
        for level in ("n_64/seed_5", "n_64/seed_6", "seed_5", "seed_6"))
    sized = jobs["E/dose_1000/dense/n_64/seed_6"]
    assert sized.argv[-4:] == ("--seed", "6", "--n_subsample", "64") and sized.labels["train_size"] == 64
    comparison = jobs["dose_1000/dense/n_64/seed_6/test"]
    assert sorted(comparison.needs) == ["E/dose_1000/baseline/n_64/seed_6", "E/dose_1000/dense/n_64/seed_6"]
    assert jobs["dose_1000/dense/seed_6/test"].labels["train_size"] is None


@pytest.mark.parametrize("flags, message", [
    (("--replicates", "3"), "give no --seed; list the seeds instead"),
    (("--seeds", "1,x"), "--seeds: 'x' is not a whole number"),
    (("--seeds", "1,1"), "--seeds lists a value twice"),
    (("--replicates", "fast=3"), "--replicates: unknown view 'fast'"),
    (("--seeds", "1,2", "--replicates", "3"), "--replicates asks for 3 seeds but --seeds lists 2"),
    (("--train-sizes", "0,64"), "a training-set size must be at least 1"),
    (("--train-sizes", "64", "--train-arg=--n_subsample", "--train-arg=32"), "not --n_subsample in train_args"),
])
def test_bad_axes_are_one_line_and_nothing_runs(data, flags, message):
    result = run(data, *flags)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (data / "analysis/ledger.db").exists()


def test_the_views_know_the_studys_trained_arms_and_paired_differences():
    """views.sql names the arms a training seed applies to and the arms PtychoPINN is paired with;
    they must be the study's (runner/ptycho/arms.py)."""
    from runner.ptycho.arms import OTHER_ARMS, PINN, TRAINED_ARMS

    text = (Path(__file__).resolve().parent.parent / "runner/ptycho/views.sql").read_text()
    trained = ", ".join(f"'{arm}'" for arm in (PINN, *TRAINED_ARMS.values()))
    assert f"CASE WHEN model IN ({trained}) THEN seed END" in text
    assert f"o.model IN ({', '.join(repr(arm) for arm in OTHER_ARMS)})" in text and f"p.model = '{PINN}'" in text
