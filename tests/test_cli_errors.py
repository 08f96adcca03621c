"""Bad input: each gives one `runner: error:` line naming the problem, a non-zero exit, no
traceback, and leaves an existing ledger exactly as it was."""

import hashlib
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from helpers import run_runner, runner_env

ONE = ("--dose", "1000", "--view", "dense", "--split", "train")


def _newer_schema(study):
    conn = sqlite3.connect(study / "analysis/ledger.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()


def _write(relative, content):
    def setup(study):
        path = study / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content) if isinstance(content, str) else path.write_bytes(content)
    return setup


def _empty_phase_c(study):
    (study / "empty_c").mkdir()


def _bad_metadata(study):
    np.savez(study / "phase_d/dose_1000/dense/dense_train.npz", _metadata=np.array("not json {"))


def _file_as_parent(study):
    (study / "a_file").write_text("x")


CASES = [
    # (id, setup, extra args, expected message fragment)
    ("missing root", None, ["--phase-c-root", "/no/such/folder"], "--phase-c-root /no/such/folder is not a folder"),
    ("no dose folders", _empty_phase_c, ["--phase-c-root", "{study}/empty_c"], "no dose_<int> folders"),
    ("dose filter matches nothing", None, ["--dose", "77"], "--dose 77 matches no dose_<int> folder"),
    ("view filter unknown", None, ["--view", "diagonal"], "'diagonal' is not one of dense, sparse"),
    ("malformed manifest", _write("phase_f/reconstruction_manifest.json", "{broken"), [], "is not valid JSON"),
    ("legacy manifest malformed", _write("phase_f/dose_1000_dense_train/manifest.json", "[1,"), [], "is not valid JSON"),
    ("legacy manifest without output_dir", _write("phase_f/dose_1000_dense_train/manifest.json", "{}"), [], "has no output_dir"),
    ("metadata not json", _bad_metadata, [], "_metadata is not a JSON string"),
    ("ledger is a directory", None, ["--ledger", "{study}/phase_c"], "is a directory"),
    ("ledger not sqlite", _write("notes.txt", "hello"), ["--ledger", "{study}/notes.txt"], "is not a SQLite file"),
    ("ledger newer schema", _newer_schema, [], "newer than this runner knows"),
    ("unknown gpus token", None, ["--gpus", "first"], "'first' is not a GPU index or UUID"),
    ("artifact root unwritable", _file_as_parent, ["--artifact-root", "{study}/a_file/out"], "cannot be written"),
    ("unknown flag", None, ["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ("jobs per gpu zero", None, ["--jobs-per-gpu", "0"], "--jobs-per-gpu must be an integer >= 1"),
    ("negative timeout", None, ["--timeout", "-5"], "--timeout must be a positive"),
    ("missing config", None, ["--config", "{study}/nope.toml"], "config file"),
    ("bad toml", _write("bad.toml", "retries = ["), ["--config", "{study}/bad.toml"], "not valid TOML"),
    ("unsplittable compare cmd", None, ["--compare-cmd", "python 'unclosed"], "--compare-cmd cannot be split"),
    ("missing interpreter", None, ["--compare-cmd", "/no/such/python -m x"], "compare command '/no/such/python' not found"),
    ("module not importable", None, ["--compare-cmd", f"{sys.executable} -m no_such_pkg.compare"], "cannot import no_such_pkg.compare"),
    ("compare script missing", None, ["--compare-cmd", f"{sys.executable} missing_compare.py"], "compare script missing_compare.py not found"),
    ("bad test-data source", None, ["--test-data", "phase_x"], "use phase_c or phase_d"),
]


@pytest.mark.parametrize("name, setup, extra, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(study, name, setup, extra, message):
    assert run_runner(study, *ONE).returncode == 0  # a ledger with a result already in it
    ledger = study / "analysis/ledger.db"
    before = hashlib.sha256(ledger.read_bytes()).hexdigest()
    if setup:
        setup(study)
        if setup is _newer_schema:
            before = hashlib.sha256(ledger.read_bytes()).hexdigest()
    result = run_runner(study, *ONE, *[arg.replace("{study}", str(study)) for arg in extra])
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("runner: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert hashlib.sha256(ledger.read_bytes()).hexdigest() == before
    assert sorted(study.rglob("*.lock")) == [study / "analysis/ledger.db.lock"]  # no stray lock files


@pytest.mark.parametrize("args, message", [
    (["status", "--ledger", "/no/such/ledger.db"], "no ledger at /no/such/ledger.db"),
    (["status", "--ledger", "/"], "is a directory"),
    (["status", "--watch", "0", "--ledger", "/tmp"], "--watch needs a positive number"),
    (["launch"], "invalid choice: 'launch'"),
])
def test_status_and_usage_errors(args, message):
    result = subprocess.run([sys.executable, "-m", "runner", *args], env=runner_env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("runner: error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
