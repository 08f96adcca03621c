"""Checkpoint folders of Phase E: weights, architecture, preprocessing and the training log.

A finished folder holds three files:
  model.pt           torch.save({"weights": state_dict, "probe": complex tensor}); loads with
                     torch.load(weights_only=True), nothing is unpickled
  model.json         format, kind (baseline|pinn), architecture, preprocessing, provenance
  training_log.csv   the training curve: step, epoch (passes over the data), loss, for the PINN
                     nll_excess (its NLL above the measured counts' own), learning_rate, seconds;
                     written as the training goes (a row appended and flushed per log row)
and, from ptychokit.resume, training_progress.json (the job runner's record of the steps done).
While a training is unfinished it also holds training_state.pt; model.pt and model.json are written
only by the final `save_model` (a rerun's unfinished folder may still hold an earlier training's).
Every file but the growing log is written atomically (`write_atomically`).
`load_model` rebuilds the network from model.json and loads model.pt into it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ptychokit.atomic_write import write_atomically
from ptychokit.networks import Architecture, PatchNet

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model.json"
LOG_FILE = "training_log.csv"
FORMAT = "ptychokit-checkpoint/1"
LOG_COLUMNS = ("step", "epoch", "loss", "nll_excess", "learning_rate", "seconds")


def log_columns(pinn: bool) -> list[str]:
    """The training log's header: the PINN's rows also carry the NLL excess."""
    return [c for c in LOG_COLUMNS if pinn or c != "nll_excess"]


def log_text(columns: list[str], rows: Iterable[dict[str, float]], header: bool = False) -> str:
    """Rows of training_log.csv (and its header), as `save_model` and a training's live log write them."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its model, besides the weights."""

    kind: str  # "baseline" (gridsize 1, supervised) or "pinn" (gridsize 2, Poisson likelihood)
    architecture: Architecture
    preprocessing: dict[str, Any]  # input_scale, gridsize, and for gridsize 2 the grouping rule
    probe: np.ndarray | None  # the probe the model was trained with (gridsize 2 merges with it)
    provenance: dict[str, Any]  # dose, view, training sizes, seeds, final loss

    @property
    def gridsize(self) -> int:
        return int(self.preprocessing["gridsize"])


def save_model(folder: Path, model: PatchNet, kind: str, preprocessing: dict[str, Any],
               probe: np.ndarray | None, provenance: dict[str, Any],
               log: list[dict[str, float]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"weights": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if probe is not None:
        payload["probe"] = torch.from_numpy(np.asarray(probe, dtype=np.complex64))
    write_atomically(folder / WEIGHTS_FILE, lambda handle: torch.save(payload, handle))
    config = {"format": FORMAT, "kind": kind, "architecture": model.arch.to_dict(),
              "preprocessing": preprocessing, "provenance": provenance,
              "files": {"weights": WEIGHTS_FILE, "training_log": LOG_FILE}}
    write_atomically(folder / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode("utf-8"))
    columns = [c for c in LOG_COLUMNS if any(c in row for row in log)]
    write_atomically(folder / LOG_FILE, log_text(columns, log, header=True).encode("utf-8"))


def load_model(folder: str | Path, device: str = "cpu") -> tuple[PatchNet, CheckpointInfo]:
    """The network of a checkpoint folder, in eval mode on `device`, and what it needs for inference."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE}: unknown checkpoint format {config.get('format')!r}")
    arch = Architecture(**config["architecture"])
    payload = torch.load(folder / WEIGHTS_FILE, map_location=device, weights_only=True)
    model = PatchNet(arch).to(device)
    model.load_state_dict(payload["weights"])
    model.eval()
    probe = payload["probe"].cpu().numpy() if "probe" in payload else None
    info = CheckpointInfo(kind=config["kind"], architecture=arch,
                          preprocessing=config["preprocessing"], probe=probe,
                          provenance=config.get("provenance", {}))
    return model, info
