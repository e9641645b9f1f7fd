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


def test_the_console_form_sets_and_refuses_a_site() -> None:
    from multidict import MultiDict, MultiDictProxy

    from sipprov.web import agentform

    def posted(site: str) -> agentform.Posted:
        return agentform.read_create(MultiDictProxy(MultiDict(
            first_name="Jan", last_name="Kowalski", email="j@example.com", role="agent",
            language="pl", account_type="standard", priority="1", outbound_mode="manual",
            site=site)), [], lambda t: t, lambda e: e.message)

    good = posted(" waw ")
    assert good.errors == {} and AgentCreate(**good.data).site == "waw"
    assert posted("").errors == {} and AgentCreate(**posted("").data).site is None
    assert set(posted("a;b").errors) == {"site"}


def test_realtime_config_for_a_node_of_a_site(tmp_path) -> None:
    import subprocess

    from tests.faults.service import SIPPROV

    conf = tmp_path / "c.toml"
    conf.write_text(
        '[database]\ndsn = "postgresql://sipprov@127.0.0.1:5432/sipprov"\n'
        '[asterisk]\nrealtime_db_password = "secret-word"\n'
        '[[asterisk.nodes]]\nname = "ast1"\nami_port = 5038\n'
        '[[asterisk.nodes]]\nname = "ast2"\nami_port = 5039\nsite = "hcm"\n')

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SIPPROV, "-c", str(conf), "asterisk", "realtime-config", *args],
                              capture_output=True, text=True, timeout=60)

    two = cli("--node", "ast2")
    assert two.returncode == 0, two.stderr
    assert "dbappname = sipprov-site:hcm\n" in two.stdout and "secret-word" not in two.stdout
    one = cli("--node", "ast1")
    assert one.returncode == 0 and "dbappname" not in one.stdout
    bad = cli("--node", "ast3")
    assert bad.returncode == 2 and "--node" in bad.stderr and "ast1, ast2" in bad.stderr
    assert bad.stdout == ""
