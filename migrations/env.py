"""Alembic environment for checkpointdb.

Called two ways:

* from checkpointdb itself (``CheckpointStore``, ``checkpointdb db ...``),
  which hands over a connection already holding the migration lock in
  ``config.attributes["connection"]``; it is used as is;
* from the ``alembic`` command in the repository root, which has no
  connection: the target is ``sqlalchemy.url`` if set, else
  ``$CHECKPOINTDB_URL``, else ./checkpoints.db, migrated under the same lock.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from checkpointdb.engine import Database, resolve_url
from checkpointdb.migrate import locked_connection
from checkpointdb.models import Base
from checkpointdb.repository import Repository

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: rebuild tables (batch mode). The
        # caller has switched foreign keys off, so the rebuild cascades nothing.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = resolve_url(config.get_main_option("sqlalchemy.url") or None)
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    db = Database(resolve_url(config.get_main_option("sqlalchemy.url") or None))
    try:
        with locked_connection(db, Repository(db.engine.dialect)) as locked:
            run_migrations(locked)
    finally:
        db.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
