"""The ledger as a state machine: Hypothesis drives the real Ledger API on a real SQLite file
through plan, launch, finish, fail, crash, reconcile and resume, with real processes, and checks
the guarantees after every step against a model of what must be true."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from runner.executors.local import LocalExecutor, pid_alive, process_start
from runner.jobs import AttemptStart, FailureClass, Job, JobState, MetricsCheck, Outcome
from runner.ledger import Ledger
from runner.resume import reconcile, select
from runner.results import MetricRow

pytestmark = pytest.mark.reliability

KEYS = ("dose_1000/dense/train", "dose_1000/dense/test", "dose_1000/sparse/train")
FAILURES = (FailureClass.EXIT_CODE, FailureClass.SIGNAL, FailureClass.TIMEOUT, FailureClass.NO_METRICS,
            FailureClass.CUDA_OOM, FailureClass.DISK_FULL, FailureClass.LAUNCH_ERROR)
METRICS = (MetricRow("PtychoPINN", "ms_ssim", 0.8, 0.7, None), MetricRow("Baseline", "ms_ssim", 0.6, None, None))


def make_job(key: str, fingerprint: str, folder: Path) -> Job:
    return Job(key=key, argv=("python", "compare.py", key), cwd=folder, output_dir=folder / key,
               check=MetricsCheck(folder / key / "m.csv", ("PtychoPINN",)), fingerprint=fingerprint,
               labels=dict(zip(("dose", "view", "split"), (1000, *key.split("/")[1:]))))


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="ledger-machine-"))
        self.path = self.folder / "ledger.db"
        self.loop = asyncio.new_event_loop()
        self.jobs: dict[str, Job] = {}
        self.job_ids: dict[str, int] = {}
        # The model: attempt_id -> {key, number, state, process, runner life}
        self.attempts: dict[int, dict] = {}
        self.life = 0  # which runner process (0, 1, ...) drives the ledger
        self.ledger: Ledger | None = None
        self._start_runner()

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def _start_runner(self) -> None:
        self.ledger = self.run(Ledger.open(self.path))
        self.run_id = self.run(self.ledger.begin_run("host", "user", os.getpid(), [], "0", None, []))

    def running(self, life: int | None = None) -> list[int]:
        return [a for a, m in self.attempts.items() if m["state"] == "running"
                and (life is None or m["life"] == life)]

    # --- transitions -------------------------------------------------------------------------

    @precondition(lambda self: self.ledger is not None and not self.running())
    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, unique=True),
          fingerprint=st.sampled_from(["f1", "f2"]), force=st.booleans(), only_failed=st.booleans())
    def plan_and_resume(self, keys, fingerprint, force, only_failed):
        """A run starts: record the plan (some inputs may have changed) and choose what to run."""
        if force and only_failed:
            only_failed = False
        before = {key: self._success_fingerprint(key) for key in keys}
        states = {key: self._job_state(key) for key in keys}
        jobs = [make_job(key, fingerprint, self.folder) for key in keys]
        rows = self.run(self.ledger.sync_jobs(jobs, self.run_id))
        for job in jobs:
            self.jobs[job.key], self.job_ids[job.key] = job, rows[job.key].job_id
        chosen = self.run(select(self.ledger, jobs, rows, force, only_failed))
        for job in jobs:
            if force:
                expected = True
            elif only_failed:
                expected = states[job.key] in ("failed", "interrupted")
            else:
                expected = before[job.key] != fingerprint
            assert (job in [item.job for item in chosen.to_run]) == expected, job.key
            if not expected and before[job.key] is not None:
                assert self._job_state(job.key) == "succeeded"  # a standing success stands

    @precondition(lambda self: self.ledger is not None and self.jobs)
    @rule(data=st.data(), spawn=st.sampled_from(["recorded", "unrecorded", "none"]))
    def launch(self, data, spawn):
        """An attempt row, then (maybe) its process, then (maybe) the record of its pid."""
        busy = {self.attempts[a]["key"] for a in self.running()}
        free = [key for key in sorted(self.jobs) if key not in busy]
        if not free:
            return
        key = data.draw(st.sampled_from(free))
        token = uuid.uuid4().hex
        logs = lambda n: (self.folder / f"{key.replace('/', '_')}.{n}.out", self.folder / f"{key.replace('/', '_')}.{n}.err")
        job = self.jobs[key]
        attempt = self.run(self.ledger.start_attempt(AttemptStart(
            self.job_ids[key], key, self.run_id, ("python",), job.fingerprint, "cpu0", "", None, token, "local"),
            logs))
        attempt_id, number = attempt.attempt_id, attempt.number
        process = None
        if spawn != "none":  # 'none': the runner died (or failed) before it could spawn
            process = subprocess.Popen(["sleep", "60"], start_new_session=True,
                                       env={**os.environ, "RUNNER_ATTEMPT_TOKEN": token})
            if spawn == "recorded":
                self.run(self.ledger.record_launch(attempt_id, {
                    "pid": process.pid, "pgid": process.pid, "process_start": process_start(process.pid)}))
        self.attempts[attempt_id] = {"key": key, "number": number, "state": "running",
                                     "process": process, "life": self.life}

    def _end_process(self, attempt_id: int) -> None:
        process = self.attempts[attempt_id]["process"]
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    @precondition(lambda self: self.ledger is not None and self.running(self.life))
    @rule(data=st.data())
    def finish(self, data):
        """The command exited 0 and its metrics parsed: a success (an older one is superseded)."""
        attempt_id = data.draw(st.sampled_from(self.running(self.life)))
        self._end_process(attempt_id)
        key = self.attempts[attempt_id]["key"]
        self.run(self.ledger.finish_attempt(attempt_id, self.job_ids[key],
                                            Outcome(True, metrics=METRICS, exit_code=0), 1.0))
        for model in self.attempts.values():
            if model["key"] == key and model["state"] == "succeeded":
                model["state"] = "superseded"
        self.attempts[attempt_id]["state"] = "succeeded"

    @precondition(lambda self: self.ledger is not None and self.running(self.life))
    @rule(data=st.data(), failure=st.sampled_from(FAILURES + (FailureClass.INTERRUPTED,)))
    def fail(self, data, failure):
        attempt_id = data.draw(st.sampled_from(self.running(self.life)))
        self._end_process(attempt_id)
        key = self.attempts[attempt_id]["key"]
        self.run(self.ledger.finish_attempt(attempt_id, self.job_ids[key],
                                            Outcome(False, exit_code=1, failure_class=failure, detail="x"), 1.0))
        self.attempts[attempt_id]["state"] = "interrupted" if failure is FailureClass.INTERRUPTED else "failed"

    @precondition(lambda self: self.ledger is not None)
    @rule()
    def crash(self):
        """The runner dies (SIGKILL): its connection goes, its children live on."""
        self.run(self.ledger.close())  # every write is its own committed transaction
        self.ledger = None
        self.life += 1

    @precondition(lambda self: self.ledger is None)
    @rule()
    def reconcile_and_restart(self):
        """The next runner: attempts left running become interrupted and their processes die."""
        self.ledger = self.run(Ledger.open(self.path))
        self.run(reconcile(self.ledger, 0.5, {"local": LocalExecutor()}))
        for attempt_id in self.running():
            self.attempts[attempt_id]["state"] = "interrupted"
            process = self.attempts[attempt_id]["process"]
            if process is not None:
                assert not pid_alive(process.pid), "reconcile left a process of a dead runner alive"
                process.wait(timeout=10)
        self.run_id = self.run(self.ledger.begin_run("host", "user", os.getpid(), [], "0", None, []))

    # --- guarantees ---------------------------------------------------------------------------

    def _rows(self, sql: str, params=()) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def _success_fingerprint(self, key: str) -> str | None:
        rows = self._rows("SELECT a.fingerprint FROM attempts a JOIN jobs j USING (job_id) "
                          "WHERE j.key = ? AND a.state = 'succeeded'", (key,))
        return rows[0][0] if rows else None

    def _job_state(self, key: str) -> str | None:
        rows = self._rows("SELECT state FROM jobs WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    @invariant()
    def attempts_match_the_model(self):
        stored = {a: (state, number) for a, state, number in
                  self._rows("SELECT attempt_id, state, number FROM attempts")}
        assert stored == {a: (m["state"], m["number"]) for a, m in self.attempts.items()}

    @invariant()
    def never_two_successes_and_numbers_count_up(self):
        for key in self.jobs:
            rows = self._rows("SELECT a.number, a.state FROM attempts a JOIN jobs j USING (job_id) "
                              "WHERE j.key = ? ORDER BY a.number", (key,))
            assert [n for n, _ in rows] == list(range(1, len(rows) + 1))
            assert sum(state == "succeeded" for _, state in rows) <= 1

    @invariant()
    def a_succeeded_job_has_its_success_and_metrics_belong_to_successes(self):
        for (key,) in self._rows("SELECT key FROM jobs WHERE state = 'succeeded'"):
            assert self._success_fingerprint(key) is not None, key
        assert self._rows("SELECT COUNT(*) FROM metrics m JOIN attempts a USING (attempt_id) "
                          "WHERE a.state NOT IN ('succeeded', 'superseded')") == [(0,)]

    @invariant()
    def once_reconciled_nothing_runs_without_a_live_process_of_this_runner(self):
        if self.ledger is None:
            return
        for attempt_id in self.running():
            model = self.attempts[attempt_id]
            assert model["life"] == self.life, "an attempt of a dead runner is still running"
            if model["process"] is not None:
                assert pid_alive(model["process"].pid)
        for model in self.attempts.values():
            if model["state"] == "interrupted" and model["process"] is not None:
                assert not pid_alive(model["process"].pid)

    @invariant()
    def jobs_state_follows_their_attempts(self):
        for key in self.jobs:
            running = [a for a in self.running() if self.attempts[a]["key"] == key]
            if running and self.ledger is not None:
                assert self._job_state(key) == JobState.RUNNING.value

    def teardown(self):
        for model in self.attempts.values():
            if model["process"] is not None and model["process"].poll() is None:
                model["process"].kill()
                model["process"].wait()
        if self.ledger is not None:
            self.run(self.ledger.close())
        self.loop.close()
        assert self._rows("PRAGMA integrity_check") == [("ok",)]
        shutil.rmtree(self.folder, ignore_errors=True)


LedgerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("LEDGER_MACHINE_EXAMPLES", "25")), stateful_step_count=20,
    deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
test_ledger_state_machine = LedgerMachine.TestCase
