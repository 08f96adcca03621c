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
    assert (study / row["stdout_log"]).read_text().endswith("closing stdout now\n")
    assert "stdout is closed" in (study / row["stderr_log"]).read_text()


ESCAPE_TWICE = """
import os, subprocess, sys
# A daemon that double-forks: the middle process leaves the group and starts the last one.
code = "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print(p.pid, flush=True); time.sleep(60)"
middle = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
last = middle.stdout.readline().strip()
# One more that drops the attempt's token and ends on its own a little later.
clean = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"], start_new_session=True, env={})
print(middle.pid, last, clean.pid, flush=True)
"""


def test_escaped_processes_are_found_among_the_runners_children_and_reaped(tmp_path):
    """The executor is a child subreaper: whatever an attempt leaves behind becomes its child. A
    chain of escaped processes is stopped link by link, and an orphan that ends on its own is
    reaped rather than left as a zombie."""
    import asyncio
    import os
    import sys

    from runner.executors import LaunchSpec
    from runner.executors.local import LocalExecutor, main_thread_children

    token = uuid.uuid4().hex

    async def scenario() -> tuple[list[int], bool, bool]:
        executor = LocalExecutor()
        spec = LaunchSpec((sys.executable, "-c", ESCAPE_TWICE), tmp_path,
                          dict(os.environ, RUNNER_ATTEMPT_TOKEN=token),
                          tmp_path / "logs/out.log", tmp_path / "logs/err.log", token)
        handle = await executor.launch(spec)
        await executor.wait(handle)
        pids = [int(p) for p in (tmp_path / "logs/out.log").read_text().split()]
        assert executor._orphans_come_here, "this kernel should re-parent orphans to the runner"
        # The middle one and the token-less one are ours now; the last is the middle one's child.
        assert {pids[0], pids[2]} <= set(main_thread_children())
        found = await executor.clean_up(handle, grace=1)
        await asyncio.sleep(0.6)  # the token-less orphan ends on its own
        executor.close()
        return pids, found, pids[2] in (main_thread_children() or [])

    pids, found, clean_still_a_child = asyncio.run(scenario())
    assert found
    assert not any(pid_alive(pid) for pid in pids)
    assert not clean_still_a_child, "an orphan that ended was left as a zombie"
    assert processes_with_env("RUNNER_ATTEMPT_TOKEN", token) == []
