"""The study's two axes of training: replicate seeds and the training-set size.

Each network is trained once per seed (its own E job: initialisation and batch order differ) and
per training-set size (`--n_subsample N` patterns), and compared once per both (its own G job);
Pty-Chi has no training seed and is reconstructed once. The study's seed (the `--seed` of its
training arguments) at the whole training set keeps the keys and folders of a one-seed study, so
adding seeds to a finished study runs only the new seeds' jobs; every other replicate adds one
level to its folders and key: `n_<size>/seed_<seed>` (`phase_e/dose_D/dense/seed_43/gs2`,
`analysis/dose_D/dense/seed_43/test`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.commands import flag_value
from runner.config import ConfigError

SEED_FLAG, SIZE_FLAG = "--seed", "--n_subsample"  # the training script's flags (PtychoPINN's spelling)
ALL = "all"  # a training-set size: the whole training split


@dataclass(frozen=True)
class Replicate:
    """One training configuration of an arm: its seed and its training-set size."""

    seed: int | None  # None: the training arguments' own (they give no --seed)
    size: int | None  # None: the whole training split
    plain: bool  # the study's seed at the whole training set: a one-seed study's keys and folders

    @property
    def folder(self) -> str:
        """The level its folders and key add: '', 'n_256', 'seed_43' or 'n_256/seed_43'."""
        parts = ([f"n_{self.size}"] if self.size is not None else []) + \
            ([] if self.plain or self.seed is None else [f"seed_{self.seed}"])
        return "/".join(parts)

    @property
    def labels(self) -> dict[str, int | None]:
        return {"seed": self.seed, "train_size": self.size}

    def training_args(self, args: tuple[str, ...]) -> tuple[str, ...]:
        """The training arguments with this seed (replacing their --seed) and size."""
        if not self.plain and self.seed is not None:
            args = _without(args, SEED_FLAG) + (SEED_FLAG, str(self.seed))
        return args + ((SIZE_FLAG, str(self.size)) if self.size is not None else ())


def _without(args: tuple[str, ...], flag: str) -> tuple[str, ...]:
    kept, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == flag and i + 1 < len(args):
            skip = True
        elif not arg.startswith(flag + "="):
            kept.append(arg)
    return tuple(kept)


@dataclass(frozen=True)
class Axes:
    """The seeds and training-set sizes of a study's networks."""

    seeds: tuple[int | None, ...] = (None,)
    base: int | None = None  # the study's seed: the --seed of its training arguments
    counts: dict[str, int] = field(default_factory=dict)  # view -> how many of the seeds (default: all)
    sizes: tuple[int | None, ...] = (None,)

    def of(self, model: str, views: tuple[str, ...]) -> list[Replicate]:
        """The replicates of a view's PINN, or of a model serving every view (the baseline: as
        many seeds as the chosen view that has most)."""
        def count(view: str) -> int:
            return self.counts.get(view, len(self.seeds))
        wanted = count(model) if model in views else max(count(view) for view in views)
        return [Replicate(seed, size, seed == self.base and size is None)
                for size in self.sizes for seed in self.seeds[:wanted]]


def _integers(value: Any, name: str, allow_all: bool = False) -> tuple[int | None, ...]:
    words = [w.strip() for item in (value if isinstance(value, (list, tuple)) else [value])
             for w in str(item).split(",") if w.strip()]
    found: list[int | None] = []
    for word in words:
        if allow_all and word == ALL:
            found.append(None)
            continue
        try:
            number = int(word)
        except ValueError:
            raise ConfigError(f"{name}: {word!r} is not a whole number"
                              + (f" or {ALL!r}" if allow_all else "")) from None
        if allow_all and number < 1:
            raise ConfigError(f"{name}: a training-set size must be at least 1, got {number}")
        found.append(number)
    if not found:
        raise ConfigError(f"{name} is empty")
    if len(set(found)) != len(found):
        raise ConfigError(f"{name} lists a value twice")
    return tuple(found)


def _counts(value: Any, views: tuple[str, ...]) -> tuple[int, dict[str, int]]:
    """`--replicates 3` (every view) or `dense=3,sparse=1` (a TOML table too): the most, and per view."""
    items = list(value.items()) if isinstance(value, dict) else \
        [tuple(w.split("=", 1)) if "=" in w else (None, w) for w in str(value).split(",") if w.strip()]
    per_view: dict[str, int] = {}
    default = None
    for view, count in items:
        try:
            number = int(count)
        except (TypeError, ValueError):
            raise ConfigError(f"--replicates: {count!r} is not a whole number; write e.g. 3 or dense=3,sparse=1") \
                from None
        if number < 1:
            raise ConfigError(f"--replicates: {number} replicates; give at least 1")
        if view is None:
            default = number
        elif view.strip() not in views:
            raise ConfigError(f"--replicates: unknown view {view!r} (views: {', '.join(views)})")
        else:
            per_view[view.strip()] = number
    most = max([*per_view.values(), *([default] if default else [])])
    return most, {v: per_view.get(v, default or most) for v in views}


def build(merged: dict[str, Any], train_args: tuple[str, ...], views: tuple[str, ...]) -> Axes:
    """The axes from the `seeds`, `replicates` and `train_sizes` settings and the training
    arguments' own --seed."""
    given = flag_value(train_args, SEED_FLAG)
    try:
        base = int(given) if given is not None else None
    except ValueError:
        raise ConfigError(f"train_args: --seed {given!r} is not a whole number") from None
    sizes = _integers(merged["train_sizes"], "--train-sizes", allow_all=True) if merged.get("train_sizes") else (None,)
    if sizes != (None,) and flag_value(train_args, SIZE_FLAG) is not None:
        raise ConfigError("give the training-set sizes with --train-sizes, not --n_subsample in train_args")
    seeds = _integers(merged["seeds"], "--seeds") if merged.get("seeds") not in (None, "", []) else None
    counts: dict[str, int] = {}
    if merged.get("replicates") not in (None, "", {}):
        most, counts = _counts(merged["replicates"], views)
        if seeds is None:
            if base is None:
                raise ConfigError("--replicates counts seeds from the study's own, but the training arguments "
                                  "give no --seed; list the seeds instead (--seeds 42,43,44)")
            seeds = tuple(base + i for i in range(most))
        elif most > len(seeds):
            raise ConfigError(f"--replicates asks for {most} seeds but --seeds lists {len(seeds)}")
    return Axes(seeds or (base,), base, counts, sizes)
