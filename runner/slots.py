"""Device discovery and the slot pool: which GPU (or CPU) each job may use.

A slot is one seat on one device; a device has `jobs_per_gpu` seats. The pool hands out a free
seat and takes it back, so no device ever runs more jobs than it has seats.

Kinds of job may share a GPU differently (`jobs_per_gpu = {E = 1, F = 2, G = 4}`: a job of kind E
takes a whole GPU, four of kind G share one). A device then has as many seats as the least common
multiple of those numbers, and a job of a kind that allows n per GPU takes seats / n of them, all
on one device: never more of a kind on a device than it allows, and never more work than the
device holds.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass


class SlotError(Exception):
    """The --gpus setting cannot be satisfied."""


@dataclass(frozen=True)
class Device:
    visible_id: str  # the value for CUDA_VISIBLE_DEVICES ('' = no GPU)
    uuid: str | None = None


@dataclass(frozen=True)
class Slot:
    name: str  # e.g. 'gpu0.1' (device 0, seat 1) or 'cpu2'
    device: Device


def query_nvidia_smi() -> list[Device]:
    """GPUs listed by nvidia-smi (index and UUID), or none when it is absent or fails."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    devices = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit():
            devices.append(Device(parts[0], parts[1]))
    return devices


def parse_gpus(spec: str, environ: dict[str, str] | None = None) -> list[Device]:
    """--gpus auto|none|LIST -> devices. auto: CUDA_VISIBLE_DEVICES, else nvidia-smi, else none."""
    environ = os.environ if environ is None else environ
    spec = spec.strip()
    if spec == "none":
        return []
    if spec == "auto":
        visible = environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            tokens = [t.strip() for t in visible.split(",") if t.strip()]
            # CUDA stops at the first invalid entry, such as -1: what follows it is hidden too.
            valid = []
            for token in tokens:
                if not _valid_token(token):
                    break
                valid.append(token)
            return _with_uuids(valid)
        return query_nvidia_smi()
    tokens = [t.strip() for t in spec.split(",")]
    for token in tokens:
        if not _valid_token(token):
            raise SlotError(f"--gpus: {token!r} is not a GPU index or UUID; "
                            "use auto, none, or a list such as 0,1 or GPU-<uuid>")
    if len(set(tokens)) != len(tokens):
        raise SlotError(f"--gpus lists a device twice: {spec}")
    return _with_uuids(tokens)


def _valid_token(token: str) -> bool:
    return bool(re.fullmatch(r"\d+|(GPU|MIG)-[0-9A-Za-z/_.-]+", token))


def _with_uuids(tokens: list[str]) -> list[Device]:
    """Attach the UUID of each index when nvidia-smi knows it (for the ledger)."""
    known = {d.visible_id: d.uuid for d in query_nvidia_smi()} if any(t.isdigit() for t in tokens) else {}
    return [Device(t, t if not t.isdigit() else known.get(t)) for t in tokens]


def seats_per_gpu(jobs_per_gpu: dict[str, int]) -> int:
    """Seats of one device: enough for every kind's share to be a whole number of seats."""
    return math.lcm(*jobs_per_gpu.values()) if jobs_per_gpu else 1


def seat_costs(jobs_per_gpu: dict[str, int], on_gpu: bool) -> dict[str, int]:
    """Per kind of job, the seats one of its jobs takes (on the CPU one each: the threads are shared)."""
    seats = seats_per_gpu(jobs_per_gpu)
    return {kind: seats // n if on_gpu else 1 for kind, n in jobs_per_gpu.items()}


def build_slots(devices: list[Device], jobs_per_gpu: int | dict[str, int], max_parallel: int | None) -> list[Slot]:
    """Seats for every device, or CPU seats when there is no GPU. max_parallel caps the total
    when every job takes one seat; with kinds of different weights the pool caps the jobs."""
    per_kind = jobs_per_gpu if isinstance(jobs_per_gpu, dict) else {"": jobs_per_gpu}
    if devices:
        seats = seats_per_gpu(per_kind)
        slots = [Slot(f"gpu{d.visible_id}.{seat}" if len(d.visible_id) < 8 else f"{d.visible_id[:12]}.{seat}", d)
                 for seat in range(seats) for d in devices]
        uniform = len(set(per_kind.values())) == 1
        return slots[:max_parallel] if max_parallel and uniform else slots
    return [Slot(f"cpu{i}", Device("")) for i in range(max_parallel or 1)]


class SlotPool:
    """Free seats; a job takes as many as its kind costs, all on one device, and gives them back
    when its attempt ends. `max_jobs` caps the jobs running at once."""

    def __init__(self, slots: list[Slot], costs: dict[str, int] | None = None,
                 max_jobs: int | None = None) -> None:
        self.slots = list(slots)
        self.costs = costs or {}
        self.max_jobs = max_jobs
        self._free = list(slots)  # seat 0 of every device first: spread jobs over devices
        self._held: dict[Slot, list[Slot]] = {}  # the seats each running job holds, by its first

    def cost(self, kind: str) -> int:
        return self.costs.get(kind, 1)

    def most_jobs(self) -> int:
        """How many jobs can run at once (the cheapest kind's jobs filling every seat)."""
        cheapest = min(self.costs.values(), default=1)
        return min(len(self.slots) // cheapest or 1, self.max_jobs or len(self.slots))

    def _seats_for(self, cost: int) -> list[Slot] | None:
        if self.max_jobs is not None and len(self._held) >= self.max_jobs:
            return None
        for seat in self._free:
            same = [s for s in self._free if s.device == seat.device]
            if len(same) >= cost:
                return [seat] + [s for s in same if s is not seat][:cost - 1]
        return None

    def has_free(self, cost: int = 1) -> bool:
        return self._seats_for(cost) is not None

    def take(self, cost: int = 1) -> Slot:
        seats = self._seats_for(cost)
        if seats is None:
            raise LookupError(f"no device has {cost} free seats")
        for seat in seats:
            self._free.remove(seat)
        self._held[seats[0]] = seats
        return seats[0]

    def holds(self, slot: Slot) -> bool:
        return slot in self._held

    def give_back(self, slot: Slot) -> None:
        # Keep the original order so the least-loaded devices are chosen first.
        self._free += self._held.pop(slot)
        self._free.sort(key=self.slots.index)
