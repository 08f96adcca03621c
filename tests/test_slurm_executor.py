"""The SLURM executor's pieces that need no cluster: the batch script's quoting (run by a real
/bin/sh), SLURM states and exit codes mapped onto ours, and the SLURM settings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_runner, runner_env
from helpers import settings
from runner.config import ConfigError
from runner.executors import Ended
from runner.executors.slurm import ACTIVE, JobStatus, batch_script, ended_from, exit_of_status
from runner.jobs import FailureClass, Job
from runner.retry import NOT_RETRIED
from runner.results import Ending, Facts, judge

ONE = ("--dose", "1000", "--view", "dense", "--split", "train")
JOB = Job("k", ("true",), Path("/tmp"), Path("/tmp/out"), check=None, exit_classes={3: FailureClass.CUDA_OOM})


def test_the_batch_script_hands_every_argv_element_over_unchanged(tmp_path):
    nasty = ["with space", "it's", 'say "hi"', "$(touch pwned)", "`touch pwned`", "$HOME", "*",
             "line\nbreak", "", "-n", "back\\slash", ";", "&& rm -rf x", "é ü"]
    argv = (sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *nasty)
    script = tmp_path / "attempt-1.sbatch"
    script.write_text(batch_script(argv, "token"))
    result = subprocess.run(["/bin/sh", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == nasty
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("raw, exit", [("0", "0:0"), ("768", "3:0"), ("9", "0:9"), ("15", "0:15"),
                                       ("", None), ("N/A", None)])
def test_squeue_wait_status_becomes_slurm_exit_notation(raw, exit):
    assert exit_of_status(raw) == exit


@pytest.mark.parametrize("state, exit, status, failure", [
    ("COMPLETED", "0:0", 0, None),
    ("FAILED", "3:0", 3, None),  # judged by its exit code, like a local exit (3: cuda_oom)
    ("FAILED", "0:9", -9, None),  # killed by a signal
    ("TIMEOUT", "0:15", -15, FailureClass.TIMEOUT),
    ("CANCELLED", "0:15", -15, FailureClass.CANCELLED),
    ("NODE_FAIL", "0:0", 0, FailureClass.NODE_FAIL),
    ("OUT_OF_MEMORY", "0:125", -125, FailureClass.OUT_OF_MEMORY),
    ("PREEMPTED", "0:0", 0, FailureClass.PREEMPTED),
])
def test_slurm_end_states_map_onto_our_failure_classes(state, exit, status, failure):
    """The executor reports SLURM's state as a fact; the judge makes it our failure class."""
    ended = ended_from(JobStatus(state, "node1", exit))
    assert ended.status == status
    outcome = judge(Facts(Ending.EXITED, ended), JOB)
    if failure:
        assert (outcome.failure_class, outcome.signal) == (failure, -status or None)
        assert state in outcome.detail
    else:  # judged as a local exit with the same status
        assert outcome == judge(Facts(Ending.EXITED, Ended(status)), JOB)


def test_pending_and_running_are_not_ends_and_cluster_failures_are_retried_but_a_hand_cancel_is_not():
    assert {"PENDING", "RUNNING", "COMPLETING"} <= ACTIVE
    assert FailureClass.NODE_FAIL not in NOT_RETRIED and FailureClass.PREEMPTED not in NOT_RETRIED
    assert FailureClass.CANCELLED in NOT_RETRIED


def test_slurm_settings_come_from_the_toml_file_and_flags(study, tmp_path):
    config = tmp_path / "cluster.toml"
    config.write_text('study_root = "study"\nbackend = "slurm"\npartition = "gpu"\ntime = "2:00:00"\n'
                      'cpus_per_task = 4\nmem = "16G"\nsbatch_args = ["--qos=high"]\non_interrupt = "leave"\n')
    s, _ = settings({"config": str(config), "account": "proj1"}, cwd=tmp_path)
    assert (s.backend, s.partition, s.time, s.account, s.cpus_per_task, s.mem, s.sbatch_args, s.on_interrupt) == \
        ("slurm", "gpu", "2:00:00", "proj1", 4, "16G", ("--qos=high",), "leave")


@pytest.mark.parametrize("flags, message", [
    ({"backend": "pbs"}, "--backend 'pbs' is not one of local, slurm"),
    ({"partition": "gpu"}, "--partition applies to --backend slurm only"),
    ({"backend": "slurm", "timeout": 60}, "give SLURM's limit with --time"),
    ({"backend": "slurm", "sbatch_args": ["--output=x"]}, "the runner sets --output itself"),
    ({"backend": "slurm", "on_interrupt": "ignore"}, "--on-interrupt 'ignore' is not one of cancel, leave"),
    ({"backend": "slurm", "cpus_per_task": 0}, "--cpus-per-task must be an integer >= 1"),
    ({"backend": "slurm", "time": "1 day"}, "--time must be one word"),
])
def test_bad_slurm_settings_are_named(study, flags, message):
    with pytest.raises(ConfigError, match=message):
        settings({"study_root": str(study), **flags})


def test_backend_slurm_without_sbatch_is_one_line_error(study, tmp_path):
    (tmp_path / "empty").mkdir()
    env = runner_env()
    env["PATH"] = str(tmp_path / "empty")
    result = run_runner(study, *ONE, "--backend", "slurm", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == ("runner: error: --backend slurm: sbatch is not on PATH; "
                                     "run on a host that submits to the cluster")
    assert not (study / "analysis/ledger.db").exists()
