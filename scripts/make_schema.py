"""Regenerate schema.sql: the ledger's current schema, as a run leaves a new ledger.

The migrations (migrations/NNNN_name.sql) are the source of truth of the engine's tables, and the
study's views.sql of its views; schema.sql is their sum, to read. This applies them to an empty
in-memory database exactly as a run does, then writes each table with the rows the migrations put
in it, its indexes and its triggers, and last the views, each in the order it was created. A column added by ALTER TABLE is moved onto its own
line; nothing else of SQLite's stored text is changed. A test keeps the file equal to this output.

    python scripts/make_schema.py          (or: make schema)
"""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "schema.sql"
COMMAND = "`make schema` (python scripts/make_schema.py)"


def render() -> str:
    """schema.sql's text for the migrations of this checkout."""
    sys.path.insert(0, str(REPO))
    from runner.ledger import SCHEMA_VERSION, install_views, migrate
    from runner.ptycho import STUDY

    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn, Path(":memory:"))
    install_views(conn, STUDY.views)
    objects = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema "
                           "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid").fetchall()
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    out = [f"-- The ledger's schema at version {SCHEMA_VERSION}: what the migrations build in a new ledger, with\n"
           "-- the study's views (runner/ptycho/views.sql), which every run installs.\n"
           f"-- Generated from migrations/ and views.sql by {COMMAND};\n"
           "-- do not edit it: change the engine's schema with a new migration, or the study's views in\n"
           "-- views.sql, then regenerate it.\n"
           f"PRAGMA application_id = {app_id};\n"
           f"PRAGMA user_version = {SCHEMA_VERSION};"]
    for kind, name, _, sql in objects:
        if kind != "table":
            continue
        out.append(statement(sql) + rows(conn, name))
        out += [statement(s) for k, _, table, s in objects if k in ("index", "trigger") and table == name]
    out += [statement(sql) for kind, _, _, sql in objects if kind == "view"]
    conn.close()
    return "\n\n".join(out) + "\n"


def statement(sql: str) -> str:
    """One stored statement, its added columns each on a line of their own, ended by ';'."""
    return "\n".join(line.rstrip() for line in split_added_columns(sql).splitlines()) + ";"


def split_added_columns(sql: str) -> str:
    """Break a CREATE TABLE's column list after each top-level comma that a space follows:
    ALTER TABLE ... ADD COLUMN appends `, name type` to the line of the last column."""
    if not sql.startswith("CREATE TABLE"):
        return sql
    out, depth, i = [], 0, 0
    while i < len(sql):
        c = sql[i]
        if c in "'\"":  # a quoted string or name, '' and "" included
            end = sql.index(c, i + 1)
            while sql[end + 1:end + 2] == c:
                end = sql.index(c, end + 2)
            out.append(sql[i:end + 1])
            i = end + 1
            continue
        if sql.startswith("--", i):  # a comment, to the end of its line
            end = sql.find("\n", i)
            end = len(sql) if end < 0 else end
            out.append(sql[i:end])
            i = end
            continue
        depth += c == "("
        depth -= c == ")"
        if c == "," and depth == 1 and re.match(r" (?!\s|--)", sql[i + 1:i + 3]):  # not before a comment
            out.append(",\n   ")  # the space that follows completes a four-space indent
        else:
            out.append(c)
        i += 1
    return "".join(out)


def rows(conn: sqlite3.Connection, table: str) -> str:
    """The rows the migrations insert into a table (reference data), as one INSERT; '' if none."""
    columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    quoted = ", ".join(f'quote("{c}")' for c in columns)
    values = [", ".join(r) for r in conn.execute(f'SELECT {quoted} FROM "{table}" ORDER BY rowid')]
    if not values:
        return ""
    return (f"\n\nINSERT INTO {table} ({', '.join(columns)}) VALUES\n"
            + ",\n".join(f"    ({v})" for v in values) + ";")


def main(argv: list[str]) -> int:
    if argv:
        print(f"usage: python scripts/make_schema.py (writes {TARGET.name})", file=sys.stderr)
        return 2
    TARGET.write_text(render())
    print(f"wrote {TARGET.name} from migrations/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
