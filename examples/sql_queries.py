"""Ask the store questions in SQL, from Python, on SQLite or PostgreSQL.

Builds docs/SQL.md's example store (see docs_store.py) in a new database,
then runs two of its recipes through SQLAlchemy on the documented views, and
on SQLite also through the standard library's ``sqlite3``, read-only.

    python examples/sql_queries.py                # a new ./sql-example.db
    python examples/sql_queries.py postgresql+psycopg://user:password@host/db
"""

from __future__ import annotations

import sqlite3
import sys

from docs_store import build_example
from sqlalchemy import create_engine, text

from checkpointdb import CheckpointStore

BIGGEST_TOOL_CALLS = """
SELECT id, name, created_at, payload_bytes
FROM checkpoint_view
WHERE name = 'tool_done'
ORDER BY payload_bytes DESC
LIMIT 2
"""

PER_SESSION = """
SELECT id, checkpoint_count, payload_bytes, last_checkpoint_at
FROM session_view
ORDER BY id
"""


def main() -> None:
    """Build the example store and query it."""
    target = sys.argv[1] if len(sys.argv) > 1 else "sql-example.db"
    with CheckpointStore(target) as store:
        if store.sessions():
            sys.exit(f"{store.where} already has sessions; give a new path")
        build_example(store)
        url, dialect = store.url, store.dialect

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            for query in (BIGGEST_TOOL_CALLS, PER_SESSION):
                for row in connection.execute(text(query)):
                    print(" | ".join(str(value) for value in row))
                print()
    finally:
        engine.dispose()

    if dialect == "sqlite":
        # The plain sqlite3 module works too; mode=ro never writes to the file.
        with sqlite3.connect(f"file:{url.database}?mode=ro", uri=True) as connection:
            (count,) = connection.execute(
                "SELECT count(*) FROM checkpoints WHERE json_extract(data, '$.retries') > 0"
            ).fetchone()
        print(f"checkpoints that needed a retry: {count}")


if __name__ == "__main__":
    main()
