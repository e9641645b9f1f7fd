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
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from sipprov import audit
from sipprov.agents import extensions, naming
from sipprov.agents import rules as agentrules
from sipprov.agents import service as agents
from sipprov.agents.models import NOT_NULLABLE_ON_UPDATE, Agent, AgentCreate, AgentUpdate, parse
from sipprov.apply import wait as applywait
from sipprov.bulk import csvformat as agentcsv
from sipprov.bulk import hashing as bulkhash
from sipprov.config import Config
from sipprov.db.sql import agents as agents_sql
from sipprov.db.sql import bulk as sql
from sipprov.db.sql import config_state
from sipprov.db.sql import extensions as ext_sql
from sipprov.db.sql.constraints import taken as constraint_taken
from sipprov.directory import definitions
from sipprov.errors import ConfirmationRequired, SipprovError, ValidationError
from sipprov.progress import Progress
from sipprov.secretfile import create_private, replace_private

log = logging.getLogger(__name__)

COPY_BATCH = 2000
CREDENTIAL_COLUMNS = (
    "login", "email", "extension", "web_password", "sip_username", "sip_password", "sip_realm", "sip_server",
)
# Agent fields not compared when deciding "unchanged" (they change by themselves).
_VOLATILE = frozenset({"updated_at", "updated_by", "avatar_url", "quarantine"})
# Update fields whose empty cell clears the value.
_CLEARABLE = frozenset(AgentUpdate.model_fields) - set(NOT_NULLABLE_ON_UPDATE)


# --- options and results ---------------------------------------------------------------


@dataclass
class ImportOptions:
    dry_run: bool = False
    continue_on_error: bool = False
    # Rows without a matching login update the agent of their e-mail even when the
    # row's name or login differs (default: such a row is rejected, naming that agent).
    match_email: bool = False
    actor: str = "cli"
    # Default: next to the input, FILE.credentials.csv / FILE.rejects.csv.
    credentials_path: Path | None = None
    rejects_path: Path | None = None
    definitions_path: Path | None = None
    wait: bool = True
    wait_timeout: float = 120.0
    # Run the applier from this process when no service applies the change.
    apply_self: bool = True
    hash_workers: int | None = None
    progress: bool = True
    progress_stream: TextIO | None = None
    # Called as (step, done, total) while the import runs (the console's progress bar).
    on_progress: Callable[[str, int, int | None], None] | None = None


@dataclass
class RowResult:
    line: int
    # create | update | unchanged | delete | error
    action: str
    login: str | None = None
    extension: int | None = None
    agent_id: int | None = None
    field: str | None = None
    error: str | None = None
    # update: field -> [before, after], as stored (the console's dry-run preview)
    changes: dict[str, list[Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None or k in ("line", "action")}


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


# --- per-row state ---------------------------------------------------------------------


@dataclass
class _Row:
    csv: agentcsv.CsvRow
    result: RowResult
    agent: Agent | None = None            # the matched agent (update)
    update: dict[str, Any] | None = None  # AgentUpdate input
    new_password: str | None = None       # password cells of an update
    new_sip_password: str | None = None
    force: bool = False                   # the `force` cell: confirm dropping data
    create: AgentCreate | None = None
    plan: agentrules.CreatePlan | None = None  # the agent service's rules for a create
    # resolved in the database phase
    user_id: int | None = None
    department_id: int | None = None
    account_type_id: int | None = None
    ticket_queue: str | None = None
    memberships: list[tuple[int, str, int | None]] = field(default_factory=list)
    extension: int | None = None
    sip_password: str | None = None

    @property
    def can_sip(self) -> bool:
        return self.plan is not None and self.plan.can_sip

    @property
    def ok(self) -> bool:
        return self.result.action != "error"

    def fail(self, exc: SipprovError | str, field_name: str | None = None) -> None:
        if isinstance(exc, ConfirmationRequired):
            message, field_name = exc.confirm_with("a force column set to true"), exc.field
        elif isinstance(exc, SipprovError):
            message, field_name = exc.message, exc.field
        else:
            message = exc
        self.result.action = "error"
        self.result.field = field_name
        self.result.error = message


@dataclass
class _Secret:
    """One line of the credentials file (generated secrets only)."""

    login: str
    email: str
    extension: int | None
    web_password: str | None
    sip_password: str | None


class _Progresses:
    def __init__(self, opts: ImportOptions):
        self.opts = opts

    def step(self, desc: str, total: int | None, unit: str = "row") -> Progress:
        return Progress(desc, total, unit=unit, enabled=self.opts.progress,
                        stream=self.opts.progress_stream, on_update=self.opts.on_progress)


# --- the database phase ------------------------------------------------------------------


class _Importer:
    """Everything between BEGIN and COMMIT for one file (steps 3-5 of the docstring)."""

    def __init__(self, conn: asyncpg.Connection, cfg: Config, opts: ImportOptions,
                 rows: list[agentcsv.CsvRow], source: str):
        self.conn = conn
        self.cfg = cfg
        self.opts = opts
        self.source = source
        self.rows = [_Row(r, RowResult(r.line, "create", login=r.cells.get("login", "").strip() or None))
                     for r in rows]
        self.progress = _Progresses(opts)
        self.secrets: dict[int, _Secret] = {}   # by line
        self.to_hash: list[tuple[int, str]] = []
        # Something Asterisk sees changed: one config version bump for the file (bump()).
        self.bump_needed = False
        self._lookups: dict[tuple[str, str], Any] = {}

    # ---- 3. match and validate

    async def match_and_validate(self) -> None:
        keys = await sql.user_keys(self.conn)
        by_login = {r["login"]: r["id"] for r in keys}
        by_email = {r["email"]: r["id"] for r in keys}
        matched: dict[int, int] = {}  # row index -> user id
        by_email_only: set[int] = set()  # rows matched by e-mail alone
        for i, row in enumerate(self.rows):
            login = row.csv.cells.get("login", "").strip().lower()
            email = row.csv.cells.get("email", "").strip().lower()
            uid = by_login.get(login) if login else None
            if uid is None and email and email in by_email:
                uid = by_email[email]
                by_email_only.add(i)
            if uid is not None:
                matched[i] = uid
        loaded = {
            r["id"]: agents.agent_from_row(r)
            for r in await sql.agents_by_ids(self.conn, sorted(set(matched.values())))
        }

        seen_agent: dict[int, int] = {}
        with self.progress.step("validate", len(self.rows)) as bar:
            for i, row in enumerate(self.rows):
                uid = matched.get(i)
                try:
                    action = agentcsv.parse_action(row.csv.cells.get("action", ""))
                    if i in by_email_only and not self.opts.match_email:
                        self._check_email_match(row, loaded[uid])  # type: ignore[index]
                    if uid is None:
                        self._check_unmatched(row, action)
                    elif action == "create":
                        raise ValidationError(
                            f"login: action create, but agent {loaded[uid].login} exists", "login")
                    if uid is not None:
                        if uid in seen_agent:
                            raise ValidationError(
                                f"login: the same agent as line {seen_agent[uid]}", "login")
                        seen_agent[uid] = row.csv.line
                        row.agent = loaded[uid]
                        row.result.agent_id = uid
                        row.result.login = row.agent.login
                        if action == "delete":
                            row.result.action = "delete"
                        else:
                            row.result.action = "update"
                            self._validate_update(row)
                    else:
                        await self._validate_create(row)
                except SipprovError as exc:
                    row.fail(exc)
                bar.update()
        self._check_file_duplicates()

    @staticmethod
    def _check_email_match(row: _Row, agent: Agent) -> None:
        """A row matched by e-mail alone is that agent only when it names nobody else: a
        different login, or a different name, means another person whose address is
        taken - rejected, naming the agent it would have overwritten (ImportOptions.
        match_email / --match-email takes the e-mail as the identity instead)."""
        cells = row.csv.cells
        login = cells.get("login", "").strip()
        who = f"{agent.login} ({agent.first_name} {agent.last_name})"
        if login:
            raise ValidationError(
                f"login: no agent has login {login}, and e-mail {agent.email} belongs to {who};"
                " to change that agent's login use --match-email", "login")
        for col in ("first_name", "last_name"):
            given = cells.get(col, "").strip()
            if given and _same_name(given, getattr(agent, col)) is False:
                raise ValidationError(
                    f"email: {agent.email} belongs to {who}, not {cells.get('first_name', '').strip()}"
                    f" {cells.get('last_name', '').strip()}; give login {agent.login} to update"
                    " that agent, or --match-email to match by e-mail", "email")

    @staticmethod
    def _check_unmatched(row: _Row, action: str) -> None:
        """A row that matches no agent creates one, unless it names an agent to change
        (action update/delete, or a login without what a new agent needs): then the
        unknown login or e-mail is the error, named."""
        cells = row.csv.cells
        login = cells.get("login", "").strip()
        email = cells.get("email", "").strip()
        who = f"login {login}" if login else f"e-mail {email}"
        field_name = "login" if login else "email"
        if action in ("update", "delete"):
            raise ValidationError(f"{field_name}: no agent with {who} to {action}", field_name)
        missing = [c for c in ("first_name", "last_name", "email") if not cells.get(c, "").strip()]
        if not action and login and missing:
            raise ValidationError(
                f"login: no agent with login {login}; a new agent also needs {', '.join(missing)}",
                "login")

    def _validate_update(self, row: _Row) -> None:
        assert row.agent is not None
        data: dict[str, Any] = {}
        for col, cell in row.csv.cells.items():
            value = cell.strip()
            if col == "action":
                continue
            if col == "force":
                row.force = agentcsv.parse_bool(cell, col)
            elif col == "password":
                row.new_password = cell or None
            elif col == "sip_password":
                row.new_sip_password = cell or None
            elif col == "queues":
                data["queues"] = agentcsv.parse_queues(value)
            elif value:
                data[col] = value
            elif col in _CLEARABLE:
                data[col] = None
        row.update = data
        parse(AgentUpdate, data)  # the model's rules, field named
        row.result.login = data.get("login") or row.agent.login
        row.result.extension = row.agent.extension
        row.result.agent_id = row.agent.id

    async def _once(self, kind: str, name: str,
                    lookup: Callable[[asyncpg.Connection, str], Awaitable[Any]]) -> Any:
        """`lookup(conn, name)` once per kind and case-insensitive name for the whole
        file; its error is remembered too."""
        key = (kind, name.lower())
        if key not in self._lookups:
            try:
                self._lookups[key] = await lookup(self.conn, name)
            except SipprovError as exc:
                self._lookups[key] = exc
        found = self._lookups[key]
        if isinstance(found, SipprovError):
            raise found
        return found

    async def _validate_create(self, row: _Row) -> None:
        """The create rules that need no database write (agentrules.plan_create, as
        agents.create_agent)."""
        data: dict[str, Any] = {}
        for col, cell in row.csv.cells.items():
            value = cell if col in agentcsv.SECRET_COLUMNS else cell.strip()
            if col in agentcsv.CONTROL_COLUMNS:
                agentcsv.parse_bool(value, col)  # checked; nothing to confirm on a create
                continue
            if not value:
                continue
            data[col] = agentcsv.parse_queues(value) if col == "queues" else value
        create = parse(AgentCreate, data)
        row.create = create
        role = await self._once("role", create.role, agentrules.share_role)
        row.plan = plan = agentrules.plan_create(self.cfg, create, role)
        row.result.login = plan.base_login
        row.result.extension = create.extension

    def _check_file_duplicates(self) -> None:
        """Login, e-mail and extension must be unique within the file, too."""
        logins: dict[str, int] = {}
        emails: dict[str, int] = {}
        numbers: dict[int, int] = {}
        for row in self.rows:
            if not row.ok or row.result.action == "delete":
                continue
            if row.create is not None:
                login = row.create.login
                email = row.create.email
                number = row.create.extension
            else:
                assert row.agent is not None and row.update is not None
                login = row.update.get("login") or row.agent.login
                email = row.update.get("email") or row.agent.email
                number = row.update.get("extension")
                number = int(number) if number not in (None, "") else None
            checks: list[tuple[str, Any, dict]] = [("email", email.lower(), emails)]
            if login:
                checks.append(("login", login.lower(), logins))
            if number is not None:
                checks.append(("extension", number, numbers))
            for name, value, seen in checks:
                if value in seen:
                    row.fail(f"{name}: {value} is also on line {seen[value]}", name)
                    break
            else:
                for _name, value, seen in checks:
                    seen[value] = row.csv.line

    # ---- 4. updates

    async def apply_updates(self) -> None:
        updates = [r for r in self.rows if r.ok and r.agent is not None]
        if not updates:
            return
        with self.progress.step("update", len(updates)) as bar:
            for row in updates:
                try:
                    if row.result.action == "delete":
                        await self._delete_one(row)
                    else:
                        await self._update_one(row)
                except SipprovError as exc:
                    row.fail(exc)
                bar.update()

    async def _delete_one(self, row: _Row) -> None:
        """`action` delete: the agent service's delete, in a savepoint; the file bumps."""
        assert row.agent is not None
        async with self.conn.transaction():
            await agents.delete_agent(self.conn, self.cfg, row.agent.id, self.opts.actor, bump=False)
        self.bump_needed = self.bump_needed or row.agent.extension is not None

    def _changed_fields(self, row: _Row) -> dict[str, Any]:
        """The row's cells that differ from the stored agent (validated values)."""
        assert row.agent is not None and row.update is not None
        model = parse(AgentUpdate, row.update)
        current = row.agent.to_dict()
        changed: dict[str, Any] = {}
        for name in model.model_fields_set:
            value = getattr(model, name)
            if name == "queues":
                want = sorted((q.name.lower(), q.penalty) for q in value)
                have = sorted((q["name"].lower(), q["penalty_override"]) for q in current["queues"])
                if want != have:
                    changed[name] = row.update[name]
            elif value is None and name in ("caller_id", "chat_name"):
                changed[name] = None  # "back to the default": the service decides
            elif value != current.get(name):
                changed[name] = row.update[name]
        return changed

    async def _update_one(self, row: _Row) -> None:
        assert row.agent is not None
        changed = self._changed_fields(row)
        if not changed and row.new_password is None and row.new_sip_password is None:
            row.result.action = "unchanged"
            return
        before = row.agent
        actor = self.opts.actor
        # The file bumps the config version once (bump()), not once per row.
        async with self.conn.transaction():  # savepoint: a failing row undoes only itself
            after = before
            web_generated = sip_generated = None
            visible = False
            if changed:
                result = await agents.update_agent(
                    self.conn, self.cfg, before.id, parse(AgentUpdate, changed), actor,
                    bump=False, force=row.force)
                after = result.agent
                web_generated = result.web_password
                sip_generated = result.sip.password if result.sip else None
                visible = result.bump_needed
            if row.new_password is not None:
                await agents.set_web_password(self.conn, self.cfg, before.id, row.new_password, None, actor)
            if row.new_sip_password is not None:
                await agents.rotate_sip_password(
                    self.conn, self.cfg, before.id, row.new_sip_password, actor, bump=False)
                visible = True
                sip_generated = None  # the file's own password: the operator knows it
        # Only a row that was kept counts (a failing one undid its changes).
        self.bump_needed = self.bump_needed or visible
        row.result.login = after.login
        row.result.extension = after.extension
        differs = _comparable(before) != _comparable(after)
        if not differs and row.new_password is None and row.new_sip_password is None \
                and web_generated is None and sip_generated is None:
            row.result.action = "unchanged"
            return
        row.result.action = "update"
        old, new = _comparable(before), _comparable(after)
        row.result.changes = {k: [old.get(k), new[k]] for k in new if old.get(k) != new[k]}
        if row.new_password is not None:
            row.result.changes["password"] = ["", "(new)"]
        if row.new_sip_password is not None:
            row.result.changes["sip_password"] = ["", "(new)"]
        if web_generated or sip_generated:
            self.secrets[row.csv.line] = _Secret(after.login, after.email, after.extension,
                                                 web_generated, sip_generated)

    # ---- 5. creates

    async def insert_creates(self) -> None:
        creates = [r for r in self.rows if r.ok and r.create is not None]
        if not creates:
            return
        await self._resolve_names(creates)
        await self._check_licences(creates)
        creates = [r for r in creates if r.ok]
        await self._assign_ids_and_logins(creates)
        creates = [r for r in creates if r.ok]
        await self._assign_extensions([r for r in creates if r.can_sip])
        creates = [r for r in creates if r.ok]
        await self._write(creates)

    async def _resolve_names(self, creates: list[_Row]) -> None:
        """Departments, ticket queues and queues through the agent service's own lookups
        (same rules, same messages): each department and ticket queue once per distinct
        name, the queues of the whole file in one query."""
        found = await agentrules.queues_by_name(
            self.conn, sorted({q.name for r in creates for q in r.create.queues}))  # type: ignore[union-attr]
        for row in creates:
            data = row.create
            assert data is not None
            try:
                if data.department is not None:
                    row.department_id = await self._once(
                        "department", data.department, agentrules.department_id)
                if data.default_ticket_queue is not None:
                    row.ticket_queue = await self._once(
                        "ticket", data.default_ticket_queue, agentrules.ticket_queue)
                row.memberships = agentrules.memberships(data.queues, found)
            except SipprovError as exc:
                row.fail(exc)

    async def _check_licences(self, creates: list[_Row]) -> None:
        """The licence limit for the whole batch: the rows past the limit are refused."""
        by_type: dict[str, list[_Row]] = {}
        for row in creates:
            if row.ok:
                assert row.create is not None
                by_type.setdefault(row.create.account_type.lower(), []).append(row)
        for rows in by_type.values():
            try:
                licence = await agentrules.check_licence(
                    self.conn, rows[0].create.account_type, len(rows))  # type: ignore[union-attr]
            except SipprovError as exc:
                for row in rows:
                    row.fail(exc)
                continue
            for i, row in enumerate(rows):
                row.account_type_id = licence.type_id
                if i >= licence.allowed:
                    row.fail(licence.refusal())

    async def _assign_ids_and_logins(self, creates: list[_Row]) -> None:
        ids = await sql.next_user_ids(self.conn, len(creates))
        in_db = await sql.all_logins(self.conn)
        taken = set(in_db)
        for row in creates:
            if row.create and row.create.login:
                taken.add(row.create.login.lower())
        for row, user_id in zip(creates, ids, strict=True):
            data, plan = row.create, row.plan
            assert data is not None and plan is not None
            row.user_id = user_id
            if data.login:
                if data.login.lower() in in_db:  # taken by an update of this file
                    row.fail(constraint_taken("users_login_key", data.login))
                    continue
                login = data.login
            else:
                login = naming.first_free_login(plan.base_login, taken)
                taken.add(login.lower())
            try:
                plan.check_login(login)
            except SipprovError as exc:
                row.fail(exc)
                continue
            row.result.login = login
            row.result.agent_id = user_id

    async def _assign_extensions(self, creates: list[_Row]) -> None:
        ext = self.cfg.extensions
        explicit = [(r, r.create.extension) for r in creates
                    if r.create and r.create.extension is not None]
        claimed = await sql.claim_exact(
            self.conn, ext.first, ext.last,
            [number for _, number in explicit],
            [extensions.user_owner(r.user_id) for r, _ in explicit],  # type: ignore[arg-type]
            ext.cooldown_s)
        for row, number in explicit:
            if number not in claimed:
                try:  # not claimable: the extension service says why (range, reserved, taken)
                    owner = extensions.user_owner(row.user_id)  # type: ignore[arg-type]
                    await extensions.allocate_exact(self.conn, ext, number, owner)
                except SipprovError as exc:
                    row.fail(exc)
                    continue
            row.extension = number

        auto = [r for r in creates if r.ok and r.extension is None]
        if auto:
            free = (await ext_sql.stats(self.conn, ext.first, ext.last, ext.cooldown_s))["free"]
            for row in auto[free:]:
                row.fail(extensions.exhausted(ext, free=free, needed=len(auto)))
            auto = auto[:free]
            owners = [extensions.user_owner(r.user_id) for r in auto]  # type: ignore[arg-type]
            got = await extensions.allocate_many(self.conn, ext, owners)
            for row, owner in zip(auto, owners, strict=True):
                row.extension = got[owner]

        for row in creates:
            if not row.ok:
                continue
            assert row.plan is not None and row.extension is not None
            row.result.extension = row.extension
            try:
                row.sip_password = row.plan.sip_password(self.cfg, row.extension, row.result.login)  # type: ignore[arg-type]
            except SipprovError as exc:
                row.fail(exc)
                await extensions.release(self.conn, row.extension,
                                         extensions.user_owner(row.user_id), hold=False)  # type: ignore[arg-type]

    def _user_record(self, row: _Row) -> tuple[Any, ...]:
        assert row.plan is not None and row.user_id is not None and row.account_type_id is not None
        values = row.plan.user_values(
            self.cfg,
            user_id=row.user_id,
            login=row.result.login,
            department_id=row.department_id,
            account_type_id=row.account_type_id,
            ticket_queue=row.ticket_queue,
            web_password_hash=None,  # stored after the apply (module docstring)
            actor=self.opts.actor,
            extension=row.extension,
            sip_password=row.sip_password,
        )
        return tuple(values[c] for c in agents_sql.INSERT_COLUMNS)

    def _audit_record(self, row: _Row) -> tuple[Any, ...]:
        assert row.plan is not None
        details = row.plan.audit_details(row.result.login or "", row.extension)
        details.update({"import": self.source, "line": row.csv.line})
        text = json.dumps(audit.scrub(details), default=str, ensure_ascii=False)
        return (self.opts.actor, "create", "agent", str(row.user_id), text)

    async def _write(self, creates: list[_Row]) -> None:
        if not creates:
            return
        with self.progress.step("write", len(creates)) as bar:
            for start in range(0, len(creates), COPY_BATCH):
                batch = creates[start:start + COPY_BATCH]
                await sql.copy_users(self.conn, [self._user_record(r) for r in batch])
                bar.update(len(batch))
            members = [(qid, r.user_id, penalty) for r in creates for qid, _, penalty in r.memberships]
            if members:
                await sql.copy_memberships(self.conn, members)
            campaigns = [(agentrules.MANUAL_DIAL_CAMPAIGN, r.user_id) for r in creates
                         if r.plan and r.plan.manual_dial]
            if campaigns:
                await sql.copy_campaigns(self.conn, campaigns)
            await sql.copy_audit(self.conn, [self._audit_record(r) for r in creates])
        for row in creates:
            plan = row.plan
            assert plan is not None and row.user_id is not None
            row.result.action = "create"
            if plan.web_password is not None:
                self.to_hash.append((row.user_id, plan.web_password))
            if plan.web_generated or plan.sip_generated:
                self.secrets[row.csv.line] = _Secret(
                    row.result.login or "", plan.data.email, row.extension if row.can_sip else None,
                    plan.web_password if plan.web_generated else None,
                    row.sip_password if plan.sip_generated else None)
        if any(r.can_sip for r in creates):
            self.bump_needed = True

    async def bump(self) -> int | None:
        """One config version for the whole file (last statement before commit), when
        anything Asterisk sees changed."""
        return await config_state.bump(self.conn) if self.bump_needed else None


def _same_name(a: str, b: str) -> bool:
    """Names compared as people write them: case, spacing and diacritics ignored
    (`Lukasz` is `Łukasz`)."""
    def norm(text: str) -> str:
        return " ".join((naming.fold_ascii(text) or text).lower().split())
    return norm(a) == norm(b)


def _comparable(agent: Agent) -> dict[str, Any]:
    return {k: v for k, v in agent.to_dict().items() if k not in _VOLATILE}


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
    importer: _Importer | None = None
    try:
        async with pool.acquire() as conn:
            tr = conn.transaction()
            await tr.start()
            try:
                await sql.lock_users(conn)
                if defs is not None:
                    report.definitions_created = (
                        await definitions.import_definitions(conn, cfg, defs, opts.actor)).created
                importer = _Importer(conn, cfg, opts, parsed.rows, path.name)
                t = time.monotonic()
                await importer.match_and_validate()
                report.timings["validate"] = time.monotonic() - t
                t = time.monotonic()
                await importer.apply_updates()
                report.timings["update"] = time.monotonic() - t
                t = time.monotonic()
                await importer.insert_creates()
                version = await importer.bump()
                report.timings["write"] = time.monotonic() - t
                report.rows = [r.result for r in importer.rows]
                bad = bool(report.errors)
                commit = not opts.dry_run and (not bad or opts.continue_on_error)
                t = time.monotonic()
                if commit:
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
    progress = _Progresses(opts)
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


def _write_credentials(fh: TextIO, cfg: Config, secrets: list[_Secret]) -> None:
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


def _write_rejects(path: Path, columns: tuple[str, ...], importer: _Importer,
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
