"""What agents refer to by name - roles, departments, account types, queues - as one
JSON "definitions" file that travels with an agents CSV.

Why a companion file and not auto-creation: an import refuses unknown queues,
departments and roles (a typo such as `suport` must not silently become a new queue in
Asterisk). To move agents to a fresh system the operator exports the definitions with
them (`sipprov agents export agents.csv --definitions defs.json`) and imports both
(`sipprov agents import agents.csv --definitions defs.json`): the definitions the
target lacks are created first, in the same transaction as the agents. Existing ones
are left as they are, except that a difference that would change what the agents get
(a role's sip_allowed or web_login, a queue's kind) stops the import with the name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from sipprov.agents.models import (
    AccountTypeCreate,
    DepartmentCreate,
    QueueCreate,
    RoleCreate,
    parse,
)
from sipprov.config import Config
from sipprov.directory import lookups as directory
from sipprov.directory import queues
from sipprov.errors import ValidationError

FORMAT = "sipprov-definitions"
FORMAT_VERSION = 1


async def export_definitions(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, Any]:
    """Every role, department, account type and queue (no users, no secrets)."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "roles": [
            {"name": r.name, "label": r.label, "sip_allowed": r.sip_allowed,
             "web_login": r.web_login, "calls_allowed": r.calls_allowed}
            for r in await directory.list_roles(conn)
        ],
        "departments": [{"name": d.name} for d in await directory.list_departments(conn)],
        "account_types": [
            {"name": a.name, "max_users": a.max_users} for a in await directory.list_account_types(conn)
        ],
        "queues": [
            {"name": q.name, "label": q.label, "kind": q.kind, "strategy": q.strategy,
             "number": q.number}
            for q in await queues.list_queues(conn)
        ],
    }


def write_file(path: Path | str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_file(path: Path | str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(f"definitions: {path}: no such file", "definitions") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"definitions: {path}: not JSON ({exc})", "definitions") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValidationError(f"definitions: {path} is not a {FORMAT} file", "definitions")
    if data.get("version") != FORMAT_VERSION:
        raise ValidationError(
            f"definitions: {path} has version {data.get('version')}, this sipprov reads {FORMAT_VERSION}",
            "definitions")
    return data


@dataclass
class DefinitionsResult:
    created: list[str] = field(default_factory=list)


def _items(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValidationError(f"definitions: {key} must be a list of objects", f"definitions.{key}")
    return items


def _parse(model: type, item: dict[str, Any], where: str) -> Any:
    try:
        return parse(model, item)
    except ValidationError as exc:
        raise ValidationError(f"definitions: {where}.{exc.message}", f"{where}.{exc.field}") from None


async def import_definitions(
    conn: asyncpg.Connection, cfg: Config, data: dict[str, Any], actor: str
) -> DefinitionsResult:
    """Create what is missing, inside the caller's transaction (through the services)."""
    result = DefinitionsResult()

    roles = {r.name.lower(): r for r in await directory.list_roles(conn)}
    for i, item in enumerate(_items(data, "roles")):
        want = _parse(RoleCreate, item, f"roles.{i}")
        have = roles.get(want.name.lower())
        if have is None:
            await directory.create_role(conn, cfg, want, actor)
            result.created.append(f"role {want.name}")
        elif (have.sip_allowed, have.web_login) != (want.sip_allowed, want.web_login):
            raise ValidationError(
                f"definitions: role {want.name} exists here with sip_allowed={have.sip_allowed},"
                f" web_login={have.web_login}; the file has sip_allowed={want.sip_allowed},"
                f" web_login={want.web_login}", f"roles.{i}")

    # Departments and account types: only a name to match, nothing that can disagree.
    named: list[tuple[str, type, str, Any, Any]] = [
        ("departments", DepartmentCreate, "department",
         directory.list_departments, directory.create_department),
        ("account_types", AccountTypeCreate, "account type",
         directory.list_account_types, directory.create_account_type),
    ]
    for key, model, what, list_existing, create in named:
        names = {x.name.lower() for x in await list_existing(conn)}
        for i, item in enumerate(_items(data, key)):
            want = _parse(model, item, f"{key}.{i}")
            if want.name.lower() not in names:
                await create(conn, cfg, want, actor)
                names.add(want.name.lower())
                result.created.append(f"{what} {want.name}")

    # A queue matches by name, or (an entry with only a label) by label.
    current = await queues.list_queues(conn)
    existing = {q.name.lower(): q for q in current}
    by_label = {q.label.lower(): q for q in current}
    for i, item in enumerate(_items(data, "queues")):
        want = _parse(QueueCreate, item, f"queues.{i}")
        if want.name is not None:
            queue = existing.get(want.name.lower())
        else:
            queue = by_label.get((want.label or "").lower())
        if queue is None:
            created, _ = await queues.create_queue(conn, cfg, want, actor)
            existing[created.name.lower()] = by_label[created.label.lower()] = created
            result.created.append(f"queue {created.name}")
        elif queue.kind != want.kind:
            raise ValidationError(
                f"definitions: queue {queue.name} exists here as a {queue.kind} queue; the file"
                f" has a {want.kind} queue", f"queues.{i}")
    return result
