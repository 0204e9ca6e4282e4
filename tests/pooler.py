"""A PgBouncer in transaction pooling mode in front of the test server.

Started once per test run by the ``pgbouncer`` fixture (tests/conftest.py).
Every database of the server is reachable through it under its own name
(PgBouncer's ``*`` entry), so each test gets a database of its own: the
per-test schemas of the direct tests are chosen with a startup ``options``
parameter, which PgBouncer refuses.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL, make_url

# Seconds PgBouncer may take to start or stop.
PATIENCE = 15.0
# Server connections per database and user. Fewer than the client
# connections the multi-process tests open, so that clients share them; as
# many as the migration test needs at once (four waiting openers, the
# holder of the lock and the observer).
POOL_SIZE = 6
# Server connections in all: each test has a database (a pool) of its own,
# and idle pools must not hold the server's max_connections, which other
# test runs share. At the limit PgBouncer closes an idle connection of
# another pool.
MAX_SERVER_CONNECTIONS = 10


def find_pgbouncer() -> str | None:
    """The pgbouncer executable (Debian puts it in /usr/sbin, off a user's PATH)."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class PgBouncer:
    """One pgbouncer process and its files, in a temporary directory of its own.

    As root it runs as the ``postgres`` user (PgBouncer refuses to run as
    root); otherwise as the current user.
    """

    def __init__(self, executable: str, server_url: str) -> None:
        self.server = make_url(server_url)
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="checkpointdb-pgbouncer-"))
        self.log = self.directory / "pgbouncer.log"
        user = self.server.username or "postgres"
        (self.directory / "userlist.txt").write_text(
            f"{_quoted(user)} {_quoted(self.server.password or '')}\n"
        )
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.server.host or '127.0.0.1'} port={self.server.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {POOL_SIZE}\n"
            f"max_user_connections = {MAX_SERVER_CONNECTIONS}\n"
            "server_idle_timeout = 10\n"
            "max_client_conn = 500\n"
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'userlist.txt'}\n"
            f"logfile = {self.log}\n"
        )
        as_postgres = os.geteuid() == 0
        if as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
            for path in self.directory.iterdir():
                shutil.chown(path, "postgres", "postgres")
        # A file, not a pipe: PgBouncer logs every connection to stderr too,
        # and stops once a pipe nobody reads is full.
        self.stderr = self.directory / "stderr.txt"
        with self.stderr.open("wb") as stderr:
            self.process = subprocess.Popen(
                [executable, str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                **(
                    {"user": "postgres", "group": "postgres", "extra_groups": []}
                    if as_postgres
                    else {}
                ),
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` through PgBouncer."""
        pooled: URL = self.server.set(host="127.0.0.1", port=self.port, database=database)
        return pooled.render_as_string(hide_password=False)

    def _wait_until_ready(self) -> None:
        conninfo = make_url(self.url(self.server.database or "postgres")).set(
            drivername="postgresql"
        )
        deadline = time.monotonic() + PATIENCE
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start: {self._output()}")
            try:
                with psycopg.connect(
                    conninfo.render_as_string(hide_password=False), connect_timeout=2
                ) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"pgbouncer did not answer within {PATIENCE:g}s ({exc}): {self._output()}"
                    ) from exc
                time.sleep(0.1)

    def _output(self) -> str:
        """What pgbouncer said on stderr and in its log, for a failure's message."""
        said = [
            path.read_text(errors="replace") for path in (self.stderr, self.log) if path.exists()
        ]
        return "".join(said).strip()[-2000:]

    def stop(self) -> None:
        """End the process (it drops every connection) and remove its files."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(PATIENCE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
