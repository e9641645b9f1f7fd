"""What the phones are doing, from Asterisk's AMI events: who is registered (contact,
user agent, since when) and who is on a call; and, for the realtime backend, the
device state app_queue rings by.

Why sipprov keeps a device state at all (realtime backend only): Asterisk tracks the
state of `PJSIP/<ext>` only for AORs its options code already knows, and the first
time it meets a new AOR it loads EVERY endpoint (res_pjsip/pjsip_options.c,
sip_options_aor_observer_modified_task): O(N), measured ~1.8 s at 10,000 agents,
stalling other REGISTERs meanwhile. Every Asterisk-side trigger (`pjsip reload qualify
endpoint`, qualify_frequency, ARI dynamic config of the AOR) goes through that path,
so an agent created after Asterisk started would stay Unavailable to app_queue or
cost O(N) per create. Instead the realtime queue members use
`state_interface=Custom:sipprov<ext>` (asterisk.queue_members), and this tracker
sets it (func_devstate, AMI Setvar DEVICE_STATE) from registration and channel
events: O(1) per event. While sipprov is down the Custom states keep their last
value (Asterisk stores them in astdb); on reconnect everything is synchronised again.

Registrations: Asterisk's ContactStatus events come only for endpoints it knew at
load (the same trap), so every successful digest authentication (the SuccessfulAuth
security event: a REGISTER, a refresh, an unregister or a call) makes the tracker
ask for that one endpoint's contacts (PJSIPShowEndpoint), shortly after and once more
a moment later (the contact is stored after the authentication). Coalesced per
extension, one action at a time: a registration storm delays what is shown, never
Asterisk. Expired registrations disappear at the next resynchronisation (RESYNC_S).
The manager user needs `read = ...,security` for this (docs/apply.md).

Several Asterisk nodes: one connection per node; a phone's state adds up every node's
view and is set on every node (PhoneTracker says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sipprov.apply.ami import AmiClient, AmiError
from sipprov.config import Config, Node

log = logging.getLogger(__name__)

CUSTOM_PREFIX = "Custom:sipprov"
_CHANNEL = re.compile(r"^PJSIP/(\d{1,6})-[0-9a-f]+$")
_EXT = re.compile(r"^\d{1,6}$")
# The whole picture is read again this often (a missed event cannot last).
RESYNC_S = 60.0
# After an authentication: ask for the endpoint's contacts after these delays.
REFRESH_AFTER_S = (0.15, 1.5)
# At most this many endpoints asked per second: every PJSIPShowEndpoint is several
# realtime queries on res_config_pgsql's ONE connection, which REGISTERs need too
# (measured: refreshing every authentication starved a 500/s storm). Beyond it the
# tracker lags, and when more are waiting than that it reads the whole picture once
# (one PJSIPShowContacts) instead.
REFRESH_PER_S = 20


@dataclass(frozen=True)
class Registration:
    """One registered contact of an agent's AOR."""

    uri: str
    user_agent: str
    # When sipprov first saw it (a contact registered before sipprov started: when it
    # started watching); None from a one-off listing (registrations_now).
    since: datetime | None
    expires_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"contact": self.uri, "user_agent": self.user_agent,
                "since": self.since.isoformat() if self.since else None,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}


def _expires(value: str | None) -> datetime | None:
    try:
        stamp = int(value or "")
    except ValueError:
        return None
    return datetime.fromtimestamp(stamp, UTC) if stamp > 0 else None


def device_state(registered: bool, channel_states: list[str]) -> str:
    """The Custom device state for an agent's phone."""
    if any(s == "Up" for s in channel_states):
        return "INUSE"
    if any(s in ("Ringing", "Ring") for s in channel_states):
        return "RINGING"
    if channel_states:
        return "INUSE"
    return "NOT_INUSE" if registered else "UNAVAILABLE"


class _NodeLink:
    """One node's AMI connection: what that node sees (contacts, channels) and which
    Custom states it was last given."""

    def __init__(self, tracker: PhoneTracker, name: str,
                 ami_factory: Callable[[], AmiClient]) -> None:
        self.tracker = tracker
        self.name = name
        self.ami_factory = ami_factory
        self.contacts: dict[str, dict[str, Registration]] = {}  # aor -> object -> reg
        self.channels: dict[str, tuple[str, str]] = {}          # channel -> (aor, state)
        self.set: dict[str, str] = {}                           # aor -> state last set
        self.dirty: set[str] = set()
        self.refresh: dict[str, float] = {}  # aor@delay -> when to ask for its contacts
        self.last_refresh = 0.0
        self.resync_at = float("inf")
        self.wake = asyncio.Event()
        self.ami: AmiClient | None = None
        self.task: asyncio.Task[None] | None = None
        self.connected = False

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name=f"sipprov-phones-{self.name}")

    async def stop(self) -> None:
        self.wake.set()
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            # the loop also ends on the tracker's stopping, should a cancellation be
            # swallowed
            await asyncio.wait({task}, timeout=10)
        await self._close()

    async def _close(self) -> None:
        ami, self.ami = self.ami, None
        self.connected = False
        if ami is not None:
            with contextlib.suppress(Exception):
                await ami.close()

    async def _run(self) -> None:
        delay = 0.5
        while not self.tracker.stopping:
            try:
                await self._connect_and_sync()
                delay = 0.5
                await self._follow()
            except (AmiError, OSError) as exc:
                log.info("phone tracker: AMI of node %s away (%s); retrying in %.1f s",
                         self.name, exc, delay)
            await self._close()
            if not self.tracker.stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), delay)
                self.wake.clear()
            delay = min(delay * 2, 15.0)

    async def _connect_and_sync(self) -> None:
        ami = self.ami_factory()
        await ami.connect()
        self.ami = ami
        manager = ami._manager
        assert manager is not None
        manager.register_event("ContactStatus", self._on_contact)
        manager.register_event("SuccessfulAuth", self._on_auth)
        for name in ("Newchannel", "Newstate", "Hangup"):
            manager.register_event(name, self._on_channel)
        await self._sync(ami)
        self.connected = True

    async def _sync(self, ami: AmiClient) -> None:
        """Read every contact and channel of this node, then put every state right."""
        now = datetime.now(UTC)
        contacts: dict[str, dict[str, Registration]] = {}
        for c in await ami.pjsip_contacts():
            aor = c.get("Aor", "")
            if not _EXT.match(aor):
                continue
            old = self.contacts.get(aor, {}).get(c.get("ObjectName", ""))
            contacts.setdefault(aor, {})[c.get("ObjectName", "")] = Registration(
                uri=c.get("Uri", ""), user_agent=c.get("UserAgent", ""),
                since=old.since if old else now,
                expires_at=_expires(c.get("ExpirationTime")))
        channels: dict[str, tuple[str, str]] = {}
        answer = await ami.send({"Action": "CoreShowChannels"})
        for m in answer[1:] if isinstance(answer, list) else []:
            if m.get("Event") == "CoreShowChannel":
                match = _CHANNEL.match(str(m.get("Channel", "")))
                if match:
                    channels[str(m.get("Channel"))] = (
                        match.group(1), str(m.get("ChannelStateDesc", "")))
        touched = set(self.contacts) | set(contacts) | set(self.set)
        touched |= {aor for aor, _ in channels.values()}
        self.contacts, self.channels = contacts, channels
        if self.tracker.devstate:
            touched |= await self._known_custom_states(ami)
            self.set.clear()
        self.tracker.mark(touched)
        await self._flush(ami)

    async def _known_custom_states(self, ami: AmiClient) -> set[str]:
        """Extensions with a Custom:sipprov state from earlier runs (so a phone that
        unregistered while sipprov was away does not stay NOT_INUSE)."""
        try:
            out = await ami.command("devstate list")
        except AmiError:
            return set()
        return set(re.findall(r"Custom:sipprov(\d{1,6})'", out))

    async def _follow(self) -> None:
        """Push changed states as events arrive; resynchronise now and then."""
        ami = self.ami
        assert ami is not None
        next_sync = time.monotonic() + RESYNC_S
        while ami.connected and not self.tracker.stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)
            self.wake.clear()
            if time.monotonic() >= min(next_sync, self.resync_at):
                await self._sync(ami)
                next_sync = time.monotonic() + RESYNC_S
                self.resync_at = float("inf")
            else:
                await self._refresh_due(ami)
                await self._flush(ami)
        raise AmiError("AMI connection lost")

    # ------------------------------------------------------------------ events

    def _on_contact(self, _manager: Any, event: Any) -> None:
        aor = str(event.get("AOR") or "")
        uri = str(event.get("URI") or "")
        if not _EXT.match(aor):
            return
        status = str(event.get("ContactStatus") or "")
        regs = self.contacts.setdefault(aor, {})
        key = next((k for k, r in regs.items() if r.uri == uri), f"{aor};@{uri}")
        if status == "Removed":
            regs.pop(key, None)
        else:
            old = regs.get(key)
            regs[key] = Registration(
                uri=uri, user_agent=str(event.get("UserAgent") or (old.user_agent if old else "")),
                since=old.since if old else datetime.now(UTC),
                expires_at=_expires(str(event.get("RegExpire") or ""))
                or (old.expires_at if old else None))
        if not regs:
            self.contacts.pop(aor, None)
        self.tracker.mark({aor})

    def _on_auth(self, _manager: Any, event: Any) -> None:
        if str(event.get("Service") or "") != "PJSIP":
            return
        aor = str(event.get("AccountID") or "")
        if _EXT.match(aor):
            now = time.monotonic()
            for delay in REFRESH_AFTER_S:
                self.refresh.setdefault(f"{aor}@{delay}", now + delay)
            self.wake.set()

    async def _refresh_due(self, ami: AmiClient) -> None:
        """Ask for the contacts of the extensions whose time has come."""
        now = time.monotonic()
        if len({k.split("@", 1)[0] for k in self.refresh}) > REFRESH_PER_S * 5:
            # a storm: one listing later beats thousands of lookups now
            self.refresh.clear()
            self.resync_at = min(self.resync_at, now + 5.0)
            return
        budget = max(1, int(REFRESH_PER_S * max(0.05, now - self.last_refresh)))
        self.last_refresh = now
        due = sorted((k for k, at in self.refresh.items() if at <= now),
                     key=lambda k: self.refresh[k])
        aors: list[str] = []
        for key in due:
            aor = key.split("@", 1)[0]
            if aor not in aors and len(aors) >= budget:
                continue
            self.refresh.pop(key, None)
            if aor not in aors:
                aors.append(aor)
        for aor in aors:
            found = await ami.pjsip_endpoint_contacts(aor)
            old = self.contacts.get(aor, {})
            regs = {
                c.get("ID", ""): Registration(
                    uri=c.get("URI", ""), user_agent=c.get("UserAgent", ""),
                    since=old[c.get("ID", "")].since if c.get("ID", "") in old
                    else datetime.now(UTC),
                    expires_at=_expires(c.get("RegExpire")))
                for c in found}
            if regs:
                self.contacts[aor] = regs
            else:
                self.contacts.pop(aor, None)
            self.tracker.mark({aor})
        if self.refresh:
            # wake up again when the next one is due
            asyncio.get_running_loop().call_later(
                max(0.0, min(self.refresh.values()) - time.monotonic()), self.wake.set)

    def _on_channel(self, _manager: Any, event: Any) -> None:
        name = str(event.get("Channel") or "")
        match = _CHANNEL.match(name)
        if not match:
            return
        aor = match.group(1)
        if event.get("Event") == "Hangup":
            self.channels.pop(name, None)
        else:
            self.channels[name] = (aor, str(event.get("ChannelStateDesc") or ""))
        self.tracker.mark({aor})

    async def _flush(self, ami: AmiClient) -> None:
        """Give this node the state every node's view adds up to."""
        if not self.tracker.devstate:
            self.dirty.clear()
            return
        dirty, self.dirty = self.dirty, set()
        for aor in sorted(dirty):
            state = self.tracker.state(aor)
            if self.set.get(aor) == state:
                continue
            await ami.set_device_state(f"{CUSTOM_PREFIX}{aor}", state)
            self.set[aor] = state


class PhoneTracker:
    """Started by the service; `registrations(ext)` and `registered_count()` answer
    from memory.

    Several Asterisk nodes: one AMI connection per node. A phone is registered when
    any node holds a contact for it, busy when a call on any node involves it; that
    state is set on EVERY node, so a phone registered through node 2 is rung by a
    queue on node 1."""

    def __init__(self, cfg: Config,
                 ami_factory: Callable[[], AmiClient] | None = None) -> None:
        self.cfg = cfg
        self.devstate = cfg.asterisk.backend == "realtime"
        self.stopping = False

        def factory(node: Node) -> Callable[[], AmiClient]:
            return ami_factory or (
                lambda: AmiClient(node.asterisk, events="system,call,security"))

        self.links = [_NodeLink(self, node.name, factory(node)) for node in cfg.nodes]

    @property
    def connected(self) -> bool:
        """Watching at least one node."""
        return any(link.connected for link in self.links)

    # ------------------------------------------------------------------ queries

    def registrations(self, extension: int | str) -> list[Registration]:
        """The phone's contacts on every node (a contact shared through the database
        shows on several: once here)."""
        seen: dict[str, Registration] = {}
        for link in self.links:
            for reg in link.contacts.get(str(extension), {}).values():
                seen.setdefault(reg.uri, reg)
        return sorted(seen.values(),
                      key=lambda r: r.since or datetime.min.replace(tzinfo=UTC))

    def registered_count(self) -> int:
        aors = {aor for link in self.links for aor, regs in link.contacts.items() if regs}
        return len(aors)

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Per node: watched, and how many agents' phones it holds a contact for."""
        return {link.name: {"watched": link.connected,
                            "registered": (sum(1 for regs in link.contacts.values() if regs)
                                           if link.connected else None)}
                for link in self.links}

    def state(self, aor: str) -> str:
        """The Custom device state every node's view adds up to."""
        registered = any(link.contacts.get(aor) for link in self.links)
        states = [s for link in self.links for a, s in link.channels.values() if a == aor]
        return device_state(registered, states)

    def mark(self, aors: set[str]) -> None:
        """These phones' state may have changed: every node checks it."""
        if not aors:
            return
        for link in self.links:
            link.dirty |= aors
            link.wake.set()

    def forget(self, extensions: set[int]) -> None:
        """Their contacts were removed by sipprov (credentials went away)."""
        for link in self.links:
            for ext in extensions:
                link.contacts.pop(str(ext), None)
        self.mark({str(e) for e in extensions})

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.stopping = False
        for link in self.links:
            link.start()

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.gather(*(link.stop() for link in self.links))


async def registrations_now(cfg: Config, extension: int, timeout: float = 3.0
                            ) -> list[Registration] | None:
    """One-off (the CLI): the contacts of one AOR on every node over AMI; None if no
    node's AMI is reachable."""
    found: dict[str, Registration] | None = None
    for node in cfg.nodes:
        ast = dataclasses.replace(node.asterisk, ami_timeout_s=timeout)
        try:
            async with AmiClient(ast) as ami:
                contacts = await ami.pjsip_contacts()
        except (AmiError, OSError):
            continue
        found = found if found is not None else {}
        for c in contacts:
            if c.get("Aor") == str(extension):
                found.setdefault(c.get("Uri", ""), Registration(
                    uri=c.get("Uri", ""), user_agent=c.get("UserAgent", ""), since=None,
                    expires_at=_expires(c.get("ExpirationTime"))))
    return None if found is None else list(found.values())
