"""runner.saved_steps: the steps an attempt of a resumable job says it saved, read from its
progress file only when that attempt wrote it."""

import json

import pytest

from runner.saved_steps import Steps, read_steps


def write(path, **fields):
    path.write_text(json.dumps(fields))
    return path


def test_the_attempt_that_wrote_the_file_gets_its_steps(tmp_path):
    progress = write(tmp_path / "p.json", token="t1", start_step=300, step=450, planned_steps=600)
    assert read_steps(progress, "t1") == Steps(300, 450) and Steps(300, 450).advanced
    assert not Steps(450, 450).advanced


@pytest.mark.parametrize("content", [
    '{"token": "t0", "start_step": 0, "step": 300}',  # an earlier attempt's (or a run by hand)
    '{"token": "t1", "start_step": 0, "step": 3',  # torn
    '{"token": "t1", "step": 300}',  # no start
    '{"token": "t1", "start_step": 0, "step": "300"}',
    '{"token": "t1", "start_step": -1, "step": 3}',
    '{"token": "t1", "start_step": true, "step": 3}',
    '[1, 2]',
    '',
])
def test_a_file_this_attempt_did_not_write_whole_claims_nothing(tmp_path, content):
    (tmp_path / "p.json").write_text(content)
    assert read_steps(tmp_path / "p.json", "t1") is None


def test_no_file_or_no_progress_kept_claims_nothing(tmp_path):
    assert read_steps(tmp_path / "missing.json", "t1") is None
    assert read_steps(None, "t1") is None
    (tmp_path / "folder.json").mkdir()
    assert read_steps(tmp_path / "folder.json", "t1") is None
