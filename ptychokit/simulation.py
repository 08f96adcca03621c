"""Phase C's simulation: one object, probe and scan per study, one noisy measurement per dose."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ptychokit.forward import dose_scaled_probe, extract_patches, simulate_amplitudes
from ptychokit.npz_io import PtychoData
from ptychokit.objects import make_object, make_probe
from ptychokit.presets import Preset
from ptychokit.scan import jittered_grid, patch_corners, split_masks


@dataclass(frozen=True)
class Scene:
    """What every dose shares: the object, the unscaled probe, the scan and the true patches."""

    object: np.ndarray  # (M, M) complex64
    probe: np.ndarray  # (N, N) complex64, unit peak
    xcoords: np.ndarray
    ycoords: np.ndarray
    patches: np.ndarray  # (n, N, N) complex64 object patches at every position


def make_scene(preset: Preset, seed: int) -> Scene:
    obj = make_object(preset.object_size, seed, preset.patch_size)
    probe = make_probe(preset.patch_size)
    # The scan gets its own stream so that changing the object generator leaves positions alone.
    rng = np.random.default_rng([seed, 1])
    xs, ys = jittered_grid(preset.object_size, preset.patch_size, preset.scan_step,
                           preset.scan_jitter, rng)
    top, left = patch_corners(xs, ys, preset.patch_size)
    with torch.no_grad():
        patches = extract_patches(torch.from_numpy(obj), torch.from_numpy(top),
                                  torch.from_numpy(left), preset.patch_size).numpy()
    return Scene(object=obj, probe=probe, xcoords=xs, ycoords=ys, patches=patches)


def measure(scene: Scene, dose: int, seed: int) -> dict[str, PtychoData]:
    """The scene measured at `dose` photons per pattern (on average), split along y. Each split
    carries `_metadata` naming the dose, the seed and the steps that made it, in order."""
    probe = dose_scaled_probe(scene.probe, scene.patches, dose)
    noise_seed = [seed, 2, dose]
    rng = np.random.default_rng(noise_seed)  # one noise stream per dose, reproducible alone
    amplitudes = simulate_amplitudes(probe, scene.patches, rng)
    full = PtychoData(diffraction=amplitudes, probe=probe, xcoords=scene.xcoords,
                      ycoords=scene.ycoords, object=scene.object, patches=scene.patches,
                      scan_index=np.arange(scene.xcoords.size, dtype=np.int64))
    boundary = 0.5 * scene.object.shape[0]
    masks = split_masks(scene.ycoords, scene.object.shape[0])
    steps = [
        {"tool": "ptychokit.forward.dose_scaled_probe", "parameters": {"dose": dose},
         "operation": "scaled the probe so that the mean expected counts per pattern equal the dose"},
        {"tool": "ptychokit.forward.simulate_amplitudes", "parameters": {"noise": "poisson", "rng_seed": noise_seed},
         "operation": "drew Poisson counts of every far-field pattern and stored their square roots"},
    ]
    return {split: replace(full.subset(np.flatnonzero(mask)), metadata={
                "dose": dose, "seed": seed, "split": split, "n_positions": int(mask.sum()),
                "data_transformations": steps + [{
                    "tool": "ptychokit.scan.split_masks", "parameters": {"axis": "y", "boundary_px": boundary},
                    "operation": f"kept the {split} positions of the spatial split along y "
                                 f"({'below' if split == 'train' else 'at or above'} {boundary:g} px)"}]})
            for split, mask in masks.items()}
