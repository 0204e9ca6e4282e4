"""`checkpointdb db create-reader`: a PostgreSQL role that may only read the store.

Roles are server-wide: each test makes one of its own, named uniquely, and
drops it afterwards. The test server's user has CREATEROLE (.ci/postgres.sh).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import Result
from psycopg import sql
from sqlalchemy.engine import make_url
from test_cli import invoke, one_error_line

from checkpointdb import CheckpointStore
from checkpointdb.readonly import run_read_only
from checkpointdb.roles import store_objects

PASSWORD = "s3cret:pass@word"


def conninfo(url: str) -> str:
    """A psycopg connection string for a SQLAlchemy URL (its options kept)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def as_role(url: str, role: str, password: str | None = PASSWORD) -> str:
    """``url`` logging in as ``role``."""
    logged_in = make_url(url).set(username=role)
    if password is not None:
        logged_in = logged_in.set(password=password)
    return logged_in.render_as_string(hide_password=False)


def role_exists(url: str, role: str) -> bool:
    with psycopg.connect(conninfo(url)) as connection:
        found = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    return found is not None


@pytest.fixture
def role(postgres_url: str) -> Iterator[str]:
    """A unique role name; whatever role of that name the test made is dropped afterwards."""
    name = f"cdb_reader_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(conninfo(postgres_url), autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
            schema, database = connection.execute(
                "SELECT current_schema(), current_database()"
            ).fetchone() or ("", "")
            ident = sql.Identifier(name)
            for statement in (
                sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}"),
                sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}"),
            ):
                connection.execute(statement.format(sql.Identifier(schema), ident))
            connection.execute(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
                    sql.Identifier(database), ident
                )
            )
            connection.execute(sql.SQL("DROP ROLE {}").format(ident))


@pytest.fixture
def reader(postgres_url: str, role: str) -> str:
    """The URL of a reader role made by the command, on a store with one checkpoint."""
    with CheckpointStore(postgres_url) as store:
        store.manager("agent-1").create("start", {"step": 1})
    result = create_reader(postgres_url, role, "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    return as_role(postgres_url, role)


def create_reader(url: str, *args: str, input: str | None = None) -> Result:
    return invoke("--db", url, "db", "create-reader", *args, input=input)


def checkpoint_rows(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo(url)) as connection:
        return connection.execute("SELECT session_id, seq, name FROM checkpoints").fetchall()


def test_create_reader_says_what_it_made_and_the_url_to_use(postgres_url: str, role: str) -> None:
    CheckpointStore(postgres_url).close()
    result = create_reader(postgres_url, role, "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert f"created role {role}, which may only read the store" in result.stdout
    shown = make_url(postgres_url).set(username=role, password="PASSWORD")
    assert f"sql --url '{shown.render_as_string(hide_password=False)}'" in result.stdout
    assert PASSWORD not in result.stdout


def test_reader_selects_through_sql_url(postgres_url: str, reader: str) -> None:
    result = invoke("sql", "--url", reader, "SELECT session_id, name FROM checkpoint_view")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2].split() == ["agent-1", "start"]


def test_a_password_with_spaces_and_percent_signs_logs_in(postgres_url: str, role: str) -> None:
    password = "two words 100% sure"
    CheckpointStore(postgres_url).close()
    result = create_reader(postgres_url, role, "--password-stdin", input=password + "\n")
    assert result.exit_code == 0, result.output
    url = as_role(postgres_url, role, password)
    result = invoke("sql", "--url", url, "SELECT count(*) AS n FROM sessions")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2].split() == ["0"]


def test_reader_may_read_every_table_and_view_of_the_store(postgres_url: str, reader: str) -> None:
    with psycopg.connect(conninfo(postgres_url)) as connection:
        everything = [
            str(row[0])
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        ]
    assert sorted(everything) == list(store_objects())
    for name in everything:
        columns, _ = run_read_only(reader, f"SELECT * FROM {name} LIMIT 1")
        assert columns, name


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO checkpoints (session_id, seq, name, created_at, data, metadata) "
        "SELECT session_id, seq + 1, name, created_at, data, metadata FROM checkpoints",
        "UPDATE checkpoints SET name = 'changed'",
        "DELETE FROM checkpoints",
        "TRUNCATE checkpoints CASCADE",
        "CREATE TABLE loot (x int)",
    ],
)
def test_reader_role_cannot_write_even_outside_a_read_only_transaction(
    postgres_url: str, reader: str, statement: str
) -> None:
    before = checkpoint_rows(postgres_url)
    with (
        psycopg.connect(conninfo(reader)) as connection,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        connection.execute(statement)
    assert checkpoint_rows(postgres_url) == before


def test_reader_cannot_terminate_another_backend(postgres_url: str, reader: str) -> None:
    with psycopg.connect(conninfo(postgres_url), autocommit=True) as victim:
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        result = invoke("sql", "--url", reader, f"SELECT pg_terminate_backend({pid[0]})")
        assert result.exit_code == 1
        assert "terminate" in one_error_line(result)
        assert victim.execute("SELECT 1").fetchone() == (1,)


def test_print_shows_the_sql_and_creates_nothing(postgres_url: str, role: str) -> None:
    CheckpointStore(postgres_url).close()
    result = create_reader(postgres_url, role, "--print")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "BEGIN;" and lines[-1] == "COMMIT;"
    assert lines[1].startswith(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
    assert any(line.startswith("GRANT SELECT ON ") and '."checkpoints"' in line for line in lines)
    assert not role_exists(postgres_url, role)


def test_the_printed_sql_makes_the_same_reader(postgres_url: str, role: str) -> None:
    with CheckpointStore(postgres_url) as store:
        store.manager("agent-1").create("start", {})
    printed = create_reader(postgres_url, role, "--print").stdout
    with psycopg.connect(conninfo(postgres_url), autocommit=True) as connection:
        for statement in printed.split(";\n"):
            if statement.strip():
                connection.execute(statement.encode())
    _, rows = run_read_only(as_role(postgres_url, role, None), "SELECT name FROM checkpoints")
    assert rows == [("start",)]


def test_an_existing_reader_is_granted_again_and_loses_other_privileges(
    postgres_url: str, reader: str, role: str
) -> None:
    with psycopg.connect(conninfo(postgres_url), autocommit=True) as connection:
        grant = sql.SQL("GRANT INSERT ON checkpoints TO {}").format(sql.Identifier(role))
        connection.execute(grant)
    again = create_reader(postgres_url, role)
    assert again.exit_code == 0, again.output
    assert f"role {role} exists already" in again.stdout
    with psycopg.connect(conninfo(postgres_url)) as connection:
        privileges = connection.execute(
            "SELECT has_table_privilege(%s, 'checkpoints', 'INSERT'), "
            "has_table_privilege(%s, 'checkpoints', 'SELECT')",
            [role, role],
        ).fetchone()
    assert privileges == (False, True)


def test_an_existing_role_that_can_do_more_than_read_is_refused(postgres_url: str) -> None:
    CheckpointStore(postgres_url).close()
    owner = make_url(postgres_url).username
    assert owner is not None
    result = create_reader(postgres_url, owner)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"role {owner!r} exists and can do more than read" in line
    assert "owns the schema" in line


def test_create_reader_needs_a_store(postgres_url: str, role: str) -> None:
    result = create_reader(postgres_url, role)
    assert result.exit_code == 1
    assert "no checkpointdb store" in one_error_line(result)
    assert not role_exists(postgres_url, role)


@pytest.mark.parametrize(
    "name",
    ["bad name", "1reader", 'x"; DROP ROLE y; --', "pg_reader", "public", "r" * 64, ""],
)
def test_a_bad_role_name_is_one_line_exit_2(backend_url: str, name: str) -> None:
    result = create_reader(backend_url, name)
    assert result.exit_code == 2
    assert f"invalid role name {name!r}" in one_error_line(result)


def test_sqlite_is_refused_in_one_line(sqlite_path: Path) -> None:
    CheckpointStore(sqlite_path).close()
    before = hashlib.sha256(sqlite_path.read_bytes()).hexdigest()
    result = create_reader(str(sqlite_path), "reader")
    assert result.exit_code == 2
    assert "applies to PostgreSQL only" in one_error_line(result)
    assert hashlib.sha256(sqlite_path.read_bytes()).hexdigest() == before


def test_an_empty_password_on_stdin_is_refused(postgres_url: str, role: str) -> None:
    CheckpointStore(postgres_url).close()
    result = create_reader(postgres_url, role, "--password-stdin", input="\n")
    assert result.exit_code == 2
    assert "empty password" in one_error_line(result)
    assert not role_exists(postgres_url, role)
