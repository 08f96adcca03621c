"""A small study tree on disk with every input of every condition: tiny arrays in the real
formats (NPZ with `_metadata`, model folders, reconstructions, Phase F manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

VIEWS, SPLITS = ("dense", "sparse"), ("train", "test")


def _npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def make_study(root: Path, doses=(1000, 10000, 100000), metadata_in="npz", upstream=True) -> Path:
    """A study tree with every input of every condition (tiny arrays, real formats). Without
    `upstream`, only the data (Phases C and D): the models and reconstructions are to be made."""
    n, size = 4, 8
    for dose in doses:
        for split in SPLITS:
            _npz(root / f"phase_c/dose_{dose}/patched_{split}.npz",
                 diffraction=np.ones((n, size, size), np.float32),
                 probeGuess=np.ones((size, size), np.complex64),
                 objectGuess=np.ones((16, 16), np.complex64),
                 xcoords=np.arange(n, dtype=np.float64), ycoords=np.arange(n, dtype=np.float64))
        for folder in ("baseline/gs1", "dense/gs2", "sparse/gs2") if upstream else ():
            model = root / f"phase_e/dose_{dose}/{folder}"
            model.mkdir(parents=True, exist_ok=True)
            (model / "model.pt").write_bytes(b"weights")
        for view in VIEWS:
            for split in SPLITS:
                meta = {"overlap_view": view, "spacing_threshold": 38.4 if view == "dense" else 102.4,
                        "n_accepted": 3, "n_rejected": 1, "acceptance_rate": 0.75,
                        "selection_strategy": "direct" if view == "dense" else "greedy"}
                arrays = {"diffraction": np.ones((n, size, size), np.float32)}
                if metadata_in == "npz":
                    arrays["_metadata"] = np.array(json.dumps(meta))
                _npz(root / f"phase_d/dose_{dose}/{view}/{view}_{split}.npz", **arrays)
                if upstream:
                    _npz(root / f"phase_f/dose_{dose}/{view}/{split}/ptychi_reconstruction.npz",
                         reconstructed_object=np.ones((16, 16), np.complex64), algorithm=np.array("ePIE"))
    if metadata_in == "manifest":
        results = [{"dose": d, "view": v, "split": s, "selection_strategy": "greedy",
                    "acceptance_rate": 0.008, "spacing_threshold": 38.4, "n_accepted": 42,
                    "n_rejected": 5046} for d in doses for v in VIEWS for s in SPLITS]
        (root / "phase_f/reconstruction_manifest.json").write_text(json.dumps({"execution_results": results}))
    for phase in ("phase_e", "phase_f"):
        (root / phase).mkdir(exist_ok=True)
    return root
