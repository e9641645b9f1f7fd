"""Does Asterisk hold what was rendered? Asked over AMI after a reload.

Checked against what was last verified, not against this attempt's reloads: a retry
after a failed verification reloads nothing but must still verify. Kept cheap at
10,000 agents: a few changed endpoints are asked one by one (PJSIPShowEndpoint), many
with one PJSIPShowEndpoints listing; queues only those that changed.
"""

from __future__ import annotations

from typing import Any

from sipprov.apply.ami import AmiClient, AmiError
from sipprov.apply.errors import NotVerified, Unavailable
from sipprov.apply.snapshot import (
    AgentChanges,
    AgentConf,
    QueueConf,
    Snapshot,
    diff_agents,
    touched_between,
)

# Up to this many added/changed/removed endpoints are checked one by one
# (PJSIPShowEndpoint); more, and one PJSIPShowEndpoints listing is compared instead
# (files backend) or a spread sample of this many is asked (realtime backend).
VERIFY_ONE_BY_ONE_MAX = 50
# Up to this many changed queues are asked one by one (QueueStatus Queue=...).
VERIFY_QUEUES_ONE_BY_ONE_MAX = 20


def _spread(extensions: set[int]) -> list[int]:
    """At most VERIFY_ONE_BY_ONE_MAX of `extensions`, evenly spread, first and last
    included (all of them when there are fewer)."""
    ordered = sorted(extensions)
    if len(ordered) <= VERIFY_ONE_BY_ONE_MAX:
        return ordered
    step = (len(ordered) - 1) / (VERIFY_ONE_BY_ONE_MAX - 1)
    return [ordered[round(i * step)] for i in range(VERIFY_ONE_BY_ONE_MAX)]


class Verifier:
    """Remembers what Asterisk was last verified to hold, and checks a new snapshot."""

    def __init__(self, realtime: bool = False) -> None:
        # Realtime backend: queue members are realtime rows (shown as "static" or
        # "realtime"), refreshed by app_queue only when asked for one queue by name.
        self.realtime = realtime
        # None: unknown (first apply, after a rollback): verify everything.
        self.agents: dict[int, AgentConf] | None = None
        self.queues: dict[str, QueueConf] | None = None
        # the snapshot verified last (what changed since: snapshot.touched_between)
        self.snapshot: Snapshot | None = None

    @property
    def known(self) -> bool:
        return self.agents is not None

    def forget(self) -> None:
        """What Asterisk holds is no longer what was last verified."""
        self.agents = None
        self.queues = None
        self.snapshot = None

    def changes(self, snap: Snapshot) -> AgentChanges:
        """How `snap`'s agents differ from what was last verified (everything when
        nothing was): only the agents touched since, when the loader knows them."""
        return diff_agents(self.agents, snap.extensions(), touched_between(self.snapshot, snap))

    def verified(self, snap: Snapshot) -> None:
        """Asterisk now holds `snap`."""
        self.agents = snap.extensions()
        self.queues = {q.name: q for q in snap.queues}
        self.snapshot = snap

    async def verify(self, ami: AmiClient, snap: Snapshot, force: bool) -> None:
        """NotVerified when Asterisk differs; Unavailable when AMI went away."""
        try:
            await self._endpoints(ami, snap, force)
            await self._queues(ami, snap, force)
        except AmiError as exc:
            if not ami.connected:
                raise Unavailable(str(exc)) from exc
            raise NotVerified(f"verification: {exc}") from exc

    async def _endpoints(self, ami: AmiClient, snap: Snapshot, force: bool) -> None:
        before = self.agents
        if before is None or force:
            current = snap.extensions()
            must_exist = set(current)
            removed = set(before or ()) - set(current)
        else:
            changes = self.changes(snap)
            removed = set(changes.gone)
            must_exist = set(changes.changed) - removed
        if not must_exist and not removed:
            return
        if self.realtime:
            # Asterisk lists no realtime agents (sorcery.conf's allow_unqualified_fetch=no:
            # a listing loads every agent, O(N^2) in Asterisk): each one is a row of the
            # same table, read by the same query, so a spread sample of them is asked.
            missing = [e for e in _spread(must_exist)
                       if not await ami.pjsip_endpoint_exists(str(e))]
            still = [e for e in _spread(removed) if await ami.pjsip_endpoint_exists(str(e))]
        elif not force and before is not None and len(must_exist) + len(removed) <= VERIFY_ONE_BY_ONE_MAX:
            missing = [e for e in sorted(must_exist)
                       if not await ami.pjsip_endpoint_exists(str(e))]
            still = [e for e in sorted(removed) if await ami.pjsip_endpoint_exists(str(e))]
        else:
            loaded = await ami.pjsip_endpoints()
            missing = [e for e in sorted(must_exist) if str(e) not in loaded]
            still = [e for e in sorted(removed) if str(e) in loaded]
        problems = []
        if missing:
            problems.append(f"{len(missing)} endpoint(s) missing in Asterisk "
                            f"(e.g. {', '.join(map(str, missing[:5]))})")
        if still:
            problems.append(f"{len(still)} removed endpoint(s) still in Asterisk "
                            f"(e.g. {', '.join(map(str, still[:5]))})")
        if problems:
            raise NotVerified("verification: " + "; ".join(problems))

    async def _queues(self, ami: AmiClient, snap: Snapshot, force: bool) -> None:
        current = {q.name: q for q in snap.queues}
        before = self.queues
        if before is None or force:
            check = set(current)
            removed = set(before or ()) - set(current)
        else:
            check = {n for n, q in current.items() if before.get(n) != q}
            removed = set(before) - set(current)
        if not check and not removed:
            return
        names = sorted(check | removed)
        if len(names) <= VERIFY_QUEUES_ONE_BY_ONE_MAX or self.realtime:
            status: dict[str, list[Any]] = {}
            for name in names:
                status.update(await ami.queue_status(name))
        else:
            status = await ami.queue_status()
        problems = []
        for name in sorted(check):
            if name not in status:
                problems.append(f"queue {name} missing")
                continue
            want = {f"PJSIP/{m.extension}": m.penalty for m in current[name].members}
            kinds = ("static", "", "realtime") if self.realtime else ("static", "")
            have = {m.interface: m.penalty for m in status[name] if m.membership in kinds}
            if have != want:
                wrong = sorted(set(want.items()) ^ set(have.items()))
                problems.append(f"queue {name}: {len(wrong)} member(s) differ "
                                f"(e.g. {', '.join(f'{i}:{p}' for i, p in wrong[:3])})")
        for name in sorted(removed):
            if status.get(name):
                problems.append(f"removed queue {name} still has members")
        if problems:
            raise NotVerified("verification: " + "; ".join(problems))
