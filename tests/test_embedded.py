"""The embedded PostgreSQL (no database.dsn): it listens on a unix socket in its own data
folder and on no TCP port, so a system PostgreSQL on 5432 does not disturb it; the
service and every CLI command use the same server, and the last one out stops it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from sipprov.db import embedded

ROOT = Path(__file__).resolve().parent.parent
PG_PORT = 5432


def wait_for(what: str, check: Callable[[], object], timeout: float = 90) -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder outside pytest's tmp_path: pytest resets /tmp/pytest-of-<user> to
    0700 whenever another session starts, and the server runs as another user."""
    base = Path(tempfile.mkdtemp(prefix="sipprov-test-emb-"))
    yield base / "pg"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def system_postgres_port() -> Iterator[None]:
    """Something that owns TCP 5432 like a system PostgreSQL does (a real one, if the
    machine runs it, already does)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", PG_PORT))
        sock.listen()
    except OSError:
        with socket.create_connection(("127.0.0.1", PG_PORT), timeout=2):
            pass  # taken by someone else: the situation we want
    try:
        yield
    finally:
        sock.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _cli(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sipprov.cli.main", "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=180, env=_env())


def _postgres_pids(data_dir: Path) -> list[int]:
    """Postmasters serving data_dir, from /proc: not pg_ctl's or initdb's short-lived
    `postgres -C/--boot` runs, nor a child forked a moment ago that still has the
    postmaster's command line."""
    found: dict[int, tuple[list[bytes], int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if argv and argv[0].endswith(b"/postgres") and str(data_dir.resolve()).encode() in argv:
            found[int(proc.name)] = (argv, ppid)
    return sorted(pid for pid, (argv, ppid) in found.items()
                  if ppid not in found and not {b"-C", b"--boot", b"--single"} & set(argv))


@pytest.mark.usefixtures("system_postgres_port")
async def test_socket_only_in_its_own_folder_beside_a_system_postgres(data_dir: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import logging, sys; logging.basicConfig(level=logging.INFO)\n"
         "from sipprov.db import embedded\n"
         f"print(embedded.start({str(data_dir)!r}), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout is not None
        dsn = holder.stdout.readline().strip()
        assert dsn, "the embedded server did not start"
        info = embedded.running(data_dir)
        assert info is not None and info.tcp_addresses == ""
        assert info.socket_dir == data_dir.resolve()
        assert (data_dir / f".s.PGSQL.{PG_PORT}").is_socket()
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SHOW listen_addresses") == ""
            assert await conn.fetchval("SHOW unix_socket_directories") == str(data_dir.resolve())
            assert await conn.fetchval("SELECT inet_server_addr()") is None  # not TCP
            assert await conn.fetchval("SHOW data_directory") == str(data_dir.resolve())
        finally:
            await conn.close()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    # the last (only) user left: the server is stopped
    wait_for("the embedded server to stop", lambda: not _postgres_pids(data_dir))
    assert embedded.running(data_dir) is None


@pytest.mark.usefixtures("system_postgres_port")
def test_service_and_cli_share_one_embedded_server(tmp_path: Path, data_dir: Path) -> None:
    port = _free_port()
    conf = tmp_path / "sipprov.toml"
    conf.write_text(
        f'[http]\nport = {port}\n'
        f'[database]\nembedded_dir = "{data_dir}"\npool_min = 1\npool_max = 4\n'
        f'[asterisk]\nconfig_dir = "{tmp_path / "asterisk"}"\nami_port = 1\nami_timeout_s = 1.0\n'
        '[applier]\nbackoff_min_s = 0.2\nbackoff_max_s = 0.5\n')
    service = subprocess.Popen(
        [sys.executable, "-m", "sipprov.cli.main", "-c", str(conf), "serve"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    base = f"http://127.0.0.1:{port}/api/v1"

    def api(path: str, token: str | None = None, body: dict[str, object] | None = None) -> object:
        req = urllib.request.Request(base + path, method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def healthy() -> bool:
        assert service.poll() is None, service.stderr.read() if service.stderr else ""
        with contextlib.suppress(OSError):
            api("/health")
            return True
        return False

    try:
        wait_for("the service to answer", healthy)
        server_pids = _postgres_pids(data_dir)
        assert len(server_pids) == 1
        # A token made by the CLI is accepted by the service: the same database.
        made = _cli(conf, "token", "create", "--role", "admin", "--name", "ops")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        created = api("/agents", token, {"first_name": "Jan", "last_name": "Kowalski",
                                         "email": "jan@example.com"})
        assert isinstance(created, dict)
        # ... and the CLI sees what the service wrote.
        listed = _cli(conf, "agents", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert "jan.kowalski" in listed.stdout
        # The CLI's exit did not stop the service's server, and no second one started.
        assert _postgres_pids(data_dir) == server_pids
        assert isinstance(api("/agents", token), (dict, list))
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    assert service.returncode == 0
    wait_for("the embedded server to stop with its last user", lambda: not _postgres_pids(data_dir))


def test_concurrent_cli_commands_start_one_server(tmp_path: Path, data_dir: Path) -> None:
    """Two commands racing on a folder with no server: both work, never two servers at
    once, and none is left when both are done."""
    conf = tmp_path / "sipprov.toml"
    conf.write_text(f'[database]\nembedded_dir = "{data_dir}"\npool_min = 1\npool_max = 2\n')
    procs = [subprocess.Popen([sys.executable, "-m", "sipprov.cli.main", "-c", str(conf),
                               "db", "upgrade"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env()) for _ in range(2)]
    while any(p.poll() is None for p in procs):
        assert len(_postgres_pids(data_dir)) <= 1
        time.sleep(0.05)
    for p in procs:
        out, err = p.communicate()
        assert p.returncode == 0, err
        assert "schema at version" in out
    wait_for("the embedded server to stop", lambda: not _postgres_pids(data_dir))
