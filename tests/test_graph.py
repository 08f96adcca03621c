"""Phases E, F and G as one graph of jobs, end to end: the real runner and ledger, stand-ins for
the training and reconstruction commands (tests/fake_upstream.py) and for the compare script."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fixture_study import make_study
from helpers import change_content, ledger_rows, pid_alive, processes_with_env, run_runner, runner_cmd, runner_env, wait_for

from runner import ledger as ledger_module

FAKE = Path(__file__).resolve().parent / "fake_upstream.py"
COMMANDS = ("--train-cmd", f"{sys.executable} {FAKE}", "--recon-cmd", f"{sys.executable} {FAKE}")
GRAPH = ("--phases", "E,F,G", "--dose", "1000", *COMMANDS)
TRAININGS = ["E/dose_1000/baseline", "E/dose_1000/dense", "E/dose_1000/sparse"]
RECONSTRUCTIONS = [f"F/dose_1000/{v}/{s}" for v in ("dense", "sparse") for s in ("train", "test")]
COMPARISONS = [f"dose_1000/{v}/{s}" for v in ("dense", "sparse") for s in ("train", "test")]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Phases C and D only: every model and reconstruction is still to be made."""
    return make_study(tmp_path / "study", doses=(1000,), upstream=False)


def run(study: Path, *extra: str, behaviour: dict | None = None, compare: dict | None = None,
        record: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    more = {"FAKE_UPSTREAM_BEHAVIOUR": json.dumps(behaviour or {}), **env}
    if record:
        more["FAKE_UPSTREAM_RECORD"] = str(record)
    return run_runner(study, *GRAPH, *extra, env=runner_env(compare, record, **more))


def states(study: Path) -> dict[str, str]:
    return {r["key"]: r["state"] for r in ledger_rows(study / "analysis/ledger.db", "SELECT key, state FROM jobs")}


def attempt_counts(study: Path) -> dict[str, int]:
    rows = ledger_rows(study / "analysis/ledger.db",
                       "SELECT j.key, COUNT(a.attempt_id) AS n FROM jobs j LEFT JOIN attempts a USING (job_id) "
                       "GROUP BY j.key")
    return {r["key"]: r["n"] for r in rows}


def records(path: Path) -> list[dict]:
    """What the stand-ins recorded, one dict per finished call: key, start, end, devices."""
    found = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        key = entry.get("key") or entry["condition"]
        found.append({"key": key, "start": entry["start"], "end": entry["end"],
                      "devices": entry.get("devices", entry.get("cvd"))})
    return sorted(found, key=lambda e: e["start"])


def test_dry_run_prints_the_graph_in_launch_order(data):
    result = run(data, "--dry-run")
    assert result.returncode == 0, result.stderr
    keys = [line.split()[3].rstrip(":") for line in result.stdout.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    assert keys == TRAININGS + RECONSTRUCTIONS + COMPARISONS  # trainings head the longest chains
    line = next(line for line in result.stdout.splitlines() if "] dose_1000/sparse/test " in line)
    assert "after E/dose_1000/baseline, E/dose_1000/sparse, F/dose_1000/sparse/test" in line
    graph = json.loads((data / "analysis/dry_run/job_graph.json").read_text())
    assert {j["key"]: (j["kind"], j["phase"]) for j in graph["jobs"]}["F/dose_1000/dense/test"] == ("F", "F")
    assert not (data / "analysis/ledger.db").exists() and not (data / "analysis/job_graph.json").exists()


def test_every_phase_runs_in_launch_order_and_a_comparison_only_after_its_needs(data, tmp_path):
    record = tmp_path / "calls.jsonl"
    result = run(data, "--max-parallel", "1", record=record)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = records(record)
    assert [c["key"] for c in calls] == TRAININGS + RECONSTRUCTIONS + COMPARISONS
    ended = {c["key"]: c["end"] for c in calls}
    graph = {r["key"]: r["needs"] for r in ledger_rows(
        data / "analysis/ledger.db", "SELECT j.key, group_concat(n.key) AS needs FROM job_needs d "
        "JOIN jobs j ON j.job_id = d.job_id JOIN jobs n ON n.job_id = d.needs_job_id GROUP BY j.key")}
    assert set(graph) == set(COMPARISONS)
    for call in calls:
        for need in (graph.get(call["key"]) or "").split(","):
            if need:
                assert ended[need] <= call["start"]
    # What Phase G reads is where the trainings and reconstructions wrote it.
    assert (data / "phase_e/dose_1000/dense/gs2/model.pt").is_file()
    assert (data / "phase_f/dose_1000/sparse/test/ptychi_reconstruction.npz").is_file()
    manifest = json.loads((data / "phase_f/reconstruction_manifest.json").read_text())
    assert [(e["view"], e["split"], e["status"], e["final_cost"]) for e in manifest["execution_results"]] == \
        [("dense", "test", "success", 1.5), ("dense", "train", "success", 1.5),
         ("sparse", "test", "success", 1.5), ("sparse", "train", "success", 1.5)]
    numbers = ledger_rows(data / "analysis/ledger.db",
                          "SELECT phase, model, metric, value FROM phase_results WHERE key = 'E/dose_1000/dense'")
    assert ("E", "PtychoPINN", "final_loss", 0.25) in [tuple(r) for r in numbers]
    # PtychoPINN's Phase G files list the comparisons only, as before.
    comparison = json.loads((data / "analysis/comparison_manifest.json").read_text())
    assert comparison["n_jobs"] == 4 and comparison["n_success"] == 4


def test_slot_weights_never_put_more_on_a_gpu_than_it_holds(data, tmp_path):
    """One GPU, E=1, F=2, G=4: a training alone, reconstructions in pairs, and the comparisons
    (long enough to overlap) four at once, never more work on the device than it holds."""
    record = tmp_path / "calls.jsonl"
    result = run(data, "--gpus", "0", "--jobs-per-gpu", "E=1,F=2,G=4", record=record,
                 behaviour={"*": {"sleep": 0.6}}, compare={"*": {"sleep": 3}})
    assert result.returncode == 0, result.stdout + result.stderr
    calls = records(record)
    for call in calls:
        call["phase"] = call["key"][0] if call["key"][:2] in ("E/", "F/") else "G"
    assert {c["devices"] for c in calls} == {"0"}
    share = {"E": 1.0, "F": 0.5, "G": 0.25}
    peak = dict.fromkeys(share, 0)
    for moment in sorted({c["start"] for c in calls}):
        running = [c for c in calls if c["start"] <= moment < c["end"]]
        assert sum(share[c["phase"]] for c in running) <= 1.0, running
        for phase in share:
            peak[phase] = max(peak[phase], sum(c["phase"] == phase for c in running))
    assert peak == {"E": 1, "F": 2, "G": 4}


def test_a_failed_training_blocks_exactly_its_dependents_and_the_rest_goes_on(data):
    result = run(data, "--max-parallel", "2", behaviour={"E/dose_1000/dense": {"exit": 1}})
    assert result.returncode == 1
    found = states(data)
    assert found.pop("E/dose_1000/dense") == "failed"
    assert found.pop("dose_1000/dense/train") == found.pop("dose_1000/dense/test") == "blocked"
    assert set(found.values()) == {"succeeded"}  # every other branch went on
    (reason,) = {r["blocked_reason"] for r in ledger_rows(data / "analysis/ledger.db",
                                                         "SELECT blocked_reason FROM jobs WHERE state = 'blocked'")}
    log = Path(reason.rsplit("see ", 1)[1])
    assert "E/dose_1000/dense, which failed (exit_code)" in reason
    assert "fails on request" in log.read_text()
    assert f"blocked dose_1000/dense/train: {reason}" in result.stdout
    status = subprocess.run([sys.executable, "-m", "runner", "status", "--artifact-root", str(data / "analysis")],
                            capture_output=True, text=True, env=runner_env())
    assert "-- Phase E: training (1 failed, 2 succeeded)" in status.stdout
    assert "-- Phase G: comparison (2 blocked, 2 succeeded)" in status.stdout

    # Fixed, the next run redoes the training and its two comparisons, nothing else.
    assert run(data).returncode == 0
    assert attempt_counts(data) == {**dict.fromkeys(TRAININGS + RECONSTRUCTIONS + COMPARISONS, 1),
                                    "E/dose_1000/dense": 2, "dose_1000/dense/train": 1, "dose_1000/dense/test": 1}
    assert set(states(data).values()) == {"succeeded"}


def test_a_blocked_training_blocks_its_comparisons_before_anything_runs(data):
    (data / "phase_d/dose_1000/sparse/sparse_train.npz").unlink()
    result = run(data)
    assert result.returncode == 1
    found = states(data)
    assert found["E/dose_1000/sparse"] == found["F/dose_1000/sparse/train"] == "blocked"
    assert found["dose_1000/sparse/test"] == "blocked"  # its model cannot be trained
    reason = ledger_rows(data / "analysis/ledger.db",
                         "SELECT blocked_reason FROM jobs WHERE key = 'dose_1000/sparse/test'")[0][0]
    assert reason.startswith("needs E/dose_1000/sparse, which is blocked (missing training data")
    assert found["dose_1000/dense/test"] == "succeeded"


def test_a_dependency_that_reruns_makes_its_dependents_rerun(data):
    assert run(data).returncode == 0
    # A changed input of one view's training and reconstruction: they rerun, and so do exactly
    # the comparisons that read what they made.
    change_content(data / "phase_d/dose_1000/dense/dense_train.npz")
    assert run(data).returncode == 0
    counts = attempt_counts(data)
    again = {key for key, n in counts.items() if n == 2}
    assert again == {"E/dose_1000/dense", "F/dose_1000/dense/train", "dose_1000/dense/train", "dose_1000/dense/test"}

    # A forced training in a run of Phase E alone: the next full run redoes its comparisons,
    # whose fingerprints cover the model files it rewrote.
    assert run(data, "--force", "--phases", "E", "--view", "sparse").returncode == 0
    assert run(data).returncode == 0
    counts2 = attempt_counts(data)
    assert {k for k in counts2 if counts2[k] != counts[k]} == {
        "E/dose_1000/baseline", "E/dose_1000/sparse", *COMPARISONS}
    assert run(data).returncode == 0
    assert attempt_counts(data) == counts2  # nothing changed: nothing runs


def test_a_model_removed_by_hand_is_trained_again(data):
    assert run(data).returncode == 0
    (data / "phase_e/dose_1000/baseline/gs1/model.pt").unlink()
    assert run(data).returncode == 0
    again = {key for key, n in attempt_counts(data).items() if n == 2}
    assert again == {"E/dose_1000/baseline", *COMPARISONS}


def test_a_checkpoint_cut_short_is_not_a_success(data):
    result = run(data, behaviour={"E/dose_1000/baseline": {"truncated": True}})
    assert result.returncode == 1
    row = ledger_rows(data / "analysis/ledger.db", "SELECT failure_class, failure_detail FROM attempts a "
                      "JOIN jobs j USING (job_id) WHERE j.key = 'E/dose_1000/baseline'")[0]
    assert row["failure_class"] == "no_metrics" and "model.pt is not a whole archive" in row["failure_detail"]
    assert {k for k, s in states(data).items() if s == "blocked"} == set(COMPARISONS)


def test_an_earlier_model_is_not_taken_for_a_new_one(data):
    assert run(data).returncode == 0
    result = run(data, "--force", "--phases", "E", "--view", "dense",
                 behaviour={"E/dose_1000/dense": {"no_output": True}})  # exit 0, writes nothing
    assert result.returncode == 1
    row = ledger_rows(data / "analysis/ledger.db", "SELECT a.state, a.failure_class, a.failure_detail FROM attempts a "
                      "JOIN jobs j USING (job_id) WHERE j.key = 'E/dose_1000/dense' ORDER BY a.attempt_id DESC")[0]
    assert (row["state"], row["failure_class"]) == ("failed", "no_metrics")
    assert "model.pt was not written by this attempt" in row["failure_detail"]


def test_sigkill_of_the_runner_during_training_then_run_again(data, tmp_path):
    launches = tmp_path / "launches.jsonl"
    env = runner_env(None, None, FAKE_UPSTREAM_LAUNCHES=str(launches), FAKE_UPSTREAM_BEHAVIOUR=json.dumps(
        {"E/dose_1000/sparse": {"sleep": 60}, "F/dose_1000/dense/train": {"sleep": 60}}))
    runner = subprocess.Popen(runner_cmd(data, *GRAPH, "--max-parallel", "2"), env=env, cwd=data,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = data / "analysis/ledger.db"
    try:
        def stuck() -> bool:  # two trainings done, the third and a reconstruction running
            rows = {r["key"]: r["state"] for r in ledger_rows(ledger, "SELECT key, state FROM jobs")}
            return rows.get("E/dose_1000/baseline") == rows.get("E/dose_1000/dense") == "succeeded" \
                and rows.get("E/dose_1000/sparse") == rows.get("F/dose_1000/dense/train") == "running"
        wait_for(stuck, timeout=60)
        wait_for(lambda: len(launches.read_text().splitlines()) >= 4, timeout=30)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
    children = [json.loads(line)["pid"] for line in launches.read_text().splitlines()]
    assert any(pid_alive(pid) for pid in children)  # the kill left the running ones behind

    result = run(data)  # no sleeping this time
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [pid for pid in children if pid_alive(pid)]  # the strays were stopped
    counts = attempt_counts(data)
    assert counts["E/dose_1000/baseline"] == counts["E/dose_1000/dense"] == 1  # finished: not redone
    assert counts["E/dose_1000/sparse"] == counts["F/dose_1000/dense/train"] == 2
    interrupted = ledger_rows(ledger, "SELECT j.key FROM attempts a JOIN jobs j USING (job_id) "
                                      "WHERE a.state = 'interrupted' ORDER BY j.key")
    assert [r["key"] for r in interrupted] == ["E/dose_1000/sparse", "F/dose_1000/dense/train"]
    tokens = [r["token"] for r in ledger_rows(ledger, "SELECT token FROM attempts")]
    assert not [t for t in tokens if processes_with_env("RUNNER_ATTEMPT_TOKEN", t)]


@pytest.mark.parametrize("args, config, message", [
    (("--phases", "E,X"), None, "--phases: unknown phase 'X'; the runner runs phases E, F, G"),
    (("--jobs-per-gpu", "E=0"), None, "jobs_per_gpu E must be an integer >= 1"),
    (("--jobs-per-gpu", "E=1,G"), None, "--jobs-per-gpu 'G': give one number, or PHASE=N pairs for E, F, G"),
    ((), 'phases = ["E", "F", "G"]\nphase_needs = {E = ["G"]}\n', "phase_needs: the phases E -> G -> E wait for each other"),
    ((), 'phase_needs = {Q = ["E"]}\n', "phase_needs: unknown phase 'Q'"),
])
def test_bad_phases_and_graphs_are_one_line(data, tmp_path, args, config, message):
    extra = list(args)
    if config:
        path = tmp_path / "study.toml"
        path.write_text(config)
        extra += ["--config", str(path)]
    result = run_runner(data, "--dose", "1000", *COMMANDS, *extra, env=runner_env())
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_custom_need_makes_reconstructions_wait_for_the_trainings(data, tmp_path):
    config = tmp_path / "study.toml"
    config.write_text('phase_needs = {F = ["E"]}\n')
    record = tmp_path / "calls.jsonl"
    assert run(data, "--config", str(config), "--max-parallel", "2", record=record).returncode == 0
    ended = {c["key"]: c["end"] for c in records(record)}
    for call in records(record):
        if call["key"].startswith("F/"):  # after its view's training and the baseline's
            view = call["key"].split("/")[2]
            assert call["start"] >= max(ended["E/dose_1000/baseline"], ended[f"E/dose_1000/{view}"])


def test_a_schema_6_ledger_upgrades_in_place_with_its_jobs_as_comparisons(tmp_path):
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in ledger_module.MIGRATIONS[:6]:
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute("INSERT INTO jobs (key, plan_order, dose, view, split, argv, cwd, output_dir, fingerprint, "
                 "state, updated_at) VALUES ('dose_1000/dense/train', 0, 1000, 'dense', 'train', '[]', '.', '.', "
                 "'f', 'succeeded', 'now')")
    conn.close()
    ledger_module.prepare(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT key, kind, json_extract(labels, '$.phase'), json_extract(labels, '$.view') "
                        "FROM jobs").fetchall() == [("dose_1000/dense/train", "G", "G", "dense")]
    assert conn.execute("SELECT COUNT(*) FROM job_needs").fetchone() == (0,)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == ledger_module.SCHEMA_VERSION
    conn.close()


def test_a_run_of_comparisons_alone_is_unchanged_by_the_graph(tmp_path):
    study = make_study(tmp_path / "study", doses=(1000,))
    result = run_runner(study, "--dose", "1000")
    assert result.returncode == 0
    rows = ledger_rows(study / "analysis/ledger.db", "SELECT key, phase FROM condition_grid ORDER BY plan_order")
    assert [(r["key"], r["phase"]) for r in rows] == [(k, "G") for k in COMPARISONS]
    assert not (study / "analysis/job_graph.json").exists()
    status = subprocess.run([sys.executable, "-m", "runner", "status", "--artifact-root", str(study / "analysis")],
                            capture_output=True, text=True, env=runner_env())
    assert "-- Phase" not in status.stdout and "dose_1000/dense/train" in status.stdout
