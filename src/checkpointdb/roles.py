"""PostgreSQL: a login role that may only read the store (``checkpointdb db create-reader``).

``checkpointdb sql`` runs its query in a READ ONLY transaction, which does
not stop functions that act outside the transaction (``pg_terminate_backend``,
``dblink_exec``). Connecting as a role that has no privilege but SELECT on
the store does. The role gets exactly that: CONNECT on the database, USAGE
on the store's schema and SELECT on the store's tables and views, which are
named one by one, so tables of other applications in the same schema stay
closed to it. A role that exists already is granted the same again, after
its other privileges on the store's tables are revoked; one that could do
more than read whatever its grants (a superuser, CREATEROLE, a member of
another role, the owner of the schema or of a table in it) is refused.

Tables a later revision adds are not covered: run it again after
``checkpointdb db upgrade``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL

from .engine import describe, require_psycopg
from .errors import CheckpointDBError, InvalidDataError
from .migrate import no_store_error
from .readonly import _first_line, connect_postgres

if TYPE_CHECKING:
    import psycopg

# Views the migrations create; the tables come from the models.
STORE_VIEWS = ("checkpoint_view", "session_view")
# The table Alembic stamps the schema's revision in.
VERSION_TABLE = "alembic_version"
# PostgreSQL truncates longer identifiers, which would name another role.
MAX_ROLE_BYTES = 63
_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names PostgreSQL keeps for itself in role positions.
_RESERVED_ROLES = frozenset({"public", "none", "current_user", "current_role", "session_user"})


def check_role_name(role: str) -> str:
    """Return ``role`` if it can name a new PostgreSQL login role.

    Letters, digits and underscores, not starting with a digit, at most 63
    bytes; not a name PostgreSQL reserves (``public``, ``pg_...``).

    Raises:
        InvalidDataError: it cannot, naming the value and why.
    """
    if not _ROLE_NAME.match(role) or len(role) > MAX_ROLE_BYTES:
        raise InvalidDataError(
            f"invalid role name {role!r}: use letters, digits and underscores, not starting "
            f"with a digit, at most {MAX_ROLE_BYTES} characters"
        )
    if role.lower() in _RESERVED_ROLES or role.lower().startswith("pg_"):
        raise InvalidDataError(f"invalid role name {role!r}: PostgreSQL reserves it")
    return role


def store_objects() -> tuple[str, ...]:
    """Every table and view a store at the newest revision has, by name."""
    from .models import Base

    return tuple(sorted({*Base.metadata.tables, *STORE_VIEWS, VERSION_TABLE}))


@dataclass(frozen=True)
class ReaderPlan:
    """What :func:`create_reader` does: the statements, and whether the role existed."""

    role: str
    existed: bool
    statements: tuple[str, ...]
    reader_url: URL


# Stands for the reader's password in the URL printed for it.
PASSWORD_PLACEHOLDER = "PASSWORD"


def reader_url(url: URL, role: str, *, password: bool) -> URL:
    """``url`` logging in as ``role``, with :data:`PASSWORD_PLACEHOLDER` when it has a password."""
    return URL.create(
        url.drivername,
        username=role,
        password=PASSWORD_PLACEHOLDER if password else None,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )


def create_reader(
    url: URL, role: str, *, password: str | None = None, apply: bool = True
) -> ReaderPlan:
    """Create (or grant again) a login role that may only read the store at ``url``.

    All statements run in one transaction: the role and its grants land
    whole or not at all. With ``apply=False`` nothing is changed: the plan
    says what would run. A password is sent as a SCRAM (or, where the server
    says so, MD5) verifier computed here, so it never reaches the server's
    logs, nor the printed statements.

    Raises:
        InvalidDataError: ``role`` is not a usable role name.
        NoStoreError: there is no checkpointdb store at ``url``.
        CheckpointDBError: the role exists and can do more than read, the
            connecting role may not create roles, or the server failed.
    """
    check_role_name(role)
    require_psycopg()
    import psycopg

    where = describe(url)
    with _connection(url, where) as connection:
        try:
            statements, existed = _plan(connection, url, role, password)
            cursor = connection.cursor()
            if apply:
                for statement in statements:
                    cursor.execute(statement)
                connection.commit()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise CheckpointDBError(
                f"{where}: {_first_line(exc)}; run it as a role with CREATEROLE that owns "
                "the store (or as a superuser)"
            ) from exc
        except psycopg.Error as exc:
            raise CheckpointDBError(f"{where}: {_first_line(exc)}") from exc
    return ReaderPlan(
        role, existed, statements, reader_url(url, role, password=password is not None)
    )


@contextmanager
def _connection(url: URL, where: str) -> Iterator[psycopg.Connection[Any]]:
    connection = connect_postgres(url, where, "checkpointdb db create-reader")
    try:
        yield connection
    finally:
        connection.close()  # an unfinished transaction is rolled back


def _plan(
    connection: psycopg.Connection[Any], url: URL, role: str, password: str | None
) -> tuple[tuple[str, ...], bool]:
    """The statements that make ``role`` a reader of the store, and whether it exists."""
    from psycopg import sql

    where = describe(url)
    schema, database = connection.execute(
        "SELECT current_schema(), current_database()"
    ).fetchone() or (None, None)
    if schema is None:
        raise no_store_error(url)
    present = {
        str(row[0])
        for row in connection.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
            [list(store_objects())],
        )
    }
    if not {"sessions", "checkpoints"} <= present:
        raise no_store_error(url)
    existing = connection.execute(
        """
        SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
               EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid),
               EXISTS (SELECT 1 FROM pg_namespace n
                       WHERE n.nspname = current_schema() AND n.nspowner = r.oid)
               OR EXISTS (SELECT 1 FROM pg_class c
                          JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = current_schema() AND c.relowner = r.oid)
        FROM pg_roles r WHERE r.rolname = %s
        """,
        [role],
    ).fetchone()
    if existing is not None:
        powers = [
            power
            for power, has in zip(
                (
                    "is a superuser",
                    "has CREATEROLE",
                    "has CREATEDB",
                    "has REPLICATION",
                    "has BYPASSRLS",
                    "is a member of another role",
                    "owns the schema or a table in it",
                ),
                existing,
                strict=True,
            )
            if has
        ]
        if powers:
            raise CheckpointDBError(
                f"{where}: role {role!r} exists and can do more than read ({', '.join(powers)}); "
                "nothing was changed: choose another name"
            )
    name = sql.Identifier(role)
    login: sql.Composable = sql.SQL("LOGIN")
    if password is not None:
        verifier = connection.pgconn.encrypt_password(
            password.encode(connection.info.encoding), role.encode(connection.info.encoding)
        )
        login = sql.SQL("LOGIN PASSWORD {}").format(sql.Literal(verifier.decode("ascii")))
    objects = sql.SQL(", ").join(sql.Identifier(schema, table) for table in sorted(present))
    statements = [
        sql.SQL("ALTER ROLE {} {}").format(name, login)
        if existing is not None
        else sql.SQL(
            "CREATE ROLE {} {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        ).format(name, login),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(str(database)), name),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), name),
        sql.SQL("REVOKE ALL ON {} FROM {}").format(objects, name),
        sql.SQL("GRANT SELECT ON {} TO {}").format(objects, name),
    ]
    return tuple(statement.as_string(connection) for statement in statements), (
        existing is not None
    )
