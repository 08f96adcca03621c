"""Every path, file name and job key of a ptychography study, written once (STUDY.md §3, §9).

A study is PtychoPINN's hub (`--hub HUB`): HUB/data/phase_c .. HUB/data/phase_f, HUB/analysis
(Phase G's artifact root) and HUB/cli (the commands' logs under their orchestrator's names); or,
as earlier studies of this runner are, one folder holding phase_c .. phase_f and analysis; or
folders given one by one. Within them:

    phase_c/dose_D/patched_{split}.npz                    simulated data (Phase C)
    phase_d/dose_D/{view}/{view}_{split}.npz              overlap views (Phase D; or {split}.npz)
    phase_e/dose_D/baseline/gs1, phase_e/dose_D/{view}/gs2   the models (Phase E)
    phase_e/dose_D/{view}/seed_S/gs2, .../n_N/gs2        another seed's, another training-set size's
    phase_f/dose_D/{view}/{split}/ptychi_reconstruction.npz  Pty-Chi reconstructions (Phase F)
    phase_f/dose_D_{view}_{split}/manifest.json           a legacy per-split Phase F manifest
    phase_f/reconstruction_manifest.json                  Phase F's manifest
    analysis/dose_D/{view}/{split}/                       a comparison's outputs (Phase G)
    analysis/dose_D/{view}/seed_S/{split}/                ... of another seed's models (replicates.py)
    analysis/phase_e/..., analysis/phase_f/...            the logs of trainings and reconstructions

Paths are built as plain strings: a plan of 10,000 jobs builds 100,000 of them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from runner import places

VIEWS = ("dense", "sparse")
SPLITS = ("train", "test")
BASELINE = "baseline"  # the model of a training that is not a view's PINN
PHASE_FOLDERS = ("phase_c", "phase_d", "phase_e", "phase_f")
ARTIFACTS = "analysis"  # a study's Phase G artifact root, PtychoPINN's `<hub>/analysis`
HUB_DATA = "data"  # a hub's folder of phase_c .. phase_f
CLI_LOGS = "cli"  # a hub's folder of command logs
METRICS_SUMMARY_MD = "metrics_summary.md"  # PtychoPINN's summariser's Markdown beside the JSON
INVENTORY = "artifact_inventory.txt"  # every file of the hub, relative to it (their verifier's)

MODEL_FILES = ("model.pt", "model.json")  # what scripts/train_model.py writes, its summary last
TRAINING_PROGRESS = "training_progress.json"  # the steps train_model has saved (runner.saved_steps)
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
STUDY_SUMMARY = "study_summary.csv"  # the mean and 95 % interval over the seeds of each cell
PHASE_SUMMARY = "phase_summary.json"
REPORT_PAGE = "report.html"
PLOTS = "plots"

DOSE_DIR = re.compile(r"^dose_(\d+)$")


def _level(folder: str) -> str:
    """A replicate's level of folders (replicates.Replicate.folder), as a path part."""
    return f"/{folder}" if folder else ""


def training_key(dose: int, model: str, replicate: str = "") -> str:
    return f"E/dose_{dose}/{model}{_level(replicate)}"


def reconstruction_key(dose: int, view: str, split: str) -> str:
    return f"F/dose_{dose}/{view}/{split}"


def comparison_key(dose: int, view: str, split: str, replicate: str = "") -> str:
    return f"dose_{dose}/{view}{_level(replicate)}/{split}"


@dataclass(frozen=True)
class Layout:
    """The folders of one study; each path of it comes from a method here."""

    phase_c: Path
    phase_d: Path | None  # optional: Phase D metadata and view files
    phase_e: Path
    phase_f: Path
    artifacts: Path  # Phase G's artifact root: comparisons, logs, the run's files, the ledger
    # The study's root: its files are recorded relative to it (the study moves as one folder).
    root: Path | None = None  # None: the folder holding every one of the above

    @classmethod
    def of_study(cls, root: Path) -> Layout:
        """One folder holding phase_c .. phase_f and analysis (this runner's earlier studies)."""
        return cls(root / "phase_c", root / "phase_d", root / "phase_e", root / "phase_f", root / ARTIFACTS, root)

    @classmethod
    def of_hub(cls, hub: Path) -> Layout:
        """PtychoPINN's hub: HUB/data/phase_c .. phase_f, HUB/analysis, HUB/cli."""
        data = hub / HUB_DATA
        return cls(data / "phase_c", data / "phase_d", data / "phase_e", data / "phase_f", hub / ARTIFACTS, hub)

    @classmethod
    def found_in(cls, folder: Path) -> Layout:
        """The layout of a study folder, found by looking: a hub when it has data/phase_c, or
        data/ but no phase_c (a hub whose Phase C is yet to come), else the earlier layout."""
        if (folder / HUB_DATA / "phase_c").is_dir() or ((folder / HUB_DATA).is_dir() and not (folder / "phase_c").exists()):
            return cls.of_hub(folder)
        return cls.of_study(folder)

    @property
    def study_root(self) -> Path:
        """The study's root: given, else the deepest folder holding all of its folders."""
        if self.root is not None:
            return self.root
        folders = [str(p) for p in (self.phase_c, self.phase_d, self.phase_e, self.phase_f, self.artifacts) if p]
        return Path(os.path.commonpath([os.path.abspath(f) for f in folders]))

    # The ledger keeps these with each run, so that `report` finds the study from the ledger alone:
    # relative to the study's root, so that it finds them after the study moved.
    def to_json(self) -> dict[str, str | None]:
        root = os.path.normpath(os.path.abspath(self.study_root))

        def shown(path: Path | None) -> str | None:
            return None if path is None else places.record(path, root)
        return {"phase_c_root": shown(self.phase_c), "phase_d_root": shown(self.phase_d),
                "phase_e_root": shown(self.phase_e), "phase_f_root": shown(self.phase_f),
                "artifact_root": shown(self.artifacts)}

    @classmethod
    def from_json(cls, data: dict, root: str | None = None) -> Layout:
        """The layout a run recorded; relative folders are under `root`, the study's root as the
        ledger finds it now (older runs recorded absolute ones)."""
        def found(key: str) -> Path | None:
            value = places.resolve(data.get(key), root)
            return Path(value) if value else None
        return cls(found("phase_c_root"), found("phase_d_root"), found("phase_e_root"), found("phase_f_root"),
                   found("artifact_root"), Path(root) if root else None)

    @property
    def hub(self) -> Path:
        """What PtychoPINN's tools call the hub: the artifact root's parent."""
        return self.artifacts.parent

    @property
    def holds_hub(self) -> bool:
        """Whether the artifact root's parent is the study's own folder (a hub, or the earlier
        one-folder layout): then HUB/cli and the inventory of the hub are kept; never for an
        artifact root given alone, whose parent may be anything."""
        return os.path.abspath(self.hub) == os.path.abspath(self.study_root)

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
    def model_dir(self, dose: int, model: str, replicate: str = "") -> str:
        return f"{self.phase_e}/dose_{dose}/{model}{_level(replicate)}/" + ("gs1" if model == BASELINE else "gs2")

    def training_logs(self, dose: int, model: str, replicate: str = "") -> Path:
        return self.artifacts / "phase_e" / f"dose_{dose}" / f"{model}{_level(replicate)}"

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
    def comparison_dir(self, dose: int, view: str, split: str, replicate: str = "") -> str:
        return f"{self.artifacts}/dose_{dose}/{view}{_level(replicate)}/{split}"

    def artifact(self, name: str) -> Path:
        """One of the run's files in the artifact root (COMPARISON_MANIFEST, METRICS_SUMMARY, ...)."""
        return self.artifacts / name
