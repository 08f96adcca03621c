"""A study's quality at a glance: object error of every reconstruction and network, per condition.

Not the comparison of Phase G (that is the compare script's job, with registration and its
metrics); a quick check that a generated study behaves, e.g. that errors fall as the dose rises.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptychokit.checkpoint import load_model
from ptychokit.inference import predict_patches
from ptychokit.metrics import relative_error
from ptychokit.npz_io import PtychoData, read_ptycho_npz, read_reconstruction
from ptychokit.presets import SPLITS, VIEWS
from ptychokit.stitching import stitch_patches

CROP_FRACTION = 0.5  # judge the central half of each patch, where the probe is strong


def _scanned_mask(data: PtychoData, shape: tuple[int, int]) -> np.ndarray:
    ones = np.ones((data.xcoords.size, data.patch_size, data.patch_size), dtype=np.complex64)
    _, coverage = stitch_patches(ones, data.xcoords, data.ycoords, shape,
                                 crop=int(data.patch_size * CROP_FRACTION))
    return coverage > 0


def study_errors(root: Path) -> list[dict[str, object]]:
    """Rows of dose, view, split and the relative object error of each arm on that view's region."""
    rows = []
    for dose_dir in sorted((root / "phase_c").glob("dose_*"), key=lambda p: int(p.name[5:])):
        dose = int(dose_dir.name[5:])
        baseline = load_model(root / "phase_e" / dose_dir.name / "baseline" / "gs1")
        for view in VIEWS:
            pinn = load_model(root / "phase_e" / dose_dir.name / view / "gs2")
            for split in SPLITS:
                data = read_ptycho_npz(root / "phase_d" / dose_dir.name / view / f"{view}_{split}.npz")
                shape = data.object.shape
                mask = _scanned_mask(data, shape)
                crop = int(data.patch_size * CROP_FRACTION)
                row = {"dose": dose, "view": view, "split": split, "n": int(data.xcoords.size)}
                for arm, (model, info) in (("baseline", baseline), ("pinn", pinn)):
                    image, _ = stitch_patches(predict_patches(model, info, data), data.xcoords,
                                              data.ycoords, shape, crop=crop)
                    row[arm] = relative_error(image[mask], data.object[mask])
                recon = read_reconstruction(root / "phase_f" / dose_dir.name / view / split
                                            / "ptychi_reconstruction.npz")
                row["ptychi"] = relative_error(recon.object[mask], data.object[mask])
                row["flat"] = relative_error(np.ones(mask.sum()), data.object[mask])
                rows.append(row)
    return rows
