"""Settings: TOML file plus flags, flags win, every mistake a ConfigError."""

from pathlib import Path

import pytest

from helpers import plan, settings
from runner.config import ConfigError
from runner.ptycho.plan import data_sources
from runner.study import PlanError


def build_settings(values: dict, cwd=None):
    """The engine's settings and the study's, as one object to read either from."""
    engine, study = settings(values, cwd)
    return Both(engine, study)


class Both:
    def __init__(self, engine, study):
        self.engine, self.study = engine, study

    def __getattr__(self, name):
        return getattr(self.study if hasattr(self.study, name) else self.engine, name)


def test_toml_keys_are_read_and_paths_are_relative_to_the_file(study, tmp_path):
    config = tmp_path / "study.toml"
    config.write_text('study_root = "study"\nretries = 2\ngpus = "none"\ntimeout = 600\n'
                      'test_data = {sparse = "phase_d"}\n')
    (tmp_path / "elsewhere").mkdir()
    s = build_settings({"config": str(config)}, cwd=tmp_path / "elsewhere")
    assert s.layout.phase_c == study / "phase_c" and s.artifact_root == study / "analysis"
    assert (s.retries, s.gpus, s.timeout) == (2, "none", 600.0)
    assert data_sources(s.test_data) == {"dense": "phase_c", "sparse": "phase_d"}
    assert s.ledger == study / "analysis" / "ledger.db"


def test_flags_override_the_file(study, tmp_path):
    config = tmp_path / "study.toml"
    config.write_text('study_root = "study"\nretries = 2\n')
    s = build_settings({"config": str(config), "retries": 5, "ledger": "my.db"}, cwd=tmp_path)
    assert s.retries == 5 and s.ledger == tmp_path / "my.db"


# Settings are checked when they are read (ConfigError); the study's vocabulary (views, splits,
# test-data sources) by the plan that owns it (PlanError). Both name the bad value in one line.
@pytest.mark.parametrize("content, error, message", [
    ("retries = [", ConfigError, "not valid TOML"),
    ("retires = 3", ConfigError, "unknown key 'retires'"),
    ("retries = -1", ConfigError, "--retries must be an integer >= 0"),
    ("timeout = 0", ConfigError, "--timeout must be a positive"),
    ('dose = ["-3"]', ConfigError, "positive whole number"),
    ('success = "maybe"', ConfigError, "--success 'maybe' is not one of metrics, exit-code"),
    ('order = "random"', ConfigError, "--order 'random' is not one of longest-first, plan"),
    ('view = ["diagonal"]', PlanError, "--view 'diagonal' is not one of dense, sparse"),
    ('split = "validation"', PlanError, "--split 'validation' is not one of train, test"),
    ('test_data = {diagonal = "phase_d"}', PlanError, "unknown view 'diagonal'"),
    ('test_data = "phase_x"', PlanError, "'phase_x': use phase_c or phase_d"),
    ('phases = ["E", "H"]', ConfigError, "unknown phase 'H'"),
    ('jobs_per_gpu = {E = 1, X = 2}', ConfigError, "jobs_per_gpu: unknown phase 'X'"),
    ('jobs_per_gpu = "E=1"', ConfigError, "jobs_per_gpu = 'E=1' should be an integer or a table"),
    ('phase_needs = {G = ["Z"]}', ConfigError, "phase_needs G: unknown phase 'Z'"),
    ('phase_needs = {"E,F" = ["G"]}', ConfigError, "'E,F' is not one phase"),
    ('train_cmd = "  "', ConfigError, "--train-cmd is empty"),
])
def test_bad_config_values_are_named(study, tmp_path, content, error, message):
    config = tmp_path / "bad.toml"
    config.write_text(f'study_root = "study"\n{content}\n')
    with pytest.raises(error, match=message):
        plan({"config": str(config)}, cwd=tmp_path)


def test_phases_commands_and_weights_from_the_file_and_flags(study, tmp_path):
    config = tmp_path / "study.toml"
    config.write_text('study_root = "study"\nphases = ["G", "e"]\ntrain_cmd = "python my_train.py"\n'
                      'train_args = ["--preset", "full"]\nrecon_args = "--num-epochs 100"\n'
                      'jobs_per_gpu = {E = 1, F = 2, G = 4}\nphase_needs = {F = ["E"]}\n')
    s = build_settings({"config": str(config)}, cwd=tmp_path)
    assert s.phases == ("E", "G")  # in the study's order, whatever the file's
    assert s.train_cmd == ("python", "my_train.py") and s.train_args == ("--preset", "full")
    assert s.recon_args == ("--num-epochs", "100")
    assert s.jobs_per_gpu == {"E": 1, "F": 2, "G": 4}
    assert s.phase_needs == {"G": ("E", "F"), "F": ("E",)}
    flags = build_settings({"config": str(config), "phases": "F,G", "jobs_per_gpu": "3"}, cwd=tmp_path)
    assert flags.phases == ("F", "G") and flags.jobs_per_gpu == {"E": 3, "F": 3, "G": 3}
    assert build_settings({"study_root": str(study)}).phases == ("G",)  # as before


def test_a_phase_of_the_run_may_make_its_missing_folder(tmp_path):
    (tmp_path / "study/phase_c").mkdir(parents=True)
    with pytest.raises(ConfigError, match="phase-e-root"):
        build_settings({"study_root": str(tmp_path / "study")})
    s = build_settings({"study_root": str(tmp_path / "study"), "phases": "E,F,G"})
    assert s.layout.phase_e == tmp_path / "study/phase_e" and not s.layout.phase_e.exists()


def test_missing_roots_are_named(tmp_path):
    with pytest.raises(ConfigError, match="--phase-c-root .* is not a folder"):
        build_settings({"phase_c_root": "nope", "phase_e_root": ".", "phase_f_root": ".",
                        "artifact_root": "."}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="--artifact-root is required"):
        build_settings({"phase_c_root": ".", "phase_e_root": ".", "phase_f_root": "."}, cwd=tmp_path)


def test_force_and_only_failed_contradict(study):
    with pytest.raises(ConfigError, match="contradict"):
        build_settings({"study_root": str(study), "force": True, "only_failed": True})


def test_default_command_runs_in_this_checkout_from_any_folder(study, tmp_path):
    from runner.ptycho.settings import DEFAULT_COMPARE_CMD

    repo = __import__("pathlib").Path(__file__).resolve().parent.parent
    s = build_settings({"study_root": str(study)}, cwd=tmp_path)
    assert s.compare_cmd == DEFAULT_COMPARE_CMD and s.workdir == repo
    custom = build_settings({"study_root": str(study), "compare_cmd": "python x.py"}, cwd=tmp_path)
    assert custom.workdir == tmp_path


def test_every_flag_is_a_key_of_the_config_file_with_a_type_check():
    # A key without one would be refused as unknown, or crash instead of naming a bad value.
    from runner import cli, config
    from runner.ptycho import STUDY
    from runner.ptycho.settings import TOML_TYPES as STUDY_TYPES

    run = next(action for action in cli.build_parser(STUDY)._actions if action.dest == "command").choices["run"]
    flags = {action.dest for action in run._actions} - {"help", "config"}
    assert flags <= set(config.TOML_TYPES) | set(STUDY_TYPES)
    assert not set(config.TOML_TYPES) & set(STUDY_TYPES)  # each key has one owner


def test_node_root_from_the_flag_and_from_run_in_the_toml_file(study, tmp_path):
    # The nodes' path need not exist here, and is kept as written (normalized), never resolved
    # through this host's links: the link below stands for the nodes' mount.
    mount = tmp_path / "node_mount"
    mount.symlink_to(study, target_is_directory=True)
    flag = build_settings({"study_root": str(study), "backend": "slurm", "node_root": "/scratch/u/study/"})
    assert flag.node_root == Path("/scratch/u/study")
    config = tmp_path / "runner.toml"
    config.write_text(f'[run]\nbackend = "slurm"\nnode_root = "{mount}"\n[study]\nstudy_root = "study"\n')
    from_file = build_settings({"config": str(config)}, cwd=tmp_path)
    assert from_file.node_root == mount
    assert build_settings({"config": str(config), "node_root": "/nodes/study"}, cwd=tmp_path).node_root == \
        Path("/nodes/study")  # the flag wins
    assert build_settings({"study_root": str(study), "backend": "slurm"}).node_root is None  # default: same path


@pytest.mark.parametrize("values, message", [
    ({"node_root": "/scratch/u/study"}, r"^--node-root applies to --backend slurm only$"),
    ({"backend": "local", "node_root": "/scratch/u/study"}, r"^--node-root applies to --backend slurm only$"),
    ({"backend": "slurm", "node_root": "scratch/study"}, "--node-root must be an absolute path"),
])
def test_node_root_errors_are_one_line(study, values, message):
    with pytest.raises(ConfigError, match=message):
        build_settings({"study_root": str(study), **values})


def test_node_root_in_the_file_must_be_a_path(study, tmp_path):
    config = tmp_path / "runner.toml"
    config.write_text('[run]\nbackend = "slurm"\nnode_root = 3\n[study]\nstudy_root = "study"\n')
    with pytest.raises(ConfigError, match="node_root = 3 should be a path"):
        build_settings({"config": str(config)}, cwd=tmp_path)
