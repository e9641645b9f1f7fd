"""A PostgreSQL connection proxy the tests can cut: between one `sipprov serve` and the
database, to cut that instance off from PostgreSQL while the others still reach it.

cut(): nothing is forwarded any more either way (the instance's queries get no answer,
as on a dead network) and new connections hang; after `close_after` seconds the
upstream sockets are closed, which is what PostgreSQL's TCP keepalive does to a peer
that stopped answering. It records when the instance closed its leader-lease
connection (`lease_closed_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

LEASE_MARK = b"sipprov-leader "


class PgProxy:
    def __init__(self, dsn: str, workdir: Path) -> None:
        self.upstream_dsn = dsn
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        self._unix = "host" in query and query["host"][0].startswith("/")
        port = parts.port or int(query.get("port", ["5432"])[0])
        if self._unix:
            self._up_path = f"{query['host'][0]}/.s.PGSQL.{port}"
            workdir.mkdir(parents=True, exist_ok=True)
            self._dir = workdir
            self._path = str(workdir / f".s.PGSQL.{port}")
            query["host"] = [str(workdir)]
            self.dsn = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        else:
            self._up_host, self._up_port = parts.hostname or "127.0.0.1", port
        self._server: asyncio.AbstractServer | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = []
        self._cut = asyncio.Event()
        self.cut_at: float | None = None
        self.lease_closed_at: float | None = None
        self.upstream_closed_at: float | None = None

    async def start(self) -> PgProxy:
        if self._unix:
            self._server = await asyncio.start_unix_server(self._client, self._path)
        else:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            port = self._server.sockets[0].getsockname()[1]
            parts = urlsplit(self.upstream_dsn)
            netloc = parts.netloc.rsplit("@", 1)
            host = f"127.0.0.1:{port}"
            self.dsn = urlunsplit(parts._replace(
                netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut.is_set():
            await asyncio.Event().wait()  # a new connection hangs while cut
        if self._unix:
            up_r, up_w = await asyncio.open_unix_connection(self._up_path)
        else:
            up_r, up_w = await asyncio.open_connection(self._up_host, self._up_port)
        self._pairs.append((writer, up_w))
        lease = [False]
        await asyncio.gather(self._pump(reader, up_w, lease, from_client=True),
                             self._pump(up_r, writer, lease, from_client=False),
                             return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    lease: list[bool], from_client: bool) -> None:
        try:
            while data := await reader.read(65536):
                if from_client and LEASE_MARK in data:
                    lease[0] = True
                if not self._cut.is_set():
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if from_client and lease[0] and self._cut.is_set() and self.lease_closed_at is None:
                self.lease_closed_at = time.monotonic()
            if not self._cut.is_set():
                with contextlib.suppress(Exception):
                    writer.close()

    def cut(self, close_after: float) -> None:
        self.cut_at = time.monotonic()
        self._cut.set()
        asyncio.get_running_loop().call_later(close_after, self._close_upstream)

    def _close_upstream(self) -> None:
        self.upstream_closed_at = time.monotonic()
        for _client, up in self._pairs:
            if up is not None:
                with contextlib.suppress(Exception):
                    up.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client, up in self._pairs:
            for w in (client, up):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.transport.abort()
