"""Where the tensors live and how many CPU threads torch may use."""

from __future__ import annotations

import os

import torch


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without a GPU is an error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {requested!r} (choose auto, cpu or cuda)")
    return requested


def configure_threads() -> int:
    """One intra-op thread per available core (cgroup-aware), none for inter-op parallelism.

    The models are small, so oversubscribing threads costs more in synchronisation than it gains.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # A launcher running several jobs at once (the runner) says how many threads each may use.
    requested = os.environ.get("OMP_NUM_THREADS", "")
    cores = int(requested) if requested.isdigit() and int(requested) > 0 else cores
    torch.set_num_threads(max(1, cores))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set once in this process; harmless
    return cores
