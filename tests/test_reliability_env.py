"""Environment faults: a log folder that runs out of space or hits the file-size limit, a ledger
folder that is read-only, a reader holding a long read transaction during a whole run, a ledger
on a network filesystem. (A second `run` on a busy ledger: test_run.py.)"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from helpers import ledger_rows, processes_with_env, run_runner, runner_cmd, runner_env, wait_for
from runner import cli
from runner import ledger as ledger_module
from runner import mounts

pytestmark = pytest.mark.reliability

DOSE = ("--dose", "1000")
ONE = ("--dose", "1000", "--view", "dense", "--split", "train")
FULL_JOB = "dose_1000/dense/train"


@pytest.fixture
def tmpfs():
    """mount(path, options): a small tmpfs at `path`, unmounted afterwards; skips the test where
    mounting is not permitted (it needs root with CAP_SYS_ADMIN)."""
    mounted = []

    def mount(path: Path, options: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None:
            pytest.skip("no `mount` command to make a small filesystem")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root with CAP_SYS_ADMIN")
        mounted.append(path)

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grid(study: Path) -> dict:
    return {r["key"]: r for r in ledger_rows(study / "analysis/ledger.db", "SELECT * FROM condition_grid")}


def test_a_log_folder_out_of_space_fails_that_attempt_as_disk_full_and_the_run_goes_on(study, tmpfs):
    tmpfs(study / "analysis/dose_1000/dense/train/logs", "size=4m")  # more than counts as full
    result = run_runner(study, *DOSE, behaviour={FULL_JOB: {"spam_bytes": 100 << 20}})
    assert result.returncode == 1, result.stderr
    rows = grid(study)
    assert (rows[FULL_JOB]["state"], rows[FULL_JOB]["failure_class"]) == ("failed", "disk_full")
    assert "is full" in rows[FULL_JOB]["detail"] and "logs" in rows[FULL_JOB]["detail"]
    assert [r["state"] for k, r in rows.items() if k != FULL_JOB] == ["succeeded"] * 3
    assert "Traceback" not in result.stdout + result.stderr


def test_a_full_artifact_root_fails_the_attempts_and_the_run_ends_cleanly(study, tmp_path, tmpfs):
    tmpfs(study / "analysis", "size=3m")  # room for the first job's 2 MB log, not the second's
    ledger = tmp_path / "elsewhere/ledger.db"
    ledger.parent.mkdir()
    result = run_runner(study, *DOSE, "--ledger", str(ledger), behaviour={"*": {"spam_bytes": 2 << 20}})
    assert result.returncode == 1
    outcomes = [(r["state"], r["failure_class"]) for r in ledger_rows(ledger, "SELECT * FROM attempts")]
    assert outcomes == [("succeeded", None)] + [("failed", "disk_full")] * 3
    assert "Traceback" not in result.stdout + result.stderr
    assert "runner: warning: cannot write comparison_manifest.json" in result.stderr
    assert not list((study / "analysis").glob(".*.tmp"))  # no half-written manifest or metrics summary
    assert ledger_rows(ledger, "SELECT outcome FROM runs")[0]["outcome"] == "completed"


def test_a_log_at_the_file_size_limit_fails_as_disk_full(study):
    limit = 8 << 20  # ulimit -f for the runner and (inherited) its children; the ledger stays far below

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(runner_cmd(study, *DOSE), cwd=study, capture_output=True, text=True, timeout=120,
                            env=runner_env({FULL_JOB: {"spam_bytes": 100 << 20}}), preexec_fn=limited)
    assert result.returncode == 1, result.stderr
    rows = grid(study)
    assert rows[FULL_JOB]["failure_class"] == "disk_full"
    assert "file-size limit" in rows[FULL_JOB]["detail"]
    assert [r["state"] for k, r in rows.items() if k != FULL_JOB] == ["succeeded"] * 3


@pytest.mark.parametrize("existing", [False, True], ids=["new ledger", "existing ledger"])
def test_a_read_only_ledger_folder_is_one_clear_line(study, tmp_path, tmpfs, existing):
    folder = tmp_path / "ledger_folder"
    if os.geteuid() == 0:  # root writes through permissions: only a read-only mount stops it
        tmpfs(folder, "size=4m")
    else:
        folder.mkdir()
    ledger = folder / "ledger.db"
    if existing:
        assert run_runner(study, *ONE, "--ledger", str(ledger)).returncode == 0
        before = ledger.read_bytes()
    if os.geteuid() == 0:
        remount = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True)
        assert remount.returncode == 0, remount.stderr
    else:
        folder.chmod(0o555)
    result = run_runner(study, *ONE, "--ledger", str(ledger))
    assert result.returncode == 2
    assert result.stderr.startswith("runner: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "read-only file system" in result.stderr or "permission denied" in result.stderr
    assert "folder must be writable" in result.stderr
    if existing:
        assert ledger.read_bytes() == before


READER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN")
count = lambda: conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
print(count(), flush=True)
sys.stdin.readline()
print(count(), flush=True)
conn.execute("COMMIT")
print(count(), flush=True)
"""


def test_a_reader_holding_a_read_transaction_for_the_whole_run_does_not_stop_it(study):
    assert run_runner(study, *ONE).returncode == 0
    ledger = study / "analysis/ledger.db"
    # What `sqlite3 ledger.db` does after `BEGIN; SELECT ...;`: a snapshot held open.
    reader = subprocess.Popen([sys.executable, "-c", READER, str(ledger)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "1\n"
        result = run_runner(study, "--force", "--max-parallel", "2")
        assert result.returncode == 0, result.stderr
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert [reader.stdout.readline() for _ in range(2)] == ["1\n", "13\n"]  # its snapshot, then the new rows
    finally:
        reader.kill()
        reader.wait()
    assert ledger_rows(ledger, "PRAGMA integrity_check")[0][0] == "ok"


def fake_mounts(tmp_path: Path, text: str, monkeypatch) -> None:
    table = tmp_path / "mounts"
    table.write_text(text)
    monkeypatch.setattr(mounts, "MOUNTS", table)


@pytest.mark.parametrize("fs, warned", [("nfs4", True), ("lustre", True), ("cifs", True), ("ext4", False)])
def test_the_filesystem_of_the_ledger_is_found_in_the_mount_table(tmp_path, monkeypatch, fs, warned):
    fake_mounts(tmp_path, f"/dev/vda / ext4 rw 0 0\nserver:/export /data {fs} rw 0 0\n"
                          "/dev/vdb /data/local\\040disk\\011x ext4 rw 0 0\n", monkeypatch)
    warning = mounts.network_filesystem_warning(Path("/data/study/ledger.db"))
    assert (warning is not None) == warned
    if warned:
        assert f"network filesystem ({fs})" in warning and "--ledger" in warning
    # The longest mount point wins, and the kernel's \ooo escapes are decoded.
    assert mounts.network_filesystem_warning(Path("/data/local disk\tx/ledger.db")) is None
    assert mounts.filesystem_type(Path("/data/local disk\tx")) == "ext4"
    assert mounts.filesystem_type(Path("/data2")) == "ext4"  # not inside /data


def test_a_run_with_its_ledger_on_a_network_filesystem_warns_and_goes_on(study, tmp_path, monkeypatch, capsys):
    fake_mounts(tmp_path, f"/dev/vda / ext4 rw 0 0\nserver:/export {study} nfs4 rw 0 0\n", monkeypatch)
    monkeypatch.setenv("FAKE_COMPARE_BEHAVIOUR", "{}")
    monkeypatch.chdir(study)
    umask = os.umask(0o022)
    try:
        code = cli.main(["run", "--study-root", str(study), *ONE, "--gpus", "none",
                         "--compare-cmd", f"{sys.executable} {Path(__file__).parent / 'fake_compare.py'}"])
    finally:
        os.umask(umask)
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.startswith("runner: warning: the ledger ") and "network filesystem (nfs4)" in err


HOLDER = """
import sqlite3, sys, time
ledger = sys.argv[1]
while True:  # wait for two attempts with a process, then take the write lock and keep it
    try:
        reader = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
        if reader.execute("SELECT COUNT(*) FROM attempts WHERE pid IS NOT NULL AND state = 'running'").fetchone()[0] >= 2:
            break
    except sqlite3.Error:
        pass
    time.sleep(0.05)
writer = sqlite3.connect(ledger, isolation_level=None)
writer.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(120)
"""


def test_a_writer_holding_the_lock_past_the_busy_timeout_stops_the_run_cleanly(study, monkeypatch, capsys, caplog):
    """Someone runs `BEGIN IMMEDIATE` in sqlite3 and leaves it: one error line, exit 1, no process
    left, and the next run resumes. (The busy timeout is shortened from 30 s for the test.)"""
    assert run_runner(study, *ONE).returncode == 0
    ledger = study / "analysis/ledger.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ledger)], stdout=subprocess.PIPE, text=True)
    mark = uuid.uuid4().hex
    monkeypatch.setattr(ledger_module, "BUSY_TIMEOUT_MS", 500)
    monkeypatch.setenv("FAKE_COMPARE_BEHAVIOUR", json.dumps({"*": {"sleep": 2, "grandchild": 60}}))
    monkeypatch.setenv("TEST_MARK", mark)
    monkeypatch.chdir(study)
    umask = os.umask(0o022)
    try:
        code = cli.main(["run", "--study-root", str(study), *DOSE, "--force", "--max-parallel", "2",
                         "--grace", "1", "--gpus", "none",
                         "--compare-cmd", f"{sys.executable} {Path(__file__).parent / 'fake_compare.py'}"])
        assert holder.stdout.readline() == "holding\n"
    finally:
        os.umask(umask)
        holder.kill()
        holder.wait()
    gc.collect()  # an attempt task whose error nobody awaited would complain now
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines()[-1].startswith("runner: error: writing the ledger failed (database is locked)")
    assert "Traceback" not in err
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # e.g. 'Task exception was never retrieved'
    assert processes_with_env("TEST_MARK", mark) == []
    monkeypatch.undo()
    result = run_runner(study, *DOSE)
    assert result.returncode == 0, result.stderr
    assert "now interrupted" in result.stdout
    assert ledger_rows(ledger, "SELECT COUNT(*) AS n FROM attempts WHERE state = 'running'")[0]["n"] == 0


def test_the_ledgers_disk_filling_up_mid_run_stops_it_cleanly_and_the_next_run_resumes(study, tmp_path, tmpfs):
    folder = tmp_path / "ledger_disk"
    tmpfs(folder, "size=2m")
    ledger = folder / "ledger.db"
    mark = uuid.uuid4().hex
    runner = subprocess.Popen(runner_cmd(study, *DOSE, "--ledger", str(ledger), "--max-parallel", "2", "--grace", "1"),
                              env=runner_env({"*": {"sleep": 1.5, "grandchild": 60}}, TEST_MARK=mark), cwd=study,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    filler = folder / "filler"
    try:
        wait_for(lambda: ledger.exists() and ledger_rows(ledger, "SELECT 1 FROM attempts WHERE pid IS NOT NULL"))
        with open(filler, "wb", buffering=0) as f:  # take every byte left
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        out, err = runner.communicate(timeout=120)
    finally:
        runner.kill()
        runner.wait()
    assert runner.returncode == 1, out + err
    assert err.splitlines()[-1].startswith("runner: error: writing the ledger failed")
    assert "Traceback" not in err
    assert processes_with_env("TEST_MARK", mark) == []
    filler.unlink()
    assert ledger_rows(ledger, "PRAGMA integrity_check")[0][0] == "ok"
    result = run_runner(study, *DOSE, "--ledger", str(ledger))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ledger_rows(ledger, "SELECT COUNT(*) AS n FROM attempts WHERE state = 'running'")[0]["n"] == 0
