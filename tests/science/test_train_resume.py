"""scripts/train_model.py stopped half-way (a signal, a kill) and run again: it resumes from
training_state.pt to bitwise the weights and log of a training never stopped; with other inputs or
a damaged state it starts afresh, in one line. Real subprocesses on the tiny preset, one thread."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ptychokit.npz_io import write_ptycho_npz
from ptychokit.resume import TrainingSession, TrainingStopped

REPO = Path(__file__).resolve().parents[2]
STEPS = 60  # over a second of training: time to stop it half-way


def command(train: Path, folder: Path, gridsize: int, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "scripts/train_model.py"), "--train_data_file", str(train),
            "--output_dir", str(folder), "--gridsize", str(gridsize), "--preset", "tiny", "--n_groups", "120",
            "--steps", str(STEPS), "--device", "cpu", *extra]


def environment(token: str | None) -> dict[str, str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    env.pop("RUNNER_ATTEMPT_TOKEN", None)
    return env if token is None else {**env, "RUNNER_ATTEMPT_TOKEN": token}


def run(argv: list[str], token: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, env=environment(token), capture_output=True, text=True, timeout=300)


def interrupt(argv: list[str], ready, signum: int, token: str | None = None) -> subprocess.CompletedProcess:
    """Start the command, poll until `ready()` holds, then send `signum`; its completed process."""
    process = subprocess.Popen(argv, cwd=REPO, env=environment(token), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, f"it ended before it could be stopped: {process.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def log_rows(folder: Path, without: str = "seconds") -> list[dict[str, str]]:
    with open(folder / "training_log.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != without} for row in csv.DictReader(handle)]


def has_log_rows(folder: Path, rows: int):
    def ready() -> bool:
        path = folder / "training_log.csv"
        return path.exists() and path.read_text().count("\n") > rows
    return ready


def progress(folder: Path) -> dict:
    return json.loads((folder / "training_progress.json").read_text())


def assert_same_training(folder: Path, reference: Path) -> None:
    """Bitwise the same weights, and the same log but for its seconds."""
    ours = torch.load(folder / "model.pt", weights_only=True)["weights"]
    theirs = torch.load(reference / "model.pt", weights_only=True)["weights"]
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs), "the weights differ"
    assert log_rows(folder) == log_rows(reference)
    assert len(log_rows(folder)) == 20 and log_rows(folder)[-1]["step"] == str(STEPS)


@pytest.fixture(scope="module")
def train_npz(tiny_train, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "train.npz"
    write_ptycho_npz(path, replace(tiny_train, metadata={"dose": 100000}).subset(np.arange(60)))
    return path


@pytest.fixture(scope="module")
def reference(train_npz, tmp_path_factory):
    """The folder of the training never stopped, per gridsize (trained on first use)."""
    folders: dict[int, Path] = {}

    def of(gridsize: int) -> Path:
        if gridsize not in folders:
            folder = tmp_path_factory.mktemp(f"reference{gridsize}") / "m"
            done = run(command(train_npz, folder, gridsize))
            assert done.returncode == 0, done.stderr
            assert not (folder / "training_state.pt").exists()
            folders[gridsize] = folder
        return folders[gridsize]
    return of


@pytest.fixture(scope="module")
def stopped(train_npz, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A PINN training SIGTERMed once its log has two rows: its folder (copy it before use) and run."""
    folder = tmp_path_factory.mktemp("stopped") / "m"
    done = interrupt(command(train_npz, folder, 2), has_log_rows(folder, 2), signal.SIGTERM, token="attempt-1")
    return folder, done


def test_a_sigtermed_training_saves_its_state_and_resumes_to_the_same_weights(stopped, reference, train_npz,
                                                                              tmp_path):
    first, done = stopped
    assert done.returncode == 143, done.stderr
    saved = torch.load(first / "training_state.pt", weights_only=True)
    step = saved["step"]
    assert 0 < step < STEPS
    assert done.stderr.strip().splitlines() == [
        f"train_model: stopped by SIGTERM at step {step} of {STEPS}; saved {first}/training_state.pt; "
        "run the same command to continue"]
    assert not (first / "model.pt").exists() and not (first / "model.json").exists()
    assert progress(first) == {"token": "attempt-1", "start_step": 0, "step": step, "planned_steps": STEPS,
                               "complete": False}
    # The log was written as the training went: its rows up to the stop, as the reference has them.
    rows = log_rows(reference(2))
    assert log_rows(first) == [row for row in rows if int(row["step"]) <= step] and len(log_rows(first)) >= 2

    # Moved: the folder and the training data elsewhere (the state knows the data by content).
    folder, data = tmp_path / "moved", tmp_path / "train.npz"
    shutil.copytree(first, folder)
    shutil.copy(train_npz, data)
    again = run(command(data, folder, 2), token="attempt-2")
    assert again.returncode == 0, again.stderr
    assert f"[E] resuming from {folder}/training_state.pt at step {step} of {STEPS}\n" in again.stdout
    assert "starting afresh" not in again.stdout
    assert_same_training(folder, reference(2))
    assert not (folder / "training_state.pt").exists()
    assert progress(folder) == {"token": "attempt-2", "start_step": step, "step": STEPS, "planned_steps": STEPS,
                                "complete": True}
    assert float(log_rows(folder, without="")[-1]["seconds"]) >= saved["seconds"]  # its seconds go on


def test_a_killed_training_resumes_from_its_last_saved_state(train_npz, reference, tmp_path):
    folder = tmp_path / "m"

    def saved_a_step() -> bool:
        return (folder / "training_progress.json").exists() and progress(folder)["step"] > 0

    done = interrupt(command(train_npz, folder, 2, "--checkpoint_every", "0.05"), saved_a_step, signal.SIGKILL)
    assert done.returncode == -signal.SIGKILL
    assert not (folder / "model.pt").exists()
    step = torch.load(folder / "training_state.pt", weights_only=True)["step"]  # whole, whenever it was killed
    assert 0 < step < STEPS and progress(folder)["step"] <= step
    (folder / ".training_state.pt.tmp-999999").write_bytes(b"half a save")  # as a kill during a save leaves

    again = run(command(train_npz, folder, 2))  # without --checkpoint_every: not part of the fingerprint
    assert again.returncode == 0, again.stderr
    assert f"[E] resuming from {folder}/training_state.pt at step {step} of {STEPS}\n" in again.stdout
    assert_same_training(folder, reference(2))
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.pt", "training_log.csv",
                                                        "training_progress.json"]


def test_other_inputs_start_afresh_and_say_what_changed(stopped, tiny_train, tmp_path):
    folder, data = tmp_path / "m", tmp_path / "train.npz"
    shutil.copytree(stopped[0], folder)
    write_ptycho_npz(data, replace(tiny_train, metadata={"dose": 100000}).subset(np.arange(1, 61)))  # one other
    done = run([*command(data, folder, 2), "--steps", "20", "--seed", "7"])
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "training_state.pt" in line]
    assert lines == [f"[E] starting afresh: {folder}/training_state.pt was made with other inputs "
                     "(changed: steps, seed, log_every, training data)"]
    assert not (folder / "training_state.pt").exists()
    assert [row["step"] for row in log_rows(folder)] == [str(step) for step in range(1, 21)]
    assert progress(folder)["start_step"] == 0 and progress(folder)["complete"]


def test_a_damaged_state_starts_afresh_in_one_line(stopped, train_npz, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(stopped[0], folder)
    state = folder / "training_state.pt"
    state.write_bytes(state.read_bytes()[:state.stat().st_size // 2])  # torn
    done = run([*command(train_npz, folder, 2), "--steps", "20"])
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stdout.splitlines() if "training_state.pt" in line]
    assert len(lines) == 1 and lines[0].startswith(f"[E] starting afresh: {state} is unreadable ("), lines
    assert log_rows(folder)[0]["step"] == "1" and (folder / "model.pt").exists() and not state.exists()


def test_the_baseline_with_dropout_resumes_bitwise_after_sigusr1(train_npz, reference, tmp_path):
    folder = tmp_path / "m"
    done = interrupt(command(train_npz, folder, 1), has_log_rows(folder, 3), signal.SIGUSR1)
    assert done.returncode == 138 and "stopped by SIGUSR1 at step" in done.stderr, done.stderr
    again = run(command(train_npz, folder, 1))
    assert again.returncode == 0, again.stderr
    assert "[E] resuming from" in again.stdout
    assert_same_training(folder, reference(1))


def test_a_stop_during_set_up_leaves_the_folder_as_it_was(tmp_path):
    session = TrainingSession(tmp_path / "m", {}, 100, ["step"], stop=lambda: signal.SIGINT)
    with pytest.raises(TrainingStopped) as stopped:
        session.start(fit=None)
    assert stopped.value.signum == signal.SIGINT and "before the first step; nothing new to save" in str(stopped.value)
    assert not (tmp_path / "m").exists()


def test_a_stop_signal_after_the_model_is_saved_never_kills_the_finished_training(tiny_train, tmp_path):
    """SLURM's warning (SIGUSR1) may land as the training exits, and Python puts back the default
    action (death) while it shuts down: SIGUSR1 every 5 ms from the moment the model is saved
    until the process has gone, and the training still ends with exit 0."""
    train = tmp_path / "train.npz"
    write_ptycho_npz(train, tiny_train)
    folder = tmp_path / "model"
    process = subprocess.Popen(command(train, folder, 2, "--quiet"), cwd=REPO, env=environment(None),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (folder / "model.json").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    while process.poll() is None:
        try:
            process.send_signal(signal.SIGUSR1)
        except ProcessLookupError:
            break
        time.sleep(0.005)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, (process.returncode, err)
