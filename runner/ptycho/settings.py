"""The study's settings: its folders (PtychoPINN's --hub, one --study-root, or each phase's), which
conditions and phases to run,
and the commands of Phases E, F and G. Read from the `[study]` table of a config file and the
flags, with the engine's value parsers; every mistake is one ConfigError line."""

from __future__ import annotations

import argparse
import enum
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import config
from runner.config import ConfigError
from runner.ptycho import replicates
from runner.ptycho.layout import PHASE_FOLDERS, VIEWS, Layout
from runner.ptycho.replicates import Axes


class SuccessRule(str, enum.Enum):
    """What proves a comparison succeeded."""

    METRICS = "metrics"  # exit 0 and a complete metrics file written by the attempt (the default)
    EXIT_CODE = "exit-code"  # exit 0 alone (commands that write no metrics, e.g. benchmarks)


DEFAULT_COMPARE_CMD = (sys.executable, "-m", "scripts.compare_models")
DEFAULT_TRAIN_CMD = (sys.executable, "scripts/train_model.py")
DEFAULT_RECON_CMD = (sys.executable, "scripts/reconstruct_ptychi.py")
# The study's phases the runner runs: E trains the models, F reconstructs with Pty-Chi, G compares.
PHASES = ("E", "F", "G")
# By default a comparison waits for the models it compares and the reconstruction it scores.
DEFAULT_PHASE_NEEDS = {"G": ("E", "F")}
CHECKOUT = Path(__file__).resolve().parents[2]  # the checkout holding scripts/compare_models.py


@dataclass(frozen=True)
class StudySettings:
    layout: Layout
    workdir: Path  # where every command runs
    doses: tuple[int, ...] = ()  # empty: every dose_<int> folder found
    # Filters and choices as given; the plan checks them against the study's vocabulary.
    views: tuple[str, ...] = ()  # empty: every view
    splits: tuple[str, ...] = ()  # empty: every split
    phases: tuple[str, ...] = ("G",)
    compare_cmd: tuple[str, ...] = DEFAULT_COMPARE_CMD
    compare_args: tuple[str, ...] = ()
    train_cmd: tuple[str, ...] = DEFAULT_TRAIN_CMD
    train_args: tuple[str, ...] = ()
    recon_cmd: tuple[str, ...] = DEFAULT_RECON_CMD
    recon_args: tuple[str, ...] = ()
    # Per phase, the phases whose jobs its jobs wait for (matched by dose, view and split).
    phase_needs: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_PHASE_NEEDS))
    test_data: tuple[str, ...] = ()  # SOURCE or VIEW=SOURCE: where each view's test NPZ comes from
    checkpoint_name: str | None = None
    success: SuccessRule = SuccessRule.METRICS
    axes: Axes = field(default_factory=Axes)  # the networks' replicate seeds and training-set sizes

    @property
    def resumable_training(self) -> bool:
        """The training command is this project's scripts/train_model.py: it checkpoints, keeps a
        progress file and saves on SIGTERM or SIGUSR1 (PtychoPINN's own training script does not)."""
        return any(Path(word).name == "train_model.py" or word == "scripts.train_model" for word in self.train_cmd)

    @property
    def artifact_root(self) -> Path:
        return self.layout.artifacts

    @property
    def root(self) -> Path:
        return self.layout.study_root


# The TOML type of each key of the [study] table (a list holds values of the scalar types).
TOML_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    **{key: (config.TEXT, "a path") for key in ("hub", "study_root", "phase_c_root", "phase_d_root", "phase_e_root",
                                                "phase_f_root", "artifact_root", "workdir")},
    **{key: ((str, list), "a string or a list of strings") for key in (
        "compare_cmd", "compare_args", "compare_arg", "views", "view", "splits", "split", "phases", "phase",
        "train_cmd", "train_args", "train_arg", "recon_cmd", "recon_args", "recon_arg")},
    "phase_needs": ((dict,), "a table such as {G = [\"E\", \"F\"]}"),
    **{key: ((int, str, list), "a number or a list of numbers") for key in ("doses", "dose", "seeds", "train_sizes")},
    "replicates": ((int, str, dict), "a number, or a table such as {dense = 3, sparse = 1}"),
    "test_data": ((str, list, dict), "phase_c, phase_d, a list of VIEW=SOURCE or a table"),
    "checkpoint_name": (config.TEXT, "a file name"),
    "success": (config.TEXT, "one of " + ", ".join(m.value for m in SuccessRule)),
}


def add_run_options(run: argparse.ArgumentParser) -> None:
    where = run.add_argument_group("study folders")
    where.add_argument("--hub", help="PtychoPINN's hub: HUB/data/phase_c .. phase_f, HUB/analysis, HUB/cli "
                                     "(sets the roots below)")
    where.add_argument("--study-root", help="a study folder: a hub, or one holding phase_c .. phase_f and "
                                            "analysis (found by looking)")
    for phase in "cdef":
        where.add_argument(f"--phase-{phase}-root", help=f"Phase {phase.upper()} output folder")
    where.add_argument("--artifact-root", help="where comparison outputs, logs and the ledger go")
    pick = run.add_argument_group("which jobs")
    pick.add_argument("--dose", action="append", help="only this dose (repeatable)")
    pick.add_argument("--view", action="append", help="dense or sparse (repeatable)")
    pick.add_argument("--split", action="append", help="train or test (repeatable)")
    pick.add_argument("--seeds", help="the networks' training seeds, e.g. 42,43,44: one training and one "
                                      "comparison per seed (replicates)")
    pick.add_argument("--replicates", help="how many seeds, counted from the --seed of the training arguments: "
                                           "N, or per view, e.g. dense=3,sparse=1")
    pick.add_argument("--train-sizes", help="training-set sizes in patterns, e.g. 256,1024,all: one training and "
                                            "one comparison per size (all: the whole training split, the default)")
    pick.add_argument("--phases", help="the study's phases to run as one graph of jobs: E (training), F "
                                       "(Pty-Chi reconstruction), G (comparison, the default), e.g. E,F,G")
    cmd = run.add_argument_group("the commands")
    cmd.add_argument("--compare-cmd", help="command prefix, split like a shell would "
                                           "(default: python -m scripts.compare_models)")
    cmd.add_argument("--workdir", help="working directory of each job (default: current folder)")
    cmd.add_argument("--compare-arg", action="append", dest="compare_args", metavar="ARG",
                     help="extra argument for every comparison (repeatable)")
    cmd.add_argument("--train-cmd", help="Phase E command prefix (default: python scripts/train_model.py); "
                                         "PtychoPINN's training flags follow it")
    cmd.add_argument("--train-arg", action="append", dest="train_args", metavar="ARG",
                     help="extra argument for every training (repeatable)")
    cmd.add_argument("--recon-cmd", help="Phase F command prefix (default: python scripts/reconstruct_ptychi.py)")
    cmd.add_argument("--recon-arg", action="append", dest="recon_args", metavar="ARG",
                     help="extra argument for every reconstruction (repeatable)")
    cmd.add_argument("--test-data", action="append",
                     help="phase_c or phase_d, or VIEW=SOURCE: where each view's test NPZ comes from")
    cmd.add_argument("--checkpoint-name", help="model file that must exist in each model folder")
    cmd.add_argument("--success", choices=("metrics", "exit-code"),
                     help="what proves a comparison succeeded: exit 0 and a complete "
                          "comparison_metrics.csv (metrics, the default) or exit 0 alone (exit-code)")


def _dose(value: Any) -> int:
    try:
        dose = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--dose must be a number such as 1000 or 1e3, got {value!r}") from None
    if dose <= 0 or dose != int(dose):
        raise ConfigError(f"--dose must be a positive whole number of photons, got {value!r}")
    return int(dose)


def _phase_list(value: Any, name: str) -> tuple[str, ...]:
    """Phases given as 'E,F,G', a list, or repeated flags, checked, in the study's order."""
    words = [w.strip().upper() for item in config.words(value) for w in str(item).split(",") if w.strip()]
    for word in words:
        if word not in PHASES:
            raise ConfigError(f"{name}: unknown phase {word!r}; the runner runs phases {', '.join(PHASES)} "
                              "(C and D make the data: scripts/make_synthetic_study.py)")
    return tuple(p for p in PHASES if p in words)


def _phase_needs(value: Any, phases: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The default needs, with each phase the table names replaced by its list; a cycle among the
    run's phases is refused."""
    needs = dict(DEFAULT_PHASE_NEEDS)
    for phase, needed in (value or {}).items():
        key = _phase_list([phase], "phase_needs")
        if len(key) != 1:
            raise ConfigError(f"phase_needs: {phase!r} is not one phase; write e.g. F = [\"E\"]")
        needs[key[0]] = _phase_list(needed, f"phase_needs {phase}")

    def cycle(phase: str, path: list[str]) -> list[str] | None:
        if phase in path:
            return path[path.index(phase):] + [phase]
        for needed in needs.get(phase, ()):
            if needed in phases and (found := cycle(needed, [*path, phase])):
                return found
        return None
    for phase in phases:
        found = cycle(phase, [])
        if found:
            raise ConfigError(f"phase_needs: the phases {' -> '.join(found)} wait for each other in a cycle; "
                              "remove one of these needs")
    return needs


def _default_workdir(cwd: Path, compare_cmd: tuple) -> Path:
    """The current folder, unless the default command's script is not there but is in the
    checkout this runner runs from (so `runner run` works from any folder)."""
    script = Path("scripts") / "compare_models.py"
    if tuple(compare_cmd) == DEFAULT_COMPARE_CMD and not (cwd / script).is_file() \
            and (CHECKOUT / script).is_file():
        return CHECKOUT
    return cwd


def build(file: dict[str, Any], flags: dict[str, Any], config_file: Path | None, cwd: Path) -> StudySettings:
    """The settings from the config file's values (paths relative to the file) and the flags
    (relative to `cwd`); flags win."""
    if config_file is not None:
        config.check_types(file, TOML_TYPES, config_file)
    base = config_file.parent if config_file is not None else cwd
    merged = {**file, **flags}

    def root(name: str, default: Path | None) -> Path | None:
        if merged.get(name):
            return config.path(merged[name], f"--{name.replace('_', '-')}", cwd if name in flags else base)
        return default

    hub, folder = root("hub", None), root("study_root", None)
    if hub is not None and folder is not None:
        raise ConfigError("give --hub or --study-root, not both")
    if hub is not None and hub.exists() and not hub.is_dir():
        raise ConfigError(f"--hub {hub} is not a folder")
    found = Layout.of_hub(hub) if hub is not None else Layout.found_in(folder) if folder is not None else None
    phase = {name: root(f"{name}_root", getattr(found, name) if found else None) for name in PHASE_FOLDERS}
    artifact = root("artifact_root", found.artifacts if found else None)
    for name, value in [("phase-c-root", phase["phase_c"]), ("phase-e-root", phase["phase_e"]),
                        ("phase-f-root", phase["phase_f"]), ("artifact-root", artifact)]:
        if value is None:
            raise ConfigError(f"--{name} is required (or --hub, or --study-root holding phase_c ... phase_f)")
    phases = _phase_list(merged.get("phases") or merged.get("phase") or "G", "--phases")
    for name in ("phase_c", "phase_e", "phase_f"):
        made_here = name[-1].upper() in phases  # a phase of this run makes its folder
        read_here = name == "phase_c" or "G" in phases  # the comparisons read the models and reconstructions
        if (made_here or read_here) and not phase[name].is_dir() and not (made_here and not phase[name].exists()):
            raise ConfigError(f"--{name.replace('_', '-')}-root {phase[name]} is not a folder")
    if phase["phase_d"] is not None and not phase["phase_d"].is_dir():
        if "phase_d_root" in merged:
            raise ConfigError(f"--phase-d-root {phase['phase_d']} is not a folder")
        phase["phase_d"] = None  # optional: only metadata (and phase_d test data) come from it

    compare_cmd = config.command(merged, "compare_cmd", DEFAULT_COMPARE_CMD)
    workdir = root("workdir", _default_workdir(cwd, compare_cmd))
    if not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is not a folder")
    doses = merged.get("doses") or merged.get("dose") or ()
    doses = [doses] if isinstance(doses, (int, float, str)) else doses
    train_args = config.arguments(merged, "train_arg")
    return StudySettings(
        layout=Layout(phase["phase_c"], phase["phase_d"], phase["phase_e"], phase["phase_f"], artifact,
                      found.root if found else None),
        workdir=workdir,
        doses=tuple(sorted({_dose(d) for d in doses})),
        views=config.words(merged.get("views") or merged.get("view") or ()),
        splits=config.words(merged.get("splits") or merged.get("split") or ()),
        phases=phases,
        compare_cmd=compare_cmd, compare_args=config.arguments(merged, "compare_arg"),
        train_cmd=config.command(merged, "train_cmd", DEFAULT_TRAIN_CMD),
        train_args=train_args,
        recon_cmd=config.command(merged, "recon_cmd", DEFAULT_RECON_CMD),
        recon_args=config.arguments(merged, "recon_arg"),
        phase_needs=_phase_needs(merged.get("phase_needs"), phases),
        test_data=config.words(merged.get("test_data") or ()),
        checkpoint_name=merged.get("checkpoint_name"),
        success=config.choice(merged, "success", SuccessRule, SuccessRule.METRICS),
        axes=replicates.build(merged, train_args, VIEWS),
    )
