"""A throwaway PostgreSQL server from Debian's packages, for the tests that need one."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from tests.service.conftest import free_port, wait_for


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found: apt-get install postgresql")
    return found[-1]


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh server's `postgres` database (trust auth, loopback)."""
    import psycopg

    root = tempfile.mkdtemp(prefix="swapyard-pg-")
    data, port = os.path.join(root, "data"), free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run(_as_postgres(_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres"), **run)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            _bin("pg_ctl"),
            "-D",
            data,
            "-o",
            options,
            "-w",
            "start",
            "-l",
            os.path.join(root, "log"),
        ),
        **run,
    )
    try:
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"

        def accepting() -> bool:
            try:
                psycopg.connect(dsn).close()
            except psycopg.OperationalError:
                return False
            return True

        wait_for(accepting, 30, "PostgreSQL to accept connections")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres(_bin("pg_ctl"), "-D", data, "-m", "immediate", "stop"),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
