"""The SLURM executor's pieces that need no cluster: the batch script's quoting (run by a real
/bin/sh), the study root's path on the nodes (a fake sbatch on PATH), SLURM states and exit codes
mapped onto ours, and the SLURM settings."""

import asyncio
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_runner, runner_env
from helpers import settings
from runner.config import ConfigError
from runner.executors import Ended, LaunchSpec
from runner.executors.slurm import (ACTIVE, JobStatus, SlurmExecutor, SlurmOptions, batch_script, ended_from,
                                    exit_of_status, to_node)
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


HOME_ROOT = ("/home/u/study", "/scratch/u/study")


@pytest.mark.parametrize("text, expected", [
    ("/home/u/study", "/scratch/u/study"),
    ("/home/u/study/", "/scratch/u/study/"),
    ("/home/u/study/analysis/dose_1000/x.npz", "/scratch/u/study/analysis/dose_1000/x.npz"),
    ("/home/u/study2", "/home/u/study2"),  # a sibling sharing the prefix is not under the root
    ("/home/u/study2/a", "/home/u/study2/a"),
    ("/home/u/studyx/a", "/home/u/studyx/a"),
    ("/home/u", "/home/u"),
    ("/usr/bin/python3", "/usr/bin/python3"),  # outside the study: as it is
    ("home/u/study/a", "home/u/study/a"),  # relative: not the root
    ("x/home/u/study/a", "x/home/u/study/a"),
    ("--x=/home/u/study/a", "--x=/scratch/u/study/a"),
    ("--x=/home/u/study", "--x=/scratch/u/study"),
    ("--x=/home/u/study2/a", "--x=/home/u/study2/a"),
    ("--x=/usr/lib", "--x=/usr/lib"),
    ("--x=y=/home/u/study/a", "--x=y=/home/u/study/a"),  # only right after the first '='
    ("/home/u/study/a=b", "/scratch/u/study/a=b"),  # a path holding '=' is whole first
    ("--dose", "--dose"),
    ("", ""),
])
def test_to_node_moves_paths_under_the_study_root_only_at_a_path_boundary(text, expected):
    assert to_node(text, HOME_ROOT) == expected
    assert to_node(text, None) == text


def test_to_node_with_a_root_written_with_a_trailing_slash_or_the_filesystem_root():
    assert to_node("/home/u/study/a", ("/home/u/study/", "/scratch/u/study/")) == "/scratch/u/study/a"
    assert to_node("/home/u/study2", ("/home/u/study/", "/scratch/u/study")) == "/home/u/study2"
    assert to_node("/a/b", ("/", "/mnt")) == "/mnt/a/b"
    assert to_node("/", ("/", "/mnt")) == "/mnt"


def fake_sbatch(tmp_path: Path) -> tuple[dict, Path]:
    """An environment whose PATH finds an sbatch that records its argv and answers a job id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "sbatch_argv.json"
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      "open(os.environ['FAKE_SBATCH_RECORD'], 'w').write(json.dumps(sys.argv[1:]))\n"
                      "print('4242;runnertest')\n")
    sbatch.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FAKE_SBATCH_RECORD": str(record)}
    return env, record


def launch(tmp_path: Path, options: SlurmOptions, argv: tuple[str, ...], cwd: Path, logs: Path,
           resumable: bool = False):
    env, record = fake_sbatch(tmp_path)
    spec = LaunchSpec(argv, cwd, env, logs / "attempt-1.stdout.log", logs / "attempt-1.stderr.log", "tok123",
                      resumable=resumable)
    handle = asyncio.run(SlurmExecutor(options).launch(spec))
    return handle, json.loads(record.read_text()), logs / "attempt-1.sbatch"


def test_launch_hands_slurm_the_nodes_paths_and_keeps_the_host_script_path(tmp_path):
    host = tmp_path / "study"
    node = tmp_path / "node_mount"  # the nodes' mount of the study: here a link to it
    node.symlink_to(host, target_is_directory=True)
    work, logs = host / "analysis/dose_1000/dense/train", host / "analysis/logs/dose_1000/dense/train"
    work.mkdir(parents=True)
    sibling = f"{host}2/x"  # shares the root's prefix, not under it
    argv = (sys.executable, "-c", "import pathlib, sys; [pathlib.Path(a).write_text(a) for a in sys.argv[1:3]]",
            str(work / "out.txt"), f"{work}/eq.txt", f"--out={work}/metrics.csv", sibling, "--dose", "1000")
    handle, sbatch_argv, script = launch(tmp_path, SlurmOptions(node_paths=(str(host), str(node))), argv, work, logs)
    assert handle.job_id == "4242"
    node_work, node_logs = node / "analysis/dose_1000/dense/train", node / "analysis/logs/dose_1000/dense/train"
    assert f"--chdir={node_work}" in sbatch_argv
    assert f"--output={node_logs}/attempt-1.stdout.log" in sbatch_argv
    assert f"--error={node_logs}/attempt-1.stderr.log" in sbatch_argv
    assert "--job-name=runner-tok123" in sbatch_argv  # what find/recover look the job up by
    assert sbatch_argv[-1] == str(script)  # sbatch reads the script here, at the host's path
    assert script.is_file() and (logs / "attempt-1.stdout.log").is_file()  # written at the host's paths
    exec_line = script.read_text().splitlines()[-1]
    assert exec_line == "exec " + shlex.join((sys.executable, *argv[1:3], str(node_work / "out.txt"),
                                              f"{node_work}/eq.txt", f"--out={node_work}/metrics.csv",
                                              sibling, "--dose", "1000"))
    assert str(host) + "/" not in exec_line  # only the nodes' paths of the study
    # Run on a "node" (here, through the link), the job writes its outputs into the study.
    result = subprocess.run(["/bin/sh", str(script)], cwd=node_work, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (work / "out.txt").read_text() == str(node_work / "out.txt")


def test_launch_without_node_paths_hands_slurm_the_host_paths(tmp_path):
    work = tmp_path / "study/work"
    work.mkdir(parents=True)
    argv = ("/bin/true", str(work / "out"), f"--x={work}/y")
    _, sbatch_argv, script = launch(tmp_path, SlurmOptions(), argv, work, tmp_path / "study/logs")
    assert f"--chdir={work}" in sbatch_argv and sbatch_argv[-1] == str(script)
    assert f"--output={tmp_path}/study/logs/attempt-1.stdout.log" in sbatch_argv
    assert script.read_text().splitlines()[-1] == "exec " + shlex.join(argv)


def test_a_resumable_job_asks_for_the_warning_signal_before_its_time_limit(tmp_path):
    work = tmp_path / "study/work"
    work.mkdir(parents=True)
    options = SlurmOptions(time="30", signal_before=90)
    _, resumable, _ = launch(tmp_path, options, ("/bin/true",), work, tmp_path / "study/logs1", resumable=True)
    assert "--signal=B:USR1@90" in resumable and "--time=30" in resumable
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    _, plain, _ = launch(tmp_path / "b", options, ("/bin/true",), work, tmp_path / "study/logs2")
    assert not any(arg.startswith("--signal") for arg in plain)  # SIGUSR1 would kill a command that keeps nothing
    _, off, _ = launch(tmp_path / "c", SlurmOptions(signal_before=0), ("/bin/true",), work, tmp_path / "study/logs3",
                       resumable=True)
    assert not any(arg.startswith("--signal") for arg in off)


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
    ({"backend": "slurm", "signal_before": -5}, "--signal-before must be an integer >= 0"),
    ({"signal_before": 60}, "--signal-before applies to --backend slurm only"),
    ({"backend": "slurm", "sbatch_args": ["--signal=B:USR1@60"]}, "the runner sets --signal itself"),
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
