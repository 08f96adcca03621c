"""Helpers of the runner tests: run the runner as a real subprocess against the fake compare
script, read its ledger, wait for live state, find leftover processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
FAKE_COMPARE = Path(__file__).resolve().parent / "fake_compare.py"


def runner_cmd(study_root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runner", "run", "--study-root", str(study_root),
            "--compare-cmd", f"{sys.executable} {FAKE_COMPARE}", "--gpus", "none", *extra]


def runner_env(behaviour: dict | None = None, record: Path | None = None, **more: str) -> dict:
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("OMP_NUM_THREADS", None)
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


def change_content(npz: Path) -> None:
    """Give an NPZ input new content (one more array) with its old size-independent meaning: the
    runner fingerprints inputs by content, so a new mtime alone is no change."""
    import numpy as np

    with np.load(npz, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["_changed"] = np.array(time.time_ns())
    with open(npz, "wb") as f:
        np.savez(f, **arrays)


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
        try:
            value = predicate()
        except sqlite3.OperationalError:  # the ledger is still being created
            value = None
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


def settings(values: dict, cwd: Path | None = None):
    """The engine's settings and the study's, as `runner run` reads them from these flags (a
    TOML file with "config")."""
    from runner import config
    from runner.ptycho import STUDY

    return config.load(values, STUDY, cwd or Path.cwd())


def study_settings(values: dict, cwd: Path | None = None):
    return settings(values, cwd)[1]


def plan(values: dict, cwd: Path | None = None) -> list:
    """The jobs `runner run` would plan for these flags: fingerprinted, missing inputs blocked."""
    from runner import app
    from runner.ptycho import STUDY

    return app.planned(STUDY, study_settings(values, cwd))
