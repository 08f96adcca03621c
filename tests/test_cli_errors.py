"""Bad input: each gives one `runner: error:` line naming the problem, a non-zero exit, no
traceback, and leaves an existing ledger exactly as it was. One table, across the command line,
the TOML config, the study folders, the manifests, the NPZ metadata and the ledger file."""

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fixture_study import make_study
from helpers import run_runner, runner_env

pytestmark = pytest.mark.reliability

ONE = ("--dose", "1000", "--view", "dense", "--split", "train")
VIEW_NPZ = "phase_d/dose_1000/dense/dense_train.npz"


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


def _metadata(value):
    """The view NPZ with this `_metadata` entry (a JSON string unless given an array)."""
    def setup(study):
        array = value if isinstance(value, np.ndarray) else np.array(value if isinstance(value, str) else json.dumps(value))
        np.savez(study / VIEW_NPZ, _metadata=array)
    return setup


def _file_as_parent(study):
    (study / "a_file").write_text("x")


def _huge_dose_folder(study):
    (study / "phase_c/dose_99999999999999999999").mkdir()


def _oversized(relative):
    def setup(study):
        with open(study / relative, "wb") as f:
            f.truncate(17 << 20)  # sparse: over the limit, never parsed
    return setup


def _foreign_sqlite(study):
    conn = sqlite3.connect(study / "photos.db")
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()


def _damaged_ledger(study):
    ledger = (study / "analysis/ledger.db").read_bytes()
    (study / "damaged.db").write_bytes(ledger[:len(ledger) // 2])


def _manifest(entries):
    return _write("phase_f/reconstruction_manifest.json", json.dumps({"execution_results": entries}))


CASES = [
    # (id, setup, extra args, expected message fragment)
    ("missing root", None, ["--phase-c-root", "/no/such/folder"], "--phase-c-root /no/such/folder is not a folder"),
    ("no dose folders", _empty_phase_c, ["--phase-c-root", "{study}/empty_c"], "no dose_<int> folders"),
    ("dose filter matches nothing", None, ["--dose", "77"], "--dose 77 matches no dose_<int> folder"),
    ("view filter unknown", None, ["--view", "diagonal"], "'diagonal' is not one of dense, sparse"),
    ("malformed manifest", _write("phase_f/reconstruction_manifest.json", "{broken"), [], "is not valid JSON"),
    ("legacy manifest malformed", _write("phase_f/dose_1000_dense_train/manifest.json", "[1,"), [], "is not valid JSON"),
    ("legacy manifest without output_dir", _write("phase_f/dose_1000_dense_train/manifest.json", "{}"), [], "has no output_dir"),
    ("metadata not json", _metadata("not json {"), [], "_metadata is not a JSON string"),
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
    # the command line
    ("max parallel zero", None, ["--max-parallel", "0"], "--max-parallel must be an integer >= 1"),
    ("retries not a number", None, ["--retries", "many"], "invalid int value: 'many'"),
    ("negative grace", None, ["--grace", "-1"], "--grace must be a number of seconds >= 0"),
    ("force and only-failed", None, ["--force", "--only-failed"], "contradict each other"),
    ("dose not a number", None, ["--dose", "lots"], "--dose must be a number"),
    ("workdir missing", None, ["--workdir", "/no/such/workdir"], "--workdir /no/such/workdir is not a folder"),
    # the TOML config
    ("config is a folder", None, ["--config", "{study}/phase_c"], "cannot be read (Is a directory)"),
    ("config not utf-8", _write("bin.toml", b"retries = 1\n\xff\xfe\n"), ["--config", "{study}/bin.toml"], "is not UTF-8 text"),
    ("config unknown key", _write("k.toml", "colour = 'blue'\n"), ["--config", "{study}/k.toml"], "unknown key 'colour'"),
    ("config compare_args a number", _write("t.toml", "compare_args = 5\n"), ["--config", "{study}/t.toml"], "compare_args = 5 should be a string or a list"),
    ("config test_data a number", _write("t.toml", "test_data = 5\n"), ["--config", "{study}/t.toml"], "test_data = 5 should be"),
    ("config compare_cmd a table", _write("t.toml", "compare_cmd = {a = 1}\n"), ["--config", "{study}/t.toml"], "compare_cmd = {'a': 1} should be"),
    ("config checkpoint_name a number", _write("t.toml", "checkpoint_name = 5\n"), ["--config", "{study}/t.toml"], "checkpoint_name = 5 should be a file name"),
    ("config retries a string", _write("t.toml", "retries = 'many'\n"), ["--config", "{study}/t.toml"], "retries = 'many' should be an integer"),
    ("config force a string", _write("t.toml", "force = 'yes'\n"), ["--config", "{study}/t.toml"], "force = 'yes' should be true or false"),
    ("config list of tables", _write("t.toml", "views = [{a = 1}]\n"), ["--config", "{study}/t.toml"], "views = [{'a': 1}] should be"),
    # the study folders
    ("dose folder out of range", _huge_dose_folder, [], "dose_99999999999999999999 in"),
    # the manifests
    ("manifest results not a list", _write("phase_f/reconstruction_manifest.json", '{"execution_results": 5}'), [], "execution_results must be a list"),
    ("manifest dose overflows", _manifest([{"dose": "1e400", "view": "dense", "split": "train"}]), [], "dose '1e400' is not a number"),
    ("manifest NaN metadata", _write("phase_f/reconstruction_manifest.json",
                                     '{"execution_results": [{"dose": 1000, "view": "dense", "split": "train", "acceptance_rate": NaN}]}'),
     [], "acceptance_rate = nan is not a finite number"),
    ("manifest not utf-8", _write("phase_f/reconstruction_manifest.json", b"\xff\xfe{}"), [], "is not valid JSON"),
    ("manifest over the size limit", _oversized("phase_f/reconstruction_manifest.json"), [], "over the 16777216 byte limit"),
    ("legacy manifest output_dir a number", _write("phase_f/dose_1000_dense_train/manifest.json", '{"output_dir": 5}'), [], "has no output_dir string"),
    # the NPZ metadata
    ("metadata pickled", _metadata(np.array([{"a": 1}], dtype=object)), [], "a pickled object?"),
    ("metadata wrong type", _metadata({"acceptance_rate": "high"}), [], "acceptance_rate = 'high' has the wrong type"),
    ("metadata integer overflow", _metadata({"n_accepted": 10 ** 30}), [], "n_accepted = 1000000000000000000000000000000 is out of range"),
    ("metadata not an object", _metadata([1, 2]), [], "is not a JSON object"),
    ("view npz not a zip", _write(VIEW_NPZ, b"PK but not really a zip"), [], "not an NPZ (zip) file"),
    # the ledger file
    ("ledger of another program", _foreign_sqlite, ["--ledger", "{study}/photos.db"], "is a SQLite database but not a runner ledger"),
    ("ledger damaged", _damaged_ledger, ["--ledger", "{study}/damaged.db"], "damaged.db"),
    ("ledger folder missing", None, ["--ledger", "{study}/no/such/ledger.db"], "the folder of ledger"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A study whose ledger already holds a result; each case works on a copy."""
    study = make_study(tmp_path_factory.mktemp("template") / "study", doses=(1000,))
    assert run_runner(study, *ONE).returncode == 0
    return study


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@pytest.mark.parametrize("name, setup, extra, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(template, tmp_path, name, setup, extra, message):
    study = tmp_path / "study"
    shutil.copytree(template, study)
    if setup:
        setup(study)
    args = [arg.replace("{study}", str(study)) for arg in extra]
    ledgers = [study / "analysis/ledger.db"] + [Path(a) for a in args if a.endswith(".db") or a.endswith("notes.txt")]
    before = {path: digest(path) for path in ledgers}
    locks = sorted(study.rglob("*.lock"))
    result = run_runner(study, *ONE, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("runner: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert {path: digest(path) for path in ledgers} == before  # every ledger involved is untouched
    assert sorted(study.rglob("*.lock")) == locks  # and no lock file was left beside a refused one


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
