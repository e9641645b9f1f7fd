"""A thin asyncio AMI client over panoramisk.

panoramisk's Manager reconnects forever and silently when the connection is refused,
drops, or the Login fails; pending actions then wait forever. Here every failure is
reported instead: connect() raises AmiError on a refused connection or a wrong secret,
every call has a timeout (cfg.ami_timeout_s) and raises AmiError when it runs out or
the connection is lost. Reconnecting is the caller's decision (the applier retries with
backoff and keeps changes pending meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from sipprov.config import AsteriskConfig

log = logging.getLogger(__name__)

# Values AMI carries that are secrets: our Login's Secret, and in answers the
# credentials of PJSIP auth objects (Password, Md5Cred / PasswordDigest: the HA1, which
# authenticates as well as the password) and OAuth secrets.
_SECRET_FIELD = re.compile(
    r"(?i)(\b(?:secret|password|md5cred|passworddigest|oauthsecret|refreshtoken)"
    r"\b['\"]?\s*[:=]\s*)('[^']*'|\"[^\"]*\"|[^\s,}>]+)")


def _mask(m: re.Match[str]) -> str:
    value = m.group(2)
    if value[:1] in ("'", '"'):
        return f"{m.group(1)}{value[0]}***{value[0]}" if len(value) > 2 else m.group(0)
    return f"{m.group(1)}***"


def redact(text: str) -> str:
    """`Secret: x` / `Md5Cred='x'` / `'Secret': 'x'` -> the same with `***`."""
    return _SECRET_FIELD.sub(_mask, text)


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


# panoramisk logs through the logger it is given: every message received (DEBUG, with
# -v), an action it queues (INFO) or fails to send (ERROR) - the Login action holds our
# secret, answers can hold credentials. It gets this logger, which masks them.
wire_log = logging.getLogger(__name__ + ".wire")
wire_log.addFilter(_RedactSecrets())


class AmiError(Exception):
    """AMI is unreachable, refused our Login, answered Error, or did not answer in time."""


class AmiTimeout(AmiError):
    """No answer within the timeout: Asterisk is busy, hung or stopped. Transient: the
    action may still be carried out when Asterisk gets to it."""


# How Asterisk 22 answers a Reload action (main/manager.c, action_reload, from
# ast_module_reload's result). Checked against the real PBX: an `#include` of a missing
# file in extensions.conf gives "An unknown error occurred" for pbx_config.so; res_pjsip
# and app_queue answer Success whatever their files hold (a bad file is logged and the
# old objects stay: only the verification sees it).
RELOAD_IN_PROGRESS = "A reload is in progress"  # another reload holds the reload lock
RELOAD_UNINITIALIZED = "Module not initialized"  # still loading (Asterisk booting)
RELOAD_ERROR = "An unknown error occurred"  # the module's reload failed: config refused
RELOAD_NOT_FOUND = "No such module"
RELOAD_NOT_IMPLEMENTED = "Module does not support reload"


class ReloadFailed(AmiError):
    """Asterisk answered a Reload with Error; `kind` says what it means:

    - "busy": another reload is running, or the module is not initialized yet: retry;
    - "refused": the module's reload failed (its configuration is invalid);
    - "unsupported": no such module, or it cannot reload (an operator's setup problem).
    """

    def __init__(self, module: str, message: str) -> None:
        super().__init__(f"AMI Reload {module}: {message}")
        self.module = module
        self.message = message
        if message in (RELOAD_IN_PROGRESS, RELOAD_UNINITIALIZED) or "in progress" in message:
            self.kind = "busy"
        elif message in (RELOAD_NOT_FOUND, RELOAD_NOT_IMPLEMENTED):
            self.kind = "unsupported"
        else:
            self.kind = "refused"


@dataclass
class QueueMember:
    queue: str
    # The dial location, e.g. PJSIP/101 (AMI "Interface", older "Location").
    interface: str
    name: str
    penalty: int
    # "static" (queues.conf) or "dynamic" (QueueAdd / AddQueueMember).
    membership: str = ""
    paused: bool = False
    # Device state number (1 = not in use, 5 = unavailable, ...).
    status: int = 0
    calls_taken: int = 0
    in_call: bool = False
    state_interface: str = ""


class _Manager(Manager):
    """panoramisk's Manager with its reconnect loop replaced by a report to the client."""

    pinger: Any  # panoramisk's keep-alive handle (untyped there)

    def __init__(self, client: AmiClient, **config: Any) -> None:
        super().__init__(**config)
        self._client = client

    def connection_lost(self, exc: Any) -> None:  # called by AMIProtocol
        self._connected = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self._client._lost_connection(exc)

    def ping(self) -> None:
        # keepalive; a dead connection shows up as connection_lost
        if self.protocol is not None and not self.protocol.closed:
            super().ping()


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _lines(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


class AmiClient:
    """One AMI connection. Use `await connect()` first; `close()` when done."""

    def __init__(self, cfg: AsteriskConfig, *, events: str = "off") -> None:
        self.cfg = cfg
        self.timeout = cfg.ami_timeout_s
        # Event mask asked at Login; "off": only answers to our actions (list events of
        # PJSIPShowEndpoints etc. still come), so a registration storm costs us nothing.
        self.events = events
        self._manager: _Manager | None = None
        self._lost: asyncio.Future[None] | None = None
        self._lost_reason = ""

    # ------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        """Logged in and the connection is up."""
        return (self._manager is not None and self._manager.authenticated
                and self._lost is not None and not self._lost.done())

    def _lost_connection(self, exc: Any) -> None:
        self._lost_reason = "Asterisk shut down" if isinstance(exc, Message) else (
            f"connection lost ({exc})" if exc else "connection closed by Asterisk")
        log.warning("AMI %s:%s: %s", self.cfg.ami_host, self.cfg.ami_port, self._lost_reason)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    async def connect(self) -> None:
        """Connect and log in; AmiError if refused, unreachable or the secret is wrong."""
        if self.connected:
            return
        await self.close()
        loop = asyncio.get_running_loop()
        where = f"{self.cfg.ami_host}:{self.cfg.ami_port}"
        manager = _Manager(
            self,
            host=self.cfg.ami_host, port=self.cfg.ami_port,
            username=self.cfg.ami_user, secret=self.cfg.ami_secret,
            events=self.events, loop=loop, log=wire_log,
            ping_delay=10, ping_interval=10,
        )
        try:
            transport_protocol = await asyncio.wait_for(
                loop.create_connection(AMIProtocol, self.cfg.ami_host, self.cfg.ami_port),
                self.timeout)
        except TimeoutError:
            raise AmiError(f"AMI at {where}: no connection within {self.timeout} s") from None
        except OSError as exc:
            raise AmiError(f"AMI at {where}: cannot connect: {exc.strerror or exc}") from None
        self._manager = manager
        self._lost = loop.create_future()
        self._lost_reason = ""
        # Hand the ready connection to panoramisk: it wires the protocol and sends Login.
        done: asyncio.Future[Any] = loop.create_future()
        done.set_result(transport_protocol)
        manager.connection_made(done)
        login = manager.authenticated_future
        if login is None:
            await self.close()
            raise AmiError(f"AMI at {where}: Login was not sent")
        try:
            answer = await self._wait(login, "Login")
        except AmiError:
            await self.close()
            raise
        if not answer.success:
            await self.close()
            raise AmiError(f"AMI at {where} refused Login for user {self.cfg.ami_user!r}: "
                           f"{answer.message or answer.response}")
        manager.authenticated = True

    async def close(self) -> None:
        """Log off and close (idempotent); never reconnects."""
        manager, self._manager = self._manager, None
        if self._lost is not None and not self._lost.done():
            self._lost_reason = "closed"
            self._lost.set_result(None)
        if manager is None:
            return
        protocol = manager.protocol
        if protocol is not None and not protocol.closed and manager.authenticated:
            try:
                protocol.send({"Action": "Logoff"})
            except Exception:  # pragma: no cover - closing anyway
                pass
        manager.close()

    async def __aenter__(self) -> AmiClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ actions

    async def _wait(self, fut: asyncio.Future[Any], what: str,
                    timeout: float | None = None) -> Any:
        lost = self._lost
        assert lost is not None
        timeout = self.timeout if timeout is None else timeout
        done, _ = await asyncio.wait({fut, lost}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if fut in done:
            return fut.result()
        fut.cancel()
        if lost in done:
            raise AmiError(f"AMI {what}: {self._lost_reason or 'connection lost'}")
        raise AmiTimeout(f"AMI {what}: no answer within {timeout:g} s")

    async def send(self, action: dict[str, Any],
                   timeout: float | None = None) -> Message | list[Message]:
        """Send one action; the answer, or all messages of an event list (first is the
        Response, last the ...Complete event). AmiError when not connected, AmiTimeout
        when there is no answer within `timeout` (default cfg.ami_timeout_s)."""
        if not self.connected or self._manager is None:
            raise AmiError(f"AMI {action.get('Action')}: not connected"
                           + (f" ({self._lost_reason})" if self._lost_reason else ""))
        fut = self._manager.send_action(dict(action))
        return await self._wait(fut, str(action.get("Action")), timeout)

    @staticmethod
    def _first(answer: Message | list[Message]) -> Message:
        return answer[0] if isinstance(answer, list) else answer

    async def ping(self) -> None:
        """Round trip to Asterisk (AmiError if it does not answer)."""
        answer = self._first(await self.send({"Action": "Ping"}))
        if not answer.success:
            raise AmiError(f"AMI Ping: {answer.message}")

    async def command(self, cmd: str) -> str:
        """Run a CLI command and return its output text."""
        if "\n" in cmd or "\r" in cmd:
            raise AmiError("AMI Command: the command may not contain line breaks")
        answer = self._first(await self.send({"Action": "Command", "Command": cmd}))
        output = "\n".join(_lines(answer.get("Output")))
        if not output and answer.content:
            output = answer.content  # old "Response: Follows" style
        if answer.response == "Error":
            raise AmiError(f"AMI Command {cmd!r}: {output or answer.message}")
        return output

    async def reload(self, module: str, timeout: float | None = None) -> None:
        """Reload one module (e.g. res_pjsip.so); returns once the reload is done.
        ReloadFailed when Asterisk answers Error, AmiTimeout without an answer."""
        answer = self._first(await self.send({"Action": "Reload", "Module": module}, timeout))
        if not answer.success:
            raise ReloadFailed(module, str(answer.message or answer.response))

    async def core_settings(self) -> tuple[str, str]:
        """Asterisk's version and its `systemname` (asterisk.conf; "" when unset: what
        it writes as reg_server of a shared registration)."""
        answer = self._first(await self.send({"Action": "CoreSettings"}))
        if not answer.success:
            raise AmiError(f"AMI CoreSettings: {answer.message}")
        return str(answer.get("AsteriskVersion", "")), str(answer.get("SystemName", "") or "")

    async def version(self) -> str:
        """Asterisk's version (CoreSettings AsteriskVersion)."""
        return (await self.core_settings())[0]

    async def pjsip_endpoint_exists(self, name: str) -> bool:
        """Whether Asterisk has loaded endpoint `name` (PJSIPShowEndpoint)."""
        answer = await self.send({"Action": "PJSIPShowEndpoint", "Endpoint": name})
        if isinstance(answer, list):
            return any(m.get("Event") == "EndpointDetail"
                       and m.get("ObjectName") == name for m in answer[1:])
        if answer.success:
            return False
        if "Unable to retrieve endpoint" in answer.message:
            return False
        raise AmiError(f"AMI PJSIPShowEndpoint {name}: {answer.message}")

    async def pjsip_endpoints(self) -> set[str]:
        """Names of all loaded PJSIP endpoints (PJSIPShowEndpoints' EndpointList)."""
        answer = await self.send({"Action": "PJSIPShowEndpoints"})
        if isinstance(answer, list):
            return {m.get("ObjectName") for m in answer[1:]
                    if m.get("Event") == "EndpointList" and m.get("ObjectName")}
        if answer.success or "No endpoints found" in answer.message:
            return set()
        raise AmiError(f"AMI PJSIPShowEndpoints: {answer.message}")

    async def queue_status(self, queue: str | None = None) -> dict[str, list[QueueMember]]:
        """Queues and their members (QueueStatus); queues without members map to []."""
        action: dict[str, Any] = {"Action": "QueueStatus"}
        if queue:
            action["Queue"] = queue
        answer = await self.send(action)
        if not isinstance(answer, list):
            if answer.success:
                return {}
            raise AmiError(f"AMI QueueStatus: {answer.message}")
        result: dict[str, list[QueueMember]] = {}
        for m in answer[1:]:
            event = m.get("Event")
            if event == "QueueParams":
                result.setdefault(m.get("Queue"), [])
            elif event == "QueueMember":
                member = QueueMember(
                    queue=m.get("Queue"),
                    interface=m.get("Interface") or m.get("Location") or "",
                    name=m.get("MemberName") or m.get("Name") or "",
                    penalty=_int(m.get("Penalty")),
                    membership=m.get("Membership") or "",
                    paused=str(m.get("Paused")) == "1",
                    status=_int(m.get("Status")),
                    calls_taken=_int(m.get("CallsTaken")),
                    in_call=str(m.get("InCall")) == "1",
                    state_interface=m.get("StateInterface") or "",
                )
                result.setdefault(member.queue, []).append(member)
        return result

    # ------------------------------------------------------------------ realtime, contacts

    async def _simple(self, action: dict[str, Any], ok_messages: tuple[str, ...] = ()) -> None:
        answer = self._first(await self.send(action))
        if not answer.success and not any(t in (answer.message or "") for t in ok_messages):
            raise AmiError(f"AMI {action['Action']}: {answer.message or answer.response}")

    async def sorcery_expire(self, cache: str, object_id: str | None = None) -> None:
        """Expire one object (or, without `object_id`, every object) of a sorcery memory
        cache, so the next lookup reads the database."""
        if object_id is None:
            await self._simple({"Action": "SorceryMemoryCacheExpire", "Cache": cache})
        else:
            await self._simple({"Action": "SorceryMemoryCacheExpireObject", "Cache": cache,
                                "Object": object_id},
                               ok_messages=("not in cache", "could not be expired"))

    async def pjsip_contacts(self) -> list[dict[str, str]]:
        """Every registered contact (PJSIPShowContacts' ContactList events), as dicts:
        ObjectName (`<aor>;@<hash>`), Aor, Uri, UserAgent, RegExpire, Status, ..."""
        answer = await self.send({"Action": "PJSIPShowContacts"})
        if isinstance(answer, list):
            found = []
            for m in answer[1:]:
                if m.get("Event") != "ContactList":
                    continue
                contact = {k: str(v) for k, v in m.items()}
                contact["Aor"] = contact.get("ObjectName", "").split(";@", 1)[0]
                found.append(contact)
            return found
        if answer.success or "No Contacts found" in (answer.message or ""):
            return []
        raise AmiError(f"AMI PJSIPShowContacts: {answer.message}")

    async def pjsip_endpoint_contacts(self, name: str) -> list[dict[str, str]]:
        """The contacts of one endpoint (PJSIPShowEndpoint's ContactStatusDetail events:
        ID, AOR, URI, UserAgent, RegExpire, Status, ...); [] when it has none or does
        not exist."""
        answer = await self.send({"Action": "PJSIPShowEndpoint", "Endpoint": name})
        if not isinstance(answer, list):
            return []
        return [{k: str(v) for k, v in m.items()} for m in answer[1:]
                if m.get("Event") == "ContactStatusDetail" and m.get("URI")]

    async def astdb_contacts(self, aor: str) -> list[str]:
        """The names (`<aor>;@<hash>`) of one AOR's registrations kept in astdb: a
        prefix query on astdb's key index, O(that AOR's contacts). (`database show`
        matches whole key path components only, and `<aor>;@<hash>` is one.)"""
        if not aor.isdigit():
            raise AmiError("astdb_contacts: not an extension")
        # the digits-only AOR cannot break out of the quoted SQL
        out = await self.command(
            f"database query \"SELECT key FROM astdb WHERE key LIKE '/registrar/contact/{aor};@%'\"")
        prefix = f"/registrar/contact/{aor};@"
        keys = (line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line)
        return [key.removeprefix("/registrar/contact/") for key in keys if key.startswith(prefix)]

    async def remove_contact(self, object_name: str) -> None:
        """Forget one registration (`<aor>;@<hash>`, PJSIPShowContacts' ObjectName) at
        once: its astdb row goes, so calls to that phone fail from now on and it must
        REGISTER again (with valid credentials)."""
        if any(c in object_name for c in "\r\n/") or ";@" not in object_name:
            raise AmiError("remove_contact: not a contact name")
        await self._simple({"Action": "DBDel", "Family": "registrar/contact",
                            "Key": object_name},
                           ok_messages=("not deleted", "not found"))

    async def set_device_state(self, device: str, state: str) -> None:
        """Set a Custom: device state (func_devstate), e.g. NOT_INUSE, UNAVAILABLE."""
        await self._simple({"Action": "Setvar", "Variable": f"DEVICE_STATE({device})",
                            "Value": state})
