"""The SQL reads on its own: schema.sql is the schema the migrations build, and every named query
says in one line what it does."""

import re
import sqlite3
from pathlib import Path

import pytest

from helpers import REPO
from runner.ledger import PACKAGE, QUERIES, install_views, load_queries, migrate
from runner.ptycho import STUDY
from scripts import make_schema


def test_schema_sql_is_what_the_migrations_build():
    assert (REPO / "schema.sql").read_text() == make_schema.render(), (
        f"schema.sql differs from the migrations; regenerate it with {make_schema.COMMAND}")


def test_schema_sql_builds_the_same_ledger_as_the_migrations():
    """Its added columns moved onto lines of their own, schema.sql still builds the same database."""
    migrated = sqlite3.connect(":memory:", isolation_level=None)
    migrate(migrated, Path(":memory:"))
    install_views(migrated, STUDY.views)
    built = sqlite3.connect(":memory:")
    built.executescript((REPO / "schema.sql").read_text())
    assert facts(built) == facts(migrated)


def facts(conn: sqlite3.Connection) -> tuple:
    """The schema (whitespace aside), the reference rows and the file's two marks."""
    schema = [(kind, name, table, " ".join(sql.split())) for kind, name, table, sql in conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")]
    return (schema, conn.execute("SELECT * FROM failure_classes ORDER BY name").fetchall(),
            conn.execute("PRAGMA user_version").fetchone(), conn.execute("PRAGMA application_id").fetchone())


@pytest.mark.parametrize("path", [PACKAGE / "queries.sql", PACKAGE / "ptycho/queries.sql", PACKAGE / "ptycho/views.sql"])
def test_every_named_query_has_a_description_line(path):
    text = path.read_text()
    headers = re.findall(r"^-- name: (\w+)\s*\n(.*)$", text, flags=re.MULTILINE)
    assert len(headers) == len(load_queries(path)) > 0
    assert [name for name, line in headers if not line.startswith("-- ")] == []
