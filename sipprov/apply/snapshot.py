"""One consistent view of everything Asterisk sees, read from PostgreSQL.

The renderer is a pure function of a Snapshot, and the applier records the snapshot's
version as applied: so the version must come from the same database snapshot as the
rows. Everything is read in ONE repeatable-read, read-only transaction, one query per
table (10,000 agents = a few fetches, not 10,000 round trips).
"""

from __future__ import annotations

import bisect
import dataclasses
import operator
from collections import deque
from dataclasses import dataclass, field, fields

import asyncpg

from sipprov.db.sql import snapshot as q


@dataclass(frozen=True, slots=True)
class AgentConf:
    """What Asterisk needs to know about one agent (hashable: the render cache key)."""

    id: int
    extension: int
    caller_id_name: str
    ha1_md5: str
    ha1_sha256: str | None
    realm: str | None
    outbound_allowed: bool
    outbound_number: str | None
    mute_mic: bool
    autologin_phone: bool
    priority: int
    site: str | None = None


# A field the registry marks `rendered` must be here too (and in the templates): fail
# at import, not with a half-rendered endpoint.
_differ = {f.name for f in fields(AgentConf)} ^ {n for n, _ in q.AGENT_COLUMNS}
if _differ:
    raise RuntimeError(f"AgentConf and the rendered fields of agents/fields.py differ: {sorted(_differ)}")
# A row of q.AGENTS in AgentConf's field order (building a dict per row costs more).
_COLUMN_NAMES = [n for n, _ in q.AGENT_COLUMNS]
_in_field_order = operator.itemgetter(*(_COLUMN_NAMES.index(f.name) for f in fields(AgentConf)))


def _conf(row: asyncpg.Record) -> AgentConf:
    return AgentConf(*_in_field_order(row))


@dataclass(frozen=True, slots=True)
class QueueMemberConf:
    extension: int
    penalty: int
    caller_id_name: str


@dataclass(frozen=True, slots=True)
class QueueConf:
    """A voice queue; only voice queues are rendered (chat/ticket ones are stored only)."""

    id: int
    name: str
    strategy: str
    number: int | None
    members: tuple[QueueMemberConf, ...] = ()
    site: str | None = None


class ChangeLog:
    """The extensions each load of one SnapshotLoader touched (an agent's old and new
    extension), for its last loads: what changed between two of its snapshots, without
    comparing every agent. A full read touched everything (None)."""

    # Loads remembered, and extensions remembered in all (a bulk import's are many).
    MAX_LOADS = 512
    MAX_EXTENSIONS = 200_000

    def __init__(self) -> None:
        self._loads: deque[tuple[int, frozenset[int] | None]] = deque()
        self._size = 0

    def add(self, generation: int, touched: frozenset[int] | None) -> None:
        self._loads.append((generation, touched))
        self._size += len(touched) if touched is not None else 0
        while len(self._loads) > self.MAX_LOADS or (
                self._size > self.MAX_EXTENSIONS and len(self._loads) > 1):
            _, old = self._loads.popleft()
            self._size -= len(old) if old is not None else 0

    def between(self, old: int, new: int) -> set[int] | None:
        """Extensions touched by the loads after generation `old` up to `new`; None when
        not known (forgotten, or a full read in between)."""
        if old == new:
            return set()
        if old > new or not self._loads or self._loads[0][0] > old + 1:
            return None
        out: set[int] = set()
        for generation, touched in self._loads:
            if old < generation <= new:
                if touched is None:
                    return None
                out |= touched
        return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    agents: list[AgentConf]
    queues: list[QueueConf]
    # Kept by the SnapshotLoader (None: built when asked for): agents by extension.
    by_extension: dict[int, AgentConf] | None = field(default=None, compare=False, repr=False)
    # Where it came from: its loader's change log and the load's generation (None: not
    # from a loader, or changed since, e.g. a site's part or without quarantined rows).
    changelog: ChangeLog | None = field(default=None, compare=False, repr=False)
    generation: int = field(default=0, compare=False, repr=False)
    # How many agents have a site (-1: not counted).
    sited: int = field(default=-1, compare=False, repr=False)

    def extensions(self) -> dict[int, AgentConf]:
        """Agents by extension (the loader's dict: do not modify)."""
        if self.by_extension is not None:
            return self.by_extension
        return {a.extension: a for a in self.agents}


@dataclass(frozen=True)
class AgentChanges:
    """What changed between two views of the agents (by extension)."""

    changed: frozenset[int]           # new, different or gone
    gone: frozenset[int]              # no longer an agent's
    credentials_gone: frozenset[int]  # gone, rotated digest, or another agent's now


def diff_agents(before: dict[int, AgentConf] | None, current: dict[int, AgentConf],
                touched: set[int] | None = None) -> AgentChanges:
    """before None (unknown): everything changed, no credentials known to be gone.
    touched: the only extensions that may differ (touched_between); None: compare every
    agent."""
    if before is None:
        return AgentChanges(frozenset(current), frozenset(), frozenset())
    candidates = touched if touched is not None else set(current) | set(before)
    changed = {e for e in candidates if before.get(e) != current.get(e)}
    gone = {e for e in changed if e not in current}
    rotated = {e for e in changed if e in before and e in current
               and (before[e].ha1_md5 != current[e].ha1_md5
                    or before[e].ha1_sha256 != current[e].ha1_sha256
                    or before[e].id != current[e].id)}
    return AgentChanges(frozenset(changed), frozenset(gone), frozenset(gone | rotated))


def touched_between(old: Snapshot | None, new: Snapshot) -> set[int] | None:
    """The extensions whose agent may differ between `old` and `new`, when both come from
    the same loader and it still knows; None: compare every agent."""
    if old is None or old.changelog is None or old.changelog is not new.changelog:
        return None
    return new.changelog.between(old.generation, new.generation)


class SnapshotLoader:
    """Loads snapshots for one applier, re-reading only the agents that changed since
    its previous load, and reusing the others' AgentConf.

    What changed comes from the agent journal (migration 017: the users a statement
    touched, written by triggers in the same transaction): rows whose transaction id
    is at or above the xmin of the previous load's snapshot. Why: reading every agent's
    row version per apply cost ~0.1 s at 100,000 agents. The first load, and a load
    after the journal was pruned past this loader, read everything. The result is the
    same as a full read in one repeatable-read transaction
    (tests/test_snapshot_loader.py)."""

    # Up to this many changed agents are moved in the ordered list one by one.
    IN_PLACE_MAX = 256

    def __init__(self) -> None:
        self._by_id: dict[int, AgentConf] = {}
        self._by_ext: dict[int, AgentConf] = {}
        # extensions in order, and the agents in the same order
        self._exts: list[int] = []
        self._agents: list[AgentConf] = []
        self._sited: set[int] = set()
        # the xmin of the last load's snapshot (None: nothing loaded yet)
        self._xmin: int | None = None
        self.changelog = ChangeLog()
        self._generation = 0

    async def load(self, conn: asyncpg.Connection, prune: bool = False) -> Snapshot:
        """prune: then delete the journal rows this load consumed (the applier's loader;
        any other loader then reads everything once)."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            version = await conn.fetchval(q.VERSION)
            xmin, pruned_below = await conn.fetchrow(q.JOURNAL_POSITION)
            full = self._xmin is None or pruned_below > self._xmin
            if full:
                rows = await conn.fetch(q.AGENTS)
                ids: list[int] = []
            else:
                ids = [r[0] for r in await conn.fetch(q.JOURNAL_SINCE, self._xmin)]
                rows = await conn.fetch(q.RENDERABLE_BY_ID, ids) if ids else []
            queue_rows = await conn.fetch(q.VOICE_QUEUES)
            member_rows = await conn.fetch(q.VOICE_QUEUE_MEMBERS)
        self._generation += 1
        if full:
            self._read_all(rows)
            self.changelog.add(self._generation, None)
        else:
            self.changelog.add(self._generation, frozenset(self._read_changed(ids, rows)))
        self._xmin = int(xmin)
        if prune:
            await conn.execute(q.JOURNAL_PRUNE, self._xmin)
        members: dict[int, list[QueueMemberConf]] = {}
        for row in member_rows:
            members.setdefault(row[0], []).append(QueueMemberConf(row[1], row[3], row[2]))
        queues = [
            QueueConf(row[0], row[1], row[2], row[3], tuple(members.get(row[0], ())), row[4])
            for row in queue_rows
        ]
        return Snapshot(version=int(version), agents=list(self._agents), queues=queues,
                        by_extension=dict(self._by_ext), changelog=self.changelog,
                        generation=self._generation, sited=len(self._sited))

    def _read_all(self, rows: list[asyncpg.Record]) -> None:
        old = self._by_id
        by_id: dict[int, AgentConf] = {}
        for row in rows:  # in extension order
            conf = _conf(row)
            prev = old.get(conf.id)
            by_id[conf.id] = prev if prev == conf else conf
        self._by_id = by_id
        self._agents = list(by_id.values())
        self._exts = [a.extension for a in self._agents]
        self._by_ext = dict(zip(self._exts, self._agents, strict=True))
        self._sited = {a.id for a in self._agents if a.site is not None}

    def _read_changed(self, ids: list[int], rows: list[asyncpg.Record]) -> set[int]:
        """Apply the re-read rows (an id without a row is no longer rendered); the
        extensions touched."""
        fresh = {conf.id: conf for conf in (_conf(row) for row in rows)}
        touched: set[int] = set()
        moves: list[tuple[AgentConf | None, AgentConf | None]] = []
        for agent_id in ids:
            prev = self._by_id.get(agent_id)
            conf = fresh.get(agent_id)
            if prev == conf:
                continue
            moves.append((prev, conf))
            if prev is not None:
                del self._by_id[prev.id]
                if self._by_ext.get(prev.extension) is prev:
                    del self._by_ext[prev.extension]
                self._sited.discard(prev.id)
                touched.add(prev.extension)
        for _, conf in moves:
            if conf is not None:
                self._by_id[conf.id] = conf
                self._by_ext[conf.extension] = conf
                if conf.site is not None:
                    self._sited.add(conf.id)
                touched.add(conf.extension)
        if len(moves) > self.IN_PLACE_MAX:
            # many (a bulk import): one sort instead of a list shift per agent
            self._agents = sorted(self._by_id.values(), key=operator.attrgetter("extension"))
            self._exts = [a.extension for a in self._agents]
            return touched
        for prev, conf in moves:
            if prev is not None:
                i = bisect.bisect_left(self._exts, prev.extension)
                while self._agents[i] is not prev:
                    i += 1
                del self._exts[i]
                del self._agents[i]
            if conf is not None:
                i = bisect.bisect_right(self._exts, conf.extension)
                self._exts.insert(i, conf.extension)
                self._agents.insert(i, conf)
        return touched


async def load(conn: asyncpg.Connection) -> Snapshot:
    """Read the version and all renderable rows in one repeatable-read snapshot."""
    return await SnapshotLoader().load(conn)


def for_site(snap: Snapshot, site: str | None) -> Snapshot:
    """What a node of `site` serves: the agents and queues without a site, and those of
    its site (None: only those without). Queue members follow their agents."""
    if snap.sited == 0 and all(q.site in (None, site) for q in snap.queues):
        return snap  # no agent has a site (counted by the loader)
    agents = [a for a in snap.agents if a.site is None or a.site == site]
    if len(agents) == len(snap.agents) and all(q.site in (None, site) for q in snap.queues):
        return snap
    kept = {a.extension for a in agents}
    queues = [dataclasses.replace(q, members=tuple(m for m in q.members if m.extension in kept))
              for q in snap.queues if q.site is None or q.site == site]
    # the site's part changes only where the whole did: the same change log applies
    return Snapshot(version=snap.version, agents=agents, queues=queues,
                    changelog=snap.changelog, generation=snap.generation,
                    sited=sum(1 for a in agents if a.site is not None))


async def load_from_pool(pool: asyncpg.Pool) -> Snapshot:
    async with pool.acquire() as conn:
        return await load(conn)
