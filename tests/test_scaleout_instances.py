"""Several `sipprov serve` instances on one PostgreSQL (issue 15, docs/scale-out.md):
real serve processes on one database and the tests' PBX.

- Login rate-limit and lockout state is in PostgreSQL: a login locked out through
  instance A is refused (429 + Retry-After) through instance B, and after a restart.
- One applier leader: the leader SIGKILLed while agents are created through the
  follower; the follower takes over within the documented bound and every agent
  reaches Asterisk (AMI, SIPp registrations); ?wait=applied works on a follower; the
  CLI's `sipprov apply` still works next to the leader.
- /metrics (Prometheus text, parsed with prometheus_client.parser) after real requests,
  an apply and a SIPp registration: the counters and gauges moved, routes are labelled
  by their canonical path; a token is needed.
- A leader cut off from PostgreSQL (a proxy that stops forwarding, then closes the
  upstream side as PostgreSQL's keepalive would) steps down before the lease is free.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipprov.apply.leadership import (
    KEEPALIVE_COUNT,
    KEEPALIVE_INTERVAL_S,
    STEP_DOWN_S,
    server_settings,
)
from sipprov.config import ApplierConfig, Config
from sipprov.pbx import sipp
from tests.api_helpers import agent_body, call
from tests.faults.pbxutil import HOST, clean_asterisk, config_for, endpoints, ensure_running
from tests.faults.service import (
    SIPPROV,
    Serve,
    admin_token,
    free_tcp_port,
    status_when,
    write_config,
)
from tests.pgproxy import PgProxy

LOGIN = "/api/v1/auth/login"
# docs/scale-out.md: a SIGKILLed leader's lease is taken over within leader_poll_s (0.5 s)
# plus the new applier's start; this is the bound the tests hold it to.
TAKEOVER_BOUND_S = 3.0


@pytest.fixture
async def svc_cfg(pbx, pbx_config: Config, db_dsn: str) -> AsyncIterator[Config]:
    cfg = config_for(pbx_config, db_dsn)
    yield cfg
    await ensure_running(pbx_config)
    await clean_asterisk(pbx_config)


@pytest.fixture
async def token(db_dsn: str) -> str:
    return await admin_token(db_dsn, "scaleout")


def _serve(cfg: Config, tmp_path: Path, name: str, **overrides: dict[str, Any]) -> Serve:
    port = free_tcp_port()
    path = write_config(tmp_path / f"{name}.toml", cfg, port, **overrides)
    return Serve(path, port, tmp_path, name)


@pytest.mark.pbx
async def test_lockout_holds_across_instances_and_restarts(
        svc_cfg: Config, token: str, tmp_path: Path) -> None:
    limits = {"security": {"login_free_attempts": 1, "login_lockout_attempts": 2,
                           "login_lockout_s": 600}}
    a = await _serve(svc_cfg, tmp_path, "a", **limits).start()
    b = await _serve(svc_cfg, tmp_path, "b", **limits).start()
    try:
        async with a.session(token) as via_a, b.session(token) as via_b:
            r = await call(via_a, "POST", "/api/v1/agents",
                           json=agent_body(password="Correct-Horse-77"))
            assert r.status == 201, r.body
            good = {"login": r.body["login"], "password": "Correct-Horse-77"}
            bad = {**good, "password": "Wrong-Guess-00"}
            assert (await call(via_a, "POST", LOGIN, json=bad)).status == 401
            # The first failure slows the login on B too (1 s), even the right password.
            r = await call(via_b, "POST", LOGIN, json=good)
            assert r.status == 429 and r.headers["Retry-After"] == "1", r.body
            # Past the slow-down, the second failure (through B) locks it out everywhere.
            for _ in range(50):
                r = await call(via_b, "POST", LOGIN, json=bad)
                if r.status != 429:
                    break
                await asyncio.sleep(0.1)  # polling for the 1 s delay to pass
            assert r.status == 401, r.body
            for http in (via_a, via_b):
                r = await call(http, "POST", LOGIN, json=good)
                assert r.status == 429 and r.body["error"]["code"] == "rate_limited"
                assert 590 <= int(r.headers["Retry-After"]) <= 600
    finally:
        assert await a.stop() == 0
        assert await b.stop() == 0
    again = await _serve(svc_cfg, tmp_path, "again", **limits).start()
    try:
        async with again.session(token) as http:
            r = await call(http, "POST", LOGIN, json=good)
            assert r.status == 429 and 500 <= int(r.headers["Retry-After"]) <= 600
    finally:
        assert await again.stop() == 0


# --- leadership ---------------------------------------------------------------------------


async def _health(serve: Serve) -> dict[str, Any] | None:
    try:
        async with aiohttp.ClientSession() as http:
            r = await call(http, "GET", serve.url + "/api/v1/health")
            return r.body if isinstance(r.body, dict) else None
    except aiohttp.ClientError:
        return None


async def _leader_of(*serves: Serve, timeout: float = 15.0) -> Serve:
    """The one instance that says it leads (exactly one must)."""
    deadline = time.monotonic() + timeout
    while True:
        says = [s for s in serves if (h := await _health(s)) and h["leader"]]
        if len(says) == 1:
            return says[0]
        assert len(says) < 2, "two instances lead at once"
        if time.monotonic() > deadline:
            raise AssertionError("no instance became the leader")
        await asyncio.sleep(0.05)


async def _takeover_time(follower: Serve, since: float, timeout: float = 30.0) -> float:
    """Seconds from `since` until `follower` says it leads."""
    while time.monotonic() - since < timeout:
        h = await _health(follower)
        if h is not None and h["leader"]:
            return time.monotonic() - since
        await asyncio.sleep(0.02)
    raise AssertionError(f"{follower.url} did not take over within {timeout} s")


@pytest.mark.pbx
async def test_leader_killed_follower_takes_over_and_nothing_is_lost(
        svc_cfg: Config, token: str, tmp_path: Path, pool: asyncpg.Pool) -> None:
    a = await _serve(svc_cfg, tmp_path, "a", applier={"instance_name": "node-a"}).start()
    b = await _serve(svc_cfg, tmp_path, "b", applier={"instance_name": "node-b"}).start()
    try:
        leader = await _leader_of(a, b)
        follower = b if leader is a else a
        async with follower.session(token) as http:
            st = await call(http, "GET", "/api/v1/status")
            assert st.body["instance"]["leader"] is False
            assert st.body["instance"]["id"] in ("node-a", "node-b")
            assert st.body["instance"]["leader_id"] == (await _health(leader))["instance"]
            # ?wait=applied through the follower: it reads config_state, the leader applies.
            r = await call(http, "POST", "/api/v1/agents?wait=applied", json=agent_body(1))
            assert r.status == 201, r.body
            created = [r.body]

            async def create(n: int) -> None:
                r = await call(http, "POST", "/api/v1/agents", json=agent_body(n))
                assert r.status == 201, r.body
                created.append(r.body)

            for n in range(2, 6):
                await create(n)
            killed_at = time.monotonic()
            leader.signal(signal.SIGKILL)
            # creates go on through the follower while it takes over
            creating = asyncio.gather(*(create(n) for n in range(6, 16)))
            takeover = await _takeover_time(follower, killed_at)
            await creating
            assert await leader.wait_exit(10) == -signal.SIGKILL
            r = await call(http, "POST", "/api/v1/agents?wait=applied", json=agent_body(16))
            assert r.status == 201, r.body
            created.append(r.body)
            applied_after = time.monotonic() - killed_at
            st = await status_when(http, lambda b: b["config"]["pending"] == 0
                                   and b["instance"]["leader"] and b["asterisk"]["connected"], 30)
            assert st.body["instance"]["leader_id"] == st.body["instance"]["id"]
        assert len(created) == 16
        have = await endpoints(svc_cfg)
        assert {str(c["extension"]) for c in created} <= have
        for agent in (created[0], created[8], created[-1]):
            sip = agent["credentials"]["sip"]
            reg = await sipp.register(HOST, svc_cfg.pbx.sip_port, sip["username"],
                                      sip["password"], realm=sip["realm"])
            assert reg.ok and reg.status == 200, reg
            await sipp.register(HOST, svc_cfg.pbx.sip_port, sip["username"], sip["password"],
                                realm=sip["realm"], expires=0)  # leave no contact behind
        # the documented bound (docs/scale-out.md): leader_poll_s + the applier's start
        assert takeover < TAKEOVER_BOUND_S, takeover
        print(f"takeover {takeover:.2f} s, all applied {applied_after:.2f} s after SIGKILL")
        # `sipprov apply` (the CLI) still applies next to a running leader
        proc = await asyncio.create_subprocess_exec(
            SIPPROV, "-c", str(follower.config_path), "apply",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (out, err)
    finally:
        for s in (a, b):
            if s.running():
                assert await s.stop() == 0


@pytest.mark.pbx
async def test_leader_cut_off_from_the_database_steps_down_before_another_takes_over(
        svc_cfg: Config, token: str, tmp_path: Path) -> None:
    proxy = await PgProxy(svc_cfg.database.dsn, tmp_path / "proxy").start()
    cut_cfg = copy.deepcopy(svc_cfg)
    cut_cfg.database = dataclasses.replace(cut_cfg.database, dsn=proxy.dsn)
    a = await _serve(cut_cfg, tmp_path, "a").start()  # first: it leads, through the proxy
    b = None
    try:
        assert (await _health(a))["leader"] is True
        b = await _serve(svc_cfg, tmp_path, "b").start()
        assert (await _health(b))["leader"] is False
        lease = ApplierConfig().leader_lease_s
        # PostgreSQL ends a silent peer's session after its keepalive gives up
        idle = int(server_settings("x", ApplierConfig())["tcp_keepalives_idle"])
        keepalive_gives_up = idle + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL_S
        proxy.cut(close_after=keepalive_gives_up)
        takeover = await _takeover_time(b, proxy.cut_at or 0.0, timeout=30)
        assert proxy.lease_closed_at is not None, "the cut-off leader never stepped down"
        stepped_down = proxy.lease_closed_at - (proxy.cut_at or 0.0)
        assert proxy.upstream_closed_at is not None
        # A stopped acting as leader before PostgreSQL freed the lease for B
        assert proxy.lease_closed_at < proxy.upstream_closed_at
        assert stepped_down <= lease + STEP_DOWN_S + 0.5
        assert keepalive_gives_up <= takeover < keepalive_gives_up + TAKEOVER_BOUND_S
        assert "steps down: cannot confirm the lease" in a.output()
        assert (await _health(a))["leader"] is False
    finally:
        await proxy.close()
        if b is not None:
            assert await b.stop() == 0
        await a.kill()


# --- /metrics -----------------------------------------------------------------------------


def _parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


async def _scrape(http: aiohttp.ClientSession) -> dict:
    r = await call(http, "GET", "/metrics")
    assert r.status == 200, r.raw[:300]
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return _parse(r.raw.decode())


@pytest.mark.pbx
async def test_metrics_scraped_after_requests_and_an_apply(
        svc_cfg: Config, token: str, tmp_path: Path) -> None:
    a = await _serve(svc_cfg, tmp_path, "a", applier={"instance_name": "m-a"}).start()
    b = await _serve(svc_cfg, tmp_path, "b", applier={"instance_name": "m-b"}).start()
    try:
        leader = await _leader_of(a, b)
        follower = b if leader is a else a
        async with leader.session(token) as via_l, follower.session(token) as via_f, \
                leader.session(None) as anon:
            r = await call(anon, "GET", "/metrics")  # http.metrics_public is false
            assert r.status == 401 and r.body["error"]["code"] == "unauthorized"
            before = await _scrape(via_l)
            assert _value(before, "sipprov_leader") == 1.0
            assert _value(before, "sipprov_instance_info", name=(await _health(leader))["instance"]) == 1
            # an extension no other test registers: the phone count is ours to move
            r = await call(via_f, "POST", "/api/v1/agents?wait=applied",
                           json=agent_body(1, extension=987))
            assert r.status == 201, r.body
            agent = r.body
            phones_before = _value(await _scrape(via_l), "sipprov_registered_phones",
                                   node="default")
            assert phones_before is not None
            for _ in range(2):
                assert (await call(via_l, "GET", f"/api/v1/agents/{agent['id']}")).status == 200
            assert (await call(via_l, "GET", "/api/v1/no/such/thing")).status == 404
            sip = agent["credentials"]["sip"]
            reg = await sipp.register(HOST, svc_cfg.pbx.sip_port, sip["username"],
                                      sip["password"], realm=sip["realm"])
            assert reg.ok, reg
            try:
                deadline = time.monotonic() + 15
                while True:  # the phone tracker sees the registration through AMI events
                    after = await _scrape(via_l)
                    now = _value(after, "sipprov_registered_phones", node="default")
                    if now == phones_before + 1:
                        break
                    assert time.monotonic() < deadline, (phones_before, now)
                    await asyncio.sleep(0.1)
            finally:  # unregister: leave Asterisk's contacts as they were
                await sipp.register(HOST, svc_cfg.pbx.sip_port, sip["username"],
                                    sip["password"], realm=sip["realm"], expires=0)
            on_follower = await _scrape(via_f)

        ok = ("sipprov_applies_total", {"result": "ok"})
        assert _value(after, ok[0], **ok[1]) > (_value(before, ok[0], **ok[1]) or 0)
        assert (_value(after, "sipprov_apply_duration_seconds_count")
                > (_value(before, "sipprov_apply_duration_seconds_count") or 0))
        assert _value(after, "sipprov_config_pending_versions") == 0
        assert (_value(after, "sipprov_config_applied_version")
                == _value(after, "sipprov_config_version")
                > _value(before, "sipprov_config_version"))
        assert _value(after, "sipprov_asterisk_node_up", node="default") == 1
        assert _value(after, "sipprov_database_up") == 1
        # requests by route: the canonical path, never the raw URL
        assert _value(after, "sipprov_http_requests_total", route="/api/v1/agents/{id}",
                      method="GET", status="200") == 2
        assert _value(after, "sipprov_http_requests_total", route="unmatched",
                      method="GET", status="404") == 1
        routes = {dict(labels)["route"] for _, labels in after if "route" in dict(labels)}
        assert not [r for r in routes if f"/agents/{agent['id']}" in r or "no/such" in r]
        # the follower counted the create; it neither applies nor talks to Asterisk
        assert _value(on_follower, "sipprov_http_requests_total", route="/api/v1/agents",
                      method="POST", status="201") == 1
        assert _value(on_follower, "sipprov_leader") == 0
        assert not [k for k in on_follower if k[0] == "sipprov_asterisk_node_up"]
        assert _value(on_follower, "sipprov_config_pending_versions") == 0
    finally:
        for s in (a, b):
            assert await s.stop() == 0
