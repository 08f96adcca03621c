"""Phase F through Pty-Chi: our conventions meet its forward model, and real reconstructions."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ptychokit.forward import dose_scaled_probe, expected_counts
from ptychokit.metrics import relative_error
from ptychokit.npz_io import PtychoData
from ptychokit.ptychi_recon import (ALGORITHMS, PtychiSettings, build_task, canonical_algorithm,
                                    reconstruct)
from ptychokit.scan import patch_corners

REPO = Path(__file__).resolve().parents[2]
ERROR_BOUND = 0.15  # the flat starting guess is at about 0.23 on this object


def _noiseless(scene, dose: float = 1e6) -> PtychoData:
    probe = dose_scaled_probe(scene.probe, scene.patches, dose)
    with torch.no_grad():
        counts = expected_counts(torch.from_numpy(probe), torch.from_numpy(scene.patches))
    return PtychoData(counts.sqrt().numpy().astype(np.float32), probe, scene.xcoords, scene.ycoords,
                      scene.object)


def _lit_centres(data: PtychoData, shape) -> np.ndarray:
    """Pixels under the central half of some patch: where the probe is strong enough to judge."""
    size = data.patch_size
    mask = np.zeros(shape, dtype=bool)
    top, left = patch_corners(data.xcoords, data.ycoords, size)
    for row, col in zip(top, left):
        mask[row + size // 4: row + 3 * size // 4, col + size // 4: col + 3 * size // 4] = True
    return mask


def _ptychi_intensities(data: PtychoData, obj: np.ndarray) -> np.ndarray:
    """What Pty-Chi's own forward model predicts for `obj`, zero frequency moved to the centre."""
    task = build_task(data, obj.shape, PtychiSettings(num_epochs=1), start=obj)
    try:
        with torch.no_grad():
            predicted = task.reconstructor.forward_model.forward(torch.arange(data.xcoords.size))
    finally:
        torch.set_default_device("cpu")
    return np.fft.fftshift(predicted.cpu().numpy(), axes=(-2, -1))


def test_ptychi_predicts_our_counts_from_our_object_probe_and_positions(tiny_scene):
    data = _noiseless(tiny_scene, 1e5)
    predicted = _ptychi_intensities(data, tiny_scene.object)
    counts = np.square(data.diffraction.astype(np.float64))
    assert np.abs(predicted - counts).max() < 1e-5 * counts.max()


def test_a_one_pixel_error_in_the_positions_would_be_seen(tiny_scene):
    data = _noiseless(tiny_scene, 1e5)
    shifted = PtychoData(data.diffraction, data.probe, data.xcoords + 1, data.ycoords, data.object)
    counts = np.square(data.diffraction.astype(np.float64))
    assert np.abs(_ptychi_intensities(shifted, tiny_scene.object) - counts).max() > 0.01 * counts.max()


def test_lsqml_brings_the_object_error_below_the_bound_on_noiseless_data(tiny_scene):
    data = _noiseless(tiny_scene)
    shape = tiny_scene.object.shape
    mask = _lit_centres(data, shape)
    start_error = relative_error(np.ones(shape)[mask], tiny_scene.object[mask])

    result = reconstruct(data, shape, PtychiSettings("LSQML", num_epochs=20, batch_size=32))

    final_error = relative_error(result.object[mask], tiny_scene.object[mask])
    assert start_error > 0.2
    assert final_error < ERROR_BOUND
    assert result.cost_history[-1] < 0.1 * result.cost_history[0]
    assert len(result.cost_history) == 20
    assert result.object.shape == shape and result.object.dtype == np.complex64
    assert result.algorithm == "pty-chi LSQML (20 epochs, gaussian noise)"
    assert torch.get_default_device().type == "cpu"  # Pty-Chi's default device is put back


@pytest.mark.parametrize("algorithm", ["ePIE", "PIE", "DM"])
def test_every_offered_method_runs_and_improves_on_the_flat_start(tiny_scene, algorithm):
    data = _noiseless(tiny_scene)
    shape = tiny_scene.object.shape
    mask = _lit_centres(data, shape)
    # (PIE and ePIE at step 1 overshoot on this densely overlapping scan; 0.1 is slow to start)
    result = reconstruct(data, shape, PtychiSettings(algorithm, num_epochs=10, batch_size=32, step_size=0.3))
    flat = relative_error(np.ones(shape)[mask], tiny_scene.object[mask])
    assert relative_error(result.object[mask], tiny_scene.object[mask]) < flat
    assert result.algorithm.startswith(f"pty-chi {algorithm} (10 epochs")


def test_the_probe_stays_ours_when_it_is_not_refined(tiny_train):
    data = tiny_train.subset(np.arange(40))
    result = reconstruct(data, data.object.shape, PtychiSettings("LSQML", num_epochs=3, batch_size=16))
    # Pty-Chi rescales object against probe (a global factor, unobservable); nothing else changes.
    assert relative_error(result.probe, data.probe) < 1e-4


def test_a_refined_probe_changes_and_stays_finite(tiny_train):
    data = tiny_train.subset(np.arange(40))
    result = reconstruct(data, data.object.shape,
                         PtychiSettings("LSQML", num_epochs=3, batch_size=16, refine_probe=True))
    assert np.isfinite(result.probe).all() and relative_error(result.probe, data.probe) > 1e-3


def test_a_reconstruction_is_deterministic_for_a_seed(tiny_train):
    data = tiny_train.subset(np.arange(40))
    run = lambda: reconstruct(data, data.object.shape,  # noqa: E731
                              PtychiSettings("LSQML", num_epochs=3, batch_size=8, seed=5)).object
    assert np.array_equal(run(), run())


def test_method_names_are_matched_without_regard_to_case():
    assert canonical_algorithm("epie") == "ePIE" and canonical_algorithm("lsqml") == "LSQML"
    assert set(ALGORITHMS) == {"LSQML", "PIE", "ePIE", "DM"}
    with pytest.raises(ValueError, match="unknown algorithm 'RAAR'"):
        PtychiSettings("RAAR")
    with pytest.raises(ValueError, match="unknown noise model"):
        PtychiSettings(noise_model="laplace")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None,
                    reason="torchvision is installed here: ptychi imports the real one, no stand-in")
def test_without_torchvision_ptychi_imports_through_a_stand_in_that_leaves_no_trace():
    code = ("import sys\n"
            "from ptychokit.ptychi_recon import load_ptychi\n"
            "load_ptychi()\n"
            "import ptychi.utils\n"
            "assert 'torchvision' not in sys.modules and 'torchvision.transforms' not in sys.modules\n"
            "try:\n"
            "    ptychi.utils.GaussianBlur(kernel_size=(9, 9), sigma=(3, 3))\n"
            "except NotImplementedError as exc:\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "torchvision is not installed" in done.stdout


def test_a_missing_ptychi_is_one_clear_error():
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'ptychi':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from ptychokit.ptychi_recon import PtychiUnavailable, load_ptychi\n"
            "try:\n"
            "    load_ptychi()\n"
            "except PtychiUnavailable as exc:\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ptychi" in done.stdout and "see the README" in done.stdout


def test_a_torchvision_built_for_another_torch_is_one_clear_error(tmp_path):
    # What importing PyPI's torchvision 0.28 (a CUDA build) does on the CPU build of torch 2.13.
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n")
    code = ("from ptychokit.ptychi_recon import PtychiUnavailable, load_ptychi\n"
            "try:\n"
            "    load_ptychi()\n"
            "except PtychiUnavailable as exc:\n"
            "    print(exc)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "torchvision::nms does not exist" in done.stdout and "does not match this torch" in done.stdout
