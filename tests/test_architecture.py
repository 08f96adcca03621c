"""The engine and its study, apart: the engine's code names nothing of ptychography and imports
no study (the command line aside), no module imports itself back through others, a job is plain
data, and "blocked" gets its reason in one place."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from fixture_study import make_study
from helpers import plan

RUNNER = Path(__file__).resolve().parent.parent / "runner"
STUDY_PACKAGE = RUNNER / "ptycho"
COMMAND_LINE = RUNNER / "cli.py"  # where the engine meets its study
# Words of the study: its axes and their values, its phases and folders, its arms and metrics,
# its commands' flags. (`amplitude` and `phase` are columns of the tidy metrics table, a file
# format the engine's metrics check reads; `view` and `split` are SQL views and str.split.)
STUDY_WORDS = re.compile(r"dose|dense|sparse|ptycho|\bpinn\b|baseline|ptychi|pty-chi|ms_ssim|phase_[c-g]|gridsize"
                         r"|nphotons|train|reconstruct|compar|checkpoint|overlap", re.IGNORECASE)


def engine_modules() -> list[Path]:
    return sorted(p for p in RUNNER.rglob("*.py") if STUDY_PACKAGE not in p.parents and p != COMMAND_LINE)


def module_name(path: Path) -> str:
    parts = path.relative_to(RUNNER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def words_of_code(tree: ast.AST) -> list[str]:
    """Every name and string literal of a module, its docstrings and comments left out."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append(node.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append(node.name)
        else:
            found += [getattr(node, field) for field in ("id", "attr", "arg") if isinstance(getattr(node, field, None), str)]
    return found


def imports_of(path: Path) -> set[str]:
    """The runner modules a module imports, wherever the import statement is (inside functions
    and TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:  # `from runner.ptycho import layout`: the module runner.ptycho.layout
                child = f"{node.module}.{alias.name}"
                found.add(child if (RUNNER.parent / Path(*child.split("."))).with_suffix(".py").is_file()
                          or (RUNNER.parent / Path(*child.split("."))).is_dir() else node.module)
    return {name for name in found if name == "runner" or name.startswith("runner.")}


def test_the_engine_names_nothing_of_the_study():
    named = {f"{path.relative_to(RUNNER.parent)}: {word!r}" for path in engine_modules()
             for word in words_of_code(ast.parse(path.read_text())) if STUDY_WORDS.search(word)}
    sql = [line for line in (RUNNER / "queries.sql").read_text().splitlines() if not line.lstrip().startswith("--")]
    named |= {f"runner/queries.sql: {line.strip()!r}" for line in sql if STUDY_WORDS.search(line)}
    assert sorted(named) == []


def test_only_the_command_line_imports_the_study():
    reaching = {module_name(path) for path in engine_modules()
                if any(name.startswith("runner.ptycho") for name in imports_of(path))}
    assert reaching == set()
    assert "runner.ptycho" in imports_of(COMMAND_LINE)


def test_no_module_imports_itself_back_through_others():
    graph = {module_name(path): imports_of(path) for path in RUNNER.rglob("*.py")}
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycles.append(" -> ".join(path[path.index(name):] + [name]))
            return
        if name in done:
            return
        for imported in sorted(graph.get(name, ())):
            visit(imported, [*path, name])
        done.add(name)
    done: set[str] = set()
    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_a_job_is_plain_data(tmp_path):
    """Every job of a whole study's plan: frozen dataclasses all the way down, and no value in
    them is something to call."""
    study = make_study(tmp_path / "study", doses=(1000,), upstream=False)
    jobs = plan({"study_root": str(study), "phases": "E,F,G"})
    assert {job.kind for job in jobs} == {"E", "F", "G"}

    def leaves(value, where: str):
        if dataclasses.is_dataclass(value):
            assert type(value).__dataclass_params__.frozen, where
            for field in dataclasses.fields(value):
                yield from leaves(getattr(value, field.name), f"{where}.{field.name}")
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from leaves(item, f"{where}[{key!r}]")
        elif isinstance(value, (tuple, list)):
            for index, item in enumerate(value):
                yield from leaves(item, f"{where}[{index}]")
        else:
            yield where, value
    called = [where for job in jobs for where, value in leaves(job, job.key) if callable(value)]
    assert called == []


def test_blocked_gets_its_reason_in_one_place():
    """The reason a job behind one that cannot succeed is given is written once (graph.blocked_by)."""
    writers = {path.name for path in RUNNER.rglob("*.py")
               for text in words_of_code(ast.parse(path.read_text())) if ", which " in text}
    assert writers == {"graph.py"}
