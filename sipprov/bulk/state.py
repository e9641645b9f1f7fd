"""The state of one import between BEGIN and COMMIT, shared by its steps
(matching.py, updating.py, creating.py; importer.py runs them in order), and the
options and per-row results the steps fill in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from sipprov.agents import rules as agentrules
from sipprov.agents.models import Agent, AgentCreate
from sipprov.bulk import csvformat as agentcsv
from sipprov.config import Config
from sipprov.db.sql import config_state
from sipprov.errors import ConfirmationRequired, SipprovError
from sipprov.progress import Progress


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
    # Delete the input file as soon as it is read (the console's private copy of an
    # upload: it may hold personal data, and nothing should outlive a killed process).
    remove_input: bool = False
    # Run in the import's transaction just before its COMMIT (the console's job row
    # records "committed" atomically with the import).
    on_commit: Callable[[asyncpg.Connection], Awaitable[None]] | None = None


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
    # the reason alone as a catalog message and its params (SipprovError.template):
    # the console translates it; None: `error` is all there is (English)
    reason: str | None = None
    params: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()
                if (v is not None or k in ("line", "action")) and k not in ("reason", "params")}


@dataclass
class Row:
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
        if isinstance(exc, SipprovError) and exc.template is not None:
            self.result.reason, self.result.params = exc.template, exc.params


@dataclass
class Secret:
    """One line of the credentials file (generated secrets only)."""

    login: str
    email: str
    extension: int | None
    web_password: str | None
    sip_password: str | None


class Progresses:
    def __init__(self, opts: ImportOptions):
        self.opts = opts

    def step(self, desc: str, total: int | None, unit: str = "row") -> Progress:
        return Progress(desc, total, unit=unit, enabled=self.opts.progress,
                        stream=self.opts.progress_stream, on_update=self.opts.on_progress)


class ImportState:
    """Everything between BEGIN and COMMIT for one file (steps 3-5 of importer.py)."""

    def __init__(self, conn: asyncpg.Connection, cfg: Config, opts: ImportOptions,
                 rows: list[agentcsv.CsvRow], source: str):
        self.conn = conn
        self.cfg = cfg
        self.opts = opts
        self.source = source
        self.rows = [Row(r, RowResult(r.line, "create", login=r.cells.get("login", "").strip() or None))
                     for r in rows]
        self.progress = Progresses(opts)
        self.secrets: dict[int, Secret] = {}   # by line
        self.to_hash: list[tuple[int, str]] = []
        # Something Asterisk sees changed: one config version bump for the file (bump()).
        self.bump_needed = False
        self._lookups: dict[tuple[str, str], Any] = {}


    async def once(self, kind: str, name: str,
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

    async def bump(self) -> int | None:
        """One config version for the whole file (last statement before commit), when
        anything Asterisk sees changed."""
        return await config_state.bump(self.conn) if self.bump_needed else None
