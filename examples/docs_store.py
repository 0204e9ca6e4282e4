"""Build the example store of docs/SQL.md, so its queries can be run as documented.

    python examples/docs_store.py                 # writes ./docs-example.db
    sqlite3 -readonly docs-example.db "SELECT id, name, created_at FROM checkpoint_view"

An argument names another SQLite path or a PostgreSQL URL. Sessions
``agent-1`` and ``agent-2`` are imported with fixed timestamps on 5 January
2026; ``agent-3`` writes its only checkpoint now. The target must not hold
these sessions yet.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from checkpointdb import CheckpointStore

# (session, name, timestamp, data, metadata), imported with these timestamps.
EXAMPLE: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
    (
        "agent-1",
        "task_started",
        "2026-01-05T09:00:00+00:00",
        {"goal": "write the report", "retries": 0},
        {"run": "r1", "agent": {"role": "planner"}},
    ),
    (
        "agent-1",
        "tool_done",
        "2026-01-05T09:20:00+00:00",
        {"tool": "search", "retries": 1},
        {"run": "r1", "agent": {"role": "coder"}},
    ),
    (
        "agent-1",
        "tool_done",
        "2026-01-05T09:40:00+00:00",
        {"tool": "fetch", "retries": 4},
        {"run": "r1", "agent": {"role": "coder"}},
    ),
    (
        "agent-1",
        "tool_done",
        "2026-01-05T10:10:00+00:00",
        {"tool": "search", "retries": 0, "notes": "x" * 200},
        {"run": "r1", "agent": {"role": "coder"}},
    ),
    (
        "agent-2",
        "task_started",
        "2026-01-05T09:05:00+00:00",
        {"goal": "triage the inbox", "retries": 0},
        {"run": "r2", "agent": {"role": "planner"}},
    ),
    (
        "agent-2",
        "error",
        "2026-01-05T10:30:00+00:00",
        {"tool": "fetch", "retries": 5, "error": "timeout"},
        {"run": "r2", "agent": {"role": "coder"}},
    ),
]
# Written live, so its time is "now".
LIVE = ("agent-3", "task_started", {"goal": "daily digest", "retries": 0}, {"run": "r3"})


def build_example(store: CheckpointStore) -> None:
    """Write the example sessions into ``store``."""
    for session in ("agent-1", "agent-2"):
        entries = [
            {"id": f"import:{i}", "name": name, "timestamp": ts, "data": data, "metadata": meta}
            for i, (sid, name, ts, data, meta) in enumerate(EXAMPLE)
            if sid == session
        ]
        store.manager(session).import_checkpoints(json.dumps(entries))
    session, name, data, meta = LIVE
    store.manager(session).create(name, data, meta)


def main() -> None:
    """Build the store at the path or URL given (default ./docs-example.db)."""
    target = sys.argv[1] if len(sys.argv) > 1 else "docs-example.db"
    with CheckpointStore(target) as store:
        if store.sessions():
            sys.exit(f"{store.where} already has sessions; give a new path")
        build_example(store)
        print(f"built the docs/SQL.md example store in {store.where}")


if __name__ == "__main__":
    main()
