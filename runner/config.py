"""The engine's settings of one `run` (slots, GPUs, retries, timeouts, backend, order, ledger):
the `[run]` table of a TOML file (--config) overlaid by command-line flags, validated into one
frozen dataclass. The file's `[study]` table goes to the study, which reads its own settings with
the value parsers below. Every user mistake raises ConfigError with a one-line message.

A file of one flat table (as runner.toml was before the two tables) is still read: each key goes
to whichever side owns it.
"""

from __future__ import annotations

import enum
import os
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.study import Study, StudySettings

# sbatch options the runner sets itself on every submission.
OWN_SBATCH_OPTIONS = {"--output", "-o", "--error", "-e", "--chdir", "-D", "--job-name", "-J",
                      "--wrap", "--parsable", "--open-mode", "--signal"}
ENGINE_TABLE, STUDY_TABLE = "run", "study"


class Backend(str, enum.Enum):
    """Where attempts run."""

    LOCAL = "local"  # child processes of this runner
    SLURM = "slurm"  # one sbatch job per attempt


class Order(str, enum.Enum):
    """Launch order."""

    LONGEST_FIRST = "longest-first"  # by critical path and the durations of earlier successes
    PLAN = "plan"  # the study's plan order


class OnInterrupt(str, enum.Enum):
    """What a stopped runner does with its SLURM jobs."""

    CANCEL = "cancel"
    LEAVE = "leave"  # keep running, for the next run to re-attach


class ConfigError(Exception):
    """A setting the user gave is wrong."""


@dataclass(frozen=True)
class Settings:
    ledger: Path
    gpus: str = "auto"
    jobs_per_gpu: dict[str, int] = field(default_factory=dict)  # per kind of job; a kind not named: 1
    max_parallel: int | None = None
    timeout: float | None = None
    grace: float = 30.0
    retries: int = 0
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
    node_root: Path | None = None  # the study's root folder on the compute nodes (None: the same path)
    # Seconds before SLURM's time limit at which a resumable job is sent SIGUSR1 to save its work.
    signal_before: int = 120


# Settings whose value is one of an enum's, with the flag that names them.
CHOICES: dict[str, type[enum.Enum]] = {"backend": Backend, "order": Order, "on_interrupt": OnInterrupt}

# The TOML type each key may have (a list holds values of the scalar types), and in words.
TEXT, NUMBER = (str,), (int, float)
TOML_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    **{key: (TEXT, "a path") for key in ("ledger", "node_root")},
    "jobs_per_gpu": ((int, dict), "an integer or a table such as {E = 1, F = 2, G = 4}"),
    **{key: ((int,), "an integer") for key in ("max_parallel", "retries")},
    **{key: (NUMBER, "a number of seconds") for key in ("timeout", "grace")},
    **{key: ((bool,), "true or false") for key in ("force", "only_failed", "dry_run")},
    "gpus": ((str, int), "a string such as \"auto\" or \"0,1\""),
    **{key: (TEXT, "one of " + ", ".join(m.value for m in choices)) for key, choices in CHOICES.items()},
    **{key: ((str, int), "a word or a number") for key in ("partition", "time", "account", "mem")},
    **{key: ((int,), "an integer") for key in ("cpus_per_task", "signal_before")},
    **{key: ((str, list), "a string or a list of strings") for key in ("sbatch_args", "sbatch_arg")},
}
ENGINE_KEYS = frozenset(TOML_TYPES)  # the flags of `run` that are the engine's, underscored


# --- the config file -------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigFile:
    """A TOML file's settings, each side's apart; paths in it are relative to its folder."""

    engine: dict[str, Any]
    study: dict[str, Any]
    path: Path
    flat: bool  # written as one table (the engine's and the study's keys side by side)


def read_config(path: Path) -> ConfigFile:
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
    tables = {name: data.pop(name) for name in (ENGINE_TABLE, STUDY_TABLE) if isinstance(data.get(name), dict)}
    engine = dict(tables.get(ENGINE_TABLE, {}))
    study = dict(tables.get(STUDY_TABLE, {}))
    unknown = sorted(set(engine) - ENGINE_KEYS)
    if unknown:
        raise ConfigError(f"config file {path}: [{ENGINE_TABLE}] has no key {unknown[0]!r}; the run's keys are "
                          f"its flags with underscores ({', '.join(sorted(ENGINE_KEYS)[:4])}, ...); "
                          f"the study's go under [{STUDY_TABLE}]")
    for key, value in data.items():  # a flat file: each key to the side that owns it
        (engine if key in ENGINE_KEYS else study)[key] = value
    check_types(engine, TOML_TYPES, path)
    return ConfigFile(engine, study, path, flat=bool(data))


def check_types(values: dict[str, Any], types: dict[str, tuple[tuple[type, ...], str]], path: Path) -> None:
    """Refuse a key of the file that `types` does not know, or a value of the wrong type."""
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"config file {path}: unknown key {key!r}; "
                              f"known keys are the flag names with underscores")
        kinds, expected = types[key]
        items = value if isinstance(value, list) else value.values() if isinstance(value, dict) else [value]
        items = [v for item in items for v in (item if isinstance(item, list) else [item])]  # a table of lists
        scalar_ok = all(isinstance(v, (str, int, float)) for v in items)
        bool_ok = not isinstance(value, bool) or bool in kinds
        if not (isinstance(value, kinds) and scalar_ok and bool_ok):
            raise ConfigError(f"config file {path}: {key} = {value!r:.60} should be {expected}")


# --- values, for the engine's settings and the study's ----------------------------------------

def path(value: Any, name: str, base: Path) -> Path:
    """A path setting, relative to `base` (the config file's folder, or the current one)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"{name} must be a folder path")
    found = Path(value).expanduser()
    return (base / found).resolve() if not found.is_absolute() else found.resolve()


def node_path(value: Any, name: str) -> Path:
    """A path as the compute nodes see it: absolute, and normalized without this host's symbolic
    links (it need not exist here)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"{name} must be a folder path")
    if not os.path.isabs(value):
        raise ConfigError(f"{name} must be an absolute path (the folder as the compute nodes see it), "
                          f"got {str(value)!r}")
    return Path(os.path.normpath(value))


def integer(value: Any, name: str, minimum: int) -> int:
    try:
        number = int(float(value)) if isinstance(value, str) else value
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if not isinstance(number, int) or isinstance(number, bool) or number < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


def words(value: Any) -> tuple[str, ...]:
    """A flag or key that takes one or more words, as a tuple of them."""
    if isinstance(value, dict):  # a TOML table {VIEW = SOURCE}
        return tuple(f"{k}={v}" for k, v in value.items())
    return tuple(str(v) for v in ([value] if isinstance(value, str) else value))


def choice(given: dict[str, Any], key: str, kind: type[enum.Enum], default: enum.Enum) -> enum.Enum:
    """The enum member a choice setting names (`default` when absent)."""
    value = given.get(key, default.value)
    try:
        return kind(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ConfigError(f"--{key.replace('_', '-')} {value!r} is not one of {allowed}") from None


def command(given: dict[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A command prefix given as a list or as one string split like a shell would."""
    cmd = given.get(key) or default
    flag = f"--{key.replace('_', '-')}"
    if isinstance(cmd, str):
        try:
            cmd = shlex.split(cmd)
        except ValueError as exc:
            raise ConfigError(f"{flag} cannot be split: {exc}") from None
    if not cmd:
        raise ConfigError(f"{flag} is empty")
    return tuple(str(c) for c in cmd)


def arguments(given: dict[str, Any], key: str) -> tuple[str, ...]:
    """Extra arguments (`<key>s` in a file or repeated `--<key>`), a string split like a shell would."""
    args = given.get(f"{key}s") or given.get(key) or ()
    if isinstance(args, str):
        args = shlex.split(args)
    return tuple(str(a) for a in args)


# --- the engine's settings -------------------------------------------------------------------

def _slurm(merged: dict[str, Any]) -> dict[str, Any]:
    """The backend and its SLURM settings, checked."""
    backend = choice(merged, "backend", Backend, Backend.LOCAL)
    on_interrupt = choice(merged, "on_interrupt", OnInterrupt, OnInterrupt.CANCEL)
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
    slurm_given = [n for n in ("partition", "time", "account", "cpus_per_task", "mem", "node_root", "signal_before")
                   if merged.get(n) is not None]
    if backend is Backend.LOCAL and (slurm_given or sbatch_args):
        name = slurm_given[0] if slurm_given else "sbatch_arg"
        raise ConfigError(f"--{name.replace('_', '-')} applies to --backend slurm only")
    if backend is Backend.SLURM and merged.get("timeout") is not None:
        raise ConfigError("--timeout counts queueing time on SLURM; give SLURM's limit with --time instead")
    cpus = merged.get("cpus_per_task")
    node_root = merged.get("node_root")
    return dict(values, backend=backend, on_interrupt=on_interrupt,
                node_root=node_path(node_root, "--node-root") if node_root is not None else None,
                cpus_per_task=integer(cpus, "--cpus-per-task", 1) if cpus is not None else None,
                signal_before=integer(merged.get("signal_before", 120), "--signal-before", 0),
                sbatch_args=tuple(str(a) for a in sbatch_args))


def jobs_per_gpu(value: Any, kinds: tuple[str, ...], noun: str = "kind") -> dict[str, int]:
    """`4` (every kind), a table {E = 1, G = 4}, or flags 'E=1,F=2' / '4'; a kind not named gets 1.
    `noun`: what the study calls its kinds of job, for the messages."""
    if isinstance(value, dict):
        given = value
    else:
        items = [w.strip() for item in words([value] if isinstance(value, (int, str)) else value)
                 for w in str(item).split(",") if w.strip()]
        if len(items) == 1 and "=" not in items[0]:
            return dict.fromkeys(kinds, integer(items[0], "--jobs-per-gpu", 1))
        given = {}
        for item in items:
            if "=" not in item:
                raise ConfigError(f"--jobs-per-gpu {item!r}: give one number, or {noun.upper()}=N pairs "
                                  f"for {', '.join(kinds)} such as {kinds[0]}=1")
            name, number = item.split("=", 1)
            given[name.strip()] = number.strip()
    result = dict.fromkeys(kinds, 1)
    for name, number in given.items():
        if str(name).upper() not in kinds:
            raise ConfigError(f"jobs_per_gpu: unknown {noun} {name!r}; use {', '.join(kinds)}")
        result[str(name).upper()] = integer(number, f"jobs_per_gpu {name}", 1)
    return result


def build_settings(file: dict[str, Any], flags: dict[str, Any], base: Path, cwd: Path, default_ledger: Path,
                   kinds: tuple[str, ...] = (), noun: str = "kind") -> Settings:
    """The engine's settings from the file's values (paths relative to `base`) and the flags
    (relative to `cwd`); flags win. `kinds`: the names of the study's kinds of job."""
    merged = {**file, **flags}
    timeout = merged.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout!r}")
    grace = merged.get("grace", 30.0)
    if not isinstance(grace, (int, float)) or grace < 0:
        raise ConfigError(f"--grace must be a number of seconds >= 0, got {grace!r}")
    if merged.get("force") and merged.get("only_failed"):
        raise ConfigError("--force and --only-failed contradict each other; give one")
    max_parallel = merged.get("max_parallel")
    ledger = merged.get("ledger")
    return Settings(
        ledger=path(ledger, "--ledger", cwd if "ledger" in flags else base) if ledger else default_ledger,
        gpus=str(merged.get("gpus", "auto")),
        jobs_per_gpu=jobs_per_gpu(merged.get("jobs_per_gpu", 1), kinds, noun),
        max_parallel=integer(max_parallel, "--max-parallel", 1) if max_parallel is not None else None,
        timeout=float(timeout) if timeout is not None else None,
        grace=float(grace),
        retries=integer(merged.get("retries", 0), "--retries", 0),
        order=choice(merged, "order", Order, Order.LONGEST_FIRST),
        force=bool(merged.get("force")), only_failed=bool(merged.get("only_failed")),
        dry_run=bool(merged.get("dry_run")),
        **_slurm(merged),
    )


def load(given: dict[str, Any], study: Study, cwd: Path, warn=lambda line: None) -> tuple[Settings, StudySettings]:
    """The engine's settings and the study's, from the config file `given["config"]` (if any)
    and the other flags given (a flag left out is None, False or []); `warn` hears of a config
    file in the older one-table form."""
    flags = {key: value for key, value in given.items()
             if key != "config" and value is not None and value is not False and value != []}
    file = read_config(path(given["config"], "--config", cwd)) if given.get("config") else None
    study_settings = study.settings(file.study if file else {}, {k: v for k, v in flags.items() if k not in ENGINE_KEYS},
                                    file.path if file else None, cwd)
    settings = build_settings(file.engine if file else {}, {k: v for k, v in flags.items() if k in ENGINE_KEYS},
                              file.path.parent if file else cwd, cwd, study_settings.artifact_root / "ledger.db",
                              tuple(kind.name for kind in study.kinds), study.kind_noun)
    if file and file.flat:  # said once the file is known to be good: bad input stays one line
        warn(f"config file {file.path}: a file of one table is read as before; to update it, put the "
             f"study's keys under [{STUDY_TABLE}] and the run's (such as jobs_per_gpu, retries) "
             f"under [{ENGINE_TABLE}]")
    return settings, study_settings
