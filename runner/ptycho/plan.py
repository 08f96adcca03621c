"""The study's plan: its folders and settings -> the jobs of the chosen phases, E per (dose,
model, replicate), F per (dose, view, split), G per (dose, view, split, replicate), in the study's order (E, F, G; dose ascending, dense
before sparse, train before test), each naming the jobs it needs.

Doses are found by scanning Phase C's `dose_<int>` folders, not taken from a fixed list. A job
whose input is missing is still planned: the engine blocks it, naming the path it lacks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner.commands import script_hash, script_of
from runner.config import ConfigError
from runner.jobs import Job
from runner.ptycho import metadata, phases
from runner.ptycho.layout import BASELINE, RECONSTRUCTION_FILE, SPLITS, VIEWS, Layout
from runner.ptycho.phases import Hashes
from runner.ptycho.settings import StudySettings
from runner.study import PlanError

TEST_DATA_SOURCES = ("phase_c", "phase_d")  # where a view's test NPZ comes from
INT64 = 1 << 63  # SQLite's INTEGER range


def discover_doses(where: Layout) -> list[int]:
    doses = sorted(where.doses())
    if doses and doses[-1] >= INT64:
        raise PlanError(f"folder dose_{doses[-1]} in {where.phase_c}: the dose is out of range")
    if not doses:
        raise PlanError(f"no dose_<int> folders in {where.phase_c}; is --phase-c-root the Phase C output?")
    return doses


def _chosen(given: tuple[str, ...], allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    for value in given:
        if value not in allowed:
            raise PlanError(f"--{flag} {value!r} is not one of {', '.join(allowed)}")
    return tuple(v for v in allowed if v in given) if given else allowed  # the study's order


def data_sources(given: tuple[str, ...]) -> dict[str, str]:
    """Per view, the phase its test NPZ comes from: phase_c unless --test-data says otherwise."""
    sources = dict.fromkeys(VIEWS, "phase_c")
    for item in given:
        view, source = item.split("=", 1) if "=" in item else (None, item)
        if source not in TEST_DATA_SOURCES:
            raise PlanError(f"--test-data {source!r}: use phase_c or phase_d, optionally VIEW=SOURCE")
        for target in ([view] if view else VIEWS):
            if target not in VIEWS:
                raise PlanError(f"--test-data: unknown view {target!r}")
            sources[target] = source
    return sources


def reconstruction_path(where: Layout, dose: int, view: str, split: str) -> str:
    """The reconstruction a comparison reads when no job of the run makes it: the `output_dir` of
    the legacy per-split manifest when there is one, else the standard path."""
    legacy = where.legacy_manifest(dose, view, split)
    if not os.path.isfile(legacy):
        return where.reconstruction(dose, view, split)
    data = metadata.read_json(legacy)
    output_dir = data.get("output_dir") if isinstance(data, dict) else None
    if not isinstance(output_dir, str) or not output_dir:
        raise PlanError(f"manifest {legacy} has no output_dir string")
    folder = Path(output_dir)
    folder = folder if folder.is_absolute() else where.phase_f / folder
    return str(folder if folder.suffix == ".npz" else folder / RECONSTRUCTION_FILE)


def plan(settings: StudySettings) -> list[Job]:
    """The jobs of the chosen phases for every condition the folders hold, in the study's order,
    each with its needs (settings.phase_needs, matched by condition)."""
    where = settings.layout
    views = _chosen(settings.views, VIEWS, "view")
    splits = _chosen(settings.splits, SPLITS, "split")
    sources = data_sources(settings.test_data)
    found = discover_doses(where)
    for dose in settings.doses:
        if dose not in found:
            raise PlanError(f"--dose {dose} matches no dose_<int> folder in {where.phase_c} "
                            f"(found {', '.join(map(str, found))})")
    doses = [d for d in found if not settings.doses or d in settings.doses]
    in_manifest = metadata.from_manifest(where.reconstruction_manifest)
    hashes = Hashes(*(script_hash(cmd, settings.workdir) if phase in settings.phases else ""
                      for phase, cmd in (("E", settings.train_cmd), ("F", settings.recon_cmd),
                                         ("G", settings.compare_cmd))))

    read: dict[tuple[int, str, str], dict[str, Any]] = {}  # F and G of a condition share it

    def meta(dose: int, view: str, split: str) -> dict[str, Any]:
        if (dose, view, split) not in read:
            read[dose, view, split] = metadata.of_condition(where.view_file(dose, view, split), in_manifest,
                                                            (dose, view, split))
        return read[dose, view, split]

    axes = settings.axes
    jobs: list[Job] = []
    if "E" in settings.phases:
        jobs += [phases.training(settings, dose, model, hashes, replicate) for dose in doses
                 for model in (BASELINE, *views) for replicate in axes.of(model, views)]
    conditions = [(dose, view, split) for dose in doses for view in views for split in splits]
    if "F" in settings.phases:
        jobs += [phases.reconstruction(settings, *c, meta(*c), hashes) for c in conditions]
    if "G" in settings.phases:
        for dose, view, split in conditions:
            reconstruction = where.reconstruction(dose, view, split) if "F" in settings.phases \
                else reconstruction_path(where, dose, view, split)
            test_data = phases.comparison_data(where, dose, view, split, sources[view])
            jobs += [phases.comparison(settings, dose, view, split, test_data, reconstruction,
                                       meta(dose, view, split), hashes, replicate)
                     for replicate in axes.of(view, views)]
    return _linked(settings, jobs)


def _linked(settings: StudySettings, jobs: list[Job]) -> list[Job]:
    """Each job with the keys of the jobs it needs: of the phases its phase waits for, those whose
    condition serves its own. Candidates are grouped by (phase, dose): 10,000 jobs link in
    linear time."""
    by_dose: dict[tuple[str, int], list[Job]] = {}
    for job in jobs:
        by_dose.setdefault((job.kind, job.labels["dose"]), []).append(job)
    linked = []
    for job in jobs:
        needs = tuple(other.key for wanted in settings.phase_needs.get(job.kind, ())
                      for other in by_dose.get((wanted, job.labels["dose"]), ()) if _serves(other.labels, job.labels))
        linked.append(replace(job, needs=needs) if needs else job)
    return linked


def _serves(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether the outputs of the job of labels `a` are inputs of the job of labels `b`: same dose,
    same view (a training's model: the baseline serves every view), and same split, seed and
    training-set size where both have one (a reconstruction has no seed: it serves every seed)."""
    view_a, view_b = a.get("view", a.get("model")), b.get("view", b.get("model"))
    return a["dose"] == b["dose"] and (view_a == view_b or BASELINE in (view_a, view_b)) \
        and all(name not in a or name not in b or a[name] == b[name]
                for name in ("split", "seed", "train_size"))


def check_commands(settings: StudySettings) -> None:
    """Fail before launching anything when the comparisons' command cannot possibly start."""
    cmd = settings.compare_cmd
    program = cmd[0] if "/" in cmd[0] else shutil.which(cmd[0])
    if not program or not Path(program).is_file():
        raise PlanError(f"compare command {cmd[0]!r} not found; fix --compare-cmd")
    if "-m" in cmd[:-1]:
        module = cmd[cmd.index("-m") + 1]
        probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 3)"
        try:
            found = subprocess.run([program, "-c", probe, module], cwd=settings.workdir,
                                   capture_output=True, timeout=120).returncode
        except (OSError, subprocess.SubprocessError):
            return  # not a Python we can probe: let the attempts tell
        if found != 0:
            raise PlanError(f"the compare command cannot import {module} from {settings.workdir}; "
                            "run from the checkout that holds it or give --workdir / --compare-cmd")
    else:
        named = [token for token in cmd[1:] if token.endswith(".py")]
        if named and script_of(cmd, settings.workdir) is None:
            raise PlanError(f"compare script {named[0]} not found from {settings.workdir}")


def make_folders(settings: StudySettings) -> None:
    """The folders the run's trainings and reconstructions write into."""
    for phase, root in (("E", settings.layout.phase_e), ("F", settings.layout.phase_f)):
        if phase in settings.phases:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot make the Phase {phase} folder {root} ({exc.strerror})") from None
