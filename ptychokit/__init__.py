"""ptychokit: the science side of the synthetic ptychography study.

Owns the forward model, probe and object, scan geometry and overlap views, the networks, their
training and checkpoints, the iterative solver and the NPZ contracts. It never imports `runner`;
the two meet only through files and command lines.

The names a comparison script needs are re-exported here:
`load_model`, `predict_patches`, `stitch_patches`, `read_ptycho_npz`, `read_reconstruction`.
"""

from ptychokit.checkpoint import CheckpointInfo, load_model, save_model
from ptychokit.inference import predict_patches
from ptychokit.npz_io import PtychoData, read_ptycho_npz, read_reconstruction, read_view_metadata
from ptychokit.stitching import stitch_patches

__all__ = [
    "CheckpointInfo", "PtychoData", "load_model", "predict_patches", "read_ptycho_npz",
    "read_reconstruction", "read_view_metadata", "save_model", "stitch_patches",
]
