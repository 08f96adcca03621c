"""Every path, file name and job key of a ptychography study, written once (STUDY.md §3):

    phase_c/dose_D/patched_{split}.npz                    simulated data (Phase C)
    phase_d/dose_D/{view}/{view}_{split}.npz              overlap views (Phase D; or {split}.npz)
    phase_e/dose_D/baseline/gs1, phase_e/dose_D/{view}/gs2   the models (Phase E)
    phase_f/dose_D/{view}/{split}/ptychi_reconstruction.npz  Pty-Chi reconstructions (Phase F)
    phase_f/dose_D_{view}_{split}/manifest.json           a legacy per-split Phase F manifest
    phase_f/reconstruction_manifest.json                  Phase F's manifest
    analysis/dose_D/{view}/{split}/                       a comparison's outputs (Phase G)
    analysis/phase_e/..., analysis/phase_f/...            the logs of trainings and reconstructions

Paths are built as plain strings: a plan of 10,000 jobs builds 100,000 of them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

VIEWS = ("dense", "sparse")
SPLITS = ("train", "test")
BASELINE = "baseline"  # the model of a training that is not a view's PINN
PHASE_FOLDERS = ("phase_c", "phase_d", "phase_e", "phase_f")
ARTIFACTS = "analysis"  # a study's Phase G artifact root, PtychoPINN's `<hub>/analysis`

MODEL_FILES = ("model.pt", "model.json")  # what scripts/train_model.py writes, its summary last
RECONSTRUCTION_FILE = "ptychi_reconstruction.npz"
RECONSTRUCTION_MANIFEST = "reconstruction_manifest.json"
METRICS_FILE = "comparison_metrics.csv"
FLOOR_FILE = "floor_metrics.csv"  # the compare script's trivial floor, beside its metrics
ALIGNED_FILE = "reconstructions_aligned.npz"  # the montage's images
# The Phase G files in the artifact root that PtychoPINN's tools read (STUDY.md §7).
COMPARISON_MANIFEST = "comparison_manifest.json"
COMPARISON_SUMMARY = "comparison_summary.txt"
METRICS_SUMMARY = "metrics_summary.json"
DELTA_SUMMARY = "metrics_delta_summary.json"
HIGHLIGHTS = "metrics_delta_highlights.txt"
HIGHLIGHTS_PREVIEW = "metrics_delta_highlights_preview.txt"
# The report's files, in its folder (`runner report --out`, default report/ beside the ledger).
REPORT_SUMMARY = METRICS_SUMMARY  # PtychoPINN's fields first, then the report's own
REPORT_DELTAS = "deltas.txt"
STUDY_TABLE = "study_table.csv"
PHASE_SUMMARY = "phase_summary.json"
REPORT_PAGE = "report.html"
PLOTS = "plots"

DOSE_DIR = re.compile(r"^dose_(\d+)$")


def training_key(dose: int, model: str) -> str:
    return f"E/dose_{dose}/{model}"


def reconstruction_key(dose: int, view: str, split: str) -> str:
    return f"F/dose_{dose}/{view}/{split}"


def comparison_key(dose: int, view: str, split: str) -> str:
    return f"dose_{dose}/{view}/{split}"


@dataclass(frozen=True)
class Layout:
    """The folders of one study; each path of it comes from a method here."""

    phase_c: Path
    phase_d: Path | None  # optional: Phase D metadata and view files
    phase_e: Path
    phase_f: Path
    artifacts: Path  # Phase G's artifact root: comparisons, logs, the run's files, the ledger

    @classmethod
    def of_study(cls, root: Path) -> Layout:
        return cls(root / "phase_c", root / "phase_d", root / "phase_e", root / "phase_f", root / ARTIFACTS)

    # The ledger keeps these with each run, so that `report` finds the study from the ledger alone.
    def to_json(self) -> dict[str, str | None]:
        return {"phase_c_root": str(self.phase_c), "phase_d_root": self.phase_d and str(self.phase_d),
                "phase_e_root": str(self.phase_e), "phase_f_root": str(self.phase_f),
                "artifact_root": str(self.artifacts)}

    @classmethod
    def from_json(cls, data: dict) -> Layout:
        return cls(Path(data["phase_c_root"]), Path(data["phase_d_root"]) if data.get("phase_d_root") else None,
                   Path(data["phase_e_root"]), Path(data["phase_f_root"]), Path(data["artifact_root"]))

    @property
    def hub(self) -> Path:
        """What PtychoPINN's tools call the hub: the artifact root's parent."""
        return self.artifacts.parent

    @property
    def study_root(self) -> Path:
        """The folder holding phase_e (the training-curve script walks it)."""
        return self.phase_e.parent

    # --- Phase C, D: the data ------------------------------------------------------------------
    def doses(self) -> list[int]:
        """The dose of every dose_<int> folder of Phase C, in the order the folder lists them."""
        return [int(m.group(1)) for p in self.phase_c.iterdir() if p.is_dir() and (m := DOSE_DIR.match(p.name))]

    def patched(self, dose: int, split: str) -> str:
        return f"{self.phase_c}/dose_{dose}/patched_{split}.npz"

    def view_file(self, dose: int, view: str, split: str) -> str | None:
        """The condition's Phase D view file: {view}_{split}.npz, or {split}.npz as some Phase D
        versions name it; None when there is neither."""
        if self.phase_d is None:
            return None
        folder = f"{self.phase_d}/dose_{dose}/{view}"
        for candidate in (f"{folder}/{view}_{split}.npz", f"{folder}/{split}.npz"):
            if os.path.isfile(candidate):
                return candidate
        return None

    def view_file_or_expected(self, dose: int, view: str, split: str) -> str:
        """The view file, or the path it should have (named in a blocked reason)."""
        return self.view_file(dose, view, split) \
            or f"{self.phase_d or '<no --phase-d-root>'}/dose_{dose}/{view}/{view}_{split}.npz"

    # --- Phase E: the models -------------------------------------------------------------------
    def model_dir(self, dose: int, model: str) -> str:
        return f"{self.phase_e}/dose_{dose}/{model}/" + ("gs1" if model == BASELINE else "gs2")

    def training_logs(self, dose: int, model: str) -> Path:
        return self.artifacts / "phase_e" / f"dose_{dose}" / model

    # --- Phase F: the reconstructions ----------------------------------------------------------
    def reconstruction(self, dose: int, view: str, split: str) -> str:
        return f"{self.phase_f}/dose_{dose}/{view}/{split}/{RECONSTRUCTION_FILE}"

    def legacy_manifest(self, dose: int, view: str, split: str) -> str:
        return f"{self.phase_f}/dose_{dose}_{view}_{split}/manifest.json"

    def reconstruction_logs(self, dose: int, view: str, split: str) -> Path:
        return self.artifacts / "phase_f" / f"dose_{dose}" / view / split

    @property
    def reconstruction_manifest(self) -> Path:
        return self.phase_f / RECONSTRUCTION_MANIFEST

    # --- Phase G: the comparisons --------------------------------------------------------------
    def comparison_dir(self, dose: int, view: str, split: str) -> str:
        return f"{self.artifacts}/dose_{dose}/{view}/{split}"

    def artifact(self, name: str) -> Path:
        """One of the run's files in the artifact root (COMPARISON_MANIFEST, METRICS_SUMMARY, ...)."""
        return self.artifacts / name
