"""Many writers, one PostgreSQL store: contiguous ids, and a JSONB query.

Eight threads append to one session at once; every id is issued exactly
once, in order. Then a query filters the checkpoints by a JSON field with
PostgreSQL's ``@>``.

    export CHECKPOINTDB_URL='postgresql+psycopg://user:password@localhost/agents'
    python examples/postgres_agent.py

It needs ``pip install "checkpointdb[postgres]"`` and a server; without
``CHECKPOINTDB_URL`` naming one it says so and exits with status 2.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, text

from checkpointdb import CheckpointStore

WRITERS = 8
STEPS = 25


def main() -> None:
    """Write from many threads, check the ids, query JSONB."""
    url = os.environ.get("CHECKPOINTDB_URL", "")
    if not url.startswith("postgresql"):
        print("set CHECKPOINTDB_URL to a postgresql+psycopg:// URL to run this example")
        sys.exit(2)

    with CheckpointStore(url) as store:
        if store.session("shared-run") is not None:
            store.delete_session("shared-run")  # a rerun starts from id 1 again
        mgr = store.manager("shared-run", keep="all")

        def writer(worker: int) -> None:
            for step in range(STEPS):
                mgr.create("tool_done", {"worker": worker, "step": step}, {"ok": step % 5 != 0})

        with ThreadPoolExecutor(WRITERS) as pool:
            list(pool.map(writer, range(WRITERS)))
        seqs = sorted(cp.seq for cp in mgr)
        assert seqs == list(range(1, WRITERS * STEPS + 1)), "ids are contiguous and unique"
        print(f"{len(seqs)} checkpoints from {WRITERS} threads, ids 1..{seqs[-1]}")

        engine = create_engine(store.url)
        try:
            with engine.connect() as connection:
                failed = connection.execute(
                    text(
                        "SELECT count(*) FROM checkpoints "
                        "WHERE session_id = :sid AND metadata @> '{\"ok\": false}'"
                    ),
                    {"sid": "shared-run"},
                ).scalar_one()
        finally:
            engine.dispose()
        print(f"{failed} steps had ok=false (metadata @> '{{\"ok\": false}}')")


if __name__ == "__main__":
    main()
