"""Several Asterisk nodes on one PostgreSQL (issue 15), all real processes on loopback:
two instances of the development PBX root with shared contacts (asterisk.ps_contacts),
SIPp phones. A phone registered through one node is reached by a call placed on the
other; sipprov ends registrations on every node at once.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from sipprov import pbx as pbx_mod
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate, AgentUpdate, QueueAssignment, QueueCreate
from sipprov.apply import nodestatus
from sipprov.apply.ami import AmiClient
from sipprov.db.transaction import run
from sipprov.directory import queues
from sipprov.http.agents import registration
from sipprov.pbx import front as front_mod
from sipprov.pbx import sipp
from tests.cluster_fixtures import Cluster
from tests.faults.service import SIPPROV

pytestmark = pytest.mark.pbx

HOST = "127.0.0.1"
APPLY_TIMEOUT = 60.0


def _letters(n: int) -> str:
    return "".join("abcdefghij"[int(d)] for d in str(n))


async def _create(c: Cluster, n: int, **kw) -> agents.AgentCreated:
    body = AgentCreate(first_name="Agent", last_name=f"Node{_letters(n)}",
                       email=f"node{n}@example.com", login=f"node{n}", **kw)
    created = await run(c.pool, agents.create_agent, c.cfg, body, "test")
    assert created.sip is not None
    return created


async def _applied(c: Cluster, version: int | None) -> None:
    assert version is not None
    ok = await c.applier.wait_applied(version, APPLY_TIMEOUT)
    assert ok, f"version {version} not applied: {c.applier.status()}"


async def _rows(c: Cluster, aor: str) -> list[asyncpg.Record]:
    async with c.pool.acquire() as conn:
        return await conn.fetch(
            "SELECT id, uri, reg_server, path FROM asterisk.ps_contacts"
            " WHERE id LIKE $1 || '^3B@%'", aor)


async def _node_contacts(c: Cluster, node: int, aor: str) -> list[dict[str, str]]:
    async with AmiClient(c.nodes[node].asterisk) as ami:
        return [x for x in await ami.pjsip_contacts() if x.get("Aor") == aor]


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_registration_through_one_node_is_seen_by_every_node(cluster: Cluster) -> None:
    a = await _create(cluster, 1)
    await _applied(cluster, a.config_version)
    assert a.sip
    reg = await sipp.register(HOST, cluster.sip_port(1), a.sip.username, a.sip.password,
                              expires=600)
    assert reg.ok, reg
    (row,) = await _rows(cluster, a.sip.username)
    assert row["reg_server"] == f"sipprov-{cluster.nodes[1].pbx.instance}"
    assert row["uri"].startswith(f"sip:{a.sip.username}@127.0.0.1:")
    for node in (0, 1):
        (shown,) = await _node_contacts(cluster, node, a.sip.username)
        assert shown["Uri"] == row["uri"]
    # /status counts it for the node that took it (reg_server), not for both; the CLI's
    # probe of each node's AMI agrees
    entries = await nodestatus.report(cluster.cfg, cluster.pool,
                                      live=cluster.applier.status()["nodes"])
    probed = await nodestatus.report(cluster.cfg, cluster.pool,
                                     probed=await nodestatus.probe_all(cluster.cfg))
    for got in (entries, probed):
        assert [e["system_name"] for e in got] == [
            f"sipprov-{n.pbx.instance}" for n in cluster.nodes]
        assert [e["registered"] for e in got] == [0, 1], got
    await sipp.unregister(HOST, cluster.sip_port(1), a.sip.username, a.sip.password)
    assert await _rows(cluster, a.sip.username) == []


async def test_call_placed_on_node_1_reaches_a_phone_registered_via_node_2(
        cluster: Cluster) -> None:
    """The issue's test: A's SIPp registered via node 1, B's SIPp UAS registered via
    node 2; A calls B's extension on node 1; B answers."""
    a = await _create(cluster, 1)
    b = await _create(cluster, 2)
    await _applied(cluster, b.config_version)
    assert a.sip and b.sip
    assert (await sipp.register(HOST, cluster.sip_port(0), a.sip.username, a.sip.password,
                                expires=600)).ok
    async with await sipp.start_uas(HOST, cluster.sip_port(1), b.sip.username,
                                    b.sip.password, timeout=25) as phone:
        (row,) = await _rows(cluster, b.sip.username)
        assert row["reg_server"] == f"sipprov-{cluster.nodes[1].pbx.instance}"
        result = await sipp.call(HOST, cluster.sip_port(0), a.sip.username, a.sip.password,
                                 b.sip.username, hold_s=0.3, timeout=20)
        assert result.ok, result
        assert await phone.wait(10), "B's phone did not answer the call from node 1"
    await sipp.unregister(HOST, cluster.sip_port(0), a.sip.username, a.sip.password)
    await sipp.unregister(HOST, cluster.sip_port(1), b.sip.username, b.sip.password)


async def test_rotation_delete_and_deactivation_end_shared_registrations(
        cluster: Cluster) -> None:
    """The applier (on node 1) ends registrations made through node 2: the rows go, so
    no node reaches the phone any more."""
    a = await _create(cluster, 1)
    b = await _create(cluster, 2)
    c = await _create(cluster, 3)
    await _applied(cluster, c.config_version)
    assert a.sip and b.sip and c.sip
    for s in (a.sip, b.sip, c.sip):
        assert (await sipp.register(HOST, cluster.sip_port(1), s.username, s.password,
                                    expires=600)).ok
    await _until(lambda: cluster.phones.connected)

    new_sip, version = await run(cluster.pool, agents.rotate_sip_password, cluster.cfg,
                                 a.agent.id, None, "test")
    await _applied(cluster, version)
    assert await _rows(cluster, a.sip.username) == []
    assert await _node_contacts(cluster, 1, a.sip.username) == []
    assert await _rows(cluster, b.sip.username), "another agent's registration went too"
    old = await sipp.register(HOST, cluster.sip_port(1), a.sip.username, a.sip.password)
    assert not old.ok and old.status in (401, 403), old
    assert (await sipp.register(HOST, cluster.sip_port(1), new_sip.username,
                                new_sip.password)).ok

    version = await run(cluster.pool, agents.delete_agent, cluster.cfg, b.agent.id, "test")
    await _applied(cluster, version)
    assert await _rows(cluster, b.sip.username) == []

    off = await run(cluster.pool, agents.update_agent, cluster.cfg, c.agent.id,
                    AgentUpdate(active=False), "test")
    await _applied(cluster, off.config_version)
    assert await _rows(cluster, c.sip.username) == []
    assert registration(cluster.phones, c.agent.extension) == {"registered": False,
                                                               "contacts": []}
    await sipp.unregister(HOST, cluster.sip_port(1), new_sip.username, new_sip.password)


# ----------------------------------------------------------------------------- the front


async def _dispatcher(front: front_mod.Front, uri: str, state: str,
                      timeout: float = 15.0) -> None:
    """Wait until the front's dispatcher has `uri` in `state` ("A" active, "I"
    inactive): what its OPTIONS probing concluded."""
    deadline = time.monotonic() + timeout
    while True:
        flags = (await asyncio.to_thread(front_mod.destinations, front)).get(uri, "")
        if flags.startswith(state):
            return
        assert time.monotonic() < deadline, f"{uri} is {flags!r}, not {state!r}"
        await asyncio.sleep(0.2)


async def test_phones_register_and_are_called_through_the_front(
        cluster: Cluster, front: front_mod.Front) -> None:
    a = await _create(cluster, 1)
    b = await _create(cluster, 2)
    await _applied(cluster, b.config_version)
    assert a.sip and b.sip
    for node in cluster.nodes:
        await _dispatcher(front, f"sip:127.0.0.1:{node.pbx.sip_port}", "A")
    assert (await sipp.register(HOST, front.port, a.sip.username, a.sip.password,
                                expires=600)).ok
    async with await sipp.start_uas(HOST, front.port, b.sip.username, b.sip.password,
                                    timeout=25) as phone:
        (row,) = await _rows(cluster, b.sip.username)
        # the node stored the front's Path, with the phone's real address in it
        assert f"127.0.0.1:{front.port}" in row["path"], row
        assert f"received=sip:127.0.0.1:{phone.port}" in row["path"], row
        result = await sipp.call(HOST, front.port, a.sip.username, a.sip.password,
                                 b.sip.username, hold_s=0.3, timeout=20)
        assert result.ok, result
        assert await phone.wait(10), "B's phone did not answer through the front"
    await sipp.unregister(HOST, front.port, a.sip.username, a.sip.password)
    await sipp.unregister(HOST, front.port, b.sip.username, b.sip.password)


async def test_a_killed_node_is_taken_out_and_phones_come_back_through_the_other(
        cluster: Cluster, front: front_mod.Front) -> None:
    """SIGKILL the node a phone registered through: the front's probing marks it
    inactive, the phone re-registers through the front (so through the other node),
    and a call placed through the front reaches it."""
    a = await _create(cluster, 1)
    b = await _create(cluster, 2)
    await _applied(cluster, b.config_version)
    assert a.sip and b.sip
    uris = [f"sip:127.0.0.1:{n.pbx.sip_port}" for n in cluster.nodes]
    for uri in uris:
        await _dispatcher(front, uri, "A")
    phone = await sipp.start_uas(HOST, front.port, b.sip.username, b.sip.password,
                                 timeout=60)
    (row,) = await _rows(cluster, b.sip.username)
    dead = cluster.node_of(row["reg_server"])
    alive = 1 - dead
    await asyncio.to_thread(pbx_mod.kill, cluster.nodes[dead])
    try:
        await _dispatcher(front, uris[dead], "I")
        await _dispatcher(front, uris[alive], "A", timeout=1)
        # the phone's next REGISTER (same address) goes to the node that is up
        port = phone.port
        await phone.stop()
        phone.cleanup()
        t0 = time.monotonic()
        phone = await sipp.start_uas(HOST, front.port, b.sip.username, b.sip.password,
                                     local_port=port, timeout=30)
        assert time.monotonic() - t0 < 5, "the REGISTER waited for the dead node"
        (row,) = await _rows(cluster, b.sip.username)
        assert cluster.node_of(row["reg_server"]) == alive, row
        result = await sipp.call(HOST, front.port, a.sip.username, a.sip.password,
                                 b.sip.username, hold_s=0.3, timeout=20)
        assert result.ok, result
        assert await phone.wait(10), "the call did not reach the re-registered phone"
    finally:
        await phone.stop()
        phone.cleanup()
        await cluster.restart(dead)
    await _dispatcher(front, uris[dead], "A")


async def test_a_queue_on_node_1_rings_a_member_registered_via_node_2(cluster: Cluster) -> None:
    """The device state app_queue rings by (Custom:sipprov<ext>, kept by the phone
    tracker on every node) follows a registration made through the other node; the
    call then finds the member's contact in the shared table."""
    _, version = await run(cluster.pool, queues.create_queue, cluster.cfg,
                           QueueCreate(name="shared", number=990), "test")
    caller = await _create(cluster, 1)
    member = await _create(cluster, 2, queues=[QueueAssignment(name="shared")])
    await _applied(cluster, member.config_version)
    assert caller.sip and member.sip
    iface = f"PJSIP/{member.agent.extension}"
    async with await sipp.start_uas(HOST, cluster.sip_port(1), member.sip.username,
                                    member.sip.password, timeout=30) as phone:
        deadline = time.monotonic() + 15
        async with AmiClient(cluster.nodes[0].asterisk) as ami:
            while True:  # 1 = not in use, on node 1
                status = {m.interface: m.status
                          for m in (await ami.queue_status("shared")).get("shared", [])}
                if status.get(iface) == 1:
                    break
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.1)
        result = await sipp.call(HOST, cluster.sip_port(0), caller.sip.username,
                                 caller.sip.password, "990", hold_s=0.3, timeout=20)
        assert await phone.wait(10), f"the queue on node 1 did not ring the member ({result})"
        assert result.ok, result
    await sipp.unregister(HOST, cluster.sip_port(1), member.sip.username, member.sip.password)


async def test_cli_front_up_status_down(nodes: list, tmp_path: Path) -> None:
    """`sipprov pbx front-up|front-status|front-down` in front of [[asterisk.nodes]]."""
    port = sipp.free_udp_port()
    conf = tmp_path / "sipprov.toml"
    lines = ["[pbx]", f"front_port = {port}", "[asterisk]"]
    for n in nodes:
        lines += ["[[asterisk.nodes]]", f'name = "{n.pbx.instance}"',
                  f"ami_port = {n.asterisk.ami_port}", f'sip_server = "{n.asterisk.sip_server}"',
                  f"config_dir = {json.dumps(str(n.generated_dir))}"]
    conf.write_text("\n".join(lines) + "\n")

    def cli(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SIPPROV, "-c", str(conf), "pbx", action], capture_output=True,
                              text=True, timeout=60)

    folder = nodes[0].pbx.instance_dir.parent / f"front-{port}"
    try:
        up = await asyncio.to_thread(cli, "front-up")
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{port}" in up.stdout
        deadline = time.monotonic() + 15
        while True:  # the probing finds both nodes alive
            st = await asyncio.to_thread(cli, "front-status")
            if st.stdout.count(": active") == 2:
                break
            assert time.monotonic() < deadline, st.stdout
            await asyncio.sleep(0.3)
        for n in nodes:
            assert f"sip:127.0.0.1:{n.pbx.sip_port}: active" in st.stdout
        down = await asyncio.to_thread(cli, "front-down")
        assert down.returncode == 0 and front_mod.running(folder) is None
        gone = await asyncio.to_thread(cli, "front-status")
        assert gone.returncode == 3 and "not running" in gone.stdout
    finally:
        still = front_mod.running(folder)
        if still is not None:
            front_mod.stop(still)
        shutil.rmtree(folder, ignore_errors=True)
