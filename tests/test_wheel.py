"""The built wheel carries its migrations: an install with no checkout around works."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("checkpointdb-*.whl")
    return built


def test_the_wheel_contains_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "checkpointdb/migrations/env.py" in names
    assert "checkpointdb/migrations/script.py.mako" in names
    assert "checkpointdb/alembic.ini" in names
    assert "checkpointdb/py.typed" in names
    shipped = {n for n in names if n.startswith("checkpointdb/migrations/versions/")}
    in_checkout = {
        f"checkpointdb/migrations/versions/{p.name}"
        for p in (REPO_ROOT / "migrations" / "versions").glob("*.py")
    }
    assert shipped == in_checkout


SCRIPT = r"""
import sys
from pathlib import Path
import checkpointdb
from checkpointdb import CheckpointStore
from checkpointdb.engine import Database, resolve_url
from checkpointdb.migrate import head_revision, migrations_dir, upgrade
from checkpointdb.repository import Repository

site = Path(checkpointdb.__file__).parent
assert migrations_dir().is_relative_to(site), migrations_dir()
old = Database(resolve_url("old.db"))
upgrade(old, Repository(old.engine.dialect), "0001")
old.dispose()
with CheckpointStore("new.db") as store:
    store.manager("s").create("a", {"k": "ü"})
    assert store.schema_revision() == head_revision()
print(head_revision())
"""


@pytest.mark.slow
def test_an_installed_wheel_creates_and_upgrades_databases_outside_the_repo(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CHECKPOINTDB_URL")}
    result = subprocess.run(
        [str(python), "-c", SCRIPT], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    head = result.stdout.strip()
    checkpointdb = env_dir / "bin" / "checkpointdb"
    check = subprocess.run(
        [str(checkpointdb), "--db", "old.db", "db", "check"], cwd=work, env=env, timeout=120
    )
    assert check.returncode != 0  # still at 0001
    upgraded = subprocess.run(
        [str(checkpointdb), "--db", "old.db", "db", "upgrade"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    current = subprocess.run(
        [str(checkpointdb), "--db", "old.db", "db", "current"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert head in current.stdout
    assert (work / "old.db").stat().st_mode & 0o777 == 0o600
