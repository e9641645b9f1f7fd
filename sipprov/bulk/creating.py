"""Import step 5: the new agents, set-based with the agent service's rules: lookups once
per distinct name, licences per batch, ids and extensions in one statement each, then
COPY of users, memberships, campaigns and audit rows."""

from __future__ import annotations

import json
from typing import Any

from sipprov import audit
from sipprov.agents import extensions, naming
from sipprov.agents import rules as agentrules
from sipprov.bulk.state import ImportState, Row, Secret
from sipprov.db.sql import agents as agents_sql
from sipprov.db.sql import bulk as sql
from sipprov.db.sql import extensions as ext_sql
from sipprov.db.sql.constraints import taken as constraint_taken
from sipprov.errors import SipprovError

COPY_BATCH = 2000


async def insert_creates(st: ImportState) -> None:
    creates = [r for r in st.rows if r.ok and r.create is not None]
    if not creates:
        return
    await _resolve_names(st, creates)
    await _check_licences(st, creates)
    creates = [r for r in creates if r.ok]
    await _assign_ids_and_logins(st, creates)
    creates = [r for r in creates if r.ok]
    await _assign_extensions(st, [r for r in creates if r.can_sip])
    creates = [r for r in creates if r.ok]
    await _write(st, creates)


async def _resolve_names(st: ImportState, creates: list[Row]) -> None:
    """Departments, ticket queues and queues through the agent service's own lookups
    (same rules, same messages): each department and ticket queue once per distinct
    name, the queues of the whole file in one query."""
    found = await agentrules.queues_by_name(
        st.conn, sorted({q.name for r in creates for q in r.create.queues}))  # type: ignore[union-attr]
    for row in creates:
        data = row.create
        assert data is not None
        try:
            if data.department is not None:
                row.department_id = await st.once(
                    "department", data.department, agentrules.department_id)
            if data.default_ticket_queue is not None:
                row.ticket_queue = await st.once(
                    "ticket", data.default_ticket_queue, agentrules.ticket_queue)
            row.memberships = agentrules.memberships(data.queues, found)
        except SipprovError as exc:
            row.fail(exc)


async def _check_licences(st: ImportState, creates: list[Row]) -> None:
    """The licence limit for the whole batch: the rows past the limit are refused."""
    by_type: dict[str, list[Row]] = {}
    for row in creates:
        if row.ok:
            assert row.create is not None
            by_type.setdefault(row.create.account_type.lower(), []).append(row)
    for rows in by_type.values():
        try:
            licence = await agentrules.check_licence(
                st.conn, rows[0].create.account_type, len(rows))  # type: ignore[union-attr]
        except SipprovError as exc:
            for row in rows:
                row.fail(exc)
            continue
        for i, row in enumerate(rows):
            row.account_type_id = licence.type_id
            if i >= licence.allowed:
                row.fail(licence.refusal())


async def _assign_ids_and_logins(st: ImportState, creates: list[Row]) -> None:
    ids = await sql.next_user_ids(st.conn, len(creates))
    in_db = await sql.all_logins(st.conn)
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


async def _assign_extensions(st: ImportState, creates: list[Row]) -> None:
    ext = st.cfg.extensions
    explicit = [(r, r.create.extension) for r in creates
                if r.create and r.create.extension is not None]
    claimed = await sql.claim_exact(
        st.conn, ext.first, ext.last,
        [number for _, number in explicit],
        [extensions.user_owner(r.user_id) for r, _ in explicit],  # type: ignore[arg-type]
        ext.cooldown_s)
    for row, number in explicit:
        if number not in claimed:
            try:  # not claimable: the extension service says why (range, reserved, taken)
                owner = extensions.user_owner(row.user_id)  # type: ignore[arg-type]
                await extensions.allocate_exact(st.conn, ext, number, owner)
            except SipprovError as exc:
                row.fail(exc)
                continue
        row.extension = number

    auto = [r for r in creates if r.ok and r.extension is None]
    if auto:
        free = (await ext_sql.stats(st.conn, ext.first, ext.last, ext.cooldown_s))["free"]
        for row in auto[free:]:
            row.fail(extensions.exhausted(ext, free=free, needed=len(auto)))
        auto = auto[:free]
        owners = [extensions.user_owner(r.user_id) for r in auto]  # type: ignore[arg-type]
        got = await extensions.allocate_many(st.conn, ext, owners)
        for row, owner in zip(auto, owners, strict=True):
            row.extension = got[owner]

    for row in creates:
        if not row.ok:
            continue
        assert row.plan is not None and row.extension is not None
        row.result.extension = row.extension
        try:
            row.sip_password = row.plan.sip_password(st.cfg, row.extension, row.result.login)  # type: ignore[arg-type]
        except SipprovError as exc:
            row.fail(exc)
            await extensions.release(st.conn, row.extension,
                                     extensions.user_owner(row.user_id), hold=False)  # type: ignore[arg-type]


def _user_record(st: ImportState, row: Row) -> tuple[Any, ...]:
    assert row.plan is not None and row.user_id is not None and row.account_type_id is not None
    values = row.plan.user_values(
        st.cfg,
        user_id=row.user_id,
        login=row.result.login,
        department_id=row.department_id,
        account_type_id=row.account_type_id,
        ticket_queue=row.ticket_queue,
        web_password_hash=None,  # stored after the apply (module docstring)
        actor=st.opts.actor,
        extension=row.extension,
        sip_password=row.sip_password,
    )
    return tuple(values[c] for c in agents_sql.INSERT_COLUMNS)


def _audit_record(st: ImportState, row: Row) -> tuple[Any, ...]:
    assert row.plan is not None
    details = row.plan.audit_details(row.result.login or "", row.extension)
    details.update({"import": st.source, "line": row.csv.line})
    text = json.dumps(audit.scrub(details), default=str, ensure_ascii=False)
    return (st.opts.actor, "create", "agent", str(row.user_id), text)


async def _write(st: ImportState, creates: list[Row]) -> None:
    if not creates:
        return
    with st.progress.step("write", len(creates)) as bar:
        for start in range(0, len(creates), COPY_BATCH):
            batch = creates[start:start + COPY_BATCH]
            await sql.copy_users(st.conn, [_user_record(st, r) for r in batch])
            bar.update(len(batch))
        members = [(qid, r.user_id, penalty) for r in creates for qid, _, penalty in r.memberships]
        if members:
            await sql.copy_memberships(st.conn, members)
        campaigns = [(agentrules.MANUAL_DIAL_CAMPAIGN, r.user_id) for r in creates
                     if r.plan and r.plan.manual_dial]
        if campaigns:
            await sql.copy_campaigns(st.conn, campaigns)
        await sql.copy_audit(st.conn, [_audit_record(st, r) for r in creates])
    for row in creates:
        plan = row.plan
        assert plan is not None and row.user_id is not None
        row.result.action = "create"
        if plan.web_password is not None:
            st.to_hash.append((row.user_id, plan.web_password))
        if plan.web_generated or plan.sip_generated:
            st.secrets[row.csv.line] = Secret(
                row.result.login or "", plan.data.email, row.extension if row.can_sip else None,
                plan.web_password if plan.web_generated else None,
                row.sip_password if plan.sip_generated else None)
    if any(r.can_sip for r in creates):
        st.bump_needed = True
