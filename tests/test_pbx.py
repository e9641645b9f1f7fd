"""Integration tests against the real Asterisk 22 (test instance) with SIPp.

Config is written by hand here (not by the renderer) to pin down what Asterisk itself
accepts: digest-only credentials (password_digest, no plaintext), registration, a call
through the dialplan, static queue members with penalties, and PBX lifecycle.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import time

import pytest

from sipprov import pbx as pbx_mod
from sipprov.apply.ami import AmiClient
from sipprov.config import Config
from sipprov.pbx import sipp
from tests.pbx_fixtures import write_generated

pytestmark = pytest.mark.pbx

PASSWORDS = {"101": "Corr3ct-horse-101", "102": "Batt3ry-staple-102"}
HOST = "127.0.0.1"


def _digest(algorithm: str, user: str, realm: str, password: str) -> str:
    fn = hashlib.md5 if algorithm == "MD5" else hashlib.sha256
    return fn(f"{user}:{realm}:{password}".encode()).hexdigest()


def _endpoint(cfg: Config, user: str, *, sha256: bool = False,
              algorithms_uas: str | None = None) -> str:
    realm = cfg.asterisk.sip_realm
    password = PASSWORDS[user]
    lines = [
        f"[{user}-auth]", "type=auth", "auth_type=digest", f"username={user}",
        f"realm={realm}",
        f"password_digest=MD5:{_digest('MD5', user, realm, password)}",
    ]
    if sha256:
        lines.append(f"password_digest=SHA-256:{_digest('SHA-256', user, realm, password)}")
    if algorithms_uas:
        lines.append(f"supported_algorithms_uas={algorithms_uas}")
    lines += [
        "", f"[{user}]", "type=aor", "max_contacts=1", "remove_existing=yes",
        "", f"[{user}]", "type=endpoint", f"auth={user}-auth", f"aors={user}",
        f"context={cfg.asterisk.internal_context}", f"transport={cfg.asterisk.transport}",
        "disallow=all", "allow=ulaw,alaw", "direct_media=no", "rtp_symmetric=yes",
        "force_rport=yes", "rewrite_contact=yes", "",
    ]
    return "\n".join(lines) + "\n"


async def _load_endpoints(cfg: Config, ami: AmiClient, text: str) -> None:
    path = write_generated(cfg, "pjsip.conf", text)
    for password in PASSWORDS.values():
        assert password not in path.read_text(), "a plaintext password reached the config"
    assert path.stat().st_mode & 0o777 == 0o640
    await ami.reload("res_pjsip.so")


async def test_digest_registration(pbx, pbx_config: Config, ami: AmiClient) -> None:
    cfg = pbx_config
    await _load_endpoints(cfg, ami, _endpoint(cfg, "101", sha256=True))
    assert await ami.pjsip_endpoint_exists("101")
    assert not await ami.pjsip_endpoint_exists("109")
    assert "101" in await ami.pjsip_endpoints()
    # Asterisk 22 keeps both digests of the auth section
    shown = await ami.command("pjsip show auth 101-auth")
    assert re.search(r"password_digest\s*:\s*MD5:[0-9a-f]{32},SHA-256:[0-9a-f]{64}", shown)

    good = await sipp.register(HOST, cfg.pbx.sip_port, "101", PASSWORDS["101"],
                               realm=cfg.asterisk.sip_realm)
    assert good.ok and good.status == 200, good
    assert good.realm == cfg.asterisk.sip_realm
    assert "101/sip:101@127.0.0.1" in await ami.command("pjsip show aor 101")

    bad = await sipp.register(HOST, cfg.pbx.sip_port, "101", "Wrong-password-101")
    assert not bad.ok and bad.status in (401, 403), bad
    unknown = await sipp.register(HOST, cfg.pbx.sip_port, "109", "Whatever-pass-109")
    assert not unknown.ok and unknown.status in (401, 403), unknown
    # the realm does not give away which accounts exist (pjsip.conf default_realm)
    assert unknown.realm == cfg.asterisk.sip_realm

    # the failed attempt is in the instance's security log
    security = cfg.pbx.instance_dir / "log/security.log"
    for _ in range(20):
        if 'AccountID="101"' in security.read_text() and "ChallengeResponseFailed" in \
                security.read_text():
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("no ChallengeResponseFailed for 101 in the security log")

    gone = await sipp.unregister(HOST, cfg.pbx.sip_port, "101", PASSWORDS["101"])
    assert gone.ok, gone
    assert "101/sip:101@127.0.0.1" not in await ami.command("pjsip show aor 101")


def _sha256_register(port: int, user: str, password: str, realm: str) -> str:
    """A minimal SIP client doing RFC 8760 SHA-256 digest (SIPp only speaks MD5)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(3)
        lport = sock.getsockname()[1]
        uri = f"sip:{HOST}:{port}"

        def request(cseq: int, auth: str = "") -> bytes:
            return (
                f"REGISTER {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {HOST}:{lport};rport;branch=z9hG4bK-sha-{lport}-{cseq}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{user}@{HOST}>;tag=sha{lport}\r\n"
                f"To: <sip:{user}@{HOST}>\r\nCall-ID: sha256-{lport}@{HOST}\r\n"
                f"CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{HOST}:{lport}>\r\n"
                f"{auth}Expires: 60\r\nContent-Length: 0\r\n\r\n").encode()

        sock.sendto(request(1), (HOST, port))
        challenge = sock.recv(65535).decode()
        header = next(line for line in challenge.split("\r\n")
                      if line.startswith("WWW-Authenticate:") and "SHA-256" in line)
        nonce = re.search(r'nonce="([^"]+)"', header).group(1)
        opaque = re.search(r'opaque="([^"]+)"', header).group(1)

        def h(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()

        response = h(f"{h(f'{user}:{realm}:{password}')}:{nonce}:00000001:c0ffee:auth:"
                     f"{h(f'REGISTER:{uri}')}")
        auth = (f'Authorization: Digest username="{user}",realm="{realm}",nonce="{nonce}",'
                f'uri="{uri}",response="{response}",algorithm=SHA-256,cnonce="c0ffee",'
                f'qop=auth,nc=00000001,opaque="{opaque}"\r\n')
        sock.sendto(request(2, auth), (HOST, port))
        return sock.recv(65535).decode().split("\r\n", 1)[0]


async def test_sha256_digest_registration(pbx, pbx_config: Config, ami: AmiClient) -> None:
    """With SHA-256 offered as well, SHA-256 clients and MD5 clients (SIPp) both register."""
    cfg = pbx_config
    realm = cfg.asterisk.sip_realm
    await _load_endpoints(cfg, ami, _endpoint(cfg, "101", sha256=True,
                                              algorithms_uas="MD5,SHA-256"))
    line = await asyncio.to_thread(_sha256_register, cfg.pbx.sip_port, "101",
                                   PASSWORDS["101"], realm)
    assert line == "SIP/2.0 200 OK"
    line = await asyncio.to_thread(_sha256_register, cfg.pbx.sip_port, "101",
                                   "Wrong-password-101", realm)
    assert line == "SIP/2.0 401 Unauthorized"
    md5 = await sipp.register(HOST, cfg.pbx.sip_port, "101", PASSWORDS["101"])
    assert md5.ok, md5


async def test_call_between_agents(pbx, pbx_config: Config, ami: AmiClient) -> None:
    cfg = pbx_config
    await _load_endpoints(cfg, ami, _endpoint(cfg, "101") + _endpoint(cfg, "102"))
    write_generated(cfg, "extensions.conf", (
        f"[{cfg.asterisk.internal_context}]\n"
        "exten => 102,1,Dial(PJSIP/102,10)\n"
        " same => n,Hangup()\n"
    ))
    await ami.reload("pbx_config.so")
    assert "102" in await ami.command(f"dialplan show {cfg.asterisk.internal_context}")

    async with await sipp.start_uas(HOST, cfg.pbx.sip_port, "102", PASSWORDS["102"],
                                    timeout=20) as phone:
        result = await sipp.call(HOST, cfg.pbx.sip_port, "101", PASSWORDS["101"], "102",
                                 hold_s=0.3, timeout=15)
        assert result.ok and result.status == 200, result
        assert await phone.wait(10), "agent 102 did not get the call and its BYE"

    missing = await sipp.call(HOST, cfg.pbx.sip_port, "101", PASSWORDS["101"], "199",
                              hold_s=0.1, timeout=10)
    assert not missing.ok and missing.status == 404, missing
    refused = await sipp.call(HOST, cfg.pbx.sip_port, "101", "Wrong-password-101", "102",
                              hold_s=0.1, timeout=10)
    assert not refused.ok and refused.status in (401, 403, 407), refused


async def test_register_many(pbx, pbx_config: Config, ami: AmiClient) -> None:
    cfg = pbx_config
    await _load_endpoints(cfg, ami, _endpoint(cfg, "101") + _endpoint(cfg, "102"))
    result = await sipp.register_many(
        HOST, cfg.pbx.sip_port,
        [("101", PASSWORDS["101"]), ("102", PASSWORDS["102"]), ("102", "Wrong-pass-102")],
        rate=50)
    assert (result.ok, result.failed) == (2, 1), result


async def test_queue_member_penalty(pbx, pbx_config: Config, ami: AmiClient) -> None:
    cfg = pbx_config
    write_generated(cfg, "queues.conf", (
        "[support]\nstrategy = ringall\nmember => PJSIP/101,2,Agent 101\n"
    ))
    await ami.reload("app_queue.so")
    queues = await ami.queue_status("support")
    members = queues["support"]
    assert [(m.interface, m.name, m.penalty, m.membership) for m in members] == [
        ("PJSIP/101", "Agent 101", 2, "static")]
    assert "support" in await ami.queue_status()


def _challenge_time(port: int, user: str, timeout: float) -> float | None:
    """Seconds until a bare REGISTER is answered (401 challenge); None: no answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        lport = sock.getsockname()[1]
        call_id = f"overload-{lport}-{time.monotonic_ns()}@{HOST}"
        sock.sendto((
            f"REGISTER sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{lport};rport;branch=z9hG4bK-ov-{lport}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@{HOST}>;tag=ov{lport}\r\n"
            f"To: <sip:{user}@{HOST}>\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{user}@{HOST}:{lport}>\r\nExpires: 60\r\n"
            "Content-Length: 0\r\n\r\n").encode(), (HOST, port))
        t0 = time.monotonic()
        while (left := timeout - (time.monotonic() - t0)) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535).decode(errors="replace")
            except TimeoutError:
                return None
            if call_id in data and not data.startswith("SIP/2.0 1"):
                return time.monotonic() - t0
        return None


async def _devicestate_backlog(ami: AmiClient) -> int:
    """The longest queue of the device-state stasis subscribers (app_queue's among them)."""
    depth = 0
    for line in (await ami.command("core show taskprocessors")).splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].startswith("stasis/m:devicestate") and fields[2].isdigit():
            depth = max(depth, int(fields[2]))
    return depth


async def test_register_answered_while_queue_members_flood_device_state(
        pbx, pbx_config: Config, ami: AmiClient) -> None:
    """Adding thousands of static queue members floods app_queue's device-state
    subscriber (every new member publishes device-state changes, and app_queue handles
    each one by walking every member of every queue). With pjsip.conf's default
    `taskprocessor_overload_trigger = global`, PJSIP ignores new requests while any
    taskprocessor is over its high-water mark: at 15,000 members REGISTERs went
    unanswered for about a minute. The PBX sets `pjsip_only`: REGISTER is answered
    all through the backlog."""
    cfg = pbx_config
    settings = await ami.command("pjsip show settings")
    assert re.search(r"taskprocessor_overload_trigger\s*:\s*pjsip_only", settings), settings
    await _load_endpoints(cfg, ami, _endpoint(cfg, "101"))
    members, per_queue = 6000, 600
    write_generated(cfg, "queues.conf", "".join(
        f"[flood{q}]\nstrategy = ringall\n" + "".join(
            f"member => PJSIP/{70000 + q * per_queue + i},0,Agent {i}\n"
            for i in range(per_queue)) + "\n"
        for q in range(members // per_queue)))
    try:
        await ami.reload("app_queue.so")
        backlog = await _devicestate_backlog(ami)
        answered = await asyncio.to_thread(_challenge_time, cfg.pbx.sip_port, "101", 3.0)
        still = await _devicestate_backlog(ami)
        # the flood is real: a device-state subscriber is over its high-water mark (500)
        assert max(backlog, still) >= 500, (backlog, still)
        assert answered is not None, "REGISTER unanswered during the device-state backlog"
        good = await sipp.register(HOST, cfg.pbx.sip_port, "101", PASSWORDS["101"])
        assert good.ok, good
    finally:
        write_generated(cfg, "queues.conf", "")
        await ami.reload("app_queue.so")
        deadline = time.monotonic() + 120
        while await _devicestate_backlog(ami) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)


async def test_ami_errors(pbx, pbx_config: Config, ami: AmiClient) -> None:
    import dataclasses

    from sipprov.apply.ami import AmiError

    assert (await ami.version()).startswith("22.")
    await ami.ping()
    with pytest.raises(AmiError, match="No such module"):
        await ami.reload("res_no_such_module.so")
    wrong = AmiClient(dataclasses.replace(pbx_config.asterisk, ami_secret="not-the-secret"))
    with pytest.raises(AmiError, match="refused Login"):
        await wrong.connect()
    assert not wrong.connected


def test_lifecycle(pbx, pbx_config: Config) -> None:
    """Runs last in this file: it restarts the session's PBX and leaves it running."""
    cfg = pbx_config
    st = pbx_mod.status(cfg)
    assert st.root_built and st.running and st.pid
    assert st.version.startswith("Asterisk 22")
    assert (st.ami_port, st.sip_port, st.instance) == (
        cfg.asterisk.ami_port, cfg.pbx.sip_port, cfg.pbx.instance)

    pbx_mod.start(cfg)  # already running: nothing happens
    assert pbx_mod.status(cfg).pid == st.pid
    assert "Asterisk 22" in pbx_mod.rx(cfg, "core show version")

    t0 = time.monotonic()
    pbx_mod.stop(cfg)
    pbx_mod.stop(cfg)  # idempotent
    assert not pbx_mod.status(cfg).running
    with pytest.raises(pbx_mod.PbxError):
        pbx_mod.rx(cfg, "core show version")
    pbx_mod.start(cfg)
    assert pbx_mod.status(cfg).running
    restart = time.monotonic() - t0

    # a crash: SIGKILL, then start recovers (stale socket and pid file are dealt with)
    pid = pbx_mod.status(cfg).pid
    pbx_mod.kill(cfg)
    assert not pbx_mod.status(cfg).running
    pbx_mod.start(cfg)
    st2 = pbx_mod.status(cfg)
    assert st2.running and st2.pid != pid
    assert "101" in pbx_mod.rx(cfg, "pjsip show endpoints")  # config came back from files
    assert restart < 15, f"stop+start took {restart:.1f} s"
