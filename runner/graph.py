"""The jobs of a run as a graph: who needs whom, in which order they can run, and which to start
first. Nothing here knows the study; a job names the keys of the jobs it needs (`Job.needs`).

Launch order is by critical path: a job's expected duration plus the longest chain of jobs
waiting behind it, so that the long chains (a training, then the comparisons that read its
model) start first and the short jobs fill the slots at the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from runner.jobs import Job

# What a job of each phase is expected to take (seconds) when the ledger has no history of its
# phase: a training, a reconstruction and a comparison on one GPU of the study. Only their
# ratios matter: they order the first run.
DEFAULT_SECONDS = {"E": 3600.0, "F": 600.0, "G": 60.0}


class GraphError(Exception):
    """The jobs cannot form a graph that runs: a cycle, or a need that names no job."""


def dependents(jobs: Iterable[Job]) -> dict[str, list[str]]:
    """Per job key, the keys of the jobs that need it."""
    behind: dict[str, list[str]] = {}
    for job in jobs:
        for need in job.needs:
            behind.setdefault(need, []).append(job.key)
    return behind


def topological(jobs: list[Job]) -> list[Job]:
    """The jobs with every job after all it needs (plan order kept where free); GraphError names
    a cycle or an unknown need."""
    by_key = {job.key: job for job in jobs}
    for job in jobs:
        for need in job.needs:
            if need not in by_key:
                raise GraphError(f"job {job.key} needs {need}, which is not planned")
    done: set[str] = set()
    order: list[Job] = []
    visiting: list[str] = []

    def visit(job: Job) -> None:
        if job.key in done:
            return
        if job.key in visiting:
            cycle = visiting[visiting.index(job.key):] + [job.key]
            raise GraphError("the jobs' needs form a cycle: " + " -> ".join(cycle)
                             + "; check phase_needs in the config")
        visiting.append(job.key)
        for need in job.needs:
            visit(by_key[need])
        visiting.pop()
        done.add(job.key)
        order.append(job)

    for job in jobs:
        visit(job)
    return order


def estimates(jobs: list[Job], durations: dict[str, float]) -> tuple[dict[str, float], set[str]]:
    """Per job key, its expected seconds: its own latest duration, else the longest one its phase
    has in `durations` (a job never run may be long), else the phase's default. Also the keys
    whose estimate is not their own."""
    longest: dict[str, float] = {}
    for job in jobs:
        if job.key in durations:
            longest[job.phase] = max(longest.get(job.phase, 0.0), durations[job.key])
    guessed = {job.key for job in jobs if job.key not in durations}
    return ({job.key: durations.get(job.key, longest.get(job.phase, DEFAULT_SECONDS.get(job.phase, 60.0)))
             for job in jobs}, guessed)


def critical_paths(jobs: list[Job], seconds: dict[str, float]) -> dict[str, float]:
    """Per job key: its expected seconds plus those of the longest chain of jobs that need it
    (among `jobs`)."""
    behind = dependents(jobs)
    path: dict[str, float] = {}
    for job in reversed(topological(jobs)):
        path[job.key] = seconds[job.key] + max((path[k] for k in behind.get(job.key, ()) if k in path),
                                               default=0.0)
    return path


def launch_order(jobs: list[Job], durations: dict[str, float]) -> list[Job]:
    """The jobs by critical path, longest first; among equals, a job whose duration is a guess
    first (running it teaches the next run), then plan order. Without needs this is longest
    first with the never-run jobs leading. Needs outside `jobs` (already done) are ignored."""
    keys = {job.key for job in jobs}
    among = [replace(job, needs=tuple(n for n in job.needs if n in keys)) for job in jobs]
    seconds, guessed = estimates(among, durations)
    path = critical_paths(among, seconds)
    position = {job.key: i for i, job in enumerate(jobs)}
    return sorted(jobs, key=lambda job: (-path[job.key], job.key not in guessed, position[job.key]))
