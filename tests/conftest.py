"""Shared fixtures: a small study on disk (real NPZ and JSON files), and helpers that run the
runner as a real subprocess against the fake compare script."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FAKE_COMPARE = Path(__file__).resolve().parent / "fake_compare.py"
VIEWS, SPLITS = ("dense", "sparse"), ("train", "test")


def _npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def make_study(root: Path, doses=(1000, 10000, 100000), metadata_in="npz") -> Path:
    """A study tree with every input of every condition (tiny arrays, real formats)."""
    n, size = 4, 8
    for dose in doses:
        for split in SPLITS:
            _npz(root / f"phase_c/dose_{dose}/patched_{split}.npz",
                 diffraction=np.ones((n, size, size), np.float32),
                 probeGuess=np.ones((size, size), np.complex64),
                 objectGuess=np.ones((16, 16), np.complex64),
                 xcoords=np.arange(n, dtype=np.float64), ycoords=np.arange(n, dtype=np.float64))
        for folder in ("baseline/gs1", "dense/gs2", "sparse/gs2"):
            model = root / f"phase_e/dose_{dose}/{folder}"
            model.mkdir(parents=True, exist_ok=True)
            (model / "model.pt").write_bytes(b"weights")
        for view in VIEWS:
            for split in SPLITS:
                meta = {"overlap_view": view, "spacing_threshold": 38.4 if view == "dense" else 102.4,
                        "n_accepted": 3, "n_rejected": 1, "acceptance_rate": 0.75,
                        "selection_strategy": "direct" if view == "dense" else "greedy"}
                arrays = {"diffraction": np.ones((n, size, size), np.float32)}
                if metadata_in == "npz":
                    arrays["_metadata"] = np.array(json.dumps(meta))
                _npz(root / f"phase_d/dose_{dose}/{view}/{view}_{split}.npz", **arrays)
                _npz(root / f"phase_f/dose_{dose}/{view}/{split}/ptychi_reconstruction.npz",
                     reconstructed_object=np.ones((16, 16), np.complex64), algorithm=np.array("ePIE"))
    if metadata_in == "manifest":
        results = [{"dose": d, "view": v, "split": s, "selection_strategy": "greedy",
                    "acceptance_rate": 0.008, "spacing_threshold": 38.4, "n_accepted": 42,
                    "n_rejected": 5046} for d in doses for v in VIEWS for s in SPLITS]
        (root / "phase_f/reconstruction_manifest.json").write_text(json.dumps({"execution_results": results}))
    return root


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return make_study(tmp_path / "study")


def runner_cmd(study_root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runner", "run", "--study-root", str(study_root),
            "--compare-cmd", f"{sys.executable} {FAKE_COMPARE}", "--gpus", "none", *extra]


def runner_env(behaviour: dict | None = None, record: Path | None = None, **more: str) -> dict:
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["FAKE_COMPARE_BEHAVIOUR"] = json.dumps(behaviour or {})
    if record:
        env["FAKE_COMPARE_RECORD"] = str(record)
    env.update(more)
    return env


def run_runner(study_root: Path, *extra: str, behaviour: dict | None = None, record: Path | None = None,
               timeout: float = 120, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(runner_cmd(study_root, *extra), env=env or runner_env(behaviour, record),
                          cwd=cwd or study_root, capture_output=True, text=True, timeout=timeout)


def start_runner(study_root: Path, *extra: str, behaviour: dict | None = None,
                 record: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(runner_cmd(study_root, *extra), env=runner_env(behaviour, record),
                            cwd=study_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ledger_rows(ledger: Path, sql: str, params=()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(ledger)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 30, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment holds name=value (to find leftovers of a test)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0") and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found
