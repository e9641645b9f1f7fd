"""Queues and memberships against the real PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from sipprov import audit
from sipprov.agents import service as agents
from sipprov.agents.models import AgentUpdate, QueueCreate, QueueUpdate, parse
from sipprov.config import Config
from sipprov.db.transaction import run
from sipprov.directory import queues
from sipprov.errors import ConfirmationRequired, ConflictError, NotFoundError, ValidationError
from tests.service_helpers import ACTOR, agent_maker, version

# Every test here also checks that the audit log holds no secret (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("audit_guard")
new_agent = agent_maker("q")


def qc(**fields: Any) -> QueueCreate:
    return parse(QueueCreate, fields)


def qu(**fields: Any) -> QueueUpdate:
    return parse(QueueUpdate, fields)


async def owner_of(pool: asyncpg.Pool, number: int) -> str | None:
    return await pool.fetchval("SELECT owner FROM extension_pool WHERE number = $1", number)


async def test_create_list_get(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    v0 = await version(agent_pool)
    voice, v = await run(agent_pool, queues.create_queue,
            cfg, qc(name="Sales", strategy="rrmemory", number=200),
                                         ACTOR)
    assert (voice.name, voice.kind, voice.strategy, voice.number, voice.member_count) == ("Sales", "voice",
                                                                                          "rrmemory", 200, 0)
    assert v == v0 + 1
    assert await owner_of(agent_pool, 200) == f"queue:{voice.id}"
    chat, v = await run(agent_pool, queues.create_queue, cfg, qc(name="chat-pl", kind="chat"), ACTOR)
    assert v is None and chat.number is None and await version(agent_pool) == v0 + 1
    await run(agent_pool, queues.create_queue, cfg, qc(name="mail", kind="ticket"), ACTOR)

    assert [q.name for q in await queues.list_queues(agent_pool)] == ["chat-pl", "mail", "Sales"]
    assert [q.name for q in await queues.list_queues(agent_pool, kind="voice")] == ["Sales"]
    with pytest.raises(ValidationError):
        await queues.list_queues(agent_pool, kind="sms")
    got = await queues.get_queue(agent_pool, "SALES")
    assert got.id == voice.id and got.members == []
    assert "members" not in (await queues.list_queues(agent_pool))[0].to_dict()
    for name in ["nope", "bad\x00name", "[general]"]:
        with pytest.raises(NotFoundError):
            await queues.get_queue(agent_pool, name)


async def test_create_conflicts_and_rules(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, queues.create_queue, cfg, qc(name="sales", number=200), ACTOR)
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, queues.create_queue, cfg, qc(name="SALES"), ACTOR)
    assert (exc.value.field, exc.value.code) == ("name", "name_taken")
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, queues.create_queue, cfg, qc(name="other", number=200), ACTOR)
    assert exc.value.field == "number"
    a = await run(agent_pool, agents.create_agent, cfg, new_agent(), ACTOR)
    with pytest.raises(ConflictError) as exc:  # numbers are unique across agents and queues
        await run(agent_pool, queues.create_queue, cfg, qc(name="other", number=a.agent.extension), ACTOR)
    assert exc.value.field == "number"
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, queues.create_queue, cfg, qc(name="chat", kind="chat", number=300), ACTOR)
    assert exc.value.field == "number"
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, queues.create_queue, cfg, qc(name="far", number=5000), ACTOR)
    assert exc.value.field == "number"
    assert await agent_pool.fetchval("SELECT count(*) FROM queues") == 1
    # The failed creates claimed nothing.
    assert await agent_pool.fetchval("SELECT count(*) FROM extension_pool WHERE owner LIKE 'queue:%'") == 1


async def test_update_queue(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    q, _ = await run(agent_pool, queues.create_queue, cfg, qc(name="sales", number=200), ACTOR)
    a = await run(agent_pool, agents.create_agent, cfg, new_agent(queues=[{"name": "sales"}]), ACTOR)
    v0 = await version(agent_pool)

    renamed, v = await run(agent_pool, queues.update_queue, cfg, "SALES", qu(name="sales-pl",
                                                                        strategy="leastrecent"), ACTOR)
    assert (renamed.name, renamed.strategy, renamed.member_count, v) == ("sales-pl", "leastrecent", 1, v0 + 1)
    assert (await agents.get_agent(agent_pool, a.agent.id)).queues[0]["name"] == "sales-pl"

    moved, _ = await run(agent_pool, queues.update_queue, cfg, "sales-pl", qu(number=201), ACTOR)
    assert moved.number == 201 and await owner_of(agent_pool, 200) is None
    assert await owner_of(agent_pool, 201) == f"queue:{q.id}"
    with pytest.raises(ConflictError):
        await run(agent_pool, queues.update_queue, cfg, "sales-pl", qu(number=a.agent.extension), ACTOR)
    assert (await queues.get_queue(agent_pool, "sales-pl")).number == 201

    cleared, _ = await run(agent_pool, queues.update_queue, cfg, "sales-pl", qu(number=None), ACTOR)
    assert cleared.number is None and await owner_of(agent_pool, 201) is None

    # No change: no bump, no audit row.
    n = await agent_pool.fetchval("SELECT count(*) FROM audit_log")
    same, v = await run(agent_pool, queues.update_queue, cfg, "sales-pl", qu(strategy="leastrecent"), ACTOR)
    assert v is None and await agent_pool.fetchval("SELECT count(*) FROM audit_log") == n

    # Leaving voice releases the number; voice -> chat is still a change Asterisk sees.
    await run(agent_pool, queues.update_queue, cfg, "sales-pl", qu(number=202), ACTOR)
    chat, v = await run(agent_pool, queues.update_queue, cfg, "sales-pl", qu(kind="chat"), ACTOR)
    assert (chat.kind, chat.number) == ("chat", None) and v is not None
    assert await owner_of(agent_pool, 202) is None
    _, v = await run(agent_pool, queues.update_queue, cfg, "sales-pl", qu(strategy="random"), ACTOR)
    assert v is None  # chat queues are not in Asterisk
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, queues.update_queue, cfg, "sales-pl", qu(number=203), ACTOR)
    assert exc.value.field == "number"
    await run(agent_pool, queues.create_queue, cfg, qc(name="other"), ACTOR)
    with pytest.raises(ConflictError) as exc:
        await run(agent_pool, queues.update_queue, cfg, "other", qu(name="SALES-PL"), ACTOR)
    assert exc.value.field == "name"
    with pytest.raises(NotFoundError):
        await run(agent_pool, queues.update_queue, cfg, "ghost", qu(strategy="random"), ACTOR)
    actions = [e.action for e in await audit.list_entries(agent_pool, entity="queue", entity_id=q.id)]
    assert actions.count("update") == 6 and actions.count("create") == 1  # no-op and refused: none


async def test_ticket_queue_references_follow(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, queues.create_queue, cfg, qc(name="mail", kind="ticket"), ACTOR)
    a = (await run(agent_pool, agents.create_agent,
            cfg, new_agent(role="end-user", default_ticket_queue="mail"),
                                   ACTOR)).agent
    await run(agent_pool, queues.update_queue, cfg, "mail", qu(name="mail-pl"), ACTOR)
    assert (await agents.get_agent(agent_pool, a.id)).default_ticket_queue == "mail-pl"
    with pytest.raises(ConfirmationRequired) as refused:
        await run(agent_pool, queues.delete_queue, cfg, "mail-pl", ACTOR)
    assert refused.value.lost["default_ticket_queue_logins"] == [a.login]
    assert await run(agent_pool, queues.delete_queue, cfg, "mail-pl", ACTOR, force=True) is None
    assert (await agents.get_agent(agent_pool, a.id)).default_ticket_queue is None


async def test_delete_queue(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, queues.create_queue, cfg, qc(name="sales", number=200), ACTOR)
    a = await run(agent_pool, agents.create_agent, cfg, new_agent(queues=[{"name": "sales"}]), ACTOR)
    v0 = await version(agent_pool)
    with pytest.raises(ConfirmationRequired) as refused:
        await run(agent_pool, queues.delete_queue, cfg, "sales", ACTOR)
    assert refused.value.code == "confirmation_required" and refused.value.field == "name"
    assert (refused.value.lost["members"], refused.value.lost["member_logins"]) == (1, [a.agent.login])
    assert await version(agent_pool) == v0  # refused: nothing changed
    v = await run(agent_pool, queues.delete_queue, cfg, "sales", ACTOR, force=True)
    assert v == await version(agent_pool)
    assert await owner_of(agent_pool, 200) is None
    assert (await agents.get_agent(agent_pool, a.agent.id)).queues == []
    with pytest.raises(NotFoundError):
        await run(agent_pool, queues.delete_queue, cfg, "sales", ACTOR)
    entries = await audit.list_entries(agent_pool, entity="queue")
    assert [e.action for e in reversed(entries)] == ["create", "delete"]
    assert entries[0].details == {"name": "sales", "kind": "voice", "number": 200, "members": 1}


async def test_memberships(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    await run(agent_pool, queues.create_queue, cfg, qc(name="sales"), ACTOR)
    await run(agent_pool, queues.create_queue, cfg, qc(name="chat", kind="chat"), ACTOR)
    a = (await run(agent_pool, agents.create_agent, cfg, new_agent(priority=4), ACTOR)).agent
    v0 = await version(agent_pool)

    member, v = await run(agent_pool, queues.set_member, cfg, "sales", a.id, None, ACTOR)
    assert (member.agent_id, member.login, member.extension) == (a.id, a.login, a.extension)
    assert (member.penalty, member.penalty_override, v) == (3, None, v0 + 1)  # priority - 1
    member, v = await run(agent_pool, queues.set_member, cfg, "SALES", a.id, 0, ACTOR)
    assert (member.penalty, member.penalty_override, v) == (0, 0, v0 + 2)
    member, v = await run(agent_pool, queues.set_member, cfg, "sales", a.id, 0, ACTOR)
    assert v is None  # unchanged
    member, v = await run(agent_pool, queues.set_member, cfg, "chat", a.id, None, ACTOR)
    assert v is None and member.penalty == 3  # chat queues are not in Asterisk

    # Priority drives the derived penalty; an override stays.
    await run(agent_pool, agents.update_agent, cfg, a.id, parse(AgentUpdate, {"priority": 10}), ACTOR)
    got = {q["name"]: q for q in (await agents.get_agent(agent_pool, a.id)).queues}
    assert got["sales"]["penalty"] == 0 and got["chat"]["penalty"] == 9
    assert (await queues.get_queue(agent_pool, "chat")).members[0].penalty == 9

    assert await run(agent_pool, queues.remove_member, cfg, "sales", a.id, ACTOR) == await version(agent_pool)
    assert await run(agent_pool, queues.remove_member, cfg, "chat", a.id, ACTOR) is None
    with pytest.raises(NotFoundError):
        await run(agent_pool, queues.remove_member, cfg, "sales", a.id, ACTOR)
    with pytest.raises(NotFoundError) as exc:
        await run(agent_pool, queues.set_member, cfg, "sales", 999999, None, ACTOR)
    assert exc.value.field == "agent_id"
    with pytest.raises(NotFoundError):
        await run(agent_pool, queues.set_member, cfg, "ghost", a.id, None, ACTOR)
    with pytest.raises(ValidationError) as exc:
        await run(agent_pool, queues.set_member, cfg, "sales", a.id, 1001, ACTOR)
    assert exc.value.field == "penalty"

    # Only agents with a SIP account can be members.
    for data in [new_agent(role="end-user"), new_agent(is_agent=False), new_agent(role="ticket-only")]:
        user = (await run(agent_pool, agents.create_agent, cfg, data, ACTOR)).agent
        with pytest.raises(ValidationError) as exc:
            await run(agent_pool, queues.set_member, cfg, "chat", user.id, None, ACTOR)
        assert exc.value.field == "agent_id"

    actions = [e.action for e in await audit.list_entries(agent_pool, entity="queue")]
    assert actions.count("set_member") == 3 and actions.count("remove_member") == 2
