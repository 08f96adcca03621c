"""The runner learns the results: metrics loaded into the ledger with the success, out-of-memory
attempts retried with smaller chunks."""

import sqlite3

import pytest

from helpers import ledger_rows, run_runner
from runner import ledger as ledger_module
from runner.jobs import FailureClass
from runner.ledger import SCHEMA_VERSION, prepare
from runner.retry import NOT_RETRIED

ONE = ("--dose", "1000", "--view", "dense", "--split", "train")
OOM = FailureClass.CUDA_OOM


def test_metrics_of_every_success_are_queryable_by_condition(study):
    assert run_runner(study, behaviour={"*": {"nan_cell": True}}).returncode == 0
    rows = ledger_rows(study / "analysis/ledger.db",
                       "SELECT dose, view, split, model, amplitude, phase FROM study_metrics WHERE metric = 'ms_ssim'")
    assert len(rows) == 12 * 3
    assert tuple(rows[0]) == (1000, "dense", "train", "Baseline", 0.8, 0.7)
    ptychi = [r for r in rows if r["model"] == "PtyChi"]
    assert {r["phase"] for r in ptychi} == {None}  # NaN stays empty, never 0.0
    scalar = ledger_rows(study / "analysis/ledger.db",
                         "SELECT value FROM study_metrics WHERE metric = 'computation_time_s'")
    assert {r["value"] for r in scalar} == {1.5}


def test_only_the_current_success_is_in_the_view(study):
    assert run_runner(study, *ONE).returncode == 0
    assert run_runner(study, *ONE, "--force").returncode == 0
    ledger = study / "analysis/ledger.db"
    assert len(ledger_rows(ledger, "SELECT * FROM metrics")) == 2 * 12
    current = ledger_rows(ledger, "SELECT DISTINCT attempt FROM study_metrics")
    assert [r["attempt"] for r in current] == [2]


def test_out_of_memory_is_retried_with_halved_chunks(study):
    result = run_runner(study, *ONE, behaviour={"*": {"oom_above_chunk": 64}})
    assert result.returncode == 0, result.stdout
    rows = ledger_rows(study / "analysis/ledger.db", "SELECT argv, failure_class, state FROM attempts ORDER BY number")
    chunks = []
    for row in rows:
        argv = __import__("json").loads(row["argv"])
        chunks.append(argv[argv.index("--pinn-chunk-size") + 1] if "--pinn-chunk-size" in argv else None)
    assert chunks == [None, "256", "128", "64"]
    assert [r["failure_class"] for r in rows] == ["cuda_oom", "cuda_oom", "cuda_oom", None]
    assert "retry   dose_1000/dense/train  after cuda_oom" in result.stdout


def test_out_of_memory_retries_stop_at_the_floor(study):
    result = run_runner(study, *ONE, "--compare-arg=--pinn-chunk-size=4", "--compare-arg=--baseline-chunk-size=2",
                        behaviour={"*": {"oom_above_chunk": 0}})
    assert result.returncode == 1
    rows = ledger_rows(study / "analysis/ledger.db", "SELECT failure_class FROM attempts")
    assert [r["failure_class"] for r in rows] == ["cuda_oom"] * 3  # 4/2, 2/1, 1/1


def test_failure_classes_table_matches_the_code(tmp_path):
    path = tmp_path / "ledger.db"
    prepare(path)
    table = dict(sqlite3.connect(path).execute("SELECT name, retryable FROM failure_classes"))
    assert table == {c.value: int(c not in NOT_RETRIED) for c in FailureClass}


def test_a_version_1_ledger_is_upgraded_in_place(tmp_path, monkeypatch, study):
    path = tmp_path / "ledger.db"
    with monkeypatch.context() as m:
        m.setattr(ledger_module, "MIGRATIONS", ledger_module.MIGRATIONS[:1])
        m.setattr(ledger_module, "SCHEMA_VERSION", 1)
        prepare(path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO runs (started_at, host, user, pid, argv, runner_version) VALUES ('t', 'h', 'u', 1, '[]', '0')")
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    assert run_runner(study, *ONE, "--ledger", str(path)).returncode == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(ledger_module.MIGRATIONS)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2  # the old row survived
    assert conn.execute("SELECT COUNT(*) FROM study_metrics").fetchone()[0] == 12
