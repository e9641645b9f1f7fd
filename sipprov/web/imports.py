"""CSV import jobs of the console: upload -> dry run (the preview) -> apply in the
background with progress -> the generated passwords, downloadable once.

Several `sipprov serve` instances may stand behind one load balancer, so a job is a
row of `import_jobs` (migration 019), not one process's memory: the upload may land on
one instance and the preview, the confirmation, the progress polls and the download on
others; a restart forgets nothing but the work in flight.

- **Secrets at rest.** The uploaded file (personal data, maybe password cells), the
  preview and the result (logins, e-mails, changed values) and the generated passwords
  are Fernet tokens under a random key per job. The key lives only in the admin's
  browser: an HttpOnly, SameSite=Strict cookie (Secure over TLS) whose path is the
  job's own, so any instance decrypts when that browser asks, and the row alone
  reveals nothing. The plaintext exists only in the memory of the instance serving a
  request, and in a private folder (0700, files 0600) until the importer has read it.
- **The apply** runs on the instance that received the confirmation. It holds the
  session advisory lock (7261019, lock_key) on a connection of its own for as long as
  the job runs and writes the progress to the row every PROGRESS_EVERY_S. Whichever
  instance a poll reaches, it finds a running job whose lock nobody holds and marks it
  interrupted: the instance died (PostgreSQL ends a dead client's session, and its
  locks, at once for a closed socket, within the pool's keepalive time otherwise).
- **Interrupted** changed nothing unless `committed_at` is set: the import is one
  transaction (sipprov.bulk.importer) and `committed_at` is written inside it. When it
  is set, the agents were imported but the instance died before the generated
  passwords were saved: the page says to give them new ones.
- **Download once** deletes the ciphertext of the passwords in the same transaction.
  Jobs older than MAX_AGE_S are deleted by whichever instance notices (every upload).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.fernet import Fernet, InvalidToken

from sipprov.bulk import importer
from sipprov.bulk.state import RowResult
from sipprov.config import Config
from sipprov.db.sql import import_jobs as sql
from sipprov.errors import SipprovError
from sipprov.i18n import reasons
from sipprov.pbx import procfs

log = logging.getLogger(__name__)

MAX_AGE_S = 3600
PROGRESS_EVERY_S = 0.5
UPLOAD_NAME = "upload.csv"
FOLDER_PREFIX = "sipprov-import-"
CREDENTIALS_NAME = "credentials.csv"
KEY_COOKIE = "sipprov_import_key"
FINISHED = ("done", "failed", "interrupted")


class KeyMissing(Exception):
    """This browser has no key for the job (another browser's job, or the cookie is
    gone): nothing of it can be shown."""


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _seal(key: str, data: bytes) -> bytes:
    return Fernet(key.encode("ascii")).encrypt(data)


def _unseal(key: str | None, token: bytes) -> bytes:
    if not key:
        raise KeyMissing()
    try:
        return Fernet(key.encode("ascii")).decrypt(token)
    except (InvalidToken, ValueError):
        raise KeyMissing() from None


@dataclass
class Report:
    """What the page shows of a dry run or of the real run."""

    rows: list[RowResult] = field(default_factory=list)
    committed: bool = False
    applied: bool | None = None
    web_passwords_pending: int = 0
    error: str | None = None

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)

    @classmethod
    def of(cls, report: importer.ImportReport) -> Report:
        return cls(list(report.rows), report.committed,
                   None if report.wait is None else report.wait.applied,
                   report.web_passwords_pending)

    def dump(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), default=str).encode()

    @classmethod
    def load(cls, data: bytes) -> Report:
        raw = json.loads(data)
        raw["rows"] = [RowResult(**r) for r in raw["rows"]]
        return cls(**raw)


@dataclass
class Job:
    id: str
    filename: str
    continue_on_error: bool
    state: str
    step: str
    done: int
    total: int | None
    committed: bool
    has_credentials: bool
    preview: Report
    result: Report | None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def error(self) -> str | None:
        return self.result.error if self.result is not None else self.preview.error

    def progress(self) -> dict[str, object]:
        return {"step": self.step, "done": self.done, "total": self.total,
                "state": self.state, "finished": self.state in FINISHED}


def reason_text(row: RowResult, gettext: Callable[[str], str]) -> str:
    """A rejected row's reason without its field, in the page's language when it is one
    of sipprov's catalog messages (else the English)."""
    if row.reason is not None:
        return reasons.reason(gettext, row.reason, row.params)
    error = row.error or ""
    prefix = f"{row.field}: " if row.field else None
    return error[len(prefix):] if prefix and error.startswith(prefix) else error


class _Folder:
    """A private folder (0700) with the uploaded file (0600) until the importer has read
    it (ImportOptions.remove_input), and the credentials file while the import runs.
    Named after this process, so that folders left by a killed one are removed
    (remove_orphans) by the next instance on the host that starts or takes an upload."""

    def __init__(self, data: bytes):
        self.path = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
        self.csv = self.path / UPLOAD_NAME
        self.csv.touch(0o600)
        self.csv.write_bytes(data)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def remove_orphans() -> int:
    """Delete the import folders of processes that are gone (SIGKILL, crash)."""
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name[len(FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not procfs.alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _options(folder: _Folder, continue_on_error: bool, actor: str, dry_run: bool,
             **more: Any) -> importer.ImportOptions:
    return importer.ImportOptions(
        dry_run=dry_run, continue_on_error=continue_on_error, actor=actor,
        credentials_path=folder.path / CREDENTIALS_NAME, rejects_path=folder.path / "rejects.csv",
        wait=True, wait_timeout=60.0, apply_self=False, progress=False, remove_input=True, **more)


async def upload(pool: asyncpg.Pool, cfg: Config, user_id: int, filename: str, data: bytes,
                 continue_on_error: bool, actor: str) -> tuple[str, str]:
    """The preview: everything checked for real in a transaction that is rolled back.
    Returns (job id, key); a file-level problem (header, structure) raises SipprovError
    and stores nothing."""
    with contextlib.suppress(asyncpg.PostgresError):
        await sql.prune(pool)
    remove_orphans()
    folder = _Folder(data)
    try:
        report = await importer.import_file(pool, cfg, folder.csv,
                                            _options(folder, continue_on_error, actor, True))
    finally:
        folder.remove()
    key, job_id = new_key(), secrets.token_urlsafe(16)
    await sql.insert(pool, job_id, user_id, filename[:120], continue_on_error,
                     _seal(key, data), _seal(key, Report.of(report).dump()), MAX_AGE_S)
    return job_id, key


async def load(pool: asyncpg.Pool, job_id: str, user_id: int, key: str | None) -> Job | None:
    """The job as this user's browser may see it (None: no such job of this user);
    KeyMissing when the browser cannot open it. A running job whose instance is gone is
    marked interrupted first."""
    row = await sql.get(pool, job_id, user_id)
    if row is not None and row["state"] == "running" and await sql.mark_interrupted(pool, job_id):
        log.warning("import job %s: its instance %s stopped; marked interrupted", job_id, row["runner"])
        row = await sql.get(pool, job_id, user_id)
    if row is None:
        return None
    preview = Report.load(_unseal(key, row["preview_enc"]))
    result = Report.load(_unseal(key, row["result_enc"])) if row["result_enc"] is not None else None
    return Job(row["id"], row["filename"], row["continue_on_error"], row["state"], row["step"],
               row["done"], row["total"], row["committed"], row["has_credentials"], preview, result)


class Runs:
    """The import jobs this process is applying (their tasks), stopped with the app."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, pool: asyncpg.Pool, cfg: Config, job_id: str, user_id: int,
                    key: str | None, actor: str, instance: str) -> bool:
        """preview -> running, on this instance; False when the job is not (or no longer)
        a preview of this user's. The apply goes on in the background."""
        row = await sql.get(pool, job_id, user_id)
        if row is None or row["state"] != "preview":
            return False
        _unseal(key, row["preview_enc"])  # this browser holds the job's key
        assert key is not None
        conn = await pool.acquire()
        try:
            await sql.lock(conn, row["lock_key"])
            started = await sql.start(conn, job_id, user_id, instance)
            if started is None:
                await sql.unlock(conn, row["lock_key"])
                await pool.release(conn)
                return False
            data = _unseal(key, started["upload_enc"])
        except BaseException:
            # asyncpg's reset on release also frees the job's lock
            await pool.release(conn)
            raise
        task = asyncio.get_running_loop().create_task(
            self._run(pool, cfg, conn, job_id, row["lock_key"], row["continue_on_error"], key, data, actor))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        return True

    async def _run(self, pool: asyncpg.Pool, cfg: Config, conn: asyncpg.Connection, job_id: str,
                   lock_key: int, continue_on_error: bool, key: str, data: bytes, actor: str) -> None:
        """Apply the file, writing the progress to the row, then the sealed result; the
        job's lock is held on `conn` until the final state is written."""
        # [what the importer reports, what the row says]: (step, done, total)
        latest: list[tuple[str, int, int | None]] = [("", 0, None), ("", 0, None)]

        def on_progress(step: str, done: int, total: int | None) -> None:
            latest[0] = (step, done, total)

        async def flush() -> None:
            if latest[0] != latest[1]:
                latest[1] = latest[0]
                await sql.progress(conn, job_id, *latest[1])

        async def flusher() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY_S)
                await flush()

        async def committed(import_conn: asyncpg.Connection) -> None:
            await sql.committed(import_conn, job_id)

        folder = _Folder(data)
        del data
        writer = asyncio.get_running_loop().create_task(flusher())
        result, credentials, state, cancelled = Report(), None, "failed", False
        started = time.monotonic()
        try:
            try:
                report = await importer.import_file(pool, cfg, folder.csv, _options(
                    folder, continue_on_error, actor, False,
                    on_progress=on_progress,
                    on_commit=committed))
                result, state = Report.of(report), "done"
            except SipprovError as exc:
                result.error = exc.message
            except asyncio.CancelledError:
                # This instance stops (SIGTERM): the transaction rolled back, unless it
                # had committed; either way the job says so, with any passwords made.
                state, cancelled = "interrupted", True
            except Exception as exc:  # noqa: BLE001 - shown on the page, never a secret
                result.error = type(exc).__name__
                log.error("import job %s failed: %s", job_id, type(exc).__name__)
            finally:
                # The importer keeps this file only once its transaction committed, even
                # when a later step (waiting for Asterisk, hashing) failed.
                with contextlib.suppress(FileNotFoundError):
                    credentials = (folder.path / CREDENTIALS_NAME).read_bytes()
                folder.remove()
                writer.cancel()
                with contextlib.suppress(BaseException):
                    await writer
            await flush()
            await sql.finish(conn, job_id, state,
                             None if cancelled else _seal(key, result.dump()),
                             None if credentials is None else _seal(key, credentials))
            log.info("import job %s %s in %.1f s", job_id, state, time.monotonic() - started)
            if cancelled:
                raise asyncio.CancelledError()
        finally:
            # Cancelled or failed before the final state: the lock goes, and the next
            # poll (on any instance) reports the job interrupted.
            with contextlib.suppress(Exception):
                await sql.unlock(conn, lock_key)
            with contextlib.suppress(Exception):
                await pool.release(conn)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def take_credentials(pool: asyncpg.Pool, job_id: str, user_id: int,
                           key: str | None) -> bytes | None:
    """The generated passwords, once: their ciphertext is deleted as they are opened
    (not when another browser, without the key, asks)."""
    async with pool.acquire() as conn, conn.transaction():
        token = await sql.take_credentials(conn, job_id, user_id)
        if token is None:
            return None
        data = _unseal(key, token)
        await sql.clear_credentials(conn, job_id)
        return data


async def forget(pool: asyncpg.Pool, job_id: str, user_id: int) -> None:
    await sql.delete(pool, job_id, user_id)
