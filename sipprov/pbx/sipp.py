"""SIPp driver: real SIP registrations and calls against the PBX, for tests and benchmarks.

Every run writes its scenario and a CSV injection file into a private temp folder
(mode 0700, CSV 0600) and passes credentials through that file: SIPp's `-au '[field0]'
-ap '[field1]'` make the bare `[authentication]` keyword take them from the CSV row, so
no password is ever on a command line (visible in ps) or in a log. (SIPp 3.6.1 does not
expand `[field1]` nested inside `[authentication password=...]`; the -au/-ap defaults
are expanded per call, which is what we use.)

Each scenario logs one line per call (`OK;user;200` / `FAIL;user;401`) with SIPp's
<log> action, which is how results are read back. Every SIPp run is bounded by its
-timeout and killed if it overruns. Traffic goes to loopback only: a server_host that
does not resolve to a loopback address is refused with ValueError.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Final responses a scenario expects besides 200 (anything else aborts that call).
FAIL_CODES = (400, 401, 403, 404, 407, 408, 420, 423, 480, 481, 484, 486, 487, 488,
              500, 501, 502, 503, 504, 603)
# Values that go through SIPp's CSV (';' separates fields, newlines rows, and SIPp's
# keyword syntax uses brackets).
_FIELD_OK = re.compile(r"^[^;\[\]\r\n\x00]{1,128}$")
# Users/extensions also go into SIP URIs.
_USER_OK = re.compile(r"^[A-Za-z0-9._~!$&'()*+,=-]{1,64}$")


class SippError(RuntimeError):
    """SIPp is missing or could not run (not a SIP failure: those are results)."""


@dataclass
class RegisterResult:
    ok: bool
    # Final SIP status: 200, 401 (wrong password), 403, ...; 0 = no answer in time.
    status: int
    elapsed: float
    # The realm the server challenged with ("" if there was no challenge).
    realm: str = ""
    detail: str = ""


@dataclass
class BulkRegisterResult:
    ok: int
    failed: int
    elapsed: float
    # username -> final status (0 = no answer / aborted); failed ones only.
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class CallResult:
    # True when the call was answered (200 OK to INVITE) and hung up cleanly.
    ok: bool
    status: int
    elapsed: float
    detail: str = ""


# ----------------------------------------------------------------------------- helpers


def sipp_binary() -> str:
    """The sipp executable (Debian package sip-tester)."""
    path = shutil.which("sipp")
    if not path:
        raise SippError("sipp not found (apt-get install sip-tester)")
    return path


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free right now on host (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _check_user(name: str, what: str = "username") -> str:
    if not _USER_OK.match(name):
        raise ValueError(f"{what} {name!r} is not a plain SIP user part")
    return name


def _check_field(value: str, what: str) -> str:
    if not _FIELD_OK.match(value):
        raise ValueError(f"{what} must be 1-128 characters without ';', '[', ']' or "
                         "line breaks (SIPp injection file)")
    return value


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _write_csv(path: Path, rows: Iterable[Iterable[str]]) -> int:
    lines = ["SEQUENTIAL"]
    for row in rows:
        lines.append("".join(f"{v};" for v in row))
    _write_private(path, "\n".join(lines) + "\n")
    return len(lines) - 1


def _fail_branches(label: str = "fail") -> str:
    """Optional receives of the error codes we expect, each noting its code."""
    # SIPp wants the last of a run of receives to be mandatory.
    return "".join(
        f'  <recv response="{code}" optional="{str(code != FAIL_CODES[-1]).lower()}" '
        f'next="{label}"><action><assignstr assign_to="code" value="{code}"/></action>'
        '</recv>\n'
        for code in FAIL_CODES
    )


_REALM = ('<action><ereg regexp="realm=&quot;([^&quot;]*)&quot;" search_in="msg" '
          'check_it="false" assign_to="rall,realm"/></action>')


def _register_scenario(expires: int) -> str:
    """REGISTER, answer a 401/407 with digest auth, log OK/FAIL;user;code;realm."""
    msg = f"""
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: %d REGISTER
      Contact: %s
      %s
      Expires: {int(expires)}
      User-Agent: sipprov-sipp
      Content-Length: 0
"""
    contact = "*" if expires == 0 else "<sip:[field0]@[local_ip]:[local_port]>"
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="sipprov register">
  <nop><action><assignstr assign_to="realm" value=""/>
    <assignstr assign_to="rall" value=""/></action></nop>
  <send retrans="500"><![CDATA[{msg % (1, contact, "")}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" optional="true" next="ok"/>
  <recv response="401" auth="true" optional="true" next="auth">{_REALM}</recv>
  <recv response="407" auth="true" optional="true" next="auth">{_REALM}</recv>
{_fail_branches()}
  <label id="auth"/>
  <send retrans="500"><![CDATA[{msg % (2, contact, "[authentication]")}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" optional="true" next="ok"/>
{_fail_branches()}
  <label id="fail"/>
  <nop next="end"><action><log message="FAIL;[field0];[$code];[$realm]"/></action></nop>
  <label id="ok"/>
  <nop><action><log message="OK;[field0];200;[$realm]"/></action></nop>
  <label id="end"/>
</scenario>
"""


_SDP = """v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=sendrecv"""


_ANSWERED = '<action><log message="ANSWERED;[field0];200"/></action>'


def _call_scenario(hold_ms: int) -> str:
    """INVITE [field2] as [field0] with digest auth; on 200 ACK, hold, BYE."""
    invite = """
      INVITE sip:[field2]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field2]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: %d INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      %s
      User-Agent: sipprov-sipp
      Content-Type: application/sdp
      Content-Length: [len]

""" + "\n".join("      " + line for line in _SDP.splitlines()) + "\n"
    ack_error = """
      ACK sip:[field2]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: %d ACK
      Max-Forwards: 70
      Content-Length: 0
"""
    # [routes]: the Record-Route set of the 200 (a SIP front in the path); SIPp drops
    # the line when there is none
    in_dialog = """
      %s [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      Max-Forwards: 70
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: %s
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Content-Length: 0
"""
    provisional = "".join(f'  <recv response="{c}" optional="true"/>\n'
                          for c in (100, 180, 183))
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="sipprov call">
  <send retrans="500"><![CDATA[{invite % (1, "")}
    ]]></send>
{provisional}  <recv response="200" optional="true" rrs="true" next="answered">{_ANSWERED}</recv>
  <recv response="401" auth="true" optional="true" next="auth"/>
  <recv response="407" auth="true" optional="true" next="auth"/>
{_fail_branches("fail1")}
  <label id="fail1"/>
  <send next="failed"><![CDATA[{ack_error % 1}
    ]]></send>
  <label id="auth"/>
  <send><![CDATA[{ack_error % 1}
    ]]></send>
  <send retrans="500"><![CDATA[{invite % (2, "[authentication]")}
    ]]></send>
{provisional}  <recv response="200" optional="true" rrs="true" next="answered">{_ANSWERED}</recv>
{_fail_branches("fail2")}
  <label id="fail2"/>
  <send next="failed"><![CDATA[{ack_error % 2}
    ]]></send>
  <label id="answered"/>
  <send><![CDATA[{in_dialog % ("ACK", "[last_cseq_number] ACK")}
    ]]></send>
  <pause milliseconds="{int(hold_ms)}"/>
  <send retrans="500" start_txn="bye"><![CDATA[{in_dialog % ("BYE", "10 BYE")}
    ]]></send>
  <recv response="200" response_txn="bye" next="end"><action><log message="OK;[field0];200"/></action></recv>
  <label id="failed"/>
  <nop><action><log message="FAIL;[field0];[$code]"/></action></nop>
  <label id="end"/>
</scenario>
"""


_UAS_200 = """
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      %s
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

""" + "\n".join("      " + line for line in _SDP.splitlines()) + "\n"

# Answer one INVITE; accept re-INVITEs (direct media, session refresh) until the BYE.
_UAS_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="sipprov uas">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]></send>
  <send retrans="500"><![CDATA[{_UAS_200 % "[last_To:];tag=[pid]SIPpTag01[call_number]"}
    ]]></send>
  <recv request="ACK" crlf="true"><action><log message="ANSWERED"/></action></recv>
  <label id="wait"/>
  <recv request="INVITE" optional="true" next="reinvite"/>
  <recv request="BYE" next="bye"><action><log message="BYE"/></action></recv>
  <label id="reinvite"/>
  <send retrans="500"><![CDATA[{_UAS_200 % "[last_To:]"}
    ]]></send>
  <recv request="ACK" next="wait"/>
  <label id="bye"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]></send>
</scenario>
"""


def _parse_log(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [line.strip().split(";") for line in text.splitlines() if line.strip()]


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return " | ".join(lines[-n:])


async def _spawn(argv: list[str], workdir: Path) -> asyncio.subprocess.Process:
    """Start sipp in workdir, its stderr to workdir/sipp.stderr (see _tail)."""
    err = open(workdir / "sipp.stderr", "wb")
    try:
        return await asyncio.create_subprocess_exec(
            *argv, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=err)
    finally:
        err.close()


async def _run(argv: list[str], workdir: Path, timeout: float) -> int:
    """Run sipp in workdir; kill it if it overruns its own -timeout by a margin."""
    proc = await _spawn(argv, workdir)
    try:
        return await asyncio.wait_for(proc.wait(), timeout + 5)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise


def _loopback(server_host: str) -> str:
    """Refuse any target but this machine: SIP load goes to the local PBX only."""
    try:
        infos = socket.getaddrinfo(server_host, None, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve SIP server {server_host!r}: {exc}") from None
    addrs = {str(info[4][0]) for info in infos}
    if not addrs or not all(ipaddress.ip_address(a).is_loopback for a in addrs):
        raise ValueError(f"SIP server {server_host!r} is not a loopback address; SIPp "
                         "runs only against the local PBX")
    return sorted(addrs)[0]


def _base_argv(server_host: str, server_port: int, scenario: Path, csv: Path,
               local_port: int, log: Path, timeout: float) -> list[str]:
    return [
        sipp_binary(), f"{_loopback(server_host)}:{int(server_port)}",
        "-sf", str(scenario), "-inf", str(csv),
        "-au", "[field0]", "-ap", "[field1]",
        "-i", "127.0.0.1", "-bind_local", "-p", str(local_port),
        "-t", "u1", "-nostdin",
        "-trace_logs", "-log_file", str(log),
        "-timeout", f"{max(1, int(timeout + 0.999))}s", "-timeout_error",
        *_trace_args(scenario.stem),
    ]


def _trace_args(name: str) -> list[str]:
    """SIPPROV_SIPP_TRACE=<dir>: keep a SIP message trace of every run there (debugging;
    it holds digest responses, never passwords)."""
    where = os.environ.get("SIPPROV_SIPP_TRACE")
    if not where:
        return []
    os.makedirs(where, mode=0o700, exist_ok=True)
    path = Path(where) / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
    return ["-trace_msg", "-message_file", str(path)]


# ----------------------------------------------------------------------------- register


async def _register(server_host: str, server_port: int, username: str, password: str,
                    local_port: int | None, expires: int, realm: str | None,
                    timeout: float) -> RegisterResult:
    _check_user(username)
    _check_field(password, "password")
    port = local_port or free_udp_port()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sipprov-sipp-") as tmp:
        work = Path(tmp)
        scen, csv, log = work / "register.xml", work / "users.csv", work / "calls.log"
        _write_private(scen, _register_scenario(expires))
        _write_csv(csv, [(username, password)])
        argv = _base_argv(server_host, server_port, scen, csv, port, log, timeout)
        argv += ["-m", "1", "-recv_timeout", f"{int(timeout * 1000)}"]
        try:
            rc = await _run(argv, work, timeout)
        except TimeoutError:
            return RegisterResult(False, 0, time.monotonic() - t0, "",
                                  "sipp overran its timeout and was killed")
        rows = [r for r in _parse_log(log) if len(r) >= 3 and r[1] == username]
        elapsed = time.monotonic() - t0
        if not rows:
            return RegisterResult(False, 0, elapsed, "",
                                  f"no answer (sipp exit {rc}): {_tail(work / 'sipp.stderr')}")
    kind, _, code, *rest = rows[-1]
    got_realm = rest[0] if rest else ""
    status = int(code) if code.isdigit() else 0
    ok = kind == "OK"
    detail = ""
    if ok and realm is not None and got_realm and got_realm != realm:
        ok, detail = False, f"challenged with realm {got_realm!r}, expected {realm!r}"
    return RegisterResult(ok, status, elapsed, got_realm, detail)


async def register(server_host: str, server_port: int, username: str, password: str, *,
                   local_port: int | None = None, expires: int = 3600,
                   realm: str | None = None, timeout: float = 10) -> RegisterResult:
    """Register username (digest auth) from a loopback UDP port; never raises on a SIP
    failure: the result says ok and the final status (200, 401 wrong password, ...).

    realm: when given, a challenge with another realm counts as a failure.
    """
    return await _register(server_host, server_port, username, password, local_port,
                           expires, realm, timeout)


async def unregister(server_host: str, server_port: int, username: str, password: str, *,
                     local_port: int | None = None, timeout: float = 10) -> RegisterResult:
    """Remove all contacts of username (REGISTER, Contact: *, Expires: 0)."""
    return await _register(server_host, server_port, username, password, local_port, 0,
                           None, timeout)


async def register_many(server_host: str, server_port: int,
                        accounts: Iterable[tuple[str, str]], *, rate: float = 200,
                        concurrency: int = 200, expires: int = 3600,
                        timeout: float | None = None,
                        local_port: int | None = None) -> BulkRegisterResult:
    """Register many accounts with ONE sipp process at `rate` REGISTERs per second
    (at most `concurrency` in flight), reading the accounts from an -inf CSV.

    All contacts share one local port (a real registrar sees many phones behind one
    address; remove_existing applies per AOR, so they do not disturb each other).
    """
    accounts = list(accounts)
    if not accounts:
        return BulkRegisterResult(0, 0, 0.0)
    for user, password in accounts:
        _check_user(user)
        _check_field(password, "password")
    if timeout is None:
        timeout = len(accounts) / max(rate, 0.1) + 15
    port = local_port or free_udp_port()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sipprov-sipp-") as tmp:
        work = Path(tmp)
        scen, csv, log = work / "register.xml", work / "users.csv", work / "calls.log"
        _write_private(scen, _register_scenario(expires))
        n = _write_csv(csv, accounts)
        argv = _base_argv(server_host, server_port, scen, csv, port, log, timeout)
        argv += ["-m", str(n), "-r", f"{rate:g}", "-rp", "1000", "-l", str(concurrency),
                 "-recv_timeout", "10000", "-max_recv_loops", "10000"]
        try:
            await _run(argv, work, timeout)
        except TimeoutError:
            pass
        rows = _parse_log(log)
    elapsed = time.monotonic() - t0
    ok = 0
    okset: set[str] = set()
    status: dict[str, int] = {}
    for row in rows:
        if len(row) >= 3 and row[0] == "OK":
            ok += 1
            okset.add(row[1])
        elif len(row) >= 3:
            status[row[1]] = int(row[2]) if row[2].isdigit() else 0
    failures = {user: status.get(user, 0) for user, _ in accounts if user not in okset}
    return BulkRegisterResult(ok, len(accounts) - ok, elapsed, failures)


# ----------------------------------------------------------------------------- calls


class Uas:
    """A registered agent phone that answers one call in the background (start_uas)."""

    def __init__(self, username: str, port: int, proc: asyncio.subprocess.Process,
                 workdir: tempfile.TemporaryDirectory, deadline: float) -> None:
        self.username = username
        self.port = port
        self._proc = proc
        self._workdir = workdir
        self._deadline = deadline
        self.registration: RegisterResult | None = None

    def _events(self) -> list[str]:
        return [r[0] for r in _parse_log(Path(self._workdir.name) / "calls.log")]

    @property
    def answered(self) -> bool:
        """The phone sent 200 OK to an INVITE."""
        return "ANSWERED" in self._events()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for the call to end; True if it was answered and hung up with BYE."""
        left = self._deadline - time.monotonic() if timeout is None else timeout
        try:
            await asyncio.wait_for(self._proc.wait(), max(0.1, left))
        except TimeoutError:
            await self.stop()
        events = self._events()
        return "ANSWERED" in events and "BYE" in events

    async def stop(self) -> None:
        """Kill the phone (idempotent) and delete its temp folder."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()

    def cleanup(self) -> None:
        self._workdir.cleanup()

    async def __aenter__(self) -> Uas:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        self.cleanup()


async def start_uas(server_host: str, server_port: int, username: str, password: str, *,
                    local_port: int | None = None, timeout: float = 30) -> Uas:
    """Register as username, then answer one incoming INVITE (200 OK, ACK, BYE) from a
    background sipp on the registered port. Raises SippError if registration fails.

    Use as `async with await start_uas(...) as phone: ...; await phone.wait()`.
    """
    port = local_port or free_udp_port()
    reg = await register(server_host, server_port, username, password, local_port=port,
                         timeout=min(timeout, 10))
    if not reg.ok:
        raise SippError(f"UAS {username} could not register: status {reg.status} "
                        f"{reg.detail}")
    workdir = tempfile.TemporaryDirectory(prefix="sipprov-sipp-uas-")
    work = Path(workdir.name)
    scen, log = work / "uas.xml", work / "calls.log"
    _write_private(scen, _UAS_SCENARIO)
    argv = [
        sipp_binary(), "-sf", str(scen),
        "-i", "127.0.0.1", "-bind_local", "-p", str(port), "-mp", str(free_udp_port()),
        "-t", "u1", "-nostdin", "-aa", "-m", "1",
        "-trace_logs", "-log_file", str(log),
        "-timeout", f"{max(1, int(timeout + 0.999))}s", "-timeout_error",
        *_trace_args("uas"),
    ]
    proc = await _spawn(argv, work)
    uas = Uas(username, port, proc, workdir, time.monotonic() + timeout + 5)
    uas.registration = reg
    # give sipp a moment to bind its port before anyone calls it
    await asyncio.sleep(0.2)
    if proc.returncode is not None:
        detail = _tail(work / "sipp.stderr")
        uas.cleanup()
        raise SippError(f"UAS sipp exited at start ({proc.returncode}): {detail}")
    return uas


async def call(server_host: str, server_port: int, username: str, password: str,
               extension: str, *, hold_s: float = 1.0, local_port: int | None = None,
               timeout: float = 20) -> CallResult:
    """Call extension as username (digest auth on 401/407); ok if answered with 200 OK,
    held for hold_s and hung up cleanly. status is the INVITE's final status."""
    _check_user(username)
    _check_user(extension, "extension")
    _check_field(password, "password")
    port = local_port or free_udp_port()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sipprov-sipp-") as tmp:
        work = Path(tmp)
        scen, csv, log = work / "call.xml", work / "users.csv", work / "calls.log"
        _write_private(scen, _call_scenario(int(hold_s * 1000)))
        _write_csv(csv, [(username, password, extension)])
        argv = _base_argv(server_host, server_port, scen, csv, port, log, timeout)
        argv += ["-m", "1", "-mp", str(free_udp_port()), "-aa"]
        try:
            rc = await _run(argv, work, timeout)
        except TimeoutError:
            return CallResult(False, 0, time.monotonic() - t0, "sipp overran and was killed")
        rows = _parse_log(log)
        elapsed = time.monotonic() - t0
        kinds = [r[0] for r in rows]
        if "OK" in kinds:
            return CallResult(True, 200, elapsed)
        if "ANSWERED" in kinds:
            return CallResult(False, 200, elapsed, f"answered but BYE failed (sipp exit {rc})")
        for row in rows:
            if row[0] == "FAIL" and len(row) >= 3:
                code = int(row[2]) if row[2].isdigit() else 0
                return CallResult(False, code, elapsed, f"call refused with {code}")
        return CallResult(False, 0, elapsed,
                          f"no final answer (sipp exit {rc}): {_tail(work / 'sipp.stderr')}")
