"""Import step 4: matched rows go through the agent service's own update functions, each
in a SAVEPOINT of the file's transaction (a bad row undoes only itself); rows equal to
the stored agent are "unchanged"."""

from __future__ import annotations

from typing import Any

from sipprov.agents import service as agents
from sipprov.agents.models import Agent, AgentUpdate, parse
from sipprov.bulk.state import ImportState, Row, Secret
from sipprov.errors import SipprovError

# Agent fields not compared when deciding "unchanged" (they change by themselves).
_VOLATILE = frozenset({"updated_at", "updated_by", "avatar_url"})


def _comparable(agent: Agent) -> dict[str, Any]:
    return {k: v for k, v in agent.to_dict().items() if k not in _VOLATILE}


async def apply_updates(st: ImportState) -> None:
    updates = [r for r in st.rows if r.ok and r.agent is not None]
    if not updates:
        return
    with st.progress.step("update", len(updates)) as bar:
        for row in updates:
            try:
                if row.result.action == "delete":
                    await _delete_one(st, row)
                else:
                    await _update_one(st, row)
            except SipprovError as exc:
                row.fail(exc)
            bar.update()


async def _delete_one(st: ImportState, row: Row) -> None:
    """`action` delete: the agent service's delete, in a savepoint; the file bumps."""
    assert row.agent is not None
    async with st.conn.transaction():
        await agents.delete_agent(st.conn, st.cfg, row.agent.id, st.opts.actor, bump=False)
    st.bump_needed = st.bump_needed or row.agent.extension is not None


def _changed_fields(st: ImportState, row: Row) -> dict[str, Any]:
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


async def _update_one(st: ImportState, row: Row) -> None:
    assert row.agent is not None
    changed = _changed_fields(st, row)
    if not changed and row.new_password is None and row.new_sip_password is None:
        row.result.action = "unchanged"
        return
    before = row.agent
    actor = st.opts.actor
    # The file bumps the config version once (bump()), not once per row.
    async with st.conn.transaction():  # savepoint: a failing row undoes only itself
        after = before
        web_generated = sip_generated = None
        visible = False
        if changed:
            result = await agents.update_agent(
                st.conn, st.cfg, before.id, parse(AgentUpdate, changed), actor,
                bump=False, force=row.force)
            after = result.agent
            web_generated = result.web_password
            sip_generated = result.sip.password if result.sip else None
            visible = result.bump_needed
        if row.new_password is not None:
            await agents.set_web_password(st.conn, st.cfg, before.id, row.new_password, None, actor)
        if row.new_sip_password is not None:
            await agents.rotate_sip_password(
                st.conn, st.cfg, before.id, row.new_sip_password, actor, bump=False)
            visible = True
            sip_generated = None  # the file's own password: the operator knows it
    # Only a row that was kept counts (a failing one undid its changes).
    st.bump_needed = st.bump_needed or visible
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
        st.secrets[row.csv.line] = Secret(after.login, after.email, after.extension,
                                             web_generated, sip_generated)
