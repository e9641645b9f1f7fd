"""Bulk import and export of agents as CSV (every column, value format and example: docs/csv.md).

Import, in order:

1. Read and check the file (header, structure). Open the credentials file (mode 0600,
   O_EXCL) before touching the database, so secrets are never generated for a file
   that cannot be written.
2. ONE transaction for the whole file, holding `LOCK TABLE users IN SHARE ROW
   EXCLUSIVE` (concurrent creates/updates through the API wait a few seconds; reads go
   on), so every uniqueness check below stays true until commit and a conflict is
   reported with its line number instead of failing a COPY. Definitions (roles,
   departments, account types, queues) from `--definitions` are created first.
3. Each row is matched to an existing agent by login, else by e-mail: a match is an
   update, no match a create. An e-mail match is only that agent when the row names
   nobody else (no other login, the same first/last name, diacritics ignored); else
   the row is rejected naming the agent it would overwrite, unless `match_email`.
   Every row is validated with the API's models and the agent service's rules;
   duplicates within the file (login, e-mail, extension, the same agent twice) name
   both lines.
4. Updates go through `agents.update_agent` (and `set_web_password`,
   `rotate_sip_password` for password cells), each in a SAVEPOINT of the file's
   transaction (the services take the caller's connection): the exact rules of a
   single PATCH, and a bad row undoes
   only itself; they leave the config version to the file (`bump=False`). Rows whose
   cells equal the stored agent are "unchanged" and skipped. They run before the
   creates, so a login an update gives up is free for a create of the same file (a
   number it gives up rests for `[extensions] cooldown_s` first, as any released one).
5. Creates are set-based, with the agent service's rules (agentrules.py: the same
   plan, defaults and messages as a single create): lookups once per distinct
   department/role/account type and all queues in one query, the licence limit
   checked for the whole batch, ids from the sequence in one statement, explicit
   extensions claimed in one statement and the rest allocated with
   `extensions.allocate_many` (one statement), SIP digests computed in Python
   (cheap), then COPY of users, queue memberships, campaign rows and audit rows, and
   ONE config version bump for the file (updates and creates together).
6. Commit - or roll back: with `dry_run` (everything above ran, so uniqueness, pool
   capacity and licence limits were checked for real, and nothing stays), or when a
   row is bad and `continue_on_error` is off. With `continue_on_error` the bad rows
   are left out and written to the reject file (0600: it may hold password cells).
7. After commit: the generated passwords go to the credentials file; with `wait`,
   the config version is applied (applywait.py: a running service or this process);
   then the web passwords are hashed (bulkhash.py).

Why web passwords are hashed last: argon2 is ~30 ms of CPU per password on purpose,
10,000 of them minutes on two cores, while everything Asterisk needs (SIP digests) is
cheap. So new agents are stored without a web hash - their web login is refused until
the hash is stored, exactly like a wrong password - and become registrable first;
the hashes are then computed on every core and stored in batches, each only where no
hash was set meanwhile. If hashing is interrupted, the users not reached keep no web
password (the command says how many); an admin gives them one with
`sipprov agents password LOGIN`.

Empty cells: on a create, "not given" (the API default, a generated password). On an
update: columns that cannot be empty (names, e-mail, login, role, booleans, priority,
extension, account_type, language) keep the stored value; optional ones (phone, department,
caller_id, chat_name, outbound_number, default_ticket_queue, sender_email, sms_box)
are cleared (caller_id and chat_name back to their defaults); an empty `queues` cell
removes all memberships - leave the column out to keep them; empty password cells
change nothing.

Export writes every agent, in id order, with exactly the columns import reads (no
secrets), from one REPEATABLE READ snapshot; with `definitions_path` also the
definitions file, so export -> import into a fresh database gives the same agents,
extensions and memberships (new passwords: they are never exported).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from sipprov.agents import service as agents
from sipprov.agents.models import NOT_NULLABLE_ON_UPDATE, AgentUpdate
from sipprov.apply import wait as applywait
from sipprov.bulk import creating, matching, updating
from sipprov.bulk import csvformat as agentcsv
from sipprov.bulk import hashing as bulkhash
from sipprov.bulk.state import ImportOptions, ImportState, Progresses, RowResult, Secret
from sipprov.config import Config
from sipprov.db.sql import bulk as sql
from sipprov.directory import definitions
from sipprov.errors import ValidationError
from sipprov.progress import Progress
from sipprov.secretfile import create_private, replace_private

log = logging.getLogger(__name__)

CREDENTIAL_COLUMNS = (
    "login", "email", "extension", "web_password", "sip_username", "sip_password", "sip_realm", "sip_server",
)
# Agent fields not compared when deciding "unchanged" (they change by themselves).
_VOLATILE = frozenset({"updated_at", "updated_by", "avatar_url", "quarantine"})
# Update fields whose empty cell clears the value.
_CLEARABLE = frozenset(AgentUpdate.model_fields) - set(NOT_NULLABLE_ON_UPDATE)


# --- options and results ---------------------------------------------------------------


@dataclass
class ImportReport:
    path: str
    dry_run: bool
    committed: bool = False
    rows: list[RowResult] = field(default_factory=list)
    config_version: int | None = None
    definitions_created: list[str] = field(default_factory=list)
    credentials_path: str | None = None
    rejects_path: str | None = None
    wait: applywait.WaitResult | None = None
    web_passwords_pending: int = 0
    web_passwords_stored: int = 0
    hash_error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)

    @property
    def errors(self) -> list[RowResult]:
        return [r for r in self.rows if r.action == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "dry_run": self.dry_run,
            "committed": self.committed,
            "created": self.count("create"),
            "updated": self.count("update"),
            "unchanged": self.count("unchanged"),
            "deleted": self.count("delete"),
            "rejected": self.count("error"),
            "config_version": self.config_version,
            "applied": None if self.wait is None else self.wait.applied,
            "apply_error": None if self.wait is None else self.wait.error,
            "definitions_created": self.definitions_created,
            "credentials_file": self.credentials_path,
            "rejects_file": self.rejects_path,
            "web_passwords_pending": self.web_passwords_pending,
            "web_passwords_stored": self.web_passwords_stored,
            "hash_error": self.hash_error,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "rows": [r.to_dict() for r in self.rows],
        }


def default_credentials_path(path: Path) -> Path:
    return path.with_name(path.stem + ".credentials.csv")


def default_rejects_path(path: Path) -> Path:
    return path.with_name(path.stem + ".rejects.csv")


# --- import: the whole job -------------------------------------------------------------


async def import_file(pool: asyncpg.Pool, cfg: Config, path: Path | str,
                      opts: ImportOptions | None = None) -> ImportReport:
    """Import one CSV file (see the module docstring). File-level problems (header,
    structure, an existing credentials file) raise ValidationError; row problems are
    in the report (`errors`), with nothing committed unless continue_on_error."""
    opts = opts or ImportOptions()
    path = Path(path)
    report = ImportReport(path=str(path), dry_run=opts.dry_run)
    t0 = time.monotonic()
    parsed = agentcsv.read_file(path)
    if opts.remove_input:
        path.unlink(missing_ok=True)
    defs = definitions.read_file(opts.definitions_path) if opts.definitions_path else None
    creds_path = Path(opts.credentials_path or default_credentials_path(path))
    rejects_path = Path(opts.rejects_path or default_rejects_path(path))
    creds_fh: TextIO | None = None
    if not opts.dry_run:
        try:
            creds_fh = create_private(creds_path)
        except FileExistsError:
            raise ValidationError(
                f"credentials: {creds_path} exists; move it away (it may hold passwords not"
                " yet handed out) or give --credentials PATH", "credentials") from None
    report.timings["read"] = time.monotonic() - t0
    importer: ImportState | None = None
    try:
        async with pool.acquire() as conn:
            tr = conn.transaction()
            await tr.start()
            try:
                await sql.lock_users(conn)
                if defs is not None:
                    report.definitions_created = (
                        await definitions.import_definitions(conn, cfg, defs, opts.actor)).created
                importer = ImportState(conn, cfg, opts, parsed.rows, path.name)
                t = time.monotonic()
                await matching.match_and_validate(importer)
                report.timings["validate"] = time.monotonic() - t
                t = time.monotonic()
                await updating.apply_updates(importer)
                report.timings["update"] = time.monotonic() - t
                t = time.monotonic()
                await creating.insert_creates(importer)
                version = await importer.bump()
                report.timings["write"] = time.monotonic() - t
                report.rows = [r.result for r in importer.rows]
                bad = bool(report.errors)
                commit = not opts.dry_run and (not bad or opts.continue_on_error)
                t = time.monotonic()
                if commit:
                    if opts.on_commit is not None:
                        await opts.on_commit(conn)
                    await tr.commit()
                    report.committed = True
                    report.config_version = version
                else:
                    await tr.rollback()
                report.timings["commit"] = time.monotonic() - t
            except BaseException:
                with contextlib.suppress(Exception):
                    await tr.rollback()
                raise
        if report.committed and creds_fh is not None and importer.secrets:
            _write_credentials(creds_fh, cfg, [importer.secrets[k] for k in sorted(importer.secrets)])
            report.credentials_path = str(creds_path)
        if report.committed and opts.continue_on_error and report.errors:
            _write_rejects(rejects_path, parsed.columns, importer, report.errors)
            report.rejects_path = str(rejects_path)
    finally:
        if creds_fh is not None:
            creds_fh.close()
            if report.credentials_path is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(creds_path)

    if not report.committed or importer is None:
        return report
    log.info("imported %s: %d created, %d updated, %d unchanged, %d rejected (config version %s)",
             path.name, report.count("create"), report.count("update"), report.count("unchanged"),
             report.count("error"), report.config_version)
    progress = Progresses(opts)
    if opts.wait and report.config_version is not None:
        t = time.monotonic()
        with progress.step("apply", 1, unit="version") as bar:
            report.wait = await applywait.wait_applied(
                pool, cfg, report.config_version, opts.wait_timeout, apply_self=opts.apply_self)
            bar.update(1 if report.wait.applied else 0)
        report.timings["apply"] = time.monotonic() - t
    if importer.to_hash:
        report.web_passwords_pending = len(importer.to_hash)
        t = time.monotonic()
        with progress.step("hash", len(importer.to_hash), unit="password") as bar:
            try:
                result = await bulkhash.hash_and_store(
                    pool, importer.to_hash, cfg.security.web_hash_scheme,
                    workers=opts.hash_workers, on_progress=bar.update)
                report.web_passwords_stored = result.stored
            except (Exception, asyncio.CancelledError) as exc:
                report.hash_error = f"{type(exc).__name__}: {exc}"
                report.web_passwords_stored = bar.done
                log.error("hashing web passwords failed after %d of %d: %s",
                          bar.done, len(importer.to_hash), type(exc).__name__)
            finally:
                importer.to_hash.clear()
        report.web_passwords_pending -= report.web_passwords_stored
        report.timings["hash"] = time.monotonic() - t
    return report


def _write_credentials(fh: TextIO, cfg: Config, secrets: list[Secret]) -> None:
    w = agentcsv.writer(fh, CREDENTIAL_COLUMNS)
    for s in secrets:
        w.writerow({
            "login": s.login,
            "email": s.email,
            "extension": agentcsv.format_cell(s.extension),
            "web_password": s.web_password or "",
            "sip_username": agentcsv.format_cell(s.extension) if s.sip_password else "",
            "sip_password": s.sip_password or "",
            "sip_realm": cfg.asterisk.sip_realm if s.sip_password else "",
            "sip_server": cfg.asterisk.sip_server if s.sip_password else "",
        })
    fh.flush()
    os.fsync(fh.fileno())


def _write_rejects(path: Path, columns: tuple[str, ...], importer: ImportState,
                   errors: list[RowResult]) -> None:
    by_line = {r.csv.line: r.csv.cells for r in importer.rows}
    rows = []
    for err in errors:
        row = dict(by_line[err.line])
        row[agentcsv.ERROR_COLUMN] = f"line {err.line}: {err.error}"
        rows.append(row)
    replace_private(path, agentcsv.rows_to_text(list(columns) + [agentcsv.ERROR_COLUMN], rows))


# --- export ------------------------------------------------------------------------------


@dataclass
class ExportReport:
    path: str
    agents: int
    definitions_path: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def export_file(pool: asyncpg.Pool, path: Path | str, *,
                      definitions_path: Path | str | None = None,
                      progress: bool = True, progress_stream: TextIO | None = None) -> ExportReport:
    """Every agent in id order (`-`: stdout), written atomically; optionally the
    definitions file, both from one snapshot."""
    t0 = time.monotonic()
    to_stdout = str(path) == "-"
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    count = 0
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            total = await sql.count_users(conn)
            defs = await definitions.export_definitions(conn) if definitions_path else None
            fh: TextIO = sys.stdout if to_stdout else open(tmp, "w", encoding="utf-8", newline="")
            try:
                w = agentcsv.writer(fh, agentcsv.AGENT_COLUMNS)
                with Progress("export", total, enabled=progress, stream=progress_stream) as bar:
                    async for record in sql.all_agents(conn):
                        w.writerow(agentcsv.agent_to_row(agents.agent_from_row(record)))
                        count += 1
                        bar.update()
                fh.flush()
                if not to_stdout:
                    os.fsync(fh.fileno())
            except BaseException:
                if not to_stdout:
                    fh.close()
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                raise
            if not to_stdout:
                fh.close()
                os.replace(tmp, target)
    if defs is not None and definitions_path:
        definitions.write_file(definitions_path, defs)
    return ExportReport(str(path), count, str(definitions_path) if definitions_path else None,
                        time.monotonic() - t0)
