"""Shared fixtures of the runner tests, and the --trials option of the crash-resume suite."""

from pathlib import Path

import pytest

from fixture_study import make_study

CRASH_TRIALS_CI = 5  # the full suite: --trials 50


def pytest_addoption(parser):
    parser.addoption("--trials", type=int, default=CRASH_TRIALS_CI,
                     help=f"seeded crash-resume trials to run (default {CRASH_TRIALS_CI}; the full suite is 50)")


def pytest_generate_tests(metafunc):
    if "trial_seed" in metafunc.fixturenames:
        metafunc.parametrize("trial_seed", range(metafunc.config.getoption("trials")))


_trials = {"run": 0, "failed": []}


def pytest_runtest_logreport(report):
    if report.when == "call" and "::test_crash_resume_trial[" in report.nodeid:
        _trials["run"] += 1
        if report.failed:
            _trials["failed"].append(report.nodeid.rsplit("[", 1)[1].rstrip("]"))


def pytest_terminal_summary(terminalreporter):
    if _trials["run"]:
        failed = _trials["failed"]
        terminalreporter.write_line(
            f"crash-resume: {_trials['run']} seeded trials, {len(failed)} failed"
            + (f" (seeds {', '.join(failed)})" if failed else ""))


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A small study tree on disk: every input of every condition, in the real formats."""
    return make_study(tmp_path / "study")
