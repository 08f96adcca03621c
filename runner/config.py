"""The settings of one `run`: a TOML file (--config) overlaid by command-line flags, validated
into one frozen dataclass. Every user mistake here raises ConfigError with a one-line message."""

from __future__ import annotations

import enum
import os
import shlex
import sys
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# sbatch options the runner sets itself on every submission.
OWN_SBATCH_OPTIONS = {"--output", "-o", "--error", "-e", "--chdir", "-D", "--job-name", "-J",
                      "--wrap", "--parsable", "--open-mode"}


class Backend(str, enum.Enum):
    """Where attempts run."""

    LOCAL = "local"  # child processes of this runner
    SLURM = "slurm"  # one sbatch job per attempt


class SuccessRule(str, enum.Enum):
    """What proves an attempt succeeded."""

    METRICS = "metrics"  # exit 0 and a complete metrics file written by the attempt (the default)
    EXIT_CODE = "exit-code"  # exit 0 alone (commands that write no metrics, e.g. benchmarks)


class Order(str, enum.Enum):
    """Launch order."""

    LONGEST_FIRST = "longest-first"  # by the durations of earlier successes, never-run jobs first
    PLAN = "plan"  # the study's plan order


class OnInterrupt(str, enum.Enum):
    """What a stopped runner does with its SLURM jobs."""

    CANCEL = "cancel"
    LEAVE = "leave"  # keep running, for the next run to re-attach


# Settings whose value is one of an enum's, with the flag that names them.
CHOICES: dict[str, type[enum.Enum]] = {"backend": Backend, "success": SuccessRule, "order": Order,
                                       "on_interrupt": OnInterrupt}
DEFAULT_COMPARE_CMD = (sys.executable, "-m", "scripts.compare_models")
DEFAULT_TRAIN_CMD = (sys.executable, "scripts/train_model.py")
DEFAULT_RECON_CMD = (sys.executable, "scripts/reconstruct_ptychi.py")
# The study's phases the runner can run: E trains the models, F reconstructs with Pty-Chi, G compares.
PHASES = ("E", "F", "G")
# By default a comparison waits for the models it compares and the reconstruction it scores.
DEFAULT_PHASE_NEEDS = {"G": ("E", "F")}


class ConfigError(Exception):
    """A setting the user gave is wrong."""


@dataclass(frozen=True)
class Settings:
    phase_c_root: Path
    phase_d_root: Path | None
    phase_e_root: Path
    phase_f_root: Path
    artifact_root: Path
    ledger: Path
    doses: tuple[int, ...] = ()  # empty: every dose_<int> folder found
    # Filters and choices as given; the study plan checks them against its vocabulary.
    views: tuple[str, ...] = ()  # empty: every view
    splits: tuple[str, ...] = ()  # empty: every split
    compare_cmd: tuple[str, ...] = DEFAULT_COMPARE_CMD
    compare_args: tuple[str, ...] = ()
    workdir: Path = Path.cwd()
    test_data: tuple[str, ...] = ()  # SOURCE or VIEW=SOURCE: where each view's test NPZ comes from
    checkpoint_name: str | None = None
    phases: tuple[str, ...] = ("G",)
    train_cmd: tuple[str, ...] = DEFAULT_TRAIN_CMD
    train_args: tuple[str, ...] = ()
    recon_cmd: tuple[str, ...] = DEFAULT_RECON_CMD
    recon_args: tuple[str, ...] = ()
    # Per phase, the phases whose jobs its jobs wait for (matched by dose, view and split).
    phase_needs: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_PHASE_NEEDS))
    gpus: str = "auto"
    jobs_per_gpu: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 1))
    max_parallel: int | None = None
    timeout: float | None = None
    grace: float = 10.0
    retries: int = 0
    success: SuccessRule = SuccessRule.METRICS
    order: Order = Order.LONGEST_FIRST
    force: bool = False
    only_failed: bool = False
    dry_run: bool = False
    backend: Backend = Backend.LOCAL
    partition: str | None = None  # the SLURM settings below apply with backend 'slurm'
    time: str | None = None
    account: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    sbatch_args: tuple[str, ...] = ()
    on_interrupt: OnInterrupt = OnInterrupt.CANCEL


# Keys accepted in the TOML file: the flag names with underscores.
TOML_KEYS = {f.name for f in fields(Settings)} | {"study_root", "compare_arg", "dose", "view", "split",
                                                  "sbatch_arg", "train_arg", "recon_arg", "phase"}


# The TOML type each key may have (a list holds values of the scalar types).
_TEXT, _NUMBER = (str,), (int, float)
TOML_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    **{key: (_TEXT, "a path") for key in ("study_root", "phase_c_root", "phase_d_root", "phase_e_root",
                                          "phase_f_root", "artifact_root", "ledger", "workdir")},
    **{key: ((str, list), "a string or a list of strings") for key in ("compare_cmd", "compare_args",
                                                                       "compare_arg", "views", "view",
                                                                       "splits", "split", "phases", "phase",
                                                                       "train_cmd", "train_args", "train_arg",
                                                                       "recon_cmd", "recon_args", "recon_arg")},
    "phase_needs": ((dict,), "a table such as {G = [\"E\", \"F\"]}"),
    "jobs_per_gpu": ((int, dict), "an integer or a table such as {E = 1, F = 2, G = 4}"),
    **{key: ((int, str, list), "a number or a list of numbers") for key in ("doses", "dose")},
    **{key: ((int,), "an integer") for key in ("max_parallel", "retries")},
    **{key: (_NUMBER, "a number of seconds") for key in ("timeout", "grace")},
    **{key: ((bool,), "true or false") for key in ("force", "only_failed", "dry_run")},
    "test_data": ((str, list, dict), "phase_c, phase_d, a list of VIEW=SOURCE or a table"),
    "checkpoint_name": (_TEXT, "a file name"),
    "gpus": ((str, int), "a string such as \"auto\" or \"0,1\""),
    **{key: (_TEXT, "one of " + ", ".join(m.value for m in choices)) for key, choices in CHOICES.items()},
    **{key: ((str, int), "a word or a number") for key in ("partition", "time", "account", "mem")},
    "cpus_per_task": ((int,), "an integer"),
    **{key: ((str, list), "a string or a list of strings") for key in ("sbatch_args", "sbatch_arg")},
}


def _check_type(key: str, value: Any, path: Path) -> None:
    kinds, expected = TOML_TYPES[key]
    items = value if isinstance(value, list) else value.values() if isinstance(value, dict) else [value]
    if key == "phase_needs":  # a table of lists
        items = [v for listed in items for v in (listed if isinstance(listed, list) else [listed])]
    scalar_ok = all(isinstance(v, (str, int, float)) for v in items)
    bool_ok = not isinstance(value, bool) or bool in kinds
    if not (isinstance(value, kinds) and scalar_ok and bool_ok):
        raise ConfigError(f"config file {path}: {key} = {value!r:.60} should be {expected}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:  # a folder, unreadable, ...
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - TOML_KEYS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown key {unknown[0]!r}; "
                          f"known keys are the flag names with underscores")
    for key, value in data.items():
        _check_type(key, value, path)
    return data


def _path(value: Any, name: str, base: Path) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"{name} must be a folder path")
    path = Path(value).expanduser()
    return (base / path).resolve() if not path.is_absolute() else path.resolve()


def _int(value: Any, name: str, minimum: int) -> int:
    try:
        number = int(float(value)) if isinstance(value, str) else value
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if not isinstance(number, int) or isinstance(number, bool) or number < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


def _dose(value: Any) -> int:
    try:
        dose = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--dose must be a number such as 1000 or 1e3, got {value!r}") from None
    if dose <= 0 or dose != int(dose):
        raise ConfigError(f"--dose must be a positive whole number of photons, got {value!r}")
    return int(dose)


def _texts(value: Any) -> tuple[str, ...]:
    """A flag or key that takes one or more words, as a tuple of them."""
    if isinstance(value, dict):  # a TOML table {VIEW = SOURCE}
        return tuple(f"{k}={v}" for k, v in value.items())
    return tuple(str(v) for v in ([value] if isinstance(value, str) else value))


def _choice(merged: dict[str, Any], key: str) -> enum.Enum:
    """The enum member a choice setting names (its default when absent)."""
    kind = CHOICES[key]
    value = merged.get(key, getattr(Settings, key).value)
    try:
        return kind(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ConfigError(f"--{key.replace('_', '-')} {value!r} is not one of {allowed}") from None


def _slurm(merged: dict[str, Any]) -> dict[str, Any]:
    """The backend and its SLURM settings, checked."""
    backend, on_interrupt = _choice(merged, "backend"), _choice(merged, "on_interrupt")
    values = {}
    for name in ("partition", "time", "account", "mem"):
        value = merged.get(name)
        if value is not None and (not str(value).strip() or any(c.isspace() for c in str(value))):
            raise ConfigError(f"--{name.replace('_', '-')} must be one word, got {value!r}")
        values[name] = None if value is None else str(value)
    sbatch_args = merged.get("sbatch_args") or merged.get("sbatch_arg") or ()
    if isinstance(sbatch_args, str):
        sbatch_args = shlex.split(sbatch_args)
    for arg in sbatch_args:
        if str(arg).split("=", 1)[0] in OWN_SBATCH_OPTIONS:
            raise ConfigError(f"--sbatch-arg {arg!r}: the runner sets {str(arg).split('=', 1)[0]} itself")
    slurm_given = [n for n in ("partition", "time", "account", "cpus_per_task", "mem") if merged.get(n) is not None]
    if backend is Backend.LOCAL and (slurm_given or sbatch_args):
        name = slurm_given[0] if slurm_given else "sbatch_arg"
        raise ConfigError(f"--{name.replace('_', '-')} applies to --backend slurm only")
    if backend is Backend.SLURM and merged.get("timeout") is not None:
        raise ConfigError("--timeout counts queueing time on SLURM; give SLURM's limit with --time instead")
    cpus = merged.get("cpus_per_task")
    return dict(values, backend=backend, on_interrupt=on_interrupt,
                cpus_per_task=_int(cpus, "--cpus-per-task", 1) if cpus is not None else None,
                sbatch_args=tuple(str(a) for a in sbatch_args))


def _command(merged: dict[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A command prefix given as a list or as one string split like a shell would."""
    cmd = merged.get(key) or default
    flag = f"--{key.replace('_', '-')}"
    if isinstance(cmd, str):
        try:
            cmd = shlex.split(cmd)
        except ValueError as exc:
            raise ConfigError(f"{flag} cannot be split: {exc}") from None
    if not cmd:
        raise ConfigError(f"{flag} is empty")
    return tuple(str(c) for c in cmd)


def _args(merged: dict[str, Any], key: str) -> tuple[str, ...]:
    """Extra arguments (`train_args` or repeated `--train-arg`), a string split like a shell would."""
    args = merged.get(f"{key}s") or merged.get(key) or ()
    if isinstance(args, str):
        args = shlex.split(args)
    return tuple(str(a) for a in args)


def _phase_list(value: Any, name: str) -> tuple[str, ...]:
    """Phases given as 'E,F,G', a list, or repeated flags, checked, in the study's order."""
    words = [w.strip().upper() for item in _texts(value) for w in str(item).split(",") if w.strip()]
    for word in words:
        if word not in PHASES:
            raise ConfigError(f"{name}: unknown phase {word!r}; the runner runs phases {', '.join(PHASES)} "
                              "(C and D make the data: scripts/make_synthetic_study.py)")
    return tuple(p for p in PHASES if p in words)


def _jobs_per_gpu(value: Any) -> dict[str, int]:
    """`4` (every phase), a table {E = 1, G = 4}, or flags 'E=1,F=2' / '4'; unnamed phases get 1."""
    if isinstance(value, dict):
        given = value
    else:
        items = [w.strip() for item in _texts([value] if isinstance(value, (int, str)) else value)
                 for w in str(item).split(",") if w.strip()]
        if len(items) == 1 and "=" not in items[0]:
            number = _int(items[0], "--jobs-per-gpu", 1)
            return dict.fromkeys(PHASES, number)
        given = {}
        for item in items:
            if "=" not in item:
                raise ConfigError(f"--jobs-per-gpu {item!r}: give one number or PHASE=N pairs such as E=1,F=2,G=4")
            phase, number = item.split("=", 1)
            given[phase.strip()] = number.strip()
    result = dict.fromkeys(PHASES, 1)
    for phase, number in given.items():
        if str(phase).upper() not in PHASES:
            raise ConfigError(f"jobs_per_gpu: unknown phase {phase!r}; use {', '.join(PHASES)}")
        result[str(phase).upper()] = _int(number, f"jobs_per_gpu {phase}", 1)
    return result


def _phase_needs(value: Any) -> dict[str, tuple[str, ...]]:
    """The default needs, with each phase the table names replaced by its list."""
    needs = dict(DEFAULT_PHASE_NEEDS)
    for phase, needed in (value or {}).items():
        key = _phase_list([phase], "phase_needs")
        if len(key) != 1:
            raise ConfigError(f"phase_needs: {phase!r} is not one phase; write e.g. F = [\"E\"]")
        needs[key[0]] = _phase_list(needed, f"phase_needs {phase}")
    return needs


def _default_workdir(cwd: Path, compare_cmd: tuple) -> Path:
    """The current folder, unless the default command's script is not there but is in the
    checkout this runner runs from (so `runner run` works from any folder)."""
    script = Path("scripts") / "compare_models.py"
    checkout = Path(__file__).resolve().parent.parent
    if tuple(compare_cmd) == DEFAULT_COMPARE_CMD and not (cwd / script).is_file() \
            and (checkout / script).is_file():
        return checkout
    return cwd


def build_settings(cli: dict[str, Any], cwd: Path | None = None) -> Settings:
    """Merge the TOML file named by cli['config'] (if any) with the flags; flags win."""
    cwd = cwd or Path.cwd()
    merged: dict[str, Any] = {}
    base = cwd
    if cli.get("config"):
        config_path = _path(cli["config"], "--config", cwd)
        merged.update(read_toml(config_path))
        base = config_path.parent  # paths in the file are relative to the file
    flag_values = {k: v for k, v in cli.items() if v is not None and v is not False and v != []}
    merged.update(flag_values)

    def root(name: str, default: Path | None) -> Path | None:
        if merged.get(name):
            return _path(merged[name], f"--{name.replace('_', '-')}", base if name not in flag_values else cwd)
        return default

    study = root("study_root", None)
    phase = {p: root(f"{p}_root", study / p if study else None) for p in ("phase_c", "phase_d", "phase_e", "phase_f")}
    artifact = root("artifact_root", study / "analysis" if study else None)
    for name, value in [("phase-c-root", phase["phase_c"]), ("phase-e-root", phase["phase_e"]),
                        ("phase-f-root", phase["phase_f"]), ("artifact-root", artifact)]:
        if value is None:
            raise ConfigError(f"--{name} is required (or --study-root holding phase_c ... phase_f)")
    phases = _phase_list(merged.get("phases") or merged.get("phase") or "G", "--phases")
    for name in ("phase_c", "phase_e", "phase_f"):
        made_here = name[-1].upper() in phases  # a phase of this run makes its folder
        if not phase[name].is_dir() and not (made_here and not phase[name].exists()):
            raise ConfigError(f"--{name.replace('_', '-')}-root {phase[name]} is not a folder")
    if phase["phase_d"] is not None and not phase["phase_d"].is_dir():
        if "phase_d_root" in merged:
            raise ConfigError(f"--phase-d-root {phase['phase_d']} is not a folder")
        phase["phase_d"] = None  # optional: only metadata (and phase_d test data) come from it

    compare_cmd = _command(merged, "compare_cmd", DEFAULT_COMPARE_CMD)
    compare_args = _args(merged, "compare_arg")
    workdir = root("workdir", _default_workdir(cwd, tuple(compare_cmd)))
    if not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is not a folder")

    doses = merged.get("doses") or merged.get("dose") or ()
    doses = [doses] if isinstance(doses, (int, float, str)) else doses
    timeout = merged.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout!r}")
    grace = merged.get("grace", 10.0)
    if not isinstance(grace, (int, float)) or grace < 0:
        raise ConfigError(f"--grace must be a number of seconds >= 0, got {grace!r}")
    max_parallel = merged.get("max_parallel")
    if merged.get("force") and merged.get("only_failed"):
        raise ConfigError("--force and --only-failed contradict each other; give one")
    ledger = merged.get("ledger")
    return Settings(
        phase_c_root=phase["phase_c"], phase_d_root=phase["phase_d"],
        phase_e_root=phase["phase_e"], phase_f_root=phase["phase_f"], artifact_root=artifact,
        ledger=_path(ledger, "--ledger", cwd) if ledger else artifact / "ledger.db",
        doses=tuple(sorted({_dose(d) for d in doses})),
        views=_texts(merged.get("views") or merged.get("view") or ()),
        splits=_texts(merged.get("splits") or merged.get("split") or ()),
        compare_cmd=compare_cmd, compare_args=compare_args,
        phases=phases,
        train_cmd=_command(merged, "train_cmd", DEFAULT_TRAIN_CMD), train_args=_args(merged, "train_arg"),
        recon_cmd=_command(merged, "recon_cmd", DEFAULT_RECON_CMD), recon_args=_args(merged, "recon_arg"),
        phase_needs=_phase_needs(merged.get("phase_needs")),
        workdir=workdir,
        test_data=_texts(merged.get("test_data") or ()),
        checkpoint_name=merged.get("checkpoint_name"),
        gpus=str(merged.get("gpus", "auto")),
        jobs_per_gpu=_jobs_per_gpu(merged.get("jobs_per_gpu", 1)),
        max_parallel=_int(max_parallel, "--max-parallel", 1) if max_parallel is not None else None,
        timeout=float(timeout) if timeout is not None else None,
        grace=float(grace),
        retries=_int(merged.get("retries", 0), "--retries", 0),
        success=_choice(merged, "success"), order=_choice(merged, "order"),
        force=bool(merged.get("force")), only_failed=bool(merged.get("only_failed")),
        dry_run=bool(merged.get("dry_run")),
        **_slurm(merged),
    )
