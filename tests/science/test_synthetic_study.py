"""The tiny preset writes every file of STUDY.md §3 with the §4 keys, shapes and dtypes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptychokit.checkpoint import load_model
from ptychokit.inference import predict_patches
from ptychokit.npz_io import read_ptycho_npz, read_reconstruction
from ptychokit.pipeline import phase_c
from ptychokit.presets import PRESETS
from ptychokit.stitching import stitch_patches

TINY = PRESETS["tiny"]
DOSES = TINY.doses
VIEWS = ("dense", "sparse")
SPLITS = ("train", "test")
N, M = TINY.patch_size, TINY.object_size
METADATA_FIELDS = ("selection_strategy", "acceptance_rate", "spacing_threshold", "n_accepted", "n_rejected")
# A finished training: its model, its curve and its progress record (no training_state.pt left).
CHECKPOINT_FILES = {"model.pt", "model.json", "training_log.csv", "training_progress.json"}


def _check_patched(path: Path) -> int:
    with np.load(path) as npz:  # allow_pickle=False: nothing in it may need unpickling
        n = npz["diffraction"].shape[0]
        expected = {
            "diffraction": ((n, N, N), np.float32), "probeGuess": ((N, N), np.complex64),
            "objectGuess": ((M, M), np.complex64), "Y": ((n, N, N), np.complex64),
            "xcoords": ((n,), np.float64), "ycoords": ((n,), np.float64),
            "xcoords_start": ((n,), np.float64), "ycoords_start": ((n,), np.float64),
        }
        for key, (shape, dtype) in expected.items():
            assert npz[key].shape == shape and npz[key].dtype == dtype, (path, key)
        assert npz["scan_index"].shape == (n,) and np.issubdtype(npz["scan_index"].dtype, np.integer)
        assert npz["diffraction"].min() >= 0  # amplitudes, sqrt of counts
    return n


def test_phase_c_writes_both_splits_of_every_dose(tiny_study):
    assert sorted(p.name for p in (tiny_study / "data/phase_c").iterdir()) == sorted(f"dose_{d}" for d in DOSES)
    for dose in DOSES:
        sizes = {split: _check_patched(tiny_study / "data/phase_c" / f"dose_{dose}" / f"patched_{split}.npz")
                 for split in SPLITS}
        assert min(sizes.values()) > 0
        train = read_ptycho_npz(tiny_study / "data/phase_c" / f"dose_{dose}" / "patched_train.npz")
        test = read_ptycho_npz(tiny_study / "data/phase_c" / f"dose_{dose}" / "patched_test.npz")
        assert train.ycoords.max() < M / 2 <= test.ycoords.min()  # the y split, no leakage
        assert not set(train.scan_index) & set(test.scan_index)


def test_phase_c_npzs_carry_metadata_of_what_the_simulation_did(tiny_study):
    for dose in DOSES:
        for split in SPLITS:
            path = tiny_study / "data/phase_c" / f"dose_{dose}" / f"patched_{split}.npz"
            with np.load(path) as npz:
                raw = npz["_metadata"]
                n = npz["diffraction"].shape[0]
            assert raw.dtype.kind == "U" and raw.shape == ()  # a plain string: read without unpickling
            meta = json.loads(str(raw))
            assert (meta["dose"], meta["seed"], meta["preset"], meta["split"], meta["n_positions"]) == (dose, 42, "tiny", split, n)
            tools = [step["tool"] for step in meta["data_transformations"]]
            assert tools == ["ptychokit.forward.dose_scaled_probe", "ptychokit.forward.simulate_amplitudes",
                             "ptychokit.scan.split_masks"]
            assert all(step["operation"] and isinstance(step["parameters"], dict) for step in meta["data_transformations"])


def test_phase_d_views_carry_plain_string_metadata(tiny_study):
    for dose in DOSES:
        for view in VIEWS:
            for split in SPLITS:
                path = tiny_study / "data/phase_d" / f"dose_{dose}" / view / f"{view}_{split}.npz"
                n = _check_patched(path)
                with np.load(path) as npz:
                    raw = npz["_metadata"]
                    assert raw.dtype.kind == "U" and raw.shape == ()
                    meta = json.loads(str(raw))
                assert meta["overlap_view"] == view and meta["n_accepted"] == n
                assert meta["selection_strategy"] in ("direct", "greedy")
                assert meta["acceptance_rate"] == pytest.approx(n / (n + meta["n_rejected"]))
                assert meta["spacing_threshold"] == pytest.approx((1 - {"dense": 0.7, "sparse": 0.2}[view]) * N)


def test_phase_e_checkpoints_load_and_predict_patches(tiny_study):
    data = read_ptycho_npz(tiny_study / "data/phase_c" / f"dose_{DOSES[0]}" / "patched_test.npz")
    for dose in DOSES:
        folders = [tiny_study / "data/phase_e" / f"dose_{dose}" / "baseline" / "gs1"]
        folders += [tiny_study / "data/phase_e" / f"dose_{dose}" / view / "gs2" for view in VIEWS]
        for folder in folders:
            assert {p.name for p in folder.iterdir()} == CHECKPOINT_FILES
            model, info = load_model(folder)
            assert info.provenance["dose"] == dose
            patches = predict_patches(model, info, data)
            assert patches.shape == (data.diffraction.shape[0], N, N) and np.isfinite(patches).all()
            image, coverage = stitch_patches(patches, data.xcoords, data.ycoords, (M, M), crop=20)
            assert image.shape == (M, M) and coverage.max() > 0


def test_phase_f_reconstructions_and_manifests(tiny_study):
    """The generator's Phase F is run by the runner: its reconstructions, and Phase F's manifest
    written by the runner's one writer of it, with each view's Phase D metadata."""
    phase_f = tiny_study / "data/phase_f"
    manifest = json.loads((phase_f / "reconstruction_manifest.json").read_text())
    entries = {(e["dose"], e["view"], e["split"]): e for e in manifest["execution_results"]}
    assert len(entries) == len(DOSES) * 4
    assert manifest["algorithm"] == "LSQML" and manifest["output_dirs_relative_to"] == "phase_f"
    for dose in DOSES:
        for view in VIEWS:
            for split in SPLITS:
                path = phase_f / f"dose_{dose}" / view / split / "ptychi_reconstruction.npz"
                with np.load(path) as npz:
                    assert npz["reconstructed_object"].shape == (M, M)
                    assert np.iscomplexobj(npz["reconstructed_object"])
                    assert npz["reconstructed_probe"].shape == (N, N)
                    assert str(npz["algorithm"]) == "pty-chi LSQML (20 epochs, poisson noise)"
                    assert npz["cost_history"].shape == (TINY.ptychi_epochs,)
                    final_cost = float(npz["cost_history"][-1])
                assert read_reconstruction(path).elapsed_s > 0
                assert (path.parent / "reconstruction_visualization.png").is_file()
                view_npz = tiny_study / "data/phase_d" / f"dose_{dose}" / view / f"{view}_{split}.npz"
                with np.load(view_npz) as npz:
                    meta = json.loads(str(npz["_metadata"]))
                entry = entries[(dose, view, split)]
                assert {k: entry[k] for k in METADATA_FIELDS} == {k: meta[k] for k in METADATA_FIELDS}
                assert entry["status"] == "success" and entry["returncode"] == 0
                assert entry["output_dir"] == f"dose_{dose}/{view}/{split}" and entry["algorithm"] == "LSQML"
                assert entry["n_positions"] == meta["n_accepted"] and entry["computation_time_s"] > 0
                assert entry["final_cost"] == pytest.approx(final_cost)


def test_a_failed_reconstruction_is_recorded_and_named(tiny_study, tmp_path):
    """One view file without its probe: the runner records that reconstruction failed (its log
    ends with the script's one-line error), the others succeed, and the manifest says so."""
    dose = DOSES[0]
    study = tmp_path / "study"
    for phase in ("data/phase_c", "data/phase_d"):
        shutil.copytree(tiny_study / phase / f"dose_{dose}", study / phase / f"dose_{dose}")
    shutil.copy(tiny_study / "runner.toml", study / "runner.toml")
    broken = study / "data/phase_d" / f"dose_{dose}" / "sparse" / "sparse_test.npz"
    with np.load(broken) as npz:
        np.savez(broken, **{k: npz[k] for k in npz.files if k != "probeGuess"})
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "runner", "run", "--config", str(study / "runner.toml"),
                             "--phases", "F", "--gpus", "none", "--max-parallel", "2"],
                            cwd=repo, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    manifest = json.loads((study / "data/phase_f" / "reconstruction_manifest.json").read_text())
    outcome = {(e["view"], e["split"]): (e["status"], e["returncode"]) for e in manifest["execution_results"]}
    assert outcome == {("dense", "train"): ("success", 0), ("dense", "test"): ("success", 0),
                       ("sparse", "train"): ("success", 0), ("sparse", "test"): ("failed", 1)}
    log = next((study / "analysis/phase_f" / f"dose_{dose}" / "sparse/test/logs").glob("attempt-1.stderr.log"))
    assert "lacks the key 'probeGuess'" in log.read_text().strip().splitlines()[-1]


def test_the_study_records_its_settings(tiny_study):
    record = json.loads((tiny_study / "study.json").read_text())
    assert record["preset"]["name"] == "tiny" and record["seed"] == 42
    assert set(record["phase_seconds"]) == {"C", "D", "E,F"}  # E and F as one graph of jobs


def test_simulation_is_deterministic_for_a_seed(tmp_path, tiny_study):
    phase_c(tmp_path, TINY.with_doses((DOSES[0],)), seed=42)
    for split in SPLITS:
        name = Path("phase_c") / f"dose_{DOSES[0]}" / f"patched_{split}.npz"
        with np.load(tmp_path / name) as again, np.load(tiny_study / "data" / name) as first:
            assert again.files == first.files
            for key in first.files:
                assert np.array_equal(again[key], first[key]), key


def test_ptychokit_never_imports_the_runner():
    code = ("import sys, pkgutil, importlib, ptychokit\n"
            "for m in pkgutil.iter_modules(ptychokit.__path__): importlib.import_module('ptychokit.' + m.name)\n"
            "print(sorted(n for n in sys.modules if n == 'runner' or n.startswith('runner.')))")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
