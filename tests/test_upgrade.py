"""A ledger made by the runner of ledger schema 7 (before jobs had labels), with the study it ran:
the upgrade in place keeps every row and every view's answer, and the next run of the same study
plans nothing and writes PtychoPINN's files exactly as that runner did.

tests/data/schema7 was made by that runner (commit 21691f0) with the stand-in commands: the fixture
study of two doses run with `--phases E,F,G` (one comparison failing once, then retried), run
again (nothing to do), then reported; its files are kept with their modification times
(mtimes.json), which the ledger's fingerprints hold. The ledger names absolute paths, so the
study is put back where it was made."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, runner_env
from runner.ledger import SCHEMA_VERSION, prepare
from runner.ptycho import STUDY

FIXTURE = Path(__file__).resolve().parent / "data" / "schema7"
PLACE = Path("/tmp/runner-schema7")  # where that runner ran it
VIEWS = ("condition_grid", "failed_attempts", "study_metrics", "phase_results")
PTYCHOPINN_FILES = ("comparison_manifest.json", "metrics_summary.json", "metrics_delta_summary.json",
                    "metrics_delta_highlights.txt", "metrics_delta_highlights_preview.txt")
REPORT_FILES = ("report/metrics_summary.json", "report/deltas.txt", "report/study_table.csv",
                "report/phase_summary.json")


@pytest.fixture
def old_study():
    shutil.rmtree(PLACE, ignore_errors=True)
    shutil.copytree(FIXTURE, PLACE)
    for relative, mtime_ns in json.loads((FIXTURE / "mtimes.json").read_text()).items():
        os.utime(PLACE / relative, ns=(mtime_ns, mtime_ns))
    yield PLACE / "study"
    shutil.rmtree(PLACE, ignore_errors=True)


def view_rows(ledger: Path) -> dict[str, tuple[list[str], list[tuple]]]:
    """Each view's columns and rows, every value with its SQLite type."""
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        found = {}
        for view in VIEWS:
            cursor = conn.execute(f"SELECT * FROM {view}")
            found[view] = ([d[0] for d in cursor.description],
                           [tuple((type(v).__name__, v) for v in row) for row in cursor.fetchall()])
        return found
    finally:
        conn.close()


def without(data, *names):
    """A JSON document without the fields that name the moment it was written."""
    if isinstance(data, dict):
        return {k: without(v, *names) for k, v in data.items() if k not in names}
    if isinstance(data, list):
        return [without(v, *names) for v in data]
    return data


# What this runner adds to the files of the runner that wrote the fixture: the replicate of each
# comparison and training, the intervals over seeds, the summary's CSV columns and section.
ADDED_FIELDS = ("seed", "train_size", "intervals", "study_summary", "study_deltas")
POOLED = "Pooled over conditions (and seeds), without intervals: descriptive, not a test. "


def read(path: Path):
    if path.suffix == ".json":
        return without(json.loads(path.read_text()), "generated_at", "provenance", *ADDED_FIELDS)
    text = path.read_text()
    if path.name == "deltas.txt":  # the pooled section, as before; the one over seeds comes first
        return text.split("\n\n", 1)[-1].removeprefix(POOLED)
    if path.name == "study_table.csv":  # the columns before; then seed and train_size
        return "\n".join(",".join(line.split(",")[:8]) for line in text.splitlines())
    return text


def test_the_upgrade_keeps_every_row_and_every_views_answer(old_study):
    ledger = old_study / "analysis/ledger.db"
    conn = sqlite3.connect(ledger)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
    counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "jobs", "attempts", "metrics")]
    conn.close()
    before = view_rows(ledger)
    assert len(before["condition_grid"][1]) == 22 and len(before["failed_attempts"][1]) == 1

    prepare(ledger, STUDY.views)
    after = view_rows(ledger)
    for view, (columns, rows) in before.items():  # columns, rows, values and their types
        now_columns, now_rows = after[view]
        kept = [now_columns.index(c) for c in columns]
        assert [tuple(row[i] for i in kept) for row in now_rows] == rows, view
        added = [i for i, c in enumerate(now_columns) if c not in columns]  # the replicate's seed, size
        assert [now_columns[i] for i in added] in ([], ["seed", "train_size"]), view
        assert all(row[i] == ("NoneType", None) for row in now_rows for i in added), view
    conn = sqlite3.connect(ledger)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("runs", "jobs", "attempts", "metrics")] == counts
    labels = {key: (kind, json.loads(text)) for key, kind, text in conn.execute("SELECT key, kind, labels FROM jobs")}
    assert labels["E/dose_1000/baseline"] == ("E", {"phase": "E", "dose": 1000, "model": "baseline"})
    assert labels["dose_10000/sparse/test"] == ("G", {
        "phase": "G", "dose": 10000, "view": "sparse", "split": "test", "selection_strategy": "greedy",
        "acceptance_rate": 0.75, "spacing_threshold": 102.4, "n_accepted": 3, "n_rejected": 1})
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_the_next_run_plans_nothing_and_writes_ptychopinns_files_as_before(old_study):
    """Its runner.toml is of the older one-table form: it runs, with one warning saying how to
    update it."""
    env = runner_env()
    run = subprocess.run([sys.executable, "-m", "runner", "run", "--config", str(old_study / "runner.toml"),
                          "--gpus", "none"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "22 jobs planned, 0 to run, 22 already done, 0 blocked" in run.stdout
    (warning,) = run.stderr.splitlines()
    assert warning.startswith("runner: warning: config file") and "[study]" in warning and "[run]" in warning
    for name in PTYCHOPINN_FILES:
        assert read(old_study / "analysis" / name) == read(FIXTURE / "study/analysis" / name), name
    manifest = old_study / "phase_f/reconstruction_manifest.json"
    assert read(manifest) == read(FIXTURE / "study/phase_f/reconstruction_manifest.json")

    report = subprocess.run([sys.executable, "-m", "runner", "report", "--artifact-root", str(old_study / "analysis")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    for name in REPORT_FILES:
        assert read(old_study / "analysis" / name) == read(FIXTURE / "study/analysis" / name), name
