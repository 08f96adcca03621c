"""Resumable Phase E training: a stopped training carries on from its saved state, to bitwise the
weights of one never stopped (same seed, device and thread count).

While a training runs, its checkpoint folder (ptychokit.checkpoint) also holds:
  training_state.pt       torch.save of a dict; loads with torch.load(weights_only=True). The
                          model's, optimizer's and schedule's states; the step reached; every random
                          generator that decides what follows: the shuffler's state when the current
                          epoch began and the batches of it done, the global CPU generator (dropout),
                          CUDA's when in use; the log rows so far and the losses of the unfinished
                          row; the early-stopping count; the seconds trained; and the fingerprint of
                          what determines the training. Saved every `checkpoint_every` seconds and
                          when a stop signal comes; deleted once the model is saved.
  training_progress.json  for the job runner: {"token": $RUNNER_ATTEMPT_TOKEN or null,
                          "start_step": the step this run started from, "step": the step whose work
                          is on disk (in training_state.pt, or the final model), "planned_steps",
                          "complete": true once the model is saved}. Written at the start, at each
                          save of the state and at the end; kept.
Both are written atomically. A state made with other inputs (another fingerprint) or one that cannot
be read is dropped for a fresh training, with one line saying why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, TextIO

import torch

from ptychokit.atomic_write import write_atomically
from ptychokit.checkpoint import CONFIG_FILE, LOG_FILE, WEIGHTS_FILE, log_text
from ptychokit.networks import Architecture
from ptychokit.training import Fit, TrainingSettings

log = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
PROGRESS_FILE = "training_progress.json"
STATE_FORMAT = "ptychokit-training-state/1"
TOKEN_VARIABLE = "RUNNER_ATTEMPT_TOKEN"  # the runner's name for this attempt, echoed in the progress file
# What a state must hold, and of which type, before anything is restored from it.
STATE_FIELDS = {"fingerprint": dict, "step": int, "model": dict, "optimizer": dict, "schedule": dict,
                "epoch_start": torch.Tensor, "epoch_batches": int, "torch_rng": torch.Tensor, "log": list,
                "losses": list, "excesses": list, "best": float, "stale": int, "seconds": float}


class StateError(Exception):
    """training_state.pt cannot be used: the rest of a line naming the file."""


class TrainingStopped(Exception):
    """A stop signal ended the training between two steps (`saved`: the state to continue from)."""

    def __init__(self, signum: int, step: int | None, steps: int, saved: Path | None) -> None:
        name = signal.Signals(signum).name
        if saved is None:
            message = (f"stopped by {name} before the first step; nothing new to save; "
                       "run the same command to continue")
        else:
            message = (f"stopped by {name} at step {step} of {steps}; saved {saved}; "
                       "run the same command to continue")
        super().__init__(message)
        self.signum = signum


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fingerprint(train_file: Path, gridsize: int, preset: str, settings: TrainingSettings, arch: Architecture,
                neighbours: int) -> dict[str, Any]:
    """What determines a training, under the names a changed one is reported by. The training
    data by its content, not its path: a moved or copied study folder still resumes."""
    return {**asdict(settings), "gridsize": gridsize, "preset": preset, "architecture": arch.to_dict(),
            "neighbours": neighbours, "training data": file_digest(train_file)}


def changed(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    missing = object()
    return [key for key in current | saved if saved.get(key, missing) != current.get(key, missing)]


def state_of(fit: Fit, fingerprint: dict[str, Any]) -> dict[str, Any]:
    state = {"format": STATE_FORMAT, "fingerprint": fingerprint, "step": fit.step,
             "model": fit.model.state_dict(), "optimizer": fit.optimizer.state_dict(),
             "schedule": fit.schedule.state_dict(), "epoch_start": fit.epoch_start,
             "epoch_batches": fit.epoch_batches, "torch_rng": torch.get_rng_state(), "log": fit.log,
             "losses": fit.losses, "excesses": fit.excesses, "best": fit.best, "stale": fit.stale,
             "seconds": fit.seconds()}
    if _on_cuda(fit):
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    write_atomically(path, lambda handle: torch.save(state, handle))


def read_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file fails in many ways, all of them "unreadable"
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:160]  # torch's are paragraphs
        raise StateError(f"is unreadable ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise StateError(f"is not a training state of format {STATE_FORMAT}")
    for key, kind in STATE_FIELDS.items():
        if not isinstance(state.get(key), kind):
            raise StateError(f"is damaged: its {key!r} is missing or not a {kind.__name__}")
    return state


def restore(fit: Fit, state: dict[str, Any]) -> None:
    """Put a read state into a fresh `fit`. Everything that can fail is checked before anything
    changes: a refused state leaves `fit` fresh."""
    own = fit.model.state_dict()
    theirs = state["model"]
    if set(own) != set(theirs) or any(not isinstance(theirs[k], torch.Tensor) or theirs[k].shape != v.shape
                                      for k, v in own.items()):
        raise StateError("is damaged: its weights are not of this network")
    for key, fresh in (("torch_rng", torch.get_rng_state()), ("epoch_start", fit.shuffler.get_state())):
        if state[key].dtype != fresh.dtype or state[key].shape != fresh.shape:
            raise StateError(f"is damaged: its {key!r} is not a generator state")
    try:
        fit.optimizer.load_state_dict(state["optimizer"])  # checks the state fits before taking it
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise StateError(f"is damaged: its optimizer state does not fit ({exc})") from None
    fit.model.load_state_dict(state["model"])
    fit.schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    if _on_cuda(fit) and len(state.get("cuda_rng", ())) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    fit.step, fit.epoch_start, fit.epoch_batches = state["step"], state["epoch_start"], state["epoch_batches"]
    fit.log, fit.losses, fit.excesses = state["log"], state["losses"], state["excesses"]
    fit.best, fit.stale = state["best"], state["stale"]
    fit.clock = time.perf_counter() - state["seconds"]


def _on_cuda(fit: Fit) -> bool:
    return next(fit.model.parameters()).is_cuda


class TrainingSession:
    """The files of one training in its folder, as `ptychokit.training.FitHooks`: it resumes a
    saved state or starts afresh, appends the log as it grows, saves the state every
    `checkpoint_every` seconds (0: only when stopped) and, when `stop` names a signal, saves it and
    raises TrainingStopped. A context manager: leaving it closes the log; `finish` once the model
    is saved."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any], planned_steps: int, columns: list[str],
                 checkpoint_every: float = 180.0, stop: Callable[[], int | None] = lambda: None) -> None:
        self.folder, self.fingerprint, self.planned_steps, self.columns = folder, fingerprint, planned_steps, columns
        self.checkpoint_every, self.stop = checkpoint_every, stop
        self.state_path = folder / STATE_FILE
        self.start_step = 0
        self._log: TextIO | None = None
        self._saved_at = time.monotonic()

    def __enter__(self) -> TrainingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def start(self, fit: Fit) -> None:
        signum = self.stop()
        if signum:  # stopped while setting up: the folder is left as it was
            raise TrainingStopped(signum, None, self.planned_steps, None)
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in (STATE_FILE, PROGRESS_FILE, WEIGHTS_FILE, CONFIG_FILE, LOG_FILE):
            for temporary in self.folder.glob(f".{name}.tmp-*"):  # of a save that was killed
                temporary.unlink(missing_ok=True)
        if self.state_path.exists():
            self._resume(fit)
        self.start_step = fit.step
        # The log of the state's rows: rows a killed run wrote after its last save are dropped.
        self._log = open(self.folder / LOG_FILE, "w", newline="", encoding="utf-8")
        self._log.write(log_text(self.columns, fit.log, header=True))
        self._log.flush()
        self._progress(fit.step)
        self._saved_at = time.monotonic()

    def _resume(self, fit: Fit) -> None:
        try:
            state = read_state(self.state_path)
            differs = changed(state["fingerprint"], self.fingerprint)
            if not differs:
                restore(fit, state)
                log.warning("[E] resuming from %s at step %d of %d", self.state_path, fit.step, self.planned_steps)
                return
            problem = f"was made with other inputs (changed: {', '.join(differs)})"
        except StateError as exc:
            problem = str(exc)
        log.warning("[E] starting afresh: %s %s", self.state_path, problem)
        self.state_path.unlink()

    def logged(self, row: dict[str, float]) -> None:
        self._log.write(log_text(self.columns, [row]))
        self._log.flush()

    def stepped(self, fit: Fit) -> None:
        signum = self.stop()
        if signum or (self.checkpoint_every and time.monotonic() - self._saved_at >= self.checkpoint_every):
            self.save(fit)
        if signum:
            raise TrainingStopped(signum, fit.step, self.planned_steps, self.state_path)

    def save(self, fit: Fit) -> None:
        save_state(self.state_path, state_of(fit, self.fingerprint))
        self._progress(fit.step)
        self._saved_at = time.monotonic()

    def finish(self, step: int) -> None:
        """The model is saved: the state has served."""
        self.state_path.unlink(missing_ok=True)
        self._progress(step, complete=True)

    def _progress(self, step: int, complete: bool = False) -> None:
        record = {"token": os.environ.get(TOKEN_VARIABLE), "start_step": self.start_step, "step": step,
                  "planned_steps": self.planned_steps, "complete": complete}
        write_atomically(self.folder / PROGRESS_FILE, (json.dumps(record) + "\n").encode("utf-8"))
