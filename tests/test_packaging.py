"""The runner core stays free of torch and numpy, and an installed (non-editable) package
carries its SQL files (the top-level migrations/ mapped into it as runner/migrations)."""

import json
import subprocess
import sys
import venv
import zipfile

from helpers import REPO, run_runner


def test_runner_core_imports_neither_torch_nor_numpy():
    """Every module under runner/ (found by pkgutil: a new one is checked too) is imported in a fresh
    interpreter; the CLI's own imports are lazy, so importing it alone would check little."""
    code = ("import importlib, json, pkgutil, sys, runner\n"
            "names = [m.name for m in pkgutil.walk_packages(runner.__path__, 'runner.')\n"
            "         if m.name != 'runner.__main__']  # importing it runs the CLI\n"
            "for name in names: importlib.import_module(name)\n"
            "print(json.dumps([names, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    imported, heavy = json.loads(out.stdout)
    assert {"runner.cli", "runner.executors.slurm"} <= set(imported)  # the walk reaches subpackages
    assert heavy == []


def test_installed_wheel_runs_from_anywhere(tmp_path, study):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "runner").rglob("*.py")}
    migrations = {f"runner/migrations/{p.name}" for p in (REPO / "migrations").glob("*.sql")}
    assert "runner/migrations/0001_initial.sql" in migrations and "runner/queries.sql" in names
    assert {"runner/ptycho/views.sql", "runner/ptycho/queries.sql"} <= names  # the study's SQL
    assert modules | migrations <= names, sorted(modules | migrations - names)  # pyproject lists the packages
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    "--target", str(tmp_path / "site"), str(wheel)], check=True, capture_output=True)
    run_runner(study, "--dose", "1000")
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(python), "-m", "runner", "status", "--ledger", str(study / "analysis/ledger.db")],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "4 jobs: 4 succeeded" in result.stdout
    located = subprocess.run([str(python), "-c", "import runner; print(runner.__file__)"], cwd=tmp_path,
                             env=env, capture_output=True, text=True)
    assert located.stdout.startswith(str(tmp_path / "site"))
