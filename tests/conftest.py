"""Shared fixtures of the runner tests."""

from pathlib import Path

import pytest

from fixture_study import make_study


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A small study tree on disk: every input of every condition, in the real formats."""
    return make_study(tmp_path / "study")
