"""What a study is to the engine: a small written interface (a Protocol, as the executors have).

The engine runs jobs; a study says which. It plans the jobs of a run from its settings (each one
naming the jobs it needs, the files it reads and makes, and how its outputs are checked), checks
what must hold before a run, writes its own files after a run, and reports its answer from the
ledger. The command line is the one place that chooses a study (`runner.ptycho`) and hands it
to the engine; nothing else of the engine imports one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runner.jobs import Job, Kind


class PlanError(Exception):
    """The study's folders or settings cannot be turned into a plan (a one-line message)."""


class StudySettings(Protocol):
    """A study's settings, as the engine sees them."""

    artifact_root: Path  # where the study's run files go; the ledger is there by default
    workdir: Path  # the checkout its commands run from (its commit is the runs' provenance)
    # The study's root folder: the ledger records paths under it relative to it and fingerprints
    # the files under it by their path there, so a study that moves keeps its results.
    root: Path


@dataclass(frozen=True)
class RunRecord:
    """What a study's after-run writing is told: the run's ledger, its id, and each planned job
    (in plan order) with its state and the attempt of this run, else its standing result."""

    ledger: Path
    run_id: int
    jobs: list[Job]
    results: list[dict]  # rows of the ledger's run_results, in the order of `jobs`


@dataclass(frozen=True)
class Report:
    """What `runner report` prints: the lines of the study's answer and any warnings, or why there
    is no answer yet (`error`: exit 1)."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


class Study(Protocol):
    """A study behind the engine. Raise PlanError or runner.config.ConfigError for what the user
    can fix; the engine turns either into one `runner: error:` line."""

    kinds: tuple[Kind, ...]  # its kinds of job, in the order `status` shows them
    kind_noun: str  # what it calls a kind ('phase'), in the engine's messages
    views: dict[str, str]  # its SQL views over the engine's tables: name -> CREATE VIEW statement

    def add_run_options(self, parser: argparse.ArgumentParser) -> None:
        """Its flags of `runner run` (study folders, filters, commands)."""

    def add_report_options(self, parser: argparse.ArgumentParser) -> None:
        """Its flags of `runner report`."""

    def settings(self, file: dict[str, Any], flags: dict[str, Any], config_file: Path | None,
                 cwd: Path) -> StudySettings:
        """Its settings from the `[study]` table of the config file (paths relative to the file)
        and its flags (relative to `cwd`); flags win."""

    def describe(self, settings: StudySettings) -> dict:
        """What the ledger keeps of the settings with each run (JSON): enough for `report` to find
        the study's files from the ledger alone."""

    def plan(self, settings: StudySettings) -> list[Job]:
        """The jobs of a run, each naming the keys of the jobs it needs."""

    def check(self, settings: StudySettings, jobs: list[Job], launching: bool) -> None:
        """Before a run (or a dry run): the folders its jobs write into exist, and when
        `launching`, its commands can start. Raise PlanError or ConfigError otherwise."""

    def write_plan(self, settings: StudySettings, jobs: list[Job], folder: Path) -> list[Path]:
        """A dry run: its files describing the plan (`jobs` in launch order, nothing run), in
        `folder`, never over the files that describe standing results."""

    def after_run(self, settings: StudySettings, run: RunRecord, warn: Callable[[str], None]) -> Path | None:
        """Its files after a run, from the ledger; returns the one to name to the user. A file
        that cannot be written is a warning: the ledger holds the results anyway."""

    def report(self, ledger: Path, out: Path, options: dict[str, Any]) -> Report:
        """Its answer from the ledger alone, written to `out`."""
