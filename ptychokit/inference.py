"""Running a trained network on diffraction data: one object patch per scan position."""

from __future__ import annotations

import numpy as np
import torch

from ptychokit.checkpoint import CheckpointInfo
from ptychokit.grouping import group_offsets, neighbour_groups
from ptychokit.networks import PatchNet
from ptychokit.npz_io import PtychoData
from ptychokit.overlap import merge_group_patches


def predict_patches(model: PatchNet, info: CheckpointInfo, data: PtychoData,
                    batch_size: int = 32, device: str | None = None) -> np.ndarray:
    """Object patches (n, N, N) complex64, row i for scan position i of `data`.

    Gridsize 1: the network sees each pattern alone. Gridsize 2: each position is the anchor of a
    group built by the training rule (seeded K-nearest partners, no nearer than the training
    groups' partners were), and its patch is the anchor's after the overlap merge, i.e. the patch
    the training loss constrained.
    """
    device = device or next(model.parameters()).device.type
    if data.patch_size != info.architecture.patch_size:
        raise ValueError(f"data patches are {data.patch_size} px, the model expects "
                         f"{info.architecture.patch_size}")
    scale = float(info.preprocessing["input_scale"])
    n = data.diffraction.shape[0]
    if info.gridsize == 1:
        groups = np.arange(n)[:, None]
    else:
        groups = neighbour_groups(data.xcoords, data.ycoords, int(info.preprocessing["channels"]),
                                  int(info.preprocessing["neighbours"]),
                                  int(info.preprocessing["grouping_seed"]),
                                  float(info.preprocessing.get("partner_min_distance", 0.0)))
    offsets = torch.from_numpy(group_offsets(data.xcoords, data.ycoords, groups))
    probe = torch.from_numpy(info.probe if info.probe is not None else data.probe).to(device)
    out = np.empty((n, data.patch_size, data.patch_size), dtype=np.complex64)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            rows = slice(start, start + batch_size)
            inputs = torch.from_numpy(data.diffraction[groups[rows]] * scale).to(device)
            patches = model(inputs)
            if info.gridsize > 1:
                patches = merge_group_patches(patches, offsets[rows].to(device), probe)
            out[rows] = patches[:, 0].cpu().numpy()
    return out
