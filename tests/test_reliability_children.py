"""Misbehaving children beyond those of test_run.py (ignores SIGTERM, grandchild in the group,
large output and long lines, death by signal): a grandchild that leaves the process group, a
child that closes its stdout early."""

import subprocess
import uuid
from pathlib import Path

import pytest

from helpers import ledger_rows, pid_alive, processes_with_env, runner_cmd, runner_env

pytestmark = pytest.mark.reliability

ONE = ("--dose", "1000", "--view", "dense", "--split", "train")


def attempts(study: Path):
    return ledger_rows(study / "analysis/ledger.db", "SELECT * FROM attempts ORDER BY attempt_id")


@pytest.mark.parametrize("behaviour, extra, state", [
    ({}, (), "succeeded"),  # the command exits 0 and leaves the escaped grandchild behind
    ({"hang": True}, ("--timeout", "1"), "failed"),  # the command is killed by the timeout
])
def test_a_grandchild_that_left_the_process_group_is_killed_too(study, behaviour, extra, state):
    mark = uuid.uuid4().hex
    env = runner_env({"*": {"escape": 120, **behaviour}}, TEST_MARK=mark)
    result = subprocess.run(runner_cmd(study, *ONE, "--grace", "1", *extra), env=env, cwd=study,
                            capture_output=True, text=True, timeout=60)
    (row,) = attempts(study)
    assert row["state"] == state, result.stdout + result.stderr
    escaped = int((study / "analysis/dose_1000/dense/train/escaped.pid").read_text())
    assert not pid_alive(escaped)
    assert processes_with_env("TEST_MARK", mark) == []


def test_a_child_that_closes_its_stdout_early_is_judged_by_its_outputs(study):
    result = subprocess.run(runner_cmd(study, *ONE), env=runner_env({"*": {"close_stdout": True}}),
                            cwd=study, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = attempts(study)
    assert row["state"] == "succeeded"
    assert Path(row["stdout_log"]).read_text().endswith("closing stdout now\n")
    assert "stdout is closed" in Path(row["stderr_log"]).read_text()
