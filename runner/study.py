"""The ptychography study: Phase C-F artifact folders -> one Job per (dose, view, split).

The only module that knows doses, views, splits and the compare_models command line.
A job whose input is missing is still planned, as blocked, naming the path it lacks.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from runner import graph, upstream
from runner.commands import fingerprint, flag_value, script_hash, script_of
from runner.config import Settings, SuccessRule
from runner.jobs import FailureClass, Job, MetricsCheck
from runner.npzmeta import NpzEntryError, read_npz_string

VIEWS = ("dense", "sparse")
SPLITS = ("train", "test")
TEST_DATA_SOURCES = ("phase_c", "phase_d")  # where a view's test NPZ comes from
METADATA_FIELDS = ("selection_strategy", "acceptance_rate", "spacing_threshold", "n_accepted", "n_rejected")
# The arms a comparison scores, in the order tables show them; the deltas are PINN minus each other.
PINN = "PtychoPINN"
OTHER_ARMS = ("Baseline", "PtyChi")
EXPECTED_MODELS = (PINN, *OTHER_ARMS)
METRICS_FILE = "comparison_metrics.csv"
# The compare script's trivial floor (flat phase, constant amplitude), beside the three models.
FLOOR_FILE = "floor_metrics.csv"
FLOOR_MODEL = "FlatFloor"
RECONSTRUCTION_FILE = "ptychi_reconstruction.npz"
MAX_MANIFEST_BYTES = 16 << 20
MAX_TEXT = 200  # characters of a text field of the metadata
INT64 = 1 << 63  # SQLite's INTEGER range
DOSE_DIR = re.compile(r"^dose_(\d+)$")
CHUNK_FLAGS = ("--pinn-chunk-size", "--baseline-chunk-size")
OOM_CHUNK_START = 256  # the first out-of-memory retry of a command that set no chunk size
OOM_CHUNK_FLOOR = 1
EXIT_CLASSES = {3: FailureClass.CUDA_OOM}  # compare_models exits 3 when the GPU ran out of memory


class PlanError(Exception):
    """The study folders cannot be turned into a plan."""


def discover_doses(phase_c_root: Path) -> list[int]:
    doses = sorted(int(m.group(1)) for p in phase_c_root.iterdir()
                   if p.is_dir() and (m := DOSE_DIR.match(p.name)))
    if doses and doses[-1] >= INT64:
        raise PlanError(f"folder dose_{doses[-1]} in {phase_c_root}: the dose is out of range")
    if not doses:
        raise PlanError(f"no dose_<int> folders in {phase_c_root}; is --phase-c-root the Phase C output?")
    return doses


def read_json(path: Path) -> Any:
    """A manifest, size-checked before it is parsed."""
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise PlanError(f"manifest {path} is {size} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"manifest {path} is not valid JSON ({exc}); fix or remove it") from None


def _clean_metadata(raw: Any, source: Path) -> dict[str, Any]:
    """The Phase D fields, each checked (type, finite, in SQLite's range, short) before use."""
    if not isinstance(raw, dict):
        raise PlanError(f"Phase D metadata in {source} is not a JSON object")
    meta = {}
    for name in METADATA_FIELDS:
        value = raw.get(name)
        expected = str if name == "selection_strategy" else (int, float)
        problem = None
        if value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            problem = "has the wrong type"
        elif isinstance(value, float) and not math.isfinite(value):
            problem = "is not a finite number"
        elif isinstance(value, int) and not -INT64 <= value < INT64:
            problem = "is out of range"
        elif isinstance(value, str) and len(value) > MAX_TEXT:
            problem = f"is longer than {MAX_TEXT} characters"
        if problem:
            shown = f"{value!r:.60}" + ("..." if len(repr(value)) > 60 else "")
            raise PlanError(f"Phase D metadata in {source}: {name} = {shown} {problem}")
        meta[name] = value
    return meta


def _npz_metadata(path: Path) -> dict[str, Any] | None:
    try:
        text = read_npz_string(path, "_metadata")
    except NpzEntryError as exc:
        raise PlanError(f"{path}: _metadata cannot be read ({exc})") from None
    if text is None:
        return None
    try:
        return _clean_metadata(json.loads(text), path)
    except json.JSONDecodeError:
        raise PlanError(f"{path}: _metadata is not a JSON string; regenerate Phase D") from None


def _manifest_metadata(settings: Settings) -> dict[tuple[int, str, str], dict[str, Any]]:
    """Phase D metadata copied by Phase F into reconstruction_manifest.json, by condition."""
    path = settings.phase_f_root / "reconstruction_manifest.json"
    if not path.is_file():
        return {}
    data = read_json(path)
    results = data.get("execution_results", []) if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise PlanError(f"manifest {path}: execution_results must be a list")
    found = {}
    for entry in results:
        if isinstance(entry, dict) and {"dose", "view", "split"} <= entry.keys():
            try:
                key = (int(float(entry["dose"])), str(entry["view"]), str(entry["split"]))
            except (TypeError, ValueError, OverflowError):
                raise PlanError(f"manifest {path}: dose {entry['dose']!r} is not a number") from None
            found[key] = _clean_metadata(entry, path)
    return found


def _reconstruction_path(settings: Settings, dose: int, view: str, split: str) -> Path:
    legacy = Path(f"{settings.phase_f_root}/dose_{dose}_{view}_{split}/manifest.json")
    if os.path.isfile(legacy):
        data = read_json(legacy)
        output_dir = data.get("output_dir") if isinstance(data, dict) else None
        if not isinstance(output_dir, str) or not output_dir:
            raise PlanError(f"manifest {legacy} has no output_dir string")
        folder = Path(output_dir)
        folder = folder if folder.is_absolute() else settings.phase_f_root / folder
        return folder if folder.suffix == ".npz" else folder / RECONSTRUCTION_FILE
    return Path(f"{settings.phase_f_root}/dose_{dose}/{view}/{split}/{RECONSTRUCTION_FILE}")


def _model_problem(folder: str, checkpoint_name: str | None, what: str) -> str | None:
    if not os.path.isdir(folder):
        return f"missing {what} model folder {folder}"
    if checkpoint_name:
        if not os.path.isfile(os.path.join(folder, checkpoint_name)):
            return f"missing {what} checkpoint {os.path.join(folder, checkpoint_name)}"
    else:
        with os.scandir(folder) as entries:
            if next(entries, None) is None:
                return f"{what} model folder {folder} is empty"
    return None


def _walk_files(folder: str) -> list[str]:
    """The files `Path(folder).rglob('*')` finds (symlinked folders are not entered), in the
    order sorted() gives those paths (part by part)."""
    found: list[tuple[tuple[str, ...], str]] = []

    def visit(directory: str, parts: tuple[str, ...]) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir() and not entry.is_symlink():
                    visit(entry.path, (*parts, entry.name))
                elif entry.is_file():
                    found.append(((*parts, entry.name), entry.path))
    visit(folder, ())
    return [path for _, path in sorted(found)]


class _Inputs:
    """What a plan learns about input files and folders, each looked up once: many jobs share a
    model folder (the baseline of a dose serves four), and thousands of jobs are planned at once."""

    def __init__(self) -> None:
        self._signatures: dict[str, list[list]] = {}
        self._problems: dict[tuple[str, str], str | None] = {}

    def model_problem(self, folder: str, checkpoint_name: str | None, what: str) -> str | None:
        if (folder, what) not in self._problems:
            self._problems[folder, what] = _model_problem(folder, checkpoint_name, what)
        return self._problems[folder, what]

    def signature(self, paths: list[str]) -> list[list]:
        """Path, size and mtime of every input file (folders walked), as Nextflow hashes inputs."""
        entries = []
        for path in paths:
            if path not in self._signatures:
                self._signatures[path] = self._signature(path)
            entries += self._signatures[path]
        return entries

    @staticmethod
    def _signature(path: str) -> list[list]:
        entries = []
        for file in _walk_files(path) if os.path.isdir(path) else [path]:
            try:
                stat = os.stat(file)
            except FileNotFoundError:
                continue
            entries.append([file, stat.st_size, stat.st_mtime_ns])
        return entries


def compare_script(settings: Settings) -> Path | None:
    """The script file the compare command runs, so that editing it changes the fingerprint."""
    return script_of(settings.compare_cmd, settings.workdir)


def check_compare_command(settings: Settings) -> None:
    """Fail before launching anything when the compare command cannot possibly start."""
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
        if named and compare_script(settings) is None:
            raise PlanError(f"compare script {named[0]} not found from {settings.workdir}")


def _chosen(given: tuple[str, ...], allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    for value in given:
        if value not in allowed:
            raise PlanError(f"--{flag} {value!r} is not one of {', '.join(allowed)}")
    return tuple(v for v in allowed if v in given) if given else allowed  # the study's order


def npz_origin_by_view(given: tuple[str, ...]) -> dict[str, str]:
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


def plan(settings: Settings) -> list[Job]:
    """The jobs of the chosen phases for every condition the folders hold: E per (dose, model),
    F and G per (dose, view, split), in the study's order (E, F, G), each naming the jobs it
    needs. Raises PlanError for folders that make no plan, GraphError for a cycle."""
    views = _chosen(settings.views, VIEWS, "view")
    splits = _chosen(settings.splits, SPLITS, "split")
    sources = npz_origin_by_view(settings.test_data)
    found = discover_doses(settings.phase_c_root)
    for dose in settings.doses:
        if dose not in found:
            raise PlanError(f"--dose {dose} matches no dose_<int> folder in {settings.phase_c_root} "
                            f"(found {', '.join(map(str, found))})")
    doses = [d for d in found if not settings.doses or d in settings.doses]
    manifest_meta = _manifest_metadata(settings)
    inputs = _Inputs()
    build: dict[str, _Planned] = {}
    if "E" in settings.phases:
        train_hash = script_hash(settings.train_cmd, settings.workdir)
        for dose in doses:
            for model in (upstream.BASELINE, *views):
                build[f"E/dose_{dose}/{model}"] = _Planned("E", {"dose": dose, "view": model, "split": None}, partial(
                    upstream.training_job, settings, dose, model, script_hash=train_hash))
    if "F" in settings.phases:
        recon_hash = script_hash(settings.recon_cmd, settings.workdir)
        for dose in doses:
            for view in views:
                for split in splits:
                    meta = _metadata(upstream.existing_view_npz(settings, dose, view, split), manifest_meta,
                                     (dose, view, split))
                    build[f"F/dose_{dose}/{view}/{split}"] = _Planned(
                        "F", {"dose": dose, "view": view, "split": split},
                        partial(upstream.reconstruction_job, settings, dose, view, split, metadata=meta,
                                script_hash=recon_hash))
    if "G" in settings.phases:
        compare_hash = script_hash(settings.compare_cmd, settings.workdir)
        for dose in doses:
            for view in views:
                for split in splits:
                    build[f"dose_{dose}/{view}/{split}"] = _Planned(
                        "G", {"dose": dose, "view": view, "split": split},
                        partial(_g_job, settings, dose, view, split, sources[view], manifest_meta, compare_hash))
    return _linked(settings, build, inputs)


class _Planned(NamedTuple):
    """A job before it is made: its phase and condition (enough to find its needs), and how to
    make it, given the inputs its needs will produce."""

    phase: str
    condition: dict[str, Any]
    make: Callable[..., Job]


def _linked(settings: Settings, build: dict[str, _Planned], inputs: _Inputs) -> list[Job]:
    """Each job made once, with its needs (by settings.phase_needs, matched by condition), knowing
    which of its inputs a job of this run will make, and able to plan itself again from the files
    once its needs succeeded."""
    by_dose: dict[tuple[str, int], list[str]] = {}  # the candidates, so 10,000 jobs link in linear time
    for key, planned in build.items():
        by_dose.setdefault((planned.phase, planned.condition["dose"]), []).append(key)
    linked = []
    for key, (phase, condition, make) in build.items():
        needs = tuple(k for wanted in settings.phase_needs.get(phase, ())
                      for k in by_dose.get((wanted, condition["dose"]), ()) if _serves(build[k].condition, condition))
        if not needs:
            linked.append(make(inputs))
            continue
        produced = frozenset(upstream.produces(settings, build[k].phase, build[k].condition) for k in needs)
        linked.append(replace(make(inputs, produced=produced), needs=needs, replan=partial(_replanned, make, needs)))
    return graph.topological(linked)


def _replanned(make: Callable[..., Job], needs: tuple[str, ...]) -> Job:
    """The job planned again from the files as they are now (its needs have made them)."""
    return replace(make(_Inputs()), needs=needs)


def _serves(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether the outputs of the job of condition `a` are inputs of the job of condition `b`:
    same dose, same view (a baseline serves every view), and same split where both have one."""
    return a["dose"] == b["dose"] \
        and (a["view"] == b["view"] or upstream.BASELINE in (a["view"], b["view"])) \
        and (a.get("split") is None or b.get("split") is None or a["split"] == b["split"])


def _metadata(view_npz: str | None, manifest_meta: dict, condition: tuple[int, str, str]) -> dict[str, Any]:
    """The Phase D metadata of a condition: from its view file, else Phase F's manifest."""
    return (_npz_metadata(view_npz) if view_npz else None) or manifest_meta.get(condition) \
        or dict.fromkeys(METADATA_FIELDS)


def smaller_chunks(argv: tuple[str, ...], failure: FailureClass | None) -> tuple[str, ...] | None:
    """After an out-of-GPU-memory exit: the same command with both chunk sizes halved (or set to
    OOM_CHUNK_START when absent); None once both are at the floor."""
    if failure is not FailureClass.CUDA_OOM:
        return None
    argv, changed = list(argv), False
    for flag in CHUNK_FLAGS:
        # argparse lets the last occurrence win, in either '--flag N' or '--flag=N' form.
        places = [i for i, a in enumerate(argv) if a == flag or a.startswith(flag + "=")]
        if not places:
            argv += [flag, str(OOM_CHUNK_START)]
            changed = True
            continue
        i = places[-1]
        joined = argv[i] != flag
        try:
            current = int(argv[i].split("=", 1)[1] if joined else argv[i + 1])
        except (ValueError, IndexError):
            return None  # not a number we can halve: let --retries decide
        if current > OOM_CHUNK_FLOOR:
            smaller = str(max(OOM_CHUNK_FLOOR, current // 2))
            if joined:
                argv[i] = f"{flag}={smaller}"
            else:
                argv[i + 1] = smaller
            changed = True
    return tuple(argv) if changed else None


def _g_job(settings: Settings, dose: int, view: str, split: str, test_source: str, manifest_meta: dict,
           compare_hash: str, known: _Inputs, produced: frozenset[str] = frozenset()) -> Job:
    """G(dose, view, split): the comparison. An input in `produced` is made by a job this one
    needs, so its absence now does not block the job."""
    # Plain strings, not Path joins: a plan of 10,000 jobs builds 100,000 paths.
    e_root = f"{settings.phase_e_root}/dose_{dose}"
    pinn_dir, baseline_dir = f"{e_root}/{view}/gs2", f"{e_root}/baseline/gs1"
    view_npz = upstream.existing_view_npz(settings, dose, view, split)
    if test_source == "phase_d":
        test_data = view_npz or upstream.view_npz(settings, dose, view, split)
    else:
        test_data = f"{settings.phase_c_root}/dose_{dose}/patched_{split}.npz"
    reconstruction = upstream.reconstruction_npz(settings, dose, view, split) if "F" in settings.phases \
        else str(_reconstruction_path(settings, dose, view, split))
    output_dir = f"{settings.artifact_root}/dose_{dose}/{view}/{split}"

    problems = [known.model_problem(folder, settings.checkpoint_name, what) if folder not in produced else None
                for folder, what in ((pinn_dir, "PINN"), (baseline_dir, "baseline"))]
    problems += [f"missing test data {test_data}" if not os.path.isfile(test_data) else None,
                 f"missing reconstruction {reconstruction}"
                 if reconstruction not in produced and not os.path.isfile(reconstruction) else None]
    blocked = "; ".join(p for p in problems if p) or None

    metadata = _metadata(view_npz, manifest_meta, (dose, view, split))
    argv = (*settings.compare_cmd,
            "--pinn_dir", pinn_dir, "--baseline_dir", baseline_dir,
            "--test_data", test_data, "--output_dir", output_dir,
            "--ms-ssim-sigma", "1.0", "--tike_recon_path", reconstruction,
            "--register-ptychi-only", *settings.compare_args)
    inputs = known.signature([pinn_dir, baseline_dir, test_data, reconstruction])
    # A success by a laxer rule is not a metrics success.
    laxer = () if settings.success is SuccessRule.METRICS else (settings.success.value,)
    job_fingerprint = fingerprint(argv, inputs, compare_hash, *laxer)
    output = Path(output_dir)
    check = (MetricsCheck(output / METRICS_FILE, EXPECTED_MODELS, (output / FLOOR_FILE,))
             if settings.success is SuccessRule.METRICS else None)
    return Job(key=f"dose_{dose}/{view}/{split}", argv=argv, cwd=settings.workdir,
               output_dir=output, check=check,
               fingerprint=job_fingerprint, condition={"dose": dose, "view": view, "split": split},
               metadata=metadata, blocked_reason=blocked, exit_classes=EXIT_CLASSES,
               adapt_argv=smaller_chunks)


def comparison_inputs(settings: Settings, job: Job) -> dict[str, Any]:
    """One job as the reference Phase G listed it (STUDY.md §6), from the command it runs:
    `phase_c_npz` is the test data, the checkpoints are the model folders, and `phase_f_manifest`
    is the legacy per-split Phase F manifest when the study has one, else the reconstruction NPZ
    itself (`tike_recon_path` always names the NPZ)."""
    condition = job.condition
    legacy = (f"{settings.phase_f_root}/dose_{condition['dose']}_{condition['view']}_"
              f"{condition['split']}/manifest.json")
    reconstruction = flag_value(job.argv, "--tike_recon_path")
    sigma = flag_value(job.argv, "--ms-ssim-sigma")
    try:
        sigma_value: float | str | None = float(sigma) if sigma is not None else None
    except ValueError:
        sigma_value = sigma  # passed on as written; the compare script will refuse it
    return {"phase_c_npz": flag_value(job.argv, "--test_data"),
            "pinn_checkpoint": flag_value(job.argv, "--pinn_dir"),
            "baseline_checkpoint": flag_value(job.argv, "--baseline_dir"),
            "phase_f_manifest": legacy if os.path.isfile(legacy) else reconstruction,
            "tike_recon_path": reconstruction,
            "ms_ssim_sigma": sigma_value,
            "skip_registration": "--skip-registration" in job.argv,
            "register_ptychi_only": "--register-ptychi-only" in job.argv}
