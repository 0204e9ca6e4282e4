"""``export`` and ``import``: move a session between databases as a JSON file."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO, TypeVar

import click

from ..errors import CheckpointDBError
from . import output
from .common import Env, examples, json_option, require_session, session_argument

if TYPE_CHECKING:
    from ..store import CheckpointStore

T = TypeVar("T")


def _write_file_atomically(path: Path, produce: Callable[[TextIO], T]) -> T:
    """Write ``path`` through a 0600 temporary file renamed over it: never half a file.

    A symlink is followed (the file it points to is replaced, the link
    stays); a device or a pipe (``-o /dev/stdout``) is written to directly.
    """
    target = Path(os.path.realpath(path.expanduser()))
    if target.exists() and not target.is_file():
        try:
            with target.open("w", encoding="utf-8") as handle:
                return produce(handle)
        except OSError as exc:
            raise CheckpointDBError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".partial", dir=target.parent
        )
    except OSError as exc:
        raise CheckpointDBError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            result = produce(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return result


@click.command("export")
@session_argument
@click.option(
    "-o",
    "--output",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (mode 0600, replaced atomically) instead of stdout.",
)
@click.pass_obj
@examples(
    "checkpointdb export demo -o demo.json",
    "checkpointdb export demo | jq 'length'",
)
def export_command(env: Env, session_id: str, target: Path | None) -> None:
    """Export a session's checkpoints as JSON, a page of rows at a time.

    The file is a JSON list of {id, name, timestamp, data, metadata},
    oldest first: exactly what CheckpointManager.export() returns, and what
    `import` reads. Timestamps keep their offset (+00:00), as export() writes them.
    """
    store = env.open_store()
    info = require_session(store, session_id)
    mgr = store.manager(session_id)

    def write(handle: TextIO) -> int:
        with click.progressbar(
            length=info.checkpoint_count,
            label="Exporting",
            file=sys.stderr,
            hidden=not output.progress_wanted(info.checkpoint_count, output.PROGRESS_MIN_ROWS),
        ) as bar:
            written = mgr.export_to(handle, progress=bar.update)
        handle.write("\n")
        return written

    if target is None:
        write(sys.stdout)
        return
    written = _write_file_atomically(target, write)
    output.note(
        f"exported {output.count(written, 'checkpoint')} of session {session_id!r} to {target}"
    )


def _file_size(stream: IO[bytes]) -> int | None:
    """The size of a regular file behind ``stream``, or None (a pipe, a terminal)."""
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


@click.command("import")
@session_argument
@click.argument("file", type=click.File("rb"))
@json_option
@click.pass_obj
@examples(
    "checkpointdb import demo-copy demo.json",
    "checkpointdb --db old.db export agent-7 | checkpointdb --db new.db import agent-7 -",
)
def import_command(env: Env, session_id: str, file: IO[bytes], as_json: bool) -> None:
    """Import checkpoints from an export file into SESSION, all or nothing.

    FILE is JSON as `export` or CheckpointManager.export() writes it (or as
    `list --json` prints it); - reads stdin. The file is read a chunk at a
    time, so memory stays small however large it is, and every entry is
    checked as it is read, in one transaction: one bad entry imports
    nothing. Checkpoints keep their order and timestamps. An entry keeps its
    id only if the id is SESSION's and above every id SESSION has issued;
    any other gets the next fresh id, so no id is ever duplicated. The
    database is created if it does not exist (but a failed or empty import
    leaves no new file). A progress bar is drawn on a
    terminal.
    """
    url = env.url()
    path = Path(str(url.database)) if url.get_backend_name() == "sqlite" else None
    new_file = path if path is not None and not path.exists() else None
    store = env.open_store(create=True)
    mgr = store.manager(session_id)
    started = time.monotonic()
    total = _file_size(file)
    draw = total is not None and output.progress_wanted(total, output.PROGRESS_MIN_BYTES)
    try:
        with click.progressbar(
            length=total or 0, label="Importing", file=sys.stderr, hidden=not draw
        ) as bar:
            imported = mgr.import_from(file, progress=bar.update)
    except BaseException:
        _remove_new_database(store, new_file)
        raise
    found = store.session(session_id)
    if imported == 0:
        _remove_new_database(store, new_file)
    if as_json:
        output.emit_json(
            {
                "session_id": session_id,
                "imported": imported,
                "checkpoint_count": found.checkpoint_count if found else 0,
                "last_seq": found.last_seq if found else 0,
            }
        )
        return
    if imported == 0:
        source = getattr(file, "name", "the input")
        output.line(f"{source} holds no checkpoints; nothing was imported")
        return
    info = require_session(store, session_id)
    output.line(
        f"imported {output.count(imported, 'checkpoint')} into session {session_id!r} in "
        f"{time.monotonic() - started:.1f} s; it now has {info.checkpoint_count} "
        f"(newest id {session_id}:{info.last_seq})"
    )


def _remove_new_database(store: CheckpointStore, path: Path | None) -> None:
    """Remove the SQLite file this command created, once it is known to hold nothing.

    Called only when nothing was committed to it, so a failed or empty import
    leaves no database behind.
    """
    if path is None:
        return
    store.close()
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


COMMANDS = (export_command, import_command)
