"""Sites (docs/scale-out.md, "Sites"): what a node of a site serves, and site values
that could become config are refused everywhere they enter."""

from __future__ import annotations

import pydantic
import pytest

from sipprov.agents.models import AgentCreate, AgentUpdate, QueueCreate, QueueUpdate
from sipprov.apply import realtimeconf
from sipprov.apply.snapshot import AgentConf, QueueConf, QueueMemberConf, Snapshot, for_site

HOSTILE = ["a;b", "waw\n[x]", "#include x", "", " waw", "x" * 33, "łódź", "a b"]


def _agent(ext: int, site: str | None) -> AgentConf:
    return AgentConf(ext, ext, f"a{ext}", "0" * 32, None, None, False, None, False, False, 1,
                     site)


def test_a_node_serves_its_site_and_what_has_none() -> None:
    snap = Snapshot(7, [_agent(101, None), _agent(102, "waw"), _agent(103, "hcm")], [
        QueueConf(1, "all", "ringall", None,
                  tuple(QueueMemberConf(e, 0, f"a{e}") for e in (101, 102, 103))),
        QueueConf(2, "waw-only", "ringall", None, (QueueMemberConf(102, 0, "a102"),), "waw"),
    ])
    waw = for_site(snap, "waw")
    assert [a.extension for a in waw.agents] == [101, 102]
    assert [(q.name, [m.extension for m in q.members]) for q in waw.queues] == [
        ("all", [101, 102]), ("waw-only", [102])]
    bare = for_site(snap, None)
    assert [a.extension for a in bare.agents] == [101]
    assert [(q.name, [m.extension for m in q.members]) for q in bare.queues] == [("all", [101])]
    assert bare.version == waw.version == 7
    # nothing with a site: the snapshot as it is
    plain = Snapshot(8, [_agent(101, None)], [])
    assert for_site(plain, "waw") is plain


@pytest.mark.parametrize("site", HOSTILE)
def test_hostile_sites_are_refused(site: str) -> None:
    base = {"first_name": "Jan", "last_name": "Kowalski", "email": "jan@example.com"}
    with pytest.raises(pydantic.ValidationError, match="site"):
        AgentCreate(**base, site=site)
    with pytest.raises(pydantic.ValidationError, match="site"):
        AgentUpdate(site=site)
    with pytest.raises(pydantic.ValidationError, match="site"):
        QueueCreate(name="q", site=site)
    with pytest.raises(pydantic.ValidationError, match="site"):
        QueueUpdate(site=site)
    with pytest.raises(ValueError):
        realtimeconf.app_name(site)


def test_a_node_of_a_site_names_it_in_res_pgsql_conf() -> None:
    link = realtimeconf.DbLink("/run/pg", 5432, "sipprov", "sipprov_asterisk", "pw")
    assert "dbappname = sipprov-site:waw\n" in realtimeconf.res_pgsql_conf(link, site="waw")
    assert "dbappname" not in realtimeconf.res_pgsql_conf(link)
    assert AgentUpdate(site=None).site is None and QueueUpdate(site=None).site is None
