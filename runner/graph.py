"""The jobs of a run as a graph: who needs whom, in which order they can run, which to start
first, and which jobs cannot run because a job they need cannot succeed.

Launch order is by critical path: a job's expected duration plus the longest chain of jobs
waiting behind it, so that the long chains (a long job, then the jobs that read what it made) start
first and the short jobs fill the slots at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace

from runner.jobs import Job

UNKNOWN_KIND_SECONDS = 60.0  # a job of a kind the study gave no default duration


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
            raise GraphError("the jobs' needs form a cycle: " + " -> ".join(cycle))
        visiting.append(job.key)
        for need in job.needs:
            visit(by_key[need])
        visiting.pop()
        done.add(job.key)
        order.append(job)

    for job in jobs:
        visit(job)
    return order


def blocked_by(key: str, why: str) -> str:
    """The one reason every job behind a job that cannot succeed is given: it names that job, what
    became of it, and (in `why`) where to read more."""
    return f"needs {key}, which {why}"


def spread_block(key: str, why: str, behind: Mapping[str, Iterable[str]],
                 reached: Callable[[str], bool] = lambda _: True) -> Iterator[tuple[str, str]]:
    """Every job waiting, directly or through others, for the job `key` that cannot succeed
    (`why`: 'failed (...)', 'is blocked (...)'), each with its reason: the same all the way down,
    naming the job where the chain broke. `reached(k)` says whether job `k` is still waiting
    (a job already done or already blocked is passed over, with what is behind it)."""
    reason = blocked_by(key, why)
    todo, seen = list(reversed(behind.get(key, ()))), set()
    while todo:  # depth first, in the order the jobs were planned
        waiting = todo.pop()
        if waiting in seen or not reached(waiting):
            continue
        seen.add(waiting)
        yield waiting, reason
        todo += reversed(behind.get(waiting, ()))


def estimates(jobs: list[Job], durations: dict[str, float],
              default_seconds: dict[str, float]) -> tuple[dict[str, float], set[str]]:
    """Per job key, its expected seconds: its own latest duration, else the longest one its kind
    has in `durations` (a job never run may be long), else its kind's default. Also the keys
    whose estimate is not their own."""
    longest: dict[str, float] = {}
    for job in jobs:
        if job.key in durations:
            longest[job.kind] = max(longest.get(job.kind, 0.0), durations[job.key])
    guessed = {job.key for job in jobs if job.key not in durations}
    return ({job.key: durations.get(job.key, longest.get(job.kind, default_seconds.get(job.kind, UNKNOWN_KIND_SECONDS)))
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


def launch_order(jobs: list[Job], durations: dict[str, float], default_seconds: dict[str, float]) -> list[Job]:
    """The jobs by critical path, longest first; among equals, a job whose duration is a guess
    first (running it teaches the next run), then plan order. Without needs this is longest
    first with the never-run jobs leading. Needs outside `jobs` (already done) are ignored."""
    keys = {job.key for job in jobs}
    among = [replace(job, needs=tuple(n for n in job.needs if n in keys)) for job in jobs]
    seconds, guessed = estimates(among, durations, default_seconds)
    path = critical_paths(among, seconds)
    position = {job.key: i for i, job in enumerate(jobs)}
    return sorted(jobs, key=lambda job: (-path[job.key], job.key not in guessed, position[job.key]))
