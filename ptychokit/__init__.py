"""ptychokit: the science side of the synthetic ptychography study.

Owns the forward model, probe and object, scan geometry and overlap views, the networks, their
training and checkpoints, Phase F through Pty-Chi and the NPZ contracts. It never imports `runner`;
the two meet only through files and command lines.

The names a comparison script needs are re-exported here:
`load_model`, `predict_patches`, `stitch_patches`, `read_ptycho_npz`, `read_reconstruction`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Exported name -> module; imported on first use so that `import ptychokit.scan` stays light.
_EXPORTS = {
    "CheckpointInfo": "checkpoint", "load_model": "checkpoint", "save_model": "checkpoint",
    "predict_patches": "inference", "stitch_patches": "stitching",
    "PtychoData": "npz_io", "read_ptycho_npz": "npz_io", "read_reconstruction": "npz_io",
    "read_view_metadata": "npz_io",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ptychokit' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ptychokit.{_EXPORTS[name]}"), name)
