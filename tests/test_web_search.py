"""Search with or without diacritics: PostgreSQL's sipprov_fold (migration 008) folds
exactly as sipprov.agents.naming.fold_ascii, and the agent search finds Polish and
Vietnamese names typed without their accents."""

from __future__ import annotations

import asyncpg
import pytest

from sipprov.agents import naming
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.config import Config
from sipprov.db.transaction import run
from sipprov.errors import ValidationError

NAMES = ["Łukasz Żółć", "Trần Thị Bích Ngọc", "Đặng Quốc Bảo", "Ǹgozi Ḿbeki", "Zoë Çelik",
         "Małgorzata Wiśniewska", "Nguyễn Văn Ánh", "Ōtsuka Ŝtefan"]


async def test_sql_fold_agrees_with_python(pool: asyncpg.Pool) -> None:
    for name in NAMES:
        expected = "".join(naming.fold_ascii(ch).lower() if len(naming.fold_ascii(ch)) == 1 else ch.lower()
                           for ch in name)
        assert await pool.fetchval("SELECT sipprov_fold($1)", name) == expected, name
    # every letter the table maps folds to what Python gives
    for code in list(range(0xC0, 0x250)) + list(range(0x1E00, 0x1F00)):
        ch = chr(code)
        folded = naming.fold_ascii(ch).lower()
        if ch == ch.lower() and len(folded) == 1:
            assert await pool.fetchval("SELECT sipprov_fold($1)", ch) == folded, hex(code)


@pytest.mark.parametrize("query, found", [
    ("lukasz zolc", "Łukasz"), ("Łukasz", "Łukasz"), ("zolc", "Łukasz"),
    ("tran thi bich", "Trần Thị Bích"), ("ngoc", "Trần Thị Bích"), ("Ngọc", "Trần Thị Bích"),
    ("dang quoc", "Đặng"), ("bao dang", "Đặng"),
])
async def test_search_with_or_without_diacritics(cfg: Config, agent_pool: asyncpg.Pool, query: str,
                                                 found: str) -> None:
    for first, last, email in (("Łukasz", "Żółć", "l@example.com"),
                               ("Trần Thị Bích", "Ngọc", "n@example.com"),
                               ("Đặng", "Quốc Bảo", "b@example.com")):
        await run(agent_pool, agents.create_agent, cfg, AgentCreate(first_name=first, last_name=last,
                                                               email=email), "test")
    page = await agents.search_agents(agent_pool, q=query)
    assert [a.first_name for a in page.items] == [found]


async def test_search_by_queue(cfg: Config, agent_pool: asyncpg.Pool) -> None:
    from sipprov.agents.models import QueueCreate
    from sipprov.directory import queues

    await run(agent_pool, queues.create_queue, cfg, QueueCreate(name="support"), "test")
    await run(agent_pool, agents.create_agent, cfg, AgentCreate(
        first_name="Jan", last_name="Kowalski", email="j@example.com", queues=[{"name": "support"}]), "test")
    await run(agent_pool, agents.create_agent, cfg, AgentCreate(
        first_name="Anna", last_name="Nowak", email="a@example.com"), "test")
    members = (await agents.search_agents(agent_pool, queue="SUPPORT")).items
    assert [a.login for a in members] == ["jan.kowalski"]
    with pytest.raises(ValidationError) as exc:  # unknown is an error, not an empty page
        await agents.search_agents(agent_pool, queue="nope")
    assert exc.value.field == "queue" and "nope" in exc.value.message
