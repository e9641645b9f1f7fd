"""CSV import jobs of the console: upload -> dry run (the preview) -> apply in the
background with progress -> the generated passwords, downloadable once.

A job lives in this process's memory and its files in a private folder (0700) that is
deleted when the credentials are downloaded or the job is an hour old: the console
is one process (sipprov serve); a restart forgets unfinished previews, never data -
the import itself is one transaction (sipprov.bulk.importer).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from sipprov.bulk import importer
from sipprov.config import Config
from sipprov.errors import SipprovError

MAX_AGE_S = 3600
UPLOAD_NAME = "upload.csv"


@dataclass
class Job:
    id: str
    user_id: int
    folder: Path
    filename: str
    continue_on_error: bool
    created: float = field(default_factory=time.monotonic)
    preview: importer.ImportReport | None = None
    result: importer.ImportReport | None = None
    error: str | None = None
    step: str = ""
    done: int = 0
    total: int | None = None
    task: asyncio.Task[None] | None = None

    @property
    def csv_path(self) -> Path:
        return self.folder / UPLOAD_NAME

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def progress(self) -> dict[str, object]:
        finished = self.result is not None or self.error is not None
        return {"step": self.step, "done": self.done, "total": self.total,
                "finished": finished, "error": self.error}


class Jobs:
    """The import jobs of this process, by id; each visible to the user who made it."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def new(self, user_id: int, filename: str, data: bytes, continue_on_error: bool) -> Job:
        self.prune()
        folder = Path(tempfile.mkdtemp(prefix="sipprov-import-"))  # 0700
        job = Job(secrets.token_urlsafe(16), user_id, folder, filename[:120], continue_on_error)
        job.csv_path.write_bytes(data)
        job.csv_path.chmod(0o600)
        self._jobs[job.id] = job
        return job

    def get(self, job_id: str, user_id: int) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.user_id == user_id else None

    def forget(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def prune(self) -> None:
        now = time.monotonic()
        for job in [j for j in self._jobs.values() if now - j.created > MAX_AGE_S and not j.running]:
            self.forget(job)

    async def close(self) -> None:
        for job in list(self._jobs.values()):
            if job.task is not None:
                job.task.cancel()
                with contextlib.suppress(BaseException):
                    await job.task
            self.forget(job)


def _options(job: Job, actor: str, dry_run: bool) -> importer.ImportOptions:
    def on_progress(step: str, done: int, total: int | None) -> None:
        job.step, job.done, job.total = step, done, total

    return importer.ImportOptions(
        dry_run=dry_run, continue_on_error=job.continue_on_error, actor=actor,
        credentials_path=job.folder / "credentials.csv",
        rejects_path=job.folder / "rejects.csv",
        wait=True, wait_timeout=60.0, apply_self=False, progress=False,
        on_progress=on_progress,
    )


async def dry_run(pool: asyncpg.Pool, cfg: Config, job: Job, actor: str) -> None:
    """The preview: everything checked for real in a transaction that is rolled back.
    File-level problems (header, structure) become job.error."""
    try:
        job.preview = await importer.import_file(pool, cfg, job.csv_path, _options(job, actor, True))
    except SipprovError as exc:
        job.error = exc.message


def start(pool: asyncpg.Pool, cfg: Config, job: Job, actor: str) -> None:
    """Apply the file in the background; progress in job.step/done/total."""

    async def run() -> None:
        try:
            job.result = await importer.import_file(pool, cfg, job.csv_path, _options(job, actor, False))
        except SipprovError as exc:
            job.error = exc.message
        except Exception as exc:  # noqa: BLE001 - reported on the page, never a secret
            job.error = type(exc).__name__

    job.step, job.done, job.total = "", 0, None
    job.task = asyncio.get_running_loop().create_task(run())


def take_credentials(job: Job) -> bytes | None:
    """The generated passwords, once: the file is deleted as it is read."""
    path = job.folder / "credentials.csv"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    return data
