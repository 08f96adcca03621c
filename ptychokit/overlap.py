"""The gridsize-2 overlap constraint: merge a group's patches where they overlap, then re-extract.

Each member's patch is placed on a shared canvas at its scan offset and the canvas is an
illumination-weighted average, so every pattern of the group is explained by one object and the
network cannot fit each pattern with its own inconsistent patch. Weights are the probe intensity:
a patch is only trustworthy where its pattern constrained it.
"""

from __future__ import annotations

import torch

from ptychokit.forward import patch_index

UNLIT_WEIGHT = 1e-3  # keeps unlit canvas pixels defined without letting them pull on lit ones


def merge_group_patches(patches: torch.Tensor, offsets: torch.Tensor,
                        probe: torch.Tensor) -> torch.Tensor:
    """Patches (B, C, N, N) complex at offsets (B, C, 2) -> the same patches after averaging overlaps."""
    batch, channels, size, _ = patches.shape
    margin = int(offsets.abs().max()) if offsets.numel() else 0
    width = size + 2 * margin
    top = (offsets[..., 0] + margin).reshape(-1)
    left = (offsets[..., 1] + margin).reshape(-1)
    index = patch_index(top, left, size, width).reshape(batch, channels, size, size)
    index = index + (torch.arange(batch, device=patches.device) * width * width)[:, None, None, None]
    flat = index.reshape(-1)
    weight = probe.abs() ** 2
    weight = (weight / weight.max() + UNLIT_WEIGHT).expand(batch, channels, size, size)
    numerator = torch.zeros(batch * width * width, dtype=patches.dtype, device=patches.device)
    numerator = numerator.index_add(0, flat, (weight * patches).reshape(-1))
    denominator = torch.zeros(batch * width * width, dtype=weight.dtype, device=patches.device)
    denominator = denominator.index_add(0, flat, weight.reshape(-1))
    merged = numerator / denominator.clamp_min(1e-12)
    return merged[index]
